//! Organisations, users and their memberships.

use rdp_proxy_core::access::Role;
use rdp_proxy_core::{OrgId, UserId};
use sqlx::Row;

use crate::{Store, StoreError};

#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: UserId,
    pub name: String,
    /// Argon2id PHC string; never leaves the control plane.
    pub password_hash: String,
    pub disabled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub org: OrgId,
    pub user: UserId,
    pub role: Role,
}

impl Store {
    /// Returns the organisation called `name`, creating it if needed.
    pub async fn ensure_org(&self, name: &str) -> Result<OrgId, StoreError> {
        let id: uuid::Uuid = sqlx::query_scalar(
            "INSERT INTO orgs (id, name) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
             RETURNING id",
        )
        .bind(uuid::Uuid::new_v4())
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        Ok(OrgId(id))
    }

    /// Creates a user or, when the name exists, replaces its password hash; returns its id.
    pub async fn upsert_user(&self, name: &str, password_hash: &str) -> Result<UserId, StoreError> {
        let id: uuid::Uuid = sqlx::query_scalar(
            "INSERT INTO users (id, name, password_hash) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET password_hash = EXCLUDED.password_hash
             RETURNING id",
        )
        .bind(uuid::Uuid::new_v4())
        .bind(name)
        .bind(password_hash)
        .fetch_one(&self.pool)
        .await?;
        Ok(UserId(id))
    }

    pub async fn find_user_by_name(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, password_hash, disabled_at IS NOT NULL AS disabled FROM users WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| UserRecord {
            id: UserId(row.get("id")),
            name: row.get("name"),
            password_hash: row.get("password_hash"),
            disabled: row.get("disabled"),
        }))
    }

    /// Sets the user's role in the organisation, adding the membership if needed.
    pub async fn set_membership(&self, org: OrgId, user: UserId, role: Role) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, $3)
             ON CONFLICT (org_id, user_id) DO UPDATE SET role = EXCLUDED.role",
        )
        .bind(org.0)
        .bind(user.0)
        .bind(role.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Memberships of an enabled user, oldest first. A disabled user has none.
    pub async fn memberships(&self, user: UserId) -> Result<Vec<Membership>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.org_id, m.user_id, m.role FROM memberships m JOIN users u ON u.id = m.user_id
             WHERE m.user_id = $1 AND u.disabled_at IS NULL ORDER BY m.created_at, m.org_id",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(membership_from_row).collect()
    }

    /// The user's membership in one organisation, if the user is enabled and a member.
    pub async fn membership(&self, org: OrgId, user: UserId) -> Result<Option<Membership>, StoreError> {
        let row = sqlx::query(
            "SELECT m.org_id, m.user_id, m.role FROM memberships m JOIN users u ON u.id = m.user_id
             WHERE m.org_id = $1 AND m.user_id = $2 AND u.disabled_at IS NULL",
        )
        .bind(org.0)
        .bind(user.0)
        .fetch_optional(&self.pool)
        .await?;
        row.map(membership_from_row).transpose()
    }

    pub async fn user_name(&self, user: UserId) -> Result<String, StoreError> {
        sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
            .bind(user.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound { what: "user" })
    }
}

fn membership_from_row(row: sqlx::postgres::PgRow) -> Result<Membership, StoreError> {
    let role: String = row.get("role");
    let role = Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("unknown role {role:?}")))?;
    Ok(Membership {
        org: OrgId(row.get("org_id")),
        user: UserId(row.get("user_id")),
        role,
    })
}
