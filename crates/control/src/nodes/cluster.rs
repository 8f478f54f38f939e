//! The operator's cluster API under `/cluster/v1`, authenticated with the operator token: join
//! tokens, nodes and their lifecycle (drain, resume, revoke, remove), configuration documents,
//! and the placement explanation.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use rdp_proxy_core::node::wire::{ConfigDocument, NodeConfig};
use rdp_proxy_core::node::{NodeOwner, ServiceKind};
use rdp_proxy_core::placement::Decision;
use rdp_proxy_core::session::EventKind;
use rdp_proxy_core::{NodeId, OrgId, SessionState, WorkerId};
use rdp_proxy_store::{NodeRecord, StoreError, Transition};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{MAX_JOIN_TOKEN_TTL, TokenRequest, create_join_token, validate_labels};
use crate::dispatch::{self, SessionCommand};
use crate::extract::{Json, Path, Query};
use crate::{ApiError, AppState};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/cluster/v1/join-tokens", post(new_join_token))
        .route("/cluster/v1/nodes", get(list_nodes))
        .route("/cluster/v1/nodes/{id}", get(get_node).delete(remove_node))
        .route("/cluster/v1/nodes/{id}/drain", post(drain_node))
        .route("/cluster/v1/nodes/{id}/resume", post(resume_node))
        .route("/cluster/v1/nodes/{id}/revoke", post(revoke_node))
        .route("/cluster/v1/config", get(get_config).put(put_config))
        .route("/cluster/v1/placement", get(explain_placement))
}

/// Checks `Authorization: Bearer <operator token>` in constant time.
pub(crate) fn require_operator(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = state.config.operator_token.as_deref() else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "cluster_api_disabled",
            "the cluster API is off; start the control plane with --operator-token",
        ));
    };
    if crate::metrics::bearer_matches(headers, expected) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "the cluster API needs 'Authorization: Bearer <operator token>'",
        ))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JoinTokenBody {
    /// Organisation of a customer-managed node; absent for a platform node.
    #[serde(default)]
    pub(crate) org_id: Option<OrgId>,
    /// Seconds until the token expires (60 to 604800; default 3600).
    #[serde(default)]
    pub(crate) ttl_secs: Option<u64>,
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
    /// Services the node will run; default `["worker"]`.
    #[serde(default)]
    pub(crate) services: Option<Vec<ServiceKind>>,
}

#[derive(Debug, Serialize)]
pub(crate) struct JoinTokenView {
    pub(crate) token: String,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) expires_at: OffsetDateTime,
    pub(crate) owner: NodeOwner,
}

/// Validates a join-token request and creates the token for `owner`.
pub(crate) async fn issue_join_token(
    state: &AppState,
    owner: NodeOwner,
    body: JoinTokenBody,
    created_by: String,
) -> Result<JoinTokenView, ApiError> {
    let ttl = Duration::from_secs(body.ttl_secs.unwrap_or(3600));
    if ttl < Duration::from_secs(60) || ttl > MAX_JOIN_TOKEN_TTL {
        return Err(ApiError::bad_request(
            "invalid_ttl",
            "ttl_secs must be between 60 and 604800 (7 days)",
        ));
    }
    validate_labels(&body.labels).map_err(|message| ApiError::bad_request("invalid_labels", message))?;
    let services = body.services.unwrap_or_else(|| vec![ServiceKind::Worker]);
    if services.is_empty() {
        return Err(ApiError::bad_request("invalid_services", "name at least one service"));
    }
    // NOTE: the agent runs only workers so far; relays and connectors come with their services.
    if let Some(unavailable) = services.iter().find(|service| **service != ServiceKind::Worker) {
        return Err(ApiError::bad_request(
            "invalid_services",
            format!("the {unavailable} service is not available yet; nodes run the worker only"),
        ));
    }
    let (token, expires_at) = create_join_token(
        &state.store,
        &state.authority,
        TokenRequest {
            owner,
            ttl,
            labels: body.labels,
            services,
            created_by,
        },
    )
    .await?;
    tracing::info!(node.owner = %owner, expires_at = %expires_at, "Join token created");
    Ok(JoinTokenView {
        token,
        expires_at,
        owner,
    })
}

