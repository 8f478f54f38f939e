//! Figure 6: the attach flow of a held, detached session, from `POST /api/v1/sessions/{id}/attach`
//! to the worker's `ready`. The baselines are a Redis PING and a PostgreSQL `SELECT 1` sent to the
//! stack's own servers, so that the flow can be read as a number of round trips.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use futures::SinkExt;
use rdp_proxy_e2e::viewer::{self, Socket};
use rdp_proxy_e2e::{Api, Stack};
use redis::aio::ConnectionManager;
use serde_json::json;
use sqlx::{Connection as _, PgConnection};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::http::Uri;

use crate::desktop::{self, Desktop, MEMBER, teardown};
use crate::proxy;
use crate::report::{Row, TimeUnit, Timings, format_summary};

/// Attach flows run and discarded first, so connections, caches and the compiled policy are warm.
const WARM_UP: usize = 10;
/// Attach flows timed.
const RUNS: usize = 200;
/// Round trips of each baseline kind sent before timing any.
const BASELINE_WARM_UP: usize = 100;
/// Round trips of each baseline kind timed before each attach flow, so that baselines and flows
/// are spread over the same minutes and see the same load from other processes.
const BASELINES_PER_RUN: usize = 5;

/// Times of one attach flow, each from the start of the attach request.
#[derive(Clone, Copy, Debug)]
struct FlowTiming {
    /// Time until the attach response with the token arrived.
    attach_response: Duration,
    /// Time until the viewer WebSocket to the worker was open (TCP connect and HTTP upgrade).
    socket_open: Duration,
    /// Time until the worker's `ready` arrived after the hello.
    ready: Duration,
}

pub struct AttachFlowResults {
    /// `POST /api/v1/sessions/{id}/attach` round trip.
    pub attach_request: Timings,
    /// TCP connect and WebSocket upgrade to the worker's viewer endpoint.
    pub socket_open: Timings,
    /// Hello with the attach token sent → `ready` received.
    pub hello_ready: Timings,
    /// Attach request sent → `ready` received.
    pub total: Timings,
    /// PING round trip to the stack's Redis through a `ConnectionManager`.
    pub redis_ping: Timings,
    /// `SELECT 1` round trip to the stack's database as the services' login, one connection.
    pub postgres_select: Timings,
}

/// Starts the target and the stack, opens one session, detaches it and times its attach flow.
pub async fn run(binary: &Path) -> Result<AttachFlowResults> {
    let desktop = tokio::task::block_in_place(Desktop::start)?;
    let (stack, target) = tokio::task::block_in_place(|| desktop::start_stack(binary, &desktop))?;
    let results = measure(&stack, &target, &desktop).await;
    teardown((stack, desktop));
    results
}

async fn measure(stack: &Stack, target: &str, desktop: &Desktop) -> Result<AttachFlowResults> {
    let api = Api::login(&stack.base_url(), MEMBER.0, MEMBER.1).await?;
    let held_id = proxy::open_detached(&api, target, &desktop.reference).await?;
    tracing::info!(session.id = %held_id, "figure 6: held session is detached");

    let mut baselines = Baselines::connect(stack).await?;
    baselines.warm_up().await?;

    let mut flows = Vec::with_capacity(RUNS);
    let mut pings = Vec::with_capacity(RUNS * BASELINES_PER_RUN);
    let mut selects = Vec::with_capacity(RUNS * BASELINES_PER_RUN);
    tracing::info!(warm_up = WARM_UP, runs = RUNS, "figure 6: attach flow");
    for run in 0..WARM_UP + RUNS {
        let measured = run >= WARM_UP;
        for _ in 0..BASELINES_PER_RUN {
            let ping = baselines.time_ping().await?;
            let select = baselines.time_select().await?;
            if measured {
                pings.push(ping);
                selects.push(select);
            }
        }

        let (mut socket, flow) = attach_once(&api, &held_id).await?;
        // The worker sends the whole screen after `ready`. Waiting for that batch's end keeps its
        // encoding out of the next run's baselines and flow.
        proxy::read_batch(&mut socket).await?;
        proxy::detach(&api, &held_id, socket).await?;
        if measured {
            flows.push(flow);
        }
    }

    // Terminates the held session, so that the worker holds nothing when the stack stops.
    proxy::terminate(&api, &held_id).await?;

    Ok(AttachFlowResults {
        attach_request: Timings::new(flows.iter().map(|flow| flow.attach_response).collect()),
        socket_open: Timings::new(
            flows
                .iter()
                .map(|flow| flow.socket_open - flow.attach_response)
                .collect(),
        ),
        hello_ready: Timings::new(flows.iter().map(|flow| flow.ready - flow.socket_open).collect()),
        total: Timings::new(flows.iter().map(|flow| flow.ready).collect()),
        redis_ping: Timings::new(pings),
        postgres_select: Timings::new(selects),
    })
}

/// Requests an attach token for session `id` in control mode, opens the viewer WebSocket and
/// sends the hello. Returns the socket once `ready` has arrived, with the times.
async fn attach_once(api: &Api, id: &str) -> Result<(Box<Socket>, FlowTiming)> {
    let started = Instant::now();
    let grant = api.attach(id, "control").await?;
    let attach_response = started.elapsed();

    let ws_url = grant["ws_url"].as_str().context("the attach response has no ws_url")?;
    let token = grant["token"].as_str().context("the attach response has no token")?;
    ensure_loopback(ws_url)?;
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .with_context(|| format!("failed to open the viewer WebSocket {ws_url}"))?;
    let socket_open = started.elapsed();

    let hello = json!({ "type": "hello", "token": token }).to_string();
    socket.send(Message::text(hello)).await?;
    let first = viewer::next_text(&mut socket).await?;
    let ready = started.elapsed();
    if first["type"] != "ready" {
        bail!("the worker rejected the viewer of session {id}: {first}");
    }

    let timing = FlowTiming {
        attach_response,
        socket_open,
        ready,
    };
    Ok((Box::new(socket), timing))
}

