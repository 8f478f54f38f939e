//! Credentials targets log in with, and each organisation's wrapped data key. The store keeps
//! only sealed passwords; sealing and opening happen in the control plane, which holds the
//! master key.

use sqlx::Row;
use sqlx::postgres::PgRow;
use time::OffsetDateTime;

use crate::page::{Cursor, Page, paginate};
use crate::{OrgTx, StoreError};

/// A credential as admins see it: no password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    pub id: uuid::Uuid,
    pub name: String,
    pub username: String,
    pub domain: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// The fields the control plane needs to open a credential. `Debug` omits the password fields.
#[derive(Clone)]
pub struct CredentialSecret {
    pub id: uuid::Uuid,
    pub username: String,
    pub domain: Option<String>,
    pub sealed: Option<Vec<u8>>,
    /// A password stored before encryption existed, until the control plane seals it.
    pub legacy_password: Option<String>,
}

impl std::fmt::Debug for CredentialSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialSecret")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

/// A credential to create; `sealed` is the password already encrypted for this record id.
#[derive(Clone)]
pub struct NewCredential {
    pub id: uuid::Uuid,
    pub name: String,
    pub username: String,
    pub domain: Option<String>,
    pub sealed: Vec<u8>,
}

/// The organisation's data key, wrapped by the master key `master_key_id`.
#[derive(Debug, Clone)]
pub struct OrgKey {
    pub master_key_id: String,
    pub wrapped: Vec<u8>,
}

const CREDENTIAL_COLUMNS: &str = "id, name, username, domain, created_at, updated_at";

impl OrgTx {
    pub async fn org_key(&mut self) -> Result<Option<OrgKey>, StoreError> {
        let row = sqlx::query("SELECT master_key_id, wrapped FROM org_keys WHERE org_id = $1")
            .bind(self.org.0)
            .fetch_optional(self.conn())
            .await?;
        Ok(row.map(|row| OrgKey {
            master_key_id: row.get("master_key_id"),
            wrapped: row.get("wrapped"),
        }))
    }

    /// Stores the organisation's wrapped data key unless another process stored one first;
    /// returns the key that is stored now.
    pub async fn insert_org_key(&mut self, key: &OrgKey) -> Result<OrgKey, StoreError> {
        sqlx::query(
            "INSERT INTO org_keys (org_id, master_key_id, wrapped) VALUES ($1, $2, $3) ON CONFLICT (org_id) DO NOTHING",
        )
        .bind(self.org.0)
        .bind(&key.master_key_id)
        .bind(&key.wrapped)
        .execute(self.conn())
        .await?;
        self.org_key().await?.ok_or(StoreError::NotFound {
            what: "organisation key",
        })
    }

    pub async fn insert_credential(&mut self, new: &NewCredential) -> Result<CredentialRecord, StoreError> {
        let row = sqlx::query(&format!(
            "INSERT INTO credentials (id, org_id, name, username, domain, sealed) VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING {CREDENTIAL_COLUMNS}"
        ))
        .bind(new.id)
        .bind(self.org.0)
        .bind(&new.name)
        .bind(&new.username)
        .bind(&new.domain)
        .bind(&new.sealed)
        .fetch_one(self.conn())
        .await
        .map_err(|error| StoreError::unique_as(error, "credential"))?;
        Ok(credential_from_row(&row))
    }

