//! Sessions: create, list, get, history, attach, detach, take over, terminate. Every handler
//! asks the organisation's policies; a session the caller may not see answers 404, one they
//! may see but not act on answers 403.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use rdp_proxy_core::audit::Outcome;
use rdp_proxy_core::lease::AttachMode;
use rdp_proxy_core::session::EventKind;
use rdp_proxy_core::token::AttachGrant;
use rdp_proxy_core::{OrgId, SessionId, SessionState, TargetId, UserId};
use rdp_proxy_policy::{Action, PolicySet, Resource};
use rdp_proxy_store::{NewSession, SessionLimits, SessionRecord, Transition};
use rdp_proxy_worker::api::TargetSpec;
use time::OffsetDateTime;

use crate::auth::{Authenticated, Caller};
use crate::authz::{self, Denial};
use crate::dispatch::{self, DispatchError, SessionCommand};
use crate::extract::{Json, Path, Query};
use crate::routes::{credentials::vault_error, page_cursor, page_limit};
use crate::views::{
    AttachRequest, AttachResponse, CreateSession, EventView, ListQuery, Page, SessionPermissions, SessionView,
    TerminateRequest,
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

/// Labels of the session's target (deleted targets included), which policies may test.
async fn target_labels(state: &AppState, org: OrgId, target: TargetId) -> Result<BTreeMap<String, String>, ApiError> {
    Ok(state.store.org_tx(org).await?.target_any_state(target).await?.labels)
}

fn session_resource(record: &SessionRecord, labels: &BTreeMap<String, String>) -> Resource {
    Resource::Session(authz::session_facts(record, labels))
}

/// Computes what the caller may do with a session, for the portal's buttons.
fn session_permissions(set: &PolicySet, caller: &Caller, resource: &Resource) -> SessionPermissions {
    let can = |action| authz::decide(set, caller, action, resource).allowed;
    SessionPermissions {
        attach: can(Action::Attach),
        observe: can(Action::Observe),
        takeover: can(Action::Takeover),
        detach: can(Action::Detach),
        terminate: can(Action::Terminate),
    }
}

fn view(record: SessionRecord, permissions: SessionPermissions) -> SessionView {
    let mut view = SessionView::from(record);
    view.permissions = permissions;
    view
}

/// Loads a session and asks the policies. A session the caller may not view answers 404 like a
/// missing one; a visible one they may not act on answers 403, and the denial is audited.
async fn load_authorized(
    state: &AppState,
    caller: &Caller,
    id: SessionId,
    action: Action,
) -> Result<Authorized, ApiError> {
    let record = state.store.get_session(caller.org, id).await?;
    let labels = target_labels(state, caller.org, record.target).await?;
    let resource = session_resource(&record, &labels);
    let set = authz::policies(state, caller.org).await?;
    let view = authz::decide(&set, caller, Action::View, &resource);
    if !view.allowed {
        return authz::deny(state, caller, action, &resource, &view, Denial::Hidden("session")).await;
    }
    if action != Action::View {
        let decision = authz::decide(&set, caller, action, &resource);
        if !decision.allowed {
            return authz::deny(state, caller, action, &resource, &decision, Denial::Forbidden).await;
        }
    }
    Ok(Authorized { record, set, resource })
}

/// A session the caller may act on, with what was needed to decide it.
struct Authorized {
    record: SessionRecord,
    set: std::sync::Arc<PolicySet>,
    resource: Resource,
}

impl Authorized {
    fn view(self, caller: &Caller) -> SessionView {
        let permissions = session_permissions(&self.set, caller, &self.resource);
        view(self.record, permissions)
    }
}

/// Takes control of every live session away from `user` in `org`, for example after the user
/// was disabled or removed. Failures are logged: the user's logins are already revoked.
pub(crate) async fn revoke_control(state: &AppState, org: OrgId, user: UserId, reason: &str) {
    let sessions = match state.store.sessions_controlled_by(org, user).await {
        Ok(sessions) => sessions,
        Err(error) => {
            tracing::error!(org.id = %org, user.id = %user, error = %error, "Could not list sessions to revoke control");
            return;
        }
    };
    for session in sessions {
        let Some(worker_id) = session.worker else { continue };
        let sent = match dispatch::worker(state, worker_id).await {
            Ok(worker) => {
                dispatch::send_command(state, &worker, session.id, SessionCommand::Detach, None, reason).await
            }
            Err(error) => Err(error),
        };
        match sent {
            Ok(()) => tracing::info!(org.id = %org, session.id = %session.id, user.id = %user, "Control revoked"),
            Err(error) => {
                tracing::warn!(org.id = %org, session.id = %session.id, error = %error, "Could not revoke control")
            }
        }
    }
}

/// Opens a desktop: records the session and requests a worker to connect to the target.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "sessions", security(("bearer" = [])), request_body = CreateSession,
    responses((status = 201, body = SessionView), (status = 404, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
pub(crate) async fn create_session(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Json(request): Json<CreateSession>,
) -> Result<(StatusCode, Json<SessionView>), ApiError> {
    let user = caller.require_user("open desktops")?;
    let width = checked_dimension(request.width.unwrap_or(1280), "width")?;
    let height = checked_dimension(request.height.unwrap_or(720), "height")?;
    let mut tx = state.store.org_tx(caller.org).await?;
    let target = tx.get_target(TargetId(request.target_id)).await?;
    drop(tx);
    let set = authz::policies(&state, caller.org).await?;
    let resource = Resource::Target(authz::target_facts(&target));
    let decision = authz::decide(&set, &caller, Action::Connect, &resource);
    if !decision.allowed {
        let manager = authz::decide(&set, &caller, Action::ManageTargets, &Resource::Org(caller.org.0)).allowed;
        let denial = if manager {
            Denial::Forbidden
        } else {
            Denial::Hidden("target")
        };
        return authz::deny(&state, &caller, Action::Connect, &resource, &decision, denial).await;
    }
    if target.max_width.is_some_and(|max| width > max) || target.max_height.is_some_and(|max| height > max) {
        return Err(ApiError::bad_request(
            "invalid_size",
            format!(
                "{width}x{height} is larger than this desktop allows ({}x{})",
                target.max_width.map_or("any".into(), |w| w.to_string()),
                target.max_height.map_or("any".into(), |h| h.to_string())
            ),
        ));
    }
    let secs = |limit: Option<Duration>| limit.map(|limit| u32::try_from(limit.as_secs()).unwrap_or(u32::MAX));
    let new = NewSession {
        org: caller.org,
        owner: user,
        target: target.id,
        width,
        height,
        limits: SessionLimits {
            idle_detach_secs: secs(decision.limits.idle_detach),
            max_duration_secs: secs(decision.limits.max_session),
        },
    };
    let record = state.store.insert_session(&new, caller.name()).await?;
    state
        .metrics
        .sessions_requested
        .with_label_values(&[caller.org.to_string().as_str()])
        .inc();
    tracing::info!(session.id = %record.id, org.id = %caller.org, user.id = %user, target.id = %target.id,
        policies = ?decision.reasons, "Session requested");
    let mut tx = state.store.org_tx(caller.org).await?;
    let secret = tx.credential_secret(target.credential_id).await?;
    let password = state.vault.open(&mut tx, &secret).await.map_err(vault_error)?;
    drop(tx);
    let spec = TargetSpec {
        host: target.host.clone(),
        port: target.port,
        security: target.security.clone(),
        cert_sha256: target.cert_sha256.as_ref().map(hex::encode),
        username: secret.username.clone(),
        password: password.to_string(),
        domain: secret.domain.clone(),
    };
    let started = dispatch::place_and_start(&state, caller.org, record.id, spec).await;
    if let Err(error) = started {
        let reason = format!("could not start the session: {error}");
        let change = Transition::new(SessionState::Failed, EventKind::Failed).reason(reason.clone());
        state.store.transition(caller.org, record.id, change).await?;
        return Err(ApiError::unavailable(
            "no_worker",
            format!("{reason}; retry later or ask the operator to add capacity"),
        ));
    }
    let record = state.store.get_session(caller.org, record.id).await?;
    let permissions = session_permissions(
        &set,
        &caller,
        &Resource::Session(authz::session_facts(&record, &target.labels)),
    );
    Ok((StatusCode::CREATED, Json(view(record, permissions))))
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

/// Lists sessions, newest first: every session of the organisation for those the policies let
/// see them all, otherwise the caller's own.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = Page<SessionView>), (status = 400, body = crate::error::ErrorBody)))]
pub(crate) async fn list_sessions(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Query(query): Query<ListQuery>,
) -> Result<Json<Page<SessionView>>, ApiError> {
    let limit = page_limit(query.limit)?;
    let cursor = page_cursor(query.cursor.as_deref())?;
    let state_filter = match query.state.as_deref() {
        Some(raw) if !raw.is_empty() => Some(raw.parse::<SessionState>().map_err(|_| {
            ApiError::bad_request("invalid_state_filter", format!("unknown state {raw:?}; use one of requested, connecting, active, detached, terminated, failed, lost"))
        })?),
        _ => None,
    };
    let set = authz::policies(&state, caller.org).await?;
    let see_all = authz::decide(&set, &caller, Action::ViewAllSessions, &Resource::Org(caller.org.0)).allowed;
    let owner = if see_all && !query.mine.unwrap_or(false) {
        None
    } else {
        match caller.user {
            Some(user) => Some(user),
            None => return Ok(Json(Page::all(Vec::new()))),
        }
    };
    // The filters run in SQL, before the limit, so older matching sessions are not cut off.
    let page = state
        .store
        .list_sessions(caller.org, owner, state_filter, cursor.as_ref(), limit)
        .await?;
    let mut labels_of: BTreeMap<TargetId, BTreeMap<String, String>> = BTreeMap::new();
    let mut items = Vec::with_capacity(page.items.len());
    for record in page.items {
        if let std::collections::btree_map::Entry::Vacant(entry) = labels_of.entry(record.target) {
            entry.insert(target_labels(&state, caller.org, record.target).await?);
        }
        let resource = session_resource(&record, &labels_of[&record.target]);
        if authz::decide(&set, &caller, Action::View, &resource).allowed {
            let permissions = session_permissions(&set, &caller, &resource);
            items.push(view(record, permissions));
        }
    }
    Ok(Json(Page {
        items,
        next_cursor: page.next.map(|cursor| cursor.encode()),
    }))
}

/// Returns one session.
#[utoipa::path(get, path = "/api/v1/sessions/{id}", tag = "sessions", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = SessionView), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn get_session(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<SessionId>,
) -> Result<Json<SessionView>, ApiError> {
    Ok(Json(
        load_authorized(&state, &caller, id, Action::View).await?.view(&caller),
    ))
}

/// Returns the session's history, oldest first.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/events", tag = "sessions", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = Page<EventView>), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn session_events(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<SessionId>,
) -> Result<Json<Page<EventView>>, ApiError> {
    load_authorized(&state, &caller, id, Action::View).await?;
    let items = state
        .store
        .session_events(caller.org, id)
        .await?
        .into_iter()
        .map(EventView::from)
        .collect();
    Ok(Json(Page::all(items)))
}

/// Issues a single-use attach token for the worker holding the session. `takeover` takes control
/// from the current viewer; without it, a session whose control is held returns 409.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/attach", tag = "sessions", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = AttachRequest,
    responses((status = 200, body = AttachResponse), (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn attach_session(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<SessionId>,
    Json(request): Json<AttachRequest>,
) -> Result<Json<AttachResponse>, ApiError> {
    let user = caller.require_user("attach to desktops")?;
    let mode = match request.mode.as_deref().unwrap_or("control") {
        "control" => AttachMode::Control,
        "takeover" => AttachMode::Takeover,
        "observe" => AttachMode::Observe,
        other => {
            return Err(ApiError::bad_request(
                "invalid_mode",
                format!("unknown mode {other:?}; use control, takeover or observe"),
            ));
        }
    };
    let action = match mode {
        AttachMode::Control => Action::Attach,
        AttachMode::Takeover => Action::Takeover,
        AttachMode::Observe => Action::Observe,
    };
    let mut record = load_authorized(&state, &caller, id, action).await?.record;
    if matches!(record.state, SessionState::Requested | SessionState::Connecting) {
        record = wait_until_connected(&state, &caller, id).await?;
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
        org: caller.org,
        user,
        user_name: caller.name().to_owned(),
        session: id,
        worker: worker_id,
        mode,
        expires_at: AttachGrant::expiry(now, ATTACH_TOKEN_TTL),
    };
    let token = state.tokens.issue(&grant, now).await?;
    tracing::info!(org.id = %caller.org, session.id = %id, user.id = %user, mode = mode.as_str(), "Attach token issued");
    state
        .metrics
        .attach_tokens
        .with_label_values(&[caller.org.to_string().as_str(), mode.as_str()])
        .inc();
    let entry = caller
        .audit(format!("session.attach.{}", mode.as_str()), "session", Outcome::Ok)
        .object(id.0);
    authz::audit_ok(&state, &caller, entry).await;
    Ok(Json(AttachResponse {
        token: token.expose().to_owned(),
        ws_url: format!("{}/v1/sessions/{id}/viewer", worker.viewer_url),
        viewer_url: format!("/viewer.html?session={id}&mode={}", mode.as_str()),
        expires_at: grant.expires_at,
        mode: mode.as_str().to_owned(),
    }))
}

async fn wait_until_connected(state: &AppState, caller: &Caller, id: SessionId) -> Result<SessionRecord, ApiError> {
    let deadline = tokio::time::Instant::now() + CONNECT_WAIT;
    // Connecting takes about 0.1 s on a LAN, so polling starts fast and backs off to 150 ms.
    let mut pause = Duration::from_millis(10);
    loop {
        let record = state.store.get_session(caller.org, id).await?;
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
    Authenticated(caller): Authenticated,
    Path(id): Path<SessionId>,
) -> Result<Json<SessionView>, ApiError> {
    let authorized = load_authorized(&state, &caller, id, Action::Detach).await?;
    let record = &authorized.record;
    match record.state {
        SessionState::Detached => return Ok(Json(authorized.view(&caller))),
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
    let reason = format!("detached by {}", caller.name());
    let result = match dispatch::worker(&state, worker_id).await {
        Ok(worker) => dispatch::send_command(&state, &worker, id, SessionCommand::Detach, caller.user, &reason).await,
        Err(error) => Err(error),
    };
    result.map_err(|error| dispatch_error(error, "detach"))?;
    let record = state.store.get_session(caller.org, id).await?;
    let permissions = session_permissions(&authorized.set, &caller, &authorized.resource);
    Ok(Json(view(record, permissions)))
}

/// Ends the session and its RDP connection, recording who ended it and why.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/terminate", tag = "sessions", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), request_body = TerminateRequest,
    responses((status = 200, body = SessionView), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn terminate_session(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<SessionId>,
    body: Option<axum::Json<TerminateRequest>>,
) -> Result<Json<SessionView>, ApiError> {
    let authorized = load_authorized(&state, &caller, id, Action::Terminate).await?;
    let record = &authorized.record;
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
        Some(reason) if !reason.trim().is_empty() => format!("terminated by {}: {}", caller.name(), reason.trim()),
        _ => format!("terminated by {}", caller.name()),
    };
    let sent = match record.worker {
        Some(worker_id) => match dispatch::worker(&state, worker_id).await {
            Ok(worker) => {
                dispatch::send_command(&state, &worker, id, SessionCommand::Terminate, caller.user, &reason).await
            }
            Err(error) => Err(error),
        },
        None => Err(DispatchError::NoWorker("the session has no worker".into())),
    };
    if let Err(error) = sent {
        // The worker cannot be reached now. PostgreSQL is the truth: record the end, and a worker
        // that comes back closes the connection when it reconciles.
        tracing::warn!(session.id = %id, error = %error, "Terminating without the worker");
        let change = Transition::new(SessionState::Terminated, EventKind::Terminated)
            .actor(caller.user)
            .reason(format!("{reason} (worker not reachable: {error})"));
        state.store.transition(caller.org, id, change).await?;
    }
    let record = state.store.get_session(caller.org, id).await?;
    let permissions = session_permissions(&authorized.set, &caller, &authorized.resource);
    Ok(Json(view(record, permissions)))
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
