//! The cluster CA and the certificates it issues.

use std::fmt;
use std::net::IpAddr;

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256, PublicKeyData,
    SanType, SerialNumber, SignatureAlgorithm, SubjectPublicKeyInfo,
};
use rdp_proxy_core::node::wire::IssuedCertificate;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer, DnsName};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use crate::identity::{CONTROL_PLANE_URI, NodeIdentity, parse_certificate};
use crate::{PkiError, pem};

/// Validity of a generated CA certificate: ten years of 365 days.
pub const CA_VALIDITY: time::Duration = time::Duration::days(3650);

/// How far `not_before` is set before the issuing time, so that a verifier whose clock is a
/// little behind still accepts a fresh certificate.
pub const CLOCK_SKEW: time::Duration = time::Duration::minutes(5);

/// Maximum length of a common name (`ub-common-name` in RFC 5280).
const MAX_COMMON_NAME_CHARS: usize = 64;

/// Common name of certificates made by [`ClusterCa::issue_server`].
const SERVER_COMMON_NAME: &str = "rdp-proxy control plane";

/// The cluster's certificate authority: an ECDSA P-256 key and its self-signed certificate.
///
/// `Debug` shows the fingerprint and expiry only.
pub struct ClusterCa {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key_pem: String,
    not_after: OffsetDateTime,
    issuer: Issuer<'static, KeyPair>,
}

/// Parameters of a certificate about to be signed, with the facts returned to the caller.
struct Leaf {
    params: CertificateParams,
    serial: String,
    not_after: OffsetDateTime,
}

impl ClusterCa {
    /// Generates a new CA named `"<cluster_name> CA"`, valid for [`CA_VALIDITY`] from now.
    ///
    /// The certificate is self-signed, may sign only end-entity certificates (path length 0)
    /// and has the key usages keyCertSign and cRLSign.
    pub fn generate(cluster_name: &str) -> Result<Self, PkiError> {
        if cluster_name.trim().is_empty() {
            return Err(PkiError::InvalidName {
                input: "cluster name",
                value: cluster_name.to_owned(),
                reason: "it is empty",
            });
        }
        let common_name = format!("{cluster_name} CA");
        check_common_name("cluster name", &common_name)?;

        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let now = whole_seconds(OffsetDateTime::now_utc());
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        subject.push(DnType::OrganizationName, "rdp-proxy");
        subject.push(DnType::CommonName, common_name);
        params.distinguished_name = subject;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + CA_VALIDITY;
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
        let cert = params.self_signed(&key)?;

        // Loading through `from_pem` gives a new CA exactly the state of one restored from disk.
        Self::from_pem(&cert.pem(), &key.serialize_pem())
    }

    /// Loads a CA from its certificate and PKCS#8 private key, both PEM.
    ///
    /// Rejects a certificate that is not a CA and a key that does not belong to it.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let cert_der = pem::single_certificate("CA certificate", cert_pem)?;
        let cert = parse_certificate("CA certificate", &cert_der)?;
        if !cert.is_ca() {
            return Err(PkiError::NotCa);
        }
        let key_usage = cert.key_usage().map_err(|error| PkiError::InvalidCertificate {
            input: "CA certificate key usage",
            reason: error.to_string(),
        })?;
        if key_usage.is_some_and(|usage| !usage.value.key_cert_sign()) {
            return Err(PkiError::NotCa);
        }

