//! PostgreSQL storage: schema migrations and the queries the control plane and workers run.
//! Every tenant-owned query takes the organisation id; decisions about what is allowed live in
//! `rdp-proxy-core`, not here.

mod accounts;
mod error;
mod sessions;
mod targets;

pub use accounts::{Membership, UserRecord};
pub use error::StoreError;
pub use sessions::{ControlUpdate, EventRecord, NewSession, SessionRecord, Transition};
pub use targets::{NewTarget, TargetRecord, TargetSecret};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

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
