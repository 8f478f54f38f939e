//! Certificate issuance by the cluster CA: what goes into a certificate, what a request cannot
//! change, and how identities are read back.

use std::time::Duration;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, SanType,
};
use rdp_proxy_core::node::NodeOwner;
use rdp_proxy_core::{NodeId, OrgId};
use rdp_proxy_pki::{
    CONTROL_PLANE_URI, ClusterCa, IssuedCertificate, NodeIdentity, NodeKey, PkiError, certificate_fingerprint,
    has_control_plane_identity, identity_of,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

const HOUR: Duration = Duration::from_secs(3600);

fn cert_der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("certificate PEM")
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    x509_parser::parse_x509_certificate(der).expect("X.509 certificate").1
}

fn san_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let Some(extension) = cert.subject_alternative_name().expect("SAN extension") else {
        return Vec::new();
    };
    extension
        .value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::URI(uri) => format!("uri:{uri}"),
            GeneralName::DNSName(dns) => format!("dns:{dns}"),
            GeneralName::IPAddress(bytes) => format!("ip:{bytes:?}"),
            other => format!("other:{other:?}"),
        })
        .collect()
}

fn common_name(cert: &X509Certificate<'_>) -> String {
    let cn = cert.subject().iter_common_name().next().expect("common name");
    cn.as_str().expect("UTF-8 common name").to_owned()
}

fn identity(owner: NodeOwner) -> NodeIdentity {
    NodeIdentity {
        node: NodeId::new_random(),
        owner,
    }
}

fn issue(ca: &ClusterCa, identity: &NodeIdentity, now: OffsetDateTime) -> IssuedCertificate {
    let key = NodeKey::generate().expect("node key");
    let csr = key.csr_pem("node-a").expect("CSR");
    ca.issue_node(&csr, identity, "node-a", HOUR, now)
        .expect("node certificate")
}

fn to_pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).expect("base64 is ASCII"))
        .collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

fn csr_der(pem: &str) -> Vec<u8> {
    CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
        .expect("CSR PEM")
        .as_ref()
        .to_vec()
}

#[test]
fn generated_ca_is_constrained() {
    let before = OffsetDateTime::now_utc();
    let ca = ClusterCa::generate("prod").expect("CA");
    let der = cert_der(ca.cert_pem());
    let cert = parse(&der);

    assert!(cert.is_ca());
    let constraints = cert.basic_constraints().expect("basic constraints").expect("present");
    assert_eq!(constraints.value.path_len_constraint, Some(0));
    let usage = cert.key_usage().expect("key usage").expect("present");
    assert!(usage.value.key_cert_sign());
    assert!(usage.value.crl_sign());
    assert_eq!(common_name(&cert), "prod CA");

    let validity = cert.validity().not_after.to_datetime() - before;
    assert!(validity >= time::Duration::days(3649), "validity {validity}");
    assert!(validity <= time::Duration::days(3651), "validity {validity}");
    assert_eq!(ca.not_after(), cert.validity().not_after.to_datetime());
}

#[test]
fn fingerprint_is_sha256_of_der() {
    let ca = ClusterCa::generate("prod").expect("CA");
    let expected = hex::encode(Sha256::digest(cert_der(ca.cert_pem())));
    assert_eq!(ca.fingerprint(), expected);
    assert_eq!(ca.fingerprint().len(), 64);
    assert_eq!(certificate_fingerprint(ca.cert_pem()).expect("fingerprint"), expected);
}

#[test]
fn reloaded_ca_issues_verifiable_certificates() {
    let ca = ClusterCa::generate("prod").expect("CA");
    let reloaded = ClusterCa::from_pem(ca.cert_pem(), ca.key_pem()).expect("reload");
    assert_eq!(reloaded.fingerprint(), ca.fingerprint());

    let issued = issue(&reloaded, &identity(NodeOwner::Platform), OffsetDateTime::now_utc());
    let leaf_der = cert_der(&issued.cert_pem);
    let leaf = parse(&leaf_der);
    let ca_der = cert_der(ca.cert_pem());
    let ca_cert = parse(&ca_der);
    assert!(leaf.verify_signature(Some(ca_cert.public_key())).is_ok());
    assert_eq!(leaf.issuer().as_raw(), ca_cert.subject().as_raw());
}

#[test]
fn ca_from_pem_rejects_mismatches() {
    let ca = ClusterCa::generate("prod").expect("CA");
    let other = ClusterCa::generate("other").expect("CA");
    let mismatch = ClusterCa::from_pem(ca.cert_pem(), other.key_pem());
    assert!(matches!(mismatch, Err(PkiError::KeyMismatch)), "{mismatch:?}");

    let (leaf, leaf_key) = ca
        .issue_client("control", HOUR, OffsetDateTime::now_utc())
        .expect("client");
    let not_ca = ClusterCa::from_pem(&leaf.cert_pem, &leaf_key);
    assert!(matches!(not_ca, Err(PkiError::NotCa)), "{not_ca:?}");

    let two = format!("{}{}", ca.cert_pem(), other.cert_pem());
    let doubled = ClusterCa::from_pem(&two, ca.key_pem());
    assert!(
        matches!(doubled, Err(PkiError::PemCount { found: 2, .. })),
        "{doubled:?}"
    );
}

