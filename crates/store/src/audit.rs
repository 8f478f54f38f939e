//! The per-organisation audit trail: appended in the same transaction as the change it records,
//! chained by hash, and never updated (a trigger refuses it and the service role lacks the grant).

use rdp_proxy_core::OrgId;
use rdp_proxy_core::audit::{ActorKind, AuditFields, GENESIS, Outcome, chain_hash, truncate_to_micros};
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;
use time::OffsetDateTime;

use crate::page::{Cursor, Page, paginate};
use crate::{OrgTx, Store, StoreError};

/// A record to append. The store assigns the sequence number, time and hashes.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor_kind: ActorKind,
    pub actor_id: Option<uuid::Uuid>,
    pub actor_name: Option<String>,
    /// The attempted action, as `object.verb`: `target.create`, `login`, `session.takeover`.
    pub action: String,
    pub object_kind: String,
    pub object_id: Option<String>,
    pub outcome: Outcome,
    pub reason: Option<String>,
    /// Extra facts; never secrets.
    pub details: Value,
}

impl AuditEntry {
    pub fn new(action: impl Into<String>, object_kind: impl Into<String>, outcome: Outcome) -> Self {
        Self {
            actor_kind: ActorKind::System,
            actor_id: None,
            actor_name: None,
            action: action.into(),
            object_kind: object_kind.into(),
            object_id: None,
            outcome,
            reason: None,
            details: Value::Object(serde_json::Map::new()),
        }
    }

    pub fn actor(mut self, kind: ActorKind, id: Option<uuid::Uuid>, name: Option<String>) -> Self {
        self.actor_kind = kind;
        self.actor_id = id;
        self.actor_name = name;
        self
    }

    pub fn object(mut self, id: impl ToString) -> Self {
        self.object_id = Some(id.to_string());
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: OffsetDateTime,
    pub actor_kind: ActorKind,
    pub actor_id: Option<uuid::Uuid>,
    pub actor_name: Option<String>,
    pub action: String,
    pub object_kind: String,
    pub object_id: Option<String>,
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub details: Value,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub actor_id: Option<uuid::Uuid>,
    pub outcome: Option<Outcome>,
}

/// Result of recomputing an organisation's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheck {
    pub checked: u64,
    /// First record whose stored hashes do not match the recomputed chain, or a gap.
    pub first_bad_seq: Option<i64>,
    pub problem: Option<String>,
}

