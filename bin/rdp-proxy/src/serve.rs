//! The `control`, `worker` and `migrate` subcommands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rdp_proxy_control::{Control, ControlConfig};
use rdp_proxy_coord::Coord;
use rdp_proxy_store::Store;
use rdp_proxy_worker::{Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

#[derive(Args, Clone)]
pub(crate) struct DatabaseArgs {
    /// PostgreSQL URL, e.g. postgres://user:password@127.0.0.1:5432/rdp_proxy. Services log in
    /// as a member of the rdp_proxy_service role (see `rdp-proxy migrate --service-login`).
    #[arg(long, env = "RDP_PROXY_DATABASE_URL", hide_env_values = true)]
    pub(crate) database_url: String,
}

#[derive(Args, Clone)]
pub(crate) struct MigrateArgs {
    /// PostgreSQL URL of the login that owns the schema (creates tables and roles).
    #[arg(long, env = "RDP_PROXY_MIGRATE_DATABASE_URL", hide_env_values = true)]
    pub(crate) database_url: String,
    /// Create or update this login role as a member of rdp_proxy_service, for the services.
    #[arg(long)]
    pub(crate) service_login: Option<String>,
    /// Password of --service-login.
    #[arg(
        long,
        env = "RDP_PROXY_SERVICE_PASSWORD",
        hide_env_values = true,
        requires = "service_login"
    )]
    pub(crate) service_password: Option<String>,
}

#[derive(Args, Clone)]
pub(crate) struct CommonArgs {
    #[command(flatten)]
    pub(crate) database: DatabaseArgs,
    /// Redis URL, e.g. redis://127.0.0.1:6379/0.
    #[arg(long, env = "RDP_PROXY_REDIS_URL", hide_env_values = true)]
    pub(crate) redis_url: String,
    /// Secret shared by the control plane and workers for internal requests (at least 16 characters).
    #[arg(long, env = "RDP_PROXY_CLUSTER_SECRET", hide_env_values = true)]
    pub(crate) cluster_secret: String,
}

#[derive(Args, Clone)]
pub(crate) struct ControlArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Address to listen on; port 0 lets the OS choose (the chosen address is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) listen: SocketAddr,
    /// Ed25519 seed that signs access tokens: 32 bytes in standard base64
    /// (`rdp-proxy keygen` prints one).
    #[arg(long, env = "RDP_PROXY_TOKEN_SIGNING_KEY", hide_env_values = true)]
    pub(crate) token_signing_key: String,
    /// Master key that wraps each organisation's credential key: 32 bytes in standard base64.
    #[arg(long, env = "RDP_PROXY_MASTER_KEY", hide_env_values = true)]
    pub(crate) master_key: String,
    /// Bearer token of the operator's cluster API (`/cluster/v1`: nodes, join tokens,
    /// configuration, placement), at least 24 characters; the API is off without it. Never give
    /// it to workers or nodes.
    #[arg(long, env = "RDP_PROXY_OPERATOR_TOKEN", hide_env_values = true)]
    pub(crate) operator_token: Option<String>,
    /// Lifetime of access tokens, in seconds (60–900).
    #[arg(long, default_value_t = 600)]
    pub(crate) access_token_ttl_secs: u64,
    /// Apply migrations at start with this owner login before serving.
    #[arg(long, env = "RDP_PROXY_MIGRATE_DATABASE_URL", hide_env_values = true)]
    pub(crate) migrate_database_url: Option<String>,
    /// Seconds without a worker heartbeat before its sessions become `lost`.
    #[arg(long, default_value_t = 15)]
    pub(crate) lost_grace_secs: u64,
    /// Directory with the portal and viewer pages.
    #[arg(long, env = "RDP_PROXY_WEB_DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../web"))]
    pub(crate) web_dir: PathBuf,
    #[command(flatten)]
    pub(crate) nodes: NodeApiArgs,
}

#[derive(Args, Clone, Default)]
pub(crate) struct NodeApiArgs {
    /// Serve the node API (mutual TLS) that node agents join and report to on this address;
    /// port 0 lets the OS choose (printed on stdout).
    #[arg(long)]
    pub(crate) node_listen: Option<SocketAddr>,
    /// DNS name or IP address agents use to reach the node API (repeatable); defaults to the
    /// --node-listen IP address.
    #[arg(long = "node-api-name")]
    pub(crate) node_api_names: Vec<String>,
    /// Also place sessions on workers started without a node agent (`rdp-proxy worker` alone);
    /// by default they are used only when the node API is off.
    #[arg(long)]
    pub(crate) allow_unmanaged_workers: bool,
    /// Lifetime of node certificates in seconds (30 to 2592000); agents renew after two thirds.
    /// Values under an hour are for tests.
    #[arg(long, default_value_t = 604_800)]
    pub(crate) node_cert_validity_secs: u64,
}

