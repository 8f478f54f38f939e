//! Nodes: who owns them, what they could run (capabilities), what they are assigned to run
//! (enabled services), their lifecycle state, the load figures their services report, and the
//! messages the node agent exchanges with the control plane.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{NodeId, OrgId};

/// Owner of a node. A customer-managed node carries only its own organisation's sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "org_id", rename_all = "snake_case")]
pub enum NodeOwner {
    Platform,
    Org(OrgId),
}

impl NodeOwner {
    /// Returns the organisation a customer-managed node is scoped to.
    pub fn org(self) -> Option<OrgId> {
        match self {
            Self::Platform => None,
            Self::Org(org) => Some(org),
        }
    }

    pub fn from_org(org: Option<OrgId>) -> Self {
        org.map_or(Self::Platform, Self::Org)
    }

    /// Returns whether a session of `org` may run on a node with this owner.
    pub fn may_serve(self, org: OrgId) -> bool {
        match self {
            Self::Platform => true,
            Self::Org(owner) => owner == org,
        }
    }
}

impl fmt::Display for NodeOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Platform => f.write_str("platform"),
            Self::Org(org) => write!(f, "org:{org}"),
        }
    }
}

/// Lifecycle of a node. Only `ready` nodes get new sessions; `draining` keeps the ones it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Joined (certificate issued) but has not reported yet.
    Joining,
    Ready,
    /// No new sessions; held sessions continue.
    Draining,
    /// Missed its heartbeats past the grace period.
    Down,
    /// Certificate refused, services stopped; final.
    Revoked,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Joining => "joining",
            Self::Ready => "ready",
            Self::Draining => "draining",
            Self::Down => "down",
            Self::Revoked => "revoked",
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for NodeState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "joining" => Self::Joining,
            "ready" => Self::Ready,
            "draining" => Self::Draining,
            "down" => Self::Down,
            "revoked" => Self::Revoked,
            other => return Err(format!("unknown node state {other:?}")),
        })
    }
}

/// A service the agent can run on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    Worker,
    Relay,
    Connector,
}

impl ServiceKind {
    pub const ALL: [Self; 3] = [Self::Worker, Self::Relay, Self::Connector];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Worker => "worker",
            Self::Relay => "relay",
            Self::Connector => "connector",
        }
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ServiceKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| format!("unknown service {s:?} (expected worker, relay or connector)"))
    }
}

/// Capabilities of a node: what it could run, measured by its agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    pub cores: u32,
    pub memory_bytes: u64,
    /// Link speed of the fastest interface, when the kernel reports one.
    pub network_bits_per_sec: Option<u64>,
    /// The worker binary is present and can open RDP connections.
    pub rdp: bool,
    pub relay: bool,
    pub connector: bool,
}

impl Capabilities {
    /// Returns whether the node could run `service` at all.
    pub fn supports(&self, service: ServiceKind) -> bool {
        match service {
            ServiceKind::Worker => self.rdp,
            ServiceKind::Relay => self.relay,
            ServiceKind::Connector => self.connector,
        }
    }

    /// Checks the figures against what any real machine reports.
    pub fn validate(&self) -> Result<(), FigureError> {
        check(self.cores >= 1 && self.cores <= 4096, "cores", self.cores)?;
        check(
            self.memory_bytes >= 64 << 20 && self.memory_bytes <= 64 << 40,
            "memory_bytes",
            self.memory_bytes,
        )?;
        if let Some(speed) = self.network_bits_per_sec {
            check(speed <= 10_000_000_000_000, "network_bits_per_sec", speed)?;
        }
        Ok(())
    }
}

/// Load a service reports with each heartbeat. Fractions are of the whole node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceLoad {
    /// Node CPU busy, all processes, 0.0–1.0.
    pub node_cpu: f64,
    /// CPU used by this service's process, in cores (0.0–cores).
    pub cpu_cores: f64,
    /// Node memory still available, in bytes.
    pub memory_available_bytes: u64,
    /// Resident memory of this service's process, in bytes.
    pub memory_bytes: u64,
    /// Bytes per second this service sent and received (viewer and RDP traffic).
    pub network_bytes_per_sec: u64,
    pub sessions: u32,
    /// Sessions this service accepts at most (from its configuration).
    pub max_sessions: u32,
    /// Connector and relay load, 0.0–1.0; zero for services that are neither.
    pub connector_load: f64,
    pub relay_load: f64,
    /// 0 (failing) to 100 (healthy), computed by the service from its own checks.
    pub health: u8,
}

