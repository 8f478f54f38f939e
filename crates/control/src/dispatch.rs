//! Talking to workers: choosing one for a new session and sending it commands.

use rdp_proxy_coord::WorkerBeat;
use rdp_proxy_core::{OrgId, SessionId, UserId, WorkerId};
use rdp_proxy_worker::api::{ActorRef, SECRET_HEADER, StartSession, TargetSpec, WorkerError};

use crate::AppState;

#[derive(Debug, thiserror::Error)]
pub(crate) enum DispatchError {
    #[error("{0}")]
    NoWorker(String),
    #[error("worker {0} is not reachable")]
    Unreachable(WorkerId),
    #[error("worker rejected the request: {message} ({code})")]
    Rejected { status: u16, code: String, message: String },
}

/// Places a new session and starts it: tries the ranked workers best first, moving on when one
/// is unreachable or full, and gives up after three. The error names why nothing was possible.
pub(crate) async fn place_and_start(
    state: &AppState,
    org: OrgId,
    session: SessionId,
    target: TargetSpec,
) -> Result<WorkerBeat, DispatchError> {
    let placement = crate::nodes::placement::decide(state, org).await.map_err(|error| {
        tracing::warn!(error = %error, "Could not gather placement candidates");
        DispatchError::NoWorker(format!("placement failed: {error}"))
    })?;
    if placement.decision.ranked.is_empty() {
        return Err(DispatchError::NoWorker(no_worker_reason(&placement.decision)));
    }
    let mut last = None;
    for scored in placement.decision.ranked.iter().take(3) {
        let Some(beat) = placement.beats.get(&scored.worker) else {
            continue;
        };
        match start(state, beat, org, session, target.clone()).await {
            Ok(()) => {
                tracing::info!(session.id = %session, worker.id = %beat.id, node = %scored.node_name, score = scored.score, "Session placed");
                return Ok(beat.clone());
            }
            Err(error @ (DispatchError::Unreachable(_) | DispatchError::Rejected { status: 503, .. })) => {
                tracing::warn!(session.id = %session, worker.id = %beat.id, error = %error, "Worker could not take the session; trying the next");
                last = Some(error);
            }
            Err(error) => return Err(error),
        }
    }
    Err(last.unwrap_or_else(|| DispatchError::NoWorker("no ranked worker answered".into())))
}

/// Summarises why every candidate was filtered out, e.g. "node draining: 2, full: 1".
fn no_worker_reason(decision: &rdp_proxy_core::placement::Decision) -> String {
    use rdp_proxy_core::placement::Rejection;
    if decision.filtered.is_empty() {
        return "no worker is running".into();
    }
    let mut counts: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for filtered in &decision.filtered {
        let reason = match &filtered.reason {
            // Other organisations' nodes are not named to this organisation.
            Rejection::OtherOrganisation => continue,
            Rejection::NotReady { state } => format!("node {state}"),
            Rejection::NoCapability { .. } => "no RDP capability".into(),
            Rejection::ServiceNotEnabled { .. } => "worker service not enabled".into(),
            Rejection::NoHeartbeat => "no heartbeat".into(),
            Rejection::AbsurdFigures { .. } => "implausible load figures".into(),
            Rejection::Unhealthy { .. } => "unhealthy".into(),
            Rejection::Full { .. } => "full".into(),
            Rejection::Unverified { .. } => "not run by a node agent".into(),
        };
        *counts.entry(reason).or_default() += 1;
    }
    if counts.is_empty() {
        return "no worker may serve this organisation".into();
    }
    let parts: Vec<String> = counts.into_iter().map(|(reason, n)| format!("{reason}: {n}")).collect();
    format!("no worker can take the session ({})", parts.join(", "))
}

pub(crate) async fn worker(state: &AppState, id: WorkerId) -> Result<WorkerBeat, DispatchError> {
    match state.coord.worker(id).await {
        Ok(Some(beat)) => Ok(beat),
        Ok(None) => Err(DispatchError::Unreachable(id)),
        Err(error) => {
            tracing::warn!(worker.id = %id, error = %error, "Could not read the worker heartbeat");
            Err(DispatchError::Unreachable(id))
        }
    }
}

pub(crate) async fn start(
    state: &AppState,
    worker: &WorkerBeat,
    org: OrgId,
    session: SessionId,
    target: TargetSpec,
) -> Result<(), DispatchError> {
    let url = format!("{}/internal/v1/sessions", worker.internal_url);
    let request = StartSession {
        session_id: session,
        org_id: org,
        target,
    };
    post(state, worker.id, &url, &request).await
}

/// A command a worker applies to a session it holds, recorded with the user who requested it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SessionCommand {
    Detach,
    Terminate,
}

impl SessionCommand {
    fn path(self) -> &'static str {
        match self {
            Self::Detach => "detach",
            Self::Terminate => "terminate",
        }
    }
}

pub(crate) async fn send_command(
    state: &AppState,
    worker: &WorkerBeat,
    session: SessionId,
    command: SessionCommand,
    actor: Option<UserId>,
    reason: &str,
) -> Result<(), DispatchError> {
    let url = format!(
        "{}/internal/v1/sessions/{session}/{}",
        worker.internal_url,
        command.path()
    );
    let body = ActorRef {
        user_id: actor,
        reason: reason.to_owned(),
    };
    post(state, worker.id, &url, &body).await
}

async fn post<T: serde::Serialize>(
    state: &AppState,
    worker: WorkerId,
    url: &str,
    body: &T,
) -> Result<(), DispatchError> {
    let response = state
        .http
        .post(url)
        .header(SECRET_HEADER, &state.config.cluster_secret)
        .json(body)
        .send()
        .await
        .map_err(|error| {
            tracing::warn!(worker.id = %worker, error = %error, "Worker request failed");
            DispatchError::Unreachable(worker)
        })?;
    if response.status().is_success() {
        return Ok(());
    }
    let status = response.status().as_u16();
    let error = response.json::<WorkerError>().await.unwrap_or(WorkerError {
        code: "unknown".into(),
        message: format!("HTTP {status}"),
    });
    Err(DispatchError::Rejected {
        status,
        code: error.code,
        message: error.message,
    })
}
