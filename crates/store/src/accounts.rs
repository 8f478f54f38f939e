//! Organisations, users and memberships. Users are platform-wide identities; a membership gives
//! one of them a role in one organisation.

use rdp_proxy_core::access::Role;
use rdp_proxy_core::{OrgId, UserId};
use sqlx::Row;
use sqlx::postgres::PgRow;
use time::OffsetDateTime;

use crate::page::{Cursor, Page, paginate};
use crate::{OrgTx, Store, StoreError};

#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: UserId,
    pub name: String,
    /// Argon2id PHC string; never leaves the control plane.
    pub password_hash: String,
    pub disabled: bool,
}

/// An enabled membership: the user may act in `org` with `role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub org: OrgId,
    pub user: UserId,
    pub role: Role,
}

/// A membership as the organisation picker shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgMembership {
    pub org: OrgId,
    pub org_name: String,
    pub role: Role,
    pub disabled: bool,
    /// Invited and not accepted yet: the membership grants nothing until it is.
    pub pending: bool,
}

/// A member as the organisation's admins see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub user: UserId,
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    /// Invited and not accepted yet.
    pub pending: bool,
    pub created_at: OffsetDateTime,
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

    pub async fn org_exists(&self, org: OrgId) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM orgs WHERE id = $1)")
            .bind(org.0)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Returns the id of the organisation called `name`, or `NotFound`.
    pub async fn find_org(&self, name: &str) -> Result<OrgId, StoreError> {
        sqlx::query_scalar::<_, uuid::Uuid>("SELECT id FROM orgs WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(OrgId)
            .ok_or(StoreError::NotFound { what: "organisation" })
    }

    pub async fn org_name(&self, org: OrgId) -> Result<String, StoreError> {
        sqlx::query_scalar("SELECT name FROM orgs WHERE id = $1")
            .bind(org.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound { what: "organisation" })
    }

    /// Lists every organisation's id, for work that visits each in turn.
    pub async fn org_ids(&self) -> Result<Vec<OrgId>, StoreError> {
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM orgs ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        Ok(ids.into_iter().map(OrgId).collect())
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

    /// Creates a user; fails with `AlreadyExists` when the name is taken.
    pub async fn create_user(&self, name: &str, password_hash: &str) -> Result<UserId, StoreError> {
        let id = UserId(uuid::Uuid::new_v4());
        sqlx::query("INSERT INTO users (id, name, password_hash) VALUES ($1, $2, $3)")
            .bind(id.0)
            .bind(name)
            .bind(password_hash)
            .execute(&self.pool)
            .await
            .map_err(|error| StoreError::unique_as(error, "user"))?;
        Ok(id)
    }

    /// Replaces the user's password hash.
    pub async fn set_password_hash(&self, user: UserId, password_hash: &str) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(user.0)
            .bind(password_hash)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "user" });
        }
        Ok(())
    }

    pub async fn user_password_hash(&self, user: UserId) -> Result<String, StoreError> {
        sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
            .bind(user.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound { what: "user" })
    }

    pub async fn find_user_by_name(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, password_hash, disabled_at IS NOT NULL AS disabled FROM users WHERE lower(name) = lower($1)",
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
        let mut tx = self.org_tx(org).await?;
        sqlx::query(
            "INSERT INTO memberships (org_id, user_id, role, accepted_at) VALUES ($1, $2, $3, now())
             ON CONFLICT (org_id, user_id) DO UPDATE SET role = EXCLUDED.role,
                accepted_at = COALESCE(memberships.accepted_at, now())",
        )
        .bind(org.0)
        .bind(user.0)
        .bind(role.as_str())
        .execute(tx.conn())
        .await?;
        tx.commit().await
    }

    /// Lists every organisation the user belongs to, enabled or not, oldest membership first.
    pub async fn user_orgs(&self, user: UserId) -> Result<Vec<OrgMembership>, StoreError> {
        let rows = sqlx::query("SELECT org_id, org_name, role, disabled, pending FROM rdp_proxy_user_orgs($1)")
            .bind(user.0)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(OrgMembership {
                    org: OrgId(row.get("org_id")),
                    org_name: row.get("org_name"),
                    role: parse_role(&row.get::<String, _>("role"))?,
                    disabled: row.get("disabled"),
                    pending: row.get("pending"),
                })
            })
            .collect()
    }

    /// The user's membership in one organisation, if both user and membership are enabled.
    pub async fn membership(&self, org: OrgId, user: UserId) -> Result<Option<Membership>, StoreError> {
        let mut tx = self.org_tx(org).await?;
        tx.membership(user).await
    }

    pub async fn user_name(&self, user: UserId) -> Result<String, StoreError> {
        sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
            .bind(user.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound { what: "user" })
    }
}

impl OrgTx {
    /// Returns the user's enabled membership in this organisation.
    pub async fn membership(&mut self, user: UserId) -> Result<Option<Membership>, StoreError> {
        let row = sqlx::query(
            "SELECT m.role FROM memberships m JOIN users u ON u.id = m.user_id
             WHERE m.org_id = $1 AND m.user_id = $2 AND u.disabled_at IS NULL AND m.disabled_at IS NULL
               AND m.accepted_at IS NOT NULL",
        )
        .bind(self.org.0)
        .bind(user.0)
        .fetch_optional(self.conn())
        .await?;
        let org = self.org;
        row.map(|row| {
            Ok(Membership {
                org,
                user,
                role: parse_role(&row.get::<String, _>("role"))?,
            })
        })
        .transpose()
    }

