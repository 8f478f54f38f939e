//! Connection settings for one RDP target, and the password type that keeps them out of logs.

use std::fmt;
use std::time::Duration;

/// Security protocols the client offers in the X.224 connection request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityMode {
    /// Offers TLS and NLA (CredSSP), and the server chooses.
    #[default]
    Auto,
    /// Offers only TLS, so a server that requires NLA rejects the connection.
    Tls,
    /// Offers only NLA, so a server that allows only plain TLS rejects the connection.
    Nla,
}

/// A password. `Debug` prints a placeholder and there is no `Display`, so formatting a
/// config does not print it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Returns the plain text, for handing to the RDP connector only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// Everything [`crate::connect`] needs to open one session.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: Secret,
    pub domain: Option<String>,
    pub security: SecurityMode,
    /// Requested desktop width in pixels. The server may choose another size.
    pub width: u16,
    /// Requested desktop height in pixels. The server may choose another size.
    pub height: u16,
    /// Limit for the whole connection sequence, from TCP connect to the first active frame.
    pub connect_timeout: Duration,
    /// SHA-256 of the target's DER-encoded TLS certificate. When set, any other certificate
    /// is rejected with [`crate::ConnectErrorKind::CertificateMismatch`].
    ///
    /// NOTE: when `None`, any certificate is accepted and a warning is logged once per process.
    pub cert_sha256: Option<[u8; 32]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn config_debug_hides_password() {
        let config = ConnectConfig {
            host: "127.0.0.1".to_owned(),
            port: 3389,
            username: "alice".to_owned(),
            password: Secret::from("correct horse battery staple"),
            domain: None,
            security: SecurityMode::Auto,
            width: 1280,
            height: 720,
            connect_timeout: Duration::from_secs(5),
            cert_sha256: None,
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("correct horse"), "{printed}");
        assert!(printed.contains("alice"), "{printed}");
    }
}