#[derive(Args, Clone)]
pub(crate) struct WorkerArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Address to listen on for viewers and internal requests; port 0 lets the OS choose.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub(crate) listen: SocketAddr,
    /// Base URL browsers use to reach this worker (ws:// or wss://); derived from the listen address when empty.
    #[arg(long, env = "RDP_PROXY_VIEWER_URL", default_value = "")]
    pub(crate) viewer_url: String,
    /// Heartbeat interval in milliseconds; the heartbeat expires after three intervals.
    #[arg(long, default_value_t = 2000)]
    pub(crate) heartbeat_ms: u64,
    /// Limit for opening an RDP connection, in seconds.
    #[arg(long, default_value_t = 15)]
    pub(crate) connect_timeout_secs: u64,
    /// Sessions this worker accepts at most (a node configuration document overrides it).
    #[arg(long, default_value_t = 50)]
    pub(crate) max_sessions: u32,
    /// Node this worker runs on; set by the node agent.
    #[arg(long)]
    pub(crate) node_id: Option<rdp_proxy_core::NodeId>,
    /// Organisation a customer-managed node serves; the worker refuses every other one. Set by
    /// the node agent.
    #[arg(long, requires = "node_id")]
    pub(crate) node_org: Option<rdp_proxy_core::OrgId>,
    /// Configuration document the node agent keeps up to date; re-read on every heartbeat.
    #[arg(long, requires = "node_id")]
    pub(crate) node_config: Option<PathBuf>,
}

impl CommonArgs {
    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.cluster_secret.len() >= 16,
            "--cluster-secret must be at least 16 characters"
        );
        Ok(())
    }

    async fn connect(&self) -> anyhow::Result<(Store, Coord)> {
        self.validate()?;
        let store = Store::connect(&self.database.database_url, 10)
            .await
            .context("could not connect to PostgreSQL (--database-url)")?;
        store
            .check_service_login()
            .await
            .context("--database-url must name a service login")?;
        let coord = Coord::connect(&self.redis_url)
            .await
            .context("could not connect to Redis (--redis-url)")?;
        Ok((store, coord))
    }
}

impl ControlArgs {
    pub(crate) fn config(&self) -> anyhow::Result<ControlConfig> {
        let signing_key = rdp_proxy_secrets::SigningKey::from_seed_base64(&self.token_signing_key)
            .context("--token-signing-key must be 32 bytes in standard base64")?;
        let mut verifying_keys = rdp_proxy_secrets::VerifyingKeys::new();
        verifying_keys.add(signing_key.key_id(), signing_key.public_key());
        anyhow::ensure!(
            (60..=900).contains(&self.access_token_ttl_secs),
            "--access-token-ttl-secs must be between 60 and 900"
        );
        if let Some(token) = &self.operator_token {
            anyhow::ensure!(token.len() >= 24, "--operator-token must be at least 24 characters");
            anyhow::ensure!(
                *token != self.common.cluster_secret,
                "--operator-token must differ from the cluster secret, which workers hold"
            );
        }
        anyhow::ensure!(
            (30..=2_592_000).contains(&self.nodes.node_cert_validity_secs),
            "--node-cert-validity-secs must be between 30 and 2592000"
        );
        anyhow::ensure!(
            self.web_dir.join("index.html").is_file(),
            "--web-dir {} has no index.html",
            self.web_dir.display()
        );
        Ok(ControlConfig {
            listen: self.listen,
            signing_key,
            verifying_keys,
            access_token_ttl: Duration::from_secs(self.access_token_ttl_secs),
            cluster_secret: self.common.cluster_secret.clone(),
            operator_token: self.operator_token.clone(),
            lost_grace: Duration::from_secs(self.lost_grace_secs.max(1)),
            sweep_interval: Duration::from_secs(1),
            web_dir: self.web_dir.clone(),
            node_listen: self.nodes.node_listen,
            node_api_names: self.nodes.node_api_names.clone(),
            node_cert_validity: Duration::from_secs(self.nodes.node_cert_validity_secs),
            allow_unmanaged_workers: self.nodes.allow_unmanaged_workers || self.nodes.node_listen.is_none(),
        })
    }
}

