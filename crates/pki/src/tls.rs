//! rustls configurations for the node API: the server with optional client certificates and
//! revocation, the client that trusts only the cluster CA, and the pinned client for joining.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use sha2::{Digest, Sha256};

use crate::identity::identity_of;
use crate::{PkiError, Revocations, pem};

/// Time allowed to open a TCP connection and finish the TLS handshake in [`http_client`].
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for a whole request, response body included, in [`http_client`].
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Builds the node API's server configuration.
///
/// TLS 1.3 only, ALPN `h2` and `http/1.1`, and the chain sent is the server certificate(s) in
/// `server_cert_pem` followed by the CA. A client certificate is optional because the join
/// request has none. A presented one must chain to the CA, be within its validity period, name
/// a node, and have a serial that is not in `revocations`. Otherwise the handshake fails with
/// the matching alert (`unknown_ca`, `certificate_expired`, `access_denied` or
/// `certificate_revoked`).
///
/// Session resumption is disabled, because a resumed TLS 1.3 session would reuse the
/// client certificate of the first handshake without checking it again. `revocations` is
/// consulted on every new connection. An already open connection is not closed when its
/// serial is revoked, so handlers that need that check `PeerIdentity::serial` per request.
pub fn node_api_server_config(
    ca_pem: &str,
    server_cert_pem: &str,
    server_key_pem: &str,
    revocations: Revocations,
) -> Result<Arc<ServerConfig>, PkiError> {
    let certificate = Arc::new(ServerCertificate::new(ca_pem, server_cert_pem, server_key_pem)?);
    node_api_server_config_with(ca_pem, certificate, revocations)
}

/// The node API's own certificate, replaceable while the server runs, so that a long-running
/// control plane renews it before it expires. New handshakes use the newest one.
#[derive(Debug)]
pub struct ServerCertificate {
    ca: CertificateDer<'static>,
    current: RwLock<Arc<rustls::sign::CertifiedKey>>,
}

impl ServerCertificate {
    /// Loads the certificate (PEM, the CA is appended to the chain) and its private key.
    pub fn new(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let ca = pem::single_certificate("CA certificate", ca_pem)?;
        let current = RwLock::new(certified_key(&ca, cert_pem, key_pem)?);
        Ok(Self { ca, current })
    }

    /// Replaces the certificate for the handshakes that follow.
    pub fn replace(&self, cert_pem: &str, key_pem: &str) -> Result<(), PkiError> {
        let next = certified_key(&self.ca, cert_pem, key_pem)?;
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = next;
        Ok(())
    }
}

impl rustls::server::ResolvesServerCert for ServerCertificate {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

fn certified_key(
    ca: &CertificateDer<'static>,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::sign::CertifiedKey>, PkiError> {
    let mut chain = pem::certificates("server certificate", cert_pem)?;
    if !chain.contains(ca) {
        chain.push(ca.clone());
    }
    let key = pem::private_key("server private key", key_pem)?;
    let signing_key = provider().key_provider.load_private_key(key)?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(chain, signing_key)))
}

/// Builds the node API's server configuration like [`node_api_server_config`], with a
/// certificate that [`ServerCertificate::replace`] can renew.
pub fn node_api_server_config_with(
    ca_pem: &str,
    certificate: Arc<ServerCertificate>,
    revocations: Revocations,
) -> Result<Arc<ServerConfig>, PkiError> {
    let provider = provider();
    let ca = pem::single_certificate("CA certificate", ca_pem)?;

    let mut roots = RootCertStore::empty();
    roots.add(ca)?;
    let chain_check = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let verifier = Arc::new(NodeClientVerifier {
        chain_check,
        revocations,
    });

    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certificate);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// Builds a TLS 1.3 client configuration that trusts only the cluster CA and, when `identity`
