//! RDP targets of the current organisation. Credentials are never returned.

use axum::Router;
use axum::extract::State;
use axum::routing::get;

use crate::extract::Json;

use crate::auth::Authenticated;
use crate::views::{Page, TargetView};
use crate::{ApiError, AppState};

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/api/v1/targets", get(list_targets))
}

/// Lists the organisation's RDP targets.
#[utoipa::path(get, path = "/api/v1/targets", tag = "targets", security(("bearer" = [])),
    responses((status = 200, body = Page<TargetView>), (status = 401, body = crate::error::ErrorBody)))]
pub(crate) async fn list_targets(
    State(state): State<AppState>,
    Authenticated(actor): Authenticated,
) -> Result<Json<Page<TargetView>>, ApiError> {
    let items = state
        .store
        .list_targets(actor.org)
        .await?
        .into_iter()
        .map(TargetView::from)
        .collect();
    Ok(Json(Page { items }))
}
