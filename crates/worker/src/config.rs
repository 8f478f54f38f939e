//! Worker settings, already validated by the binary that builds them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rdp_proxy_core::{NodeId, OrgId};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub listen: SocketAddr,
    /// Base URL browsers use to reach this worker's viewer endpoint (`ws://…` or `wss://…`);
    /// derived from the bound address when empty.
    pub viewer_url: String,
    /// Base URL the control plane uses for commands; derived from the bound address when empty.
    pub internal_url: String,
    /// Shared secret the control plane presents on internal requests.
    pub cluster_secret: String,
    pub heartbeat_interval: Duration,
    pub connect_timeout: Duration,
    /// Sessions this worker accepts at most, unless the node configuration says otherwise.
    pub max_sessions: u32,
    /// The node this worker runs on, when a node agent started it.
    pub node: Option<NodeId>,
    /// The organisation a customer-managed node is scoped to. The worker refuses sessions and
    /// viewers of any other organisation, whatever the control plane asks.
    pub node_org: Option<OrgId>,
    /// Configuration document written by the node agent; re-read on every heartbeat.
    pub node_config: Option<PathBuf>,
    /// PID of the supervising process. When it is gone (the agent crashed), the worker takes no
    /// new sessions, keeps the desktops it holds, and exits once none remain, so a restarted
    /// agent's new worker takes over without ending anyone's desktop.
    pub parent: Option<u32>,
}

impl WorkerConfig {
    pub fn heartbeat_ttl(&self) -> Duration {
        self.heartbeat_interval * 3
    }

    pub(crate) fn resolve_urls(&mut self, local: SocketAddr) {
        if self.viewer_url.is_empty() {
            self.viewer_url = format!("ws://{local}");
        }
        if self.internal_url.is_empty() {
            self.internal_url = format!("http://{local}");
        }
    }
}
