//! Per-organisation envelope encryption of target credentials.
//!
//! A configured [`MasterKey`] wraps one random [`DataKey`] per organisation, and the data key
//! seals each credential. Both layers use AES-256-GCM with a random 96-bit nonce stored in
//! front of the ciphertext (`nonce || ciphertext || tag`). The associated data binds each
//! ciphertext to where it is stored: a wrapped key to its organisation id, a sealed credential
//! to its organisation and record ids. A blob copied to another organisation or row therefore
//! fails authentication instead of decrypting.
//!
//! NIST SP 800-38D allows at most 2^32 encryptions with random nonces under one key. One data
//! key per organisation stays far below that for credential rows, but it must not be used to
//! seal high-volume data.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::{KEY_LEN, SecretsError, decode_key_base64, encode_key_base64, random_key};

/// Length in bytes of the random AES-GCM nonce at the start of every ciphertext.
pub const NONCE_LEN: usize = 12;

/// Length in bytes of the AES-GCM authentication tag at the end of every ciphertext.
pub const TAG_LEN: usize = 16;

/// Number of SHA-256 bytes that form a master key id.
const MASTER_KEY_ID_LEN: usize = 8;

/// The platform's key-encryption key, read from configuration, which wraps the organisations'
/// data keys.
///
/// `Debug` prints only [`MasterKey::id`]. The key bytes are zeroed when the value is dropped.
#[derive(Clone)]
pub struct MasterKey {
    key: Zeroizing<[u8; KEY_LEN]>,
    id: String,
}

impl MasterKey {
    /// Parses a master key from standard base64 of exactly 32 bytes, ignoring surrounding
    /// whitespace.
    ///
    /// # Errors
    ///
    /// [`SecretsError::InvalidKeyEncoding`] if the text is not standard base64, and
    /// [`SecretsError::InvalidKeyLength`] if it does not decode to 32 bytes.
    pub fn from_base64(encoded: &str) -> Result<MasterKey, SecretsError> {
        decode_key_base64(encoded, "master key").map(Self::from_key)
    }

    /// Generates a random master key and returns it with its base64 form for configuration.
    ///
    /// # Panics
    ///
    /// Panics if the operating system cannot provide random bytes.
    pub fn generate() -> (MasterKey, String) {
        let key = random_key();
        let encoded = encode_key_base64(&key);
        (Self::from_key(key), encoded)
    }

    fn from_key(key: Zeroizing<[u8; KEY_LEN]>) -> MasterKey {
        let digest = Sha256::digest(key.as_slice());
        let id = hex::encode(&digest[..MASTER_KEY_ID_LEN]);
        MasterKey { key, id }
    }

    /// Returns the key id: the first 8 bytes of the SHA-256 digest of the key, in lower-case
    /// hex. Stored rows record it to name the master key that wrapped them.
    pub fn id(&self) -> String {
        self.id.clone()
    }

    /// Encrypts `key` for organisation `org`. Only [`MasterKey::unwrap`] with the same master
    /// key and the same `org` recovers it.
    ///
    /// # Panics
    ///
    /// Panics if the operating system cannot provide random bytes for the nonce.
    pub fn wrap(&self, org: Uuid, key: &DataKey) -> WrappedKey {
        WrappedKey {
            master_key_id: self.id.clone(),
            bytes: seal_with_key(&self.key, org.as_bytes(), key.key.as_slice()),
        }
    }

