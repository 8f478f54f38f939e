//! Storage errors. Callers map `NotFound` and `Conflict` to client errors and log the rest.

use rdp_proxy_core::TransitionError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("{what} already exists")]
    AlreadyExists { what: &'static str },
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("stored value is invalid: {0}")]
    Corrupt(String),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}
