//! The cluster's own certificate authority and the mutual TLS between node agents and the
//! control plane's node API.
//!
//! A node joins with a single-use token over a connection pinned to the CA fingerprint
//! ([`pinned_client_config`]), sends a PKCS#10 request made with its [`NodeKey`], and receives
//! a short-lived certificate from [`ClusterCa::issue_node`] whose subject alternative name URIs
//! carry its [`NodeIdentity`]. After that it connects with [`client_config`]. The node API is
//! configured by [`node_api_server_config`] and run by [`serve`], which passes the identity to
//! handlers as a [`PeerCertificate`] on each request.

mod ca;
mod error;
mod identity;
mod key;
mod pem;
mod revocation;
mod serve;
mod tls;

pub use ca::{CA_VALIDITY, CLOCK_SKEW, ClusterCa, certificate_fingerprint};
pub use error::PkiError;
pub use identity::{
    CONTROL_PLANE_URI, NODE_URI_PREFIX, NodeIdentity, OWNER_ORG_URI_PREFIX, OWNER_PLATFORM_URI,
    has_control_plane_identity, identity_of,
};
pub use key::NodeKey;
pub use rdp_proxy_core::node::wire::IssuedCertificate;
pub use revocation::Revocations;
pub use serve::{HANDSHAKE_TIMEOUT, PeerCertificate, PeerIdentity, SHUTDOWN_GRACE, serve};
pub use tls::{
    CONNECT_TIMEOUT, REQUEST_TIMEOUT, ServerCertificate, client_config, http_client, http_client_builder,
    node_api_server_config, node_api_server_config_with, pinned_client_config,
};
