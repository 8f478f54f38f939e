//! Route table of the public API, one file per resource.

pub(crate) mod api_keys;
pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod credentials;
pub(crate) mod members;
pub(crate) mod nodes;
pub(crate) mod policy;
pub(crate) mod sessions;
pub(crate) mod targets;

use axum::Router;
use rdp_proxy_store::Cursor;

use crate::{ApiError, AppState};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .merge(auth::router())
        .merge(targets::router())
        .merge(credentials::router())
        .merge(members::router())
        .merge(policy::router())
        .merge(api_keys::router())
        .merge(audit::router())
        .merge(sessions::router())
        .merge(nodes::router())
}

/// Page size from `?limit=`: 1–200, 50 when absent.
pub(crate) fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(50);
    if (1..=200).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::bad_request(
            "invalid_limit",
            "limit must be between 1 and 200",
        ))
    }
}

/// Decodes `?cursor=`.
pub(crate) fn page_cursor(cursor: Option<&str>) -> Result<Option<Cursor>, ApiError> {
    cursor
        .filter(|raw| !raw.is_empty())
        .map(|raw| {
            Cursor::decode(raw).map_err(|_| {
                ApiError::bad_request(
                    "invalid_cursor",
                    "cursor is not one this list returned; start from the first page",
                )
            })
        })
        .transpose()
}

/// Parses a role name.
pub(crate) fn role(raw: &str) -> Result<rdp_proxy_core::access::Role, ApiError> {
    rdp_proxy_core::access::Role::parse(raw.trim()).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_role",
            format!("unknown role {raw:?}; use owner, admin, operator, member or auditor"),
        )
    })
}