    /// Changes the given fields; `domain: Some(None)` clears it.
    pub async fn update_credential(
        &mut self,
        id: uuid::Uuid,
        name: Option<&str>,
        username: Option<&str>,
        domain: Option<Option<&str>>,
        sealed: Option<&[u8]>,
    ) -> Result<CredentialRecord, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE credentials SET name = COALESCE($3, name), username = COALESCE($4, username),
                domain = CASE WHEN $5 THEN $6 ELSE domain END,
                sealed = COALESCE($7, sealed),
                legacy_password = CASE WHEN $7 IS NULL THEN legacy_password ELSE NULL END,
                updated_at = now()
             WHERE org_id = $1 AND id = $2 RETURNING {CREDENTIAL_COLUMNS}"
        ))
        .bind(self.org.0)
        .bind(id)
        .bind(name)
        .bind(username)
        .bind(domain.is_some())
        .bind(domain.flatten())
        .bind(sealed)
        .fetch_optional(self.conn())
        .await
        .map_err(|error| StoreError::unique_as(error, "credential"))?
        .ok_or(StoreError::NotFound { what: "credential" })?;
        Ok(credential_from_row(&row))
    }

    /// Deletes a credential no live target uses.
    pub async fn delete_credential(&mut self, id: uuid::Uuid) -> Result<(), StoreError> {
        let used: Option<String> = sqlx::query_scalar(
            "SELECT name FROM targets WHERE org_id = $1 AND credential_id = $2 AND deleted_at IS NULL LIMIT 1",
        )
        .bind(self.org.0)
        .bind(id)
        .fetch_optional(self.conn())
        .await?;
        if let Some(target) = used {
            return Err(StoreError::Conflict(format!(
                "target {target:?} uses this credential; point it at another one first"
            )));
        }
        let result = sqlx::query("DELETE FROM credentials WHERE org_id = $1 AND id = $2")
            .bind(self.org.0)
            .bind(id)
            .execute(self.conn())
            .await;
        match result {
            Ok(done) if done.rows_affected() == 0 => Err(StoreError::NotFound { what: "credential" }),
            Ok(_) => Ok(()),
            // Deleted targets still reference it for their sessions' history.
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("23503") => Err(StoreError::Conflict(
                "a deleted target's session history still refers to this credential".into(),
            )),
            Err(error) => Err(error.into()),
        }
    }

    pub async fn get_credential(&mut self, id: uuid::Uuid) -> Result<CredentialRecord, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE org_id = $1 AND id = $2"
        ))
        .bind(self.org.0)
        .bind(id)
        .fetch_optional(self.conn())
        .await?
        .ok_or(StoreError::NotFound { what: "credential" })?;
        Ok(credential_from_row(&row))
    }

    pub async fn list_credentials(
        &mut self,
        after: Option<&Cursor>,
        limit: i64,
    ) -> Result<Page<CredentialRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE org_id = $1 AND ($2::text IS NULL OR name > $2)
             ORDER BY name LIMIT $3"
        ))
        .bind(self.org.0)
        .bind(after.map(|cursor| cursor.0.clone()))
        .bind(limit + 1)
        .fetch_all(self.conn())
        .await?;
        let items = rows.iter().map(credential_from_row).collect();
        Ok(paginate(items, limit, |credential| credential.name.clone()))
    }

    pub async fn credential_secret(&mut self, id: uuid::Uuid) -> Result<CredentialSecret, StoreError> {
        let row = sqlx::query(
            "SELECT id, username, domain, sealed, legacy_password FROM credentials WHERE org_id = $1 AND id = $2",
        )
        .bind(self.org.0)
        .bind(id)
        .fetch_optional(self.conn())
        .await?
        .ok_or(StoreError::NotFound { what: "credential" })?;
        Ok(secret_from_row(&row))
    }

    /// Credentials whose password is still stored in clear.
    pub async fn legacy_credentials(&mut self) -> Result<Vec<CredentialSecret>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, username, domain, sealed, legacy_password FROM credentials
             WHERE org_id = $1 AND legacy_password IS NOT NULL FOR UPDATE",
        )
        .bind(self.org.0)
        .fetch_all(self.conn())
        .await?;
        Ok(rows.iter().map(secret_from_row).collect())
    }
}

fn credential_from_row(row: &PgRow) -> CredentialRecord {
    CredentialRecord {
        id: row.get("id"),
        name: row.get("name"),
        username: row.get("username"),
        domain: row.get("domain"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }
}

fn secret_from_row(row: &PgRow) -> CredentialSecret {
    CredentialSecret {
        id: row.get("id"),
        username: row.get("username"),
        domain: row.get("domain"),
        sealed: row.get("sealed"),
        legacy_password: row.get("legacy_password"),
    }
}
