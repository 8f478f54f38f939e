//! Sessions: create, list, get, history, attach, detach, take over, terminate. Every handler
//! asks [`rdp_proxy_core::access::authorize`]; a session the caller may not see answers 404.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};

use crate::extract::{Json, Path, Query};
use rdp_proxy_core::access::{Actor, Decision, SessionAction, SessionFacts, authorize};
use rdp_proxy_core::lease::AttachMode;
use rdp_proxy_core::session::EventKind;
use rdp_proxy_core::token::AttachGrant;
use rdp_proxy_core::{SessionId, SessionState, TargetId};
use rdp_proxy_store::{NewSession, SessionRecord, Transition};
use time::OffsetDateTime;

use crate::auth::Authenticated;
use crate::dispatch::{self, DispatchError, SessionCommand};
use crate::views::{
    AttachRequest, AttachResponse, CreateSession, EventView, ListQuery, Page, SessionView, TerminateRequest,
};
use crate::{ApiError, AppState};

/// Lifetime of an attach token; the viewer redeems it within a second or two.
const ATTACH_TOKEN_TTL: time::Duration = time::Duration::seconds(30);
/// How long attach waits for a `connecting` session to finish connecting.
const CONNECT_WAIT: Duration = Duration::from_secs(20);

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sessions", post(create_session).get(list_sessions))
        .route("/api/v1/sessions/{id}", get(get_session))
        .route("/api/v1/sessions/{id}/events", get(session_events))
        .route("/api/v1/sessions/{id}/attach", post(attach_session))
        .route("/api/v1/sessions/{id}/detach", post(detach_session))
        .route("/api/v1/sessions/{id}/terminate", post(terminate_session))
}

/// Loads a session and applies the access rule. A hidden session gets the same 404 as a missing one.
async fn load_authorized(
    state: &AppState,
    actor: &Actor,
    id: SessionId,
    action: SessionAction,
) -> Result<SessionRecord, ApiError> {
    let record = state.store.get_session(actor.org, id).await?;
    match authorize(
        actor,
        action,
        SessionFacts {
            org: record.org,
            owner: record.owner,
        },
    ) {
        Decision::Allow => Ok(record),
        Decision::Hidden => Err(ApiError::not_found("session")),
        Decision::Forbidden => {
            tracing::info!(user.id = %actor.user, session.id = %id, action = ?action, "Request forbidden");
            Err(ApiError::forbidden(
                "taking over another user's session needs the admin role",
            ))
        }
    }
}

/// Opens a desktop: records the session and requests a worker to connect to the target.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "sessions", security(("bearer" = [])), request_body = CreateSession,
    responses((status = 201, body = SessionView), (status = 404, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
pub(crate) async fn create_session(
    State(state): State<AppState>,
    Authenticated(actor): Authenticated,
    Json(request): Json<CreateSession>,
) -> Result<(StatusCode, Json<SessionView>), ApiError> {
    let width = checked_dimension(request.width.unwrap_or(1280), "width")?;
    let height = checked_dimension(request.height.unwrap_or(720), "height")?;
    let target = state.store.get_target(actor.org, TargetId(request.target_id)).await?;
    let new = NewSession {
        org: actor.org,
        owner: actor.user,
        target: target.id,
        width,
        height,
    };
    let record = state.store.insert_session(&new, &actor.user_name).await?;
    tracing::info!(session.id = %record.id, org.id = %actor.org, user.id = %actor.user, target.id = %target.id, "Session requested");
    let started = match dispatch::choose_worker(&state).await {
        Ok(worker) => dispatch::start(&state, &worker, record.id).await,
        Err(error) => Err(error),
    };
    if let Err(error) = started {
        let reason = format!("could not start the session: {error}");
        let change = Transition::new(SessionState::Failed, EventKind::Failed).reason(reason.clone());
        state.store.transition(record.id, change).await?;
        return Err(ApiError::unavailable(
            "no_worker",
            format!("{reason}; retry when a worker is running"),
        ));
    }
    let record = state.store.get_session(actor.org, record.id).await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

fn checked_dimension(value: u16, field: &str) -> Result<u16, ApiError> {
    if (200..=8192).contains(&value) {
        return Ok(value);
    }
    Err(ApiError::bad_request(
        "invalid_size",
        format!("{field} {value} is out of range; use 200 to 8192 pixels"),
    ))
}

/// Lists sessions: a member's own, or every session of the organisation for an admin.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = Page<SessionView>)))]
pub(crate) async fn list_sessions(
    State(state): State<AppState>,
    Authenticated(actor): Authenticated,
    Query(query): Query<ListQuery>,
) -> Result<Json<Page<SessionView>>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            "limit must be between 1 and 500",
        ));
    }
    let state_filter = match query.state.as_deref() {
        Some(raw) => Some(raw.parse::<SessionState>().map_err(|_| {
            ApiError::bad_request("invalid_state_filter", format!("unknown state {raw:?}; use one of requested, connecting, active, detached, terminated, failed, lost"))
        })?),
        None => None,
    };
    let owner = match actor.role {
        rdp_proxy_core::access::Role::Member => Some(actor.user),
        _ => None,
    };
    // The state filter runs in SQL, before the limit, so older matching sessions are not cut off.
    let records = state.store.list_sessions(actor.org, owner, state_filter, limit).await?;
    let items = records
        .into_iter()
        .filter(|record| {
            authorize(
                &actor,
                SessionAction::View,
                SessionFacts {
                    org: record.org,
                    owner: record.owner,
                },
            ) == Decision::Allow
        })
        .map(SessionView::from)
        .collect();
    Ok(Json(Page { items }))
}

