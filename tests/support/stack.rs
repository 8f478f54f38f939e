//! A complete rdp-proxy deployment on loopback: PostgreSQL, Redis, one control plane and any
//! number of worker processes, each a real `rdp-proxy` process on an OS-chosen port.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdp_proxy_testkit::{Postgres, ProcessGuard, Redis};

pub const CLUSTER_SECRET: &str = "e2e-cluster-secret-0123456789";
/// Bearer token of the operator's cluster API; workers and agents never get it.
pub const OPERATOR_TOKEN: &str = "e2e-operator-token-0123456789abcdef";
/// Ed25519 seed and master key used by every test stack (standard base64 of 32 bytes).
pub const TOKEN_SIGNING_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub const MASTER_KEY: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
/// Login the services use; only a member of the rdp_proxy_service role.
pub const SERVICE_LOGIN: &str = "rdp_proxy_app";
pub const SERVICE_PASSWORD: &str = "service-password-e2e";

/// One `rdp-proxy` service process and the address it announced.
pub struct Service {
    pub process: ProcessGuard,
    pub addr: String,
}

/// Fields drop in declaration order: the services stop before the databases they use.
pub struct Stack {
    pub control: Service,
    pub workers: Vec<Service>,
    pub env: Env,
    pub redis: Redis,
    pub postgres: Postgres,
    dir: tempfile::TempDir,
}

impl Stack {
    /// Starts everything with one worker. Blocks until both services listen.
    pub fn start(binary: &Path) -> Result<Self> {
        let mut stack = Self::start_without_workers(binary, &[])?;
        stack.add_worker()?;
        Ok(stack)
    }

    /// Starts the databases and a control plane that also serves the node API, with no
    /// worker: node agents bring their own. Node certificates last 45 s, so agents renew them
    /// after 30 s, within a test.
    pub fn start_cluster(binary: &Path) -> Result<Self> {
        Self::start_without_workers(
            binary,
            &["--node-listen", "127.0.0.1:0", "--node-cert-validity-secs", "45"],
        )
    }

    fn start_without_workers(binary: &Path, control_args: &[&str]) -> Result<Self> {
        let postgres = Postgres::start()?;
        let owner_url = postgres.create_database("rdp_proxy")?;
        let redis = Redis::start()?;
        let dir = tempfile::Builder::new().prefix("rdp-proxy-e2e-").tempdir()?;
        let database_url = owner_url.replace("postgres@", &format!("{SERVICE_LOGIN}:{SERVICE_PASSWORD}@"));
        let env = Env {
            binary: binary.to_path_buf(),
            database_url,
            owner_url,
            redis_url: redis.url(),
        };
        env.migrate()?;
        let mut args = vec!["--listen", "127.0.0.1:0"];
        args.extend_from_slice(control_args);
        let control = env.spawn_control(dir.path(), &args, "control.log")?;
        Ok(Self {
            env,
            postgres,
            redis,
            control,
            workers: Vec::new(),
            dir,
        })
    }

    /// Address of the node API, from the control plane's second `listening` line.
    pub fn node_api_addr(&self) -> Result<String> {
        let text = self.control.process.log_text();
        let line = text
            .lines()
            .find(|line| line.contains("\"service\":\"node-api\""))
            .context("the control plane announced no node API")?;
        let value: serde_json::Value = serde_json::from_str(line)?;
        value["addr"]
            .as_str()
            .map(str::to_owned)
            .context("node-api line without addr")
    }

