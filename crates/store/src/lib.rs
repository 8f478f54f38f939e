//! PostgreSQL storage: schema migrations and the queries the control plane and workers run.
//!
//! Tenant data is reached only through [`OrgTx`], a transaction that has named its organisation
//! to PostgreSQL, whose row-level security then hides every other organisation's rows. Queries
//! still filter by `org_id` themselves; the policies are the second wall. Decisions about what
//! is allowed live in `rdp-proxy-policy`, not here.

mod accounts;
mod audit;
mod auth;
mod credentials;
mod error;
mod nodes;
mod page;
mod policies;
mod sessions;
mod targets;
mod tenant;

pub use accounts::{MemberRecord, Membership, OrgMembership, UserRecord};
pub use audit::{AuditCheck, AuditEntry, AuditFilter, AuditRecord};
pub use auth::{ApiKeyRecord, LoginState, NewApiKey, RefreshOutcome};
pub use credentials::{CredentialRecord, CredentialSecret, NewCredential, OrgKey};
pub use error::StoreError;
pub use nodes::{JoinError, JoinGrant, JoinRefusal, NewJoinToken, NewNode, NodeRecord, StoredCa, WorkerRegistration};
pub use page::{Cursor, Page};
pub use policies::PolicyRecord;
pub use sessions::{ControlUpdate, EventRecord, NewSession, SessionLimits, SessionRecord, Transition};
pub use targets::{NewTarget, TargetFilter, TargetRecord, TargetUpdate};
pub use tenant::{OrgTx, SERVICE_ROLE};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool, Row};

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Store {
    /// Connects with a small pool. `url` is a `postgres://` URL.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse().map_err(StoreError::Database)?;
        let options = options.log_statements(tracing::log::LevelFilter::Trace);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies pending migrations; safe to run from several processes at once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(StoreError::Migrate)
    }

    /// Fails when this login could read every organisation's rows: a superuser, a role with
    /// `BYPASSRLS`, or the owner of the tenant tables. Services call it at start so that
    /// row-level security cannot be switched off by configuration.
    pub async fn check_service_login(&self) -> Result<(), StoreError> {
        let row = sqlx::query(
            "SELECT r.rolname, r.rolsuper, r.rolbypassrls,
                    pg_has_role(current_user, 'rdp_proxy_service', 'USAGE') AS is_service,
                    EXISTS (SELECT 1 FROM pg_tables WHERE tablename = 'sessions' AND schemaname = 'public'
                            AND pg_has_role(current_user, tableowner, 'USAGE')) AS owns_tables
             FROM pg_roles r WHERE r.rolname = current_user",
        )
        .fetch_one(&self.pool)
        .await?;
        let name: String = row.get("rolname");
        let problem = if row.get::<bool, _>("rolsuper") {
            Some("is a superuser")
        } else if row.get::<bool, _>("rolbypassrls") {
            Some("has BYPASSRLS")
        } else if row.get::<bool, _>("owns_tables") {
            Some("owns the tables")
        } else if !row.get::<bool, _>("is_service") {
            Some("is not a member of rdp_proxy_service")
        } else {
            None
        };
        match problem {
            Some(problem) => Err(StoreError::Corrupt(format!(
                "database login {name:?} {problem}; services must log in as a member of \
                 {SERVICE_ROLE} so that row-level security applies (see `rdp-proxy migrate --service-login`)"
            ))),
            None => Ok(()),
        }
    }

    /// Creates or updates a login role that is a member of [`SERVICE_ROLE`] and nothing else.
    /// `name` must be a plain identifier. Run with the migrating (owner) login.
    pub async fn ensure_service_login(&self, name: &str, password: &str) -> Result<(), StoreError> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(StoreError::Corrupt(format!(
                "service login name {name:?} must be lowercase letters, digits and underscores"
            )));
        }
        let existing: Option<bool> = sqlx::query_scalar(
            "SELECT NOT rolsuper AND NOT rolbypassrls AND pg_has_role(rolname, 'rdp_proxy_service', 'MEMBER')
             FROM pg_roles WHERE rolname = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        if existing == Some(false) {
            return Err(StoreError::Corrupt(format!(
                "role {name:?} exists and is not a service login; choose another --service-login name"
            )));
        }
        let verb = if existing.is_some() { "ALTER" } else { "CREATE" };
        // Role statements take no bind parameters, so the server quotes the name and password.
        let statement: String = sqlx::query_scalar(
            "SELECT format('%s ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD %L', $1, $2, $3)",
        )
        .bind(verb)
        .bind(name)
        .bind(password)
        .fetch_one(&self.pool)
        .await?;
        match sqlx::query(&statement).execute(&self.pool).await {
            Ok(_) => {}
            // Another process created it between the check and the statement.
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42710") => {}
            Err(error) => return Err(error.into()),
        }
        sqlx::query(&format!("GRANT {SERVICE_ROLE} TO {name}"))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Cheap liveness probe.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

impl Store {
    /// Creates database `name` on this server if it does not exist. `name` must be a plain
    /// identifier (letters, digits, underscores).
    pub async fn ensure_database(&self, name: &str) -> Result<(), StoreError> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(StoreError::Corrupt(format!(
                "database name {name:?} is not a plain identifier"
            )));
        }
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        if !exists {
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}
