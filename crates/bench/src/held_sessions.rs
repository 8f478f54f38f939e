//! Figures 2 and 3: resident memory and CPU time of the worker with detached 1920x1080
//! sessions held, and of the shadow server that serves them.
//!
//! Each run starts its own target and stack, so every run measures a worker that has held
//! nothing before.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use rdp_proxy_e2e::Api;

use crate::desktop::{self, Desktop, MEMBER, teardown};
use crate::machine::{self, CpuUse};
use crate::proxy;

/// Pause after start-up before the first reading, so start-up work has finished.
const STARTUP_SETTLE: Duration = Duration::from_secs(3);
/// Pause after starting the scrolling log before measuring CPU time.
const LOG_SETTLE: Duration = Duration::from_secs(2);

pub struct HeldOptions {
    pub sessions: usize,
    /// Idle time after the last session detached, before the memory reading.
    pub idle: Duration,
    /// Length of each CPU-time measurement.
    pub cpu_interval: Duration,
}

/// Readings of one run. Memory is `VmRSS` in bytes.
pub struct HeldRun {
    pub sessions: usize,
    pub worker_rss_before: u64,
    /// Worker RSS right after each session was opened, shown and detached.
    pub worker_rss_each: Vec<u64>,
    /// Worker RSS after all sessions sat detached and idle.
    pub worker_rss_after: u64,
    /// Worker RSS after the scrolling-log measurement.
    pub worker_rss_after_scrolling: u64,
    pub shadow_rss_before: u64,
    pub shadow_rss_after: u64,
    /// CPU use with no sessions.
    pub worker_cpu_empty: CpuUse,
    pub shadow_cpu_empty: CpuUse,
    /// CPU use with every session detached and a static target screen.
    pub worker_cpu_idle: CpuUse,
    pub shadow_cpu_idle: CpuUse,
    /// CPU use with every session detached and a terminal on the target scrolling every 100 ms.
    pub worker_cpu_scrolling: CpuUse,
    pub shadow_cpu_scrolling: CpuUse,
}

impl HeldRun {
    /// Worker RSS growth per session, after the idle period.
    pub fn worker_rss_per_session(&self) -> f64 {
        per_session(self.worker_rss_before, self.worker_rss_after, self.sessions)
    }

    /// Worker RSS growth per session, after the scrolling-log period.
    pub fn worker_rss_per_session_scrolling(&self) -> f64 {
        per_session(self.worker_rss_before, self.worker_rss_after_scrolling, self.sessions)
    }

    /// Shadow server RSS growth per client.
    pub fn shadow_rss_per_client(&self) -> f64 {
        per_session(self.shadow_rss_before, self.shadow_rss_after, self.sessions)
    }

    /// Worker RSS growth of the first session alone, which includes one-time allocations.
    pub fn worker_rss_first_session(&self) -> Option<f64> {
        let first = *self.worker_rss_each.first()?;
        Some(first as f64 - self.worker_rss_before as f64)
    }

    /// Worker RSS growth per session after the first, up to the last detach.
    pub fn worker_rss_per_later_session(&self) -> Option<f64> {
        let first = *self.worker_rss_each.first()?;
        let last = *self.worker_rss_each.last()?;
        let later = self.worker_rss_each.len().checked_sub(1).filter(|&count| count > 0)?;
        Some((last as f64 - first as f64) / later as f64)
    }

    /// Worker CPU per detached session with a static screen, in percent of one core.
    pub fn worker_cpu_per_session_idle(&self) -> f64 {
        (self.worker_cpu_idle.percent_of_core() - self.worker_cpu_empty.percent_of_core()) / self.sessions as f64
    }

    /// Worker CPU per detached session with the scrolling log, in percent of one core.
    pub fn worker_cpu_per_session_scrolling(&self) -> f64 {
        (self.worker_cpu_scrolling.percent_of_core() - self.worker_cpu_empty.percent_of_core()) / self.sessions as f64
    }

    /// Shadow server CPU per client with the scrolling log, in percent of one core.
    pub fn shadow_cpu_per_client_scrolling(&self) -> f64 {
        (self.shadow_cpu_scrolling.percent_of_core() - self.shadow_cpu_empty.percent_of_core()) / self.sessions as f64
    }
}

fn per_session(before: u64, after: u64, sessions: usize) -> f64 {
    (after as f64 - before as f64) / sessions as f64
}

pub async fn run(binary: &Path, options: &HeldOptions) -> Result<HeldRun> {
    let desktop = tokio::task::block_in_place(Desktop::start)?;
    let (stack, target) = tokio::task::block_in_place(|| desktop::start_stack(binary, &desktop))?;
    let api = Api::login(&stack.base_url(), MEMBER.0, MEMBER.1).await?;
    let worker = desktop::worker_pid(&stack)?;
    let shadow = desktop.shadow.pid();
    let pids = [worker, shadow];

    tokio::time::sleep(STARTUP_SETTLE).await;
    let worker_rss_before = machine::resident_bytes(worker)?;
    let shadow_rss_before = machine::resident_bytes(shadow)?;
    let [worker_cpu_empty, shadow_cpu_empty] = measure_cpu(pids, options.cpu_interval).await?;

    let mut worker_rss_each = Vec::with_capacity(options.sessions);
    for index in 1..=options.sessions {
        let id = proxy::open_detached(&api, &target, &desktop.reference).await?;
        let rss = machine::resident_bytes(worker)?;
        tracing::info!(session.id = %id, index, worker_rss_bytes = rss, "session opened and detached");
        worker_rss_each.push(rss);
    }

    tokio::time::sleep(options.idle).await;
    let worker_rss_after = machine::resident_bytes(worker)?;
    let shadow_rss_after = machine::resident_bytes(shadow)?;
    let [worker_cpu_idle, shadow_cpu_idle] = measure_cpu(pids, options.cpu_interval).await?;

    let log = tokio::task::block_in_place(|| desktop.start_scrolling_log())?;
    tokio::time::sleep(LOG_SETTLE).await;
    let [worker_cpu_scrolling, shadow_cpu_scrolling] = measure_cpu(pids, options.cpu_interval).await?;
    let worker_rss_after_scrolling = machine::resident_bytes(worker)?;
    teardown(log);

    let accepted = desktop.shadow.connections_accepted();
    if accepted != options.sessions {
        tracing::warn!(
            accepted,
            expected = options.sessions,
            "the shadow server accepted an unexpected number of connections"
        );
    }
    teardown((stack, desktop));
    Ok(HeldRun {
        sessions: options.sessions,
        worker_rss_before,
        worker_rss_each,
        worker_rss_after,
        worker_rss_after_scrolling,
        shadow_rss_before,
        shadow_rss_after,
        worker_cpu_empty,
        shadow_cpu_empty,
        worker_cpu_idle,
        shadow_cpu_idle,
        worker_cpu_scrolling,
        shadow_cpu_scrolling,
    })
}

/// Measures the CPU use of the worker and the shadow server over `interval`.
async fn measure_cpu(pids: [u32; 2], interval: Duration) -> Result<[CpuUse; 2]> {
    let uses = tokio::task::spawn_blocking(move || machine::measure_cpu(&pids, interval)).await??;
    Ok([uses[0], uses[1]])
}
