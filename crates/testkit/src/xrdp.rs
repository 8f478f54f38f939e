//! An xrdp server (xrdp 0.9.21 with xorgxrdp) on a private port, for tests
//! against a real multi-session RDP server.
//!
//! xrdp reads the session manager's port from `/etc/xrdp/sesman.ini`
//! regardless of its `-c` option, and keeps pid files and sockets in `/run/xrdp`. So each [`Xrdp`]
//! copies `/etc/xrdp` into a temporary directory, edits the copy, and runs
//! `xrdp-sesman` and `xrdp` under `unshare --mount --propagation private`
//! with the copy bind-mounted on `/etc/xrdp` and a private directory on
//! `/run/xrdp`. The system's configuration and any system xrdp are untouched;
//! the only host change is creating the empty directory `/run/xrdp` as a
//! mount point. This needs root.
//!
//! Sessions run as a real Linux user with a password: Xorg on a display at or
//! above a reserved offset, then `startwm.sh`, which paints the root window
//! [`XRDP_BACKGROUND`] and runs an xterm. xrdp offers TLS and standard RDP
//! security, never NLA, and a wrong password does not close the connection:
//! the client sees xrdp's login dialog and sesman logs `AUTHFAIL`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};

use anyhow::{Context, Result, bail, ensure};
use tempfile::TempDir;

use crate::ports::{free_port, is_listening};
use crate::process::{
    ProcessGuard, START_TIMEOUT, STOP_GRACE, descendants, is_root, mount_namespace, poll_until,
    processes_in_mount_namespace, read_lossy, require_program, run_output, tail, terminate_all,
};
use crate::x11::{DisplayReservation, remove_stale_display_files};

/// Root window colour that each xrdp session paints before starting its xterm.
pub const XRDP_BACKGROUND: &str = "#cc6622";

/// Number of display numbers reserved for sessions; sesman takes the first
/// free one at or above the offset for each new session.
const SESSION_DISPLAYS: u32 = 10;

/// Number of port pairs tried when a port was taken before xrdp bound it.
const START_ATTEMPTS: usize = 3;

/// Serialises `useradd` and `chpasswd` between tests of one process.
static USER_SETUP: Mutex<()> = Mutex::new(());

/// Shell script run inside the new mount namespace; `$1` is the guard's directory.
const NAMESPACE_SCRIPT: &str = r#"set -e
mkdir -p /run/xrdp
mount --bind "$1/etc" /etc/xrdp
mount --bind "$1/run" /run/xrdp
xrdp-sesman --nodaemon &
exec xrdp --nodaemon
"#;

/// A running xrdp and xrdp-sesman on 127.0.0.1, stopped on drop together
/// with every session process they started.
///
/// Drop stops two sets of processes. The first is the descendants of the
/// `unshare` process, which becomes `xrdp`. The second is every process in
/// the private mount namespace, which also catches session processes that
/// were re-parented after their parent exited. They get `SIGTERM`, then
/// `SIGKILL` after five seconds. Drop also removes stale X lock files left
/// by a killed session Xorg.
#[derive(Debug)]
pub struct Xrdp {
    port: u16,
    sesman_port: u16,
    user: String,
    process: Option<ProcessGuard>,
    namespace: Option<String>,
    displays: DisplayReservation,
    dir: TempDir,
}

