//! Storage errors. Callers map `NotFound`, `AlreadyExists`, `Conflict` and `InvalidCursor` to
//! client errors and log the rest.

use rdp_proxy_core::TransitionError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("{what} already exists")]
    AlreadyExists { what: &'static str },
    /// The change raced another one or would break a rule the data keeps.
    #[error("{0}")]
    Conflict(String),
    #[error("the cursor is not one this list returned")]
    InvalidCursor,
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// A worker wrote with a fencing number that is no longer current: it was declared lost
    /// or another worker holds the session.
    #[error("worker {worker} with fencing number {fence} no longer holds this session")]
    StaleFence {
        worker: rdp_proxy_core::WorkerId,
        fence: i64,
    },
    #[error("stored value is invalid: {0}")]
    Corrupt(String),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Maps a unique-constraint violation to `AlreadyExists { what }`, leaving other errors alone.
    pub(crate) fn unique_as(error: sqlx::Error, what: &'static str) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => Self::AlreadyExists { what },
            _ => Self::Database(error),
        }
    }
}
