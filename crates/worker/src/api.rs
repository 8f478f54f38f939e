//! Request and response bodies of the worker's internal API, shared with the control plane.

use rdp_proxy_core::{SessionId, UserId};
use serde::{Deserialize, Serialize};

/// Header carrying the cluster secret on internal requests.
pub const SECRET_HEADER: &str = "x-rdp-proxy-cluster-secret";

/// Asks the worker to open the RDP connection of a session in `requested` state. The worker
/// loads the target and its credentials itself, so they never travel over this API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartSession {
    pub session_id: SessionId,
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
