//! Worker heartbeats, session routing and the mirrored control lease.

use std::time::Duration;

use rdp_proxy_core::lease::ControlLease;
use rdp_proxy_core::node::ServiceLoad;
use rdp_proxy_core::{NodeId, OrgId, SessionId, WorkerId};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use crate::{Coord, CoordError, keys};

/// Heartbeat payload a worker publishes about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerBeat {
    pub id: WorkerId,
    /// Base URL browsers use for the viewer WebSocket, e.g. `ws://127.0.0.1:9000`.
    pub viewer_url: String,
    /// Base URL the control plane uses for commands, e.g. `http://127.0.0.1:9000`.
    pub internal_url: String,
    pub sessions: u32,
    pub version: String,
    /// The node the worker runs on; `None` for a worker started without a node agent.
    #[serde(default)]
    pub node: Option<NodeId>,
    /// Measured load; `None` from workers too old to report it.
    #[serde(default)]
    pub load: Option<ServiceLoad>,
    /// Version of the node configuration document the worker runs.
    #[serde(default)]
    pub config_version: Option<i64>,
}

impl Coord {
    /// Publishes a heartbeat that expires after `ttl` unless renewed.
    pub async fn beat(&self, beat: &WorkerBeat, ttl: Duration) -> Result<(), CoordError> {
        let value = serde_json::to_string(beat)?;
        let _: () = self.conn().pset_ex(keys::worker(beat.id), value, millis(ttl)).await?;
        Ok(())
    }

    /// Removes the heartbeat at a clean shutdown.
    pub async fn remove_worker(&self, worker: WorkerId) -> Result<(), CoordError> {
        let _: () = self.conn().del(keys::worker(worker)).await?;
        Ok(())
    }

    pub async fn worker(&self, worker: WorkerId) -> Result<Option<WorkerBeat>, CoordError> {
        let raw: Option<String> = self.conn().get(keys::worker(worker)).await?;
        raw.map(|raw| serde_json::from_str(&raw))
            .transpose()
            .map_err(Into::into)
    }

    /// Every worker with a live heartbeat.
    pub async fn live_workers(&self) -> Result<Vec<WorkerBeat>, CoordError> {
        let mut conn = self.conn();
        let mut names: Vec<String> = Vec::new();
        {
            let mut iter: redis::AsyncIter<'_, String> = conn.scan_match(keys::worker_pattern()).await?;
            while let Some(item) = iter.next_item().await {
                names.push(item?);
            }
        }
        let mut beats = Vec::with_capacity(names.len());
        for chunk in names.chunks(500) {
            let values: Vec<Option<String>> = redis::cmd("MGET").arg(chunk).query_async(&mut conn).await?;
            for (name, raw) in chunk.iter().zip(values) {
                match raw.map(|raw| serde_json::from_str::<WorkerBeat>(&raw)) {
                    Some(Ok(beat)) => beats.push(beat),
                    Some(Err(error)) => tracing::warn!(key = %name, %error, "Skipping unreadable worker heartbeat"),
                    None => {}
                }
            }
        }
        Ok(beats)
    }

    /// Records a node agent's latest report, which expires after `ttl` unless renewed.
    pub async fn set_node_report(&self, node: NodeId, report: &str, ttl: Duration) -> Result<(), CoordError> {
        let _: () = self.conn().pset_ex(keys::node(node), report, millis(ttl)).await?;
        Ok(())
    }

    /// Whether each node's report is still live, in the order given.
    pub async fn node_reports_live(&self, nodes: &[NodeId]) -> Result<Vec<bool>, CoordError> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = nodes.iter().map(|node| keys::node(*node)).collect();
        let mut conn = self.conn();
        let mut live = Vec::with_capacity(names.len());
        for chunk in names.chunks(500) {
            let values: Vec<Option<String>> = redis::cmd("MGET").arg(chunk).query_async(&mut conn).await?;
            live.extend(values.iter().map(Option::is_some));
        }
        Ok(live)
    }

    /// Records that `worker` holds `session`, for `ttl`; the worker re-asserts it on each beat.
    pub async fn set_route(
        &self,
        org: OrgId,
        session: SessionId,
        worker: WorkerId,
        ttl: Duration,
    ) -> Result<(), CoordError> {
        let _: () = self
            .conn()
            .pset_ex(keys::route(org, session), worker.to_string(), millis(ttl))
            .await?;
        Ok(())
    }

    pub async fn route(&self, org: OrgId, session: SessionId) -> Result<Option<WorkerId>, CoordError> {
        let raw: Option<String> = self.conn().get(keys::route(org, session)).await?;
        Ok(raw.and_then(|raw| raw.parse().ok()))
    }

    /// Mirrors the worker's control lease (or its absence) for readers such as the API.
    pub async fn set_control(
        &self,
        org: OrgId,
        session: SessionId,
        lease: Option<&ControlLease>,
        ttl: Duration,
    ) -> Result<(), CoordError> {
        let key = keys::control(org, session);
        let mut conn = self.conn();
        match lease {
            Some(lease) => {
                let _: () = conn.pset_ex(key, serde_json::to_string(lease)?, millis(ttl)).await?;
            }
            None => {
                let _: () = conn.del(key).await?;
            }
        }
        Ok(())
    }

    pub async fn control(&self, org: OrgId, session: SessionId) -> Result<Option<ControlLease>, CoordError> {
        let raw: Option<String> = self.conn().get(keys::control(org, session)).await?;
        raw.map(|raw| serde_json::from_str(&raw))
            .transpose()
            .map_err(Into::into)
    }

    /// Drops the routing and lease keys of a session that ended.
    pub async fn forget_session(&self, org: OrgId, session: SessionId) -> Result<(), CoordError> {
        let _: () = self
            .conn()
            .del(&[keys::route(org, session), keys::control(org, session)])
            .await?;
        Ok(())
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1)
}
