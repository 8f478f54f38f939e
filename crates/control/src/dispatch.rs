//! Talking to workers: choosing one for a new session and sending it commands.

use rdp_proxy_coord::WorkerBeat;
use rdp_proxy_core::{OrgId, SessionId, UserId, WorkerId};
use rdp_proxy_worker::api::{ActorRef, SECRET_HEADER, StartSession, TargetSpec, WorkerError};

use crate::AppState;

#[derive(Debug, thiserror::Error)]
pub(crate) enum DispatchError {
    #[error("no worker is available")]
    NoWorker,
    #[error("worker {0} is not reachable")]
    Unreachable(WorkerId),
    #[error("worker rejected the request: {message} ({code})")]
    Rejected { status: u16, code: String, message: String },
}

/// Picks the live worker holding the fewest sessions.
pub(crate) async fn choose_worker(state: &AppState) -> Result<WorkerBeat, DispatchError> {
    let workers = state.coord.live_workers().await.map_err(|error| {
        tracing::warn!(error = %error, "Could not list workers");
        DispatchError::NoWorker
    })?;
    workers
        .into_iter()
        .min_by_key(|beat| beat.sessions)
        .ok_or(DispatchError::NoWorker)
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
