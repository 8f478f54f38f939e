//! The node API on its own mutual-TLS listener: join (the only call without a client
//! certificate), certificate renewal, and the agent's report, answered with what the node
//! should be doing.

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use rdp_proxy_core::node::NodeOwner;
use rdp_proxy_core::node::NodeState;
use rdp_proxy_core::node::wire::{
    ConfigDocument, IssuedCertificate, JoinRequest, JoinResponse, NodeApiError, NodeConfig, NodeInstructions,
    NodeReport, RenewRequest,
};
use rdp_proxy_pki::{NodeIdentity, PeerCertificate};
use rdp_proxy_store::{JoinError, JoinRefusal, NewNode, NodeRecord, StoreError};
use time::OffsetDateTime;

use super::{parse_join_token, secret_hash, validate_labels};
use crate::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/node/v1/join", post(join))
        .route("/node/v1/renew", post(renew))
        .route("/node/v1/report", post(report))
        .layer(DefaultBodyLimit::max(64 * 1024))
        // A client that trickles its request must not hold a connection for long; the join
        // endpoint needs no certificate, so anyone can try.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(15),
        ))
}

/// An error of the node API: HTTP status, a stable code and a sentence for the operator.
#[derive(Debug)]
pub(crate) struct NodeError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl NodeError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn store(error: &StoreError) -> Self {
        tracing::error!(error = %error, "Node API storage failure");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the control plane could not reach its database; retry",
        )
    }
}

