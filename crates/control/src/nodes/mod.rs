//! Nodes: the cluster CA, join tokens, the node API that agents reach over mutual TLS, the
//! operator's cluster API, and placement of new sessions on measured workers.

pub(crate) mod api;
pub(crate) mod cluster;
pub(crate) mod placement;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use rdp_proxy_core::node::wire::JOIN_TOKEN_PREFIX;
use rdp_proxy_core::node::{NodeOwner, ServiceKind};
use rdp_proxy_pki::{ClusterCa, Revocations};
use rdp_proxy_store::{NewJoinToken, Store, StoredCa};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::Vault;

/// The cluster CA as the control plane holds it, with the serials it refuses.
pub(crate) struct Authority {
    pub(crate) ca: ClusterCa,
    pub(crate) fingerprint: String,
    pub(crate) revocations: Revocations,
    /// Lifetime of node certificates; agents renew after two thirds of it.
    pub(crate) node_cert_validity: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    #[error("could not read or store the cluster CA")]
    Store(#[from] rdp_proxy_store::StoreError),
    #[error("could not open the cluster CA's key (is this the master key it was sealed with?)")]
    Vault(#[from] crate::VaultError),
    #[error("cluster CA: {0}")]
    Pki(#[from] rdp_proxy_pki::PkiError),
}

impl Authority {
    /// Loads the cluster CA from PostgreSQL, creating it on the very first start. Several
    /// control-plane instances starting at once agree on one CA.
    pub(crate) async fn load(
        store: &Store,
        vault: &Vault,
        node_cert_validity: Duration,
    ) -> Result<Arc<Self>, AuthorityError> {
        let stored = match store.cluster_ca().await? {
            Some(stored) => stored,
            None => {
                let fresh = ClusterCa::generate("rdp-proxy cluster")?;
                let (master_key_id, wrapped_key, sealed_key_pem) =
                    vault.seal_cluster_secret(fresh.key_pem().as_bytes());
                let kept = store
                    .init_cluster_ca(&StoredCa {
                        cert_pem: fresh.cert_pem().to_owned(),
                        fingerprint: fresh.fingerprint(),
                        master_key_id,
                        wrapped_key,
                        sealed_key_pem,
                    })
                    .await?;
                tracing::info!(fingerprint = %kept.fingerprint, "Cluster CA ready");
                kept
            }
        };
        let key_pem = vault.open_cluster_secret(&stored.master_key_id, &stored.wrapped_key, &stored.sealed_key_pem)?;
        let key_pem = std::str::from_utf8(&key_pem)
            .map_err(|_| rdp_proxy_store::StoreError::Corrupt("CA key is not PEM".into()))?;
        let ca = ClusterCa::from_pem(&stored.cert_pem, key_pem)?;
        let revocations = Revocations::new();
        revocations.replace_all(store.revoked_serials().await?);
        Ok(Arc::new(Self {
            fingerprint: ca.fingerprint(),
            ca,
            revocations,
            node_cert_validity,
        }))
    }
}

/// Appends a record to the audit trail of the organisation that owns a customer-managed node,
/// for changes made by the operator or the node itself; platform nodes have no organisation
/// trail and are only logged.
pub(crate) async fn audit_node_event(
    store: &Store,
    owner: rdp_proxy_core::node::NodeOwner,
    action: &str,
    node: Option<rdp_proxy_core::NodeId>,
    actor: &str,
    details: serde_json::Value,
) {
    let Some(org) = owner.org() else { return };
    let mut entry = rdp_proxy_store::AuditEntry::new(action, "node", rdp_proxy_core::audit::Outcome::Ok)
        .actor(rdp_proxy_core::audit::ActorKind::System, None, Some(actor.to_owned()))
        .details(details);
    if let Some(node) = node {
        entry = entry.object(node.0);
    }
    if let Err(error) = store.audit(org, &entry).await {
        tracing::error!(error = %error, org.id = %org, action, "Could not write an audit record");
    }
}

/// Fields of a new join token.
pub(crate) struct TokenRequest {
    pub(crate) owner: NodeOwner,
    pub(crate) ttl: Duration,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) services: Vec<ServiceKind>,
    pub(crate) created_by: String,
}

/// Maximum lifetime of a join token.
pub(crate) const MAX_JOIN_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Creates a single-use join token: `rpj1_<CA fingerprint>_<secret>`. The fingerprint lets the
/// agent check the control plane before it trusts anything; only the secret's hash is stored.
pub(crate) async fn create_join_token(
    store: &Store,
    authority: &Authority,
    request: TokenRequest,
) -> Result<(String, OffsetDateTime), rdp_proxy_store::StoreError> {
    let mut secret = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let secret = hex::encode(secret);
    let expires_at = OffsetDateTime::now_utc() + request.ttl;
    store
        .create_join_token(&NewJoinToken {
            id: uuid::Uuid::new_v4(),
            token_hash: secret_hash(&secret),
            owner: request.owner,
            labels: request.labels,
            enabled_services: request.services,
            created_by: request.created_by,
            expires_at,
        })
        .await?;
    Ok((
        format!("{JOIN_TOKEN_PREFIX}_{}_{secret}", authority.fingerprint),
        expires_at,
    ))
}

/// Splits a join token into the CA fingerprint and the secret.
pub(crate) fn parse_join_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(JOIN_TOKEN_PREFIX)?.strip_prefix('_')?;
    let (fingerprint, secret) = rest.split_once('_')?;
    let hex_of = |value: &str, len: usize| value.len() == len && value.bytes().all(|b| b.is_ascii_hexdigit());
    (hex_of(fingerprint, 64) && hex_of(secret, 48)).then_some((fingerprint, secret))
}

pub(crate) fn secret_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Checks label keys and values the way target labels are checked.
pub(crate) fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    if labels.len() > 32 {
        return Err("at most 32 labels".into());
    }
    for (key, value) in labels {
        let key_ok = !key.is_empty()
            && key.len() <= 63
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.' | b'/'));
        if !key_ok {
            return Err(format!("label key {key:?} must be 1-63 of a-z 0-9 - _ . /"));
        }
        if value.len() > 255 || value.chars().any(char::is_control) {
            return Err(format!("label {key:?} value must be at most 255 printable characters"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_tokens_parse_only_in_their_exact_shape() {
        let fingerprint = "ab".repeat(32);
        let secret = "cd".repeat(24);
        let token = format!("rpj1_{fingerprint}_{secret}");
        assert_eq!(parse_join_token(&token), Some((fingerprint.as_str(), secret.as_str())));
        assert_eq!(parse_join_token(&format!("rpj2_{fingerprint}_{secret}")), None);
        assert_eq!(parse_join_token(&format!("rpj1_{fingerprint}_{secret}0")), None);
        assert_eq!(parse_join_token(&format!("rpj1_{}_{secret}", "zz".repeat(32))), None);
        assert_eq!(parse_join_token(""), None);
    }
}
