//! Ed25519 keys that sign and verify access tokens, JWTs with `alg` `EdDSA` (RFC 8037).
//!
//! Tokens carry the signing key's id in the `kid` header. [`VerifyingKeys`] maps key ids to
//! public keys, so tokens signed by the previous key keep verifying while keys rotate.

use std::collections::HashMap;

use jsonwebtoken::{DecodingKey, EncodingKey};
use ring::signature::{Ed25519KeyPair, KeyPair};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{KEY_LEN, SecretsError, decode_key_base64, encode_key_base64, random_key};

/// Length in bytes of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;

/// Number of SHA-256 bytes that form a key id.
const KEY_ID_LEN: usize = 8;

/// DER of an unencrypted PKCS#8 v1 `PrivateKeyInfo` for Ed25519 (RFC 8410, section 7) up to
/// the seed: SEQUENCE (46 bytes) { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING
/// (34 bytes) { OCTET STRING (32 bytes) } }. The 32-byte seed follows.
const PKCS8_V1_SEED_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// An Ed25519 private key that signs access tokens, built from a 32-byte seed (RFC 8032).
///
/// `Debug` prints only the key id. The seed is zeroed when the value is dropped.
#[derive(Clone)]
pub struct SigningKey {
    seed: Zeroizing<[u8; KEY_LEN]>,
    public_key: [u8; PUBLIC_KEY_LEN],
    key_id: String,
}

impl SigningKey {
    /// Parses a signing key from standard base64 of its 32-byte seed, ignoring surrounding
    /// whitespace.
    ///
    /// # Errors
    ///
    /// [`SecretsError::InvalidKeyEncoding`] if the text is not standard base64, and
    /// [`SecretsError::InvalidKeyLength`] if it does not decode to 32 bytes.
    pub fn from_seed_base64(encoded: &str) -> Result<SigningKey, SecretsError> {
        decode_key_base64(encoded, "signing key seed").map(Self::from_seed)
    }

    /// Generates a random signing key and returns it with the base64 form of its seed for
    /// configuration.
    ///
    /// # Panics
    ///
    /// Panics if the operating system cannot provide random bytes.
    pub fn generate() -> (SigningKey, String) {
        let seed = random_key();
        let encoded = encode_key_base64(&seed);
        (Self::from_seed(seed), encoded)
    }

    fn from_seed(seed: Zeroizing<[u8; KEY_LEN]>) -> SigningKey {
        // ring 0.17 rejects a seed only when its length is not 32 bytes.
        let key_pair = Ed25519KeyPair::from_seed_unchecked(seed.as_slice()).expect("an Ed25519 seed is 32 bytes");
        let public_key: [u8; PUBLIC_KEY_LEN] = key_pair
            .public_key()
            .as_ref()
            .try_into()
            .expect("an Ed25519 public key is 32 bytes");
        SigningKey {
            seed,
            public_key,
            key_id: public_key_id(&public_key),
        }
    }

    /// Returns the key id for the JWT `kid` header: see [`public_key_id`].
    pub fn key_id(&self) -> String {
        self.key_id.clone()
    }

