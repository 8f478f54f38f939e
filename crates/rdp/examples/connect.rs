//! Connects to an RDP server, waits for the first full frame, prints the connect time and
//! the first-frame time in milliseconds, and exits. Used for benchmarks.
//!
//! ```text
//! RDP_PASSWORD=secret cargo run --release -p rdp-proxy-rdp --example connect -- \
//!     127.0.0.1:3389 --user alice --security nla
//! ```
//!
//! The first full frame is the moment the damaged regions reported by the session add up
//! to every pixel of the screen. With `--sessions N` it opens N sessions one after another
//! and keeps them all open until the last first frame, so the printed peak RSS shows the memory
//! per held session. Set `RUST_LOG=debug` to see the client's logs on stderr.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use rdp_proxy_core::Rect;
use rdp_proxy_rdp::{ConnectConfig, Secret, SecurityMode};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(about = "Measure connect and first-frame times of one RDP session")]
struct Args {
    /// Target as HOST:PORT.
    target: String,
    /// User name to log on with.
    #[arg(long, default_value = "")]
    user: String,
    /// Password to log on with. Prefer the environment variable, which stays out of `ps`.
    #[arg(long, env = "RDP_PASSWORD", default_value = "", hide_env_values = true)]
    password: String,
    /// Domain to log on to.
    #[arg(long)]
    domain: Option<String>,
    /// Security protocols to offer.
    #[arg(long, value_enum, default_value_t = Security::Auto)]
    security: Security,
    /// Requested desktop width in pixels.
    #[arg(long, default_value_t = 1920)]
    width: u16,
    /// Requested desktop height in pixels.
    #[arg(long, default_value_t = 1080)]
    height: u16,
    /// Limit for connecting and for the first frame, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// SHA-256 fingerprint of the server's TLS certificate, as hex with or without colons.
    #[arg(long)]
    pin: Option<String>,
    /// Number of sessions to open and hold at the same time.
    #[arg(long, default_value_t = 1)]
    sessions: u32,
}

#[derive(Clone, Copy, ValueEnum)]
enum Security {
    Auto,
    Tls,
    Nla,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();

    let args = Args::parse();
    match measure(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn measure(args: Args) -> Result<(), String> {
    let (host, port) = args
        .target
        .rsplit_once(':')
        .ok_or_else(|| format!("invalid target {:?}: expected HOST:PORT", args.target))?;
    let port: u16 = port
        .parse()
        .map_err(|error| format!("invalid port in {:?}: {error}", args.target))?;
    let cert_sha256 = args.pin.as_deref().map(parse_fingerprint).transpose()?;
    let timeout = Duration::from_millis(args.timeout_ms);

    let config = ConnectConfig {
        host: host.trim_start_matches('[').trim_end_matches(']').to_owned(),
        port,
        username: args.user,
        password: Secret::new(args.password),
        domain: args.domain,
        security: match args.security {
            Security::Auto => SecurityMode::Auto,
            Security::Tls => SecurityMode::Tls,
            Security::Nla => SecurityMode::Nla,
        },
        width: args.width,
        height: args.height,
        connect_timeout: timeout,
        cert_sha256,
    };

    let mut open_sessions = Vec::new();
    for _ in 0..args.sessions {
        let (line, session) = measure_session(&config, timeout).await?;
        println!("{line}");
        open_sessions.push(session);
    }

    for (stop, task) in open_sessions {
        stop.cancel();
        task.await.map_err(|error| format!("session task failed: {error}"))?;
    }
    let peak_rss = peak_rss_kib().map_or_else(|| "unknown".to_owned(), |kib| kib.to_string());
    println!("sessions={} peak_rss_kib={peak_rss}", args.sessions);
    Ok(())
}

type HeldSession = (CancellationToken, tokio::task::JoinHandle<rdp_proxy_rdp::EndReason>);

/// Connects once, waits for the first full frame, and returns the result line with the
/// still-running session.
async fn measure_session(config: &ConnectConfig, timeout: Duration) -> Result<(String, HeldSession), String> {
    let started = Instant::now();
    let connection = rdp_proxy_rdp::connect(config)
        .await
        .map_err(|error| error.to_string())?;
    let connect_ms = started.elapsed().as_secs_f64() * 1000.0;

    let screen = connection.screen();
    let mut updates = screen.subscribe();
    let stop = CancellationToken::new();
    // The sender is dropped at once: the session runs without input.
    let (_, input_receiver) = tokio::sync::mpsc::channel(1);
    let task = tokio::spawn(connection.run(input_receiver, stop.clone()));

    let (width, height) = screen.size();
    let mut coverage = Coverage::new(width, height);
    let mut seen = 0;
    let first_frame = tokio::time::timeout(timeout, async {
        while !coverage.is_complete() {
            if updates.changed().await.is_err() {
                return Err("the session ended before the first full frame".to_owned());
            }
            let damage = screen.damage_since(seen);
            seen = damage.seq;
            if damage.full {
                let (width, height) = screen.size();
                coverage = Coverage::new(width, height);
            }
            for rect in damage.rects {
                coverage.add(rect);
            }
        }
        Ok(())
    })
    .await;
    let first_frame_ms = started.elapsed().as_secs_f64() * 1000.0;

    let failure = match first_frame {
        Ok(Ok(())) => None,
        Ok(Err(message)) => Some(message),
        Err(_) => Some(format!("no full frame within {} ms", timeout.as_millis())),
    };
    if let Some(message) = failure {
        stop.cancel();
        let end = task.await.map_err(|error| format!("session task failed: {error}"))?;
        return Err(format!("{message} ({end})"));
    }

    let (width, height) = screen.size();
    let line = format!("connect_ms={connect_ms:.1} first_frame_ms={first_frame_ms:.1} size={width}x{height}");
    Ok((line, (stop, task)))
}

/// Pixels of the screen that have been painted at least once.
struct Coverage {
    width: u16,
    painted: Vec<bool>,
    remaining: usize,
}

impl Coverage {
    fn new(width: u16, height: u16) -> Self {
        let pixels = usize::from(width) * usize::from(height);
        Self {
            width,
            painted: vec![false; pixels],
            remaining: pixels,
        }
    }

    fn add(&mut self, rect: Rect) {
        for y in rect.y..rect.y.saturating_add(rect.height) {
            let row = usize::from(y) * usize::from(self.width);
            let start = row + usize::from(rect.x);
            let end = start + usize::from(rect.width);
            for painted in self.painted.get_mut(start..end).into_iter().flatten() {
                if !*painted {
                    *painted = true;
                    self.remaining -= 1;
                }
            }
        }
    }

    fn is_complete(&self) -> bool {
        self.remaining == 0
    }
}

fn parse_fingerprint(text: &str) -> Result<[u8; 32], String> {
    let digits: String = text.chars().filter(|c| *c != ':').collect();
    let invalid = || format!("invalid fingerprint {text:?}: expected 64 hex digits");
    if digits.len() != 64 {
        return Err(invalid());
    }
    let mut fingerprint = [0u8; 32];
    for (index, byte) in fingerprint.iter_mut().enumerate() {
        let pair = digits.get(index * 2..index * 2 + 2).ok_or_else(invalid)?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| invalid())?;
    }
    Ok(fingerprint)
}

/// Peak resident set size of this process (`VmHWM` in /proc/self/status), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
