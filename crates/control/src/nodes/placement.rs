//! Gathers the placement candidates (live worker heartbeats from Redis joined with their nodes
//! from PostgreSQL) and asks `rdp_proxy_core::placement` to decide.

use std::collections::HashMap;

use rdp_proxy_coord::WorkerBeat;
use rdp_proxy_core::node::{NodeOwner, NodeState, ServiceKind};
use rdp_proxy_core::placement::{self, Candidate, Decision, Filtered, Rejection, Request};
use rdp_proxy_core::{NodeId, OrgId, WorkerId};

use crate::AppState;

/// A decision and the heartbeats of the workers it ranked.
pub(crate) struct Placement {
    pub(crate) decision: Decision,
    pub(crate) beats: HashMap<WorkerId, WorkerBeat>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum GatherError {
    #[error("could not read worker heartbeats: {0}")]
    Coord(#[from] rdp_proxy_coord::CoordError),
    #[error("could not read nodes: {0}")]
    Store(#[from] rdp_proxy_store::StoreError),
}

pub(crate) async fn decide(state: &AppState, org: OrgId) -> Result<Placement, GatherError> {
    let mut beats = state.coord.live_workers().await?;
    // A heartbeat is up to one interval old; sessions placed since then are already in
    // PostgreSQL, so the larger count wins and quick successive placements spread out.
    let mut held: HashMap<WorkerId, u32> = HashMap::new();
    for (_, _, worker) in state.store.held_sessions().await? {
        *held.entry(worker).or_default() += 1;
    }
    for beat in &mut beats {
        let recorded = held.get(&beat.id).copied().unwrap_or(0);
        beat.sessions = beat.sessions.max(recorded);
        if let Some(load) = &mut beat.load {
            load.sessions = load.sessions.max(recorded);
        }
    }
    let node_ids: Vec<NodeId> = beats.iter().filter_map(|beat| beat.node).collect();
    let nodes: HashMap<NodeId, rdp_proxy_store::NodeRecord> = if node_ids.is_empty() {
        HashMap::new()
    } else {
        state
            .store
            .nodes_by_id(&node_ids)
            .await?
            .into_iter()
            .map(|node| (node.id, node))
            .collect()
    };
    let mut unverified = Vec::new();
    let mut candidates = Vec::with_capacity(beats.len());
    for beat in &beats {
        let candidate = candidate(beat, &nodes);
        match vouched(beat, &nodes, state.config.allow_unmanaged_workers) {
            Ok(()) => candidates.push(candidate),
            Err(detail) => unverified.push(Filtered {
                worker: candidate.worker,
                node: candidate.node,
                node_name: candidate.node_name,
                reason: Rejection::Unverified { detail },
            }),
        }
    }
    let mut decision = placement::place(
        &Request {
            org,
            service: ServiceKind::Worker,
        },
        &candidates,
    );
    decision.filtered.extend(unverified);
    Ok(Placement {
        decision,
        beats: beats.into_iter().map(|beat| (beat.id, beat)).collect(),
    })
}

/// Checks that a node's agent vouches for the heartbeat: workers write their heartbeats to
/// Redis themselves, so the node they name is taken only when that node's agent, which speaks
/// over its certificate, reports a running worker at the heartbeat's address.
fn vouched(
    beat: &WorkerBeat,
    nodes: &HashMap<NodeId, rdp_proxy_store::NodeRecord>,
    allow_unmanaged: bool,
) -> Result<(), String> {
    let Some(id) = beat.node else {
        return if allow_unmanaged {
            Ok(())
        } else {
            Err("the worker names no node and this cluster places only on workers run by node agents".into())
        };
    };
    let Some(node) = nodes.get(&id) else {
        return Err(format!("node {id} is not in the cluster"));
    };
    let address = beat
        .internal_url
        .strip_prefix("http://")
        .or_else(|| beat.internal_url.strip_prefix("https://"))
        .unwrap_or(&beat.internal_url);
    let reported = node
        .services
        .iter()
        .any(|service| service.kind == ServiceKind::Worker && service.address.as_deref() == Some(address));
    if reported {
        Ok(())
    } else {
        Err(format!("node {}'s agent reports no worker at {address}", node.name))
    }
}

fn candidate(beat: &WorkerBeat, nodes: &HashMap<NodeId, rdp_proxy_store::NodeRecord>) -> Candidate {
    let short = |id: &dyn std::fmt::Display| id.to_string().chars().take(8).collect::<String>();
    match beat.node {
        None => Candidate {
            worker: beat.id,
            node: None,
            node_name: format!("worker-{}", short(&beat.id)),
            owner: NodeOwner::Platform,
            state: NodeState::Ready,
            enabled: vec![ServiceKind::Worker],
            capabilities: None,
            load: beat.load.clone(),
        },
        Some(id) => match nodes.get(&id) {
            Some(node) => Candidate {
                worker: beat.id,
                node: Some(id),
                node_name: node.name.clone(),
                owner: node.owner,
                state: node.state,
                enabled: node.enabled_services.clone(),
                capabilities: Some(node.capabilities.clone()),
                load: beat.load.clone(),
            },
            // A worker whose node was removed: never placed on.
            None => Candidate {
                worker: beat.id,
                node: Some(id),
                node_name: format!("removed-{}", short(&id)),
                owner: NodeOwner::Platform,
                state: NodeState::Revoked,
                enabled: Vec::new(),
                capabilities: None,
                load: beat.load.clone(),
            },
        },
    }
}
