//! Figure 8: a worker killed with SIGKILL while it holds sessions → every one of them recorded
//! `lost` in PostgreSQL. The baseline is the expiry of the worker's heartbeat key in Redis,
//! measured in the same runs: until then nobody can tell a dead worker from a slow one, so the
//! figure shows what the grace period and the sweep add on top.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use rdp_proxy_e2e::{Api, Stack};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::desktop::{self, Desktop, MEMBER, teardown};
use crate::proxy;
use crate::report::{Row, TimeUnit, Timings, format_summary};

/// Sessions the killed worker holds in each run.
const SESSIONS: usize = 2;
/// How often the state is sampled after the kill.
const POLL: Duration = Duration::from_millis(20);
/// Maximum time a run waits for the sessions to be marked lost.
const LIMIT: Duration = Duration::from_secs(60);
/// Heartbeat interval and lost-worker grace period of the test stack (`tests/support/stack.rs`).
const HEARTBEAT: Duration = Duration::from_millis(500);
const GRACE: Duration = Duration::from_secs(3);

pub struct LostWorkerResults {
    /// SIGKILL → the worker's heartbeat key is gone from Redis.
    pub beat_expired: Timings,
    /// SIGKILL → the last of the worker's sessions is `lost`.
    pub all_lost: Timings,
    pub runs: usize,
}

/// Starts the target and the stack, then in each run starts a fresh worker, opens sessions on
/// it, kills it and times how long until they are `lost`.
pub async fn run(binary: &Path, runs: usize) -> Result<LostWorkerResults> {
    let desktop = tokio::task::block_in_place(Desktop::start)?;
    let (stack, target) = tokio::task::block_in_place(|| desktop::start_stack(binary, &desktop))?;
    let mut stack = stack;
    let results = measure(&mut stack, &target, &desktop, runs).await;
    teardown((stack, desktop));
    results
}

async fn measure(stack: &mut Stack, target: &str, desktop: &Desktop, runs: usize) -> Result<LostWorkerResults> {
    let api = Api::login(&stack.base_url(), MEMBER.0, MEMBER.1).await?;
    let client = redis::Client::open(stack.env.redis_url.as_str())?;
    let mut redis = ConnectionManager::new(client).await?;
    let mut beat_expired = Vec::with_capacity(runs);
    let mut all_lost = Vec::with_capacity(runs);
    for run in 1..=runs {
        // The previous run's worker is dead, so the new sessions can only land on this one.
        let index = if run == 1 {
            0
        } else {
            tokio::task::block_in_place(|| stack.add_worker())?
        };
        let mut sessions = Vec::with_capacity(SESSIONS);
        for _ in 0..SESSIONS {
            sessions.push(proxy::open_detached(&api, target, &desktop.reference).await?);
        }
        let worker = worker_of(&api, &sessions).await?;
        let key = format!("rdpp:worker:{worker}");
        tracing::info!(run, worker, "figure 8: killing the worker");
        let started = Instant::now();
        stack.workers[index].process.kill();
        let mut expired = None;
        loop {
            let elapsed = started.elapsed();
            if expired.is_none() && !redis.exists::<_, bool>(&key).await? {
                expired = Some(elapsed);
            }
            if all_sessions_lost(&api, &sessions).await? {
                beat_expired.push(expired.unwrap_or(elapsed));
                all_lost.push(elapsed);
                break;
            }
            if elapsed > LIMIT {
                bail!("run {run}: sessions were not marked lost within {LIMIT:?}");
            }
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(LostWorkerResults {
        beat_expired: Timings::new(beat_expired),
        all_lost: Timings::new(all_lost),
        runs,
    })
}

/// Returns the one worker holding all of `sessions`.
async fn worker_of(api: &Api, sessions: &[String]) -> Result<String> {
    let mut worker: Option<String> = None;
    for id in sessions {
        let view = api.session(id).await?;
        let holder = view["worker_id"].as_str().context("session without worker")?.to_owned();
        match &worker {
            Some(known) if *known != holder => bail!("sessions landed on two workers"),
            _ => worker = Some(holder),
        }
    }
    worker.context("no session")
}

async fn all_sessions_lost(api: &Api, sessions: &[String]) -> Result<bool> {
    for id in sessions {
        if api.session(id).await?["state"] != "lost" {
            return Ok(false);
        }
    }
    Ok(true)
}

pub fn print(results: &LostWorkerResults, rows: &mut Vec<Row>) {
    println!("## 8. Worker killed → its sessions lost\n");
    println!(
        "Each of {} runs: a fresh worker holds {SESSIONS} detached sessions and is killed with SIGKILL; the state is read every {} ms through the API. The stack's worker beats every {} ms with a key that expires after three beats, and the control plane waits {} s of silence (`--lost-grace-secs`) and sweeps every second. Baseline: the same runs' time until the heartbeat key expired.\n",
        results.runs,
        POLL.as_millis(),
        HEARTBEAT.as_millis(),
        GRACE.as_secs()
    );
    println!(
        "- SIGKILL → every session `lost`: {}",
        results.all_lost.describe(TimeUnit::Millis)
    );
    println!(
        "- baseline: SIGKILL → heartbeat key expired: {}",
        results.beat_expired.describe(TimeUnit::Millis)
    );
    println!(
        "- ratio (median): {}\n",
        results.all_lost.median_ratio(&results.beat_expired)
    );
    rows.push(Row {
        figure: "8. Worker killed → its sessions lost".to_owned(),
        measured: format_summary(results.all_lost.summary(TimeUnit::Millis), 0, "ms"),
        baseline: format!(
            "heartbeat key expired: {}",
            format_summary(results.beat_expired.summary(TimeUnit::Millis), 0, "ms")
        ),
        ratio: results.all_lost.median_ratio(&results.beat_expired),
        goal: "key expiry + grace + one sweep".to_owned(),
    });
}