async fn new_join_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<JoinTokenBody>,
) -> Result<impl IntoResponse, ApiError> {
    require_operator(&state, &headers)?;
    let owner = match body.org_id {
        Some(org) => {
            if !state.store.org_exists(org).await? {
                return Err(ApiError::not_found_in_cluster("organisation"));
            }
            NodeOwner::Org(org)
        }
        None => NodeOwner::Platform,
    };
    let view = issue_join_token(&state, owner, body, "operator".into()).await?;
    let details = serde_json::json!({ "expires_at": view.expires_at.to_string() });
    super::audit_node_event(&state.store, owner, "node.join_token", None, "operator", details).await;
    Ok((StatusCode::CREATED, Json(view)))
}

/// A node as the APIs show it: the stored row, whether its agent's report is live, and the
/// workers running on it with their latest figures.
#[derive(Debug, Serialize)]
pub(crate) struct NodeView {
    #[serde(flatten)]
    pub(crate) node: NodeRow,
    pub(crate) report_live: bool,
    pub(crate) workers: Vec<WorkerView>,
}

#[derive(Debug, Serialize)]
pub(crate) struct NodeRow {
    pub(crate) id: NodeId,
    pub(crate) name: String,
    pub(crate) owner: NodeOwner,
    pub(crate) state: rdp_proxy_core::node::NodeState,
    pub(crate) drain_requested: bool,
    pub(crate) state_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) state_changed_at: OffsetDateTime,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) capabilities: rdp_proxy_core::node::Capabilities,
    pub(crate) enabled_services: Vec<ServiceKind>,
    pub(crate) agent_version: String,
    pub(crate) services: Vec<rdp_proxy_core::node::ServiceReport>,
    pub(crate) config_version: Option<i64>,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) joined_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub(crate) last_report_at: Option<OffsetDateTime>,
}

#[derive(Debug, Serialize)]
pub(crate) struct WorkerView {
    pub(crate) id: WorkerId,
    /// Base URL of the worker's internal API, for the operator's diagnosis.
    pub(crate) internal_url: String,
    pub(crate) sessions: u32,
    pub(crate) version: String,
    pub(crate) config_version: Option<i64>,
    pub(crate) load: Option<rdp_proxy_core::node::ServiceLoad>,
}

impl From<NodeRecord> for NodeRow {
    fn from(node: NodeRecord) -> Self {
        Self {
            id: node.id,
            name: node.name,
            owner: node.owner,
            state: node.state,
            drain_requested: node.drain_requested,
            state_reason: node.state_reason,
            state_changed_at: node.state_changed_at,
            labels: node.labels,
            capabilities: node.capabilities,
            enabled_services: node.enabled_services,
            agent_version: node.agent_version,
            services: node.services,
            config_version: node.config_version,
            joined_at: node.joined_at,
            last_report_at: node.last_report_at,
        }
    }
}