impl IntoResponse for NodeError {
    fn into_response(self) -> Response {
        let body = NodeApiError {
            code: self.code.to_owned(),
            message: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

fn valid_node_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase() | bytes[0].is_ascii_digit()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
}

async fn join(
    State(state): State<AppState>,
    Json(request): Json<JoinRequest>,
) -> Result<Json<JoinResponse>, NodeError> {
    let authority = &state.authority;
    let unauthorized = |code, message: &str| NodeError::new(StatusCode::UNAUTHORIZED, code, message);
    let Some((fingerprint, secret)) = parse_join_token(&request.token) else {
        return Err(unauthorized("join_token_invalid", "this is not a join token"));
    };
    if fingerprint != authority.fingerprint {
        return Err(unauthorized(
            "join_token_invalid",
            "this join token was issued by another cluster's CA",
        ));
    }
    let unprocessable = |code, message: String| NodeError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message);
    if !valid_node_name(&request.name) {
        return Err(unprocessable(
            "invalid_name",
            "node names are 1-63 characters of a-z, 0-9, '-' and '.', starting with a letter or digit".into(),
        ));
    }
    request
        .capabilities
        .validate()
        .map_err(|error| unprocessable("invalid_figures", format!("capabilities: {error}")))?;
    validate_labels(&request.labels).map_err(|error| unprocessable("invalid_labels", error))?;
    if request.agent_version.is_empty()
        || request.agent_version.len() > 64
        || request.agent_version.chars().any(char::is_control)
    {
        return Err(unprocessable(
            "invalid_version",
            "agent_version must be 1-64 printable characters".into(),
        ));
    }
    let now = OffsetDateTime::now_utc();
    let mut issued: Option<IssuedCertificate> = None;
    let joined = state
        .store
        .join_node(&secret_hash(secret), |grant, id| {
            if let Some(claimed) = request.org_id
                && grant.owner != NodeOwner::Org(claimed)
            {
                return Err(NodeError::new(
                    StatusCode::FORBIDDEN,
                    "org_mismatch",
                    format!("this join token is for {}, not organisation {claimed}", grant.owner),
                ));
            }
            let identity = NodeIdentity {
                node: id,
                owner: grant.owner,
            };
            let certificate = authority
                .ca
                .issue_node(
                    &request.csr_pem,
                    &identity,
                    &request.name,
                    authority.node_cert_validity,
                    now,
                )
                .map_err(|error| NodeError::new(StatusCode::BAD_REQUEST, "invalid_csr", error.to_string()))?;
            let node = NewNode {
                id,
                name: request.name.clone(),
                capabilities: request.capabilities.clone(),
                agent_version: request.agent_version.clone(),
                labels: request.labels.clone(),
                cert_serial: certificate.serial.clone(),
                cert_not_after: certificate.not_after,
            };
            issued = Some(certificate);
            Ok(node)
        })
        .await;
    let (node, _grant) = match joined {
        Ok(joined) => joined,
        Err(JoinError::Refused(refusal)) => {
            let (code, message) = match refusal {
                JoinRefusal::Unknown => ("join_token_invalid", "unknown join token"),
                JoinRefusal::Used => ("join_token_used", "this join token was already used; ask for a new one"),
                JoinRefusal::Expired => ("join_token_expired", "this join token has expired; ask for a new one"),
            };
            tracing::warn!(node.name = %request.name, code, "Join refused");
            return Err(unauthorized(code, message));
        }
        Err(JoinError::Rejected(error)) => {
            tracing::warn!(node.name = %request.name, code = error.code, message = %error.message, "Join refused");
            return Err(error);
        }
        Err(JoinError::Store(StoreError::AlreadyExists { .. })) => {
            return Err(NodeError::new(
                StatusCode::CONFLICT,
                "node_name_taken",
                format!(
                    "the owner already has a node named {}; pick another --name",
                    request.name
                ),
            ));
        }
        Err(JoinError::Store(error)) => return Err(NodeError::store(&error)),
    };
    let certificate = issued.ok_or_else(|| NodeError::store(&StoreError::Corrupt("no certificate issued".into())))?;
    tracing::info!(node.id = %node.id, node.name = %node.name, node.owner = %node.owner, "Node joined");
    super::audit_node_event(
        &state.store,
        node.owner,
        "node.join",
        Some(node.id),
        &format!("node {}", node.name),
        serde_json::json!({ "name": node.name, "serial": certificate.serial }),
    )
    .await;
    Ok(Json(JoinResponse {
        node_id: node.id,
        owner: node.owner,
        certificate,
        ca_pem: authority.ca.cert_pem().to_owned(),
    }))
}

/// Returns the node behind a client certificate, rejected when the certificate is missing or revoked,
/// or the node was revoked or removed.
async fn authenticated_node(state: &AppState, peer: &PeerCertificate) -> Result<NodeRecord, NodeError> {
    let Some(peer) = &peer.0 else {
        return Err(NodeError::new(
            StatusCode::UNAUTHORIZED,
            "client_certificate_required",
            "present the node certificate issued at join",
        ));
    };
    let forbidden = |code, message: &str| NodeError::new(StatusCode::FORBIDDEN, code, message);
    let node = state
        .store
        .node(peer.identity.node)
        .await
        .map_err(|error| NodeError::store(&error))?
        .ok_or_else(|| forbidden("node_unknown", "this node was removed; join again with a new token"))?;
    if node.state == NodeState::Revoked {
        return Err(forbidden(
            "node_revoked",
            "this node was revoked; join again with a new token",
        ));
    }
    if state
        .store
        .certificate_revoked(&peer.serial)
        .await
        .map_err(|error| NodeError::store(&error))?
    {
        state.authority.revocations.insert(&peer.serial);
        return Err(forbidden("certificate_revoked", "this node certificate was revoked"));
    }
    if node.owner != peer.identity.owner {
        return Err(forbidden(
            "identity_mismatch",
            "the certificate's owner differs from the node's",
        ));
    }
    Ok(node)
}

async fn renew(
    State(state): State<AppState>,
    Extension(peer): Extension<PeerCertificate>,
    Json(request): Json<RenewRequest>,
) -> Result<Json<IssuedCertificate>, NodeError> {
    let node = authenticated_node(&state, &peer).await?;
    let authority = &state.authority;
    // Agents renew when a third of the lifetime remains; earlier requests would only pile up
    // valid certificates.
    if let Some(current) = &peer.0 {
        let remaining = current.not_after - OffsetDateTime::now_utc();
        if remaining > authority.node_cert_validity / 2 {
            return Err(NodeError::new(
                StatusCode::CONFLICT,
                "renewal_too_early",
                format!(
                    "the current certificate is valid until {}; renew when less than half of its lifetime remains",
                    current.not_after
                ),
            ));
        }
    }
    let identity = NodeIdentity {
        node: node.id,
        owner: node.owner,
    };
    let certificate = authority
        .ca
        .issue_node(
            &request.csr_pem,
            &identity,
            &node.name,
            authority.node_cert_validity,
            OffsetDateTime::now_utc(),
        )
        .map_err(|error| NodeError::new(StatusCode::BAD_REQUEST, "invalid_csr", error.to_string()))?;
    state
        .store
        .add_node_certificate(node.id, &certificate.serial, certificate.not_after)
        .await
        .map_err(|error| match error {
            StoreError::Conflict(_) | StoreError::NotFound { .. } => NodeError::new(
                StatusCode::FORBIDDEN,
                "node_revoked",
                "this node was revoked; join again with a new token",
            ),
            other => NodeError::store(&other),
        })?;
    tracing::info!(node.id = %node.id, serial = %certificate.serial, "Node certificate renewed");
    Ok(Json(certificate))
}

async fn report(
    State(state): State<AppState>,
    Extension(peer): Extension<PeerCertificate>,
    Json(report): Json<NodeReport>,
) -> Result<Json<NodeInstructions>, NodeError> {
    let node = authenticated_node(&state, &peer).await?;
    let unprocessable = |code, message: String| NodeError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message);
    report.capabilities.validate().map_err(|error| {
        tracing::warn!(node.id = %node.id, error = %error, "Node reported absurd capabilities");
        unprocessable("invalid_figures", format!("capabilities: {error}"))
    })?;
    let printable = |text: &str| !text.chars().any(char::is_control);
    let texts_printable = printable(&report.agent_version)
        && report.services.iter().all(|service| {
            service.version.as_deref().is_none_or(printable)
                && service.last_exit.as_deref().is_none_or(printable)
                && service.address.as_deref().is_none_or(printable)
        });
    if !texts_printable
        || report.services.len() > 8
        || report.agent_version.is_empty()
        || report.agent_version.len() > 64
        || report.services.iter().any(|service| {
            service.version.as_ref().is_some_and(|v| v.len() > 64)
                || service.last_exit.as_ref().is_some_and(|e| e.len() > 200)
        })
    {
        return Err(unprocessable(
            "invalid_report",
            "at most 8 services, versions of 1-64 printable characters and exit descriptions of at most 200".into(),
        ));
    }
    let config = latest_config(&state).await?;
    let interval = config
        .as_ref()
        .map_or(NodeConfig::default().report_interval_secs, |config| {
            config.body.report_interval_secs
        });
    // Three missed reports, and never less than the lost-worker grace period.
    let ttl = (Duration::from_secs(u64::from(interval)) * 3).max(state.config.lost_grace);
    let raw = serde_json::to_string(&report).unwrap_or_default();
    if let Err(error) = state.coord.set_node_report(node.id, &raw, ttl).await {
        tracing::warn!(node.id = %node.id, error = %error, "Could not record the node report in Redis");
    }
    let updated = state
        .store
        .record_node_report(
            node.id,
            &report.capabilities,
            &report.agent_version,
            &report.services,
            report.config_version,
        )
        .await
        .map_err(|error| NodeError::store(&error))?
        .ok_or_else(|| {
            NodeError::new(
                StatusCode::FORBIDDEN,
                "node_revoked",
                "this node was revoked; join again with a new token",
            )
        })?;
    if updated.state != node.state {
        tracing::info!(node.id = %node.id, from = %node.state, to = %updated.state, "Node state changed");
    }
    Ok(Json(NodeInstructions {
        node_id: updated.id,
        owner: updated.owner,
        state: updated.state,
        enabled_services: updated.enabled_services,
        labels: updated.labels,
        config,
    }))
}

/// Returns the newest configuration document; one that no longer parses is skipped with a warning.
pub(crate) async fn latest_config(state: &AppState) -> Result<Option<ConfigDocument>, NodeError> {
    let Some((version, body)) = state
        .store
        .latest_node_config()
        .await
        .map_err(|error| NodeError::store(&error))?
    else {
        return Ok(None);
    };
    match serde_json::from_value::<NodeConfig>(body) {
        Ok(body) => Ok(Some(ConfigDocument { version, body })),
        Err(error) => {
            tracing::warn!(config.version = version, error = %error, "Stored node configuration is unreadable; not sent");
            Ok(None)
        }
    }
}
