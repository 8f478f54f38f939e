//! RDP targets (desktops) of the current organisation. Credentials are referenced by id and
//! never returned. People who may not manage targets see only those they may open.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use rdp_proxy_core::TargetId;
use rdp_proxy_core::audit::Outcome;
use rdp_proxy_policy::{Action, Resource};
use rdp_proxy_store::{NewTarget, TargetFilter, TargetRecord, TargetUpdate};

use crate::auth::{Authenticated, Caller};
use crate::authz::{self, Denial};
use crate::extract::{Json, Path, Query};
use crate::routes::{page_cursor, page_limit};
use crate::views::{Page, TargetInput, TargetQuery, TargetView};
use crate::{ApiError, AppState, text};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/targets", get(list_targets).post(create_target))
        .route(
            "/api/v1/targets/{id}",
            get(get_target).patch(update_target).delete(delete_target),
        )
}

fn label_filter(raw: Option<&str>) -> Result<TargetFilter, ApiError> {
    let mut filter = TargetFilter::default();
    for pair in raw
        .unwrap_or_default()
        .split(',')
        .filter(|pair| !pair.trim().is_empty())
    {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| ApiError::bad_request("invalid_label", "label filter must be key=value[,key=value…]"))?;
        let normalise =
            |text: &str| -> String { unicode_normalization::UnicodeNormalization::nfc(text.trim()).collect() };
        filter.labels.insert(normalise(key), normalise(value));
    }
    Ok(filter)
}

/// Lists desktops: all of them for those who manage targets, otherwise those the caller may open.
#[utoipa::path(get, path = "/api/v1/targets", tag = "targets", security(("bearer" = [])), params(TargetQuery),
    responses((status = 200, body = Page<TargetView>), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn list_targets(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Query(query): Query<TargetQuery>,
) -> Result<Json<Page<TargetView>>, ApiError> {
    let org = Resource::Org(caller.org.0);
    authz::require(&state, &caller, Action::ListTargets, &org, Denial::Forbidden).await?;
    let set = authz::policies(&state, caller.org).await?;
    // Those who manage targets or oversee every session (operators, auditors) see every
    // desktop, each marked with whether they may open it; others see the ones they may open.
    let manager = authz::decide(&set, &caller, Action::ManageTargets, &org).allowed
        || authz::decide(&set, &caller, Action::ViewAllSessions, &org).allowed;
    let can_connect = |target: &TargetRecord| {
        authz::decide(
            &set,
            &caller,
            Action::Connect,
            &Resource::Target(authz::target_facts(target)),
        )
        .allowed
    };
    let filter = label_filter(query.label.as_deref())?;
    let limit = page_limit(query.limit)?;
    let cursor = page_cursor(query.cursor.as_deref())?;
    let mut tx = state.store.org_tx(caller.org).await?;
    if manager {
        let page = tx.list_targets(&filter, cursor.as_ref(), limit).await?;
        return Ok(Json(Page::from_store(page, |target| {
            let allowed = can_connect(&target);
            TargetView::new(target, allowed)
        })));
    }
    // Policies decide per target, so the page is cut after filtering.
    let visible: Vec<TargetRecord> = tx
        .all_targets(&filter)
        .await?
        .into_iter()
        .filter(|target| cursor.as_ref().is_none_or(|after| target.name > after.0))
        .filter(|target| can_connect(target))
        .take(usize::try_from(limit).unwrap_or(50) + 1)
        .collect();
    let page = rdp_proxy_store::Page {
        next: (visible.len() > usize::try_from(limit).unwrap_or(50))
            .then(|| {
                visible
                    .get(usize::try_from(limit - 1).unwrap_or(0))
                    .map(|t| rdp_proxy_store::Cursor(t.name.clone()))
            })
            .flatten(),
        items: visible.into_iter().take(usize::try_from(limit).unwrap_or(50)).collect(),
    };
    Ok(Json(Page::from_store(page, |target| TargetView::new(target, true))))
}

/// Loads a target the caller may see: managers see all, others only those they may open.
async fn visible_target(state: &AppState, caller: &Caller, id: TargetId) -> Result<(TargetRecord, bool), ApiError> {
    let target = state.store.org_tx(caller.org).await?.get_target(id).await?;
    let set = authz::policies(state, caller.org).await?;
    let org = Resource::Org(caller.org.0);
    let manager = authz::decide(&set, caller, Action::ManageTargets, &org).allowed
        || authz::decide(&set, caller, Action::ViewAllSessions, &org).allowed;
    let can_connect = authz::decide(
        &set,
        caller,
        Action::Connect,
        &Resource::Target(authz::target_facts(&target)),
    )
    .allowed;
    if manager || can_connect {
        Ok((target, can_connect))
    } else {
        Err(ApiError::not_found("target"))
    }
}

/// Returns one desktop.
#[utoipa::path(get, path = "/api/v1/targets/{id}", tag = "targets", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = TargetView), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn get_target(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<TargetId>,
) -> Result<Json<TargetView>, ApiError> {
    let (target, can_connect) = visible_target(&state, &caller, id).await?;
    Ok(Json(TargetView::new(target, can_connect)))
}

