//! `rdp-proxy`: one binary with a subcommand per role. Logic lives in the library crates; this
//! file only parses arguments and wires them together.

mod admin;
mod cli;
mod dev;
mod local;
mod serve;
mod supervise;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rdp-proxy",
    version,
    about = "Hold remote desktops on the platform: connect, detach, reattach, take over, terminate"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (HTTP API, portal, session dispatch).
    Control(serve::ControlArgs),
    /// Run a worker that holds RDP sessions and serves their viewers.
    Worker(serve::WorkerArgs),
    /// Apply database migrations (as the schema owner) and optionally create the services' login.
    Migrate(serve::MigrateArgs),
    /// Print a new token signing key and master key (standard base64), for configuration.
    Keygen,
    /// Start a private PostgreSQL and Redis, a worker and the control plane, and seed demo data.
    Dev(dev::DevArgs),
    /// Manage users and targets directly in the database.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    // The API client's commands (login, logout, me, orgs, members, targets, credentials,
    // policy, api-keys, audit, sessions, nodes, and the operator's cluster) appear as top-level
    // subcommands.
    #[command(flatten)]
    Cli(cli::Command),
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match args.command {
            Command::Control(args) => serve::control(args).await,
            Command::Worker(args) => serve::worker(args).await,
            Command::Migrate(args) => serve::migrate(args).await,
            Command::Keygen => {
                let (_, signing) = rdp_proxy_secrets::SigningKey::generate();
                let (_, master) = rdp_proxy_secrets::MasterKey::generate();
                println!("RDP_PROXY_TOKEN_SIGNING_KEY={signing}");
                println!("RDP_PROXY_MASTER_KEY={master}");
                Ok(())
            }
            Command::Dev(args) => dev::run(args).await,
            Command::Admin(command) => admin::run(command).await,
            Command::Cli(command) => {
                cli::run(command).await;
                Ok(())
            }
        }
    })
}

/// Logs to stderr; `RDP_PROXY_LOG` takes a tracing filter (default `info`) and
/// `RDP_PROXY_LOG_FORMAT=json` switches to JSON lines.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RDP_PROXY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=warn"));
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
