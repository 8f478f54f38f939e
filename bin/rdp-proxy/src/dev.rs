//! `rdp-proxy dev`: the embedded default. One command starts a private PostgreSQL and Redis in a
//! data directory, applies migrations, seeds a demo organisation with a member, an admin and
//! (when given) a demo RDP target, runs a worker as a child process and the control plane in
//! this process, and prints the URL and the credentials.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use clap::Args;
use rand::RngCore;
use rdp_proxy_control::Control;
use rdp_proxy_coord::Coord;
use rdp_proxy_core::access::Role;
use rdp_proxy_store::{NewTarget, Store};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

use crate::local::{LocalPostgres, LocalRedis};
use crate::serve::{CommonArgs, ControlArgs, DatabaseArgs};
use crate::supervise::{lock_data_dir, stop_stale, supervise, wait_until_listening};

#[derive(Args)]
pub(crate) struct DevArgs {
    /// Directory for the database, Redis and generated secrets; kept between runs.
    #[arg(long, default_value = ".dev")]
    data_dir: PathBuf,
    /// Address of the portal and API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Register a demo RDP target at HOST:PORT (for example the one `scripts/demo-target.sh` starts).
    #[arg(long)]
    demo_target: Option<String>,
    /// User name on the demo target.
    #[arg(long, default_value = "demo")]
    demo_target_user: String,
    /// Password on the demo target.
    #[arg(
        long,
        env = "RDP_PROXY_DEMO_TARGET_PASSWORD",
        default_value = "demo-desktop",
        hide_env_values = true
    )]
    demo_target_password: String,
    /// Security mode of the demo target: auto, tls or nla.
    #[arg(long, default_value = "nla")]
    demo_target_security: String,
    /// Directory with the portal and viewer pages.
    #[arg(long, env = "RDP_PROXY_WEB_DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../web"))]
    web_dir: PathBuf,
}

/// Login the services use; a member of rdp_proxy_service, so row-level security applies.
const SERVICE_LOGIN: &str = "rdp_proxy_app";

/// Secrets generated on the first run and reused afterwards. Fields added by later versions
/// are generated when an older file lacks them.
#[derive(Serialize, Deserialize)]
struct DevSecrets {
    database_password: String,
    redis_password: String,
    cluster_secret: String,
    member_password: String,
    admin_password: String,
    #[serde(default = "new_password")]
    service_password: String,
    #[serde(default = "new_signing_key")]
    token_signing_key: String,
    #[serde(default = "new_master_key")]
    master_key: String,
    #[serde(default = "new_operator_token")]
    operator_token: String,
}

fn new_operator_token() -> String {
    random_hex(24)
}

fn new_password() -> String {
    random_hex(16)
}

fn new_signing_key() -> String {
    rdp_proxy_secrets::SigningKey::generate().1
}

fn new_master_key() -> String {
    rdp_proxy_secrets::MasterKey::generate().1
}

impl DevSecrets {
    fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        if let Ok(raw) = std::fs::read_to_string(path) {
            let secrets: Self = serde_json::from_str(&raw)
                .with_context(|| format!("{} is unreadable; delete it to regenerate", path.display()))?;
            // Keep values generated for fields the file did not have yet.
            std::fs::write(path, serde_json::to_string_pretty(&secrets)?)?;
            restrict_to_owner(path)?;
            return Ok(secrets);
        }
        let secrets = Self {
            database_password: random_hex(16),
            redis_password: random_hex(16),
            cluster_secret: random_hex(24),
            member_password: random_hex(6),
            admin_password: random_hex(6),
            service_password: new_password(),
            token_signing_key: new_signing_key(),
            master_key: new_master_key(),
            operator_token: new_operator_token(),
        };
        std::fs::write(path, serde_json::to_string_pretty(&secrets)?)?;
        restrict_to_owner(path)?;
        Ok(secrets)
    }
}

pub(crate) async fn run(args: DevArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("could not create {}", args.data_dir.display()))?;
    let root = std::fs::canonicalize(&args.data_dir)?;
    let _lock = lock_data_dir(&root)?;
    if crate::local::is_root() {
        // PostgreSQL runs as another OS user and must traverse this directory.
        set_mode(&root, 0o755)?;
    }
    let secrets = DevSecrets::load_or_create(&root.join("secrets.json"))?;
    let postgres = LocalPostgres::start(&root, &secrets.database_password).await?;
    let result = serve(&args, &root, &secrets, &postgres).await;
    postgres.stop().await;
    result
}