impl OrgTx {
    /// Appends one record to the organisation's chain; returns its sequence number.
    pub async fn audit(&mut self, entry: &AuditEntry) -> Result<i64, StoreError> {
        let org = self.org;
        sqlx::query("INSERT INTO audit_heads (org_id, seq, hash) VALUES ($1, 0, $2) ON CONFLICT (org_id) DO NOTHING")
            .bind(org.0)
            .bind(GENESIS.as_slice())
            .execute(self.conn())
            .await?;
        let head = sqlx::query("SELECT seq, hash FROM audit_heads WHERE org_id = $1 FOR UPDATE")
            .bind(org.0)
            .fetch_one(self.conn())
            .await?;
        let prev_seq: i64 = head.get("seq");
        let prev_hash = hash_column(&head, "hash")?;
        let seq = prev_seq + 1;
        let at = truncate_to_micros(OffsetDateTime::now_utc());
        let hash = chain_hash(&prev_hash, &fields(org, seq, at, entry));
        sqlx::query(
            "INSERT INTO audit_events (org_id, seq, at, actor_kind, actor_id, actor_name, action, object_kind,
                 object_id, result, reason, details, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(org.0)
        .bind(seq)
        .bind(at)
        .bind(entry.actor_kind.as_str())
        .bind(entry.actor_id)
        .bind(&entry.actor_name)
        .bind(&entry.action)
        .bind(&entry.object_kind)
        .bind(&entry.object_id)
        .bind(entry.outcome.as_str())
        .bind(&entry.reason)
        .bind(&entry.details)
        .bind(prev_hash.as_slice())
        .bind(hash.as_slice())
        .execute(self.conn())
        .await?;
        sqlx::query("UPDATE audit_heads SET seq = $2, hash = $3 WHERE org_id = $1")
            .bind(org.0)
            .bind(seq)
            .bind(hash.as_slice())
            .execute(self.conn())
            .await?;
        Ok(seq)
    }

    /// Records, newest first. The cursor is the last sequence number seen.
    pub async fn list_audit(
        &mut self,
        filter: &AuditFilter,
        after: Option<&Cursor>,
        limit: i64,
    ) -> Result<Page<AuditRecord>, StoreError> {
        let before: Option<i64> = match after {
            Some(cursor) => Some(cursor.0.parse().map_err(|_| StoreError::InvalidCursor)?),
            None => None,
        };
        let rows = sqlx::query(
            "SELECT * FROM audit_events WHERE org_id = $1 AND ($2::bigint IS NULL OR seq < $2)
               AND ($3::text IS NULL OR action = $3) AND ($4::uuid IS NULL OR actor_id = $4)
               AND ($5::text IS NULL OR result = $5)
             ORDER BY seq DESC LIMIT $6",
        )
        .bind(self.org.0)
        .bind(before)
        .bind(&filter.action)
        .bind(filter.actor_id)
        .bind(filter.outcome.map(Outcome::as_str))
        .bind(limit + 1)
        .fetch_all(self.conn())
        .await?;
        let records = rows.iter().map(record_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(paginate(records, limit, |record| record.seq.to_string()))
    }
}

impl Store {
    /// Appends one record in its own transaction, for events with no other change to commit
    /// alongside (logins, denials).
    pub async fn audit(&self, org: OrgId, entry: &AuditEntry) -> Result<i64, StoreError> {
        let mut tx = self.org_tx(org).await?;
        let seq = tx.audit(entry).await?;
        tx.commit().await?;
        Ok(seq)
    }

    /// Recomputes the organisation's chain from its first record, in pages, and compares it
    /// with the stored hashes and the chain head.
    pub async fn verify_audit(&self, org: OrgId) -> Result<AuditCheck, StoreError> {
        const BATCH: i64 = 1_000;
        let mut tx = self.org_tx(org).await?;
        let mut prev = GENESIS;
        let mut expected_seq = 1_i64;
        let mut checked = 0_u64;
        let bad = |seq: i64, problem: String, checked: u64| AuditCheck {
            checked,
            first_bad_seq: Some(seq),
            problem: Some(problem),
        };
        loop {
            let rows = sqlx::query("SELECT * FROM audit_events WHERE org_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3")
                .bind(org.0)
                .bind(expected_seq)
                .bind(BATCH)
                .fetch_all(tx.conn())
                .await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let record = record_from_row(row)?;
                if record.seq != expected_seq {
                    return Ok(bad(expected_seq, format!("record {expected_seq} is missing"), checked));
                }
                if record.prev_hash != prev {
                    return Ok(bad(record.seq, "previous-hash link does not match".into(), checked));
                }
                let entry = AuditEntry {
                    actor_kind: record.actor_kind,
                    actor_id: record.actor_id,
                    actor_name: record.actor_name.clone(),
                    action: record.action.clone(),
                    object_kind: record.object_kind.clone(),
                    object_id: record.object_id.clone(),
                    outcome: record.outcome,
                    reason: record.reason.clone(),
                    details: record.details.clone(),
                };
                let hash = chain_hash(&prev, &fields(org, record.seq, record.at, &entry));
                if hash != record.hash {
                    return Ok(bad(
                        record.seq,
                        "record content does not match its hash".into(),
                        checked,
                    ));
                }
                prev = hash;
                expected_seq += 1;
                checked += 1;
            }
        }
        let head = sqlx::query("SELECT seq, hash FROM audit_heads WHERE org_id = $1")
            .bind(org.0)
            .fetch_optional(tx.conn())
            .await?;
        if let Some(head) = head {
            let seq: i64 = head.get("seq");
            if seq != expected_seq - 1 || hash_column(&head, "hash")? != prev {
                return Ok(bad(
                    expected_seq,
                    format!("chain ends at record {} but its head says {seq}", expected_seq - 1),
                    checked,
                ));
            }
        }
        Ok(AuditCheck {
            checked,
            first_bad_seq: None,
            problem: None,
        })
    }
}

fn fields(org: OrgId, seq: i64, at: OffsetDateTime, entry: &AuditEntry) -> AuditFields<'_> {
    AuditFields {
        org,
        seq,
        at,
        actor_kind: entry.actor_kind,
        actor_id: entry.actor_id,
        actor_name: entry.actor_name.as_deref(),
        action: &entry.action,
        object_kind: &entry.object_kind,
        object_id: entry.object_id.as_deref(),
        outcome: entry.outcome,
        reason: entry.reason.as_deref(),
        details: &entry.details,
    }
}

fn hash_column(row: &PgRow, column: &str) -> Result<[u8; 32], StoreError> {
    let bytes: Vec<u8> = row.get(column);
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("audit {column} is not 32 bytes")))
}

fn record_from_row(row: &PgRow) -> Result<AuditRecord, StoreError> {
    let actor_kind: String = row.get("actor_kind");
    let outcome: String = row.get("result");
    Ok(AuditRecord {
        seq: row.get("seq"),
        at: row.get("at"),
        actor_kind: ActorKind::parse(&actor_kind)
            .ok_or_else(|| StoreError::Corrupt(format!("audit actor kind {actor_kind:?}")))?,
        actor_id: row.get("actor_id"),
        actor_name: row.get("actor_name"),
        action: row.get("action"),
        object_kind: row.get("object_kind"),
        object_id: row.get("object_id"),
        outcome: Outcome::parse(&outcome).ok_or_else(|| StoreError::Corrupt(format!("audit result {outcome:?}")))?,
        reason: row.get("reason"),
        details: row.get("details"),
        prev_hash: hash_column(row, "prev_hash")?,
        hash: hash_column(row, "hash")?,
    })
}
