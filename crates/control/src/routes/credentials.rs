//! Credentials targets log in with. Passwords are write-only: sealed on the way in, never
//! returned.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use rdp_proxy_core::audit::Outcome;
use rdp_proxy_policy::Action;
use rdp_proxy_store::NewCredential;

use crate::auth::Authenticated;
use crate::authz::{self};
use crate::extract::{Json, Path, Query};
use crate::routes::{page_cursor, page_limit};
use crate::views::{CredentialInput, CredentialView, Page, PageQuery};
use crate::{ApiError, AppState, text};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/credentials", get(list_credentials).post(create_credential))
        .route(
            "/api/v1/credentials/{id}",
            get(get_credential).patch(update_credential).delete(delete_credential),
        )
}

/// Lists the organisation's credentials (names and user names only).
#[utoipa::path(get, path = "/api/v1/credentials", tag = "credentials", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Page<CredentialView>), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn list_credentials(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<CredentialView>>, ApiError> {
    authz::require_in_org(&state, &caller, Action::ManageTargets).await?;
    let cursor = page_cursor(query.cursor.as_deref())?;
    let page = state
        .store
        .org_tx(caller.org)
        .await?
        .list_credentials(cursor.as_ref(), page_limit(query.limit)?)
        .await?;
    Ok(Json(Page::from_store(page, CredentialView::from)))
}

/// Returns one credential without its password.
#[utoipa::path(get, path = "/api/v1/credentials/{id}", tag = "credentials", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = CredentialView), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn get_credential(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<uuid::Uuid>,
) -> Result<Json<CredentialView>, ApiError> {
    authz::require_in_org(&state, &caller, Action::ManageTargets).await?;
    let record = state.store.org_tx(caller.org).await?.get_credential(id).await?;
    Ok(Json(record.into()))
}

/// Stores a credential; the password is encrypted with the organisation's key.
#[utoipa::path(post, path = "/api/v1/credentials", tag = "credentials", security(("bearer" = [])), request_body = CredentialInput,
    responses((status = 201, body = CredentialView), (status = 400, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn create_credential(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Json(input): Json<CredentialInput>,
) -> Result<(StatusCode, Json<CredentialView>), ApiError> {
    authz::require_in_org(&state, &caller, Action::ManageTargets).await?;
    let missing = |field: &str| ApiError::bad_request("missing_field", format!("{field} is required"));
    let name = text::name("name", input.name.as_deref().ok_or_else(|| missing("name"))?, 100)?;
    let username = text::name(
        "username",
        input.username.as_deref().ok_or_else(|| missing("username"))?,
        256,
    )?;
    let password = input.password.ok_or_else(|| missing("password"))?;
    if password.len() > 1024 {
        return Err(ApiError::bad_request(
            "invalid_password",
            "password must be at most 1024 bytes",
        ));
    }
    let domain = match input.domain.flatten() {
        Some(domain) => Some(text::name("domain", &domain, 256)?),
        None => None,
    };
    let id = uuid::Uuid::new_v4();
    let mut tx = state.store.org_tx(caller.org).await?;
    let sealed = state.vault.seal(&mut tx, id, &password).await.map_err(vault_error)?;
    let record = tx
        .insert_credential(&NewCredential {
            id,
            name,
            username,
            domain,
            sealed,
        })
        .await?;
    tx.audit(
        &caller
            .audit("credential.create", "credential", Outcome::Ok)
            .object(id)
            .details(serde_json::json!({"name": record.name})),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// Changes a credential; a new password replaces the stored one.
#[utoipa::path(patch, path = "/api/v1/credentials/{id}", tag = "credentials", security(("bearer" = [])), request_body = CredentialInput,
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = CredentialView), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn update_credential(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<uuid::Uuid>,
    Json(input): Json<CredentialInput>,
) -> Result<Json<CredentialView>, ApiError> {
    authz::require_in_org(&state, &caller, Action::ManageTargets).await?;
    let name = input
        .name
        .as_deref()
        .map(|raw| text::name("name", raw, 100))
        .transpose()?;
    let username = input
        .username
        .as_deref()
        .map(|raw| text::name("username", raw, 256))
        .transpose()?;
    let domain = match input.domain {
        Some(Some(raw)) => Some(Some(text::name("domain", &raw, 256)?)),
        Some(None) => Some(None),
        None => None,
    };
    let mut tx = state.store.org_tx(caller.org).await?;
    // Checked before sealing, so a foreign id creates no data key in this organisation.
    tx.get_credential(id).await?;
    let sealed = match &input.password {
        Some(password) if password.len() > 1024 => {
            return Err(ApiError::bad_request(
                "invalid_password",
                "password must be at most 1024 bytes",
            ));
        }
        Some(password) => Some(state.vault.seal(&mut tx, id, password).await.map_err(vault_error)?),
        None => None,
    };
    let record = tx
        .update_credential(
            id,
            name.as_deref(),
            username.as_deref(),
            domain.as_ref().map(|d| d.as_deref()),
            sealed.as_deref(),
        )
        .await?;
    tx.audit(
        &caller
            .audit("credential.update", "credential", Outcome::Ok)
            .object(id)
            .details(serde_json::json!({"password_changed": sealed.is_some()})),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(record.into()))
}

/// Deletes a credential that no target uses.
#[utoipa::path(delete, path = "/api/v1/credentials/{id}", tag = "credentials", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn delete_credential(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<uuid::Uuid>,
) -> Result<StatusCode, ApiError> {
    authz::require_in_org(&state, &caller, Action::ManageTargets).await?;
    let mut tx = state.store.org_tx(caller.org).await?;
    tx.delete_credential(id).await?;
    tx.audit(&caller.audit("credential.delete", "credential", Outcome::Ok).object(id))
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) fn vault_error(error: crate::VaultError) -> ApiError {
    match error {
        crate::VaultError::Store(error) => error.into(),
        other => ApiError::internal("credential encryption", &other),
    }
}
