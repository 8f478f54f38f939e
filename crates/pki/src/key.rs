//! A node's private key and the certificate requests made with it.

use std::fmt;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::PkiError;
use crate::ca::{check_common_name, describe_key};
use crate::identity::parse_certificate;

/// An ECDSA P-256 private key held by a node agent. `Debug` omits the key.
pub struct NodeKey {
    key: KeyPair,
}

impl NodeKey {
    /// Generates a new ECDSA P-256 key.
    pub fn generate() -> Result<Self, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        Ok(Self { key })
    }

    /// Loads a PKCS#8 PEM key, as written by [`NodeKey::key_pem`].
    pub fn from_pem(key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|error| PkiError::InvalidKey(error.to_string()))?;
        if key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(PkiError::InvalidKey(format!(
                "the key is {}, but nodes must use an ECDSA P-256 key",
                describe_key(key.algorithm())
            )));
        }
        Ok(Self { key })
    }

    /// Encodes the key as PKCS#8 PEM. The result is secret.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Creates a PKCS#10 certificate request (PEM) with common name `name` and no extensions.
    pub fn csr_pem(&self, name: &str) -> Result<String, PkiError> {
        check_common_name("node name", name)?;
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, name);
        params.distinguished_name = subject;
        let request = params.serialize_request(&self.key)?;
        Ok(request.pem()?)
    }

    /// Reports whether the certificate in `cert_pem` was issued for this key.
    pub fn matches_certificate(&self, cert_pem: &str) -> Result<bool, PkiError> {
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|error| PkiError::InvalidPem {
            input: "node certificate",
            reason: error.to_string(),
        })?;
        let cert = parse_certificate("node certificate", &der)?;
        Ok(cert.public_key().raw == rcgen::PublicKeyData::subject_public_key_info(&self.key))
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKey").finish_non_exhaustive()
    }
}