impl Xrdp {
    /// Creates Linux user `user` if it does not exist (`useradd -m`), sets its
    /// password (`chpasswd`), and starts xrdp on a free loopback port. Blocks
    /// until xrdp and sesman listen, for up to 30 seconds. Needs root.
    ///
    /// The user is left in place afterwards, because other tests may share it.
    pub fn start(user: &str, password: &str) -> Result<Self> {
        ensure!(
            is_root(),
            "Xrdp::start needs root for useradd, chpasswd and unshare --mount"
        );
        for (program, package) in [
            ("xrdp", "xrdp"),
            ("xrdp-sesman", "xrdp"),
            ("unshare", "util-linux"),
            ("xterm", "xterm"),
            ("xsetroot", "x11-xserver-utils"),
            ("useradd", "passwd"),
            ("chpasswd", "passwd"),
        ] {
            require_program(program, package)?;
        }
        ensure_user(user, password)?;

        let dir = tempfile::Builder::new().prefix("rdp-proxy-testkit-xrdp-").tempdir()?;
        // Session processes run as `user` and read startwm.sh through the bind mount.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        copy_configuration(dir.path())?;
        let displays = DisplayReservation::new(SESSION_DISPLAYS)?;

        let mut xrdp = Self {
            port: 0,
            sesman_port: 0,
            user: user.to_owned(),
            process: None,
            namespace: None,
            displays,
            dir,
        };
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            xrdp.port = free_port();
            xrdp.sesman_port = free_port();
            xrdp.write_configuration()?;
            match xrdp.spawn()? {
                None => return Ok(xrdp),
                Some(log) => last_log = log,
            }
        }
        bail!(
            "xrdp exited during start-up {START_ATTEMPTS} times; last log lines:\n{}",
            tail(&last_log, 30)
        )
    }

    /// Returns the RDP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns the session manager's port; sesman listens on `[::1]` even
    /// when configured for 127.0.0.1.
    pub fn sesman_port(&self) -> u16 {
        self.sesman_port
    }

    /// Returns the first display number sesman may give a session.
    pub fn display_offset(&self) -> u32 {
        self.displays.first()
    }

    /// Returns the Linux user the sessions log on as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Returns xrdp's log, then sesman's log, then their stdout and stderr,
    /// each after a `==> NAME <==` header.
    pub fn log_text(&self) -> String {
        ["xrdp.log", "sesman.log", "stdout.log"]
            .iter()
            .map(|name| format!("==> {name} <==\n{}\n", read_lossy(&self.dir.path().join(name))))
            .collect()
    }

    /// Returns sesman's log alone, which records logons (`AUTHFAIL: user=…`
    /// on a wrong password) and sessions.
    pub fn sesman_log_text(&self) -> String {
        read_lossy(&self.dir.path().join("sesman.log"))
    }

    /// Counts sessions sesman started (log line `Session started successfully`).
    /// A reconnection that reattaches an existing session is not counted.
    pub fn sessions_started(&self) -> usize {
        self.sesman_log_text()
            .lines()
            .filter(|line| line.contains("Session started successfully"))
            .count()
    }

    /// Counts reconnections that reattached an existing session (sesman log
    /// line `++ reconnected session`).
    pub fn sessions_reconnected(&self) -> usize {
        self.sesman_log_text()
            .lines()
            .filter(|line| line.contains("++ reconnected session"))
            .count()
    }

    /// Stops xrdp, sesman and all session processes, as described at [`Xrdp`].
    pub fn stop(&mut self) {
        let Some(mut process) = self.process.take() else {
            return;
        };
        let root = process.pid();
        let mut pids = descendants(root);
        if let Some(namespace) = &self.namespace {
            pids.extend(processes_in_mount_namespace(namespace));
        }
        pids.retain(|&pid| pid != root);
        tracing::debug!(xrdp = root, ?pids, "stopping xrdp sessions and sesman");
        terminate_all(&pids, STOP_GRACE);
        process.stop();
        self.namespace = None;
        for number in self.displays.numbers() {
            remove_stale_display_files(number, &pids);
        }
    }

    fn etc_dir(&self) -> PathBuf {
        self.dir.path().join("etc")
    }

    /// Edits the copied `xrdp.ini` and `sesman.ini` for the current ports.
    fn write_configuration(&self) -> Result<()> {
        let log = |name: &str| self.dir.path().join(name).display().to_string();
        edit_ini(
            &self.etc_dir().join("xrdp.ini"),
            &[
                ("Globals", "port", format!("tcp://127.0.0.1:{}", self.port)),
                ("Globals", "autorun", "Xorg".into()),
                ("Logging", "LogFile", log("xrdp.log")),
                ("Logging", "EnableSyslog", "false".into()),
            ],
            // Session types other than Xorg would start Xvnc or proxy to other hosts.
            &["Xvnc", "neutrinordp-any"],
        )?;
        edit_ini(
            &self.etc_dir().join("sesman.ini"),
            &[
                ("Globals", "ListenAddress", "127.0.0.1".into()),
                ("Globals", "ListenPort", self.sesman_port.to_string()),
                ("Globals", "EnableUserWindowManager", "false".into()),
                ("Sessions", "X11DisplayOffset", self.displays.first().to_string()),
                ("Logging", "LogFile", log("sesman.log")),
                ("Logging", "EnableSyslog", "false".into()),
                ("ChansrvLogging", "EnableSyslog", "false".into()),
            ],
            &[],
        )
    }

    /// Starts the namespace script and waits for both listeners. Returns
    /// `None` when ready, or the logs when xrdp exited during start-up. Any
    /// failure stops the processes the attempt started.
    fn spawn(&mut self) -> Result<Option<String>> {
        let mut command = Command::new("unshare");
        command
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                NAMESPACE_SCRIPT,
                "sh",
            ])
            .arg(self.dir.path())
            .current_dir(self.dir.path());
        let log_path = self.dir.path().join("stdout.log");
        let mut process = ProcessGuard::spawn_logged(&format!("xrdp :{}", self.port), &mut command, &log_path)?;

        // The namespace must differ from ours, otherwise stopping the
        // processes in it would stop this test process too.
        let own_namespace = mount_namespace(std::process::id());
        let mut namespace = None;
        let listening = format!("listening to port {} on 127.0.0.1", self.port);
        let xrdp_log = self.dir.path().join("xrdp.log");
        let outcome = poll_until(START_TIMEOUT, &format!("xrdp on port {}", self.port), || {
            if namespace.is_none() {
                let current = mount_namespace(process.pid());
                if current.is_some() && current != own_namespace {
                    namespace = current;
                }
            }
            if process.exit_status().is_some() {
                return Ok(Some(false));
            }
            let ready =
                namespace.is_some() && read_lossy(&xrdp_log).contains(&listening) && is_listening(self.sesman_port);
            Ok(ready.then_some(true))
        });
        self.namespace = namespace;
        self.process = Some(process);
        match outcome {
            Ok(true) => {
                tracing::debug!(port = self.port, sesman_port = self.sesman_port, "xrdp ready");
                Ok(None)
            }
            Ok(false) => {
                let log = self.log_text();
                self.stop();
                Ok(Some(log))
            }
            Err(error) => {
                self.stop();
                Err(error.context(format!("xrdp did not start; logs:\n{}", tail(&self.log_text(), 30))))
            }
        }
    }
}

