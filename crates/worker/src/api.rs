//! Request and response bodies of the worker's internal API, shared with the control plane.

use rdp_proxy_core::{OrgId, SessionId, UserId};
use serde::{Deserialize, Serialize};

/// Header carrying the cluster secret on internal requests.
pub const SECRET_HEADER: &str = "x-rdp-proxy-cluster-secret";

/// Asks the worker to open the RDP connection of a session in `requested` state, with the
/// target and the credential the control plane opened for it. Workers never hold the master key,
/// so a worker can read no credential it was not sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartSession {
    pub session_id: SessionId,
    pub org_id: OrgId,
    pub target: TargetSpec,
}

/// Where and as whom to connect. `Debug` omits the password.
#[derive(Clone, Serialize, Deserialize)]
pub struct TargetSpec {
    pub host: String,
    pub port: u16,
    /// `auto`, `tls` or `nla`.
    pub security: String,
    /// Hex SHA-256 of the certificate the target must present, when pinned.
    pub cert_sha256: Option<String>,
    pub username: String,
    pub password: String,
    pub domain: Option<String>,
}

impl std::fmt::Debug for TargetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetSpec")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Requester and reason of a detach or terminate, for the session history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActorRef {
    pub user_id: Option<UserId>,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldSession {
    pub session_id: SessionId,
    pub state: String,
    pub viewers: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerError {
    pub code: String,
    pub message: String,
}