        let key = KeyPair::from_pem(key_pem).map_err(|error| PkiError::InvalidKey(error.to_string()))?;
        if key.subject_public_key_info() != cert.public_key().raw {
            return Err(PkiError::KeyMismatch);
        }
        let not_after = cert.validity().not_after.to_datetime();
        let key_pem = key.serialize_pem();
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            cert_der,
            key_pem,
            not_after,
            issuer,
        })
    }

    /// Returns the CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Returns the CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Returns the CA private key as PKCS#8 PEM. The result is secret.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Expiry of the CA certificate.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Computes the lowercase hex SHA-256 of the CA certificate's DER, which joining nodes pin.
    pub fn fingerprint(&self) -> String {
        fingerprint_of_der(&self.cert_der)
    }

    /// Issues a node certificate for the key in a PKCS#10 request.
    ///
    /// Verifies the request's signature and requires an ECDSA P-256 key, then ignores
    /// everything else in the request: the subject is CN=`name`, the subject alternative names
    /// are the URIs of `identity`, the extended key usages are clientAuth and serverAuth, and
    /// the certificate is valid from `now - CLOCK_SKEW` to `now + validity` (whole seconds).
    pub fn issue_node(
        &self,
        csr_pem: &str,
        identity: &NodeIdentity,
        name: &str,
        validity: std::time::Duration,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate, PkiError> {
        let public_key = verified_request_key(csr_pem)?;
        let mut leaf = self.leaf("node name", name, validity, now)?;
        leaf.params.subject_alt_names = identity.uris().into_iter().map(uri_name).collect::<Result<_, _>>()?;
        leaf.params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ClientAuth, ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(leaf, &public_key)
    }

    /// Issues a TLS server certificate and a new ECDSA P-256 key (PKCS#8 PEM) for the control
    /// plane, with CN=`rdp-proxy control plane` and the extended key usage serverAuth.
    ///
    /// Each entry of `names` that parses as an IP address becomes an IP address subject
    /// alternative name, and every other entry must be a DNS name.
    pub fn issue_server(
        &self,
        names: &[String],
        validity: std::time::Duration,
        now: OffsetDateTime,
    ) -> Result<(IssuedCertificate, String), PkiError> {
        if names.is_empty() {
            return Err(PkiError::InvalidName {
                input: "server name list",
                value: String::new(),
                reason: "at least one DNS name or IP address is required",
            });
        }
        let subject_alt_names = names.iter().map(|name| server_name(name)).collect::<Result<_, _>>()?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut leaf = self.leaf("server common name", SERVER_COMMON_NAME, validity, now)?;
        leaf.params.subject_alt_names = subject_alt_names;
        leaf.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let issued = self.sign(leaf, &key)?;
        Ok((issued, key.serialize_pem()))
    }

    /// Issues a TLS client certificate and a new ECDSA P-256 key (PKCS#8 PEM) for the control
    /// plane, with CN=`name` and the subject alternative name [`CONTROL_PLANE_URI`].
    pub fn issue_client(
        &self,
        name: &str,
        validity: std::time::Duration,
        now: OffsetDateTime,
    ) -> Result<(IssuedCertificate, String), PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut leaf = self.leaf("client name", name, validity, now)?;
        leaf.params.subject_alt_names = vec![uri_name(CONTROL_PLANE_URI.to_owned())?];
        leaf.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let issued = self.sign(leaf, &key)?;
        Ok((issued, key.serialize_pem()))
    }

    /// Builds the parameters shared by every end-entity certificate: subject, validity window,
    /// random serial, digitalSignature key usage and the authority key identifier.
    fn leaf(
        &self,
        input: &'static str,
        common_name: &str,
        validity: std::time::Duration,
        now: OffsetDateTime,
    ) -> Result<Leaf, PkiError> {
        check_common_name(input, common_name)?;
        let now = whole_seconds(now);
        let invalid_validity = || PkiError::InvalidValidity(validity);
        if validity < std::time::Duration::from_secs(1) {
            return Err(invalid_validity());
        }
        let span = time::Duration::try_from(validity).map_err(|_| invalid_validity())?;
        let not_after = now.checked_add(span).map(whole_seconds).ok_or_else(invalid_validity)?;
        if not_after > self.not_after {
            return Err(PkiError::OutlivesCa {
                not_after,
                ca_not_after: self.not_after,
            });
        }

        let serial = random_serial()?;
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, common_name);
        params.distinguished_name = subject;
        params.is_ca = IsCa::ExplicitNoCa;
        params.not_before = now - CLOCK_SKEW;
        params.not_after = not_after;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        Ok(Leaf {
            params,
            serial: hex::encode(serial),
            not_after,
        })
    }

    fn sign(&self, leaf: Leaf, public_key: &impl PublicKeyData) -> Result<IssuedCertificate, PkiError> {
        let cert = leaf.params.signed_by(public_key, &self.issuer)?;
        Ok(IssuedCertificate {
            cert_pem: cert.pem(),
            serial: leaf.serial,
            not_after: leaf.not_after,
        })
    }
}

