//! The organisation's own customer-managed nodes: join tokens, the node list with live figures,
//! drain, resume, revoke and remove. Platform nodes and other organisations' nodes answer like
//! missing ones; operators manage every node through the cluster API.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use rdp_proxy_core::NodeId;
use rdp_proxy_core::audit::Outcome;
use rdp_proxy_core::node::NodeOwner;
use rdp_proxy_policy::Action;

use crate::auth::{Authenticated, Caller};
use crate::authz;
use crate::extract::{Json, Path};
use crate::nodes::cluster::{self, JoinTokenBody};
use crate::{ApiError, AppState};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/nodes", get(list_nodes))
        .route("/api/v1/nodes/join-tokens", post(create_join_token))
        .route("/api/v1/nodes/{id}", axum::routing::delete(remove_node))
        .route("/api/v1/nodes/{id}/drain", post(drain_node))
        .route("/api/v1/nodes/{id}/resume", post(resume_node))
        .route("/api/v1/nodes/{id}/revoke", post(revoke_node))
}

/// Lists the organisation's nodes with their state, capabilities and live figures.
#[utoipa::path(get, path = "/api/v1/nodes", tag = "nodes", security(("bearer" = [])),
    responses((status = 200, body = Vec<serde_json::Value>), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn list_nodes(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
) -> Result<axum::Json<Vec<cluster::NodeView>>, ApiError> {
    authz::require_in_org(&state, &caller, Action::ManageNodes).await?;
    let nodes = state.store.nodes(Some(NodeOwner::Org(caller.org))).await?;
    Ok(axum::Json(cluster::node_views(&state, nodes).await?))
}

/// Creates a single-use join token for a node scoped to this organisation. The token is shown
/// once; pass it to `rdp-proxy-agent --join-token`.
#[utoipa::path(post, path = "/api/v1/nodes/join-tokens", tag = "nodes", security(("bearer" = [])),
    request_body = serde_json::Value,
    responses((status = 201, body = serde_json::Value), (status = 400, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub(crate) async fn create_join_token(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Json(body): Json<JoinTokenBody>,
) -> Result<(StatusCode, axum::Json<cluster::JoinTokenView>), ApiError> {
    authz::require_in_org(&state, &caller, Action::ManageNodes).await?;
    if body.org_id.is_some_and(|org| org != caller.org) {
        return Err(ApiError::bad_request(
            "invalid_org",
            "a join token from this API is always for the current organisation; leave org_id out",
        ));
    }
    let view = cluster::issue_join_token(&state, NodeOwner::Org(caller.org), body, caller.name().to_owned()).await?;
    authz::audit_ok(
        &state,
        &caller,
        caller
            .audit("node.join_token", "node", Outcome::Ok)
            .details(serde_json::json!({ "expires_at": view.expires_at.to_string() })),
    )
    .await;
    Ok((StatusCode::CREATED, axum::Json(view)))
}

/// Loads a node of the caller's organisation; any other node answers like a missing one.
async fn own_node(state: &AppState, caller: &Caller, id: NodeId) -> Result<(), ApiError> {
    authz::require_in_org(state, caller, Action::ManageNodes).await?;
    match state.store.node(id).await? {
        Some(node) if node.owner == NodeOwner::Org(caller.org) => Ok(()),
        _ => Err(ApiError::not_found("node")),
    }
}

async fn audit_node(state: &AppState, caller: &Caller, action: &str, id: NodeId) {
    authz::audit_ok(state, caller, caller.audit(action, "node", Outcome::Ok).object(id.0)).await;
}

/// Stops new sessions on the node; sessions it holds continue.
#[utoipa::path(post, path = "/api/v1/nodes/{id}/drain", tag = "nodes", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = serde_json::Value), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn drain_node(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<NodeId>,
) -> Result<axum::Json<cluster::NodeRow>, ApiError> {
    own_node(&state, &caller, id).await?;
    let node = cluster::set_drain(&state, id, true, caller.name()).await?;
    audit_node(&state, &caller, "node.drain", id).await;
    Ok(axum::Json(node))
}

/// Lets a drained node take new sessions again.
#[utoipa::path(post, path = "/api/v1/nodes/{id}/resume", tag = "nodes", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = serde_json::Value), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn resume_node(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<NodeId>,
) -> Result<axum::Json<cluster::NodeRow>, ApiError> {
    own_node(&state, &caller, id).await?;
    let node = cluster::set_drain(&state, id, false, caller.name()).await?;
    audit_node(&state, &caller, "node.resume", id).await;
    Ok(axum::Json(node))
}

/// Revokes the node: its certificate is refused from now on, its services stop and the
/// sessions it holds end.
#[utoipa::path(post, path = "/api/v1/nodes/{id}/revoke", tag = "nodes", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 200, body = serde_json::Value), (status = 404, body = crate::error::ErrorBody)))]
pub(crate) async fn revoke_node(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<NodeId>,
) -> Result<axum::Json<cluster::RevokeView>, ApiError> {
    own_node(&state, &caller, id).await?;
    let view = cluster::revoke(&state, id, &format!("revoked by {}", caller.name())).await?;
    audit_node(&state, &caller, "node.revoke", id).await;
    Ok(axum::Json(view))
}

/// Removes a revoked node from the list.
#[utoipa::path(delete, path = "/api/v1/nodes/{id}", tag = "nodes", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path)), responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub(crate) async fn remove_node(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(id): Path<NodeId>,
) -> Result<StatusCode, ApiError> {
    own_node(&state, &caller, id).await?;
    state.store.remove_node(id).await.map_err(|error| match error {
        rdp_proxy_store::StoreError::Conflict(message) => ApiError::conflict("node_not_revoked", message),
        other => other.into(),
    })?;
    audit_node(&state, &caller, "node.remove", id).await;
    Ok(StatusCode::NO_CONTENT)
}
