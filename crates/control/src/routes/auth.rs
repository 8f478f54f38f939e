//! Login and the current user.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};

use crate::extract::Json;

use crate::auth::{Authenticated, decoy_hash, issue_access_token, verify_password};
use crate::views::{LoginRequest, LoginResponse, UserView};
use crate::{ApiError, AppState};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/login", post(login))
        .route("/api/v1/me", get(me))
}

/// Exchanges a user name and password for a short-lived access token. After
/// `MAX_LOGIN_FAILURES` failures for one user name within 15 minutes, logins for that name are
/// rejected with 429 until the window ends.
#[utoipa::path(post, path = "/api/v1/login", request_body = LoginRequest, tag = "auth",
    responses((status = 200, body = LoginResponse), (status = 401, body = crate::error::ErrorBody),
        (status = 429, body = crate::error::ErrorBody)))]
pub(crate) async fn login(
    State(state): State<AppState>,
    Json(request): Json<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let rejected = || ApiError::unauthorized("user name or password is wrong");
    let name = request.username.trim().to_owned();
    // The limiter fails open: with Redis down, logins still work but are not counted.
    match state.coord.login_blocked_for(&name).await {
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
    let Some(user) = user.filter(|user| matches && !user.disabled) else {
        tracing::info!(user.name = %name, "Login rejected");
        if let Err(error) = state.coord.record_login_failure(&name).await {
            tracing::warn!(error = %error, "Could not count a failed login");
        }
        return Err(rejected());
    };
    if let Err(error) = state.coord.clear_login_failures(&name).await {
        tracing::warn!(error = %error, "Could not reset the failed-login counter");
    }
    let membership = state
        .store
        .memberships(user.id)
        .await?
        .into_iter()
        .next()
        .ok_or_else(rejected)?;
    let (access_token, expires_at) = issue_access_token(&state, user.id, &user.name, membership.org)?;
    tracing::info!(user.id = %user.id, org.id = %membership.org, "Login succeeded");
    Ok(Json(LoginResponse {
        access_token,
        expires_at,
        user: UserView::new(user.id.0, user.name, membership.role, membership.org.0),
    }))
}

/// Returns the authenticated user and their role in the current organisation.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = crate::error::ErrorBody)))]
pub(crate) async fn me(Authenticated(actor): Authenticated) -> Json<UserView> {
    Json(UserView::new(actor.user.0, actor.user_name, actor.role, actor.org.0))
}
