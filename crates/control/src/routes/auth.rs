//! Login, token refresh, switching organisation, logout and the current caller.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use rdp_proxy_core::audit::{ActorKind, Outcome};
use rdp_proxy_core::{OrgId, UserId};
use rdp_proxy_policy::{Action, Resource};
use rdp_proxy_store::{AuditEntry, OrgMembership, RefreshOutcome};

use crate::auth::{
    Authenticated, Caller, IssuedTokens, decoy_hash, issue_tokens, open_login, sha256, token_org, verify_password,
};
use crate::extract::{Json, Path};
use crate::views::{
    ChangePassword, LoginRequest, MeView, Named, OrgView, Permissions, RefreshRequest, SwitchRequest, TokenResponse,
};
use crate::{ApiError, AppState, authz};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/login", post(login))
        .route("/api/v1/auth/refresh", post(refresh))
        .route("/api/v1/auth/switch", post(switch_org))
        .route("/api/v1/logout", post(logout))
        .route("/api/v1/me", get(me))
        .route("/api/v1/me/password", post(change_password))
        .route("/api/v1/invitations/{org_id}/accept", post(accept_invitation))
        .route(
            "/api/v1/invitations/{org_id}",
            axum::routing::delete(decline_invitation),
        )
}

fn org_views(memberships: &[OrgMembership]) -> Vec<OrgView> {
    views(memberships, false)
}

fn invitation_views(memberships: &[OrgMembership]) -> Vec<OrgView> {
    views(memberships, true)
}

/// Enabled memberships, accepted ones or pending invitations.
fn views(memberships: &[OrgMembership], pending: bool) -> Vec<OrgView> {
    memberships
        .iter()
        .filter(|membership| !membership.disabled && membership.pending == pending)
        .map(|membership| OrgView {
            id: membership.org.0,
            name: membership.org_name.clone(),
            role: membership.role.as_str().to_owned(),
        })
        .collect()
}

fn token_response(
    tokens: IssuedTokens,
    user: UserId,
    name: String,
    org: OrgId,
    memberships: &[OrgMembership],
) -> Result<TokenResponse, ApiError> {
    let orgs = org_views(memberships);
    let current = orgs
        .iter()
        .find(|view| view.id == org.0)
        .map(|view| OrgView {
            id: view.id,
            name: view.name.clone(),
            role: view.role.clone(),
        })
        .ok_or_else(|| ApiError::unauthorized("this account is no longer a member of the organisation"))?;
    Ok(TokenResponse {
        access_token: tokens.access_token,
        expires_at: tokens.expires_at,
        refresh_token: tokens.refresh_token,
        refresh_expires_at: tokens.refresh_expires_at,
        user: Named { id: user.0, name },
        org: current,
        orgs,
        invitations: invitation_views(memberships),
    })
}

/// Exchanges a user name and password for an access token and a refresh token in one of the
/// user's organisations. After 10 failed logins for one user name within 15
/// minutes, logins for that name answer 429 until the window ends.
#[utoipa::path(post, path = "/api/v1/login", request_body = LoginRequest, tag = "auth",
    responses((status = 200, body = TokenResponse), (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody)))]
