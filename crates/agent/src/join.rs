//! Joining the cluster: the first request, made with a token and a connection pinned to the CA
//! fingerprint in that token.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use rdp_proxy_core::OrgId;
use rdp_proxy_core::node::wire::JoinRequest;
use rdp_proxy_pki::NodeKey;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiError, NodeApi};
use crate::backoff::Backoff;
use crate::node::Settings;
use crate::state::{DataDir, Identity, NodeRecord};
use crate::token::JoinToken;
use crate::{AGENT_VERSION, AgentError};

/// Name, organisation and labels the node requests at join.
#[derive(Debug, Clone)]
pub(crate) struct JoinSettings {
    pub name: String,
    pub org: Option<OrgId>,
    pub labels: BTreeMap<String, String>,
}

/// Joins the cluster and stores the identity. Returns `None` when `shutdown` was cancelled
/// while waiting to retry.
///
/// An unreachable control plane or a 5xx response is retried with backoff up to 30 s. A 4xx
/// response (the token is used, expired or invalid, or the organisation does not match) and a
/// failed TLS handshake end the join, because retrying the same token cannot succeed.
pub(crate) async fn join(
    settings: &Settings,
    data: &DataDir,
    token: &JoinToken,
    request: JoinSettings,
    shutdown: &CancellationToken,
) -> Result<Option<Identity>, AgentError> {
    let tls = rdp_proxy_pki::pinned_client_config(token.ca_fingerprint())
        .context("invalid CA fingerprint in the join token")?;
    let client = rdp_proxy_pki::http_client(tls).context("failed to build the HTTP client")?;
    let api = NodeApi::new(settings.control.clone(), client);

    let key = NodeKey::generate().context("failed to generate the node key")?;
    let csr_pem = key.csr_pem(&request.name).with_context(|| {
        format!(
            "failed to create a certificate request for node name {:?}; pass another --name",
            request.name
        )
    })?;
    let capabilities = settings.measure_capabilities()?;
    let join_request = JoinRequest {
        token: token.expose().to_owned(),
        name: request.name.clone(),
        csr_pem,
        org_id: request.org,
        capabilities,
        agent_version: AGENT_VERSION.to_owned(),
        labels: request.labels,
    };

    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    tracing::info!(control = %settings.control, name = request.name, "Joining the cluster");
    let response = loop {
        let result = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(None),
            result = api.join(&join_request) => result,
        };
        match result {
            Ok(response) => break response,
            Err(ApiError::Rejected { status, code, message }) => {
                return Err(AgentError::JoinRejected { status, code, message });
            }
            Err(error @ (ApiError::Tls(_) | ApiError::CertificateRevoked(_))) => {
                return Err(anyhow::anyhow!(
                    "{error}; check that the join token was issued by the control plane at {} (the token pins CA fingerprint {})",
                    settings.control,
                    token.ca_fingerprint()
                )
                .into());
            }
            Err(ApiError::Unavailable(detail)) => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    control = %settings.control,
                    error = detail,
                    retry_in_secs = delay.as_secs(),
                    "Join failed because the control plane is unreachable; retrying"
                );
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return Ok(None),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    };

    let certificate = response.certificate;
    let matches = key
        .matches_certificate(&certificate.cert_pem)
        .context("the control plane returned an unreadable certificate")?;
    if !matches {
        return Err(anyhow::anyhow!("the control plane returned a certificate for another key").into());
    }
    let identity = Identity {
        record: NodeRecord {
            node_id: response.node_id,
            owner: response.owner,
            name: request.name,
            serial: certificate.serial,
            issued_at: OffsetDateTime::now_utc(),
            not_after: certificate.not_after,
        },
        key_pem: key.key_pem(),
        cert_pem: certificate.cert_pem,
        ca_pem: response.ca_pem,
    };
    data.save_identity(&identity)?;
    tracing::info!(
        node_id = %identity.record.node_id,
        owner = %identity.record.owner,
        serial = identity.record.serial,
        not_after = %identity.record.not_after,
        data_dir = %data.root().display(),
        "Joined the cluster"
    );
    Ok(Some(identity))
}
