//! RDP targets (resources) of an organisation. A deleted target keeps its row, marked deleted,
//! so the history of sessions opened on it stays readable.

use std::collections::BTreeMap;

use rdp_proxy_core::{OrgId, TargetId};
use sqlx::Row;
use sqlx::postgres::PgRow;
use time::OffsetDateTime;

use crate::page::{Cursor, Page, paginate};
use crate::{OrgTx, Store, StoreError};

/// A target as users may see it: credentials are referenced, never included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRecord {
    pub id: TargetId,
    pub org: OrgId,
    pub name: String,
    pub host: String,
    pub port: u16,
    /// `auto`, `tls` or `nla`.
    pub security: String,
    pub labels: BTreeMap<String, String>,
    pub max_width: Option<u16>,
    pub max_height: Option<u16>,
    pub credential_id: uuid::Uuid,
    pub credential_name: String,
    /// SHA-256 of the certificate the target must present, when pinned.
    pub cert_sha256: Option<Vec<u8>>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct NewTarget {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub security: String,
    pub labels: BTreeMap<String, String>,
    pub max_width: Option<u16>,
    pub max_height: Option<u16>,
    pub credential_id: uuid::Uuid,
    pub cert_sha256: Option<Vec<u8>>,
}

/// Fields to change; `None` keeps the stored value, `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct TargetUpdate {
    pub name: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub security: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub max_width: Option<Option<u16>>,
    pub max_height: Option<Option<u16>>,
    pub credential_id: Option<uuid::Uuid>,
    pub cert_sha256: Option<Option<Vec<u8>>>,
}

#[derive(Debug, Clone, Default)]
pub struct TargetFilter {
    /// Only targets carrying every one of these labels.
    pub labels: BTreeMap<String, String>,
}

const TARGET_SELECT: &str = "SELECT t.id, t.org_id, t.name, t.host, t.port, t.security, t.labels, t.max_width,
        t.max_height, t.credential_id, c.name AS credential_name, t.cert_sha256, t.created_at, t.updated_at
    FROM targets t JOIN credentials c ON c.org_id = t.org_id AND c.id = t.credential_id";

impl OrgTx {
    pub async fn insert_target(&mut self, new: &NewTarget) -> Result<TargetRecord, StoreError> {
        let id = TargetId(uuid::Uuid::new_v4());
        sqlx::query(
            "INSERT INTO targets (id, org_id, name, host, port, security, labels, max_width, max_height,
                 credential_id, cert_sha256)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(id.0)
        .bind(self.org.0)
        .bind(&new.name)
        .bind(&new.host)
        .bind(i32::from(new.port))
        .bind(&new.security)
        .bind(labels_json(&new.labels))
        .bind(new.max_width.map(i32::from))
        .bind(new.max_height.map(i32::from))
        .bind(new.credential_id)
        .bind(&new.cert_sha256)
        .execute(self.conn())
        .await
        .map_err(|error| reference_error(error, "target"))?;
        self.get_target(id).await
    }

