//! Live coordination in Redis: which worker holds a session, worker heartbeats, the mirrored
//! control lease and single-use attach tokens.
//!
//! Nothing here is durable. Every key has a TTL or is re-asserted by its owner, so a Redis that
//! restarts empty is repopulated by the workers within one heartbeat interval.

mod keys;
mod throttle;
mod tokens;
mod workers;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use throttle::{FAILURE_WINDOW, MAX_LOGIN_FAILURES};
pub use tokens::TokenStore;
pub use workers::WorkerBeat;

#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    #[error("Redis request failed")]
    Redis(#[from] redis::RedisError),
    #[error("stored coordination value is invalid")]
    Decode(#[from] serde_json::Error),
}

/// Shared Redis connection; cheap to clone, reconnects by itself.
#[derive(Clone)]
pub struct Coord {
    conn: ConnectionManager,
}

impl Coord {
    /// Connects to `url` (`redis://host:port/db`). Requests made while Redis is down fail after
    /// `response_timeout`; the manager reconnects in the background.
    pub async fn connect(url: &str) -> Result<Self, CoordError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(Duration::from_secs(3)))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self { conn })
    }

    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub async fn ping(&self) -> Result<(), CoordError> {
        let _: String = redis::cmd("PING").query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// Returns the Redis server's `run_id`, which changes whenever the server restarts (and so,
    /// without persistence, comes back empty).
    pub async fn server_run_id(&self) -> Result<String, CoordError> {
        let info: String = redis::cmd("INFO").arg("server").query_async(&mut self.conn()).await?;
        Ok(info
            .lines()
            .find_map(|line| line.strip_prefix("run_id:"))
            .unwrap_or_default()
            .trim()
            .to_owned())
    }
}