fn checked_host(raw: &str) -> Result<String, ApiError> {
    let host = raw.trim();
    if host.is_empty() || host.len() > 253 || host.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/') {
        return Err(ApiError::bad_request(
            "invalid_host",
            "host must be a DNS name or IP address",
        ));
    }
    Ok(host.to_owned())
}

fn checked_security(raw: &str) -> Result<String, ApiError> {
    match raw.trim() {
        mode @ ("auto" | "tls" | "nla") => Ok(mode.to_owned()),
        other => Err(ApiError::bad_request(
            "invalid_security",
            format!("unknown security mode {other:?}; use auto, tls or nla"),
        )),
    }
}

fn checked_labels(labels: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ApiError> {
    if labels.len() > 32 {
        return Err(ApiError::bad_request("invalid_label", "at most 32 labels per target"));
    }
    labels
        .into_iter()
        .map(|(key, value)| {
            let key = text::name("label key", &key, 63)?;
            if key.contains('=') || key.chars().any(char::is_whitespace) {
                return Err(ApiError::bad_request(
                    "invalid_label",
                    format!("label key {key:?} must not contain '=' or spaces"),
                ));
            }
            let value: String = unicode_normalization::UnicodeNormalization::nfc(value.trim()).collect();
            if value.chars().count() > 63 || value.chars().any(char::is_control) {
                return Err(ApiError::bad_request(
                    "invalid_label",
                    format!("label {key:?} has a value longer than 63 characters or with control characters"),
                ));
            }
            Ok((key, value))
        })
        .collect()
}

fn checked_size(value: Option<u16>, field: &str) -> Result<Option<u16>, ApiError> {
    match value {
        Some(size) if !(200..=8192).contains(&size) => Err(ApiError::bad_request(
            "invalid_size",
            format!("{field} {size} is out of range; use 200 to 8192 pixels"),
        )),
        other => Ok(other),
    }
}

fn checked_pin(raw: Option<&str>) -> Result<Option<Vec<u8>>, ApiError> {
    raw.map(|hex_digits| {
        hex::decode(hex_digits.trim().replace(':', ""))
            .ok()
            .filter(|bytes| bytes.len() == 32)
            .ok_or_else(|| ApiError::bad_request("invalid_cert_sha256", "cert_sha256 must be 64 hex digits"))
    })
    .transpose()
}

/// Creates a desktop.
#[utoipa::path(post, path = "/api/v1/targets", tag = "targets", security(("bearer" = [])), request_body = TargetInput,
    responses((status = 201, body = TargetView), (status = 400, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn create_target(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Json(input): Json<TargetInput>,
) -> Result<(StatusCode, Json<TargetView>), ApiError> {
    authz::require_in_org(&state, &caller, Action::ManageTargets).await?;
    let missing = |field: &str| ApiError::bad_request("missing_field", format!("{field} is required"));
    let new = NewTarget {
        name: text::name("name", input.name.as_deref().ok_or_else(|| missing("name"))?, 100)?,
        host: checked_host(input.host.as_deref().ok_or_else(|| missing("host"))?)?,
        port: input.port.unwrap_or(3389),
        security: checked_security(input.security.as_deref().unwrap_or("auto"))?,
        labels: checked_labels(input.labels.unwrap_or_default())?,
        max_width: checked_size(input.max_width.flatten(), "max_width")?,
        max_height: checked_size(input.max_height.flatten(), "max_height")?,
        credential_id: input.credential_id.ok_or_else(|| missing("credential_id"))?,
        cert_sha256: checked_pin(input.cert_sha256.flatten().as_deref())?,
    };
    if new.port == 0 {
        return Err(ApiError::bad_request("invalid_port", "port must be 1 to 65535"));
    }
    let mut tx = state.store.org_tx(caller.org).await?;
    let target = tx.insert_target(&new).await?;
    tx.audit(
        &caller
            .audit("target.create", "target", Outcome::Ok)
            .object(target.id.0)
            .details(serde_json::json!({"name": target.name, "host": target.host, "port": target.port})),
    )
    .await?;
    tx.commit().await?;
    let can_connect = authz::allowed(
        &state,
        &caller,
        Action::Connect,
        &Resource::Target(authz::target_facts(&target)),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(TargetView::new(target, can_connect))))
}

/// Changes a desktop; absent fields keep their value.
#[utoipa::path(patch, path = "/api/v1/targets/{id}", tag = "targets", security(("bearer" = [])), request_body = TargetInput,
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = TargetView), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn update_target(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<TargetId>,
    Json(input): Json<TargetInput>,
) -> Result<Json<TargetView>, ApiError> {
    authz::require_in_org(&state, &caller, Action::ManageTargets).await?;
    let update = TargetUpdate {
        name: input
            .name
            .as_deref()
            .map(|raw| text::name("name", raw, 100))
            .transpose()?,
        host: input.host.as_deref().map(checked_host).transpose()?,
        port: match input.port {
            Some(0) => return Err(ApiError::bad_request("invalid_port", "port must be 1 to 65535")),
            other => other,
        },
        security: input.security.as_deref().map(checked_security).transpose()?,
        labels: input.labels.map(checked_labels).transpose()?,
        max_width: input
            .max_width
            .map(|value| checked_size(value, "max_width"))
            .transpose()?,
        max_height: input
            .max_height
            .map(|value| checked_size(value, "max_height"))
            .transpose()?,
        credential_id: input.credential_id,
        cert_sha256: input
            .cert_sha256
            .map(|value| checked_pin(value.as_deref()))
            .transpose()?,
    };
    let mut tx = state.store.org_tx(caller.org).await?;
    let target = tx.update_target(id, &update).await?;
    tx.audit(&caller.audit("target.update", "target", Outcome::Ok).object(id.0))
        .await?;
    tx.commit().await?;
    let can_connect = authz::allowed(
        &state,
        &caller,
        Action::Connect,
        &Resource::Target(authz::target_facts(&target)),
    )
    .await?;
    Ok(Json(TargetView::new(target, can_connect)))
}

/// Deletes a desktop. Sessions already open on it keep running.
#[utoipa::path(delete, path = "/api/v1/targets/{id}", tag = "targets", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn delete_target(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<TargetId>,
) -> Result<StatusCode, ApiError> {
    authz::require_in_org(&state, &caller, Action::ManageTargets).await?;
    let mut tx = state.store.org_tx(caller.org).await?;
    tx.delete_target(id).await?;
    tx.audit(&caller.audit("target.delete", "target", Outcome::Ok).object(id.0))
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
