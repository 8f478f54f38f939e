//! Periodic heartbeat: publishes the worker and its measured load, re-asserts routing and leases
//! in Redis (so a Redis that restarted empty is repopulated), applies the node configuration the
//! agent wrote, and reconciles with PostgreSQL: sessions recorded as final elsewhere are closed,
//! a registration declared lost drops every local session and registers again, and a revoked
//! node stops the worker.

use rdp_proxy_coord::WorkerBeat;
use rdp_proxy_core::node::NodeState;
use tokio_util::sync::CancellationToken;

use crate::Shared;
use crate::load::{Health, Meter};
use crate::session::Command;

/// Delay before the next attempt after a failed heartbeat.
const RETRY_AFTER_FAILURE: std::time::Duration = std::time::Duration::from_millis(300);

pub(crate) async fn run(shared: Shared, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(shared.config.heartbeat_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut meter = Meter::new();
    let mut health = Health {
        store_failing: false,
        redis_failing: false,
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        apply_node_config(&shared);
        if orphaned(&shared) && shared.registry.len() == 0 {
            tracing::info!(worker.id = %shared.id, "Supervisor gone and no session left; stopping");
            shutdown.cancel();
            return;
        }
        // Reconcile first, so a worker that returns from a pause never re-asserts routes for
        // sessions recorded as lost meanwhile.
        match reconcile(&shared, &shutdown).await {
            Ok(()) => health.store_failing = false,
            Err(error) => {
                health.store_failing = true;
                tracing::warn!(worker.id = %shared.id, error = %error, "Could not reconcile sessions with PostgreSQL");
            }
        }
        match publish(&shared, &mut meter, &health).await {
            Ok(()) if health.redis_failing => {
                tracing::info!(worker.id = %shared.id, "Redis reachable again; routing and leases re-asserted");
                health.redis_failing = false;
            }
            Ok(()) => {}
            Err(error) => {
                if !health.redis_failing {
                    tracing::warn!(worker.id = %shared.id, error = %error, "Heartbeat to Redis failed; sessions continue");
                    health.redis_failing = true;
                }
                // A Redis that restarted needs the beat back before the control plane's grace
                // period ends, so retry well before the next interval.
                ticker.reset_after(RETRY_AFTER_FAILURE.min(shared.config.heartbeat_interval));
            }
        }
    }
}

/// Checks whether the supervising process is gone (this process was re-parented), and logs it
/// once.
fn orphaned(shared: &Shared) -> bool {
    use std::sync::atomic::Ordering;
    if shared.orphaned.load(Ordering::SeqCst) {
        return true;
    }
    let Some(parent) = shared.config.parent else {
        return false;
    };
    if std::os::unix::process::parent_id() == parent {
        return false;
    }
    shared.orphaned.store(true, Ordering::SeqCst);
    tracing::warn!(
        worker.id = %shared.id,
        parent,
        sessions = shared.registry.len(),
        "Supervisor is gone; taking no new sessions and stopping once the held ones end"
    );
    true
}

fn apply_node_config(shared: &Shared) {
    let Some(path) = &shared.config.node_config else { return };
    match shared.settings.reload(path) {
        Ok(Some(version)) => {
            let current = shared.settings.get();
            tracing::info!(
                worker.id = %shared.id,
                config.version = version,
                max_sessions = current.max_sessions,
                connect_timeout_secs = current.connect_timeout.as_secs(),
                "Applied node configuration"
            );
        }
        Ok(None) => {}
        Err(error) => tracing::warn!(worker.id = %shared.id, error, "Kept the current settings"),
    }
}

async fn publish(shared: &Shared, meter: &mut Meter, health: &Health) -> Result<(), rdp_proxy_coord::CoordError> {
    let settings = shared.settings.get();
    let sessions = shared.registry.len();
    let beat = WorkerBeat {
        id: shared.id,
        viewer_url: shared.config.viewer_url.clone(),
        internal_url: shared.config.internal_url.clone(),
        sessions: u32::try_from(sessions).unwrap_or(u32::MAX),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        node: shared.config.node,
        load: Some(meter.measure(&shared.traffic, sessions, settings.max_sessions, health)).map(|mut load| {
            // An orphaned worker takes no new sessions; zero health keeps placement away.
            if shared.orphaned.load(std::sync::atomic::Ordering::SeqCst) {
                load.health = 0;
            }
            load
        }),
        config_version: settings.config_version,
    };
    let ttl = shared.config.heartbeat_ttl();
    shared.coord.beat(&beat, ttl).await?;
    let route_ttl = ttl * 5;
    for (id, handle) in shared.registry.snapshot() {
        shared.coord.set_route(handle.org, id, shared.id, route_ttl).await?;
        let lease = handle.lease.borrow().clone();
        shared
            .coord
            .set_control(handle.org, id, lease.as_ref(), route_ttl)
            .await?;
    }
    Ok(())
}

async fn reconcile(shared: &Shared, shutdown: &CancellationToken) -> Result<(), rdp_proxy_store::StoreError> {
    if let Some(node) = shared.config.node
        && let Some(record) = shared.store.node(node).await?
        && record.state == NodeState::Revoked
    {
        tracing::error!(worker.id = %shared.id, node.id = %node, "This node was revoked; ending every session and stopping");
        shared.registry.terminate_all("the node was revoked").await;
        shutdown.cancel();
        return Ok(());
    }
    check_registration(shared).await?;
    end_sessions_final_elsewhere(shared).await
}

/// A worker that was declared lost (paused or cut off past the grace period) finds its fencing
/// number stale: its sessions were recorded as `lost` and may have been opened again elsewhere,
/// so it drops them without writing and registers again for new work.
async fn check_registration(shared: &Shared) -> Result<(), rdp_proxy_store::StoreError> {
    let registration = shared.store.worker_registration(shared.id).await?;
    let current = shared.fence();
    if registration.is_some_and(|registration| registration.live && registration.fence == current) {
        return Ok(());
    }
    tracing::error!(
        worker.id = %shared.id,
        fence = current,
        "This worker was declared lost; its fencing number is stale. Dropping local sessions without writing"
    );
    for (id, handle) in shared.registry.snapshot() {
        let ended = Command::EndedElsewhere {
            state: rdp_proxy_core::SessionState::Lost,
            reason: Some(format!(
                "worker {} was declared lost (fencing number {current} is stale)",
                shared.id
            )),
        };
        if handle.commands.send(ended).await.is_err() {
            shared.registry.remove(id);
        }
    }
    let fence = shared.store.register_worker(shared.id, shared.config.node).await?;
    shared.set_fence(fence);
    tracing::info!(worker.id = %shared.id, fence, "Registered again with a new fencing number");
    Ok(())
}

/// Ends local sessions that PostgreSQL already records as final, for example marked `lost`
/// while this worker was paused or unreachable, so a returning worker never resumes them.
async fn end_sessions_final_elsewhere(shared: &Shared) -> Result<(), rdp_proxy_store::StoreError> {
    let held = shared.registry.snapshot();
    if held.is_empty() {
        return Ok(());
    }
    let mut by_org: std::collections::BTreeMap<_, Vec<_>> = std::collections::BTreeMap::new();
    for (id, handle) in &held {
        by_org.entry(handle.org).or_default().push(*id);
    }
    let mut states = Vec::new();
    for (org, ids) in by_org {
        states.extend(shared.store.session_states(org, &ids).await?);
    }
    for (id, state, reason) in states {
        if !state.is_final() {
            continue;
        }
        if let Some(handle) = shared.registry.get(id) {
            tracing::warn!(session.id = %id, state = %state, "Session ended elsewhere; closing the local connection");
            let _ = handle.commands.send(Command::EndedElsewhere { state, reason }).await;
        }
    }
    Ok(())
}
