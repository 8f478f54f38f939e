//! Worker settings, already validated by the binary that builds them.

use std::net::SocketAddr;
use std::time::Duration;

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
