//! PEM decoding with errors that name the input.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::PkiError;

/// Decodes every certificate in `pem`, in order; at least one is required.
pub(crate) fn certificates(input: &'static str, pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| PkiError::InvalidPem {
            input,
            reason: error.to_string(),
        })?;
    if certs.is_empty() {
        return Err(PkiError::PemCount { input, found: 0 });
    }
    Ok(certs)
}

/// Decodes the only certificate in `pem`.
pub(crate) fn single_certificate(input: &'static str, pem: &str) -> Result<CertificateDer<'static>, PkiError> {
    let mut certs = certificates(input, pem)?;
    match certs.pop() {
        Some(cert) if certs.is_empty() => Ok(cert),
        _ => Err(PkiError::PemCount {
            input,
            found: certs.len() + 1,
        }),
    }
}

/// Decodes the first private key (PKCS#8, SEC1 or PKCS#1) in `pem`.
pub(crate) fn private_key(input: &'static str, pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|error| PkiError::InvalidPem {
        input,
        reason: error.to_string(),
    })
}
