//! Members of the current organisation: add (creating the account when the name is new), change
//! role, disable, remove. Only an owner may grant or take away the owner role, and the last
//! active owner cannot be demoted, disabled or removed. Disabling or removing a member revokes
//! their logins and takes control of live sessions away from them at once.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use rdp_proxy_core::UserId;
use rdp_proxy_core::access::Role;
use rdp_proxy_core::audit::Outcome;
use rdp_proxy_policy::Action;
use rdp_proxy_store::{MemberRecord, OrgTx};

use crate::auth::{Authenticated, Caller, hash_password};
use crate::authz::{self};
use crate::extract::{Json, Path, Query};
use crate::routes::{page_cursor, page_limit, role, sessions};
use crate::views::{AddMember, MemberQuery, MemberView, Page, UpdateMember};
use crate::{ApiError, AppState, text};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/members", get(list_members).post(add_member))
        .route(
            "/api/v1/members/{user_id}",
            get(get_member).patch(update_member).delete(remove_member),
        )
}

/// Lists members, ordered by name.
#[utoipa::path(get, path = "/api/v1/members", tag = "members", security(("bearer" = [])), params(MemberQuery),
    responses((status = 200, body = Page<MemberView>), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn list_members(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Query(query): Query<MemberQuery>,
) -> Result<Json<Page<MemberView>>, ApiError> {
    authz::require_in_org(&state, &caller, Action::ManageMembers).await?;
    let role_filter = query.role.as_deref().map(role).transpose()?;
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(status @ ("active" | "disabled" | "invited")) => Some(status),
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_status",
                format!("unknown status {other:?}; use active, disabled or invited"),
            ));
        }
    };
    let cursor = page_cursor(query.cursor.as_deref())?;
    let page = state
        .store
        .org_tx(caller.org)
        .await?
        .list_members(role_filter, status, cursor.as_ref(), page_limit(query.limit)?)
        .await?;
    Ok(Json(Page::from_store(page, MemberView::from)))
}

/// Returns one member.
#[utoipa::path(get, path = "/api/v1/members/{user_id}", tag = "members", security(("bearer" = [])),
    params(("user_id" = uuid::Uuid, Path)), responses((status = 200, body = MemberView), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn get_member(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(user): Path<UserId>,
) -> Result<Json<MemberView>, ApiError> {
    authz::require_in_org(&state, &caller, Action::ManageMembers).await?;
    let member = state.store.org_tx(caller.org).await?.get_member(user).await?;
    Ok(Json(member.into()))
}

/// Adds a member. A new user name creates the account with the given password. An existing
/// user (send no password) is invited and becomes a member after accepting.
#[utoipa::path(post, path = "/api/v1/members", tag = "members", security(("bearer" = [])), request_body = AddMember,
    responses((status = 201, body = MemberView), (status = 400, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn add_member(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Json(input): Json<AddMember>,
) -> Result<(StatusCode, Json<MemberView>), ApiError> {
    authz::require_in_org(&state, &caller, Action::ManageMembers).await?;
    let name = text::user_name(&input.username)?;
    let new_role = role(&input.role)?;
    require_owner_for(&caller, new_role, None)?;
    let (user, created) = match state.store.find_user_by_name(&name).await? {
        Some(existing) => {
            if input.password.is_some() {
                return Err(ApiError::conflict(
                    "user_exists",
                    format!("a user called {name:?} already exists; add them without a password"),
                ));
            }
            (existing.id, false)
        }
        None => {
            let password = input.password.ok_or_else(|| {
                ApiError::bad_request("missing_field", "password is required to create a new account")
            })?;
            text::password(&password)?;
            let hash = tokio::task::spawn_blocking(move || hash_password(&password))
                .await
                .map_err(|error| ApiError::internal("password hashing", &error))?
                .map_err(|error| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        format!("password hashing failed: {error}"),
                    )
                })?;
            (state.store.create_user(&name, &hash).await?, true)
        }
    };
    let mut tx = state.store.org_tx(caller.org).await?;
    // An existing account belongs to someone who may not want this organisation: invite them.
    let member = tx.add_member(user, new_role, created).await?;
    tx.audit(
        &caller
            .audit("member.add", "user", Outcome::Ok)
            .object(user.0)
            .details(
                serde_json::json!({"name": member.name, "role": new_role.as_str(), "account_created": created, "invited": !created}),
            ),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(member.into())))
}