    /// Decrypts a data key that [`MasterKey::wrap`] encrypted for organisation `org`.
    ///
    /// # Errors
    ///
    /// - [`SecretsError::MasterKeyMismatch`] if `wrapped` names another master key id.
    /// - [`SecretsError::Truncated`] if `wrapped.bytes` cannot hold a nonce and a tag.
    /// - [`SecretsError::DecryptionFailed`] if the bytes were modified or wrapped for another
    ///   organisation.
    /// - [`SecretsError::InvalidKeyLength`] if the decrypted key is not 32 bytes, which
    ///   happens only for a ciphertext that `wrap` did not produce.
    pub fn unwrap(&self, org: Uuid, wrapped: &WrappedKey) -> Result<DataKey, SecretsError> {
        if wrapped.master_key_id != self.id {
            return Err(SecretsError::MasterKeyMismatch {
                wrapped_by: wrapped.master_key_id.clone(),
                configured: self.id.clone(),
            });
        }
        let plaintext = open_with_key(&self.key, org.as_bytes(), &wrapped.bytes, "wrapped data key")?;
        let key: [u8; KEY_LEN] = plaintext
            .as_slice()
            .try_into()
            .map_err(|_| SecretsError::InvalidKeyLength {
                key: "unwrapped data key",
                expected: KEY_LEN,
                actual: plaintext.len(),
            })?;
        Ok(DataKey {
            key: Zeroizing::new(key),
        })
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish()
    }
}

/// An organisation's credential-encryption key: 32 random bytes, stored only as a
/// [`WrappedKey`].
///
/// `Debug` prints no key material. The key bytes are zeroed when the value is dropped.
#[derive(Clone)]
pub struct DataKey {
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl DataKey {
    /// Generates a random data key.
    ///
    /// # Panics
    ///
    /// Panics if the operating system cannot provide random bytes.
    pub fn generate() -> DataKey {
        DataKey { key: random_key() }
    }

    /// Encrypts a credential stored in row `record` of organisation `org`. The result is
    /// `nonce || ciphertext || tag`, 28 bytes longer than `plaintext`.
    ///
    /// # Panics
    ///
    /// Panics if the operating system cannot provide random bytes for the nonce, or if
    /// `plaintext` exceeds the AES-GCM limit of 2^36 - 32 bytes.
    pub fn seal(&self, org: Uuid, record: Uuid, plaintext: &[u8]) -> Vec<u8> {
        seal_with_key(&self.key, &record_associated_data(org, record), plaintext)
    }

    /// Decrypts a credential that [`DataKey::seal`] encrypted for the same `org` and `record`.
    /// The plaintext is zeroed when the returned buffer is dropped.
    ///
    /// # Errors
    ///
    /// [`SecretsError::Truncated`] if `sealed` cannot hold a nonce and a tag, and
    /// [`SecretsError::DecryptionFailed`] if it was modified, sealed for another organisation
    /// or record, or sealed with another data key.
    pub fn open(&self, org: Uuid, record: Uuid, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
        open_with_key(
            &self.key,
            &record_associated_data(org, record),
            sealed,
            "sealed credential",
        )
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey").finish_non_exhaustive()
    }
}

/// A [`DataKey`] encrypted by a [`MasterKey`], as stored beside the organisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    /// [`MasterKey::id`] of the master key that wrapped the data key.
    pub master_key_id: String,
    /// `nonce || ciphertext || tag`: 12 + 32 + 16 bytes.
    pub bytes: Vec<u8>,
}

/// Builds the associated data of a sealed credential: the organisation id followed by the
/// record id, 16 bytes each.
fn record_associated_data(org: Uuid, record: Uuid) -> [u8; 32] {
    let mut associated_data = [0u8; 32];
    associated_data[..16].copy_from_slice(org.as_bytes());
    associated_data[16..].copy_from_slice(record.as_bytes());
    associated_data
}

/// Encrypts `plaintext` with AES-256-GCM under a random nonce and returns
/// `nonce || ciphertext || tag`.
fn seal_with_key(key: &[u8; KEY_LEN], associated_data: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new(key.into());
    let mut nonce = [0u8; NONCE_LEN];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
    let payload = Payload {
        msg: plaintext,
        aad: associated_data,
    };
    let ciphertext = cipher
        .encrypt(&nonce.into(), payload)
        .expect("AES-GCM encryption fails only for plaintext over 2^36 - 32 bytes");

    let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&ciphertext);
    sealed
}

