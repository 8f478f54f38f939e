//! Key management for rdp-proxy: per-organisation envelope encryption of target credentials
//! ([`envelope`]) and the Ed25519 keys that sign access tokens ([`signing`]).
//!
//! Nothing here performs I/O except reading the operating system's random number generator.
//! Key bytes and decrypted plaintext never appear in `Debug` output or error messages.

pub mod envelope;
mod error;
pub mod signing;

pub use envelope::{DataKey, MasterKey, WrappedKey};
pub use error::SecretsError;
pub use signing::{SigningKey, VerifyingKeys};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// Length in bytes of every key in this crate: AES-256 keys and Ed25519 seeds.
pub const KEY_LEN: usize = 32;

/// Decodes a 32-byte key from standard base64 (RFC 4648 alphabet with `=` padding), ignoring
/// surrounding whitespace such as the newline at the end of a key file.
///
/// `key_name` names the key in the error. The error never contains the input, because a
/// base64 error message would quote the offending symbol of the key.
pub(crate) fn decode_key_base64(
    encoded: &str,
    key_name: &'static str,
) -> Result<Zeroizing<[u8; KEY_LEN]>, SecretsError> {
    let decoded =
        STANDARD
            .decode(encoded.trim())
            .map(Zeroizing::new)
            .map_err(|_| SecretsError::InvalidKeyEncoding {
                key: key_name,
                expected: KEY_LEN,
            })?;
    let key: [u8; KEY_LEN] = decoded
        .as_slice()
        .try_into()
        .map_err(|_| SecretsError::InvalidKeyLength {
            key: key_name,
            expected: KEY_LEN,
            actual: decoded.len(),
        })?;
    Ok(Zeroizing::new(key))
}

/// Encodes a key as standard base64, the form [`decode_key_base64`] reads back.
pub(crate) fn encode_key_base64(key: &[u8; KEY_LEN]) -> String {
    STANDARD.encode(key)
}

/// Returns 32 bytes from the operating system's random number generator.
///
/// # Panics
///
/// Panics if the operating system cannot provide random bytes (`rand::rngs::OsRng`).
pub(crate) fn random_key() -> Zeroizing<[u8; KEY_LEN]> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, key.as_mut_slice());
    key
}