async fn serve(args: &DevArgs, root: &Path, secrets: &DevSecrets, postgres: &LocalPostgres) -> anyhow::Result<()> {
    postgres.ensure_database().await?;
    let shutdown = crate::serve::shutdown_on_signal();
    let redis = LocalRedis::new(root, &secrets.redis_password)?;
    let redis_pid = root.join("redis.pid");
    stop_stale(&redis_pid, &redis.dir().display().to_string()).await;
    let first_redis = redis.spawn().await?;
    crate::serve::migrate_schema(&postgres.url(), Some((SERVICE_LOGIN, &secrets.service_password))).await?;
    let common = CommonArgs {
        database: DatabaseArgs {
            database_url: postgres.url_as(SERVICE_LOGIN, &secrets.service_password),
        },
        redis_url: redis.url(),
        cluster_secret: secrets.cluster_secret.clone(),
    };
    let store = Store::connect(&common.database.database_url, 10).await?;
    let control_args = ControlArgs {
        common: common.clone(),
        listen: args.listen,
        token_signing_key: secrets.token_signing_key.clone(),
        master_key: secrets.master_key.clone(),
        operator_token: Some(secrets.operator_token.clone()),
        access_token_ttl_secs: 600,
        lost_grace_secs: 15,
        web_dir: args.web_dir.clone(),
        migrate_database_url: None,
        nodes: crate::serve::NodeApiArgs {
            node_listen: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
            node_api_names: Vec::new(),
            node_cert_validity_secs: 604_800,
            // Without the agent binary the worker runs alone (see `spawn_node`).
            allow_unmanaged_workers: !std::env::current_exe()?.with_file_name("rdp-proxy-agent").is_file(),
        },
    };
    let vault = control_args.vault()?;
    seed(&store, &vault, args, secrets).await?;
    let redis_task = tokio::spawn({
        let shutdown = shutdown.clone();
        let mut first = Some(first_redis);
        async move {
            supervise("redis-server", redis_pid, shutdown, || {
                let ready = first.take();
                let redis = &redis;
                async move {
                    match ready {
                        Some(child) => Ok(child),
                        None => redis.spawn().await,
                    }
                }
            })
            .await
        }
    });
    let coord = Coord::connect(&common.redis_url).await?;
    let control = match Control::bind(control_args.config()?, store, coord, vault).await {
        Ok(control) => control,
        Err(error) => {
            shutdown.cancel();
            let _ = redis_task.await;
            return Err(anyhow::Error::new(error).context(format!(
                "could not start the control plane on {}; pass --listen with a free address",
                args.listen
            )));
        }
    };
    let node_api = control.node_api_addr().transpose()?;
    let worker_task = spawn_node(root, &common, &control, node_api, &shutdown).await?;
    print_banner(control.local_addr()?, node_api, args, secrets, root);
    let result = control.run(shutdown.clone()).await.map_err(Into::into);
    shutdown.cancel();
    let _ = worker_task.await;
    let _ = redis_task.await;
    result
}

async fn seed(
    store: &Store,
    vault: &rdp_proxy_control::Vault,
    args: &DevArgs,
    secrets: &DevSecrets,
) -> anyhow::Result<()> {
    // Existing demo users keep the password they may have changed in the portal.
    crate::admin::add_user(
        store,
        "default",
        "demo",
        Some(&secrets.member_password),
        Role::Member,
        false,
    )
    .await?;
    crate::admin::add_user(
        store,
        "default",
        "admin",
        Some(&secrets.admin_password),
        Role::Owner,
        false,
    )
    .await?;
    if let Some(address) = &args.demo_target {
        let (host, port) = address.rsplit_once(':').context("--demo-target must be HOST:PORT")?;
        let port: u16 = port.parse().context("--demo-target port must be a number")?;
        let org = store.ensure_org("default").await?;
        let login = crate::admin::TargetLogin {
            username: args.demo_target_user.clone(),
            password: args.demo_target_password.clone(),
            domain: None,
        };
        let target = NewTarget {
            name: "demo-desktop".into(),
            host: host.to_owned(),
            port,
            security: args.demo_target_security.clone(),
            labels: [("env".to_owned(), "demo".to_owned())].into(),
            max_width: None,
            max_height: None,
            credential_id: uuid::Uuid::nil(),
            cert_sha256: None,
        };
        crate::admin::add_target(store, vault, org, target, &login).await?;
    }
    Ok(())
}

