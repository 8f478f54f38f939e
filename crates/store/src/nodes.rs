//! Nodes, join tokens, node certificates, configuration documents, the cluster CA and worker
//! fencing numbers. These are cluster rows: callers serving one organisation filter by owner.

use std::collections::BTreeMap;

use rdp_proxy_core::node::{Capabilities, NodeOwner, NodeState, ServiceKind, ServiceReport};
use rdp_proxy_core::{NodeId, OrgId, WorkerId};
use sqlx::Row;
use sqlx::postgres::PgRow;
use time::OffsetDateTime;

use crate::{Store, StoreError};

/// The cluster CA as stored: the certificate in clear, the private key sealed.
#[derive(Debug, Clone)]
pub struct StoredCa {
    pub cert_pem: String,
    pub fingerprint: String,
    pub master_key_id: String,
    pub wrapped_key: Vec<u8>,
    pub sealed_key_pem: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    pub id: NodeId,
    pub name: String,
    pub owner: NodeOwner,
    pub state: NodeState,
    pub drain_requested: bool,
    pub state_reason: Option<String>,
    pub state_changed_at: OffsetDateTime,
    pub labels: BTreeMap<String, String>,
    pub capabilities: Capabilities,
    pub enabled_services: Vec<ServiceKind>,
    pub agent_version: String,
    pub services: Vec<ServiceReport>,
    pub config_version: Option<i64>,
    pub joined_at: OffsetDateTime,
    pub last_report_at: Option<OffsetDateTime>,
}

/// A join token as created; `token_hash` is the SHA-256 of its secret part.
#[derive(Debug, Clone)]
pub struct NewJoinToken {
    pub id: uuid::Uuid,
    pub token_hash: Vec<u8>,
    pub owner: NodeOwner,
    pub labels: BTreeMap<String, String>,
    pub enabled_services: Vec<ServiceKind>,
    pub created_by: String,
    pub expires_at: OffsetDateTime,
}

/// Grant of a redeemed join token: owner, labels and services.
#[derive(Debug, Clone)]
pub struct JoinGrant {
    pub token_id: uuid::Uuid,
    pub owner: NodeOwner,
    pub labels: BTreeMap<String, String>,
    pub enabled_services: Vec<ServiceKind>,
}

/// Reason a join token was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinRefusal {
    Unknown,
    Used,
    Expired,
}

/// The node a join creates and the certificate it receives.
#[derive(Debug, Clone)]
pub struct NewNode {
    pub id: NodeId,
    pub name: String,
    pub capabilities: Capabilities,
    pub agent_version: String,
    pub labels: BTreeMap<String, String>,
    pub cert_serial: String,
    pub cert_not_after: OffsetDateTime,
}

/// Failure of a join: the token was refused, the caller's check failed, or storage failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError<E> {
    #[error("join token refused: {0:?}")]
    Refused(JoinRefusal),
    #[error(transparent)]
    Rejected(E),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A worker process's registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerRegistration {
    pub id: WorkerId,
    pub node: Option<NodeId>,
    pub fence: i64,
    pub live: bool,
}

const NODE_COLUMNS: &str = "id, name, owner_org, state, drain_requested, state_reason, state_changed_at, labels,
    capabilities, enabled_services, agent_version, services, config_version, joined_at, last_report_at";

