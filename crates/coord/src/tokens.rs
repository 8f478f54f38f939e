//! Attach tokens: stored hashed with a TTL and consumed with `GETDEL`, so exactly one request
//! can redeem a token.

use rdp_proxy_core::OrgId;
use rdp_proxy_core::token::{AttachGrant, AttachToken, MAX_TOKEN_TTL, TokenError};
use time::OffsetDateTime;

use crate::{Coord, CoordError, keys};

/// Issues and redeems attach tokens.
#[derive(Clone)]
pub struct TokenStore {
    coord: Coord,
}

impl TokenStore {
    pub fn new(coord: Coord) -> Self {
        Self { coord }
    }

    /// Stores a new token for `grant` until `grant.expires_at` (at most 60 s) and returns it.
    pub async fn issue(&self, grant: &AttachGrant, now: OffsetDateTime) -> Result<AttachToken, CoordError> {
        let token = AttachToken::generate();
        let ttl = (grant.expires_at - now).clamp(time::Duration::milliseconds(1), MAX_TOKEN_TTL);
        let ttl_ms = u64::try_from(ttl.whole_milliseconds()).unwrap_or(1);
        let value = serde_json::to_string(grant)?;
        let _: () = redis::cmd("SET")
            .arg(keys::attach_token(grant.org, &token.hash()))
            .arg(value)
            .arg("PX")
            .arg(ttl_ms)
            .arg("NX")
            .query_async(&mut self.coord.conn())
            .await?;
        Ok(token)
    }

    /// Consumes the token atomically. A second call with the same token returns `NotFound`.
    pub async fn redeem(&self, org: OrgId, token: &AttachToken) -> Result<Result<AttachGrant, TokenError>, CoordError> {
        let raw: Option<String> = redis::cmd("GETDEL")
            .arg(keys::attach_token(org, &token.hash()))
            .query_async(&mut self.coord.conn())
            .await?;
        match raw {
            None => Ok(Err(TokenError::NotFound)),
            Some(raw) => Ok(Ok(serde_json::from_str(&raw)?)),
        }
    }
}