/// Builds the views of `nodes` with their live reports and workers.
pub(crate) async fn node_views(state: &AppState, nodes: Vec<NodeRecord>) -> Result<Vec<NodeView>, ApiError> {
    let ids: Vec<NodeId> = nodes.iter().map(|node| node.id).collect();
    let live = state.coord.node_reports_live(&ids).await.map_err(|error| {
        tracing::warn!(error = %error, "Could not read node reports");
        ApiError::unavailable("redis_unavailable", "could not read live node reports; retry")
    })?;
    let beats = state.coord.live_workers().await.map_err(|error| {
        tracing::warn!(error = %error, "Could not read worker heartbeats");
        ApiError::unavailable("redis_unavailable", "could not read worker heartbeats; retry")
    })?;
    let mut workers: HashMap<NodeId, Vec<WorkerView>> = HashMap::new();
    for beat in beats {
        if let Some(node) = beat.node {
            workers.entry(node).or_default().push(WorkerView {
                id: beat.id,
                internal_url: beat.internal_url,
                sessions: beat.sessions,
                version: beat.version,
                config_version: beat.config_version,
                load: beat.load,
            });
        }
    }
    Ok(nodes
        .into_iter()
        .zip(live)
        .map(|(node, report_live)| NodeView {
            report_live,
            workers: workers.remove(&node.id).unwrap_or_default(),
            node: node.into(),
        })
        .collect())
}

async fn list_nodes(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Vec<NodeView>>, ApiError> {
    require_operator(&state, &headers)?;
    let nodes = state.store.nodes(None).await?;
    Ok(Json(node_views(&state, nodes).await?))
}

async fn get_node(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<NodeId>,
) -> Result<Json<NodeView>, ApiError> {
    require_operator(&state, &headers)?;
    let node = state
        .store
        .node(id)
        .await?
        .ok_or_else(|| ApiError::not_found_in_cluster("node"))?;
    let mut views = node_views(&state, vec![node]).await?;
    views
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::not_found_in_cluster("node"))
}

async fn drain_node(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<NodeId>,
) -> Result<Json<NodeRow>, ApiError> {
    require_operator(&state, &headers)?;
    let node = set_drain(&state, id, true, "an operator").await?;
    super::audit_node_event(
        &state.store,
        node.owner,
        "node.drain",
        Some(id),
        "operator",
        serde_json::json!({}),
    )
    .await;
    Ok(Json(node))
}

async fn resume_node(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<NodeId>,
) -> Result<Json<NodeRow>, ApiError> {
    require_operator(&state, &headers)?;
    let node = set_drain(&state, id, false, "an operator").await?;
    super::audit_node_event(
        &state.store,
        node.owner,
        "node.resume",
        Some(id),
        "operator",
        serde_json::json!({}),
    )
    .await;
    Ok(Json(node))
}

pub(crate) async fn set_drain(state: &AppState, id: NodeId, drain: bool, by: &str) -> Result<NodeRow, ApiError> {
    let node = state
        .store
        .set_node_drain(id, drain, by)
        .await
        .map_err(|error| match error {
            StoreError::Conflict(message) => ApiError::conflict("node_revoked", message),
            StoreError::NotFound { .. } => ApiError::not_found_in_cluster("node"),
            other => other.into(),
        })?;
    tracing::info!(node.id = %id, drain, state = %node.state, "Node drain changed");
    Ok(node.into())
}

#[derive(Debug, Serialize)]
pub(crate) struct RevokeView {
    pub(crate) node: NodeRow,
    pub(crate) certificates_revoked: usize,
    pub(crate) sessions_ended: usize,
}

async fn revoke_node(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<NodeId>,
) -> Result<Json<RevokeView>, ApiError> {
    require_operator(&state, &headers)?;
    let view = revoke(&state, id, "revoked by an operator").await?;
    super::audit_node_event(
        &state.store,
        view.node.owner,
        "node.revoke",
        Some(id),
        "operator",
        serde_json::json!({}),
    )
    .await;
    Ok(Json(view))
}

