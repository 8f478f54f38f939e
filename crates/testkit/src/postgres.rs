//! A throwaway PostgreSQL cluster on loopback with trust authentication.
//!
//! `initdb` and `postgres` refuse to run as root, so when the tests run as
//! root the cluster runs as the `postgres` OS user through
//! `runuser -u postgres --`, with a data directory owned by that user. As any
//! other user they run as that user directly. The binaries come from
//! `/usr/lib/postgresql/<version>/bin` (highest version), which Debian keeps
//! off `PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use rustix::process::Signal;
use tempfile::TempDir;

use crate::ports::free_port;
use crate::process::{
    ProcessGuard, START_TIMEOUT, STOP_GRACE, is_root, poll_until, require_program, run_output, send_signal, tail,
};

/// OS user that owns and runs the cluster when the tests run as root.
const SERVICE_USER: &str = "postgres";

/// Database superuser created by `initdb`.
const SUPERUSER: &str = "postgres";

/// Number of ports tried when the chosen port was taken before PostgreSQL bound it.
const START_ATTEMPTS: usize = 3;

/// Maximum time for `initdb`. It usually takes a few seconds, more on a loaded machine.
const INITDB_TIMEOUT: Duration = Duration::from_secs(120);

/// A running PostgreSQL server on 127.0.0.1, stopped on drop.
///
/// Durability is switched off (`fsync=off`, `synchronous_commit=off`,
/// `full_page_writes=off`) because the cluster is deleted on drop.
#[derive(Debug)]
pub struct Postgres {
    port: u16,
    bin_dir: PathBuf,
    run_as_service_user: bool,
    process: Option<ProcessGuard>,
    dir: TempDir,
}

