//! Node identity carried in certificates as subject alternative name URIs.
//!
//! A node certificate names exactly one node (`urn:rdp-proxy:node:<uuid>`) and exactly one owner
//! (`urn:rdp-proxy:owner:platform` or `urn:rdp-proxy:owner:org:<uuid>`). UUIDs are written in
//! lowercase hyphenated form and no other spelling is accepted, so one identity has one URI.

use rdp_proxy_core::node::NodeOwner;
use rdp_proxy_core::{NodeId, OrgId};
use time::OffsetDateTime;
use uuid::Uuid;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::PkiError;

/// URI prefix of the node id in a node certificate.
pub const NODE_URI_PREFIX: &str = "urn:rdp-proxy:node:";
/// URI of a platform-run node's owner.
pub const OWNER_PLATFORM_URI: &str = "urn:rdp-proxy:owner:platform";
/// URI prefix of a customer-run node's owning organisation.
pub const OWNER_ORG_URI_PREFIX: &str = "urn:rdp-proxy:owner:org:";
/// URI in the control plane's client certificate, which carries no node identity.
pub const CONTROL_PLANE_URI: &str = "urn:rdp-proxy:control-plane";

const OWNER_URI_PREFIX: &str = "urn:rdp-proxy:owner:";

/// Node and owner named by a node certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeIdentity {
    /// Node id from the `urn:rdp-proxy:node:` URI.
    pub node: NodeId,
    /// Owner from the `urn:rdp-proxy:owner:` URI.
    pub owner: NodeOwner,
}

impl NodeIdentity {
    /// Builds the subject alternative name URIs that encode this identity.
    pub fn uris(&self) -> [String; 2] {
        let owner = match self.owner {
            NodeOwner::Platform => OWNER_PLATFORM_URI.to_owned(),
            NodeOwner::Org(org) => format!("{OWNER_ORG_URI_PREFIX}{}", org.0.hyphenated()),
        };
        [format!("{NODE_URI_PREFIX}{}", self.node.0.hyphenated()), owner]
    }
}

/// Parses the node identity and the serial number (lowercase hex) out of a DER certificate.
///
/// Checks neither the signature nor the validity period, so pass only a certificate that a TLS
/// handshake has verified or that the CA has just issued.
pub fn identity_of(cert_der: &[u8]) -> Result<(NodeIdentity, String), PkiError> {
    let cert = parse_certificate("node certificate", cert_der)?;
    let identity = identity_in(&cert)?;
    Ok((identity, serial_hex(cert.raw_serial())))
}

/// Reports whether a DER certificate carries the control plane's identity URI.
pub fn has_control_plane_identity(cert_der: &[u8]) -> Result<bool, PkiError> {
    let cert = parse_certificate("certificate", cert_der)?;
    Ok(san_uris(&cert)?.any(|uri| uri == CONTROL_PLANE_URI))
}

/// Parses identity, serial and expiry of a node certificate in one pass.
pub(crate) fn node_certificate_facts(cert_der: &[u8]) -> Result<(NodeIdentity, String, OffsetDateTime), PkiError> {
    let cert = parse_certificate("node certificate", cert_der)?;
    let identity = identity_in(&cert)?;
    let serial = serial_hex(cert.raw_serial());
    Ok((identity, serial, cert.validity().not_after.to_datetime()))
}

pub(crate) fn parse_certificate<'a>(input: &'static str, der: &'a [u8]) -> Result<X509Certificate<'a>, PkiError> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).map_err(|error| PkiError::InvalidCertificate {
        input,
        reason: error.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(PkiError::InvalidCertificate {
            input,
            reason: format!("{} bytes follow the certificate", rest.len()),
        });
    }
    Ok(cert)
}

