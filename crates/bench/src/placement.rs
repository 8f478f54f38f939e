//! Figure 7: the time `rdp_proxy_core::placement::place` takes to pick a worker among 100, 1,000
//! and 10,000 candidates. Baselines: the round trip of a Redis PING over loopback, and the time
//! serde_json takes to deserialise one JSON document per candidate, which the control plane does
//! for the worker heartbeats before it places a session.

use std::collections::BTreeMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};
use std::hint::black_box;
use std::time::Instant;

use anyhow::{Context as _, Result};
use rdp_proxy_core::node::{Capabilities, NodeOwner, NodeState, ServiceKind, ServiceLoad};
use rdp_proxy_core::placement::{Candidate, Decision, Request, place};
use rdp_proxy_core::{NodeId, OrgId, WorkerId};
use rdp_proxy_testkit::Redis;
use redis::aio::ConnectionManager;
use uuid::Uuid;

use crate::report::{Row, TimeUnit, Timings, format_summary};

/// Number of organisations that own customer nodes. The request comes from the first.
const ORGS: u128 = 20;
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const PING_WARM_UP: usize = 100;
const PINGS: usize = 1_000;

/// One candidate-set size and how often it is timed. Larger sets get fewer runs, which keeps the
/// figure to a few seconds. Warm-up runs are a tenth of the timed runs.
struct Size {
    nodes: usize,
    decisions: usize,
    deserialisations: usize,
}

const SIZES: [Size; 3] = [
    Size {
        nodes: 100,
        decisions: 20_000,
        deserialisations: 2_000,
    },
    Size {
        nodes: 1_000,
        decisions: 5_000,
        deserialisations: 500,
    },
    Size {
        nodes: 10_000,
        decisions: 500,
        deserialisations: 50,
    },
];

pub struct SizeResults {
    pub nodes: usize,
    pub place: Timings,
    pub deserialise: Timings,
    /// Mean length of one candidate's JSON document, in bytes.
    pub document_bytes: usize,
    pub ranked: usize,
    /// Filtered candidates per rejection code.
    pub filtered: BTreeMap<String, usize>,
}

pub struct PlacementResults {
    pub sizes: Vec<SizeResults>,
    pub redis_ping: Timings,
}

/// Times `place` and the deserialisation for each size on this thread, then starts Redis on
/// loopback and times PINGs.
pub async fn run() -> Result<PlacementResults> {
    let sizes = tokio::task::block_in_place(|| SIZES.iter().map(measure_size).collect::<Result<Vec<_>>>())?;

    let redis = tokio::task::block_in_place(Redis::start)?;
    let redis_ping = time_pings(&redis.url()).await;
    // Dropping the guard stops redis-server and waits for it.
    tokio::task::block_in_place(move || drop(redis));

    Ok(PlacementResults {
        sizes,
        redis_ping: redis_ping?,
    })
}

fn measure_size(size: &Size) -> Result<SizeResults> {
    let request = Request {
        org: org(0),
        service: ServiceKind::Worker,
    };
    let candidates: Vec<Candidate> = (0..size.nodes).map(candidate).collect();
    let decision = place(&request, &candidates);
    anyhow::ensure!(
        decision.chosen.is_some(),
        "no worker chosen among {} candidates",
        size.nodes
    );
    let filtered = count_rejections(&decision)?;

    let documents = candidates
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<Vec<String>, _>>()?;
    let document_bytes = documents.iter().map(String::len).sum::<usize>() / documents.len();
    let deserialise = || {
        documents
            .iter()
            .map(|document| serde_json::from_str::<Candidate>(document))
            .collect::<Result<Vec<Candidate>, _>>()
    };
    deserialise().context("failed to deserialise the candidates the bench serialised")?;

    tracing::info!(nodes = size.nodes, decisions = size.decisions, "figure 7: place");
    let place = time_each(size.decisions, || place(&request, &candidates));
    tracing::info!(
        nodes = size.nodes,
        runs = size.deserialisations,
        "figure 7: deserialise candidates"
    );
    let deserialise = time_each(size.deserialisations, deserialise);
    Ok(SizeResults {
        nodes: size.nodes,
        place,
        deserialise,
        document_bytes,
        ranked: decision.ranked.len(),
        filtered,
    })
}

