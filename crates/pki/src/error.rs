//! Errors of certificate issuance, parsing and TLS configuration.

/// A failure of the cluster CA, a certificate or a TLS configuration, worded for an operator.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{input} is not valid PEM: {reason}")]
    InvalidPem { input: &'static str, reason: String },

    #[error("{input} contains {found} PEM blocks of the expected type, expected exactly one")]
    PemCount { input: &'static str, found: usize },

    #[error("{input} could not be parsed as X.509: {reason}")]
    InvalidCertificate { input: &'static str, reason: String },

    #[error("certificate request could not be parsed as PKCS#10: {0}")]
    InvalidCsr(String),

    #[error("certificate request signature is invalid")]
    CsrSignature,

    #[error("certificate request key is {found}, but nodes must use an ECDSA P-256 key")]
    UnsupportedKey { found: String },

    #[error("{input} {value:?} is invalid: {reason}")]
    InvalidName {
        input: &'static str,
        value: String,
        reason: &'static str,
    },

    #[error("certificate validity {0:?} is invalid: it must be at least one second")]
    InvalidValidity(std::time::Duration),

    #[error(
        "certificate would expire at {not_after}, after the cluster CA itself ({ca_not_after}); \
         issue a shorter certificate or rotate the CA"
    )]
    OutlivesCa {
        not_after: time::OffsetDateTime,
        ca_not_after: time::OffsetDateTime,
    },

    #[error("CA certificate is not a CA: its basic constraints do not allow signing certificates")]
    NotCa,

    #[error("CA private key does not match the public key in the CA certificate")]
    KeyMismatch,

    #[error("private key could not be loaded: {0}")]
    InvalidKey(String),

    #[error("certificate has no node identity (no {prefix}<uuid> URI in its subject alternative names)", prefix = crate::identity::NODE_URI_PREFIX)]
    NoIdentity,

    #[error("certificate has no node owner (no urn:rdp-proxy:owner:… URI in its subject alternative names)")]
    NoOwner,

    #[error("certificate is ambiguous: it names more than one {0}")]
    AmbiguousIdentity(&'static str),

    #[error("certificate identity URI {0:?} is invalid")]
    InvalidIdentityUri(String),

    #[error("CA fingerprint {0:?} is invalid: expected 64 hexadecimal digits (SHA-256), colons allowed")]
    InvalidFingerprint(String),

    #[error("system random number generator failed")]
    Random,

    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),

    #[error("TLS configuration is invalid: {0}")]
    Tls(#[from] rustls::Error),

    #[error("client certificate verifier could not be built: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),

    #[error("HTTP client could not be built: {0}")]
    HttpClient(#[from] reqwest::Error),
}
