//! The load this worker reports with each heartbeat: node and process CPU and memory from
//! /proc, the bytes it sent to viewers, its session count and a health score.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rdp_proxy_core::node::ServiceLoad;

/// Bytes sent to viewers since the worker started; cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Traffic(Arc<AtomicU64>);

impl Traffic {
    pub(crate) fn add(&self, bytes: u64) {
        self.0.fetch_add(bytes, Ordering::Relaxed);
    }

    fn total(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Turns counters into rates between two heartbeats.
pub(crate) struct Meter {
    sampler: rdp_proxy_host::Sampler,
    last_bytes: u64,
    last_at: Instant,
    /// Smoothed CPU figures: one heartbeat's sample of a busy machine swings by tens of
    /// percent, which would make placement flip between equal nodes.
    node_cpu: Smoothed,
    cpu_cores: Smoothed,
}

/// Exponentially weighted moving average; the first sample is taken as is.
#[derive(Default)]
struct Smoothed(Option<f64>);

impl Smoothed {
    /// Weight of the newest sample; with two-second heartbeats the average spans about ten
    /// seconds.
    const ALPHA: f64 = 0.2;

    fn add(&mut self, sample: f64) -> f64 {
        let next = match self.0 {
            Some(previous) => previous + Self::ALPHA * (sample - previous),
            None => sample,
        };
        self.0 = Some(next);
        next
    }
}

/// Health signals the worker passes to the meter.
pub(crate) struct Health {
    /// The last heartbeat or reconciliation could not reach Redis or PostgreSQL.
    pub(crate) store_failing: bool,
    pub(crate) redis_failing: bool,
}

impl Meter {
    pub(crate) fn new() -> Self {
        Self {
            sampler: rdp_proxy_host::Sampler::new(),
            last_bytes: 0,
            last_at: Instant::now(),
            node_cpu: Smoothed::default(),
            cpu_cores: Smoothed::default(),
        }
    }

    pub(crate) fn measure(
        &mut self,
        traffic: &Traffic,
        sessions: usize,
        max_sessions: u32,
        health: &Health,
    ) -> ServiceLoad {
        // An unreadable /proc leaves the figure at zero and costs health instead.
        let node = self.sampler.sample_node().ok();
        let process = self.sampler.sample_process(std::process::id()).ok();
        let bytes = traffic.total();
        let elapsed = self.last_at.elapsed().as_secs_f64().max(0.001);
        let rate = (bytes.saturating_sub(self.last_bytes) as f64 / elapsed) as u64;
        self.last_bytes = bytes;
        self.last_at = Instant::now();
        let mut score: u8 = if node.is_some() && process.is_some() { 100 } else { 70 };
        if health.store_failing {
            score = score.saturating_sub(60);
        }
        if health.redis_failing {
            score = score.saturating_sub(30);
        }
        ServiceLoad {
            node_cpu: self
                .node_cpu
                .add(node.map_or(0.0, |node| node.cpu_busy.clamp(0.0, 1.0)))
                .clamp(0.0, 1.0),
            cpu_cores: self
                .cpu_cores
                .add(process.map_or(0.0, |process| process.cpu_cores.max(0.0))),
            memory_available_bytes: node.map_or(0, |node| node.memory_available_bytes),
            memory_bytes: process.map_or(0, |process| process.memory_bytes),
            network_bytes_per_sec: rate,
            sessions: u32::try_from(sessions).unwrap_or(u32::MAX),
            max_sessions,
            connector_load: 0.0,
            relay_load: 0.0,
            health: score,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Smoothed;

    #[test]
    fn smoothing_starts_at_the_first_sample_and_damps_swings() {
        let mut average = Smoothed::default();
        assert!((average.add(0.5) - 0.5).abs() < 1e-9);
        let after_spike = average.add(1.0);
        assert!(after_spike > 0.5, "{after_spike}");
        assert!(after_spike < 0.7, "{after_spike}");
    }
}
