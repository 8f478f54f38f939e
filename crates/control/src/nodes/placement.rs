//! Gathers the placement candidates (live worker heartbeats from Redis joined with their nodes
//! from PostgreSQL) and asks `rdp_proxy_core::placement` to decide.

use std::collections::HashMap;

use rdp_proxy_coord::WorkerBeat;
use rdp_proxy_core::node::{NodeOwner, NodeState, ServiceKind};
use rdp_proxy_core::placement::{self, Candidate, Decision, Request};
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
    let candidates: Vec<Candidate> = beats.iter().map(|beat| candidate(beat, &nodes)).collect();
    let decision = placement::place(
        &Request {
            org,
            service: ServiceKind::Worker,
        },
        &candidates,
    );
    Ok(Placement {
        decision,
        beats: beats.into_iter().map(|beat| (beat.id, beat)).collect(),
    })
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