impl ControlArgs {
    pub(crate) fn vault(&self) -> anyhow::Result<rdp_proxy_control::Vault> {
        let master = rdp_proxy_secrets::MasterKey::from_base64(&self.master_key)
            .context("--master-key must be 32 bytes in standard base64")?;
        Ok(rdp_proxy_control::Vault::new(master))
    }
}

impl WorkerArgs {
    pub(crate) fn config(&self) -> anyhow::Result<WorkerConfig> {
        anyhow::ensure!(
            (100..=60_000).contains(&self.heartbeat_ms),
            "--heartbeat-ms must be between 100 and 60000"
        );
        Ok(WorkerConfig {
            listen: self.listen,
            viewer_url: self.viewer_url.trim_end_matches('/').to_owned(),
            internal_url: String::new(),
            cluster_secret: self.common.cluster_secret.clone(),
            heartbeat_interval: Duration::from_millis(self.heartbeat_ms),
            connect_timeout: Duration::from_secs(self.connect_timeout_secs.max(1)),
            max_sessions: self.max_sessions.max(1),
            node: self.node_id,
            node_org: self.node_org,
            node_config: self.node_config.clone(),
            parent: std::env::var(PARENT_PID_ENV).ok().and_then(|raw| raw.parse().ok()),
        })
    }
}

/// Prints the bound address as one JSON line on stdout, for scripts and tests.
fn announce(service: &str, addr: SocketAddr) {
    println!(
        "{}",
        serde_json::json!({ "event": "listening", "service": service, "addr": addr.to_string() })
    );
}

pub(crate) async fn control(args: ControlArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let vault = args.vault()?;
    if let Some(url) = &args.migrate_database_url {
        migrate_schema(url, None).await?;
    }
    let (store, coord) = args.common.connect().await?;
    let sealed = vault
        .seal_legacy(&store)
        .await
        .context("could not encrypt credentials stored in clear")?;
    if sealed > 0 {
        tracing::info!(count = sealed, "Encrypted credentials stored by an earlier version");
    }
    let control = Control::bind(config, store, coord, vault)
        .await
        .context("could not start the control plane")?;
    announce("control", control.local_addr()?);
    if let Some(addr) = control.node_api_addr() {
        println!(
            "{}",
            serde_json::json!({ "event": "listening", "service": "node-api", "addr": addr?.to_string(), "ca_fingerprint": control.ca_fingerprint() })
        );
    }
    let shutdown = shutdown_on_signal();
    control.run(shutdown).await?;
    Ok(())
}

pub(crate) async fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let (store, coord) = args.common.connect().await?;
    let worker = Worker::bind(config, store, coord).await?;
    announce("worker", worker.local_addr()?);
    let shutdown = shutdown_on_signal();
    worker.run(shutdown).await?;
    Ok(())
}

pub(crate) async fn migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let login = match (&args.service_login, &args.service_password) {
        (Some(name), Some(password)) => Some((name.as_str(), password.as_str())),
        (Some(_), None) => anyhow::bail!("--service-login needs --service-password or RDP_PROXY_SERVICE_PASSWORD"),
        _ => None,
    };
    migrate_schema(&args.database_url, login).await
}

/// Applies migrations as the schema owner and, when asked, creates or updates a service login.
pub(crate) async fn migrate_schema(owner_url: &str, service_login: Option<(&str, &str)>) -> anyhow::Result<()> {
    let store = Store::connect(owner_url, 2)
        .await
        .context("could not connect to PostgreSQL as the schema owner")?;
    store.migrate().await.context("could not apply database migrations")?;
    if let Some((name, password)) = service_login {
        anyhow::ensure!(
            password.len() >= 12,
            "the service login's password must be at least 12 characters"
        );
        store
            .ensure_service_login(name, password)
            .await
            .with_context(|| format!("could not create the service login {name}"))?;
    }
    tracing::info!("Migrations applied");
    Ok(())
}

/// A token cancelled on SIGINT or SIGTERM.
pub(crate) fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(error = %error, "Could not listen for SIGTERM; only Ctrl-C stops the process");
                let _ = tokio::signal::ctrl_c().await;
                cancel.cancel();
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("Shutdown requested");
        cancel.cancel();
    });
    token
}

/// Environment variable naming the PID of the process that supervises the worker (the node
/// agent, or `rdp-proxy dev`); once it is gone the worker takes no new sessions and exits when
/// the ones it holds have ended.
pub(crate) const PARENT_PID_ENV: &str = "RDP_PROXY_EXIT_WITH_PARENT";
