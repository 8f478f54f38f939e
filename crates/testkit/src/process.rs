//! Child-process guards and process-tree helpers shared by every starter.
//!
//! Every process is signalled by PID, never by name. [`ProcessGuard`] owns a
//! [`Child`] and stops it on drop: `SIGTERM` (or the configured stop signal),
//! a grace period, then `SIGKILL`. Because the guard holds the unreaped child,
//! its PID cannot be reused while the guard signals it. Helpers for processes
//! that are not direct children (xrdp sessions, Chromium) read `/proc`.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustix::process::{Pid, Signal, kill_process};

/// Interval between two checks while polling for a condition.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Time a process gets between the stop signal and `SIGKILL`.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(5);

/// Maximum time a server gets to start and accept connections.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running child process that is stopped and reaped when the guard drops.
#[derive(Debug)]
pub struct ProcessGuard {
    name: String,
    child: Child,
    exit_status: Option<ExitStatus>,
    stop_signal: Signal,
    log_path: Option<PathBuf>,
}

impl ProcessGuard {
    /// Spawns `command` with its stdout and stderr appended to `log_path`.
    /// `name` appears in logs and error messages.
    pub fn spawn_logged(name: &str, command: &mut Command, log_path: &Path) -> Result<Self> {
        let (stdout, stderr) = log_stdio(log_path)?;
        command.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        let mut guard = Self::spawn(name, command)?;
        guard.log_path = Some(log_path.to_path_buf());
        Ok(guard)
    }

    /// Spawns `command` as it is configured; stdio is left to the caller.
    pub fn spawn(name: &str, command: &mut Command) -> Result<Self> {
        let child = command
            .spawn()
            .with_context(|| format!("failed to spawn {name}: {command:?}"))?;
        tracing::debug!(name, pid = child.id(), "started process");
        Ok(Self {
            name: name.to_owned(),
            child,
            exit_status: None,
            stop_signal: Signal::TERM,
            log_path: None,
        })
    }

    /// Sets the signal [`ProcessGuard::stop`] sends before falling back to `SIGKILL`.
    pub fn with_stop_signal(mut self, signal: Signal) -> Self {
        self.stop_signal = signal;
        self
    }

    /// Returns the PID of the child.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Returns the name given at spawn time.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the log file that receives the child's stdout and stderr, if any.
    pub fn log_path(&self) -> Option<&Path> {
        self.log_path.as_deref()
    }

    /// Returns the log file's contents, or an empty string when there is none.
    pub fn log_text(&self) -> String {
        self.log_path.as_deref().map(read_lossy).unwrap_or_default()
    }

    /// Returns the exit status if the child has exited, reaping it.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit_status.is_none() {
            match self.child.try_wait() {
                Ok(status) => self.exit_status = status,
                Err(error) => {
                    tracing::warn!(name = %self.name, pid = self.pid(), %error, "waitpid failed");
                }
            }
        }
        self.exit_status
    }

    /// Returns true while the child has not exited.
    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// Fails with the exit status and the log's last lines if the child has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.exit_status() {
            None => Ok(()),
            Some(status) => bail!(
                "{} (pid {}) exited with {status}; last log lines:\n{}",
                self.name,
                self.pid(),
                tail(&self.log_text(), 20)
            ),
        }
    }

    /// Sends the stop signal, waits up to five seconds, then sends `SIGKILL`.
    /// Does nothing if the child has already exited.
    pub fn stop(&mut self) {
        if !self.is_running() {
            return;
        }
        self.signal(self.stop_signal);
        if self.wait_exit(STOP_GRACE) {
            return;
        }
        tracing::warn!(name = %self.name, pid = self.pid(), "process ignored the stop signal; sending SIGKILL");
        self.kill();
    }

    /// Sends `SIGKILL` and reaps the child.
    pub fn kill(&mut self) {
        if !self.is_running() {
            return;
        }
        self.signal(Signal::KILL);
        if !self.wait_exit(STOP_GRACE) {
            tracing::warn!(name = %self.name, pid = self.pid(), "process survived SIGKILL");
        }
    }

    /// Sends `signal` to the child unless it has exited.
    pub fn signal(&mut self, signal: Signal) {
        if self.is_running() {
            send_signal(self.pid(), signal);
        }
    }

    /// Waits up to `timeout` for the child to exit and returns whether it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.is_running() {
                tracing::debug!(name = %self.name, pid = self.pid(), status = ?self.exit_status, "process exited");
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Opens `path` for writing and returns two handles to it, for stdout and stderr.
/// The handles share one file offset, so lines from both streams interleave.
pub(crate) fn log_stdio(path: &Path) -> Result<(Stdio, Stdio)> {
    let file = File::create(path).with_context(|| format!("failed to create log file {}", path.display()))?;
    let clone = file
        .try_clone()
        .with_context(|| format!("failed to duplicate handle of {}", path.display()))?;
    Ok((Stdio::from(file), Stdio::from(clone)))
}

