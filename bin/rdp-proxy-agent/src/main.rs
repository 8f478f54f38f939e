//! `rdp-proxy-agent`: the node agent. It joins the cluster, reports to the control plane and
//! runs the worker when enabled. Logic lives in the `rdp-proxy-agent` library; this file only
//! parses arguments, sets up logging and signals, and maps the outcome to an exit code.
//!
//! Exit codes: 0 after SIGTERM or SIGINT, 1 on a startup failure (including a rejected join),
//! 2 on invalid arguments, 3 when the control plane revoked the node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use rdp_proxy_agent::{AgentError, AgentOptions, EXIT_REVOKED, OrgId, Outcome};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "rdp-proxy-agent",
    version,
    about = "Join this machine to an rdp-proxy cluster, report its capabilities and run the services the control plane enables"
)]
struct Args {
    /// Base URL of the control plane's node API, e.g. https://HOST:PORT.
    #[arg(long, value_name = "URL")]
    control_url: String,

    /// Directory for the node's key, certificates, node.json and worker configuration; created
    /// with mode 0700 if missing.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,

    /// Single-use join token from the control plane; needed only while the data directory has
    /// no identity.
    #[arg(long, env = "RDP_PROXY_JOIN_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    join_token: Option<String>,

    /// Node name to request at join [default: the host name].
    #[arg(long)]
    name: Option<String>,

    /// Organisation this node must belong to; the join is rejected if the token is for another.
    #[arg(long, value_name = "ORG_UUID")]
    org: Option<OrgId>,

    /// Label sent at join, as key=value; repeat for several.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = rdp_proxy_agent::parse_label)]
    labels: Vec<(String, String)>,

    /// The rdp-proxy binary that runs the worker [default: rdp-proxy beside this executable].
    #[arg(long, value_name = "PATH")]
    worker_bin: Option<PathBuf>,

    /// Address the worker listens on for viewers and the control plane.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    worker_listen: SocketAddr,

    /// Public base URL of the worker's viewer endpoint, passed to the worker as --viewer-url.
    #[arg(long, value_name = "URL")]
    worker_viewer_url: Option<String>,

    /// Report no RDP capability, so the control plane never runs a worker here.
    #[arg(long)]
    no_rdp: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    let options = AgentOptions {
        control_url: args.control_url,
        data_dir: args.data_dir,
        join_token: args.join_token,
        name: args.name,
        org: args.org,
        labels: args.labels.into_iter().collect(),
        worker_bin: args.worker_bin,
        worker_listen: args.worker_listen.to_string(),
        worker_viewer_url: args.worker_viewer_url,
        rdp: !args.no_rdp,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("rdp-proxy-agent: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        watch_signals(shutdown.clone())?;
        rdp_proxy_agent::run(options, shutdown).await
    });
    match result {
        Ok(Outcome::Stopped) => ExitCode::SUCCESS,
        Ok(Outcome::Revoked) => ExitCode::from(EXIT_REVOKED),
        Err(AgentError::JoinRejected { status, code, message }) => {
            eprintln!("rdp-proxy-agent: join rejected: {code}: {message} (HTTP {status})");
            ExitCode::FAILURE
        }
        Err(AgentError::Other(error)) => {
            eprintln!("rdp-proxy-agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT.
fn watch_signals(shutdown: CancellationToken) -> Result<(), AgentError> {
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|error| anyhow::anyhow!("failed to handle SIGTERM: {error}"))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|error| anyhow::anyhow!("failed to handle SIGINT: {error}"))?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "Stopping services and exiting");
        shutdown.cancel();
    });
    Ok(())
}

/// Logs to stderr; `RDP_PROXY_LOG` takes a tracing filter (default `info`) and
/// `RDP_PROXY_LOG_FORMAT=json` switches to JSON lines.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RDP_PROXY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if std::env::var("RDP_PROXY_LOG_FORMAT").is_ok_and(|format| format == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
