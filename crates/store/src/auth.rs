//! Logins with rotating refresh tokens, and API keys. Only SHA-256 hashes of refresh tokens and
//! key secrets are stored.

use rdp_proxy_core::UserId;
use rdp_proxy_core::access::Role;
use sqlx::Row;
use sqlx::postgres::PgRow;
use time::OffsetDateTime;

use crate::accounts::parse_role;
use crate::page::{Cursor, Page, paginate};
use crate::{OrgTx, StoreError};

/// Whether a login's access tokens are still good, checked on every request together with
/// the membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginState {
    Active {
        role: Role,
        user_name: String,
    },
    /// Logged out, its refresh token was replayed, or an admin revoked it.
    Revoked {
        reason: String,
    },
    /// The user is disabled or no longer a member.
    NoMembership,
}

/// The outcome of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The token was fresh; it is now spent and the caller issues the next one.
    Rotated {
        login: uuid::Uuid,
        user: UserId,
        login_expires_at: OffsetDateTime,
    },
    /// The token had been spent already: someone replayed it, so the whole login is revoked.
    Replayed {
        login: uuid::Uuid,
        user: UserId,
    },
    Expired,
    Revoked,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: uuid::Uuid,
    pub name: String,
    pub role: Role,
    pub created_by: Option<UserId>,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    pub last_used_at: Option<OffsetDateTime>,
}

pub struct NewApiKey {
    pub id: uuid::Uuid,
    pub name: String,
    pub role: Role,
    pub secret_hash: [u8; 32],
    pub created_by: Option<UserId>,
    pub expires_at: Option<OffsetDateTime>,
}

const API_KEY_COLUMNS: &str = "id, name, role, created_by, created_at, expires_at, revoked_at, last_used_at";

impl OrgTx {
    pub async fn create_login(&mut self, user: UserId, expires_at: OffsetDateTime) -> Result<uuid::Uuid, StoreError> {
        let id = uuid::Uuid::new_v4();
        sqlx::query("INSERT INTO logins (id, org_id, user_id, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(self.org.0)
            .bind(user.0)
            .bind(expires_at)
            .execute(self.conn())
            .await?;
        Ok(id)
    }

    pub async fn insert_refresh_token(
        &mut self,
        login: uuid::Uuid,
        hash: &[u8; 32],
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO refresh_tokens (token_hash, org_id, login_id, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(hash.as_slice())
            .bind(self.org.0)
            .bind(login)
            .bind(expires_at)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Spends a refresh token. A token presented twice revokes its login.
    pub async fn use_refresh_token(&mut self, hash: &[u8; 32]) -> Result<RefreshOutcome, StoreError> {
        let row = sqlx::query(
            "SELECT r.login_id, r.used_at IS NOT NULL AS used, r.expires_at < now() AS expired,
                    l.user_id, l.revoked_at IS NOT NULL AS revoked, l.expires_at AS login_expires_at
             FROM refresh_tokens r JOIN logins l ON l.id = r.login_id
             WHERE r.org_id = $1 AND r.token_hash = $2 FOR UPDATE OF r, l",
        )
        .bind(self.org.0)
        .bind(hash.as_slice())
        .fetch_optional(self.conn())
        .await?;
        let Some(row) = row else {
            return Ok(RefreshOutcome::Unknown);
        };
        let login: uuid::Uuid = row.get("login_id");
        let user = UserId(row.get("user_id"));
        if row.get::<bool, _>("revoked") {
            return Ok(RefreshOutcome::Revoked);
        }
        if row.get::<bool, _>("used") {
            self.revoke_login(login, "a spent refresh token was presented again")
                .await?;
            return Ok(RefreshOutcome::Replayed { login, user });
        }
        if row.get::<bool, _>("expired") {
            return Ok(RefreshOutcome::Expired);
        }
        sqlx::query("UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1")
            .bind(hash.as_slice())
            .execute(self.conn())
            .await?;
        Ok(RefreshOutcome::Rotated {
            login,
            user,
            login_expires_at: row.get("login_expires_at"),
        })
    }

    pub async fn revoke_login(&mut self, login: uuid::Uuid, reason: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE logins SET revoked_at = COALESCE(revoked_at, now()), revoked_reason = COALESCE(revoked_reason, $3)
             WHERE org_id = $1 AND id = $2",
        )
        .bind(self.org.0)
        .bind(login)
        .bind(reason)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Revokes every login of the user in this organisation; returns how many were open.
    pub async fn revoke_user_logins(&mut self, user: UserId, reason: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE logins SET revoked_at = now(), revoked_reason = $3
             WHERE org_id = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .bind(self.org.0)
        .bind(user.0)
        .bind(reason)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected())
    }

    /// Revokes the user's logins in this organisation except `keep`; returns how many ended.
    pub async fn revoke_user_logins_except(
        &mut self,
        user: UserId,
        keep: Option<uuid::Uuid>,
        reason: &str,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE logins SET revoked_at = now(), revoked_reason = $4
             WHERE org_id = $1 AND user_id = $2 AND revoked_at IS NULL AND ($3::uuid IS NULL OR id <> $3)",
        )
        .bind(self.org.0)
        .bind(user.0)
        .bind(keep)
        .bind(reason)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected())
    }