/// Reads a file as text, replacing invalid UTF-8. A missing file reads as empty.
pub(crate) fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// Returns the last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}

/// Calls `check` every 25 ms until it returns `Some`, an error, or `timeout` passes.
/// `what` completes the sentence "timed out waiting for …".
pub(crate) fn poll_until<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Fails with an install hint unless `program` is an executable on `PATH`
/// or an existing absolute path.
pub(crate) fn require_program(program: &str, package: &str) -> Result<PathBuf> {
    find_program(program).with_context(|| format!("{program} not found on PATH; install the Debian package {package}"))
}

fn find_program(program: &str) -> Option<PathBuf> {
    let candidate = Path::new(program);
    if candidate.is_absolute() {
        return candidate.is_file().then(|| candidate.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|full| full.is_file())
}

/// Runs `command` to completion and returns its stdout, failing with its
/// stderr when it exits unsuccessfully.
pub(crate) fn run_output(command: &mut Command) -> Result<String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("failed to run {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Returns true if the current process runs with effective UID 0.
pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Sends `signal` to `pid`, refusing PID 1 and the current process.
/// A process that is already gone is not an error.
pub(crate) fn send_signal(pid: u32, signal: Signal) {
    if pid <= 1 || pid == std::process::id() {
        tracing::warn!(pid, "not signalling PID 1 or the test process itself");
        return;
    }
    let Some(target) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return;
    };
    if let Err(error) = kill_process(target, signal)
        && error != rustix::io::Errno::SRCH
    {
        tracing::warn!(pid, ?signal, %error, "kill failed");
    }
}

/// Process state from `/proc/PID/stat`: parent PID and the state letter.
struct ProcStat {
    parent: u32,
    state: char,
}

fn read_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain spaces or
    // parentheses, so the fields after it start at the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let parent = fields.next()?.parse().ok()?;
    Some(ProcStat { parent, state })
}

/// Returns true if `pid` exists and is neither a zombie nor dead.
pub(crate) fn is_alive(pid: u32) -> bool {
    read_stat(pid).is_some_and(|stat| !matches!(stat.state, 'Z' | 'X'))
}

fn all_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Returns every descendant of `root` (children, grandchildren, …), not `root` itself.
pub(crate) fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for pid in all_pids() {
        if let Some(stat) = read_stat(pid) {
            children.entry(stat.parent).or_default().push(pid);
        }
    }
    let mut found = Vec::new();
    let mut queue = vec![root];
    while let Some(parent) = queue.pop() {
        for &child in children.get(&parent).map(Vec::as_slice).unwrap_or_default() {
            found.push(child);
            queue.push(child);
        }
    }
    found
}

/// Returns the mount namespace of `pid` as the text of `/proc/PID/ns/mnt`,
/// for example `mnt:[4026532174]`.
pub(crate) fn mount_namespace(pid: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
        .ok()
        .map(|link| link.to_string_lossy().into_owned())
}

/// Returns every process in the mount namespace `namespace`.
pub(crate) fn processes_in_mount_namespace(namespace: &str) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&pid| mount_namespace(pid).as_deref() == Some(namespace))
        .collect()
}

/// Sends `SIGTERM` to each PID, waits up to `grace` for all to exit, then
/// sends `SIGKILL` to the rest and waits up to one more second.
pub(crate) fn terminate_all(pids: &[u32], grace: Duration) {
    let unique: HashSet<u32> = pids.iter().copied().collect();
    let mut alive: Vec<u32> = unique.into_iter().filter(|&pid| is_alive(pid)).collect();
    for &pid in &alive {
        send_signal(pid, Signal::TERM);
    }
    for (signal, wait) in [(None, grace), (Some(Signal::KILL), Duration::from_secs(1))] {
        if let Some(signal) = signal {
            for &pid in &alive {
                tracing::warn!(pid, "process ignored SIGTERM; sending SIGKILL");
                send_signal(pid, signal);
            }
        }
        let deadline = Instant::now() + wait;
        loop {
            alive.retain(|&pid| is_alive(pid));
            if alive.is_empty() || Instant::now() >= deadline {
                break;
            }
            thread::sleep(POLL_INTERVAL);
        }
        if alive.is_empty() {
            return;
        }
    }
    tracing::warn!(?alive, "processes survived SIGKILL");
}