impl fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCa")
            .field("fingerprint", &self.fingerprint())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Computes the lowercase hex SHA-256 of the only certificate in `cert_pem`, in the same form
/// as [`ClusterCa::fingerprint`].
pub fn certificate_fingerprint(cert_pem: &str) -> Result<String, PkiError> {
    let der = pem::single_certificate("certificate", cert_pem)?;
    Ok(fingerprint_of_der(&der))
}

pub(crate) fn fingerprint_of_der(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Checks a common name: not empty, at most 64 characters, no control characters.
pub(crate) fn check_common_name(input: &'static str, name: &str) -> Result<(), PkiError> {
    let reason = if name.trim().is_empty() {
        Some("it is empty")
    } else if name.chars().count() > MAX_COMMON_NAME_CHARS {
        Some("it is longer than 64 characters")
    } else if name.chars().any(char::is_control) {
        Some("it contains control characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(PkiError::InvalidName {
            input,
            value: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Parses a PEM certificate request, verifies its signature and returns its public key, which
/// must be ECDSA P-256.
fn verified_request_key(csr_pem: &str) -> Result<SubjectPublicKeyInfo, PkiError> {
    let der =
        CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes()).map_err(|error| PkiError::InvalidPem {
            input: "certificate request",
            reason: error.to_string(),
        })?;
    let (rest, request) =
        X509CertificationRequest::from_der(der.as_ref()).map_err(|error| PkiError::InvalidCsr(error.to_string()))?;
    if !rest.is_empty() {
        return Err(PkiError::InvalidCsr(format!("{} bytes follow the request", rest.len())));
    }
    request.verify_signature().map_err(|_| PkiError::CsrSignature)?;

    let spki = &request.certification_request_info.subject_pki;
    let key = SubjectPublicKeyInfo::from_der(spki.raw).map_err(|_| PkiError::UnsupportedKey {
        found: format!("of algorithm {}", spki.algorithm.algorithm),
    })?;
    if key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
        return Err(PkiError::UnsupportedKey {
            found: describe_key(key.algorithm()),
        });
    }
    Ok(key)
}

/// Names a key algorithm for error messages.
pub(crate) fn describe_key(algorithm: &SignatureAlgorithm) -> String {
    let name = if algorithm == &PKCS_ECDSA_P384_SHA384 {
        "ECDSA P-384"
    } else if algorithm == &PKCS_ED25519 {
        "Ed25519"
    } else if algorithm == &PKCS_RSA_SHA256 {
        "RSA"
    } else {
        return format!("{algorithm:?}");
    };
    name.to_owned()
}

fn uri_name(uri: String) -> Result<SanType, PkiError> {
    let value = Ia5String::try_from(uri.clone()).map_err(|_| PkiError::InvalidName {
        input: "identity URI",
        value: uri,
        reason: "it is not ASCII",
    })?;
    Ok(SanType::URI(value))
}

fn server_name(name: &str) -> Result<SanType, PkiError> {
    if let Ok(address) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(address));
    }
    let invalid = || PkiError::InvalidName {
        input: "server name",
        value: name.to_owned(),
        reason: "it is neither an IP address nor a DNS name",
    };
    DnsName::try_from(name).map_err(|_| invalid())?;
    let value = Ia5String::try_from(name).map_err(|_| invalid())?;
    Ok(SanType::DnsName(value))
}

/// Draws 16 random bytes for a serial number, with the top bit clear (a positive INTEGER) and
/// a non-zero first byte, so the DER encoding is exactly these bytes and the hex is stable.
fn random_serial() -> Result<[u8; 16], PkiError> {
    let mut serial = [0u8; 16];
    rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut serial)
        .map_err(|_| PkiError::Random)?;
    serial[0] = (serial[0] & 0x7f).max(1);
    Ok(serial)
}

fn whole_seconds(moment: OffsetDateTime) -> OffsetDateTime {
    let utc = moment.to_offset(time::UtcOffset::UTC);
    utc - time::Duration::nanoseconds(i64::from(utc.nanosecond()))
}
