//! Join tokens: `rpj1_<CA fingerprint>_<secret>`.
//!
//! The fingerprint is the SHA-256 of the cluster CA certificate in 64 lowercase hex digits. A
//! node without any state pins it to check that it talks to the right control plane. The
//! secret authorises one join.

use std::fmt;

use rdp_proxy_core::node::wire::JOIN_TOKEN_PREFIX;

/// A parsed join token. `Debug` omits the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    token: String,
    ca_fingerprint: String,
}

/// A join token that does not have the `rpj1_<fingerprint>_<secret>` layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "join token is invalid: it must start with `{JOIN_TOKEN_PREFIX}_`; copy the whole token the control plane printed"
    )]
    Prefix,
    #[error(
        "join token is invalid: the CA fingerprint after `{JOIN_TOKEN_PREFIX}_` must be 64 lowercase hexadecimal digits followed by `_`"
    )]
    Fingerprint,
    #[error("join token is invalid: the secret after the CA fingerprint is missing or contains whitespace")]
    Secret,
}

impl JoinToken {
    /// Parses a token, ignoring whitespace around it (a token pasted from a file keeps its
    /// newline).
    pub fn parse(raw: &str) -> Result<Self, TokenError> {
        let token = raw.trim();
        let rest = token
            .strip_prefix(JOIN_TOKEN_PREFIX)
            .and_then(|rest| rest.strip_prefix('_'))
            .ok_or(TokenError::Prefix)?;
        // The secret may itself contain `_`, so the fingerprint is cut by length.
        let fingerprint = rest.get(..64).ok_or(TokenError::Fingerprint)?;
        let is_lower_hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
        if !fingerprint.chars().all(is_lower_hex) {
            return Err(TokenError::Fingerprint);
        }
        let secret = rest[64..].strip_prefix('_').ok_or(TokenError::Fingerprint)?;
        if secret.is_empty() || secret.chars().any(char::is_whitespace) {
            return Err(TokenError::Secret);
        }
        Ok(Self {
            token: token.to_owned(),
            ca_fingerprint: fingerprint.to_owned(),
        })
    }

    /// Returns the SHA-256 of the cluster CA certificate (DER), 64 lowercase hex digits.
    pub fn ca_fingerprint(&self) -> &str {
        &self.ca_fingerprint
    }

    /// Returns the whole token, as sent in the join request. The result is secret.
    pub fn expose(&self) -> &str {
        &self.token
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("ca_fingerprint", &self.ca_fingerprint)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FINGERPRINT: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn token_parses() {
        let raw = format!("rpj1_{FINGERPRINT}_s3cr3t-Value");
        let token = JoinToken::parse(&raw).expect("valid token");
        assert_eq!(token.ca_fingerprint(), FINGERPRINT);
        assert_eq!(token.expose(), raw);
    }

    #[test]
    fn token_secret_may_contain_underscores() {
        let raw = format!("rpj1_{FINGERPRINT}_a_b_c");
        let token = JoinToken::parse(&raw).expect("valid token");
        assert_eq!(token.ca_fingerprint(), FINGERPRINT);
    }

    #[test]
    fn token_surrounding_whitespace_is_trimmed() {
        let raw = format!("  rpj1_{FINGERPRINT}_secret\n");
        let token = JoinToken::parse(&raw).expect("valid token");
        assert_eq!(token.expose(), format!("rpj1_{FINGERPRINT}_secret"));
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let upper = FINGERPRINT.to_uppercase();
        let short = &FINGERPRINT[..63];
        let cases = [
            (String::new(), TokenError::Prefix),
            (format!("rpj2_{FINGERPRINT}_secret"), TokenError::Prefix),
            (format!("rpj1{FINGERPRINT}_secret"), TokenError::Prefix),
            (format!("rpj1_{upper}_secret"), TokenError::Fingerprint),
            (format!("rpj1_{short}_secret"), TokenError::Fingerprint),
            (format!("rpj1_{short}g_secret"), TokenError::Fingerprint),
            (format!("rpj1_{FINGERPRINT}secret"), TokenError::Fingerprint),
            ("rpj1_abc".to_owned(), TokenError::Fingerprint),
            (format!("rpj1_{FINGERPRINT}_"), TokenError::Secret),
            (format!("rpj1_{FINGERPRINT}_sec ret"), TokenError::Secret),
        ];
        for (raw, expected) in cases {
            assert_eq!(JoinToken::parse(&raw), Err(expected), "token {raw:?}");
        }
    }

    #[test]
    fn token_debug_omits_secret() {
        let token = JoinToken::parse(&format!("rpj1_{FINGERPRINT}_hunter2")).expect("valid token");
        let debug = format!("{token:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains(FINGERPRINT), "{debug}");
    }
}
