//! Passwords (Argon2id), signed access tokens, and the extractor that turns a bearer token into
//! an [`Actor`] whose membership is re-read from PostgreSQL on every request, so a removed or
//! disabled user loses access as soon as the change is stored.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rdp_proxy_core::access::Actor;
use rdp_proxy_core::{OrgId, UserId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{ApiError, AppState};

/// Hashes a password with Argon2id and a random salt; returns the PHC string.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt)?.to_string())
}

/// Checks a password against a PHC string; false for a wrong password or an unreadable hash.
pub(crate) fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
}

/// A valid hash of a random password, checked when the user does not exist so that an unknown
/// name takes as long to reject as a wrong password.
pub(crate) fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&uuid::Uuid::new_v4().to_string()).unwrap_or_default())
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: UserId,
    org: OrgId,
    name: String,
    iat: i64,
    exp: i64,
    jti: uuid::Uuid,
}

/// Signs an access token for `user` in `org`; returns it with its expiry.
pub(crate) fn issue_access_token(
    state: &AppState,
    user: UserId,
    name: &str,
    org: OrgId,
) -> Result<(String, OffsetDateTime), ApiError> {
    let now = OffsetDateTime::now_utc();
    let ttl = time::Duration::try_from(state.config.access_token_ttl).unwrap_or(time::Duration::minutes(15));
    let expires = now + ttl;
    let claims = Claims {
        sub: user,
        org,
        name: name.to_owned(),
        iat: now.unix_timestamp(),
        exp: expires.unix_timestamp(),
        jti: uuid::Uuid::new_v4(),
    };
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&state.config.token_secret),
    )
    .map_err(|error| ApiError::internal("signing the access token", &error))?;
    Ok((token, expires))
}

fn decode_access_token(state: &AppState, token: &str) -> Result<Claims, ApiError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 5;
    jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(&state.config.token_secret),
        &validation,
    )
    .map(|data| data.claims)
    .map_err(|error| match error.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
            ApiError::unauthorized("access token expired; log in again")
        }
        _ => ApiError::unauthorized("access token is invalid; log in again"),
    })
}

/// The authenticated caller of a request.
pub(crate) struct Authenticated(pub(crate) Actor);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| {
                ApiError::unauthorized("missing Authorization header; send 'Bearer <access token>' from /api/v1/login")
            })?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::unauthorized("Authorization header must be 'Bearer <access token>'"))?;
        let claims = decode_access_token(state, token.trim())?;
        let membership = state.store.membership(claims.org, claims.sub).await?.ok_or_else(|| {
            ApiError::unauthorized("this account is disabled or no longer a member of the organisation")
        })?;
        Ok(Self(Actor {
            user: claims.sub,
            user_name: claims.name,
            org: claims.org,
            role: membership.role,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }
}