impl Postgres {
    /// Runs `initdb` in a fresh temporary directory, starts `postgres` on a
    /// free port with `listen_addresses=127.0.0.1` and a private socket
    /// directory, and waits until `pg_isready` succeeds. Blocks for up to
    /// two minutes for `initdb` and 30 seconds for the server.
    pub fn start() -> Result<Self> {
        let bin_dir = find_bin_dir()?;
        let run_as_service_user = is_root();
        if run_as_service_user {
            require_program("runuser", "util-linux")?;
        }
        let dir = tempfile::Builder::new()
            .prefix("rdp-proxy-testkit-postgres-")
            .tempdir()?;
        let mut postgres = Self {
            port: 0,
            bin_dir,
            run_as_service_user,
            process: None,
            dir,
        };
        postgres.prepare_directories()?;
        postgres.initdb()?;

        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            postgres.port = free_port();
            match postgres.spawn()? {
                None => return Ok(postgres),
                Some(log) => last_log = log,
            }
        }
        bail!(
            "postgres exited during start-up {START_ATTEMPTS} times; last log lines:\n{}",
            tail(&last_log, 20)
        )
    }

    /// Returns `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// Returns the URL of database `name` on this server.
    pub fn database_url(&self, name: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Returns the TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns the server's log.
    pub fn log_text(&self) -> String {
        self.process.as_ref().map(ProcessGuard::log_text).unwrap_or_default()
    }

    /// Creates database `name` with `createdb` and returns its URL. `name`
    /// must be a lowercase SQL identifier (`[a-z_][a-z0-9_]*`).
    pub fn create_database(&self, name: &str) -> Result<String> {
        ensure!(
            is_plain_identifier(name),
            "invalid database name {name:?}; use [a-z_][a-z0-9_]*"
        );
        run_output(Command::new(self.bin_dir.join("createdb")).args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            SUPERUSER,
            name,
        ]))?;
        Ok(self.database_url(name))
    }

    /// Runs `sql` with `psql` in `database` and returns its unaligned,
    /// tuples-only output (`psql -At`), stopping at the first error.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String> {
        run_output(
            Command::new(self.bin_dir.join("psql"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", SUPERUSER])
                .args(["-d", database, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql]),
        )
    }

    /// Stops the server with a fast shutdown: `SIGINT` to the postmaster,
    /// which ends open sessions, then `SIGKILL` after five seconds.
    pub fn stop(&mut self) {
        let Some(mut process) = self.process.take() else {
            return;
        };
        // With runuser in between, the guard's PID is runuser's. So signal the
        // postmaster itself, whose PID is the first line of postmaster.pid.
        if let Some(postmaster) = self.postmaster_pid() {
            send_signal(postmaster, Signal::INT);
            if process.wait_exit(STOP_GRACE) {
                return;
            }
            tracing::warn!(postmaster, "postgres ignored SIGINT; sending SIGKILL");
            send_signal(postmaster, Signal::KILL);
        }
        process.stop();
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    /// Returns line `index` (0-based) of `postmaster.pid`: 0 is the
    /// postmaster's PID, 3 its port.
    fn postmaster_pid_line(&self, index: usize) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        text.lines().nth(index)?.trim().parse().ok()
    }

    fn postmaster_pid(&self) -> Option<u32> {
        self.postmaster_pid_line(0)
    }

    /// Creates the data and socket directories, owned by the service user
    /// when running as root. The temporary directory itself becomes world
    /// readable so that user can reach them.
    fn prepare_directories(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt as _;

        std::fs::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o755))?;
        for path in [self.data_dir(), self.socket_dir()] {
            std::fs::create_dir(&path)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
            if self.run_as_service_user {
                let (uid, gid) = user_ids(SERVICE_USER)?;
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .with_context(|| format!("failed to chown {} to {SERVICE_USER}", path.display()))?;
            }
        }
        Ok(())
    }

    /// Returns a command that runs `program` from the PostgreSQL binary
    /// directory as the service user.
    fn server_command(&self, program: &str) -> Command {
        let binary = self.bin_dir.join(program);
        let mut command = if self.run_as_service_user {
            let mut runuser = Command::new("runuser");
            runuser.args(["-u", SERVICE_USER, "--"]).arg(binary);
            runuser
        } else {
            Command::new(binary)
        };
        // The service user may not be allowed into the caller's directory.
        command.current_dir(self.dir.path());
        command
    }

    fn initdb(&self) -> Result<()> {
        let log_path = self.dir.path().join("initdb.log");
        let mut command = self.server_command("initdb");
        command.arg("-D").arg(self.data_dir()).args([
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        let mut process = ProcessGuard::spawn_logged("initdb", &mut command, &log_path)?;
        if !process.wait_exit(INITDB_TIMEOUT) {
            bail!("initdb did not finish within {INITDB_TIMEOUT:?}");
        }
        match process.exit_status() {
            Some(status) if status.success() => Ok(()),
            status => bail!(
                "initdb failed ({status:?}); last log lines:\n{}",
                tail(&process.log_text(), 20)
            ),
        }
    }

    /// Starts `postgres` on `self.port` and waits for it. Returns `None` when
    /// it is ready, or its log when it exited during start-up.
    fn spawn(&mut self) -> Result<Option<String>> {
        let log_path = self.dir.path().join(format!("postgres-{}.log", self.port));
        let mut command = self.server_command("postgres");
        command
            .arg("-D")
            .arg(self.data_dir())
            .arg("-k")
            .arg(self.socket_dir())
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]);
        let mut process = ProcessGuard::spawn_logged(&format!("postgres :{}", self.port), &mut command, &log_path)?;
        let pg_isready = self.bin_dir.join("pg_isready");
        let port = self.port.to_string();
        let ready = poll_until(START_TIMEOUT, &format!("postgres on port {port}"), || {
            if process.exit_status().is_some() {
                return Ok(Some(false));
            }
            let status = Command::new(&pg_isready)
                .args(["-q", "-h", "127.0.0.1", "-p", &port, "-U", SUPERUSER])
                .status()
                .context("failed to run pg_isready")?;
            // pg_isready could reach another server that took the port, so
            // the postmaster.pid of this cluster must name the port as well.
            let ours = self.postmaster_pid_line(3) == Some(u32::from(self.port));
            Ok((status.success() && ours).then_some(true))
        })?;
        if !ready {
            return Ok(Some(process.log_text()));
        }
        tracing::debug!(port = self.port, pid = process.pid(), "postgres ready");
        self.process = Some(process);
        Ok(None)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Returns the `bin` directory of the newest PostgreSQL under `/usr/lib/postgresql`.
fn find_bin_dir() -> Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let entries = std::fs::read_dir(root).with_context(|| {
        format!(
            "failed to read {}; install the Debian package postgresql",
            root.display()
        )
    })?;
    let mut versions: Vec<(u32, PathBuf)> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).with_context(|| {
        format!(
            "no {}/<version>/bin/postgres; install the Debian package postgresql",
            root.display()
        )
    })
}

/// Returns the UID and GID of OS user `name` from `getent passwd`.
fn user_ids(name: &str) -> Result<(u32, u32)> {
    let entry = run_output(Command::new("getent").args(["passwd", name]))
        .with_context(|| format!("OS user {name} not found; install the Debian package postgresql"))?;
    let fields: Vec<&str> = entry.trim().split(':').collect();
    let parse = |index: usize| -> Result<u32> {
        fields
            .get(index)
            .and_then(|field| field.parse().ok())
            .with_context(|| format!("invalid passwd entry for {name}: {entry:?}"))
    };
    Ok((parse(2)?, parse(3)?))
}

fn is_plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_check_accepts_snake_case() {
        assert!(is_plain_identifier("tenant_1"));
        assert!(is_plain_identifier("_x"));
    }

    #[test]
    fn identifier_check_rejects_quotes_and_uppercase() {
        assert!(!is_plain_identifier("a\"b"));
        assert!(!is_plain_identifier("Tenant"));
        assert!(!is_plain_identifier("1abc"));
        assert!(!is_plain_identifier(""));
    }
}