/// Rejects a viewer URL whose host is not a loopback address, because the bench sends traffic
/// only to this machine.
fn ensure_loopback(ws_url: &str) -> Result<()> {
    let uri: Uri = ws_url
        .parse()
        .with_context(|| format!("invalid ws_url {ws_url:?} in the attach response"))?;
    let host = uri.host().context("the ws_url in the attach response has no host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|address| address.is_loopback());
    ensure!(
        loopback,
        "the worker's viewer URL {ws_url} is not on loopback; the bench only connects to this machine"
    );
    Ok(())
}

/// One connection each to the stack's Redis and PostgreSQL, for single round trips.
struct Baselines {
    redis: ConnectionManager,
    postgres: PgConnection,
}

impl Baselines {
    async fn connect(stack: &Stack) -> Result<Self> {
        let redis_url = stack.redis.url();
        let client = redis::Client::open(redis_url.as_str())?;
        let redis = ConnectionManager::new(client)
            .await
            .with_context(|| format!("failed to connect to Redis at {redis_url}"))?;
        let postgres = PgConnection::connect(&stack.env.database_url)
            .await
            .context("failed to connect to the stack's PostgreSQL as the services' login")?;
        Ok(Self { redis, postgres })
    }

    /// Sends [`BASELINE_WARM_UP`] untimed round trips of each kind. The first `SELECT 1` also
    /// prepares the statement, which later ones reuse from the connection's cache.
    async fn warm_up(&mut self) -> Result<()> {
        for _ in 0..BASELINE_WARM_UP {
            self.time_ping().await?;
            self.time_select().await?;
        }
        Ok(())
    }

    async fn time_ping(&mut self) -> Result<Duration> {
        let started = Instant::now();
        crate::authz::ping(&mut self.redis).await?;
        Ok(started.elapsed())
    }

    async fn time_select(&mut self) -> Result<Duration> {
        let started = Instant::now();
        let value: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut self.postgres).await?;
        let elapsed = started.elapsed();
        ensure!(value == 1, "SELECT 1 returned {value}");
        Ok(elapsed)
    }
}

pub fn print(results: &AttachFlowResults, rows: &mut Vec<Row>) {
    let ping = &results.redis_ping;
    let select = &results.postgres_select;
    let parts = [
        (
            "`POST /api/v1/sessions/{id}/attach` round trip",
            &results.attach_request,
        ),
        (
            "viewer WebSocket open (TCP connect and HTTP upgrade to the worker)",
            &results.socket_open,
        ),
        ("hello with the attach token → `ready`", &results.hello_ready),
        ("attach request → `ready`, all of the above", &results.total),
    ];

    println!("## 6. Attach flow of a held, detached session\n");
    println!(
        "{RUNS} attach flows in control mode after {WARM_UP} warm-up flows, one at a time, against the stack on loopback. After each `ready` the bench reads the first screen batch, closes the socket without a close frame and waits for `detached`. Before each flow it times {BASELINES_PER_RUN} Redis PINGs (redis crate `ConnectionManager`) and {BASELINES_PER_RUN} PostgreSQL `SELECT 1` (sqlx, one connection, the statement prepared once) to the stack's own servers, after {BASELINE_WARM_UP} warm-up round trips of each.\n"
    );
    for (label, timings) in &parts {
        println!("- {label}: {}", timings.describe(TimeUnit::Millis));
    }
    println!("- baseline: Redis PING round trip: {}", ping.describe(TimeUnit::Millis));
    println!(
        "- baseline: PostgreSQL `SELECT 1` round trip: {}",
        select.describe(TimeUnit::Millis)
    );
    for (label, timings) in &parts {
        println!(
            "- ratio {label} / Redis PING (p50): {}; / PostgreSQL `SELECT 1` (p50): {}",
            timings.p50_ratio(ping),
            timings.p50_ratio(select)
        );
    }
    println!(
        "- ratio PostgreSQL `SELECT 1` / Redis PING (p50): {}",
        select.p50_ratio(ping)
    );
    println!();

    let baseline = format!(
        "Redis PING round trip: {}",
        format_summary(ping.summary(TimeUnit::Millis), 3, "ms")
    );
    let table_parts = [
        ("6. Attach flow: attach request → `ready`", &results.total),
        ("6. Attach flow: `POST …/attach` round trip", &results.attach_request),
        ("6. Attach flow: hello → `ready`", &results.hello_ready),
    ];
    for (figure, timings) in table_parts {
        rows.push(Row {
            figure: figure.to_owned(),
            measured: format_summary(timings.summary(TimeUnit::Millis), 3, "ms"),
            baseline: baseline.clone(),
            ratio: timings.median_ratio(ping),
            goal: "—".to_owned(),
        });
    }
    rows.push(Row {
        figure: "6. PostgreSQL `SELECT 1` round trip".to_owned(),
        measured: format_summary(select.summary(TimeUnit::Millis), 3, "ms"),
        baseline,
        ratio: select.median_ratio(ping),
        goal: "—".to_owned(),
    });
}