#[test]
fn node_certificate_contents() {
    let ca = ClusterCa::generate("prod").expect("CA");
    let org = OrgId::new_random();
    let node = identity(NodeOwner::Org(org));
    // A fractional second must not make the returned expiry differ from the certificate's.
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(123_456_789)
        .expect("nanoseconds");
    let issued = issue(&ca, &node, now);
    let der = cert_der(&issued.cert_pem);
    let cert = parse(&der);

    assert_eq!(common_name(&cert), "node-a");
    assert_eq!(
        san_names(&cert),
        vec![
            format!("uri:urn:rdp-proxy:node:{}", node.node),
            format!("uri:urn:rdp-proxy:owner:org:{org}"),
        ]
    );
    let eku = cert.extended_key_usage().expect("EKU").expect("present");
    assert!(eku.value.client_auth);
    assert!(eku.value.server_auth);
    assert!(!eku.value.code_signing);
    assert!(!cert.is_ca());

    let whole = now.replace_nanosecond(0).expect("whole seconds");
    assert_eq!(
        cert.validity().not_before.to_datetime(),
        whole - time::Duration::minutes(5)
    );
    assert_eq!(
        cert.validity().not_after.to_datetime(),
        whole + time::Duration::hours(1)
    );
    assert_eq!(issued.not_after, whole + time::Duration::hours(1));

    assert_eq!(issued.serial.len(), 32);
    assert_eq!(hex::encode(cert.raw_serial()), issued.serial);
}

#[test]
fn serials_differ() {
    let ca = ClusterCa::generate("prod").expect("CA");
    let node = identity(NodeOwner::Platform);
    let now = OffsetDateTime::now_utc();
    let serials: std::collections::HashSet<String> = (0..20).map(|_| issue(&ca, &node, now).serial).collect();
    assert_eq!(serials.len(), 20);
}

#[test]
fn identity_of_round_trips_owners() {
    let ca = ClusterCa::generate("prod").expect("CA");
    let now = OffsetDateTime::now_utc();
    for owner in [NodeOwner::Platform, NodeOwner::Org(OrgId::new_random())] {
        let node = identity(owner);
        let issued = issue(&ca, &node, now);
        let (parsed, serial) = identity_of(&cert_der(&issued.cert_pem)).expect("identity");
        assert_eq!(parsed, node);
        assert_eq!(serial, issued.serial);
    }
}

#[test]
fn request_extensions_are_ignored() {
    let ca = ClusterCa::generate("prod").expect("CA");
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::new(vec!["evil.example".to_owned()]).expect("params");
    params
        .subject_alt_names
        .push(SanType::URI("urn:rdp-proxy:owner:platform".try_into().expect("URI")));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, "control plane");
    params.distinguished_name = subject;
    let csr = params.serialize_request(&key).expect("CSR").pem().expect("PEM");

    let org = OrgId::new_random();
    let node = identity(NodeOwner::Org(org));
    let issued = ca
        .issue_node(&csr, &node, "node-a", HOUR, OffsetDateTime::now_utc())
        .expect("certificate");
    let der = cert_der(&issued.cert_pem);
    let cert = parse(&der);

    assert_eq!(common_name(&cert), "node-a");
    assert!(!cert.is_ca());
    let names = san_names(&cert);
    assert!(!names.iter().any(|name| name.contains("evil.example")), "{names:?}");
    assert!(!names.iter().any(|name| name.ends_with(":platform")), "{names:?}");
    let eku = cert.extended_key_usage().expect("EKU").expect("present");
    assert!(!eku.value.code_signing);
    assert_eq!(identity_of(&der).expect("identity").0, node);
    assert_eq!(
        cert.public_key().raw,
        rcgen::PublicKeyData::subject_public_key_info(&key)
    );
}

#[test]
fn tampered_request_signature_is_rejected() {
    let ca = ClusterCa::generate("prod").expect("CA");
    let key = NodeKey::generate().expect("key");
    let mut der = csr_der(&key.csr_pem("node-a").expect("CSR"));
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let tampered = to_pem("CERTIFICATE REQUEST", &der);

    let node = identity(NodeOwner::Platform);
    let outcome = ca.issue_node(&tampered, &node, "node-a", HOUR, OffsetDateTime::now_utc());
    assert!(matches!(outcome, Err(PkiError::CsrSignature)), "{outcome:?}");
    let message = outcome.err().map(|error| error.to_string()).unwrap_or_default();
    assert_eq!(message, "certificate request signature is invalid");
}