impl Store {
    pub async fn cluster_ca(&self) -> Result<Option<StoredCa>, StoreError> {
        let row = sqlx::query(
            "SELECT cert_pem, fingerprint, master_key_id, wrapped_key, sealed_key_pem FROM cluster_ca WHERE id = 1",
        )
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|row| StoredCa {
            cert_pem: row.get("cert_pem"),
            fingerprint: row.get("fingerprint"),
            master_key_id: row.get("master_key_id"),
            wrapped_key: row.get("wrapped_key"),
            sealed_key_pem: row.get("sealed_key_pem"),
        }))
    }

    /// Stores the CA unless another control-plane instance stored one first; returns the one
    /// that is kept.
    pub async fn init_cluster_ca(&self, ca: &StoredCa) -> Result<StoredCa, StoreError> {
        sqlx::query(
            "INSERT INTO cluster_ca (id, cert_pem, fingerprint, master_key_id, wrapped_key, sealed_key_pem)
             VALUES (1, $1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&ca.cert_pem)
        .bind(&ca.fingerprint)
        .bind(&ca.master_key_id)
        .bind(&ca.wrapped_key)
        .bind(&ca.sealed_key_pem)
        .execute(self.pool())
        .await?;
        self.cluster_ca()
            .await?
            .ok_or_else(|| StoreError::Corrupt("cluster CA vanished after insert".into()))
    }

    pub async fn create_join_token(&self, token: &NewJoinToken) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO join_tokens (id, token_hash, owner_org, labels, enabled_services, created_by, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(token.id)
        .bind(&token.token_hash)
        .bind(token.owner.org().map(|org| org.0))
        .bind(serde_json::to_value(&token.labels).map_err(corrupt)?)
        .bind(service_names(&token.enabled_services))
        .bind(&token.created_by)
        .bind(token.expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Redeems a join token and records the node in one transaction. `check` sees what the
    /// token grants and builds the node (issuing its certificate); when it fails, or the token
    /// is unknown, used or expired, nothing is written and the token stays as it was.
    pub async fn join_node<E>(
        &self,
        token_hash: &[u8],
        check: impl FnOnce(&JoinGrant, NodeId) -> Result<NewNode, E>,
    ) -> Result<(NodeRecord, JoinGrant), JoinError<E>> {
        let mut tx = self.pool().begin().await.map_err(StoreError::from)?;
        let row = sqlx::query(
            "SELECT id, owner_org, labels, enabled_services, used_at IS NOT NULL AS used,
                    expires_at <= now() AS expired
             FROM join_tokens WHERE token_hash = $1 FOR UPDATE",
        )
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        let Some(row) = row else {
            return Err(JoinError::Refused(JoinRefusal::Unknown));
        };
        if row.get::<bool, _>("used") {
            return Err(JoinError::Refused(JoinRefusal::Used));
        }
        if row.get::<bool, _>("expired") {
            return Err(JoinError::Refused(JoinRefusal::Expired));
        }
        let grant = JoinGrant {
            token_id: row.get("id"),
            owner: NodeOwner::from_org(row.get::<Option<uuid::Uuid>, _>("owner_org").map(OrgId)),
            labels: serde_json::from_value(row.get("labels")).map_err(corrupt)?,
            enabled_services: parse_services(&row.get::<Vec<String>, _>("enabled_services"))?,
        };
        let id = NodeId::new_random();
        let node = check(&grant, id).map_err(JoinError::Rejected)?;
        // The operator's labels on the token win over the labels the node requests.
        let mut labels = node.labels.clone();
        labels.extend(grant.labels.clone());
        sqlx::query(
            "INSERT INTO nodes (id, name, owner_org, state, labels, capabilities, enabled_services, agent_version)
             VALUES ($1, $2, $3, 'joining', $4, $5, $6, $7)",
        )
        .bind(node.id.0)
        .bind(&node.name)
        .bind(grant.owner.org().map(|org| org.0))
        .bind(serde_json::to_value(&labels).map_err(corrupt)?)
        .bind(serde_json::to_value(&node.capabilities).map_err(corrupt)?)
        .bind(service_names(&grant.enabled_services))
        .bind(&node.agent_version)
        .execute(&mut *tx)
        .await
        .map_err(|error| StoreError::unique_as(error, "node name"))?;
        insert_certificate(&mut tx, &node.cert_serial, node.id, node.cert_not_after).await?;
        sqlx::query("UPDATE join_tokens SET used_at = now(), used_by_node = $2 WHERE id = $1")
            .bind(grant.token_id)
            .bind(node.id.0)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        let record = fetch_node(&mut *tx, node.id)
            .await?
            .ok_or(StoreError::NotFound { what: "node" })?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok((record, grant))
    }

    /// Records a renewed certificate unless the node was revoked or removed meanwhile. The node
    /// row is locked, so a revocation either sees this certificate and revokes it too, or
    /// comes first and this fails with `Conflict`.
    pub async fn add_node_certificate(
        &self,
        node: NodeId,
        serial: &str,
        not_after: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM nodes WHERE id = $1 FOR SHARE")
            .bind(node.0)
            .fetch_optional(&mut *tx)
            .await?;
        match state.as_deref() {
            None => return Err(StoreError::NotFound { what: "node" }),
            Some("revoked") => return Err(StoreError::Conflict("the node is revoked".into())),
            Some(_) => {}
        }
        insert_certificate(&mut tx, serial, node, not_after).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Serial numbers of revoked certificates that have not expired yet.
    pub async fn revoked_serials(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT serial FROM node_certificates WHERE revoked_at IS NOT NULL AND not_after > now()",
        )
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn certificate_revoked(&self, serial: &str) -> Result<bool, StoreError> {
        let revoked: Option<bool> =
            sqlx::query_scalar("SELECT revoked_at IS NOT NULL FROM node_certificates WHERE serial = $1")
                .bind(serial)
                .fetch_optional(self.pool())
                .await?;
        // A certificate the cluster never recorded is treated as revoked.
        Ok(revoked.unwrap_or(true))
    }

    pub async fn node(&self, id: NodeId) -> Result<Option<NodeRecord>, StoreError> {
        fetch_node(self.pool(), id).await
    }

    /// Lists all nodes, or only those of one owner.
    pub async fn nodes(&self, owner: Option<NodeOwner>) -> Result<Vec<NodeRecord>, StoreError> {
        let sql = match owner {
            None => format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY name"),
            Some(NodeOwner::Platform) => {
                format!("SELECT {NODE_COLUMNS} FROM nodes WHERE owner_org IS NULL ORDER BY name")
            }
            Some(NodeOwner::Org(_)) => format!("SELECT {NODE_COLUMNS} FROM nodes WHERE owner_org = $1 ORDER BY name"),
        };
        let rows = sqlx::query(&sql)
            .bind(owner.and_then(NodeOwner::org).map(|org| org.0))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(node_from_row).collect()
    }

    pub async fn nodes_by_id(&self, ids: &[NodeId]) -> Result<Vec<NodeRecord>, StoreError> {
        let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
        let rows = sqlx::query(&format!("SELECT {NODE_COLUMNS} FROM nodes WHERE id = ANY($1)"))
            .bind(ids)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(node_from_row).collect()
    }

    /// Records what a node reported when it differs from the stored row, and brings a
    /// `joining` or `down` node to `ready` (or back to `draining` when an operator drained it).
    /// A revoked node is left as it is.
    pub async fn record_node_report(
        &self,
        id: NodeId,
        capabilities: &Capabilities,
        agent_version: &str,
        services: &[ServiceReport],
        config_version: Option<i64>,
    ) -> Result<Option<NodeRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE nodes SET capabilities = $2, agent_version = $3, services = $4, config_version = $5,
                last_report_at = now(),
                state = CASE WHEN state IN ('joining', 'down')
                             THEN CASE WHEN drain_requested THEN 'draining' ELSE 'ready' END
                             ELSE state END,
                state_reason = CASE WHEN state IN ('joining', 'down') THEN NULL ELSE state_reason END,
                state_changed_at = CASE WHEN state IN ('joining', 'down') THEN now() ELSE state_changed_at END
             WHERE id = $1 AND state <> 'revoked'
             RETURNING {NODE_COLUMNS}"
        ))
        .bind(id.0)
        .bind(serde_json::to_value(capabilities).map_err(corrupt)?)
        .bind(agent_version)
        .bind(serde_json::to_value(services).map_err(corrupt)?)
        .bind(config_version)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(node_from_row).transpose()
    }

    /// Stops new sessions on a node (`drain = true`, recording `by` in the reason) or allows
    /// them again. Held sessions stay.
    pub async fn set_node_drain(&self, id: NodeId, drain: bool, by: &str) -> Result<NodeRecord, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE nodes SET drain_requested = $2,
                state = CASE WHEN state IN ('ready', 'draining')
                             THEN CASE WHEN $2 THEN 'draining' ELSE 'ready' END ELSE state END,
                state_changed_at = now(),
                state_reason = CASE WHEN $2 THEN 'drained by ' || $3 ELSE NULL END
             WHERE id = $1 AND state <> 'revoked'
             RETURNING {NODE_COLUMNS}"
        ))
        .bind(id.0)
        .bind(drain)
        .bind(by)
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(row) => node_from_row(&row),
            None => Err(self.node_missing_or_revoked(id).await),
        }
    }

    /// Marks a node `down` unless it reported again or was revoked meanwhile.
    pub async fn mark_node_down(&self, id: NodeId, reason: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE nodes SET state = 'down', state_reason = $2, state_changed_at = now()
             WHERE id = $1 AND state IN ('joining', 'ready', 'draining')",
        )
        .bind(id.0)
        .bind(reason)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Revokes a node and every certificate it was issued; returns the serials now refused. A
    /// node revoked before returns `Conflict`, keeping who revoked it and when.
    pub async fn revoke_node(&self, id: NodeId, reason: &str) -> Result<Vec<String>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE nodes SET state = 'revoked', state_reason = $2, state_changed_at = now()
             WHERE id = $1 AND state <> 'revoked'",
        )
        .bind(id.0)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(match fetch_node(&mut *tx, id).await? {
                None => StoreError::NotFound { what: "node" },
                Some(_) => StoreError::Conflict("the node is already revoked".into()),
            });
        }
        let serials = sqlx::query_scalar(
            "UPDATE node_certificates SET revoked_at = COALESCE(revoked_at, now()) WHERE node_id = $1 RETURNING serial",
        )
        .bind(id.0)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(serials)
    }

    /// Deletes a revoked node. Its certificates stay recorded as revoked.
    pub async fn remove_node(&self, id: NodeId) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM nodes WHERE id = $1 AND state = 'revoked'")
            .bind(id.0)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        match self.node(id).await? {
            None => Err(StoreError::NotFound { what: "node" }),
            Some(_) => Err(StoreError::Conflict("revoke the node before removing it".into())),
        }
    }

    async fn node_missing_or_revoked(&self, id: NodeId) -> StoreError {
        match self.node(id).await {
            Ok(None) => StoreError::NotFound { what: "node" },
            Ok(Some(_)) => StoreError::Conflict("the node is revoked".into()),
            Err(error) => error,
        }
    }

    /// Publishes a configuration document; returns its version.
    pub async fn publish_node_config(&self, body: &serde_json::Value, created_by: &str) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("INSERT INTO node_config (body, created_by) VALUES ($1, $2) RETURNING version")
                .bind(body)
                .bind(created_by)
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// Returns the newest configuration document, if any was published.
    pub async fn latest_node_config(&self) -> Result<Option<(i64, serde_json::Value)>, StoreError> {
        let row = sqlx::query("SELECT version, body FROM node_config ORDER BY version DESC LIMIT 1")
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|row| (row.get("version"), row.get("body"))))
    }

    /// Registers a worker process and gives it a fresh fencing number. A worker that was
    /// declared lost registers again under the same id and gets a new number.
    pub async fn register_worker(&self, id: WorkerId, node: Option<NodeId>) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO workers (id, node_id, fence, state) VALUES ($1, $2, nextval('worker_fence_seq'), 'live')
             ON CONFLICT (id) DO UPDATE SET fence = nextval('worker_fence_seq'), state = 'live',
                 ended_at = NULL, reason = NULL
             RETURNING fence",
        )
        .bind(id.0)
        .bind(node.map(|node| node.0))
        .fetch_one(self.pool())
        .await?)
    }

    pub async fn worker_registration(&self, id: WorkerId) -> Result<Option<WorkerRegistration>, StoreError> {
        let row = sqlx::query("SELECT id, node_id, fence, state FROM workers WHERE id = $1")
            .bind(id.0)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|row| registration_from_row(&row)))
    }

    /// Workers registered as live, for the lost-worker sweep.
    pub async fn live_worker_registrations(&self) -> Result<Vec<WorkerRegistration>, StoreError> {
        let rows = sqlx::query("SELECT id, node_id, fence, state FROM workers WHERE state = 'live'")
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(registration_from_row).collect())
    }

    /// Declares a worker lost (or stopped, at a clean shutdown): from now on its fencing number
    /// is stale and its session writes are refused. Returns false when it was not live.
    pub async fn end_worker(&self, id: WorkerId, lost: bool, reason: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE workers SET state = $2, ended_at = now(), reason = $3 WHERE id = $1 AND state = 'live'",
        )
        .bind(id.0)
        .bind(if lost { "lost" } else { "stopped" })
        .bind(reason)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes registrations of workers that ended (lost or stopped) more than `older_than` ago;
    /// returns how many. Their fencing numbers can no longer matter: their sessions are final.
    pub async fn prune_worker_registrations(&self, older_than: std::time::Duration) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM workers WHERE state <> 'live' AND ended_at < now() - make_interval(secs => $1)")
                .bind(older_than.as_secs_f64())
                .execute(self.pool())
                .await?;
        Ok(done.rows_affected())
    }

    /// Workers that ran on `node`.
    pub async fn node_workers(&self, node: NodeId) -> Result<Vec<WorkerRegistration>, StoreError> {
        let rows = sqlx::query("SELECT id, node_id, fence, state FROM workers WHERE node_id = $1")
            .bind(node.0)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(registration_from_row).collect())
    }
}