/// (certificate PEM, private key PEM) is given, presents that certificate.
///
/// ALPN is left empty. [`http_client`] sets it.
pub fn client_config(ca_pem: &str, identity: Option<(&str, &str)>) -> Result<ClientConfig, PkiError> {
    let ca = pem::single_certificate("CA certificate", ca_pem)?;
    let mut roots = RootCertStore::empty();
    roots.add(ca)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert_pem, key_pem)) => {
            let chain = pem::certificates("client certificate", cert_pem)?;
            let key = pem::private_key("client private key", key_pem)?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// Builds the TLS 1.3 client configuration a node uses to join, before it has the CA.
///
/// The server is accepted only if its chain contains a certificate whose SHA-256 equals
/// `ca_fingerprint_hex` and the server certificate verifies against that certificate as the
/// only trust anchor, for the server name being connected to. The fingerprint may be upper or
/// lower case and may contain colons.
pub fn pinned_client_config(ca_fingerprint_hex: &str) -> Result<ClientConfig, PkiError> {
    let pin = parse_fingerprint(ca_fingerprint_hex)?;
    let provider = provider();
    let verifier = Arc::new(PinnedServerVerifier {
        pin,
        provider: provider.clone(),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(config)
}

/// Builds a `reqwest` client over `config`, with [`CONNECT_TIMEOUT`], [`REQUEST_TIMEOUT`],
/// HTTPS only.
pub fn http_client(config: ClientConfig) -> Result<reqwest::Client, PkiError> {
    Ok(http_client_builder(config).build()?)
}

/// Prepares the builder behind [`http_client`], for callers that add settings.
///
/// ALPN is set to `http/1.1` only, because this workspace builds reqwest without HTTP/2.
/// System proxy settings still apply unless the caller adds `no_proxy()`.
pub fn http_client_builder(mut config: ClientConfig) -> reqwest::ClientBuilder {
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .https_only(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn parse_fingerprint(text: &str) -> Result<[u8; 32], PkiError> {
    let digits: String = text.trim().chars().filter(|&c| c != ':').collect();
    let invalid = || PkiError::InvalidFingerprint(text.to_owned());
    let bytes = hex::decode(digits).map_err(|_| invalid())?;
    bytes.try_into().map_err(|_| invalid())
}

/// Client certificate verifier of the node API: the webpki chain check, then the node identity
/// and revocation checks.
#[derive(Debug)]
struct NodeClientVerifier {
    chain_check: Arc<dyn ClientCertVerifier>,
    revocations: Revocations,
}

impl ClientCertVerifier for NodeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.chain_check.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.chain_check.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain_check.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.chain_check.verify_client_cert(end_entity, intermediates, now)?;
        let (identity, serial) = identity_of(end_entity).map_err(|error| {
            tracing::debug!(%error, "rejected a CA-signed client certificate without a node identity");
            CertificateError::ApplicationVerificationFailure
        })?;
        if self.revocations.contains(&serial) {
            tracing::debug!(node.id = %identity.node, serial, "rejected a revoked node certificate");
            return Err(CertificateError::Revoked.into());
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain_check.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain_check.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain_check.supported_verify_schemes()
    }
}

/// Server certificate verifier that takes its one trust anchor from the presented chain, found
/// by SHA-256 pin.
#[derive(Debug)]
struct PinnedServerVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pinned = std::iter::once(end_entity)
            .chain(intermediates)
            .find(|cert| Sha256::digest(cert.as_ref()).as_slice() == self.pin)
            .ok_or_else(|| {
                let pin = hex::encode(self.pin);
                tracing::debug!(pin, "no certificate in the server's chain matches the CA pin");
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
            })?;

        let mut roots = RootCertStore::empty();
        roots.add(pinned.clone().into_owned())?;
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|error| {
                    rustls::Error::General(format!("building the verifier for the pinned CA failed: {error}"))
                })?;
        verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    // The handshake signatures are checked with the same provider algorithms that
    // `WebPkiServerVerifier` uses, because the verifier above exists only during
    // `verify_server_cert`.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_spellings_parse() {
        let lower = "ab".repeat(32);
        let upper_with_colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_fingerprint(&lower).ok(), Some([0xab; 32]));
        assert_eq!(parse_fingerprint(&upper_with_colons).ok(), Some([0xab; 32]));
    }

    #[test]
    fn short_or_non_hex_fingerprints_are_rejected() {
        for text in ["", "abcd", &"zz".repeat(32), &"ab".repeat(33)] {
            let parsed = parse_fingerprint(text);
            assert!(
                matches!(parsed, Err(PkiError::InvalidFingerprint(_))),
                "{text}: {parsed:?}"
            );
        }
    }
}