#[test]
fn tampered_request_subject_is_rejected() {
    let ca = ClusterCa::generate("prod").expect("CA");
    let key = NodeKey::generate().expect("key");
    let mut der = csr_der(&key.csr_pem("node-a").expect("CSR"));
    let at = der
        .windows(6)
        .position(|window| window == b"node-a")
        .expect("subject bytes");
    der[at + 5] = b'b';
    let tampered = to_pem("CERTIFICATE REQUEST", &der);

    let node = identity(NodeOwner::Platform);
    let outcome = ca.issue_node(&tampered, &node, "node-b", HOUR, OffsetDateTime::now_utc());
    assert!(matches!(outcome, Err(PkiError::CsrSignature)), "{outcome:?}");
}

#[test]
fn malformed_requests_are_rejected() {
    let ca = ClusterCa::generate("prod").expect("CA");
    let node = identity(NodeOwner::Platform);
    let now = OffsetDateTime::now_utc();

    let not_pem = ca.issue_node("hello", &node, "node-a", HOUR, now);
    assert!(matches!(not_pem, Err(PkiError::InvalidPem { .. })), "{not_pem:?}");

    let garbage = to_pem("CERTIFICATE REQUEST", b"\x30\x03\x02\x01\x01");
    let not_pkcs10 = ca.issue_node(&garbage, &node, "node-a", HOUR, now);
    assert!(matches!(not_pkcs10, Err(PkiError::InvalidCsr(_))), "{not_pkcs10:?}");
}

#[test]
fn request_with_p384_key_is_rejected() {
    let ca = ClusterCa::generate("prod").expect("CA");
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).expect("key");
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .expect("CSR")
        .pem()
        .expect("PEM");
    let node = identity(NodeOwner::Platform);
    let outcome = ca.issue_node(&csr, &node, "node-a", HOUR, OffsetDateTime::now_utc());
    match outcome {
        Err(PkiError::UnsupportedKey { found }) => assert_eq!(found, "ECDSA P-384"),
        other => panic!("expected UnsupportedKey, got {other:?}"),
    }
}

#[test]
fn bad_names_and_validities_rejected() {
    let ca = ClusterCa::generate("prod").expect("CA");
    let node = identity(NodeOwner::Platform);
    let now = OffsetDateTime::now_utc();
    let csr = NodeKey::generate().expect("key").csr_pem("node-a").expect("CSR");

    for name in ["", "  ", "line\nbreak", &"n".repeat(65)] {
        let outcome = ca.issue_node(&csr, &node, name, HOUR, now);
        assert!(
            matches!(outcome, Err(PkiError::InvalidName { .. })),
            "{name:?}: {outcome:?}"
        );
    }

    let zero = ca.issue_node(&csr, &node, "node-a", Duration::ZERO, now);
    assert!(matches!(zero, Err(PkiError::InvalidValidity(_))), "{zero:?}");

    let twenty_years = Duration::from_secs(20 * 365 * 24 * 3600);
    let too_long = ca.issue_node(&csr, &node, "node-a", twenty_years, now);
    assert!(matches!(too_long, Err(PkiError::OutlivesCa { .. })), "{too_long:?}");
}

#[test]
fn server_certificate_names_get_san_types() {
    let ca = ClusterCa::generate("prod").expect("CA");
    let names = ["control.internal", "127.0.0.1", "::1"].map(str::to_owned);
    let (issued, key_pem) = ca
        .issue_server(&names, HOUR, OffsetDateTime::now_utc())
        .expect("server");
    let der = cert_der(&issued.cert_pem);
    let cert = parse(&der);

    assert_eq!(
        san_names(&cert),
        vec![
            "dns:control.internal".to_owned(),
            format!("ip:{:?}", [127u8, 0, 0, 1]),
            format!("ip:{:?}", std::net::Ipv6Addr::LOCALHOST.octets()),
        ]
    );
    let eku = cert.extended_key_usage().expect("EKU").expect("present");
    assert!(eku.value.server_auth);
    assert!(!eku.value.client_auth);
    let key = NodeKey::from_pem(&key_pem).expect("P-256 key");
    assert!(key.matches_certificate(&issued.cert_pem).expect("comparison"));
}

#[test]
fn server_certificate_rejects_bad_names() {
    let ca = ClusterCa::generate("prod").expect("CA");
    let now = OffsetDateTime::now_utc();
    let empty = ca.issue_server(&[], HOUR, now);
    assert!(matches!(empty, Err(PkiError::InvalidName { .. })), "{empty:?}");
    for name in ["bad name", "", "[::1]", "ünï.example"] {
        let outcome = ca.issue_server(&[name.to_owned()], HOUR, now);
        assert!(
            matches!(outcome, Err(PkiError::InvalidName { .. })),
            "{name:?}: {outcome:?}"
        );
    }
}