/// Decrypts `nonce || ciphertext || tag` as written by [`seal_with_key`]. `item` names the
/// ciphertext in errors.
fn open_with_key(
    key: &[u8; KEY_LEN],
    associated_data: &[u8],
    sealed: &[u8],
    item: &'static str,
) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
    let truncated = || SecretsError::Truncated {
        item,
        actual: sealed.len(),
        minimum: NONCE_LEN + TAG_LEN,
    };
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(truncated());
    }
    let (nonce, ciphertext) = sealed.split_first_chunk::<NONCE_LEN>().ok_or_else(truncated)?;

    let cipher = Aes256Gcm::new(key.into());
    let payload = Payload {
        msg: ciphertext,
        aad: associated_data,
    };
    cipher
        .decrypt(nonce.into(), payload)
        .map(Zeroizing::new)
        .map_err(|_| SecretsError::DecryptionFailed { item })
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    fn org_a() -> Uuid {
        Uuid::from_u128(0x0a)
    }

    fn org_b() -> Uuid {
        Uuid::from_u128(0x0b)
    }

    fn record_1() -> Uuid {
        Uuid::from_u128(0x1001)
    }

    fn record_2() -> Uuid {
        Uuid::from_u128(0x1002)
    }

    #[test]
    fn master_key_base64_round_trip() {
        let (generated, encoded) = MasterKey::generate();
        let parsed = MasterKey::from_base64(&encoded).unwrap();
        assert_eq!(parsed.id(), generated.id());
        assert_eq!(*parsed.key, *generated.key);
    }

    #[test]
    fn master_key_ignores_surrounding_whitespace() {
        let (generated, encoded) = MasterKey::generate();
        let parsed = MasterKey::from_base64(&format!("  {encoded}\n")).unwrap();
        assert_eq!(parsed.id(), generated.id());
    }

    #[test]
    fn master_key_rejects_wrong_length() {
        for length in [0, 16, 31, 33, 64] {
            let encoded = STANDARD.encode(vec![7u8; length]);
            let error = MasterKey::from_base64(&encoded).unwrap_err();
            assert_eq!(
                error,
                SecretsError::InvalidKeyLength {
                    key: "master key",
                    expected: 32,
                    actual: length
                },
                "length {length}"
            );
        }
    }

    #[test]
    fn master_key_rejects_invalid_base64() {
        let (_, encoded) = MasterKey::generate();
        let url_safe = base64::engine::general_purpose::URL_SAFE.encode([0xfb; 32]);
        let cases = [
            "not base64 at all!".to_owned(),
            encoded.trim_end_matches('=').to_owned(),
            url_safe,
            format!("{}*{}", &encoded[..10], &encoded[11..]),
        ];
        for input in cases {
            let error = MasterKey::from_base64(&input).unwrap_err();
            assert_eq!(
                error,
                SecretsError::InvalidKeyEncoding {
                    key: "master key",
                    expected: 32
                },
                "input {input:?}"
            );
        }
    }

    #[test]
    fn master_key_error_omits_input() {
        let secret_looking = format!("{}!", STANDARD.encode([0x5a; 32]));
        let message = MasterKey::from_base64(&secret_looking).unwrap_err().to_string();
        assert!(!message.contains(&secret_looking[..20]), "{message}");
        assert!(message.contains("master key"), "{message}");
    }

    #[test]
    fn master_key_id_is_sha256_prefix() {
        // SHA-256 of 32 zero bytes is 66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925.
        let key = MasterKey::from_base64(&STANDARD.encode([0u8; 32])).unwrap();
        assert_eq!(key.id(), "66687aadf862bd77");
    }

    #[test]
    fn master_key_debug_shows_only_id() {
        let (key, encoded) = MasterKey::generate();
        let debug = format!("{key:?}");
        assert_eq!(debug, format!("MasterKey {{ id: {:?} }}", key.id()));
        assert!(!debug.contains(&encoded));
        assert!(!debug.contains(&hex::encode(*key.key)));
    }

    #[test]
    fn data_key_debug_shows_no_key() {
        let key = DataKey::generate();
        let debug = format!("{key:?}");
        assert_eq!(debug, "DataKey { .. }");
        assert!(!debug.contains(&hex::encode(*key.key)));
        assert!(!debug.contains(&STANDARD.encode(*key.key)));
    }

    #[test]
    fn wrap_unwrap_round_trip() {
        let (master, _) = MasterKey::generate();
        let data_key = DataKey::generate();
        let wrapped = master.wrap(org_a(), &data_key);
        assert_eq!(wrapped.master_key_id, master.id());
        assert_eq!(wrapped.bytes.len(), NONCE_LEN + KEY_LEN + TAG_LEN);

        let unwrapped = master.unwrap(org_a(), &wrapped).unwrap();
        assert_eq!(*unwrapped.key, *data_key.key);
    }

    #[test]
    fn wrap_uses_fresh_nonce() {
        let (master, _) = MasterKey::generate();
        let data_key = DataKey::generate();
        let first = master.wrap(org_a(), &data_key);
        let second = master.wrap(org_a(), &data_key);
        assert_ne!(first.bytes[..NONCE_LEN], second.bytes[..NONCE_LEN]);
        assert_ne!(first.bytes, second.bytes);
    }

    #[test]
    fn unwrap_rejects_other_org() {
        let (master, _) = MasterKey::generate();
        let wrapped = master.wrap(org_a(), &DataKey::generate());
        let error = master.unwrap(org_b(), &wrapped).unwrap_err();
        assert_eq!(
            error,
            SecretsError::DecryptionFailed {
                item: "wrapped data key"
            }
        );
    }

    #[test]
    fn unwrap_rejects_every_tampered_byte() {
        let (master, _) = MasterKey::generate();
        let wrapped = master.wrap(org_a(), &DataKey::generate());
        for index in 0..wrapped.bytes.len() {
            let mut tampered = wrapped.clone();
            tampered.bytes[index] ^= 0x01;
            let error = master.unwrap(org_a(), &tampered).unwrap_err();
            assert_eq!(
                error,
                SecretsError::DecryptionFailed {
                    item: "wrapped data key"
                },
                "byte {index}"
            );
        }
    }

    #[test]
    fn unwrap_rejects_truncated_bytes() {
        let (master, _) = MasterKey::generate();
        let mut wrapped = master.wrap(org_a(), &DataKey::generate());
        wrapped.bytes.truncate(NONCE_LEN + TAG_LEN - 1);
        let error = master.unwrap(org_a(), &wrapped).unwrap_err();
        assert_eq!(
            error,
            SecretsError::Truncated {
                item: "wrapped data key",
                actual: 27,
                minimum: 28
            }
        );
    }

    #[test]
    fn unwrap_rejects_other_master_key() {
        let (master, _) = MasterKey::generate();
        let (other, _) = MasterKey::generate();
        let wrapped = master.wrap(org_a(), &DataKey::generate());

        let error = other.unwrap(org_a(), &wrapped).unwrap_err();
        assert_eq!(
            error,
            SecretsError::MasterKeyMismatch {
                wrapped_by: master.id(),
                configured: other.id()
            }
        );
        let message = error.to_string();
        assert!(message.contains(&master.id()), "{message}");
        assert!(message.contains(&other.id()), "{message}");
    }

    #[test]
    fn unwrap_rejects_forged_master_key_id() {
        let (master, _) = MasterKey::generate();
        let (other, _) = MasterKey::generate();
        let mut wrapped = master.wrap(org_a(), &DataKey::generate());
        wrapped.master_key_id = other.id();
        let error = other.unwrap(org_a(), &wrapped).unwrap_err();
        assert_eq!(
            error,
            SecretsError::DecryptionFailed {
                item: "wrapped data key"
            }
        );
    }

    #[test]
    fn seal_open_round_trip() {
        let key = DataKey::generate();
        for plaintext in [&b""[..], b"p", b"correct horse battery staple", &[0xffu8; 4096]] {
            let sealed = key.seal(org_a(), record_1(), plaintext);
            assert_eq!(sealed.len(), NONCE_LEN + plaintext.len() + TAG_LEN);
            let opened = key.open(org_a(), record_1(), &sealed).unwrap();
            assert_eq!(opened.as_slice(), plaintext);
        }
    }

    #[test]
    fn seal_hides_plaintext() {
        let key = DataKey::generate();
        let plaintext = b"hunter2 hunter2 hunter2";
        let first = key.seal(org_a(), record_1(), plaintext);
        let second = key.seal(org_a(), record_1(), plaintext);
        assert_ne!(first, second);
        assert!(!first.windows(plaintext.len()).any(|window| window == plaintext));
    }

    #[test]
    fn open_after_unwrap() {
        let (master, encoded) = MasterKey::generate();
        let data_key = DataKey::generate();
        let wrapped = master.wrap(org_a(), &data_key);
        let sealed = data_key.seal(org_a(), record_1(), b"secret");

        let restarted = MasterKey::from_base64(&encoded).unwrap();
        let unwrapped = restarted.unwrap(org_a(), &wrapped).unwrap();
        assert_eq!(
            unwrapped.open(org_a(), record_1(), &sealed).unwrap().as_slice(),
            b"secret"
        );
    }

    #[test]
    fn open_rejects_other_binding() {
        let key = DataKey::generate();
        let sealed = key.seal(org_a(), record_1(), b"secret");
        let failed = SecretsError::DecryptionFailed {
            item: "sealed credential",
        };
        assert_eq!(key.open(org_b(), record_1(), &sealed).unwrap_err(), failed, "other org");
        assert_eq!(
            key.open(org_a(), record_2(), &sealed).unwrap_err(),
            failed,
            "other record"
        );
        assert_eq!(
            key.open(record_1(), org_a(), &sealed).unwrap_err(),
            failed,
            "org and record swapped"
        );
    }

    #[test]
    fn open_rejects_other_data_key() {
        let sealed = DataKey::generate().seal(org_a(), record_1(), b"secret");
        let error = DataKey::generate().open(org_a(), record_1(), &sealed).unwrap_err();
        assert_eq!(
            error,
            SecretsError::DecryptionFailed {
                item: "sealed credential"
            }
        );
    }

    #[test]
    fn open_rejects_every_tampered_byte() {
        let key = DataKey::generate();
        let sealed = key.seal(org_a(), record_1(), b"secret");
        for index in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[index] ^= 0x80;
            let error = key.open(org_a(), record_1(), &tampered).unwrap_err();
            assert_eq!(
                error,
                SecretsError::DecryptionFailed {
                    item: "sealed credential"
                },
                "byte {index}"
            );
        }
    }

    #[test]
    fn open_rejects_truncated_and_extended() {
        let key = DataKey::generate();
        let sealed = key.seal(org_a(), record_1(), b"secret");
        for length in [0, 1, NONCE_LEN, NONCE_LEN + TAG_LEN - 1] {
            let error = key.open(org_a(), record_1(), &sealed[..length]).unwrap_err();
            assert_eq!(
                error,
                SecretsError::Truncated {
                    item: "sealed credential",
                    actual: length,
                    minimum: 28
                }
            );
        }
        let error = key.open(org_a(), record_1(), &sealed[..sealed.len() - 1]).unwrap_err();
        assert_eq!(
            error,
            SecretsError::DecryptionFailed {
                item: "sealed credential"
            },
            "tag cut short"
        );
        let mut extended = sealed.clone();
        extended.push(0);
        let error = key.open(org_a(), record_1(), &extended).unwrap_err();
        assert_eq!(
            error,
            SecretsError::DecryptionFailed {
                item: "sealed credential"
            },
            "byte appended"
        );
    }

    #[test]
    fn errors_omit_plaintext() {
        let key = DataKey::generate();
        let sealed = key.seal(org_a(), record_1(), b"plaintext-password");
        let message = key.open(org_b(), record_1(), &sealed).unwrap_err().to_string();
        assert!(!message.contains("plaintext-password"), "{message}");
    }
}
