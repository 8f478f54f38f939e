//! API keys for automation: scoped to one organisation, with a role, optionally expiring.
//! The key is shown once, when it is created; only a hash is stored.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use rdp_proxy_core::access::Role;
use rdp_proxy_core::audit::Outcome;
use rdp_proxy_policy::Action;
use rdp_proxy_store::NewApiKey;
use time::OffsetDateTime;

use crate::auth::{Authenticated, new_api_key};
use crate::authz::{self};
use crate::extract::{Json, Path, Query};
use crate::routes::{page_cursor, page_limit, role};
use crate::views::{ApiKeyView, CreateApiKey, Page, PageQuery};
use crate::{ApiError, AppState, text};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/api-keys", get(list_api_keys).post(create_api_key))
        .route("/api/v1/api-keys/{id}", delete(revoke_api_key))
}

/// Lists the organisation's API keys, revoked ones included; never the keys themselves.
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "api-keys", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Page<ApiKeyView>), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn list_api_keys(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<ApiKeyView>>, ApiError> {
    authz::require_in_org(&state, &caller, Action::ManageApiKeys).await?;
    let cursor = page_cursor(query.cursor.as_deref())?;
    let page = state
        .store
        .org_tx(caller.org)
        .await?
        .list_api_keys(cursor.as_ref(), page_limit(query.limit)?)
        .await?;
    Ok(Json(Page::from_store(page, ApiKeyView::from)))
}

/// Creates an API key with a role no higher than the caller's own.
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "api-keys", security(("bearer" = [])), request_body = CreateApiKey,
    responses((status = 201, body = ApiKeyView), (status = 400, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn create_api_key(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Json(input): Json<CreateApiKey>,
) -> Result<(StatusCode, Json<ApiKeyView>), ApiError> {
    authz::require_in_org(&state, &caller, Action::ManageApiKeys).await?;
    // Every key names the person behind it, whose removal or role change revokes it.
    let creator = caller.require_user("create API keys")?;
    let name = text::name("name", &input.name, 100)?;
    let key_role = role(&input.role)?;
    if key_role > caller.principal.role || key_role == Role::Owner {
        return Err(ApiError::forbidden(format!(
            "an API key may not have the {} role: keys get at most your own role, and never owner",
            key_role.as_str()
        )));
    }
    let expires_at = match input.expires_in_days {
        Some(days @ 1..=3650) => Some(OffsetDateTime::now_utc() + time::Duration::days(i64::from(days))),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_expiry",
                "expires_in_days must be 1 to 3650",
            ));
        }
        None => None,
    };
    let id = uuid::Uuid::new_v4();
    let (key, secret_hash) = new_api_key(caller.org, id);
    let mut tx = state.store.org_tx(caller.org).await?;
    let record = tx
        .insert_api_key(&NewApiKey {
            id,
            name,
            role: key_role,
            secret_hash,
            created_by: Some(creator),
            expires_at,
        })
        .await?;
    tx.audit(
        &caller
            .audit("api_key.create", "api_key", Outcome::Ok)
            .object(id)
            .details(serde_json::json!({"name": record.name, "role": key_role.as_str()})),
    )
    .await?;
    tx.commit().await?;
    let mut view = ApiKeyView::from(record);
    view.key = Some(key);
    Ok((StatusCode::CREATED, Json(view)))
}

/// Revokes an API key; requests with it are refused from now on.
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "api-keys", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn revoke_api_key(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<uuid::Uuid>,
) -> Result<StatusCode, ApiError> {
    authz::require_in_org(&state, &caller, Action::ManageApiKeys).await?;
    let mut tx = state.store.org_tx(caller.org).await?;
    tx.revoke_api_key(id).await?;
    tx.audit(&caller.audit("api_key.revoke", "api_key", Outcome::Ok).object(id))
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
