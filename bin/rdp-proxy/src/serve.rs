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
    /// PostgreSQL URL, e.g. postgres://user:password@127.0.0.1:5432/rdp_proxy.
    #[arg(long, env = "RDP_PROXY_DATABASE_URL")]
    pub(crate) database_url: String,
}

#[derive(Args, Clone)]
pub(crate) struct CommonArgs {
    #[command(flatten)]
    pub(crate) database: DatabaseArgs,
    /// Redis URL, e.g. redis://127.0.0.1:6379/0.
    #[arg(long, env = "RDP_PROXY_REDIS_URL")]
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
    /// Key that signs access tokens, as 64 or more hex digits.
    #[arg(long, env = "RDP_PROXY_TOKEN_SECRET", hide_env_values = true)]
    pub(crate) token_secret: String,
    /// Lifetime of access tokens, in seconds (max 900).
    #[arg(long, default_value_t = 900)]
    pub(crate) access_token_ttl_secs: u64,
    /// Seconds without a worker heartbeat before its sessions become `lost`.
    #[arg(long, default_value_t = 15)]
    pub(crate) lost_grace_secs: u64,
    /// Directory with the portal and viewer pages.
    #[arg(long, env = "RDP_PROXY_WEB_DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../web"))]
    pub(crate) web_dir: PathBuf,
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
        let coord = Coord::connect(&self.redis_url)
            .await
            .context("could not connect to Redis (--redis-url)")?;
        Ok((store, coord))
    }
}

impl ControlArgs {
    pub(crate) fn config(&self) -> anyhow::Result<ControlConfig> {
        let token_secret = hex::decode(self.token_secret.trim()).context("--token-secret must be hex digits")?;
        anyhow::ensure!(
            token_secret.len() >= 32,
            "--token-secret must be at least 64 hex digits (32 bytes)"
        );
        anyhow::ensure!(
            (60..=900).contains(&self.access_token_ttl_secs),
            "--access-token-ttl-secs must be between 60 and 900"
        );
        anyhow::ensure!(
            self.web_dir.join("index.html").is_file(),
            "--web-dir {} has no index.html",
            self.web_dir.display()
        );
        Ok(ControlConfig {
            listen: self.listen,
            token_secret,
            access_token_ttl: Duration::from_secs(self.access_token_ttl_secs),
            cluster_secret: self.common.cluster_secret.clone(),
            lost_grace: Duration::from_secs(self.lost_grace_secs.max(1)),
            sweep_interval: Duration::from_secs(1),
            web_dir: self.web_dir.clone(),
        })
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
    let (store, coord) = args.common.connect().await?;
    store.migrate().await.context("could not apply database migrations")?;
    let control = Control::bind(config, store, coord)
        .await
        .context("could not bind --listen")?;
    announce("control", control.local_addr()?);
    let shutdown = shutdown_on_signal();
    control.run(shutdown).await?;
    Ok(())
}

pub(crate) async fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let (store, coord) = args.common.connect().await?;
    let worker = Worker::bind(config, store, coord)
        .await
        .context("could not bind --listen")?;
    announce("worker", worker.local_addr()?);
    let shutdown = shutdown_on_signal();
    exit_with_parent(&shutdown);
    worker.run(shutdown).await?;
    Ok(())
}

pub(crate) async fn migrate(args: DatabaseArgs) -> anyhow::Result<()> {
    let store = Store::connect(&args.database_url, 2)
        .await
        .context("could not connect to PostgreSQL")?;
    store.migrate().await.context("could not apply database migrations")?;
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

/// Environment variable naming the PID whose death stops this process; `rdp-proxy dev` sets it
/// for its worker.
pub(crate) const PARENT_PID_ENV: &str = "RDP_PROXY_EXIT_WITH_PARENT";

/// Cancels `shutdown` once the parent named in [`PARENT_PID_ENV`] is gone (the process is then
/// re-parented), checking every second.
fn exit_with_parent(shutdown: &CancellationToken) {
    let Some(parent) = std::env::var(PARENT_PID_ENV)
        .ok()
        .and_then(|raw| raw.parse::<u32>().ok())
    else {
        return;
    };
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticker.tick().await;
            if std::os::unix::process::parent_id() != parent {
                tracing::warn!(parent, "Parent process is gone; shutting down");
                shutdown.cancel();
                return;
            }
        }
    });
}