/// Returns one session.
#[utoipa::path(get, path = "/api/v1/sessions/{id}", tag = "sessions", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = SessionView), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn get_session(
    State(state): State<AppState>,
    Authenticated(actor): Authenticated,
    Path(id): Path<SessionId>,
) -> Result<Json<SessionView>, ApiError> {
    Ok(Json(
        load_authorized(&state, &actor, id, SessionAction::View).await?.into(),
    ))
}

/// Returns the session's history, oldest first.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/events", tag = "sessions", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = Page<EventView>), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn session_events(
    State(state): State<AppState>,
    Authenticated(actor): Authenticated,
    Path(id): Path<SessionId>,
) -> Result<Json<Page<EventView>>, ApiError> {
    load_authorized(&state, &actor, id, SessionAction::View).await?;
    let items = state
        .store
        .session_events(actor.org, id)
        .await?
        .into_iter()
        .map(EventView::from)
        .collect();
    Ok(Json(Page { items }))
}

/// Issues a single-use attach token for the worker holding the session. `takeover` takes control
/// from the current viewer; without it, a session whose control is held returns 409.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/attach", tag = "sessions", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = AttachRequest,
    responses((status = 200, body = AttachResponse), (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn attach_session(
    State(state): State<AppState>,
    Authenticated(actor): Authenticated,
    Path(id): Path<SessionId>,
    Json(request): Json<AttachRequest>,
) -> Result<Json<AttachResponse>, ApiError> {
    let mode = match request.mode.as_deref().unwrap_or("control") {
        "control" => AttachMode::Control,
        "takeover" => AttachMode::Takeover,
        other => {
            return Err(ApiError::bad_request(
                "invalid_mode",
                format!("unknown mode {other:?}; use control or takeover"),
            ));
        }
    };
    let action = match mode {
        AttachMode::Control => SessionAction::Attach,
        AttachMode::Takeover => SessionAction::Takeover,
    };
    let mut record = load_authorized(&state, &actor, id, action).await?;
    if matches!(record.state, SessionState::Requested | SessionState::Connecting) {
        record = wait_until_connected(&state, &actor, id).await?;
    }
    if !matches!(record.state, SessionState::Active | SessionState::Detached) {
        let reason = record.reason.clone().unwrap_or_default();
        return Err(ApiError::conflict(
            "session_not_attachable",
            format!("session is {} ({reason}); open a new session", record.state),
        ));
    }
    // The worker is checked first: a session whose worker died still names its last controller
    // until the sweep marks it lost, and "retry shortly" is the right answer meanwhile.
    let worker_id = record
        .worker
        .ok_or_else(|| ApiError::unavailable("worker_unavailable", "the session has no worker yet; retry"))?;
    let worker = dispatch::worker(&state, worker_id).await.map_err(|_| {
        ApiError::unavailable(
            "worker_unavailable",
            "the worker holding this session is not responding; retry shortly",
        )
    })?;
    if let (AttachMode::Control, SessionState::Active, Some(holder)) = (mode, record.state, &record.control_user_name) {
        let since = record.control_since.map(rfc3339).unwrap_or_default();
        return Err(ApiError::conflict(
            "control_held",
            format!(
                "control is held by {holder} since {since}; ask them to detach, or take over if your role allows it"
            ),
        ));
    }
    let now = OffsetDateTime::now_utc();
    let grant = AttachGrant {
        org: actor.org,
        user: actor.user,
        user_name: actor.user_name.clone(),
        session: id,
        worker: worker_id,
        mode,
        expires_at: AttachGrant::expiry(now, ATTACH_TOKEN_TTL),
    };
    let token = state.tokens.issue(&grant, now).await?;
    tracing::info!(session.id = %id, user.id = %actor.user, mode = mode.as_str(), "Attach token issued");
    Ok(Json(AttachResponse {
        token: token.expose().to_owned(),
        ws_url: format!("{}/v1/sessions/{id}/viewer", worker.viewer_url),
        viewer_url: format!("/viewer.html?session={id}&mode={}", mode.as_str()),
        expires_at: grant.expires_at,
        mode: mode.as_str().to_owned(),
    }))
}

async fn wait_until_connected(state: &AppState, actor: &Actor, id: SessionId) -> Result<SessionRecord, ApiError> {
    let deadline = tokio::time::Instant::now() + CONNECT_WAIT;
    // Connecting takes about 0.1 s on a LAN, so polling starts fast and backs off to 150 ms.
    let mut pause = Duration::from_millis(10);
    loop {
        let record = state.store.get_session(actor.org, id).await?;
        let waiting = matches!(record.state, SessionState::Requested | SessionState::Connecting);
        if !waiting {
            return Ok(record);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::conflict(
                "session_connecting",
                "the session is still connecting; retry in a few seconds",
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(150));
    }
}

/// Disconnects every viewer; the RDP connection stays open and the session becomes `detached`.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/detach", tag = "sessions", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = SessionView), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn detach_session(
    State(state): State<AppState>,
    Authenticated(actor): Authenticated,
    Path(id): Path<SessionId>,
) -> Result<Json<SessionView>, ApiError> {
    let record = load_authorized(&state, &actor, id, SessionAction::Detach).await?;
    match record.state {
        SessionState::Detached => return Ok(Json(record.into())),
        SessionState::Active => {}
        other => {
            return Err(ApiError::conflict(
                "session_not_attached",
                format!("session is {other}; only an active session can be detached"),
            ));
        }
    }
    let worker_id = record
        .worker
        .ok_or_else(|| ApiError::unavailable("worker_unavailable", "the session has no worker"))?;
    let reason = format!("detached by {}", actor.user_name);
    let result = match dispatch::worker(&state, worker_id).await {
        Ok(worker) => dispatch::send_command(&state, &worker, id, SessionCommand::Detach, actor.user, &reason).await,
        Err(error) => Err(error),
    };
    result.map_err(|error| dispatch_error(error, "detach"))?;
    Ok(Json(state.store.get_session(actor.org, id).await?.into()))
}

/// Ends the session and its RDP connection, recording who ended it and why.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/terminate", tag = "sessions", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = TerminateRequest,
    responses((status = 200, body = SessionView), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn terminate_session(
    State(state): State<AppState>,
    Authenticated(actor): Authenticated,
    Path(id): Path<SessionId>,
    body: Option<axum::Json<TerminateRequest>>,
) -> Result<Json<SessionView>, ApiError> {
    let record = load_authorized(&state, &actor, id, SessionAction::Terminate).await?;
    if record.state.is_final() {
        return Err(ApiError::conflict(
            "session_ended",
            format!("session is already {}", record.state),
        ));
    }
    let request = body.map(|axum::Json(body)| body).unwrap_or_default();
    let given = request
        .reason
        .map(|reason| reason.chars().take(200).collect::<String>());
    let reason = match given {
        Some(reason) if !reason.trim().is_empty() => format!("terminated by {}: {}", actor.user_name, reason.trim()),
        _ => format!("terminated by {}", actor.user_name),
    };
    let sent = match record.worker {
        Some(worker_id) => match dispatch::worker(&state, worker_id).await {
            Ok(worker) => {
                dispatch::send_command(&state, &worker, id, SessionCommand::Terminate, actor.user, &reason).await
            }
            Err(error) => Err(error),
        },
        None => Err(DispatchError::NoWorker),
    };
    if let Err(error) = sent {
        // The worker cannot be reached now. PostgreSQL is the truth: record the end, and a worker
        // that comes back closes the connection when it reconciles.
        tracing::warn!(session.id = %id, error = %error, "Terminating without the worker");
        let change = Transition::new(SessionState::Terminated, EventKind::Terminated)
            .actor(Some(actor.user))
            .reason(format!("{reason} (worker not reachable: {error})"));
        state.store.transition(id, change).await?;
    }
    Ok(Json(state.store.get_session(actor.org, id).await?.into()))
}

fn dispatch_error(error: DispatchError, action: &str) -> ApiError {
    match error {
        DispatchError::Rejected {
            status: 409, message, ..
        } => ApiError::conflict("invalid_state", message),
        DispatchError::Rejected { status: 404, .. } => ApiError::unavailable(
            "worker_unavailable",
            format!("the worker no longer holds this session; {action} not applied"),
        ),
        other => ApiError::unavailable(
            "worker_unavailable",
            format!("{other}; {action} not applied, retry shortly"),
        ),
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}
