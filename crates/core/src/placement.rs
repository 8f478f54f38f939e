//! Placement: which worker gets a new session. Hard filters first (organisation scope, node
//! state, capability, enabled service, heartbeat, health, room), then a score from the measured
//! load. The decision keeps every candidate with the reason it was filtered out or its score, so
//! an operator can ask why a session went where it did.

use serde::{Deserialize, Serialize};

use crate::node::{Capabilities, NodeOwner, NodeState, ServiceKind, ServiceLoad};
use crate::{NodeId, OrgId, WorkerId};

/// One running worker and what is known about its node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Candidate {
    pub worker: WorkerId,
    /// `None` for a worker started without a node agent (for example by `rdp-proxy dev`); it
    /// counts as a platform node that is ready with the worker service enabled.
    pub node: Option<NodeId>,
    pub node_name: String,
    pub owner: NodeOwner,
    pub state: NodeState,
    pub enabled: Vec<ServiceKind>,
    pub capabilities: Option<Capabilities>,
    /// Latest heartbeat figures; `None` when the heartbeat expired.
    pub load: Option<ServiceLoad>,
}

/// What is being placed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Request {
    pub org: OrgId,
    pub service: ServiceKind,
}

/// Why a candidate was filtered out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Rejection {
    /// A customer-managed node of another organisation.
    OtherOrganisation,
    NotReady { state: NodeState },
    NoCapability { service: ServiceKind },
    ServiceNotEnabled { service: ServiceKind },
    NoHeartbeat,
    AbsurdFigures { detail: String },
    Unhealthy { health: u8 },
    Full { sessions: u32, max_sessions: u32 },
}

/// A candidate that passed the filters, with its score (higher is better, 0.0–1.0) and the parts
/// the score was made of.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scored {
    pub worker: WorkerId,
    pub node: Option<NodeId>,
    pub node_name: String,
    pub score: f64,
    pub parts: ScoreParts,
}

/// Headroom figures, each 0.0 (none left) to 1.0 (idle).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoreParts {
    pub cpu: f64,
    pub memory: f64,
    pub sessions: f64,
    pub network: f64,
    pub health: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Filtered {
    pub worker: WorkerId,
    pub node: Option<NodeId>,
    pub node_name: String,
    pub reason: Rejection,
}

/// The outcome with its explanation. `ranked` is best first; `chosen` is its first entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    pub chosen: Option<WorkerId>,
    pub ranked: Vec<Scored>,
    pub filtered: Vec<Filtered>,
}

/// Health below this is filtered out.
pub const MIN_HEALTH: u8 = 50;