async fn insert_certificate(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    serial: &str,
    node: NodeId,
    not_after: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO node_certificates (serial, node_id, not_after) VALUES ($1, $2, $3)")
        .bind(serial)
        .bind(node.0)
        .bind(not_after)
        .execute(&mut **tx)
        .await
        .map_err(|error| StoreError::unique_as(error, "certificate serial"))?;
    Ok(())
}

async fn fetch_node<'e, E>(executor: E, id: NodeId) -> Result<Option<NodeRecord>, StoreError>
where
    E: sqlx::PgExecutor<'e>,
{
    let row = sqlx::query(&format!("SELECT {NODE_COLUMNS} FROM nodes WHERE id = $1"))
        .bind(id.0)
        .fetch_optional(executor)
        .await?;
    row.as_ref().map(node_from_row).transpose()
}

fn node_from_row(row: &PgRow) -> Result<NodeRecord, StoreError> {
    let state: String = row.get("state");
    Ok(NodeRecord {
        id: NodeId(row.get("id")),
        name: row.get("name"),
        owner: NodeOwner::from_org(row.get::<Option<uuid::Uuid>, _>("owner_org").map(OrgId)),
        state: state.parse().map_err(StoreError::Corrupt)?,
        drain_requested: row.get("drain_requested"),
        state_reason: row.get("state_reason"),
        state_changed_at: row.get("state_changed_at"),
        labels: serde_json::from_value(row.get("labels")).map_err(corrupt)?,
        capabilities: serde_json::from_value(row.get("capabilities")).map_err(corrupt)?,
        enabled_services: parse_services(&row.get::<Vec<String>, _>("enabled_services"))?,
        agent_version: row.get("agent_version"),
        services: serde_json::from_value(row.get("services")).map_err(corrupt)?,
        config_version: row.get("config_version"),
        joined_at: row.get("joined_at"),
        last_report_at: row.get("last_report_at"),
    })
}

fn registration_from_row(row: &PgRow) -> WorkerRegistration {
    WorkerRegistration {
        id: WorkerId(row.get("id")),
        node: row.get::<Option<uuid::Uuid>, _>("node_id").map(NodeId),
        fence: row.get("fence"),
        live: row.get::<String, _>("state") == "live",
    }
}

fn service_names(services: &[ServiceKind]) -> Vec<String> {
    services.iter().map(|kind| kind.as_str().to_owned()).collect()
}

fn parse_services(names: &[String]) -> Result<Vec<ServiceKind>, StoreError> {
    names
        .iter()
        .map(|name| name.parse().map_err(StoreError::Corrupt))
        .collect()
}

fn corrupt(error: serde_json::Error) -> StoreError {
    StoreError::Corrupt(error.to_string())
}
