//! RDP targets (resources) of an organisation.

use rdp_proxy_core::{OrgId, TargetId};
use sqlx::Row;

use crate::{Store, StoreError};

/// A target as users may see it: no credentials.
#[derive(Debug, Clone)]
pub struct TargetRecord {
    pub id: TargetId,
    pub org: OrgId,
    pub name: String,
    pub host: String,
    pub port: u16,
    /// `auto`, `tls` or `nla`.
    pub security: String,
}

/// Credentials a worker needs to connect. `Debug` omits the password.
#[derive(Clone)]
pub struct TargetSecret {
    pub username: String,
    pub password: String,
    pub domain: Option<String>,
    pub cert_sha256: Option<Vec<u8>>,
}

impl std::fmt::Debug for TargetSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetSecret")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct NewTarget {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub security: String,
    pub secret: TargetSecret,
}

const TARGET_COLUMNS: &str = "id, org_id, name, host, port, security";

impl Store {
    /// Creates the target, or updates the one of that name in the organisation; returns its id.
    pub async fn upsert_target(&self, org: OrgId, target: &NewTarget) -> Result<TargetId, StoreError> {
        let id: uuid::Uuid = sqlx::query_scalar(
            "INSERT INTO targets (id, org_id, name, host, port, security, username, password, domain, cert_sha256)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (org_id, name) DO UPDATE SET host = EXCLUDED.host, port = EXCLUDED.port,
               security = EXCLUDED.security, username = EXCLUDED.username, password = EXCLUDED.password,
               domain = EXCLUDED.domain, cert_sha256 = EXCLUDED.cert_sha256
             RETURNING id",
        )
        .bind(uuid::Uuid::new_v4())
        .bind(org.0)
        .bind(&target.name)
        .bind(&target.host)
        .bind(i32::from(target.port))
        .bind(&target.security)
        .bind(&target.secret.username)
        .bind(&target.secret.password)
        .bind(&target.secret.domain)
        .bind(&target.secret.cert_sha256)
        .fetch_one(&self.pool)
        .await?;
        Ok(TargetId(id))
    }

    pub async fn list_targets(&self, org: OrgId) -> Result<Vec<TargetRecord>, StoreError> {
        let sql = format!("SELECT {TARGET_COLUMNS} FROM targets WHERE org_id = $1 ORDER BY name");
        let rows = sqlx::query(&sql).bind(org.0).fetch_all(&self.pool).await?;
        rows.into_iter().map(target_from_row).collect()
    }

    pub async fn get_target(&self, org: OrgId, id: TargetId) -> Result<TargetRecord, StoreError> {
        let sql = format!("SELECT {TARGET_COLUMNS} FROM targets WHERE org_id = $1 AND id = $2");
        let row = sqlx::query(&sql)
            .bind(org.0)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        row.map(target_from_row)
            .transpose()?
            .ok_or(StoreError::NotFound { what: "target" })
    }

    /// Loads the credentials of a target; only the session dispatch path calls this.
    pub async fn target_secret(&self, org: OrgId, id: TargetId) -> Result<TargetSecret, StoreError> {
        let row =
            sqlx::query("SELECT username, password, domain, cert_sha256 FROM targets WHERE org_id = $1 AND id = $2")
                .bind(org.0)
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await?
                .ok_or(StoreError::NotFound { what: "target" })?;
        Ok(TargetSecret {
            username: row.get("username"),
            password: row.get("password"),
            domain: row.get("domain"),
            cert_sha256: row.get("cert_sha256"),
        })
    }
}

fn target_from_row(row: sqlx::postgres::PgRow) -> Result<TargetRecord, StoreError> {
    let port: i32 = row.get("port");
    Ok(TargetRecord {
        id: TargetId(row.get("id")),
        org: OrgId(row.get("org_id")),
        name: row.get("name"),
        host: row.get("host"),
        port: u16::try_from(port).map_err(|_| StoreError::Corrupt(format!("target port {port}")))?,
        security: row.get("security"),
    })
}
