//! Each organisation's policy document. Saving names the version it replaces, so of two
//! concurrent edits one wins and the other gets a conflict instead of silently overwriting.

use rdp_proxy_core::UserId;
use sqlx::Row;
use time::OffsetDateTime;

use crate::{OrgTx, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRecord {
    pub text: String,
    /// 0 while the organisation runs the default policy and has saved none.
    pub version: i64,
    pub updated_at: Option<OffsetDateTime>,
    pub updated_by: Option<UserId>,
    pub updated_by_name: Option<String>,
}

impl OrgTx {
    /// The saved policy, or `None` when the organisation uses the defaults.
    pub async fn policy(&mut self) -> Result<Option<PolicyRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT text, version, updated_at, updated_by, updated_by_name FROM policies WHERE org_id = $1",
        )
        .bind(self.org.0)
        .fetch_optional(self.conn())
        .await?;
        Ok(row.map(|row| PolicyRecord {
            text: row.get("text"),
            version: row.get("version"),
            updated_at: row.get("updated_at"),
            updated_by: row.get::<Option<uuid::Uuid>, _>("updated_by").map(UserId),
            updated_by_name: row.get("updated_by_name"),
        }))
    }

    /// Version of the saved policy, 0 for the defaults. Cheap enough to ask on every request.
    pub async fn policy_version(&mut self) -> Result<i64, StoreError> {
        let version: Option<i64> = sqlx::query_scalar("SELECT version FROM policies WHERE org_id = $1")
            .bind(self.org.0)
            .fetch_optional(self.conn())
            .await?;
        Ok(version.unwrap_or(0))
    }

    /// Replaces the policy if it is still at `expected_version`; otherwise `Conflict`.
    pub async fn save_policy(
        &mut self,
        text: &str,
        expected_version: i64,
        by: Option<(UserId, &str)>,
    ) -> Result<PolicyRecord, StoreError> {
        let (by_id, by_name) = (by.map(|(id, _)| id.0), by.map(|(_, name)| name));
        let saved = if expected_version == 0 {
            sqlx::query(
                "INSERT INTO policies (org_id, text, version, updated_by, updated_by_name) VALUES ($1, $2, 1, $3, $4)
                 ON CONFLICT (org_id) DO NOTHING",
            )
            .bind(self.org.0)
            .bind(text)
            .bind(by_id)
            .bind(by_name)
            .execute(self.conn())
            .await?
        } else {
            sqlx::query(
                "UPDATE policies SET text = $2, version = version + 1, updated_at = now(), updated_by = $3,
                    updated_by_name = $4
                 WHERE org_id = $1 AND version = $5",
            )
            .bind(self.org.0)
            .bind(text)
            .bind(by_id)
            .bind(by_name)
            .bind(expected_version)
            .execute(self.conn())
            .await?
        };
        if saved.rows_affected() == 0 {
            let current = self.policy_version().await?;
            return Err(StoreError::Conflict(format!(
                "the policy changed meanwhile: you edited version {expected_version}, the current one is \
                 {current}; reload it and apply your change again"
            )));
        }
        self.policy().await?.ok_or(StoreError::NotFound { what: "policy" })
    }
}
