//! `rdp-proxy-bench`: measures rdp-proxy against real RDP servers and Chromium and prints each
//! figure beside a baseline measured in the same run. It never asserts times.
//!
//! Every component runs on this machine on loopback: PostgreSQL, Redis, the `rdp-proxy`
//! control plane and worker (`--binary`), `freerdp-shadow-cli` on Xvfb as the target, xfreerdp
//! as the direct client and headless Chromium. It needs the packages listed in the testkit crate
//! and root (PostgreSQL runs as `postgres`). Results go to stdout, progress to stderr.

mod attach_flow;
mod authz;
mod desktop;
mod direct;
mod held_sessions;
mod input;
mod lost_worker;
mod machine;
mod placement;
mod proxy;
mod reattach;
mod report;
mod sections;
mod xclient;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use tracing_subscriber::EnvFilter;

use crate::machine::Machine;
use crate::report::Row;

#[derive(Parser)]
#[command(
    about = "Measure rdp-proxy reattach time, memory and CPU per held session, input latency, authorisation time, attach-flow latency and placement time"
)]
struct Args {
    /// The rdp-proxy binary to run; build it with `cargo build --release -p rdp-proxy`.
    #[arg(long, default_value = "target/release/rdp-proxy")]
    binary: PathBuf,
    /// Runs per figure for figures 1 to 4 and 8; each prints min, median and max. Figures 5 to 7 time a
    /// fixed number of operations.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Sessions held at once for the memory and CPU figures.
    #[arg(long, default_value_t = 8)]
    sessions: usize,
    /// Seconds the held sessions sit detached before the memory reading.
    #[arg(long, default_value_t = 5)]
    idle_secs: u64,
    /// Seconds over which each CPU-time reading is taken.
    #[arg(long, default_value_t = 10)]
    cpu_secs: u64,
    /// Figures to measure; all when not given. Repeat to pick several.
    #[arg(long = "figure", value_enum)]
    figures: Vec<Figure>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Figure {
    /// Figure 1: reattach → first full frame, beside xfreerdp and a fresh proxied session.
    Reattach,
    /// Figures 2 and 3: memory and CPU per held session, and the sessions one machine keeps.
    Held,
    /// Figure 4: key press → changed pixel, in Chromium through the proxy and with xfreerdp.
    Input,
    /// Figure 5: authorisation decision time with the default policies, beside a Redis PING.
    Authz,
    /// Figure 6: attach request → `ready` of a held session, beside Redis PING and PostgreSQL `SELECT 1`.
    Attach,
    /// Figure 7: placement decision among 100, 1,000 and 10,000 nodes, beside Redis PING and
    /// deserialising the candidates from JSON.
    Placement,
    /// Figure 8: worker killed with SIGKILL → its sessions `lost`, beside the expiry of its
    /// heartbeat key.
    Lost,
}

impl Figure {
    /// Returns whether the figure runs the `rdp-proxy` binary. Figures 5 and 7 run library code
    /// in-process.
    fn needs_binary(self) -> bool {
        !matches!(self, Figure::Authz | Figure::Placement)
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(EnvFilter::try_from_env("RDP_PROXY_BENCH_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            tracing::error!("benchmark failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the chosen figures and prints them; returns false if any figure failed.
async fn run(args: Args) -> anyhow::Result<bool> {
    anyhow::ensure!(args.runs > 0, "invalid --runs 0; use at least 1");
    anyhow::ensure!(args.sessions > 0, "invalid --sessions 0; use at least 1");
    let figures = if args.figures.is_empty() {
        vec![
            Figure::Reattach,
            Figure::Held,
            Figure::Input,
            Figure::Authz,
            Figure::Attach,
            Figure::Placement,
            Figure::Lost,
        ]
    } else {
        args.figures.clone()
    };
    let binary = std::path::absolute(&args.binary)?;
    anyhow::ensure!(
        binary.is_file() || !figures.iter().any(|figure| figure.needs_binary()),
        "{} not found; build it with `cargo build --release -p rdp-proxy` or pass --binary",
        binary.display()
    );
    let machine = Machine::read()?;
    sections::print_machine(&machine, &binary, &args_line())?;

    let mut rows: Vec<Row> = Vec::new();
    let mut all_measured = true;
    for figure in figures {
        let load_before = machine::load_average()?;
        let outcome = measure_figure(figure, &args, &binary, &machine, &mut rows).await;
        let load_after = machine::load_average()?;
        sections::print_load(load_before, load_after);
        if let Err(error) = outcome {
            all_measured = false;
            tracing::error!("{} failed: {error:#}", figure_name(figure));
            println!("\n{} failed: {error:#}\n", figure_name(figure));
        }
    }

    println!("## Summary table\n");
    println!("{}", report::markdown_table(&rows));
    Ok(all_measured)
}

/// Measures one figure, prints its section and adds its rows to `rows`.
async fn measure_figure(
    figure: Figure,
    args: &Args,
    binary: &Path,
    machine: &Machine,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    match figure {
        Figure::Reattach => {
            tracing::info!(runs = args.runs, "figure 1: reattach");
            let results = reattach::run(binary, args.runs).await?;
            sections::print_reattach(&results, rows);
        }
        Figure::Held => {
            let options = held_sessions::HeldOptions {
                sessions: args.sessions,
                idle: Duration::from_secs(args.idle_secs),
                cpu_interval: Duration::from_secs(args.cpu_secs),
            };
            let mut runs = Vec::with_capacity(args.runs);
            for run in 1..=args.runs {
                tracing::info!(run, sessions = args.sessions, "figures 2 and 3: held sessions");
                runs.push(held_sessions::run(binary, &options).await?);
            }
            sections::print_held(&runs, &options, machine, rows);
        }
        Figure::Input => {
            tracing::info!(runs = args.runs, "figure 4: input latency");
            let results = input::run(binary, args.runs).await?;
            sections::print_input(&results, rows);
        }
        Figure::Authz => {
            tracing::info!("figure 5: authorisation decision time");
            let results = authz::run().await?;
            authz::print(&results, rows);
        }
        Figure::Attach => {
            tracing::info!("figure 6: attach flow");
            let results = attach_flow::run(binary).await?;
            attach_flow::print(&results, rows);
        }
        Figure::Placement => {
            tracing::info!("figure 7: placement decision");
            let results = placement::run().await?;
            placement::print(&results, rows);
        }
        Figure::Lost => {
            tracing::info!(runs = args.runs, "figure 8: worker killed → sessions lost");
            let results = lost_worker::run(binary, args.runs).await?;
            lost_worker::print(&results, rows);
        }
    }
    Ok(())
}

fn figure_name(figure: Figure) -> &'static str {
    match figure {
        Figure::Reattach => "figure 1 (reattach)",
        Figure::Held => "figures 2 and 3 (held sessions)",
        Figure::Input => "figure 4 (input latency)",
        Figure::Authz => "figure 5 (authorisation decision time)",
        Figure::Attach => "figure 6 (attach flow)",
        Figure::Placement => "figure 7 (placement decision)",
        Figure::Lost => "figure 8 (worker killed → sessions lost)",
    }
}

/// Returns the command line as run, for the record.
fn args_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}
