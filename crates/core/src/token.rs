//! Single-use attach tokens: random secrets handed to one user for one session on one worker.
//!
//! Only the SHA-256 hash of a token is stored, so a copy of the store cannot be replayed. The
//! binding travels with the hash; the worker checks it after consuming the token atomically.

use std::fmt;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::ids::{OrgId, SessionId, UserId, WorkerId};
use crate::lease::AttachMode;

/// Upper bound on an attach token's lifetime.
pub const MAX_TOKEN_TTL: Duration = Duration::seconds(60);
/// Random bytes per token (256 bits).
pub const TOKEN_BYTES: usize = 32;

/// The secret half of an attach token, as sent to the browser. `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct AttachToken(String);

impl AttachToken {
    pub fn generate() -> Self {
        let mut bytes = [0u8; TOKEN_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(hex::encode(bytes))
    }

    /// Wraps a token received from a client, rejecting anything that is not 64 hex digits.
    pub fn parse(raw: &str) -> Result<Self, TokenError> {
        let valid = raw.len() == TOKEN_BYTES * 2 && raw.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid {
            return Err(TokenError::Malformed);
        }
        Ok(Self(raw.to_ascii_lowercase()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Hex SHA-256 of the token, the only form that is stored.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl fmt::Debug for AttachToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AttachToken(<redacted>)")
    }
}

/// Rights a token grants its bearer, stored beside the hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachGrant {
    pub org: OrgId,
    pub user: UserId,
    pub user_name: String,
    pub session: SessionId,
    pub worker: WorkerId,
    pub mode: AttachMode,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("attach token is malformed")]
    Malformed,
    #[error("attach token is unknown, already used or expired")]
    NotFound,
    #[error("attach token has expired")]
    Expired,
    #[error("attach token belongs to another session")]
    WrongSession,
    #[error("attach token was issued for another worker")]
    WrongWorker,
}

impl AttachGrant {
    /// Clamps a requested lifetime to `MAX_TOKEN_TTL` and returns the expiry.
    pub fn expiry(now: OffsetDateTime, requested: Duration) -> OffsetDateTime {
        now + requested.clamp(Duration::seconds(1), MAX_TOKEN_TTL)
    }

    /// Checks a consumed grant against the worker and session it was presented to.
    pub fn verify(&self, worker: WorkerId, session: SessionId, now: OffsetDateTime) -> Result<(), TokenError> {
        if now >= self.expires_at {
            return Err(TokenError::Expired);
        }
        if self.worker != worker {
            return Err(TokenError::WrongWorker);
        }
        if self.session != session {
            return Err(TokenError::WrongSession);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use uuid::Uuid;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-12-04 12:00 UTC);

    fn grant() -> AttachGrant {
        AttachGrant {
            org: OrgId(Uuid::from_u128(1)),
            user: UserId(Uuid::from_u128(2)),
            user_name: "alice".into(),
            session: SessionId(Uuid::from_u128(3)),
            worker: WorkerId(Uuid::from_u128(4)),
            mode: AttachMode::Control,
            expires_at: NOW + Duration::seconds(30),
        }
    }

    #[test]
    fn tokens_are_unique_and_hash_differs() {
        let a = AttachToken::generate();
        let b = AttachToken::generate();
        assert_ne!(a, b);
        assert_ne!(a.hash(), a.expose());
        assert_eq!(a.hash().len(), 64);
    }

    #[test]
    fn debug_redacts() {
        let token = AttachToken::generate();
        assert!(!format!("{token:?}").contains(token.expose()));
    }

    #[test]
    fn parse_rejects_malformed() {
        for raw in ["", "abc", &"g".repeat(64), &"a".repeat(63), &"a".repeat(65)] {
            assert_eq!(AttachToken::parse(raw), Err(TokenError::Malformed), "{raw:?}");
        }
        let token = AttachToken::generate();
        assert_eq!(
            AttachToken::parse(&token.expose().to_uppercase()).unwrap().hash(),
            token.hash()
        );
    }

    #[test]
    fn expiry_is_clamped() {
        assert_eq!(AttachGrant::expiry(NOW, Duration::hours(1)), NOW + MAX_TOKEN_TTL);
        assert_eq!(AttachGrant::expiry(NOW, Duration::ZERO), NOW + Duration::seconds(1));
    }

    #[test]
    fn verify_checks_binding() {
        let g = grant();
        assert_eq!(g.verify(g.worker, g.session, NOW), Ok(()));
        assert_eq!(
            g.verify(WorkerId(Uuid::from_u128(9)), g.session, NOW),
            Err(TokenError::WrongWorker)
        );
        assert_eq!(
            g.verify(g.worker, SessionId(Uuid::from_u128(9)), NOW),
            Err(TokenError::WrongSession)
        );
        assert_eq!(g.verify(g.worker, g.session, g.expires_at), Err(TokenError::Expired));
    }
}
