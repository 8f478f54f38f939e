//! Route table of the public API, one file per resource.

pub(crate) mod auth;
pub(crate) mod sessions;
pub(crate) mod targets;

use axum::Router;

use crate::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .merge(auth::router())
        .merge(targets::router())
        .merge(sessions::router())
}