    /// Members ordered by name; the cursor is the last name seen. `status` is `active`,
    /// `disabled` or `invited`.
    pub async fn list_members(
        &mut self,
        role: Option<Role>,
        status: Option<&str>,
        after: Option<&Cursor>,
        limit: i64,
    ) -> Result<Page<MemberRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "{MEMBER_SELECT} WHERE m.org_id = $1 AND ($2::text IS NULL OR m.role = $2)
               AND ($3::text IS NULL OR (CASE WHEN m.disabled_at IS NOT NULL THEN 'disabled'
                                              WHEN m.accepted_at IS NULL THEN 'invited'
                                              ELSE 'active' END) = $3)
               AND ($4::text IS NULL OR u.name > $4)
             ORDER BY u.name LIMIT $5"
        ))
        .bind(self.org.0)
        .bind(role.map(Role::as_str))
        .bind(status)
        .bind(after.map(|cursor| cursor.0.clone()))
        .bind(limit + 1)
        .fetch_all(self.conn())
        .await?;
        let members = rows.iter().map(member_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(paginate(members, limit, |member| member.name.clone()))
    }

    pub async fn get_member(&mut self, user: UserId) -> Result<MemberRecord, StoreError> {
        let row = sqlx::query(&format!(
            "{MEMBER_SELECT} WHERE m.org_id = $1 AND m.user_id = $2 FOR UPDATE OF m"
        ))
        .bind(self.org.0)
        .bind(user.0)
        .fetch_optional(self.conn())
        .await?
        .ok_or(StoreError::NotFound { what: "member" })?;
        member_from_row(&row)
    }

    /// Adds a user; `AlreadyExists` when they are a member already. With `accepted` false the
    /// membership is an invitation that grants nothing until the user accepts it.
    pub async fn add_member(&mut self, user: UserId, role: Role, accepted: bool) -> Result<MemberRecord, StoreError> {
        sqlx::query(
            "INSERT INTO memberships (org_id, user_id, role, accepted_at)
             VALUES ($1, $2, $3, CASE WHEN $4 THEN now() END)",
        )
        .bind(self.org.0)
        .bind(user.0)
        .bind(role.as_str())
        .bind(accepted)
        .execute(self.conn())
        .await
        .map_err(|error| StoreError::unique_as(error, "member"))?;
        self.get_member(user).await
    }

    pub async fn update_member(
        &mut self,
        user: UserId,
        role: Option<Role>,
        disabled: Option<bool>,
    ) -> Result<MemberRecord, StoreError> {
        let updated = sqlx::query(
            "UPDATE memberships SET role = COALESCE($3, role),
                disabled_at = CASE WHEN $4::boolean IS NULL THEN disabled_at
                                   WHEN $4 THEN COALESCE(disabled_at, now()) ELSE NULL END
             WHERE org_id = $1 AND user_id = $2",
        )
        .bind(self.org.0)
        .bind(user.0)
        .bind(role.map(Role::as_str))
        .bind(disabled)
        .execute(self.conn())
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "member" });
        }
        self.get_member(user).await
    }

    /// Accepts the user's pending invitation to this organisation; `NotFound` when there is none.
    pub async fn accept_invitation(&mut self, user: UserId) -> Result<MemberRecord, StoreError> {
        let done = sqlx::query(
            "UPDATE memberships SET accepted_at = now() WHERE org_id = $1 AND user_id = $2 AND accepted_at IS NULL",
        )
        .bind(self.org.0)
        .bind(user.0)
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "invitation" });
        }
        self.get_member(user).await
    }

    /// Declines (deletes) the user's pending invitation; `NotFound` when there is none.
    pub async fn decline_invitation(&mut self, user: UserId) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2 AND accepted_at IS NULL")
            .bind(self.org.0)
            .bind(user.0)
            .execute(self.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "invitation" });
        }
        Ok(())
    }

    pub async fn remove_member(&mut self, user: UserId) -> Result<(), StoreError> {
        let deleted = sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
            .bind(self.org.0)
            .bind(user.0)
            .execute(self.conn())
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "member" });
        }
        Ok(())
    }

    /// Serialises changes to this organisation's members until the transaction ends, so two
    /// concurrent changes cannot deadlock or both remove the last owner.
    pub async fn lock_members(&mut self) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('rdp_proxy.members:' || $1::text, 0))")
            .bind(self.org.0)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Enabled owners of the organisation, counted under a lock so two concurrent demotions
    /// cannot both leave it without one.
    pub async fn count_active_owners(&mut self) -> Result<i64, StoreError> {
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
            "SELECT user_id FROM memberships
             WHERE org_id = $1 AND role = 'owner' AND disabled_at IS NULL AND accepted_at IS NOT NULL FOR UPDATE",
        )
        .bind(self.org.0)
        .fetch_all(self.conn())
        .await?;
        Ok(i64::try_from(ids.len()).unwrap_or(i64::MAX))
    }
}

const MEMBER_SELECT: &str = "SELECT m.user_id, u.name, m.role, m.disabled_at IS NOT NULL AS disabled,
        m.accepted_at IS NULL AS pending, m.created_at
    FROM memberships m JOIN users u ON u.id = m.user_id";

fn member_from_row(row: &PgRow) -> Result<MemberRecord, StoreError> {
    Ok(MemberRecord {
        user: UserId(row.get("user_id")),
        name: row.get("name"),
        role: parse_role(&row.get::<String, _>("role"))?,
        disabled: row.get("disabled"),
        pending: row.get("pending"),
        created_at: row.get("created_at"),
    })
}

pub(crate) fn parse_role(raw: &str) -> Result<Role, StoreError> {
    Role::parse(raw).ok_or_else(|| StoreError::Corrupt(format!("unknown role {raw:?}")))
}