impl ServiceLoad {
    /// Rejects figures no real service produces: negative or not-a-number fractions, CPU above
    /// the node's cores, memory above the node's memory, more sessions than allowed.
    pub fn validate(&self, capabilities: &Capabilities) -> Result<(), FigureError> {
        check_fraction(self.node_cpu, "node_cpu")?;
        check_fraction(self.connector_load, "connector_load")?;
        check_fraction(self.relay_load, "relay_load")?;
        let cores = f64::from(capabilities.cores);
        if !(self.cpu_cores.is_finite() && self.cpu_cores >= 0.0 && self.cpu_cores <= cores * 1.05) {
            return Err(FigureError::new("cpu_cores", self.cpu_cores));
        }
        check(
            self.memory_available_bytes <= capabilities.memory_bytes,
            "memory_available_bytes",
            self.memory_available_bytes,
        )?;
        check(
            self.memory_bytes <= capabilities.memory_bytes,
            "memory_bytes",
            self.memory_bytes,
        )?;
        check(
            self.network_bytes_per_sec <= 1_250_000_000_000,
            "network_bytes_per_sec",
            self.network_bytes_per_sec,
        )?;
        check(self.max_sessions <= 100_000, "max_sessions", self.max_sessions)?;
        check(self.sessions <= self.max_sessions.max(1) * 2, "sessions", self.sessions)?;
        check(self.health <= 100, "health", self.health)?;
        Ok(())
    }
}

/// A reported figure outside what a real node can produce.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field} = {value} is out of range")]
pub struct FigureError {
    pub field: &'static str,
    pub value: String,
}

impl FigureError {
    fn new(field: &'static str, value: impl fmt::Display) -> Self {
        Self {
            field,
            value: value.to_string(),
        }
    }
}

fn check(ok: bool, field: &'static str, value: impl fmt::Display) -> Result<(), FigureError> {
    if ok {
        Ok(())
    } else {
        Err(FigureError::new(field, value))
    }
}

fn check_fraction(value: f64, field: &'static str) -> Result<(), FigureError> {
    check(value.is_finite() && (0.0..=1.0).contains(&value), field, value)
}

/// The agent's report on one supervised service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceRun {
    Starting,
    Running,
    /// Exited or failed to start; waiting before the next start.
    Backoff,
    Stopped,
}

/// The agent's report on one service it supervises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceReport {
    pub kind: ServiceKind,
    pub run: ServiceRun,
    pub version: Option<String>,
    pub pid: Option<u32>,
    pub restarts: u32,
    /// How the last run ended, e.g. `signal 9` or `exit status 1`.
    pub last_exit: Option<String>,
    /// Address the running service announced it listens on (`HOST:PORT`). The control plane
    /// accepts a worker's heartbeat for this node only from that address.
    #[serde(default)]
    pub address: Option<String>,
}

/// Messages between the node agent and the control plane's node API.
pub mod wire {
    use super::*;

    /// Prefix of join tokens, so a pasted token is recognisable.
    pub const JOIN_TOKEN_PREFIX: &str = "rpj1";

    /// `POST /node/v1/join`, the only node request made without a client certificate.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct JoinRequest {
        pub token: String,
        /// Name the node requests; unique per owner.
        pub name: String,
        /// PKCS#10 request for the node's key, PEM.
        pub csr_pem: String,
        /// Organisation the node believes it belongs to; must match the token's when set.
        pub org_id: Option<OrgId>,
        pub capabilities: Capabilities,
        pub agent_version: String,
        #[serde(default)]
        pub labels: BTreeMap<String, String>,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct JoinResponse {
        pub node_id: NodeId,
        pub owner: NodeOwner,
        pub certificate: IssuedCertificate,
        /// The cluster CA, PEM; the agent trusts only this from now on.
        pub ca_pem: String,
    }

    /// `POST /node/v1/renew`, with the current certificate.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct RenewRequest {
        pub csr_pem: String,
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct IssuedCertificate {
        pub cert_pem: String,
        /// Hex serial number, as listed in revocations.
        pub serial: String,
        #[serde(with = "time::serde::rfc3339")]
        pub not_after: time::OffsetDateTime,
    }