    pub async fn update_target(&mut self, id: TargetId, update: &TargetUpdate) -> Result<TargetRecord, StoreError> {
        let done = sqlx::query(
            "UPDATE targets SET name = COALESCE($3, name), host = COALESCE($4, host), port = COALESCE($5, port),
                security = COALESCE($6, security), labels = COALESCE($7, labels),
                max_width = CASE WHEN $8 THEN $9 ELSE max_width END,
                max_height = CASE WHEN $10 THEN $11 ELSE max_height END,
                credential_id = COALESCE($12, credential_id),
                cert_sha256 = CASE WHEN $13 THEN $14 ELSE cert_sha256 END,
                updated_at = now()
             WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL",
        )
        .bind(self.org.0)
        .bind(id.0)
        .bind(&update.name)
        .bind(&update.host)
        .bind(update.port.map(i32::from))
        .bind(&update.security)
        .bind(update.labels.as_ref().map(labels_json))
        .bind(update.max_width.is_some())
        .bind(update.max_width.flatten().map(i32::from))
        .bind(update.max_height.is_some())
        .bind(update.max_height.flatten().map(i32::from))
        .bind(update.credential_id)
        .bind(update.cert_sha256.is_some())
        .bind(update.cert_sha256.clone().flatten())
        .execute(self.conn())
        .await
        .map_err(|error| reference_error(error, "target"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "target" });
        }
        self.get_target(id).await
    }

    /// Marks the target deleted; its sessions keep running and keep their history.
    pub async fn delete_target(&mut self, id: TargetId) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE targets SET deleted_at = now(), updated_at = now()
             WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL",
        )
        .bind(self.org.0)
        .bind(id.0)
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "target" });
        }
        Ok(())
    }

    /// Loads a live (not deleted) target.
    pub async fn get_target(&mut self, id: TargetId) -> Result<TargetRecord, StoreError> {
        let row = sqlx::query(&format!(
            "{TARGET_SELECT} WHERE t.org_id = $1 AND t.id = $2 AND t.deleted_at IS NULL"
        ))
        .bind(self.org.0)
        .bind(id.0)
        .fetch_optional(self.conn())
        .await?
        .ok_or(StoreError::NotFound { what: "target" })?;
        target_from_row(&row)
    }

    /// Live targets ordered by name; the cursor is the last name seen.
    pub async fn list_targets(
        &mut self,
        filter: &TargetFilter,
        after: Option<&Cursor>,
        limit: i64,
    ) -> Result<Page<TargetRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "{TARGET_SELECT} WHERE t.org_id = $1 AND t.deleted_at IS NULL AND t.labels @> $2
               AND ($3::text IS NULL OR t.name > $3)
             ORDER BY t.name LIMIT $4"
        ))
        .bind(self.org.0)
        .bind(labels_json(&filter.labels))
        .bind(after.map(|cursor| cursor.0.clone()))
        .bind(limit + 1)
        .fetch_all(self.conn())
        .await?;
        let targets = rows.iter().map(target_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(paginate(targets, limit, |target| target.name.clone()))
    }

    /// Lists every live target, for callers that filter by policy afterwards.
    pub async fn all_targets(&mut self, filter: &TargetFilter) -> Result<Vec<TargetRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "{TARGET_SELECT} WHERE t.org_id = $1 AND t.deleted_at IS NULL AND t.labels @> $2 ORDER BY t.name"
        ))
        .bind(self.org.0)
        .bind(labels_json(&filter.labels))
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(target_from_row).collect()
    }

    /// Loads a target whether deleted or not, for session history.
    pub async fn target_any_state(&mut self, id: TargetId) -> Result<TargetRecord, StoreError> {
        let row = sqlx::query(&format!("{TARGET_SELECT} WHERE t.org_id = $1 AND t.id = $2"))
            .bind(self.org.0)
            .bind(id.0)
            .fetch_optional(self.conn())
            .await?
            .ok_or(StoreError::NotFound { what: "target" })?;
        target_from_row(&row)
    }
}

impl Store {
    pub async fn get_target(&self, org: OrgId, id: TargetId) -> Result<TargetRecord, StoreError> {
        self.org_tx(org).await?.get_target(id).await
    }

    /// Creates the target, or updates the live one of that name; returns its id. For seeding.
    pub async fn upsert_target(&self, org: OrgId, target: &NewTarget) -> Result<TargetId, StoreError> {
        let mut tx = self.org_tx(org).await?;
        let existing: Option<uuid::Uuid> = sqlx::query_scalar(
            "SELECT id FROM targets WHERE org_id = $1 AND name = $2 AND deleted_at IS NULL FOR UPDATE",
        )
        .bind(org.0)
        .bind(&target.name)
        .fetch_optional(tx.conn())
        .await?;
        let record = match existing {
            Some(id) => {
                let update = TargetUpdate {
                    host: Some(target.host.clone()),
                    port: Some(target.port),
                    security: Some(target.security.clone()),
                    labels: Some(target.labels.clone()),
                    max_width: Some(target.max_width),
                    max_height: Some(target.max_height),
                    credential_id: Some(target.credential_id),
                    cert_sha256: Some(target.cert_sha256.clone()),
                    name: None,
                };
                tx.update_target(TargetId(id), &update).await?
            }
            None => tx.insert_target(target).await?,
        };
        tx.commit().await?;
        Ok(record.id)
    }
}

fn labels_json(labels: &BTreeMap<String, String>) -> serde_json::Value {
    serde_json::Value::Object(
        labels
            .iter()
            .map(|(key, value)| (key.clone(), serde_json::Value::String(value.clone())))
            .collect(),
    )
}

/// Maps a missing credential (foreign key) to "credential not found" and a taken name to
/// "already exists".
fn reference_error(error: sqlx::Error, what: &'static str) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23503") => {
            StoreError::NotFound { what: "credential" }
        }
        _ => StoreError::unique_as(error, what),
    }
}

fn target_from_row(row: &PgRow) -> Result<TargetRecord, StoreError> {
    let port: i32 = row.get("port");
    let dimension = |column: &str| -> Result<Option<u16>, StoreError> {
        row.get::<Option<i32>, _>(column)
            .map(|value| u16::try_from(value).map_err(|_| StoreError::Corrupt(format!("target {column} {value}"))))
            .transpose()
    };
    let labels: serde_json::Value = row.get("labels");
    let labels = labels
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    Ok(TargetRecord {
        id: TargetId(row.get("id")),
        org: OrgId(row.get("org_id")),
        name: row.get("name"),
        host: row.get("host"),
        port: u16::try_from(port).map_err(|_| StoreError::Corrupt(format!("target port {port}")))?,
        security: row.get("security"),
        labels,
        max_width: dimension("max_width")?,
        max_height: dimension("max_height")?,
        credential_id: row.get("credential_id"),
        credential_name: row.get("credential_name"),
        cert_sha256: row.get("cert_sha256"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    })
}
