//! The lost-worker sweep: sessions whose worker has not sent a heartbeat for the grace period
//! become `lost`, with the reason in their history.
//!
//! Several control-plane instances may sweep at once; the versioned transition makes the second
//! writer fail harmlessly.

use std::collections::HashMap;
use std::time::Instant;

use rdp_proxy_core::session::EventKind;
use rdp_proxy_core::{OrgId, SessionId, SessionState, WorkerId};
use rdp_proxy_store::Transition;
use tokio_util::sync::CancellationToken;

use crate::AppState;

pub(crate) async fn run(state: AppState, shutdown: CancellationToken) {
    let mut missing_since: HashMap<WorkerId, Instant> = HashMap::new();
    let mut ticker = tokio::time::interval(state.config.sweep_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Err(error) = sweep(&state, &mut missing_since).await {
            tracing::warn!(error = %error, "Lost-worker sweep failed; retrying next interval");
        }
        if let Err(error) = fail_undispatched(&state).await {
            tracing::warn!(error = %error, "Sweep of undispatched sessions failed; retrying next interval");
        }
    }
}

async fn sweep(
    state: &AppState,
    missing_since: &mut HashMap<WorkerId, Instant>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let held = state.store.held_sessions().await?;
    let mut holders: HashMap<WorkerId, Vec<(OrgId, SessionId)>> = HashMap::new();
    for (org, session, worker) in held {
        holders.entry(worker).or_default().push((org, session));
    }
    missing_since.retain(|worker, _| holders.contains_key(worker));
    for (worker, sessions) in holders {
        // A Redis error is not evidence that the worker died: skip the round.
        if state.coord.worker(worker).await?.is_some() {
            missing_since.remove(&worker);
            continue;
        }
        let since = *missing_since.entry(worker).or_insert_with(Instant::now);
        let silent = since.elapsed();
        if silent < state.config.lost_grace {
            continue;
        }
        let reason = format!("worker {worker} sent no heartbeat for {} s", silent.as_secs());
        mark_lost(state, worker, &sessions, &reason).await?;
        missing_since.remove(&worker);
    }
    Ok(())
}

/// A session still `requested` after this long was never claimed by a worker.
const DISPATCH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

async fn fail_undispatched(state: &AppState) -> Result<(), rdp_proxy_store::StoreError> {
    for (org, session) in state.store.stale_requested(DISPATCH_DEADLINE).await? {
        let reason = format!("no worker claimed the session within {} s", DISPATCH_DEADLINE.as_secs());
        let record = state.store.get_session(org, session).await?;
        let change = Transition::new(SessionState::Failed, EventKind::Failed)
            .expect_version(record.version)
            .reason(reason);
        match state.store.transition(org, session, change).await {
            Ok(_) => {
                tracing::warn!(session.id = %session, org.id = %org, "Session never dispatched; marked failed")
            }
            Err(error) => {
                tracing::info!(session.id = %session, org.id = %org, error = %error, "Session changed during the sweep; skipped")
            }
        }
    }
    Ok(())
}

async fn mark_lost(
    state: &AppState,
    worker: WorkerId,
    sessions: &[(OrgId, SessionId)],
    reason: &str,
) -> Result<(), rdp_proxy_store::StoreError> {
    for &(org, id) in sessions {
        let session = state.store.get_session(org, id).await?;
        let change = Transition::new(SessionState::Lost, EventKind::Lost)
            .expect_version(session.version)
            .reason(reason);
        match state.store.transition(org, session.id, change).await {
            Ok(_) => {
                tracing::warn!(session.id = %session.id, org.id = %session.org, worker.id = %worker, reason, "Session lost")
            }
            Err(error) => {
                tracing::info!(session.id = %session.id, error = %error, "Session changed during the sweep; skipped")
            }
        }
        if let Err(error) = state.coord.forget_session(session.org, session.id).await {
            tracing::debug!(session.id = %session.id, error = %error, "Could not remove routing keys");
        }
    }
    Ok(())
}
