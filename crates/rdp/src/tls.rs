//! TLS upgrade of an RDP connection, with optional pinning of the server certificate.
//!
//! RDP servers usually present self-signed certificates, so there is no chain to validate.
//! A target is authenticated by the SHA-256 fingerprint of its DER certificate when one is
//! configured. Handshake signatures are always verified against the presented certificate,
//! so a peer cannot replay a pinned certificate without its private key.

use std::sync::{Arc, Mutex, Once, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tracing::{debug, warn};
use x509_cert::der::Decode as _;

use crate::error::{ConnectError, ConnectErrorKind, error_chain};

static UNPINNED_WARNING: Once = Once::new();

/// An upgraded stream and what CredSSP needs from the server certificate.
pub(crate) struct UpgradedStream {
    pub(crate) stream: TlsStream<TcpStream>,
    /// The certificate's subjectPublicKey bits, which CredSSP binds the NLA exchange to.
    pub(crate) server_public_key: Vec<u8>,
}

/// Runs the TLS handshake on `tcp` and checks the server certificate against `pin`.
///
/// `target` is the `host:port` label used in error messages.
pub(crate) async fn upgrade(
    tcp: TcpStream,
    host: &str,
    target: &str,
    pin: Option<[u8; 32]>,
) -> Result<UpgradedStream, ConnectError> {
    if pin.is_none() {
        UNPINNED_WARNING.call_once(|| {
            warn!(
                target_address = target,
                "Accepting any TLS certificate from RDP targets without a pinned SHA-256 fingerprint"
            );
        });
    }

    let verifier = Arc::new(FingerprintVerifier::new(pin));
    let config = client_config(Arc::clone(&verifier) as Arc<dyn ServerCertVerifier>)?;
    let server_name = ServerName::try_from(host.to_owned()).map_err(|error| {
        ConnectError::new(
            ConnectErrorKind::Protocol,
            format!("invalid host name {host:?} for TLS: {error}"),
        )
    })?;

    let handshake = TlsConnector::from(Arc::new(config)).connect(server_name, tcp).await;
    let mut stream = match handshake {
        Ok(stream) => stream,
        Err(error) => {
            if let (Some(expected), Some(actual)) = (pin, verifier.presented())
                && expected != actual
            {
                return Err(ConnectError::new(
                    ConnectErrorKind::CertificateMismatch,
                    format!(
                        "TLS certificate of {target} does not match the pinned fingerprint: \
                         expected SHA-256 {}, got {}",
                        hex_fingerprint(&expected),
                        hex_fingerprint(&actual)
                    ),
                ));
            }
            return Err(ConnectError::new(
                ConnectErrorKind::Protocol,
                format!("TLS handshake with {target} failed: {}", error_chain(&error)),
            ));
        }
    };
    stream.flush().await.map_err(|error| {
        ConnectError::new(
            ConnectErrorKind::Protocol,
            format!("TLS handshake with {target} failed: {error}"),
        )
    })?;

    let certificate = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certificates| certificates.first())
        .ok_or_else(|| {
            ConnectError::new(
                ConnectErrorKind::Protocol,
                format!("TLS server {target} sent no certificate"),
            )
        })?;
    if let Some(fingerprint) = verifier.presented() {
        debug!(target_address = target, sha256 = %hex_fingerprint(&fingerprint), "Received TLS certificate");
    }
    let server_public_key = subject_public_key(certificate.as_ref()).map_err(|reason| {
        ConnectError::new(
            ConnectErrorKind::Protocol,
            format!("TLS certificate of {target} is invalid: {reason}"),
        )
    })?;

    Ok(UpgradedStream {
        stream,
        server_public_key,
    })
}

/// Formats a fingerprint as colon-separated uppercase hex, as `openssl x509 -fingerprint` does.
pub(crate) fn hex_fingerprint(fingerprint: &[u8; 32]) -> String {
    let parts: Vec<String> = fingerprint.iter().map(|byte| format!("{byte:02X}")).collect();
    parts.join(":")
}

fn client_config(verifier: Arc<dyn ServerCertVerifier>) -> Result<ClientConfig, ConnectError> {
    // An explicit provider, because `ClientConfig::builder()` panics when a binary links
    // more than one rustls crypto backend and none was installed process-wide.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| {
            ConnectError::new(
                ConnectErrorKind::Protocol,
                format!("TLS client configuration is invalid: {error}"),
            )
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // A resumed session carries no certificate, so there would be nothing to pin and no
    // public key for CredSSP.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// Extracts the subjectPublicKey bit string contents from a DER certificate.
fn subject_public_key(der: &[u8]) -> Result<Vec<u8>, String> {
    let certificate = x509_cert::Certificate::from_der(der).map_err(|error| error.to_string())?;
    let key = certificate
        .tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| "the subject public key has unused bits".to_owned())?;
    Ok(key.to_vec())
}

/// Accepts the certificate whose SHA-256 matches the pin, or any certificate without a pin,
/// and records the fingerprint that was presented.
#[derive(Debug)]
struct FingerprintVerifier {
    pin: Option<[u8; 32]>,
    presented: Mutex<Option<[u8; 32]>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl FingerprintVerifier {
    fn new(pin: Option<[u8; 32]>) -> Self {
        Self {
            pin,
            presented: Mutex::new(None),
            algorithms: rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
        }
    }

    fn presented(&self) -> Option<[u8; 32]> {
        *self.presented.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ServerCertVerifier for FingerprintVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fingerprint: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        *self.presented.lock().unwrap_or_else(PoisonError::into_inner) = Some(fingerprint);
        match self.pin {
            Some(pin) if pin != fingerprint => Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_hex_format() {
        let mut fingerprint = [0u8; 32];
        fingerprint[0] = 0xAB;
        fingerprint[31] = 0x01;
        let text = hex_fingerprint(&fingerprint);
        assert!(text.starts_with("AB:00:"), "{text}");
        assert!(text.ends_with(":00:01"), "{text}");
        assert_eq!(text.len(), 32 * 3 - 1);
    }
}
