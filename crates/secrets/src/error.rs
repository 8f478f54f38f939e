//! The error type of this crate.

/// Failure to load a key or to decrypt a stored secret.
///
/// Messages name keys by role and by id, never by their bytes, and never include plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretsError {
    /// A configured key is not valid standard base64.
    #[error("invalid {key}: expected standard base64 (RFC 4648 alphabet with `=` padding) of {expected} bytes")]
    InvalidKeyEncoding { key: &'static str, expected: usize },

    /// A key decoded or decrypted to the wrong number of bytes.
    #[error("invalid {key}: it is {actual} bytes long, expected {expected}")]
    InvalidKeyLength {
        key: &'static str,
        expected: usize,
        actual: usize,
    },

    /// A wrapped data key names a master key other than the one configured.
    #[error(
        "the data key was wrapped by master key {wrapped_by}, but the configured master key is {configured}; \
         configure master key {wrapped_by} to unwrap it"
    )]
    MasterKeyMismatch { wrapped_by: String, configured: String },

    /// A stored ciphertext is too short to contain a nonce and an authentication tag.
    #[error("the {item} is {actual} bytes long, shorter than the {minimum} bytes of nonce and tag")]
    Truncated {
        item: &'static str,
        actual: usize,
        minimum: usize,
    },

    /// AES-GCM authentication failed: the ciphertext was modified, it belongs to another
    /// organisation or record, or another key encrypted it.
    #[error(
        "decryption of the {item} failed: the data was modified, is bound to another organisation or record, \
         or was encrypted with another key"
    )]
    DecryptionFailed { item: &'static str },
}