/// Revokes a node: its certificates are refused from now on (this instance at once, others
/// within their refresh interval), and the sessions its workers hold are terminated.
pub(crate) async fn revoke(state: &AppState, id: NodeId, reason: &str) -> Result<RevokeView, ApiError> {
    let serials = state.store.revoke_node(id, reason).await.map_err(|error| match error {
        StoreError::Conflict(message) => ApiError::conflict("node_revoked", message),
        StoreError::NotFound { .. } => ApiError::not_found_in_cluster("node"),
        other => other.into(),
    })?;
    for serial in &serials {
        state.authority.revocations.insert(serial);
    }
    let workers: Vec<WorkerId> = state.store.node_workers(id).await?.into_iter().map(|w| w.id).collect();
    let mut ended = 0;
    for (org, session, worker) in state.store.held_sessions().await? {
        if !workers.contains(&worker) {
            continue;
        }
        let reason = format!("node {id} was revoked");
        let sent = match dispatch::worker(state, worker).await {
            Ok(beat) => dispatch::send_command(state, &beat, session, SessionCommand::Terminate, None, &reason).await,
            Err(error) => Err(error),
        };
        if let Err(error) = sent {
            tracing::warn!(session.id = %session, error = %error, "Ending a session of a revoked node without its worker");
            let record = state.store.get_session(org, session).await?;
            let change = Transition::new(SessionState::Terminated, EventKind::Terminated)
                .expect_version(record.version)
                .reason(reason);
            if let Err(error) = state.store.transition(org, session, change).await {
                tracing::info!(session.id = %session, error = %error, "Session changed meanwhile; skipped");
                continue;
            }
        }
        ended += 1;
    }
    let node = state
        .store
        .node(id)
        .await?
        .ok_or_else(|| ApiError::not_found_in_cluster("node"))?;
    tracing::warn!(node.id = %id, certificates = serials.len(), sessions = ended, reason, "Node revoked");
    Ok(RevokeView {
        node: node.into(),
        certificates_revoked: serials.len(),
        sessions_ended: ended,
    })
}

async fn remove_node(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<NodeId>,
) -> Result<StatusCode, ApiError> {
    require_operator(&state, &headers)?;
    let owner = state.store.node(id).await?.map(|node| node.owner);
    state.store.remove_node(id).await.map_err(|error| match error {
        StoreError::Conflict(message) => ApiError::conflict("node_not_revoked", message),
        StoreError::NotFound { .. } => ApiError::not_found_in_cluster("node"),
        other => other.into(),
    })?;
    tracing::info!(node.id = %id, "Node removed");
    if let Some(owner) = owner {
        super::audit_node_event(
            &state.store,
            owner,
            "node.remove",
            Some(id),
            "operator",
            serde_json::json!({}),
        )
        .await;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn get_config(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Option<ConfigDocument>>, ApiError> {
    require_operator(&state, &headers)?;
    let config = super::api::latest_config(&state)
        .await
        .map_err(|_| ApiError::unavailable("store_unavailable", "could not read the configuration; retry"))?;
    Ok(Json(config))
}

async fn put_config(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Result<impl IntoResponse, ApiError> {
    require_operator(&state, &headers)?;
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "invalid_config",
            "the configuration must be one JSON object",
        ));
    }
    let config: NodeConfig = serde_json::from_value(body)
        .map_err(|error| ApiError::bad_request("invalid_config", format!("not a node configuration: {error}")))?;
    config
        .validate()
        .map_err(|message| ApiError::bad_request("invalid_config", message))?;
    let stored = serde_json::to_value(&config).map_err(|error| ApiError::internal("config", &error))?;
    let version = state.store.publish_node_config(&stored, "operator").await?;
    tracing::info!(config.version = version, "Node configuration published");
    Ok((StatusCode::CREATED, Json(ConfigDocument { version, body: config })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlacementQuery {
    org: OrgId,
}

async fn explain_placement(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<PlacementQuery>,
) -> Result<Json<Decision>, ApiError> {
    require_operator(&state, &headers)?;
    if !state.store.org_exists(query.org).await? {
        return Err(ApiError::not_found_in_cluster("organisation"));
    }
    let placement = super::placement::decide(&state, query.org).await.map_err(|error| {
        tracing::warn!(error = %error, "Could not gather placement candidates");
        ApiError::unavailable("placement_unavailable", error.to_string())
    })?;
    Ok(Json(placement.decision))
}
