//! Authentication: Argon2id passwords, Ed25519-signed access tokens bound to a login, rotating
//! refresh tokens, and organisation-scoped API keys. The extractor re-reads the login and the
//! membership (or the API key) from PostgreSQL on every request, so revoking a user, a login or
//! a key takes effect on the next request.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, Header, Validation};
use rand::RngCore;
use rdp_proxy_core::audit::{ActorKind, Outcome};
use rdp_proxy_core::{OrgId, UserId};
use rdp_proxy_policy::{Principal, PrincipalKind};
use rdp_proxy_store::{AuditEntry, LoginState, OrgTx};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::{ApiError, AppState};

/// How long a login lasts without a new password: refresh tokens stop working after this.
pub(crate) const LOGIN_LIFETIME: time::Duration = time::Duration::hours(12);
const REFRESH_PREFIX: &str = "rpr_";
pub(crate) const API_KEY_PREFIX: &str = "rpk_";

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

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0_u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buffer);
    hex::encode(buffer)
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: UserId,
    org: OrgId,
    /// The login this token belongs to; revoking the login rejects the token.
    sid: uuid::Uuid,
    iat: i64,
    exp: i64,
    jti: uuid::Uuid,
}

/// A new access token and refresh token for a login.
pub(crate) struct IssuedTokens {
    pub(crate) access_token: String,
    pub(crate) expires_at: OffsetDateTime,
    pub(crate) refresh_token: String,
    pub(crate) refresh_expires_at: OffsetDateTime,
}

/// Opens a login for `user` in the transaction's organisation and issues its first tokens.
pub(crate) async fn open_login(state: &AppState, tx: &mut OrgTx, user: UserId) -> Result<IssuedTokens, ApiError> {
    let login_expires = OffsetDateTime::now_utc() + LOGIN_LIFETIME;
    let login = tx.create_login(user, login_expires).await?;
    issue_tokens(state, tx, user, login, login_expires).await
}

/// Signs an access token and stores a fresh refresh token for an existing login.
pub(crate) async fn issue_tokens(
    state: &AppState,
    tx: &mut OrgTx,
    user: UserId,
    login: uuid::Uuid,
    login_expires: OffsetDateTime,
) -> Result<IssuedTokens, ApiError> {
    let org = tx.org();
    let now = OffsetDateTime::now_utc();
    let ttl = time::Duration::try_from(state.config.access_token_ttl).unwrap_or(time::Duration::minutes(10));
    let expires_at = now + ttl;
    let claims = Claims {
        sub: user,
        org,
        sid: login,
        iat: now.unix_timestamp(),
        exp: expires_at.unix_timestamp(),
        jti: uuid::Uuid::new_v4(),
    };
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(state.config.signing_key.key_id());
    let access_token = jsonwebtoken::encode(&header, &claims, &state.config.signing_key.encoding_key())
        .map_err(|error| ApiError::internal("signing the access token", &error))?;
    let refresh_token = format!("{REFRESH_PREFIX}{}_{}", org.0.simple(), random_hex(32));
    let refresh_expires_at = login_expires;
    tx.insert_refresh_token(login, &sha256(refresh_token.as_bytes()), refresh_expires_at)
        .await?;
    Ok(IssuedTokens {
        access_token,
        expires_at,
        refresh_token,
        refresh_expires_at,
    })
}

/// Returns the organisation a refresh token or API key names, checking its shape only.
pub(crate) fn token_org(token: &str, prefix: &str) -> Option<OrgId> {
    let rest = token.strip_prefix(prefix)?;
    let org = rest.split('_').next()?;
    uuid::Uuid::try_parse(org).ok().map(OrgId)
}

/// Generates an API key: returns the key, shown once, and the hash that is stored.
pub(crate) fn new_api_key(org: OrgId, id: uuid::Uuid) -> (String, [u8; 32]) {
    let secret = random_hex(32);
    let key = format!("{API_KEY_PREFIX}{}_{}_{secret}", org.0.simple(), id.simple());
    (key, sha256(secret.as_bytes()))
}

fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

/// The authenticated caller of a request: a member of one organisation, or an API key of it.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) org: OrgId,
    /// The principal that policies evaluate: id, name, role and kind.
    pub(crate) principal: Principal,
    /// The user, for people; `None` for API keys.
    pub(crate) user: Option<UserId>,
    pub(crate) login: Option<uuid::Uuid>,
}

impl Caller {
    pub(crate) fn name(&self) -> &str {
        &self.principal.name
    }

    /// Returns the user behind the request, or 403 for an API key.
    pub(crate) fn require_user(&self, what: &str) -> Result<UserId, ApiError> {
        self.user
            .ok_or_else(|| ApiError::forbidden(format!("API keys cannot {what}; log in as a user")))
    }