/// Runs `operation` `runs / 10` times untimed, then times each of `runs` calls.
fn time_each<T>(runs: usize, mut operation: impl FnMut() -> T) -> Timings {
    for _ in 0..runs / 10 {
        black_box(operation());
    }
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        black_box(operation());
        samples.push(started.elapsed());
    }
    Timings::new(samples)
}

fn count_rejections(decision: &Decision) -> Result<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    for filtered in &decision.filtered {
        let reason = serde_json::to_value(&filtered.reason)?;
        let code = reason["code"].as_str().unwrap_or("unknown").to_owned();
        *counts.entry(code).or_default() += 1;
    }
    Ok(counts)
}

fn org(index: u128) -> OrgId {
    OrgId(Uuid::from_u128(index + 1))
}

/// Returns a value in 0..100 that depends only on `index` and `salt`, so each property of a
/// candidate varies independently of the others.
fn stable_percent(index: usize, salt: &str) -> u64 {
    // `DefaultHasher::new` uses fixed keys, unlike `RandomState`, so every run of one build
    // makes the same candidates. The standard library may change the algorithm between releases.
    let mut hasher = DefaultHasher::new();
    (index, salt).hash(&mut hasher);
    hasher.finish() % 100
}

/// Builds candidate `index`. Of a hundred candidates, about 40 are platform nodes and 60 are
/// customer nodes spread over [`ORGS`] organisations, and 2 are workers without a node agent.
/// Independently, about this many per hundred are made to fail each later filter: not ready
/// (draining, joining, down or revoked) 11, no RDP 2, worker service not enabled 3, expired
/// heartbeat 3, absurd figures 3, unhealthy 3 and full 8.
fn candidate(index: usize) -> Candidate {
    let bucket = |salt| stable_percent(index, salt);
    let number = index as u128 + 1;
    let worker = WorkerId(Uuid::from_u128(number));
    let name = format!("node-{index:05}");
    let capabilities = capabilities(index);
    let load = (bucket("heartbeat") >= 3).then(|| load(index, &capabilities));
    if bucket("unmanaged") < 2 {
        return Candidate::unmanaged(worker, name, load);
    }
    let owner = if bucket("owner") < 40 {
        NodeOwner::Platform
    } else {
        NodeOwner::Org(org(u128::from(stable_percent(index, "org")) % ORGS))
    };
    let state = match bucket("state") {
        0..4 => NodeState::Draining,
        4..6 => NodeState::Joining,
        6..9 => NodeState::Down,
        9..11 => NodeState::Revoked,
        _ => NodeState::Ready,
    };
    let enabled = if bucket("enabled") < 3 {
        vec![ServiceKind::Relay]
    } else {
        vec![ServiceKind::Worker]
    };
    Candidate {
        worker,
        node: Some(NodeId(Uuid::from_u128(number))),
        node_name: name,
        owner,
        state,
        enabled,
        capabilities: Some(capabilities),
        load,
    }
}

fn capabilities(index: usize) -> Capabilities {
    let cores = [2, 4, 8, 16, 32][index % 5];
    let network_bits_per_sec = match stable_percent(index, "link") {
        0..20 => None,
        20..70 => Some(1_000_000_000),
        _ => Some(10_000_000_000),
    };
    Capabilities {
        cores,
        memory_bytes: u64::from(cores) * 4 * GIB,
        network_bits_per_sec,
        rdp: stable_percent(index, "rdp") >= 2,
        relay: false,
        connector: false,
    }
}

/// Builds the heartbeat figures of candidate `index`. Absurd figures stay finite, because JSON has no NaN
/// and the deserialisation baseline must read back what `place` is given.
fn load(index: usize, capabilities: &Capabilities) -> ServiceLoad {
    let bucket = |salt| stable_percent(index, salt);
    let max_sessions = 50;
    let sessions = if bucket("full") < 8 {
        max_sessions
    } else {
        u32::try_from(bucket("sessions") / 2).unwrap_or(0)
    };
    let health = match bucket("health") {
        unhealthy @ 0..3 => 30 + unhealthy as u8,
        healthy => 100 - healthy as u8 / 10,
    };
    let mut load = ServiceLoad {
        node_cpu: bucket("cpu") as f64 / 110.0,
        cpu_cores: f64::from(sessions) * 0.02,
        memory_available_bytes: capabilities.memory_bytes / 100 * (99 - bucket("memory")),
        memory_bytes: 200 * MIB + u64::from(sessions) * 10 * MIB,
        network_bytes_per_sec: u64::from(sessions) * 150_000,
        sessions,
        max_sessions,
        connector_load: 0.0,
        relay_load: 0.0,
        health,
    };
    match bucket("absurd") {
        0 => load.node_cpu = 1.5,
        1 => load.health = 101,
        2 => load.cpu_cores = f64::from(capabilities.cores) * 4.0,
        _ => {}
    }
    load
}