    /// Returns the raw 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.public_key
    }

    /// Builds the `jsonwebtoken` key that signs with `Algorithm::EdDSA`.
    ///
    /// jsonwebtoken 9.3 passes these bytes to ring's `Ed25519KeyPair::from_pkcs8_maybe_unchecked`,
    /// so they are the PKCS#8 v1 DER of the seed. The returned key contains a copy of the seed that
    /// jsonwebtoken does not zero on drop.
    pub fn encoding_key(&self) -> EncodingKey {
        let mut der = Zeroizing::new([0u8; PKCS8_V1_SEED_PREFIX.len() + KEY_LEN]);
        der[..PKCS8_V1_SEED_PREFIX.len()].copy_from_slice(&PKCS8_V1_SEED_PREFIX);
        der[PKCS8_V1_SEED_PREFIX.len()..].copy_from_slice(self.seed.as_slice());
        EncodingKey::from_ed_der(der.as_slice())
    }

    /// Builds the `jsonwebtoken` key that verifies this key's `Algorithm::EdDSA` signatures.
    pub fn decoding_key(&self) -> DecodingKey {
        decoding_key_for(&self.public_key)
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Returns the key id of an Ed25519 public key: the first 8 bytes of its SHA-256 digest, in
/// lower-case hex.
pub fn public_key_id(public_key: &[u8; PUBLIC_KEY_LEN]) -> String {
    let digest = Sha256::digest(public_key);
    hex::encode(&digest[..KEY_ID_LEN])
}

/// Builds a `jsonwebtoken` EdDSA verification key. jsonwebtoken 9.3 hands these bytes to
/// ring's `UnparsedPublicKey` with `ED25519`, which expects the raw 32-byte public key.
fn decoding_key_for(public_key: &[u8; PUBLIC_KEY_LEN]) -> DecodingKey {
    DecodingKey::from_ed_der(public_key)
}

/// Public keys that access tokens may be signed with, looked up by the token's `kid` header.
///
/// Storing the current key and the keys it replaced lets tokens issued before a rotation
/// verify until they expire.
#[derive(Clone, Default)]
pub struct VerifyingKeys {
    keys: HashMap<String, DecodingKey>,
}

impl VerifyingKeys {
    /// Creates an empty set.
    pub fn new() -> VerifyingKeys {
        VerifyingKeys::default()
    }

    /// Adds a public key under `key_id`, replacing any key already stored under that id.
    ///
    /// `key_id` is normally [`public_key_id`] of `public_key`, as [`SigningKey::key_id`]
    /// returns it. This method does not check that they match.
    pub fn add(&mut self, key_id: impl Into<String>, public_key: [u8; PUBLIC_KEY_LEN]) {
        self.keys.insert(key_id.into(), decoding_key_for(&public_key));
    }

    /// Returns the verification key stored under `key_id`, or `None` for an unknown id.
    pub fn get(&self, key_id: &str) -> Option<&DecodingKey> {
        self.keys.get(key_id)
    }
}

impl std::fmt::Debug for VerifyingKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut key_ids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        key_ids.sort_unstable();
        f.debug_struct("VerifyingKeys").field("key_ids", &key_ids).finish()
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use jsonwebtoken::errors::ErrorKind;
    use jsonwebtoken::{Algorithm, Header, Validation};
    use serde::{Deserialize, Serialize};

    use super::*;

    /// Seed and public key of test 1 in RFC 8032, section 7.1.
    const RFC8032_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC8032_PUBLIC_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    /// Expiry of the test tokens: 2100-01-01T00:00:00Z in seconds since the Unix epoch.
    const EXPIRES_AT: u64 = 4_102_444_800;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Claims {
        sub: String,
        org: String,
        exp: u64,
    }

    fn claims() -> Claims {
        Claims {
            sub: "alice".to_owned(),
            org: "org-a".to_owned(),
            exp: EXPIRES_AT,
        }
    }

    fn sign(key: &SigningKey, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.key_id());
        jsonwebtoken::encode(&header, claims, &key.encoding_key()).unwrap()
    }

    fn verify(token: &str, key: &DecodingKey) -> Result<Claims, jsonwebtoken::errors::Error> {
        jsonwebtoken::decode::<Claims>(token, key, &Validation::new(Algorithm::EdDSA)).map(|data| data.claims)
    }

    fn rfc8032_key() -> SigningKey {
        SigningKey::from_seed_base64(&STANDARD.encode(hex::decode(RFC8032_SEED).unwrap())).unwrap()
    }

    #[test]
    fn public_key_matches_rfc8032() {
        let key = rfc8032_key();
        assert_eq!(hex::encode(key.public_key()), RFC8032_PUBLIC_KEY);
    }

    #[test]
    fn key_id_is_sha256_prefix() {
        let key = rfc8032_key();
        let digest = Sha256::digest(key.public_key());
        assert_eq!(key.key_id(), hex::encode(&digest[..8]));
        assert_eq!(key.key_id().len(), 16);
        assert_eq!(public_key_id(&key.public_key()), key.key_id());
    }

    #[test]
    fn seed_base64_round_trip() {
        let (generated, encoded) = SigningKey::generate();
        let parsed = SigningKey::from_seed_base64(&encoded).unwrap();
        assert_eq!(parsed.public_key(), generated.public_key());
        assert_eq!(parsed.key_id(), generated.key_id());
    }

    #[test]
    fn seed_rejects_bad_input() {
        let error = SigningKey::from_seed_base64("%%%").unwrap_err();
        assert_eq!(
            error,
            SecretsError::InvalidKeyEncoding {
                key: "signing key seed",
                expected: 32
            }
        );
        let error = SigningKey::from_seed_base64(&STANDARD.encode([1u8; 64])).unwrap_err();
        assert_eq!(
            error,
            SecretsError::InvalidKeyLength {
                key: "signing key seed",
                expected: 32,
                actual: 64
            }
        );
    }

    #[test]
    fn debug_shows_no_seed() {
        let (key, encoded) = SigningKey::generate();
        let debug = format!("{key:?}");
        assert!(debug.contains(&key.key_id()), "{debug}");
        assert!(!debug.contains(&encoded), "{debug}");
        assert!(!debug.contains(&hex::encode(*key.seed)), "{debug}");
    }

    #[test]
    fn token_round_trip() {
        let key = rfc8032_key();
        let token = sign(&key, &claims());

        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.kid, Some(key.key_id()));
        assert_eq!(verify(&token, &key.decoding_key()).unwrap(), claims());
    }

    #[test]
    fn token_verifies_with_raw_public_key() {
        let key = rfc8032_key();
        let token = sign(&key, &claims());
        let public_key = hex::decode(RFC8032_PUBLIC_KEY).unwrap();
        assert_eq!(
            verify(&token, &DecodingKey::from_ed_der(&public_key)).unwrap(),
            claims()
        );
    }

    #[test]
    fn token_rejects_other_key() {
        let (signer, _) = SigningKey::generate();
        let (other, _) = SigningKey::generate();
        let token = sign(&signer, &claims());
        let error = verify(&token, &other.decoding_key()).unwrap_err();
        assert_eq!(*error.kind(), ErrorKind::InvalidSignature);
    }

    #[test]
    fn token_rejects_changed_payload() {
        let (key, _) = SigningKey::generate();
        let token = sign(&key, &claims());
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);

        let mut payload = URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
        let subject_at = payload.windows(5).position(|window| window == b"alice").unwrap();
        payload[subject_at] = b'b';
        let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(&payload), parts[2]);

        let error = verify(&forged, &key.decoding_key()).unwrap_err();
        assert_eq!(*error.kind(), ErrorKind::InvalidSignature);
    }

    #[test]
    fn token_rejects_hs256() {
        // An attacker who knows the public key signs with HMAC, using the public key as the secret.
        let (key, _) = SigningKey::generate();
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(&key.public_key()),
        )
        .unwrap();
        let error = verify(&token, &key.decoding_key()).unwrap_err();
        assert_eq!(*error.kind(), ErrorKind::InvalidAlgorithm);
    }

    #[test]
    fn verifying_keys_accept_previous_key() {
        let (previous, _) = SigningKey::generate();
        let (current, _) = SigningKey::generate();
        let mut keys = VerifyingKeys::new();
        keys.add(previous.key_id(), previous.public_key());
        keys.add(current.key_id(), current.public_key());

        for signer in [&previous, &current] {
            let token = sign(signer, &claims());
            let key_id = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
            let decoding_key = keys.get(&key_id).unwrap();
            assert_eq!(verify(&token, decoding_key).unwrap(), claims(), "key {key_id}");
        }
    }

    #[test]
    fn verifying_keys_miss_unknown_id() {
        let (current, _) = SigningKey::generate();
        let (retired, _) = SigningKey::generate();
        let mut keys = VerifyingKeys::new();
        keys.add(current.key_id(), current.public_key());
        assert!(keys.get(&retired.key_id()).is_none());
        assert!(keys.get("").is_none());
    }

    #[test]
    fn verifying_keys_add_replaces() {
        let (first, _) = SigningKey::generate();
        let (second, _) = SigningKey::generate();
        let mut keys = VerifyingKeys::new();
        keys.add("shared-id", first.public_key());
        keys.add("shared-id", second.public_key());
        let token = sign(&second, &claims());
        assert_eq!(verify(&token, keys.get("shared-id").unwrap()).unwrap(), claims());
        assert_eq!(format!("{keys:?}"), r#"VerifyingKeys { key_ids: ["shared-id"] }"#);
    }
}
