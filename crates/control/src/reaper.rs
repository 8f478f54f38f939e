//! The sweeps: a worker that has not sent a heartbeat for the grace period is declared lost (its
//! fencing number goes stale) and its sessions become `lost` with the reason in their history;
//! a node whose agent stopped reporting becomes `down`; a session no worker claimed fails.
//!
//! Several control-plane instances may sweep at once; the versioned transition makes the second
//! writer fail harmlessly.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use rdp_proxy_core::node::NodeState;
use rdp_proxy_core::session::EventKind;
use rdp_proxy_core::{NodeId, OrgId, SessionId, SessionState, WorkerId};
use rdp_proxy_store::Transition;
use tokio_util::sync::CancellationToken;

use crate::AppState;

pub(crate) async fn run(state: AppState, shutdown: CancellationToken) {
    let mut missing = Missing::default();
    let mut redis = RedisWatch::default();
    let mut rounds: u64 = 0;
    let mut ticker = tokio::time::interval(state.config.sweep_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if redis.check(&state).await {
            if let Err(error) = sweep_workers(&state, &mut missing.workers).await {
                tracing::warn!(error = %error, "Lost-worker sweep failed; retrying next interval");
            }
            if let Err(error) = sweep_nodes(&state, &mut missing.nodes).await {
                tracing::warn!(error = %error, "Node sweep failed; retrying next interval");
            }
        } else {
            // Heartbeats could not be renewed or were wiped: silence counts from now on.
            missing = Missing::default();
        }
        rounds += 1;
        if rounds.is_multiple_of(PRUNE_EVERY_ROUNDS) {
            match state.store.prune_worker_registrations(KEEP_ENDED_WORKERS).await {
                Ok(0) => {}
                Ok(count) => tracing::info!(count, "Pruned registrations of workers that ended long ago"),
                Err(error) => tracing::warn!(error = %error, "Could not prune old worker registrations"),
            }
        }
        if let Err(error) = fail_undispatched(&state).await {
            tracing::warn!(error = %error, "Sweep of undispatched sessions failed; retrying next interval");
        }
    }
}

/// Tells whether Redis can be trusted to show who is alive this round. Redis unreachable, or a
/// different server (`run_id`) than last round, means heartbeats may be missing through no
/// fault of their senders: the round is skipped and every grace period starts again.
#[derive(Default)]
struct RedisWatch {
    run_id: Option<String>,
}

impl RedisWatch {
    async fn check(&mut self, state: &AppState) -> bool {
        match state.coord.server_run_id().await {
            Ok(run_id) if self.run_id.as_ref() == Some(&run_id) => true,
            Ok(run_id) => {
                if self.run_id.is_some() {
                    tracing::warn!(
                        run_id,
                        "Redis restarted; waiting a full grace period before declaring anything lost"
                    );
                }
                self.run_id = Some(run_id);
                false
            }
            Err(error) => {
                if self.run_id.take().is_some() {
                    tracing::warn!(error = %error, "Redis unreachable; no worker or node is declared lost meanwhile");
                }
                false
            }
        }
    }
}

/// Registrations of ended workers are kept this long, for diagnosis, then deleted.
const KEEP_ENDED_WORKERS: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
/// Sweep rounds between two prunings (an hour at the default one-second interval).
const PRUNE_EVERY_ROUNDS: u64 = 3600;

/// Since when this instance has seen no heartbeat of each worker and no report of each node.
#[derive(Default)]
struct Missing {
    workers: HashMap<WorkerId, Instant>,
    nodes: HashMap<NodeId, Instant>,
}

type SweepError = Box<dyn std::error::Error + Send + Sync>;

/// Declares live workers without a heartbeat for the grace period lost (their fencing number
/// becomes stale) and marks their sessions `lost`. Sessions held by a worker that is no longer
/// registered as live are marked at once.
async fn sweep_workers(state: &AppState, missing_since: &mut HashMap<WorkerId, Instant>) -> Result<(), SweepError> {
    // Held sessions first: a worker that registers and claims a session after this read is
    // then either in both lists or in neither, never a holder without a live registration.
    let mut holders: HashMap<WorkerId, Vec<(OrgId, SessionId)>> = HashMap::new();
    for (org, session, worker) in state.store.held_sessions().await? {
        holders.entry(worker).or_default().push((org, session));
    }
    let registrations = state.store.live_worker_registrations().await?;
    // A Redis error is not evidence that a worker died: the `?` skips the round.
    let beating: HashSet<WorkerId> = state
        .coord
        .live_workers()
        .await?
        .into_iter()
        .map(|beat| beat.id)
        .collect();
    let live: HashSet<WorkerId> = registrations.iter().map(|registration| registration.id).collect();
    missing_since.retain(|worker, _| live.contains(worker));
    for registration in &registrations {
        let worker = registration.id;
        if beating.contains(&worker) {
            missing_since.remove(&worker);
            continue;
        }
        let since = *missing_since.entry(worker).or_insert_with(Instant::now);
        let silent = since.elapsed();
        if silent < state.config.lost_grace {
            continue;
        }
        let reason = format!("worker {worker} sent no heartbeat for {} s", silent.as_secs());
        if state.store.end_worker(worker, true, &reason).await? {
            tracing::warn!(worker.id = %worker, fence = registration.fence, reason, "Worker declared lost");
        }
        missing_since.remove(&worker);
        if let Some(sessions) = holders.remove(&worker) {
            mark_lost(state, worker, &sessions, &reason).await?;
        }
    }
    for (worker, sessions) in holders {
        if live.contains(&worker) {
            continue;
        }
        let reason = format!("worker {worker} is no longer running");
        mark_lost(state, worker, &sessions, &reason).await?;
    }
    Ok(())
}

/// Marks nodes whose agent sent no report for the grace period `down`.
async fn sweep_nodes(state: &AppState, missing_since: &mut HashMap<NodeId, Instant>) -> Result<(), SweepError> {
    let nodes: Vec<_> = state
        .store
        .nodes(None)
        .await?
        .into_iter()
        .filter(|node| matches!(node.state, NodeState::Joining | NodeState::Ready | NodeState::Draining))
        .collect();
    let ids: Vec<NodeId> = nodes.iter().map(|node| node.id).collect();
    let live = state.coord.node_reports_live(&ids).await?;
    missing_since.retain(|node, _| ids.contains(node));
    for (node, live) in nodes.iter().zip(live) {
        if live {
            missing_since.remove(&node.id);
            continue;
        }
        let since = *missing_since.entry(node.id).or_insert_with(Instant::now);
        let silent = since.elapsed();
        if silent < state.config.lost_grace {
            continue;
        }
        let reason = match node.last_report_at {
            Some(at) => format!("the node agent sent no report since {at}"),
            None => "the node agent never reported".to_owned(),
        };
        if state.store.mark_node_down(node.id, &reason).await? {
            tracing::warn!(node.id = %node.id, node.name = %node.name, reason, "Node down");
        }
        missing_since.remove(&node.id);
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