#[test]
fn client_certificate_has_no_node_identity() {
    let ca = ClusterCa::generate("prod").expect("CA");
    let (issued, _key) = ca
        .issue_client("control-1", HOUR, OffsetDateTime::now_utc())
        .expect("client");
    let der = cert_der(&issued.cert_pem);
    let cert = parse(&der);

    assert_eq!(san_names(&cert), vec![format!("uri:{CONTROL_PLANE_URI}")]);
    let eku = cert.extended_key_usage().expect("EKU").expect("present");
    assert!(eku.value.client_auth);
    assert!(!eku.value.server_auth);
    assert!(has_control_plane_identity(&der).expect("parse"));

    let outcome = identity_of(&der);
    assert!(matches!(outcome, Err(PkiError::NoIdentity)), "{outcome:?}");
    let message = outcome.err().map(|error| error.to_string()).unwrap_or_default();
    assert!(message.starts_with("certificate has no node identity"), "{message}");
}

/// Builds a self-signed certificate with the given URIs. `identity_of` does not check
/// signatures, so any issuer will do.
fn certificate_with_uris(uris: &[String]) -> CertificateDer<'static> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = CertificateParams::default();
    params.subject_alt_names = uris
        .iter()
        .map(|uri| SanType::URI(uri.as_str().try_into().expect("URI")))
        .collect();
    params.self_signed(&key).expect("certificate").der().clone()
}

#[test]
fn identity_of_rejects_incomplete_identities() {
    let (a, b) = (NodeId::new_random(), NodeId::new_random());
    let org = OrgId::new_random();
    let node_uri = |id: NodeId| format!("urn:rdp-proxy:node:{id}");
    let platform = "urn:rdp-proxy:owner:platform".to_owned();

    let two_nodes = certificate_with_uris(&[node_uri(a), node_uri(b), platform.clone()]);
    let outcome = identity_of(&two_nodes);
    assert!(
        matches!(outcome, Err(PkiError::AmbiguousIdentity("node"))),
        "{outcome:?}"
    );

    let org_uri = format!("urn:rdp-proxy:owner:org:{org}");
    let two_owners = certificate_with_uris(&[node_uri(a), platform.clone(), org_uri]);
    let outcome = identity_of(&two_owners);
    assert!(
        matches!(outcome, Err(PkiError::AmbiguousIdentity("owner"))),
        "{outcome:?}"
    );

    let no_owner = certificate_with_uris(&[node_uri(a)]);
    let outcome = identity_of(&no_owner);
    assert!(matches!(outcome, Err(PkiError::NoOwner)), "{outcome:?}");

    let no_node = certificate_with_uris(std::slice::from_ref(&platform));
    let outcome = identity_of(&no_node);
    assert!(matches!(outcome, Err(PkiError::NoIdentity)), "{outcome:?}");

    let bad_uuid = certificate_with_uris(&["urn:rdp-proxy:node:42".to_owned(), platform]);
    let outcome = identity_of(&bad_uuid);
    assert!(matches!(outcome, Err(PkiError::InvalidIdentityUri(_))), "{outcome:?}");

    let outcome = identity_of(b"not a certificate");
    assert!(
        matches!(outcome, Err(PkiError::InvalidCertificate { .. })),
        "{outcome:?}"
    );
}

#[test]
fn node_key_matches_its_certificate() {
    let ca = ClusterCa::generate("prod").expect("CA");
    let key = NodeKey::generate().expect("key");
    let reloaded = NodeKey::from_pem(&key.key_pem()).expect("reload");
    assert_eq!(reloaded.key_pem(), key.key_pem());

    let node = identity(NodeOwner::Platform);
    let csr = reloaded.csr_pem("node-a").expect("CSR");
    let issued = ca
        .issue_node(&csr, &node, "node-a", HOUR, OffsetDateTime::now_utc())
        .expect("certificate");
    assert!(key.matches_certificate(&issued.cert_pem).expect("comparison"));

    let stranger = NodeKey::generate().expect("key");
    assert!(!stranger.matches_certificate(&issued.cert_pem).expect("comparison"));
    assert!(!format!("{key:?}").contains("PRIVATE"));
}

#[test]
fn node_key_rejects_other_algorithms() {
    let p384 = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)
        .expect("key")
        .serialize_pem();
    let outcome = NodeKey::from_pem(&p384);
    assert!(matches!(outcome, Err(PkiError::InvalidKey(_))), "{outcome:?}");
    let outcome = NodeKey::from_pem("not a key");
    assert!(matches!(outcome, Err(PkiError::InvalidKey(_))), "{outcome:?}");
}