    /// Reads the state of a login and its user's membership in one query.
    pub async fn login_state(&mut self, login: uuid::Uuid, user: UserId) -> Result<LoginState, StoreError> {
        let row = sqlx::query(
            "SELECT l.revoked_at IS NOT NULL OR l.expires_at < now() AS revoked, l.revoked_reason,
                    m.role, m.disabled_at IS NULL AND u.disabled_at IS NULL AND m.accepted_at IS NOT NULL AS enabled,
                    u.name
             FROM logins l
             JOIN users u ON u.id = l.user_id
             LEFT JOIN memberships m ON m.org_id = l.org_id AND m.user_id = l.user_id
             WHERE l.org_id = $1 AND l.id = $2 AND l.user_id = $3",
        )
        .bind(self.org.0)
        .bind(login)
        .bind(user.0)
        .fetch_optional(self.conn())
        .await?;
        let Some(row) = row else {
            return Ok(LoginState::Revoked {
                reason: "this login is not known".into(),
            });
        };
        if row.get::<bool, _>("revoked") {
            let reason: Option<String> = row.get("revoked_reason");
            return Ok(LoginState::Revoked {
                reason: reason.unwrap_or_else(|| "the login expired".into()),
            });
        }
        let role: Option<String> = row.get("role");
        match role {
            Some(role) if row.get::<Option<bool>, _>("enabled") == Some(true) => Ok(LoginState::Active {
                role: parse_role(&role)?,
                user_name: row.get("name"),
            }),
            _ => Ok(LoginState::NoMembership),
        }
    }

    pub async fn insert_api_key(&mut self, new: &NewApiKey) -> Result<ApiKeyRecord, StoreError> {
        let row = sqlx::query(&format!(
            "INSERT INTO api_keys (id, org_id, name, role, secret_hash, created_by, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {API_KEY_COLUMNS}"
        ))
        .bind(new.id)
        .bind(self.org.0)
        .bind(&new.name)
        .bind(new.role.as_str())
        .bind(new.secret_hash.as_slice())
        .bind(new.created_by.map(|user| user.0))
        .bind(new.expires_at)
        .fetch_one(self.conn())
        .await
        .map_err(|error| StoreError::unique_as(error, "API key"))?;
        api_key_from_row(&row)
    }

    pub async fn list_api_keys(
        &mut self,
        after: Option<&Cursor>,
        limit: i64,
    ) -> Result<Page<ApiKeyRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE org_id = $1 AND ($2::text IS NULL OR id::text > $2)
             ORDER BY id LIMIT $3"
        ))
        .bind(self.org.0)
        .bind(after.map(|cursor| cursor.0.clone()))
        .bind(limit + 1)
        .fetch_all(self.conn())
        .await?;
        let keys = rows.iter().map(api_key_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(paginate(keys, limit, |key| key.id.to_string()))
    }

    pub async fn revoke_api_key(&mut self, id: uuid::Uuid) -> Result<ApiKeyRecord, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE org_id = $1 AND id = $2
             RETURNING {API_KEY_COLUMNS}"
        ))
        .bind(self.org.0)
        .bind(id)
        .fetch_optional(self.conn())
        .await?
        .ok_or(StoreError::NotFound { what: "API key" })?;
        api_key_from_row(&row)
    }

    /// Revokes every live key `user` created in this organisation; returns how many.
    pub async fn revoke_api_keys_created_by(&mut self, user: UserId) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = now() WHERE org_id = $1 AND created_by = $2 AND revoked_at IS NULL",
        )
        .bind(self.org.0)
        .bind(user.0)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected())
    }

    /// The key with this id if its secret hash matches, it is not revoked and not expired;
    /// records the use.
    pub async fn authenticate_api_key(
        &mut self,
        id: uuid::Uuid,
        secret_hash: &[u8; 32],
    ) -> Result<Result<ApiKeyRecord, &'static str>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {API_KEY_COLUMNS}, secret_hash FROM api_keys WHERE org_id = $1 AND id = $2"
        ))
        .bind(self.org.0)
        .bind(id)
        .fetch_optional(self.conn())
        .await?;
        let Some(row) = row else {
            return Ok(Err("API key is not known"));
        };
        let stored: Vec<u8> = row.get("secret_hash");
        if !constant_time_eq(&stored, secret_hash) {
            return Ok(Err("API key is not known"));
        }
        let key = api_key_from_row(&row)?;
        if key.revoked_at.is_some() {
            return Ok(Err("API key was revoked"));
        }
        if key.expires_at.is_some_and(|at| at <= OffsetDateTime::now_utc()) {
            return Ok(Err("API key expired"));
        }
        // One write per minute at most, so busy automation does not rewrite the row per call.
        sqlx::query(
            "UPDATE api_keys SET last_used_at = now()
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
        )
        .bind(id)
        .execute(self.conn())
        .await?;
        Ok(Ok(key))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn api_key_from_row(row: &PgRow) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        id: row.get("id"),
        name: row.get("name"),
        role: parse_role(&row.get::<String, _>("role"))?,
        created_by: row.get::<Option<uuid::Uuid>, _>("created_by").map(UserId),
        created_at: row.get("created_at"),
        expires_at: row.get("expires_at"),
        revoked_at: row.get("revoked_at"),
        last_used_at: row.get("last_used_at"),
    })
}