/// Only an owner may grant the owner role or change an owner.
fn require_owner_for(caller: &Caller, new_role: Role, current: Option<&MemberRecord>) -> Result<(), ApiError> {
    let touches_owner = new_role == Role::Owner || current.is_some_and(|member| member.role == Role::Owner);
    if touches_owner && caller.principal.role != Role::Owner {
        return Err(ApiError::forbidden(
            "only an owner may grant the owner role or change an owner",
        ));
    }
    Ok(())
}

/// Refuses a change that would leave the organisation without an active owner.
async fn keep_an_owner(tx: &mut OrgTx, member: &MemberRecord, stays_active_owner: bool) -> Result<(), ApiError> {
    if member.role == Role::Owner
        && !member.disabled
        && !member.pending
        && !stays_active_owner
        && tx.count_active_owners().await? <= 1
    {
        return Err(ApiError::conflict(
            "last_owner",
            "this is the organisation's last active owner; make someone else owner first",
        ));
    }
    Ok(())
}

/// Changes a member's role, or disables or enables them.
#[utoipa::path(patch, path = "/api/v1/members/{user_id}", tag = "members", security(("bearer" = [])), request_body = UpdateMember,
    params(("user_id" = uuid::Uuid, Path)), responses((status = 200, body = MemberView), (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn update_member(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(user): Path<UserId>,
    Json(input): Json<UpdateMember>,
) -> Result<Json<MemberView>, ApiError> {
    authz::require_in_org(&state, &caller, Action::ManageMembers).await?;
    let new_role = input.role.as_deref().map(role).transpose()?;
    let mut tx = state.store.org_tx(caller.org).await?;
    tx.lock_members().await?;
    let current = tx.get_member(user).await?;
    require_owner_for(&caller, new_role.unwrap_or(current.role), Some(&current))?;
    let stays_owner = new_role.unwrap_or(current.role) == Role::Owner && !input.disabled.unwrap_or(current.disabled);
    keep_an_owner(&mut tx, &current, stays_owner).await?;
    let member = tx.update_member(user, new_role, input.disabled).await?;
    let disabling = input.disabled == Some(true) && !current.disabled;
    if disabling {
        tx.revoke_user_logins(user, "member disabled").await?;
    }
    // A key keeps the role it was made with, so any change to its creator's standing ends it.
    if disabling || member.role != current.role {
        tx.revoke_api_keys_created_by(user).await?;
    }
    tx.audit(
        &caller
            .audit("member.update", "user", Outcome::Ok)
            .object(user.0)
            .details(serde_json::json!({
                "role": {"from": current.role.as_str(), "to": member.role.as_str()},
                "disabled": member.disabled,
            })),
    )
    .await?;
    tx.commit().await?;
    if disabling {
        sessions::revoke_control(
            &state,
            caller.org,
            user,
            &format!("{} was disabled by {}", member.name, caller.name()),
        )
        .await;
    }
    Ok(Json(member.into()))
}

/// Removes a member from the organisation. The account stays for their other organisations.
#[utoipa::path(delete, path = "/api/v1/members/{user_id}", tag = "members", security(("bearer" = [])),
    params(("user_id" = uuid::Uuid, Path)), responses((status = 204), (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn remove_member(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(user): Path<UserId>,
) -> Result<StatusCode, ApiError> {
    authz::require_in_org(&state, &caller, Action::ManageMembers).await?;
    let mut tx = state.store.org_tx(caller.org).await?;
    tx.lock_members().await?;
    let current = tx.get_member(user).await?;
    require_owner_for(&caller, current.role, Some(&current))?;
    keep_an_owner(&mut tx, &current, false).await?;
    tx.remove_member(user).await?;
    tx.revoke_user_logins(user, "member removed").await?;
    tx.revoke_api_keys_created_by(user).await?;
    tx.audit(
        &caller
            .audit("member.remove", "user", Outcome::Ok)
            .object(user.0)
            .details(serde_json::json!({"name": current.name, "role": current.role.as_str()})),
    )
    .await?;
    tx.commit().await?;
    sessions::revoke_control(
        &state,
        caller.org,
        user,
        &format!("{} was removed by {}", current.name, caller.name()),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
