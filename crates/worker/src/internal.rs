//! The worker's internal API, used only by the control plane and authenticated with the shared
//! cluster secret.
//!
//! NOTE: plain HTTP with a shared secret; meant for loopback or a private network until nodes
//! get their own certificates and mutual TLS.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rdp_proxy_core::SessionId;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

use crate::Shared;
use crate::api::{ActorRef, HeldSession, SECRET_HEADER, StartSession, WorkerError};
use crate::session::{self, Command, CommandError, StartError};

pub(crate) fn router(shared: Shared) -> Router<Shared> {
    let protected = Router::new()
        .route("/internal/v1/sessions", post(start).get(list))
        .route("/internal/v1/sessions/{session_id}/detach", post(detach))
        .route("/internal/v1/sessions/{session_id}/terminate", post(terminate))
        .route("/internal/v1/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(shared, check_secret));
    Router::new().merge(protected).route("/healthz", get(|| async { "ok" }))
}

/// Prometheus text exposition of this worker's metrics.
async fn metrics(State(shared): State<Shared>) -> Response {
    let body = shared.metrics.render(&shared.registry.snapshot());
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(WorkerError {
            code: code.to_owned(),
            message: message.into(),
        }),
    )
        .into_response()
}

async fn start(State(shared): State<Shared>, Json(request): Json<StartSession>) -> Response {
    let session_id = request.session_id;
    match session::start(&shared, request).await {
        Ok(record) => (
            StatusCode::ACCEPTED,
            Json(HeldSession {
                session_id: record.id,
                state: record.state.to_string(),
                viewers: 0,
            }),
        )
            .into_response(),
        Err(StartError::NotFound) => error_response(StatusCode::NOT_FOUND, "session_not_found", "session not found"),
        Err(error @ StartError::OrgNotServed { .. }) => {
            error_response(StatusCode::FORBIDDEN, "org_not_served", error.to_string())
        }
        Err(error @ StartError::Full { .. }) => {
            error_response(StatusCode::SERVICE_UNAVAILABLE, "worker_full", error.to_string())
        }
        Err(error @ StartError::Orphaned) => {
            error_response(StatusCode::SERVICE_UNAVAILABLE, "worker_orphaned", error.to_string())
        }
        Err(error @ (StartError::NotRequested(_) | StartError::AlreadyHeld)) => {
            error_response(StatusCode::CONFLICT, "session_not_startable", error.to_string())
        }
        Err(StartError::Store(store)) => {
            tracing::error!(session.id = %session_id, error = %store, "Could not claim the session");
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "could not record the session start; retry",
            )
        }
    }
}

async fn list(State(shared): State<Shared>) -> Json<Vec<HeldSession>> {
    let held = shared
        .registry
        .snapshot()
        .into_iter()
        .map(|(id, handle)| HeldSession {
            session_id: id,
            state: handle.state.borrow().to_string(),
            viewers: *handle.viewers.borrow(),
        })
        .collect();
    Json(held)
}

async fn detach(State(shared): State<Shared>, Path(id): Path<SessionId>, Json(actor): Json<ActorRef>) -> Response {
    run_command(&shared, id, |reply| Command::Detach { actor, reply }).await
}

async fn terminate(State(shared): State<Shared>, Path(id): Path<SessionId>, Json(actor): Json<ActorRef>) -> Response {
    run_command(&shared, id, |reply| Command::Terminate { actor, reply }).await
}

async fn run_command(
    shared: &Shared,
    id: SessionId,
    build: impl FnOnce(oneshot::Sender<Result<(), CommandError>>) -> Command,
) -> Response {
    let not_held = || {
        error_response(
            StatusCode::NOT_FOUND,
            "session_not_held",
            "this worker does not hold that session",
        )
    };
    let Some(handle) = shared.registry.get(id) else {
        return not_held();
    };
    let (reply, answer) = oneshot::channel();
    if handle.commands.send(build(reply)).await.is_err() {
        return not_held();
    }
    match answer.await {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(error @ CommandError::NotHeld(_))) => {
            self::error_response(StatusCode::CONFLICT, "session_not_held", error.to_string())
        }
        Ok(Err(error @ CommandError::Store(_))) => {
            self::error_response(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", error.to_string())
        }
        Err(_) => not_held(),
    }
}

/// Rejects internal requests without the cluster secret. Compares digests in constant time.
async fn check_secret(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(SECRET_HEADER)
        .map(|value| value.as_bytes())
        .unwrap_or_default();
    let expected = Sha256::digest(shared.config.cluster_secret.as_bytes());
    let presented = Sha256::digest(presented);
    if !bool::from(expected.ct_eq(&presented)) {
        return error_response(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong cluster secret",
        );
    }
    next.run(request).await
}