    /// Starts an audit record with this caller as the actor.
    pub(crate) fn audit(&self, action: impl Into<String>, object_kind: &str, outcome: Outcome) -> AuditEntry {
        let kind = match self.principal.kind {
            PrincipalKind::User => ActorKind::User,
            PrincipalKind::ApiKey => ActorKind::ApiKey,
        };
        AuditEntry::new(action, object_kind, outcome).actor(
            kind,
            Some(self.principal.id),
            Some(self.principal.name.clone()),
        )
    }
}

/// Extracts the [`Caller`] from `Authorization: Bearer …`.
pub(crate) struct Authenticated(pub(crate) Caller);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| {
                unauthorized(
                    "unauthenticated",
                    "missing Authorization header; send 'Bearer <access token>' from /api/v1/login or an API key",
                )
            })?;
        let token = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .ok_or_else(|| unauthorized("unauthenticated", "Authorization header must be 'Bearer <token>'"))?;
        let caller = if token.starts_with(API_KEY_PREFIX) {
            api_key_caller(state, token).await?
        } else {
            access_token_caller(state, token).await?
        };
        tracing::Span::current().record("org.id", tracing::field::display(caller.org));
        Ok(Self(caller))
    }
}

fn decode_access_token(state: &AppState, token: &str) -> Result<Claims, ApiError> {
    let invalid = || unauthorized("token_invalid", "access token is invalid; log in again");
    let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
    let key = header
        .kid
        .as_deref()
        .and_then(|kid| state.config.verifying_keys.get(kid))
        .ok_or_else(|| {
            unauthorized(
                "token_invalid",
                "access token was signed by an unknown key; log in again",
            )
        })?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.leeway = 5;
    validation.set_required_spec_claims(&["exp", "sub"]);
    jsonwebtoken::decode::<Claims>(token, key, &validation)
        .map(|data| data.claims)
        .map_err(|error| match error.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                unauthorized("token_expired", "access token expired; refresh it or log in again")
            }
            _ => invalid(),
        })
}

async fn access_token_caller(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let claims = decode_access_token(state, token)?;
    let mut tx = state.store.org_tx(claims.org).await?;
    match tx.login_state(claims.sid, claims.sub).await? {
        LoginState::Active { role, user_name } => Ok(Caller {
            org: claims.org,
            principal: Principal {
                id: claims.sub.0,
                name: user_name,
                role,
                kind: PrincipalKind::User,
            },
            user: Some(claims.sub),
            login: Some(claims.sid),
        }),
        LoginState::Revoked { reason } => Err(unauthorized(
            "token_revoked",
            format!("this login was revoked ({reason}); log in again"),
        )),
        LoginState::NoMembership => Err(unauthorized(
            "token_revoked",
            "this account is disabled or no longer a member of the organisation",
        )),
    }
}

async fn api_key_caller(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let unknown = || unauthorized("token_invalid", "API key is not known");
    let org = token_org(token, API_KEY_PREFIX).ok_or_else(unknown)?;
    let mut parts = token[API_KEY_PREFIX.len()..].split('_').skip(1);
    let id = parts
        .next()
        .and_then(|id| uuid::Uuid::try_parse(id).ok())
        .ok_or_else(unknown)?;
    let secret = parts.next().ok_or_else(unknown)?;
    let mut tx = state.store.org_tx(org).await?;
    let key = tx.authenticate_api_key(id, &sha256(secret.as_bytes())).await?;
    tx.commit().await?;
    match key {
        Ok(key) => Ok(Caller {
            org,
            principal: Principal {
                id: key.id,
                name: key.name,
                role: key.role,
                kind: PrincipalKind::ApiKey,
            },
            user: None,
            login: None,
        }),
        Err(reason) if reason.contains("revoked") => Err(unauthorized("token_revoked", reason)),
        Err(reason) if reason.contains("expired") => Err(unauthorized("token_expired", reason)),
        Err(reason) => Err(unauthorized("token_invalid", reason)),
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

    #[test]
    fn tokens_name_their_organisation() {
        let org = OrgId(uuid::Uuid::new_v4());
        let (key, hash) = new_api_key(org, uuid::Uuid::new_v4());
        assert_eq!(token_org(&key, API_KEY_PREFIX), Some(org));
        let secret = key.rsplit('_').next().unwrap();
        assert_eq!(sha256(secret.as_bytes()), hash);
        assert_eq!(token_org("rpk_nothex_x", API_KEY_PREFIX), None);
        assert_eq!(token_org("Bearer", API_KEY_PREFIX), None);
    }
}