/// Formats a DER INTEGER's content bytes as lowercase hex without the sign-padding zero bytes,
/// which is how serials are written in `IssuedCertificate` and in revocation lists.
pub(crate) fn serial_hex(raw: &[u8]) -> String {
    let significant = raw
        .iter()
        .position(|&byte| byte != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex::encode(&raw[significant..])
}

fn identity_in(cert: &X509Certificate<'_>) -> Result<NodeIdentity, PkiError> {
    let mut node = None;
    let mut owner = None;
    for uri in san_uris(cert)? {
        if let Some(id) = uri.strip_prefix(NODE_URI_PREFIX) {
            let id = NodeId(parse_canonical_uuid(uri, id)?);
            if node.replace(id).is_some() {
                return Err(PkiError::AmbiguousIdentity("node"));
            }
        } else if uri.starts_with(OWNER_URI_PREFIX) {
            let parsed = parse_owner(uri)?;
            if owner.replace(parsed).is_some() {
                return Err(PkiError::AmbiguousIdentity("owner"));
            }
        }
    }
    let node = node.ok_or(PkiError::NoIdentity)?;
    let owner = owner.ok_or(PkiError::NoOwner)?;
    Ok(NodeIdentity { node, owner })
}

fn parse_owner(uri: &str) -> Result<NodeOwner, PkiError> {
    if uri == OWNER_PLATFORM_URI {
        return Ok(NodeOwner::Platform);
    }
    match uri.strip_prefix(OWNER_ORG_URI_PREFIX) {
        Some(id) => Ok(NodeOwner::Org(OrgId(parse_canonical_uuid(uri, id)?))),
        None => Err(PkiError::InvalidIdentityUri(uri.to_owned())),
    }
}

fn parse_canonical_uuid(uri: &str, text: &str) -> Result<Uuid, PkiError> {
    let invalid = || PkiError::InvalidIdentityUri(uri.to_owned());
    let id = Uuid::parse_str(text).map_err(|_| invalid())?;
    if id.hyphenated().to_string() != text {
        return Err(invalid());
    }
    Ok(id)
}

fn san_uris<'a>(cert: &'a X509Certificate<'_>) -> Result<impl Iterator<Item = &'a str> + 'a, PkiError> {
    let extension = cert
        .subject_alternative_name()
        .map_err(|error| PkiError::InvalidCertificate {
            input: "certificate subject alternative names",
            reason: error.to_string(),
        })?;
    let names = extension.map(|extension| extension.value.general_names.iter());
    Ok(names.into_iter().flatten().filter_map(|name| match name {
        GeneralName::URI(uri) => Some(*uri),
        _ => None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_hex_strips_sign_padding() {
        assert_eq!(serial_hex(&[0x00, 0x80, 0x01]), "8001");
        assert_eq!(serial_hex(&[0x7f, 0x00]), "7f00");
        assert_eq!(serial_hex(&[0x00]), "00");
    }

    #[test]
    fn owner_uris_parse() {
        let org = Uuid::new_v4();
        assert_eq!(parse_owner(OWNER_PLATFORM_URI).ok(), Some(NodeOwner::Platform));
        let uri = format!("{OWNER_ORG_URI_PREFIX}{org}");
        assert_eq!(parse_owner(&uri).ok(), Some(NodeOwner::Org(OrgId(org))));
    }

    #[test]
    fn non_canonical_uuids_are_rejected() {
        let org = Uuid::new_v4();
        let cases = [
            format!("{OWNER_ORG_URI_PREFIX}{}", org.simple()),
            format!("{OWNER_ORG_URI_PREFIX}{}", org.hyphenated().to_string().to_uppercase()),
            format!("{OWNER_ORG_URI_PREFIX}{}", org.braced()),
            format!("{OWNER_URI_PREFIX}nobody"),
        ];
        for uri in cases {
            let parsed = parse_owner(&uri);
            assert!(
                matches!(parsed, Err(PkiError::InvalidIdentityUri(_))),
                "{uri} parsed as {parsed:?}"
            );
        }
    }
}