pub(crate) async fn login(
    State(state): State<AppState>,
    Json(request): Json<LoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let rejected = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "login_failed",
            "user name or password is wrong",
        )
    };
    let name: String = unicode_normalization::UnicodeNormalization::nfc(request.username.trim()).collect();
    if name.chars().count() > 256 {
        return Err(rejected());
    }
    // Names are compared without case, so failures count against the account, not the spelling.
    let throttle_key = name.to_lowercase();
    // The limiter fails open: with Redis down, logins still work but are not counted.
    match state.coord.login_blocked_for(&throttle_key).await {
        Ok(Some(seconds)) => {
            tracing::warn!(user.name = %name, "Login rejected: too many failed attempts");
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                format!("too many failed logins for this user; try again in {seconds} s"),
            ));
        }
        Ok(None) => {}
        Err(error) => tracing::warn!(error = %error, "Could not check failed logins; not limiting this attempt"),
    }
    let user = state.store.find_user_by_name(&name).await?;
    let hash = user
        .as_ref()
        .map_or_else(|| decoy_hash().to_owned(), |user| user.password_hash.clone());
    let password = request.password;
    let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(|error| ApiError::internal("password check", &error))?;
    let memberships = match &user {
        Some(user) => state.store.user_orgs(user.id).await?,
        None => Vec::new(),
    };
    let orgs = org_views(&memberships);
    let user = match user {
        Some(user) if matches && !user.disabled && !orgs.is_empty() => user,
        other => {
            tracing::info!(user.name = %name, "Login rejected");
            if let Err(error) = state.coord.record_login_failure(&throttle_key).await {
                tracing::warn!(error = %error, "Could not count a failed login");
            }
            if let Some(user) = other {
                let reason = if !matches {
                    "wrong password"
                } else {
                    "account disabled or in no organisation"
                };
                for membership in memberships.iter().filter(|membership| !membership.pending) {
                    let entry = AuditEntry::new("login", "user", Outcome::Denied)
                        .actor(ActorKind::User, Some(user.id.0), Some(user.name.clone()))
                        .object(user.id.0)
                        .reason(reason);
                    state
                        .metrics
                        .logins
                        .with_label_values(&[membership.org.to_string().as_str(), "denied"])
                        .inc();
                    if let Err(error) = state.store.audit(membership.org, &entry).await {
                        tracing::error!(error = %error, "Could not audit a failed login");
                    }
                }
            }
            return Err(rejected());
        }
    };
    if let Err(error) = state.coord.clear_login_failures(&throttle_key).await {
        tracing::warn!(error = %error, "Could not reset the failed-login counter");
    }
    let org = match request.org_id {
        Some(wanted) => orgs
            .iter()
            .find(|view| view.id == wanted)
            .map(|view| OrgId(view.id))
            .ok_or_else(|| ApiError::not_found("organisation"))?,
        None => OrgId(orgs[0].id),
    };
    let mut tx = state.store.org_tx(org).await?;
    let tokens = open_login(&state, &mut tx, user.id).await?;
    tx.audit(
        &AuditEntry::new("login", "user", Outcome::Ok)
            .actor(ActorKind::User, Some(user.id.0), Some(user.name.clone()))
            .object(user.id.0),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(user.id = %user.id, org.id = %org, "Login succeeded");
    state
        .metrics
        .logins
        .with_label_values(&[org.to_string().as_str(), "ok"])
        .inc();
    Ok(Json(token_response(tokens, user.id, user.name, org, &memberships)?))
}

/// Spends a refresh token and returns a new access token and the next refresh token. A refresh
/// token presented a second time revokes its whole login.
#[utoipa::path(post, path = "/api/v1/auth/refresh", request_body = RefreshRequest, tag = "auth",
    responses((status = 200, body = TokenResponse), (status = 401, body = crate::error::ErrorBody)))]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    Json(request): Json<RefreshRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let invalid = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "token_invalid",
            "refresh token is not known; log in again",
        )
    };
    let token = request.refresh_token.trim();
    let org = token_org(token, "rpr_").ok_or_else(invalid)?;
    let mut tx = state.store.org_tx(org).await?;
    let outcome = tx.use_refresh_token(&sha256(token.as_bytes())).await?;
    let (login, user, login_expires) = match outcome {
        RefreshOutcome::Rotated {
            login,
            user,
            login_expires_at,
        } => (login, user, login_expires_at),
        RefreshOutcome::Replayed { login, user } => {
            tx.audit(
                &AuditEntry::new("login.refresh", "login", Outcome::Denied)
                    .actor(ActorKind::User, Some(user.0), None)
                    .object(login)
                    .reason("a spent refresh token was presented again; the login is revoked"),
            )
            .await?;
            tx.commit().await?;
            tracing::warn!(org.id = %org, user.id = %user, "Refresh token replayed; login revoked");
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "token_revoked",
                "this refresh token was already used, so the login was revoked; log in again",
            ));
        }
        RefreshOutcome::Expired => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "token_expired",
                "the login expired; log in again",
            ));
        }
        RefreshOutcome::Revoked => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "token_revoked",
                "this login was revoked; log in again",
            ));
        }
        RefreshOutcome::Unknown => return Err(invalid()),
    };
    let name = match tx.login_state(login, user).await? {
        rdp_proxy_store::LoginState::Active { user_name, .. } => user_name,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "token_revoked",
                "this account is disabled or no longer a member of the organisation",
            ));
        }
    };
    let tokens = issue_tokens(&state, &mut tx, user, login, login_expires).await?;
    tx.commit().await?;
    let memberships = state.store.user_orgs(user).await?;
    Ok(Json(token_response(tokens, user, name, org, &memberships)?))
}

