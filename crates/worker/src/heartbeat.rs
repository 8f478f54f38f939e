//! Periodic heartbeat: publishes the worker, re-asserts routing and leases in Redis (so a Redis
//! that restarted empty is repopulated), and reconciles held sessions with PostgreSQL.

use rdp_proxy_coord::WorkerBeat;
use tokio_util::sync::CancellationToken;

use crate::Shared;
use crate::session::Command;

pub(crate) async fn run(shared: Shared, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(shared.config.heartbeat_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut redis_failing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match publish(&shared).await {
            Ok(()) if redis_failing => {
                tracing::info!(worker.id = %shared.id, "Redis reachable again; routing and leases re-asserted");
                redis_failing = false;
            }
            Ok(()) => {}
            Err(error) if !redis_failing => {
                tracing::warn!(worker.id = %shared.id, error = %error, "Heartbeat to Redis failed; sessions continue");
                redis_failing = true;
            }
            Err(_) => {}
        }
        if let Err(error) = reconcile(&shared).await {
            tracing::warn!(worker.id = %shared.id, error = %error, "Could not reconcile sessions with PostgreSQL");
        }
    }
}

async fn publish(shared: &Shared) -> Result<(), rdp_proxy_coord::CoordError> {
    let beat = WorkerBeat {
        id: shared.id,
        viewer_url: shared.config.viewer_url.clone(),
        internal_url: shared.config.internal_url.clone(),
        sessions: u32::try_from(shared.registry.len()).unwrap_or(u32::MAX),
        version: env!("CARGO_PKG_VERSION").to_owned(),
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

/// Ends local sessions that PostgreSQL already records as final, for example marked `lost`
/// while this worker was paused or unreachable, so a returning worker never resumes them.
async fn reconcile(shared: &Shared) -> Result<(), rdp_proxy_store::StoreError> {
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