/// Times PING round trips through a `ConnectionManager`, the client the coordination crate uses.
async fn time_pings(url: &str) -> Result<Timings> {
    let client = redis::Client::open(url)?;
    let mut connection = ConnectionManager::new(client)
        .await
        .with_context(|| format!("failed to connect to Redis at {url}"))?;
    tracing::info!(pings = PINGS, "figure 7: Redis PING");
    for _ in 0..PING_WARM_UP {
        crate::authz::ping(&mut connection).await?;
    }
    let mut samples = Vec::with_capacity(PINGS);
    for _ in 0..PINGS {
        let started = Instant::now();
        crate::authz::ping(&mut connection).await?;
        samples.push(started.elapsed());
    }
    Ok(Timings::new(samples))
}

pub fn print(results: &PlacementResults, rows: &mut Vec<Row>) {
    let ping = &results.redis_ping;
    println!("## 7. Placement decision\n");
    println!(
        "Candidates are built the same way in every run. Per hundred, about: 40 platform and 60 customer nodes spread over {ORGS} organisations, 2 workers without a node agent, 11 nodes not ready, 2 without RDP, 3 without the worker service, 3 expired heartbeats, 3 with absurd figures, 3 unhealthy and 8 full, before filtering. A candidate is counted only under the first rejection that applies. The request is a worker session of one of the organisations. Each size is timed one decision at a time on one thread, after a tenth as many warm-up decisions, including the drop of the returned decision. Baselines: deserialising one JSON document per candidate (its `Candidate`) with `serde_json::from_str` into a `Vec`, as the control plane reads one heartbeat per worker, and {PINGS} Redis PINGs after {PING_WARM_UP} warm-up over loopback through the redis crate's `ConnectionManager`.\n"
    );
    for size in &results.sizes {
        let filtered: Vec<String> = size
            .filtered
            .iter()
            .map(|(code, count)| format!("{code} {count}"))
            .collect();
        println!(
            "- {} nodes: {} ranked; filtered: {}",
            size.nodes,
            size.ranked,
            filtered.join(", ")
        );
    }
    for size in &results.sizes {
        println!(
            "- `place` at {} nodes: {}",
            size.nodes,
            size.place.describe(TimeUnit::Micros)
        );
    }
    for size in &results.sizes {
        println!(
            "- baseline: deserialising {} candidate documents (mean {} bytes each): {}",
            size.nodes,
            size.document_bytes,
            size.deserialise.describe(TimeUnit::Micros)
        );
    }
    println!("- baseline: Redis PING round trip: {}", ping.describe(TimeUnit::Micros));
    for size in &results.sizes {
        println!(
            "- ratio `place` / Redis PING at {} nodes (p50): {}; `place` / deserialisation (p50): {}",
            size.nodes,
            size.place.p50_ratio(ping),
            size.place.p50_ratio(&size.deserialise)
        );
    }
    println!();

    let ping_summary = format_summary(ping.summary(TimeUnit::Micros), 1, "µs");
    for size in &results.sizes {
        let nodes = size.nodes;
        rows.push(Row {
            figure: format!("7. Placement decision at {nodes} nodes"),
            measured: format_summary(size.place.summary(TimeUnit::Micros), 1, "µs"),
            baseline: format!("Redis PING round trip: {ping_summary}"),
            ratio: size.place.median_ratio(ping),
            goal: "—".to_owned(),
        });
        rows.push(Row {
            figure: format!("7. Placement decision at {nodes} nodes, against deserialisation"),
            measured: format_summary(size.place.summary(TimeUnit::Micros), 1, "µs"),
            baseline: format!(
                "deserialising {nodes} candidates: {}",
                format_summary(size.deserialise.summary(TimeUnit::Micros), 1, "µs")
            ),
            ratio: size.place.median_ratio(&size.deserialise),
            goal: "—".to_owned(),
        });
    }
}