    /// Stops the control plane and starts it again on the same addresses.
    pub fn restart_control(&mut self) -> Result<()> {
        let node_api = self.node_api_addr().ok();
        self.control.process.stop();
        let listen = self.control.addr.clone();
        let mut args = vec!["--listen", listen.as_str()];
        if let Some(addr) = &node_api {
            args.extend_from_slice(&["--node-listen", addr.as_str(), "--node-cert-validity-secs", "45"]);
        }
        self.control = self
            .env
            .spawn_control(self.dir.path(), &args, "control-restarted.log")?;
        Ok(())
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.control.addr)
    }

    pub fn log_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts one more worker process and returns its index in `workers`.
    pub fn add_worker(&mut self) -> Result<usize> {
        let index = self.workers.len();
        let mut command = self.env.base_command("worker");
        command.args([
            "--listen",
            "127.0.0.1:0",
            "--heartbeat-ms",
            "500",
            "--connect-timeout-secs",
            "8",
        ]);
        let service = spawn_service(
            "worker",
            &mut command,
            &self.dir.path().join(format!("worker-{index}.log")),
        )?;
        self.workers.push(service);
        Ok(index)
    }

    /// Runs `rdp-proxy admin ARGS` and returns its JSON output.
    pub fn admin(&self, args: &[&str]) -> Result<serde_json::Value> {
        let output = self.env.base_command("admin").args(args).output()?;
        if !output.status.success() {
            bail!("admin {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    pub fn add_user(&self, name: &str, password: &str, role: &str) -> Result<()> {
        self.admin(&["user-add", "--name", name, "--password", password, "--role", role])?;
        Ok(())
    }

    /// Creates the user if needed and gives it `role` in organisation `org` (a name, created
    /// when missing).
    pub fn add_user_in(&self, org: &str, name: &str, password: &str, role: &str) -> Result<()> {
        self.admin(&[
            "user-add",
            "--org",
            org,
            "--name",
            name,
            "--password",
            password,
            "--role",
            role,
        ])?;
        Ok(())
    }

    /// Registers a target in organisation `org` and returns its id.
    pub fn add_target_in(
        &self,
        org: &str,
        name: &str,
        port: u16,
        security: &str,
        user: &str,
        password: &str,
    ) -> Result<String> {
        let port = port.to_string();
        let value = self.admin(&[
            "target-add",
            "--org",
            org,
            "--name",
            name,
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--security",
            security,
            "--username",
            user,
            "--password",
            password,
        ])?;
        value["target_id"]
            .as_str()
            .map(str::to_owned)
            .context("target-add printed no target_id")
    }

    /// Registers a target and returns its id.
    pub fn add_target(&self, name: &str, port: u16, security: &str, user: &str, password: &str) -> Result<String> {
        let port = port.to_string();
        let value = self.admin(&[
            "target-add",
            "--name",
            name,
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--security",
            security,
            "--username",
            user,
            "--password",
            password,
        ])?;
        value["target_id"]
            .as_str()
            .map(str::to_owned)
            .context("target-add printed no target_id")
    }

    /// Everything the services logged so far, for failure messages and secret checks.
    pub fn logs(&self) -> String {
        let mut text = self.control.process.log_text();
        for worker in &self.workers {
            text.push_str(&worker.process.log_text());
        }
        text
    }
}

/// How to run the binary against this stack's databases.
pub struct Env {
    pub binary: PathBuf,
    /// The services' login.
    pub database_url: String,
    /// The schema owner's login (a superuser in tests).
    pub owner_url: String,
    pub redis_url: String,
}

impl Env {
    pub fn base_command(&self, subcommand: &str) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .arg(subcommand)
            .env("RDP_PROXY_DATABASE_URL", &self.database_url)
            .env("RDP_PROXY_REDIS_URL", &self.redis_url)
            .env("RDP_PROXY_CLUSTER_SECRET", CLUSTER_SECRET)
            .env("RDP_PROXY_MASTER_KEY", MASTER_KEY)
            .env("RDP_PROXY_LOG", "info,rdp_proxy_worker=debug");
        command
    }

    fn migrate(&self) -> Result<()> {
        let output = self
            .base_command("migrate")
            .args(["--database-url", &self.owner_url, "--service-login", SERVICE_LOGIN])
            .env("RDP_PROXY_SERVICE_PASSWORD", SERVICE_PASSWORD)
            .output()?;
        if !output.status.success() {
            bail!("migrate failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(())
    }

    fn spawn_control(&self, dir: &Path, args: &[&str], log: &str) -> Result<Service> {
        let mut command = self.base_command("control");
        command
            .args(args)
            .args(["--lost-grace-secs", "3"])
            .env("RDP_PROXY_TOKEN_SIGNING_KEY", TOKEN_SIGNING_KEY)
            .env("RDP_PROXY_OPERATOR_TOKEN", OPERATOR_TOKEN)
            .env("RDP_PROXY_WEB_DIR", web_dir());
        spawn_service("control", &mut command, &dir.join(log))
    }
}

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("web")
}

/// Spawns a service and waits for its `listening` line (printed on stdout, logged to `log`).
fn spawn_service(name: &str, command: &mut Command, log: &Path) -> Result<Service> {
    let mut process = ProcessGuard::spawn_logged(name, command, log)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = process.log_text();
        if let Some(line) = text.lines().find(|line| line.contains("\"event\":\"listening\"")) {
            let value: serde_json::Value = serde_json::from_str(line)?;
            let addr = value["addr"]
                .as_str()
                .context("listening line without addr")?
                .to_owned();
            return Ok(Service { process, addr });
        }
        process
            .ensure_running()
            .with_context(|| format!("{name} exited during start-up:\n{text}"))?;
        if Instant::now() > deadline {
            bail!("{name} did not announce its address within 60 s:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
