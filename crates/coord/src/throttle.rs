//! Failed-login counters: each user name gets a window in which only a limited number of failed
//! logins are accepted, so passwords cannot be guessed at network speed.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::{Coord, CoordError, keys};

/// Failed logins allowed for one user name within [`FAILURE_WINDOW`].
pub const MAX_LOGIN_FAILURES: u64 = 10;
/// Length of the window, counted from the first failure in it.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

impl Coord {
    /// Seconds until `user_name` may try again, or `None` when it is below the limit.
    pub async fn login_blocked_for(&self, user_name: &str) -> Result<Option<u64>, CoordError> {
        let key = keys::login_failures(&name_digest(user_name));
        let (count, ttl): (Option<u64>, i64) = redis::pipe().get(&key).ttl(&key).query_async(&mut self.conn()).await?;
        let blocked = count.unwrap_or(0) >= MAX_LOGIN_FAILURES;
        Ok(blocked.then(|| u64::try_from(ttl).unwrap_or(1).max(1)))
    }

    /// Counts one failed login for `user_name`; the window starts at the first failure.
    pub async fn record_login_failure(&self, user_name: &str) -> Result<(), CoordError> {
        let key = keys::login_failures(&name_digest(user_name));
        let window = FAILURE_WINDOW.as_secs().cast_signed();
        let _: (u64, bool) = redis::pipe()
            .incr(&key, 1u64)
            .expire(&key, window)
            .arg("NX")
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Clears the counter after a successful login.
    pub async fn clear_login_failures(&self, user_name: &str) -> Result<(), CoordError> {
        let key = keys::login_failures(&name_digest(user_name));
        let _: () = redis::cmd("DEL").arg(key).query_async(&mut self.conn()).await?;
        Ok(())
    }
}

/// User names are hashed in key names, so Redis never lists who tried to log in.
fn name_digest(user_name: &str) -> String {
    hex::encode(Sha256::digest(user_name.trim().to_lowercase().as_bytes()))
}