impl Drop for Xrdp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Creates `user` with a home directory unless it exists, then sets its password.
fn ensure_user(user: &str, password: &str) -> Result<()> {
    let mut chars = user.chars();
    let valid_user = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && user.len() <= 32;
    ensure!(valid_user, "invalid Linux user name {user:?}; use [a-z_][a-z0-9_-]*");
    ensure!(!password.is_empty(), "invalid password for {user}: empty");
    ensure!(
        !password.contains(['\n', '\r']),
        "invalid password for {user}: chpasswd cannot take line breaks"
    );

    let _lock = USER_SETUP.lock().unwrap_or_else(PoisonError::into_inner);
    let exists = Command::new("id")
        .arg(user)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .context("failed to run id")?
        .success();
    if !exists {
        tracing::info!(user, "creating Linux user for xrdp sessions");
        run_output(Command::new("useradd").args(["-m", "-s", "/bin/sh", user]))?;
    }

    use std::io::Write as _;
    let mut chpasswd = Command::new("chpasswd")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("failed to run chpasswd")?;
    chpasswd
        .stdin
        .take()
        .context("chpasswd has no stdin")?
        .write_all(format!("{user}:{password}\n").as_bytes())?;
    let output = chpasswd.wait_with_output()?;
    ensure!(
        output.status.success(),
        "chpasswd for {user} exited with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// Copies `/etc/xrdp` to `dir/etc`, writes `startwm.sh`, and creates `dir/run/sockdir`.
fn copy_configuration(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;

    // cp -a keeps rsakeys.ini owned by the xrdp user and the certificate symlinks.
    run_output(Command::new("cp").args(["-a", "/etc/xrdp"]).arg(dir.join("etc")))?;
    let startwm = dir.join("etc/startwm.sh");
    std::fs::write(
        &startwm,
        format!("#!/bin/sh\nxsetroot -solid '{XRDP_BACKGROUND}'\nexec xterm -geometry 80x24+100+100\n"),
    )?;
    std::fs::set_permissions(&startwm, std::fs::Permissions::from_mode(0o755))?;
    let sockdir = dir.join("run/sockdir");
    std::fs::create_dir_all(&sockdir)?;
    std::fs::set_permissions(&sockdir, std::fs::Permissions::from_mode(0o1777))?;
    Ok(())
}

/// Rewrites the INI file at `path`, setting each `(section, key, value)` and
/// removing the sections in `remove`.
fn edit_ini(path: &Path, settings: &[(&str, &str, String)], remove: &[&str]) -> Result<()> {
    let mut text = std::fs::read_to_string(path).with_context(|| format!("failed to read {}", path.display()))?;
    for (section, key, value) in settings {
        text =
            set_ini_value(&text, section, key, value).with_context(|| format!("failed to edit {}", path.display()))?;
    }
    text = remove_ini_sections(&text, remove);
    std::fs::write(path, text).with_context(|| format!("failed to write {}", path.display()))
}

fn section_header(line: &str) -> Option<&str> {
    line.trim().strip_prefix('[')?.strip_suffix(']')
}

/// Sets `key=value` in `[section]`: replaces the active (uncommented) line
/// for `key`, or adds one at the end of the section.
fn set_ini_value(text: &str, section: &str, key: &str, value: &str) -> Result<String> {
    let mut output = Vec::new();
    let mut current: Option<&str> = None;
    let mut section_found = false;
    let mut done = false;
    let assignment = format!("{key}={value}");
    for line in text.lines() {
        if let Some(header) = section_header(line) {
            if current == Some(section) && !done {
                insert_before_blank_tail(&mut output, assignment.clone());
                done = true;
            }
            current = Some(header);
            section_found |= header == section;
            output.push(line.to_owned());
            continue;
        }
        let is_key = line
            .split_once('=')
            .is_some_and(|(name, _)| name.trim() == key && !line.trim_start().starts_with([';', '#']));
        if current == Some(section) && is_key && !done {
            output.push(assignment.clone());
            done = true;
        } else {
            output.push(line.to_owned());
        }
    }
    ensure!(section_found, "section [{section}] not found");
    if !done {
        insert_before_blank_tail(&mut output, assignment);
    }
    Ok(output.join("\n") + "\n")
}

/// Adds `line` after the last non-blank line, keeping blank lines that separate sections.
fn insert_before_blank_tail(output: &mut Vec<String>, line: String) {
    let position = output
        .iter()
        .rposition(|existing| !existing.trim().is_empty())
        .map_or(output.len(), |index| index + 1);
    output.insert(position, line);
}

/// Removes the sections named in `remove`, headers included.
fn remove_ini_sections(text: &str, remove: &[&str]) -> String {
    let mut skipping = false;
    let mut output = String::new();
    for line in text.lines() {
        if let Some(header) = section_header(line) {
            skipping = remove.contains(&header);
        }
        if !skipping {
            output.push_str(line);
            output.push('\n');
        }
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    const INI: &str =
        "[Globals]\nport=3389\n;port=1\nautorun=\n\n[Logging]\nLogFile=xrdp.log\n\n[Xvnc]\nname=Xvnc\nport=-1\n";

    #[test]
    fn ini_value_replaced_in_its_section_only() -> Result<()> {
        let text = set_ini_value(INI, "Globals", "port", "tcp://127.0.0.1:1")?;
        assert!(text.contains("[Globals]\nport=tcp://127.0.0.1:1\n;port=1\n"));
        assert!(text.contains("[Xvnc]\nname=Xvnc\nport=-1\n"));
        Ok(())
    }

    #[test]
    fn ini_value_added_when_missing() -> Result<()> {
        let text = set_ini_value(INI, "Logging", "EnableSyslog", "false")?;
        assert!(text.contains("LogFile=xrdp.log\nEnableSyslog=false\n\n[Xvnc]"));
        Ok(())
    }

    #[test]
    fn ini_missing_section_is_an_error() {
        assert!(set_ini_value(INI, "Sessions", "X11DisplayOffset", "10").is_err());
    }

    #[test]
    fn ini_section_removed_with_header() {
        let text = remove_ini_sections(INI, &["Xvnc"]);
        assert!(!text.contains("Xvnc"));
        assert!(text.contains("LogFile=xrdp.log"));
    }
}
