//! The organisation's audit trail, for those the policies let read it.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use rdp_proxy_core::audit::Outcome;
use rdp_proxy_policy::{Action, Resource};
use rdp_proxy_store::AuditFilter;

use crate::auth::Authenticated;
use crate::authz::{self, Denial};
use crate::extract::{Json, Query};
use crate::routes::{page_cursor, page_limit};
use crate::views::{AuditCheckView, AuditQuery, AuditView, Page};
use crate::{ApiError, AppState};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/audit", get(list_audit))
        .route("/api/v1/audit/verify", get(verify_audit))
}

/// Audit records, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = Page<AuditView>), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn list_audit(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Page<AuditView>>, ApiError> {
    authz::require(
        &state,
        &caller,
        Action::ReadAudit,
        &Resource::Org(caller.org.0),
        Denial::Forbidden,
    )
    .await?;
    let outcome = match query.result.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(Outcome::parse(raw).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_result",
                format!("unknown result {raw:?}; use ok, denied or failed"),
            )
        })?),
    };
    let filter = AuditFilter {
        action: query.action.filter(|action| !action.is_empty()),
        actor_id: query.actor_id,
        outcome,
    };
    let cursor = page_cursor(query.cursor.as_deref())?;
    let page = state
        .store
        .org_tx(caller.org)
        .await?
        .list_audit(&filter, cursor.as_ref(), page_limit(query.limit)?)
        .await?;
    Ok(Json(Page::from_store(page, AuditView::from)))
}

/// Recomputes the organisation's hash chain and reports the first record that does not match.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = AuditCheckView), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn verify_audit(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Json<AuditCheckView>, ApiError> {
    authz::require(
        &state,
        &caller,
        Action::ReadAudit,
        &Resource::Org(caller.org.0),
        Denial::Forbidden,
    )
    .await?;
    let check = state.store.verify_audit(caller.org).await?;
    Ok(Json(AuditCheckView {
        ok: check.first_bad_seq.is_none(),
        checked: check.checked,
        first_bad_seq: check.first_bad_seq,
        problem: check.problem,
    }))
}
