//! Private PostgreSQL and Redis servers started from the system's binaries, for `rdp-proxy dev`.
//! Data persists in the data directory between runs; ports are chosen by the OS at each start.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// OS user that owns the PostgreSQL data when running as root, because PostgreSQL refuses root.
const PG_OS_USER: &str = "postgres";
pub(crate) const DB_NAME: &str = "rdp_proxy";
const DB_USER: &str = "rdp_proxy";

pub(crate) struct LocalPostgres {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    port: u16,
    password: String,
}

impl LocalPostgres {
    /// Initialises the cluster on first use, then starts it (or reuses one already running on
    /// the same data directory).
    pub(crate) async fn start(root: &Path, password: &str) -> anyhow::Result<Self> {
        let bin_dir = find_pg_bin_dir()?;
        let data_dir = root.join("postgres");
        let socket_dir = root.join("postgres-socket");
        let as_root = is_root();
        for dir in [&data_dir, &socket_dir] {
            std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
            if as_root {
                run(Command::new("chown").arg(PG_OS_USER).arg(dir)).await?;
            }
        }
        if as_root {
            let reachable = Command::new("runuser")
                .args(["-u", PG_OS_USER, "--", "test", "-w"])
                .arg(&data_dir)
                .status()
                .await?;
            if !reachable.success() {
                bail!(
                    "the '{PG_OS_USER}' OS user cannot reach {}; choose a --data-dir whose parent folders are world-executable (for example under /var/tmp)",
                    data_dir.display()
                );
            }
        }
        let server = Self {
            bin_dir,
            data_dir,
            port: 0,
            password: password.to_owned(),
        };
        if !server.data_dir.join("PG_VERSION").exists() {
            server.initdb(root).await?;
        }
        let port = match server.running_port() {
            Some(port) => port,
            None => server.launch(&socket_dir, root).await?,
        };
        Ok(Self { port, ..server })
    }

    pub(crate) fn url(&self) -> String {
        format!(
            "postgres://{DB_USER}:{}@127.0.0.1:{}/{DB_NAME}",
            self.password, self.port
        )
    }

    /// URL of the product database for another login on this server.
    pub(crate) fn url_as(&self, user: &str, password: &str) -> String {
        format!("postgres://{user}:{password}@127.0.0.1:{}/{DB_NAME}", self.port)
    }

    fn admin_url(&self) -> String {
        format!(
            "postgres://{DB_USER}:{}@127.0.0.1:{}/postgres",
            self.password, self.port
        )
    }

    /// Creates the product database if it does not exist yet.
    pub(crate) async fn ensure_database(&self) -> anyhow::Result<()> {
        let store = rdp_proxy_store::Store::connect(&self.admin_url(), 1).await?;
        store.ensure_database(DB_NAME).await?;
        Ok(())
    }

    pub(crate) async fn stop(&self) {
        let mut command = self.pg_command("pg_ctl");
        command.arg("-D").arg(&self.data_dir).args(["-m", "fast", "-w", "stop"]);
        if let Err(error) = run(&mut command).await {
            tracing::warn!(error = %error, "Could not stop PostgreSQL");
        }
    }

    async fn initdb(&self, root: &Path) -> anyhow::Result<()> {
        let password_file = root.join("postgres-password");
        std::fs::write(&password_file, &self.password)?;
        if is_root() {
            run(Command::new("chown").arg(PG_OS_USER).arg(&password_file)).await?;
        }
        let mut command = self.pg_command("initdb");
        command
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-U", DB_USER, "--auth=scram-sha-256", "-E", "UTF8", "--no-instructions"])
            .arg(format!("--pwfile={}", password_file.display()));
        let result = run(&mut command).await;
        let _ = std::fs::remove_file(&password_file);
        result.context("initdb failed")
    }

    async fn launch(&self, socket_dir: &Path, root: &Path) -> anyhow::Result<u16> {
        let port = free_port()?;
        let options = format!("-p {port} -k {} -c listen_addresses=127.0.0.1", socket_dir.display());
        let log = root.join("postgres.log");
        if is_root() && !log.exists() {
            std::fs::write(&log, "")?;
            run(Command::new("chown").arg(PG_OS_USER).arg(&log)).await?;
        }
        let mut command = self.pg_command("pg_ctl");
        command
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &options, "start"]);
        run(&mut command)
            .await
            .with_context(|| format!("PostgreSQL did not start; see {}", log.display()))?;
        Ok(port)
    }

    /// Port of a postmaster already running on this data directory, read from `postmaster.pid`.
    fn running_port(&self) -> Option<u16> {
        let pid_file = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        let mut lines = pid_file.lines();
        let pid: i32 = lines.next()?.trim().parse().ok()?;
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return None;
        }
        lines.nth(2)?.trim().parse().ok()
    }

    fn pg_command(&self, program: &str) -> Command {
        let binary = self.bin_dir.join(program);
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", PG_OS_USER, "--"]).arg(binary);
            command
        } else {
            Command::new(binary)
        }
    }
}

/// Settings of the private Redis server; each [`LocalRedis::spawn`] starts a fresh, empty one on
/// the same port, so clients reconnect to the same URL after a restart.
pub(crate) struct LocalRedis {
    dir: PathBuf,
    port: u16,
    password: String,
}

impl LocalRedis {
    pub(crate) fn new(root: &Path, password: &str) -> anyhow::Result<Self> {
        let dir = root.join("redis");
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            port: free_port()?,
            password: password.to_owned(),
        })
    }

    /// Starts redis-server and waits until it listens; the child is killed when dropped.
    pub(crate) async fn spawn(&self) -> anyhow::Result<Child> {
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--requirepass", &self.password])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("could not start redis-server; install the redis-server package")?;
        wait_for_port(self.port, Duration::from_secs(20))
            .await
            .context("redis-server did not start listening")?;
        Ok(child)
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://:{}@127.0.0.1:{}/0", self.password, self.port)
    }
}

fn find_pg_bin_dir() -> anyhow::Result<PathBuf> {
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (no /usr/lib/postgresql); install the postgresql package")?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    candidates.sort();
    candidates
        .pop()
        .map(|(_, bin)| bin)
        .context("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
}

pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .map(|line| line.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

pub(crate) async fn wait_for_port(port: u16, limit: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("nothing listens on 127.0.0.1:{port} after {} s", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .await
        .context("could not run a PostgreSQL tool")?;
    if !output.status.success() {
        bail!(
            "{:?} failed: {}",
            command.as_std().get_program(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