    /// `POST /node/v1/report`: the agent's heartbeat.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct NodeReport {
        pub capabilities: Capabilities,
        pub agent_version: String,
        pub services: Vec<ServiceReport>,
        /// Version of the configuration document the node runs.
        pub config_version: Option<i64>,
    }

    /// The control plane's reply to a report: what the node should be doing.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct NodeInstructions {
        pub node_id: NodeId,
        pub owner: NodeOwner,
        pub state: NodeState,
        pub enabled_services: Vec<ServiceKind>,
        pub labels: BTreeMap<String, String>,
        /// The configuration the node should run; absent when none is published.
        pub config: Option<ConfigDocument>,
    }

    /// A versioned configuration document. Versions only grow.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ConfigDocument {
        pub version: i64,
        pub body: NodeConfig,
    }

    /// Settings distributed to nodes. Unknown fields are refused when a document is published.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub struct NodeConfig {
        /// Seconds between agent reports.
        pub report_interval_secs: u32,
        /// Sessions one worker accepts at most.
        pub worker_max_sessions: u32,
        /// Limit for opening an RDP connection, in seconds.
        pub worker_connect_timeout_secs: u32,
    }

    impl Default for NodeConfig {
        fn default() -> Self {
            Self {
                report_interval_secs: 5,
                worker_max_sessions: 50,
                worker_connect_timeout_secs: 15,
            }
        }
    }

    impl NodeConfig {
        pub fn validate(&self) -> Result<(), String> {
            if !(1..=300).contains(&self.report_interval_secs) {
                return Err("report_interval_secs must be between 1 and 300".into());
            }
            if !(1..=10_000).contains(&self.worker_max_sessions) {
                return Err("worker_max_sessions must be between 1 and 10000".into());
            }
            if !(1..=300).contains(&self.worker_connect_timeout_secs) {
                return Err("worker_connect_timeout_secs must be between 1 and 300".into());
            }
            Ok(())
        }
    }

    /// Error body of the node API.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    pub struct NodeApiError {
        pub code: String,
        pub message: String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> Capabilities {
        Capabilities {
            cores: 4,
            memory_bytes: 8 << 30,
            network_bits_per_sec: Some(1_000_000_000),
            rdp: true,
            relay: false,
            connector: false,
        }
    }

    fn load() -> ServiceLoad {
        ServiceLoad {
            node_cpu: 0.2,
            cpu_cores: 0.5,
            memory_available_bytes: 4 << 30,
            memory_bytes: 200 << 20,
            network_bytes_per_sec: 1_000_000,
            sessions: 3,
            max_sessions: 50,
            connector_load: 0.0,
            relay_load: 0.0,
            health: 100,
        }
    }

    #[test]
    fn sane_figures_pass() {
        assert_eq!(caps().validate(), Ok(()));
        assert_eq!(load().validate(&caps()), Ok(()));
    }

    #[test]
    fn absurd_figures_name_the_field() {
        type Mutation = fn(&mut ServiceLoad);
        let cases: [(&str, Mutation); 8] = [
            ("node_cpu", |l| l.node_cpu = f64::NAN),
            ("node_cpu", |l| l.node_cpu = -0.1),
            ("cpu_cores", |l| l.cpu_cores = 64.0),
            ("memory_bytes", |l| l.memory_bytes = u64::MAX),
            ("memory_available_bytes", |l| l.memory_available_bytes = 1 << 50),
            ("sessions", |l| l.sessions = 1_000_000),
            ("health", |l| l.health = 101),
            ("relay_load", |l| l.relay_load = f64::INFINITY),
        ];
        for (field, mutate) in cases {
            let mut figures = load();
            mutate(&mut figures);
            let error = figures.validate(&caps()).expect_err(field);
            assert_eq!(error.field, field);
        }
        let mut huge = caps();
        huge.cores = 1_000_000;
        assert_eq!(huge.validate().map_err(|e| e.field), Err("cores"));
    }

    #[test]
    fn customer_nodes_serve_only_their_organisation() {
        let (a, b) = (OrgId::new_random(), OrgId::new_random());
        assert!(NodeOwner::Platform.may_serve(a));
        assert!(NodeOwner::Org(a).may_serve(a));
        assert!(!NodeOwner::Org(a).may_serve(b));
    }

    #[test]
    fn owner_serialises_with_a_kind() {
        let org = OrgId::new_random();
        let json = serde_json::to_value(NodeOwner::Org(org)).unwrap_or_default();
        assert_eq!(json["kind"], "org");
        assert_eq!(json["org_id"], org.to_string());
        let platform = serde_json::to_value(NodeOwner::Platform).unwrap_or_default();
        assert_eq!(platform["kind"], "platform");
    }

    #[test]
    fn unknown_config_fields_are_refused() {
        let parsed = serde_json::from_str::<wire::NodeConfig>(r#"{"report_interval_secs": 2, "typo": 1}"#);
        assert!(parsed.is_err());
        let partial: wire::NodeConfig = serde_json::from_str(r#"{"worker_max_sessions": 3}"#).unwrap_or_default();
        assert_eq!(partial.worker_max_sessions, 3);
        assert_eq!(partial.report_interval_secs, 5);
    }
}
