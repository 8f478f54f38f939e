//! API errors: a stable machine-readable code, a sentence saying what to do, and an HTTP status.
//! Internal causes are logged with their chain and never sent to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rdp_proxy_core::TransitionError;
use rdp_proxy_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable identifier, e.g. `session_not_found`.
    code: String,
    /// Sentence naming what failed and what to do next.
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found in this organisation"),
        )
    }

    /// Not found in the cluster, for the operator's cluster API, which spans organisations.
    pub fn not_found_in_cluster(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    /// Logs `cause` with its chain and returns a generic error naming the failed step.
    pub fn internal(step: &str, cause: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(step, error = %chain(cause), "Request failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "internal",
            format!("{step} failed; retry, and tell the operator if it persists"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound { what } => Self::not_found(what),
            StoreError::AlreadyExists { what } => Self::conflict("already_exists", format!("{what} already exists")),
            StoreError::Transition(TransitionError::VersionConflict { .. }) => {
                Self::conflict("conflict", "the session changed at the same time; reload it and retry")
            }
            StoreError::Transition(error) => Self::conflict("invalid_state", error.to_string()),
            StoreError::Conflict(message) => Self::conflict("conflict", message),
            StoreError::InvalidCursor => Self::bad_request(
                "invalid_cursor",
                "cursor is not one this list returned; start from the first page",
            ),
            other => Self::internal("database access", &other),
        }
    }
}

impl From<rdp_proxy_coord::CoordError> for ApiError {
    fn from(error: rdp_proxy_coord::CoordError) -> Self {
        Self::internal("Redis access", &error)
    }
}

fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