/// Runs this machine's node: `rdp-proxy-agent` (beside this binary) joined to the embedded
/// control plane, which runs the worker. The agent keeps its identity in `<data dir>/agent`, so
/// later runs need no new token. Without the agent binary or the node API, the worker runs
/// directly as a node-less platform worker.
async fn spawn_node(
    root: &Path,
    common: &CommonArgs,
    control: &Control,
    node_api: Option<std::net::SocketAddr>,
    shutdown: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let agent_binary = std::env::current_exe()?.with_file_name("rdp-proxy-agent");
    let worker_pid = root.join("worker.pid");
    stop_stale(&worker_pid, "rdp-proxy").await;
    let agent_pid = root.join("agent.pid");
    stop_stale(&agent_pid, "rdp-proxy-agent").await;
    let Some(node_api) = node_api.filter(|_| agent_binary.is_file()) else {
        tracing::warn!(agent = %agent_binary.display(), "No node agent binary; running the worker without a node");
        let (shutdown, common) = (shutdown.clone(), common.clone());
        return Ok(tokio::spawn(async move {
            supervise("worker", worker_pid, shutdown, || spawn_worker(&common)).await
        }));
    };
    let agent_dir = root.join("agent");
    let token = if agent_dir.join("node.json").is_file() {
        None
    } else {
        Some(
            control
                .platform_join_token(std::time::Duration::from_secs(600), "rdp-proxy dev")
                .await
                .context("could not create a join token for the local node")?,
        )
    };
    let node = LocalNode {
        agent_binary,
        control_url: format!("https://{node_api}"),
        data_dir: agent_dir,
        token,
        common: common.clone(),
    };
    let shutdown = shutdown.clone();
    Ok(tokio::spawn(async move {
        supervise("node agent", agent_pid, shutdown, || node.spawn()).await
    }))
}

/// How to start the local node agent.
struct LocalNode {
    agent_binary: PathBuf,
    control_url: String,
    data_dir: PathBuf,
    /// Join token for the first start; ignored once the agent has an identity.
    token: Option<String>,
    common: CommonArgs,
}

impl LocalNode {
    async fn spawn(&self) -> anyhow::Result<Child> {
        let mut command = Command::new(&self.agent_binary);
        command
            .args(["--control-url", &self.control_url, "--name", "local"])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("RDP_PROXY_DATABASE_URL", &self.common.database.database_url)
            .env("RDP_PROXY_REDIS_URL", &self.common.redis_url)
            .env("RDP_PROXY_CLUSTER_SECRET", &self.common.cluster_secret)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(token) = &self.token
            && !self.data_dir.join("node.json").is_file()
        {
            command.env("RDP_PROXY_JOIN_TOKEN", token);
        }
        command.spawn().context("could not start the node agent")
    }
}

/// Starts `rdp-proxy worker` as a child process and waits until it listens. The worker exits
/// by itself if this process dies, so a killed `dev` leaves no worker behind.
async fn spawn_worker(common: &CommonArgs) -> anyhow::Result<Child> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("worker")
        .env("RDP_PROXY_DATABASE_URL", &common.database.database_url)
        .env("RDP_PROXY_REDIS_URL", &common.redis_url)
        .env("RDP_PROXY_CLUSTER_SECRET", &common.cluster_secret)
        .env(crate::serve::PARENT_PID_ENV, std::process::id().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("could not start the worker process")?;
    wait_until_listening(&mut child, "worker").await?;
    Ok(child)
}

fn print_banner(
    addr: std::net::SocketAddr,
    node_api: Option<std::net::SocketAddr>,
    args: &DevArgs,
    secrets: &DevSecrets,
    root: &Path,
) {
    println!();
    println!("rdp-proxy dev is running");
    println!("  Portal:       http://{addr}/");
    println!("  Member login: demo / {}", secrets.member_password);
    println!("  Owner login:  admin / {}", secrets.admin_password);
    match &args.demo_target {
        Some(target) => println!("  Demo desktop: demo-desktop at {target}"),
        None => println!("  No demo desktop registered; pass --demo-target HOST:PORT or use scripts/demo.sh"),
    }
    println!("  API:          http://{addr}/api/openapi.json");
    if let Some(node_api) = node_api {
        println!(
            "  Node API:     https://{node_api} (local node agent in {})",
            root.join("agent").display()
        );
        println!("  Cluster API:  rdp-proxy cluster … with RDP_PROXY_OPERATOR_TOKEN from secrets.json");
    }
    println!("  Data:         {} (credentials in secrets.json)", root.display());
    println!("Press Ctrl-C to stop.");
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buffer);
    hex::encode(buffer)
}

fn restrict_to_owner(path: &Path) -> std::io::Result<()> {
    set_mode(path, 0o600)
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}