/// Opens a login in another organisation the user belongs to.
#[utoipa::path(post, path = "/api/v1/auth/switch", request_body = SwitchRequest, tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = TokenResponse), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn switch_org(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Json(request): Json<SwitchRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let user = caller.require_user("switch organisation")?;
    let memberships = state.store.user_orgs(user).await?;
    let orgs = org_views(&memberships);
    let org = orgs
        .iter()
        .find(|view| view.id == request.org_id)
        .map(|view| OrgId(view.id))
        .ok_or_else(|| ApiError::not_found("organisation"))?;
    let mut tx = state.store.org_tx(org).await?;
    let tokens = open_login(&state, &mut tx, user).await?;
    tx.audit(
        &AuditEntry::new("login.switch", "user", Outcome::Ok)
            .actor(ActorKind::User, Some(user.0), Some(caller.name().to_owned()))
            .object(user.0)
            .details(serde_json::json!({ "from_org": caller.org.0 })),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(token_response(
        tokens,
        user,
        caller.name().to_owned(),
        org,
        &memberships,
    )?))
}

/// Ends this login: its refresh token and every access token issued for it stop working.
#[utoipa::path(post, path = "/api/v1/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = crate::error::ErrorBody)))]
pub(crate) async fn logout(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<StatusCode, ApiError> {
    let Some(login) = caller.login else {
        return Err(ApiError::bad_request(
            "not_a_login",
            "API keys have no login to end; revoke the key instead",
        ));
    };
    let mut tx = state.store.org_tx(caller.org).await?;
    tx.revoke_login(login, "logged out").await?;
    tx.audit(&caller.audit("logout", "login", Outcome::Ok).object(login))
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller, their current organisation, the organisations they may switch to, and what the
/// organisation's policies let them do there.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = MeView), (status = 401, body = crate::error::ErrorBody)))]
pub(crate) async fn me(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<Json<MeView>, ApiError> {
    Ok(Json(me_view(&state, &caller).await?))
}

async fn me_view(state: &AppState, caller: &Caller) -> Result<MeView, ApiError> {
    let (orgs, invitations) = match caller.user {
        Some(user) => {
            let memberships = state.store.user_orgs(user).await?;
            (org_views(&memberships), invitation_views(&memberships))
        }
        None => (
            vec![OrgView {
                id: caller.org.0,
                name: state.store.org_name(caller.org).await?,
                role: caller.principal.role.as_str().to_owned(),
            }],
            Vec::new(),
        ),
    };
    let org = orgs
        .iter()
        .find(|view| view.id == caller.org.0)
        .map(|view| OrgView {
            id: view.id,
            name: view.name.clone(),
            role: caller.principal.role.as_str().to_owned(),
        })
        .ok_or_else(|| ApiError::unauthorized("this account is no longer a member of the organisation"))?;
    Ok(MeView {
        user: Named {
            id: caller.principal.id,
            name: caller.name().to_owned(),
        },
        kind: caller.principal.kind.as_str().to_owned(),
        org,
        orgs,
        invitations,
        permissions: permissions(state, caller).await?,
    })
}

/// Accepts an invitation: the user becomes a member of that organisation with the role the
/// invitation named. An organisation that did not invite the caller answers 404.
#[utoipa::path(post, path = "/api/v1/invitations/{org_id}/accept", tag = "auth", security(("bearer" = [])),
    params(("org_id" = uuid::Uuid, Path)), responses((status = 200, body = MeView), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn accept_invitation(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(org): Path<OrgId>,
) -> Result<Json<MeView>, ApiError> {
    let user = caller.require_user("accept invitations")?;
    let mut tx = state.store.org_tx(org).await?;
    let member = tx.accept_invitation(user).await?;
    tx.audit(
        &AuditEntry::new("member.accept", "user", Outcome::Ok)
            .actor(ActorKind::User, Some(user.0), Some(caller.name().to_owned()))
            .object(user.0)
            .details(serde_json::json!({"role": member.role.as_str()})),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(me_view(&state, &caller).await?))
}

/// Declines an invitation; the inviting organisation no longer lists the user.
#[utoipa::path(delete, path = "/api/v1/invitations/{org_id}", tag = "auth", security(("bearer" = [])),
    params(("org_id" = uuid::Uuid, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn decline_invitation(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(org): Path<OrgId>,
) -> Result<StatusCode, ApiError> {
    let user = caller.require_user("decline invitations")?;
    let mut tx = state.store.org_tx(org).await?;
    tx.decline_invitation(user).await?;
    tx.audit(
        &AuditEntry::new("member.decline", "user", Outcome::Ok)
            .actor(ActorKind::User, Some(user.0), Some(caller.name().to_owned()))
            .object(user.0),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes the caller's password. Every other login of the user, in every organisation, ends;
/// this one stays.
#[utoipa::path(post, path = "/api/v1/me/password", request_body = ChangePassword, tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 400, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn change_password(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Json(request): Json<ChangePassword>,
) -> Result<StatusCode, ApiError> {
    let user = caller.require_user("change passwords")?;
    crate::text::password(&request.new_password)?;
    let stored = state.store.user_password_hash(user).await?;
    let current = request.current_password;
    let matches = tokio::task::spawn_blocking(move || verify_password(&current, &stored))
        .await
        .map_err(|error| ApiError::internal("password check", &error))?;
    if !matches {
        let entry = caller
            .audit("user.password", "user", Outcome::Denied)
            .object(user.0)
            .reason("current password is wrong");
        crate::authz::audit_ok(&state, &caller, entry).await;
        return Err(ApiError::forbidden(
            "the current password is wrong; the password was not changed",
        ));
    }
    let new_password = request.new_password;
    let hash = tokio::task::spawn_blocking(move || crate::auth::hash_password(&new_password))
        .await
        .map_err(|error| ApiError::internal("password hashing", &error))?
        .map_err(|error| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("password hashing failed: {error}"),
            )
        })?;
    state.store.set_password_hash(user, &hash).await?;
    for membership in state.store.user_orgs(user).await? {
        let mut tx = state.store.org_tx(membership.org).await?;
        let revoked = tx
            .revoke_user_logins_except(user, caller.login, "password changed")
            .await?;
        if membership.org == caller.org {
            tx.audit(
                &caller
                    .audit("user.password", "user", Outcome::Ok)
                    .object(user.0)
                    .details(serde_json::json!({"other_logins_ended": revoked})),
            )
            .await?;
        }
        tx.commit().await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Organisation-wide permissions of the caller.
pub(crate) async fn permissions(state: &AppState, caller: &Caller) -> Result<Permissions, ApiError> {
    let set = authz::policies(state, caller.org).await?;
    let org = Resource::Org(caller.org.0);
    let can = |action| authz::decide(&set, caller, action, &org).allowed;
    Ok(Permissions {
        list_targets: can(Action::ListTargets),
        manage_targets: can(Action::ManageTargets),
        manage_members: can(Action::ManageMembers),
        manage_policies: can(Action::ManagePolicies),
        manage_api_keys: can(Action::ManageApiKeys),
        manage_nodes: can(Action::ManageNodes),
        read_audit: can(Action::ReadAudit),
        view_all_sessions: can(Action::ViewAllSessions),
    })
}
