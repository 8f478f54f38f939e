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
    NotReady {
        state: NodeState,
    },
    NoCapability {
        service: ServiceKind,
    },
    ServiceNotEnabled {
        service: ServiceKind,
    },
    NoHeartbeat,
    AbsurdFigures {
        detail: String,
    },
    Unhealthy {
        health: u8,
    },
    Full {
        sessions: u32,
        max_sessions: u32,
    },
    /// The heartbeat names no node, or a node whose agent does not report a worker at the
    /// heartbeat's address, while the cluster accepts only workers its node agents run. The
    /// control plane applies this filter before `place`.
    Unverified {
        detail: String,
    },
}

/// A candidate that passed the filters, with its score (higher is better, 0.0–1.0) and the parts
/// the score was made of.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scored {
    pub worker: WorkerId,
    pub node: Option<NodeId>,
    pub node_name: String,
    /// A customer-managed node of the requesting organisation; these rank first.
    pub own_node: bool,
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

/// Weights of the headroom parts in the score. They sum to 1.0, so the score stays within
/// 0.0–1.0. Free session slots and CPU weigh most because each new session uses them up. Memory,
/// traffic and health separate otherwise similar workers.
pub const WEIGHT_SESSIONS: f64 = 0.35;
pub const WEIGHT_CPU: f64 = 0.30;
pub const WEIGHT_MEMORY: f64 = 0.15;
pub const WEIGHT_NETWORK: f64 = 0.10;
pub const WEIGHT_HEALTH: f64 = 0.10;

const _: () = {
    let sum = WEIGHT_SESSIONS + WEIGHT_CPU + WEIGHT_MEMORY + WEIGHT_NETWORK + WEIGHT_HEALTH;
    assert!((sum - 1.0).abs() < 1e-9, "placement weights must sum to 1");
    let minor = WEIGHT_MEMORY.max(WEIGHT_NETWORK).max(WEIGHT_HEALTH);
    assert!(
        WEIGHT_SESSIONS > WEIGHT_CPU && WEIGHT_CPU > minor,
        "sessions and CPU must weigh most"
    );
};

/// Link capacity assumed when a node reports no link speed (or zero): 1 Gbit/s, in bytes per
/// second.
pub const DEFAULT_LINK_BYTES_PER_SEC: u64 = 125_000_000;

/// Available memory that counts as full memory headroom when the node's total memory is
/// unknown (a worker without a node agent). Less available memory scores proportionally less.
/// NOTE: 16 GiB is an assumed typical worker size, not a measured one, so unmanaged workers
/// and nodes with known capabilities are compared only roughly on memory.
pub const REFERENCE_MEMORY_BYTES: u64 = 16 << 30;

/// Cores and memory of the largest machine `Capabilities::validate` accepts. Figures of a
/// worker without capabilities are checked against this machine, so only figures that no
/// machine produces are rejected.
const UNMANAGED_MAX_CORES: u32 = 4096;
const UNMANAGED_MAX_MEMORY_BYTES: u64 = 64 << 40;

impl Candidate {
    /// Builds the candidate for a worker started without a node agent: a ready platform node
    /// with the worker service enabled and unknown capabilities.
    pub fn unmanaged(worker: WorkerId, node_name: impl Into<String>, load: Option<ServiceLoad>) -> Self {
        Self {
            worker,
            node: None,
            node_name: node_name.into(),
            owner: NodeOwner::Platform,
            state: NodeState::Ready,
            enabled: vec![ServiceKind::Worker],
            capabilities: None,
            load,
        }
    }
}

impl ScoreParts {
    /// Computes the headroom parts of figures that passed the filters. `capabilities` is `None`
    /// for a worker without a node agent. Its CPU is then judged by `node_cpu` alone, its
    /// memory against [`REFERENCE_MEMORY_BYTES`] and its traffic against
    /// [`DEFAULT_LINK_BYTES_PER_SEC`].
    ///
    /// Expects `load.max_sessions > 0` and, when given, valid capabilities; the filters in
    /// [`place`] guarantee both.
    pub fn of(load: &ServiceLoad, capabilities: Option<&Capabilities>) -> Self {
        let busy = match capabilities {
            Some(capabilities) => load.node_cpu.max(load.cpu_cores / f64::from(capabilities.cores)),
            None => load.node_cpu,
        };
        let total_memory = capabilities.map_or(REFERENCE_MEMORY_BYTES, |capabilities| capabilities.memory_bytes);
        let link_bytes_per_sec = capabilities
            .and_then(|capabilities| capabilities.network_bits_per_sec)
            .filter(|&bits| bits > 0)
            .map_or(DEFAULT_LINK_BYTES_PER_SEC as f64, |bits| bits as f64 / 8.0);
        let traffic = (load.network_bytes_per_sec as f64 / link_bytes_per_sec).min(1.0);
        Self {
            cpu: (1.0 - busy).clamp(0.0, 1.0),
            memory: (load.memory_available_bytes as f64 / total_memory as f64).clamp(0.0, 1.0),
            sessions: (1.0 - f64::from(load.sessions) / f64::from(load.max_sessions)).clamp(0.0, 1.0),
            network: 1.0 - traffic,
            health: f64::from(load.health.min(100)) / 100.0,
        }
    }

    /// Returns the weighted sum of the parts (see [`WEIGHT_SESSIONS`] and the weights after it).
    pub fn score(&self) -> f64 {
        WEIGHT_SESSIONS * self.sessions
            + WEIGHT_CPU * self.cpu
            + WEIGHT_MEMORY * self.memory
            + WEIGHT_NETWORK * self.network
            + WEIGHT_HEALTH * self.health
    }
}

/// Decides which worker gets a session of `request.org` for `request.service`.
///
/// Each candidate is either filtered out with the first [`Rejection`] that applies, checked in
/// the order the enum lists them, or scored with [`ScoreParts::score`]. `ranked` puts the
/// organisation's own customer-managed nodes first (they exist to carry its sessions, often
/// inside its network), then sorts by score, highest first, then by node name, worker id and
/// node id, so `ranked` and `chosen` do not depend on the order of `candidates`. `filtered`
/// keeps the order of `candidates`.
///
/// Workers on one machine report the same node CPU and memory. Among such workers with the same
/// session limit, one with fewer sessions ranks above one with more, unless its own CPU use or
/// traffic is higher or its health lower.
pub fn place(request: &Request, candidates: &[Candidate]) -> Decision {
    let mut ranked = Vec::with_capacity(candidates.len());
    let mut filtered = Vec::new();
    for candidate in candidates {
        match admit(request, candidate) {
            Ok(load) => {
                let parts = ScoreParts::of(load, candidate.capabilities.as_ref());
                ranked.push(Scored {
                    worker: candidate.worker,
                    node: candidate.node,
                    node_name: candidate.node_name.clone(),
                    own_node: candidate.owner == NodeOwner::Org(request.org),
                    score: parts.score(),
                    parts,
                });
            }
            Err(reason) => filtered.push(Filtered {
                worker: candidate.worker,
                node: candidate.node,
                node_name: candidate.node_name.clone(),
                reason,
            }),
        }
    }
    ranked.sort_by(|a, b| {
        b.own_node
            .cmp(&a.own_node)
            .then_with(|| b.score.total_cmp(&a.score))
            .then_with(|| a.node_name.cmp(&b.node_name))
            .then_with(|| a.worker.cmp(&b.worker))
            .then_with(|| a.node.cmp(&b.node))
    });
    Decision {
        chosen: ranked.first().map(|best| best.worker),
        ranked,
        filtered,
    }
}

/// Applies the hard filters in order and returns the candidate's load figures when all pass.
fn admit<'a>(request: &Request, candidate: &'a Candidate) -> Result<&'a ServiceLoad, Rejection> {
    let service = request.service;
    if !candidate.owner.may_serve(request.org) {
        return Err(Rejection::OtherOrganisation);
    }
    if candidate.state != NodeState::Ready {
        return Err(Rejection::NotReady { state: candidate.state });
    }
    if let Some(capabilities) = &candidate.capabilities
        && !capabilities.supports(service)
    {
        return Err(Rejection::NoCapability { service });
    }
    if !candidate.enabled.contains(&service) {
        return Err(Rejection::ServiceNotEnabled { service });
    }
    let Some(load) = &candidate.load else {
        return Err(Rejection::NoHeartbeat);
    };
    check_figures(load, candidate.capabilities.as_ref())?;
    if load.health < MIN_HEALTH {
        return Err(Rejection::Unhealthy { health: load.health });
    }
    if load.sessions >= load.max_sessions {
        return Err(Rejection::Full {
            sessions: load.sessions,
            max_sessions: load.max_sessions,
        });
    }
    Ok(load)
}

/// Validates the capabilities, when known, and the load figures against them. Without
/// capabilities the figures are checked against the largest machine `Capabilities::validate`
/// accepts. Scoring divides by the cores and memory checked here.
fn check_figures(load: &ServiceLoad, capabilities: Option<&Capabilities>) -> Result<(), Rejection> {
    let absurd = |detail: String| Rejection::AbsurdFigures { detail };
    match capabilities {
        Some(capabilities) => {
            capabilities
                .validate()
                .map_err(|error| absurd(format!("capabilities: {error}")))?;
            load.validate(capabilities)
        }
        None => load.validate(&unmanaged_capabilities()),
    }
    .map_err(|error| absurd(error.to_string()))
}

fn unmanaged_capabilities() -> Capabilities {
    Capabilities {
        cores: UNMANAGED_MAX_CORES,
        memory_bytes: UNMANAGED_MAX_MEMORY_BYTES,
        network_bits_per_sec: None,
        rdp: true,
        relay: true,
        connector: true,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;

    const GIB: u64 = 1 << 30;

    fn org(n: u128) -> OrgId {
        OrgId(Uuid::from_u128(n))
    }

    fn worker(n: u128) -> WorkerId {
        WorkerId(Uuid::from_u128(n))
    }

    fn request(org_number: u128) -> Request {
        Request {
            org: org(org_number),
            service: ServiceKind::Worker,
        }
    }

    fn capabilities() -> Capabilities {
        Capabilities {
            cores: 8,
            memory_bytes: 16 * GIB,
            network_bits_per_sec: Some(1_000_000_000),
            rdp: true,
            relay: false,
            connector: false,
        }
    }

    /// Figures of a worker holding `sessions`, each costing 0.05 cores and 100 kB/s.
    fn load(sessions: u32) -> ServiceLoad {
        ServiceLoad {
            node_cpu: 0.2,
            cpu_cores: 0.05 * f64::from(sessions),
            memory_available_bytes: 8 * GIB,
            memory_bytes: (200 << 20) + u64::from(sessions) * (10 << 20),
            network_bytes_per_sec: 100_000 * u64::from(sessions),
            sessions,
            max_sessions: 50,
            connector_load: 0.0,
            relay_load: 0.0,
            health: 100,
        }
    }

    fn candidate(n: u128) -> Candidate {
        Candidate {
            worker: worker(n),
            node: Some(NodeId(Uuid::from_u128(n))),
            node_name: format!("node-{n:02}"),
            owner: NodeOwner::Platform,
            state: NodeState::Ready,
            enabled: vec![ServiceKind::Worker],
            capabilities: Some(capabilities()),
            load: Some(load(0)),
        }
    }

    fn with_load(mut candidate: Candidate, change: impl FnOnce(&mut ServiceLoad)) -> Candidate {
        if let Some(load) = &mut candidate.load {
            change(load);
        }
        candidate
    }

    fn ranked_workers(decision: &Decision) -> Vec<WorkerId> {
        decision.ranked.iter().map(|scored| scored.worker).collect()
    }

    /// Places `candidate` alone and returns why it was filtered out, or `None` if it was chosen.
    fn rejection_of(request: &Request, candidate: Candidate) -> Option<Rejection> {
        let decision = place(request, &[candidate]);
        assert_eq!(decision.ranked.len() + decision.filtered.len(), 1);
        assert_eq!(decision.chosen.is_some(), decision.ranked.len() == 1);
        decision.filtered.into_iter().next().map(|filtered| filtered.reason)
    }

    #[test]
    fn each_filter_has_its_rejection() {
        let service = ServiceKind::Worker;
        let cases: Vec<(&str, Candidate, Rejection)> = vec![
            (
                "other organisation's node",
                Candidate {
                    owner: NodeOwner::Org(org(2)),
                    ..candidate(1)
                },
                Rejection::OtherOrganisation,
            ),
            (
                "joining",
                Candidate {
                    state: NodeState::Joining,
                    ..candidate(1)
                },
                Rejection::NotReady {
                    state: NodeState::Joining,
                },
            ),
            (
                "draining",
                Candidate {
                    state: NodeState::Draining,
                    ..candidate(1)
                },
                Rejection::NotReady {
                    state: NodeState::Draining,
                },
            ),
            (
                "down",
                Candidate {
                    state: NodeState::Down,
                    ..candidate(1)
                },
                Rejection::NotReady { state: NodeState::Down },
            ),
            (
                "revoked",
                Candidate {
                    state: NodeState::Revoked,
                    ..candidate(1)
                },
                Rejection::NotReady {
                    state: NodeState::Revoked,
                },
            ),
            (
                "no RDP capability",
                Candidate {
                    capabilities: Some(Capabilities {
                        rdp: false,
                        ..capabilities()
                    }),
                    ..candidate(1)
                },
                Rejection::NoCapability { service },
            ),
            (
                "worker service not enabled",
                Candidate {
                    enabled: vec![ServiceKind::Relay],
                    ..candidate(1)
                },
                Rejection::ServiceNotEnabled { service },
            ),
            (
                "expired heartbeat",
                Candidate {
                    load: None,
                    ..candidate(1)
                },
                Rejection::NoHeartbeat,
            ),
            (
                "CPU not a number",
                with_load(candidate(1), |load| load.node_cpu = f64::NAN),
                Rejection::AbsurdFigures {
                    detail: "node_cpu = NaN is out of range".to_owned(),
                },
            ),
            (
                "more CPU than the node has",
                with_load(candidate(1), |load| load.cpu_cores = 64.0),
                Rejection::AbsurdFigures {
                    detail: "cpu_cores = 64 is out of range".to_owned(),
                },
            ),
            (
                "zero cores",
                Candidate {
                    capabilities: Some(Capabilities {
                        cores: 0,
                        ..capabilities()
                    }),
                    ..candidate(1)
                },
                Rejection::AbsurdFigures {
                    detail: "capabilities: cores = 0 is out of range".to_owned(),
                },
            ),
            (
                "unhealthy",
                with_load(candidate(1), |load| load.health = MIN_HEALTH - 1),
                Rejection::Unhealthy { health: MIN_HEALTH - 1 },
            ),
            (
                "full",
                with_load(candidate(1), |load| load.sessions = 50),
                Rejection::Full {
                    sessions: 50,
                    max_sessions: 50,
                },
            ),
            (
                "no sessions allowed",
                with_load(candidate(1), |load| load.max_sessions = 0),
                Rejection::Full {
                    sessions: 0,
                    max_sessions: 0,
                },
            ),
        ];
        for (case, candidate, expected) in cases {
            assert_eq!(rejection_of(&request(1), candidate), Some(expected), "{case}");
        }
    }

    #[test]
    fn boundary_candidates_pass() {
        let passing = [
            ("platform node", candidate(1)),
            (
                "own organisation's node",
                Candidate {
                    owner: NodeOwner::Org(org(1)),
                    ..candidate(1)
                },
            ),
            (
                "health at the minimum",
                with_load(candidate(1), |load| load.health = MIN_HEALTH),
            ),
            (
                "one free session slot",
                with_load(candidate(1), |load| load.sessions = 49),
            ),
        ];
        for (case, candidate) in passing {
            assert_eq!(rejection_of(&request(1), candidate), None, "{case}");
        }
    }

    #[test]
    fn first_failing_filter_is_reported() {
        let draining = NodeState::Draining;
        let service = ServiceKind::Worker;
        let cases: Vec<(Candidate, Rejection)> = vec![
            (
                Candidate {
                    owner: NodeOwner::Org(org(2)),
                    state: draining,
                    load: None,
                    ..candidate(1)
                },
                Rejection::OtherOrganisation,
            ),
            (
                Candidate {
                    state: draining,
                    capabilities: Some(Capabilities {
                        rdp: false,
                        ..capabilities()
                    }),
                    ..candidate(1)
                },
                Rejection::NotReady { state: draining },
            ),
            (
                Candidate {
                    capabilities: Some(Capabilities {
                        rdp: false,
                        ..capabilities()
                    }),
                    enabled: Vec::new(),
                    ..candidate(1)
                },
                Rejection::NoCapability { service },
            ),
            (
                Candidate {
                    enabled: Vec::new(),
                    load: None,
                    ..candidate(1)
                },
                Rejection::ServiceNotEnabled { service },
            ),
            (
                with_load(candidate(1), |load| {
                    load.node_cpu = 1.5;
                    load.health = 0;
                }),
                Rejection::AbsurdFigures {
                    detail: "node_cpu = 1.5 is out of range".to_owned(),
                },
            ),
            (
                with_load(candidate(1), |load| {
                    load.health = 10;
                    load.sessions = 50;
                }),
                Rejection::Unhealthy { health: 10 },
            ),
        ];
        for (candidate, expected) in cases {
            let name = format!("{expected:?}");
            assert_eq!(rejection_of(&request(1), candidate), Some(expected), "{name}");
        }
    }

    #[test]
    fn request_service_drives_capability_filters() {
        let relay = Request {
            org: org(1),
            service: ServiceKind::Relay,
        };
        assert_eq!(
            rejection_of(&relay, candidate(1)),
            Some(Rejection::NoCapability {
                service: ServiceKind::Relay
            })
        );
        let relay_node = Candidate {
            capabilities: Some(Capabilities {
                relay: true,
                ..capabilities()
            }),
            ..candidate(1)
        };
        assert_eq!(
            rejection_of(&relay, relay_node.clone()),
            Some(Rejection::ServiceNotEnabled {
                service: ServiceKind::Relay
            })
        );
        let enabled = Candidate {
            enabled: vec![ServiceKind::Worker, ServiceKind::Relay],
            ..relay_node
        };
        assert_eq!(rejection_of(&relay, enabled), None);
    }

    #[test]
    fn unmanaged_worker_rejects_only_absurd_figures() {
        let generous = ServiceLoad {
            cpu_cores: 96.0,
            memory_available_bytes: 1 << 40,
            memory_bytes: 64 * GIB,
            ..load(10)
        };
        let unmanaged = Candidate::unmanaged(worker(1), "dev", Some(generous.clone()));
        assert_eq!(rejection_of(&request(1), unmanaged), None);

        type Change = fn(&mut ServiceLoad);
        let absurd: [(&str, Change); 4] = [
            ("node_cpu", |load| load.node_cpu = f64::NAN),
            ("node_cpu", |load| load.node_cpu = 1.5),
            ("health", |load| load.health = 101),
            ("memory_available_bytes", |load| load.memory_available_bytes = u64::MAX),
        ];
        for (field, change) in absurd {
            let mut figures = generous.clone();
            change(&mut figures);
            let unmanaged = Candidate::unmanaged(worker(1), "dev", Some(figures));
            let reason = rejection_of(&request(1), unmanaged);
            assert!(
                matches!(&reason, Some(Rejection::AbsurdFigures { detail }) if detail.starts_with(field)),
                "{field}: {reason:?}"
            );
        }
    }

    #[test]
    fn unmanaged_limits_are_valid_capabilities() {
        assert_eq!(unmanaged_capabilities().validate(), Ok(()));
    }

    #[test]
    fn score_parts_follow_the_formula() {
        let figures = ServiceLoad {
            node_cpu: 0.25,
            cpu_cores: 4.0,
            memory_available_bytes: 4 * GIB,
            network_bytes_per_sec: 25_000_000,
            sessions: 10,
            max_sessions: 40,
            health: 90,
            ..load(0)
        };
        let parts = ScoreParts::of(&figures, Some(&capabilities()));
        // The service's 4 of 8 cores exceed the node's 25%, so the service's share counts.
        assert_eq!(parts.cpu, 0.5);
        assert_eq!(parts.memory, 0.25);
        assert_eq!(parts.sessions, 0.75);
        assert_eq!(parts.network, 0.8);
        assert_eq!(parts.health, 0.9);
        let expected = 0.35 * 0.75 + 0.30 * 0.5 + 0.15 * 0.25 + 0.10 * 0.8 + 0.10 * 0.9;
        assert!((parts.score() - expected).abs() < 1e-12, "{}", parts.score());
    }

    #[test]
    fn unknown_capabilities_use_references() {
        let figures = ServiceLoad {
            node_cpu: 0.25,
            cpu_cores: 3.0,
            memory_available_bytes: 4 * GIB,
            network_bytes_per_sec: 25_000_000,
            ..load(0)
        };
        let parts = ScoreParts::of(&figures, None);
        assert_eq!(parts.cpu, 0.75);
        assert_eq!(parts.memory, 0.25);
        assert_eq!(parts.network, 0.8);

        let plenty = ServiceLoad {
            memory_available_bytes: 64 * GIB,
            ..figures.clone()
        };
        assert_eq!(ScoreParts::of(&plenty, None).memory, 1.0);

        let no_link_speed = Capabilities {
            network_bits_per_sec: Some(0),
            ..capabilities()
        };
        assert_eq!(ScoreParts::of(&figures, Some(&no_link_speed)).network, 0.8);
    }

    #[test]
    fn own_nodes_rank_before_idle_platform_nodes() {
        let platform = with_load(candidate(1), |figures| *figures = load(0));
        let mut own = with_load(candidate(2), |figures| *figures = load(12));
        own.owner = NodeOwner::Org(org(1));
        let decision = place(&request(1), &[platform, own]);
        assert_eq!(decision.chosen, Some(worker(2)));
        assert!(decision.ranked[0].own_node);
        assert!(!decision.ranked[1].own_node);
    }

    #[test]
    fn fewer_sessions_win_on_one_machine() {
        let sessions = [(1, 10), (2, 3), (3, 7), (4, 0), (5, 12)];
        let candidates: Vec<Candidate> = sessions
            .iter()
            .map(|&(n, held)| with_load(candidate(n), |figures| *figures = load(held)))
            .collect();
        let decision = place(&request(1), &candidates);
        assert_eq!(decision.chosen, Some(worker(4)));
        assert_eq!(
            ranked_workers(&decision),
            vec![worker(4), worker(2), worker(3), worker(1), worker(5)]
        );
    }

    #[test]
    fn fewer_sessions_win_among_unmanaged_workers() {
        let candidates: Vec<Candidate> = [(1, 8), (2, 2), (3, 5)]
            .iter()
            .map(|&(n, held)| Candidate::unmanaged(worker(n), "localhost", Some(load(held))))
            .collect();
        let decision = place(&request(1), &candidates);
        assert_eq!(ranked_workers(&decision), vec![worker(2), worker(3), worker(1)]);
    }

    #[test]
    fn idle_machine_beats_busy_machine() {
        let busy = with_load(candidate(1), |figures| figures.node_cpu = 0.9);
        let idle = with_load(candidate(2), |figures| figures.node_cpu = 0.1);
        let decision = place(&request(1), &[busy, idle]);
        assert_eq!(decision.chosen, Some(worker(2)));
        assert!(decision.ranked[0].score > decision.ranked[1].score);
        assert!(decision.ranked[0].parts.cpu > decision.ranked[1].parts.cpu);
    }

    #[test]
    fn ties_go_to_node_name_then_worker() {
        let named = |n: u128, name: &str| Candidate {
            node_name: name.to_owned(),
            ..candidate(n)
        };
        let decision = place(&request(1), &[named(3, "b"), named(2, "a"), named(1, "a")]);
        assert_eq!(ranked_workers(&decision), vec![worker(1), worker(2), worker(3)]);
        assert_eq!(decision.chosen, Some(worker(1)));
    }

    #[test]
    fn candidate_order_does_not_matter() {
        let mut candidates: Vec<Candidate> = (1..=8)
            .map(|n| {
                with_load(candidate(n), |figures| {
                    *figures = load(u32::try_from(n % 3).unwrap_or(0))
                })
            })
            .collect();
        candidates.push(Candidate {
            state: NodeState::Down,
            ..candidate(9)
        });
        let expected = ranked_workers(&place(&request(1), &candidates));
        for rotation in 1..candidates.len() {
            let mut reordered = candidates.clone();
            reordered.rotate_left(rotation);
            assert_eq!(
                ranked_workers(&place(&request(1), &reordered)),
                expected,
                "rotation {rotation}"
            );
        }
        candidates.reverse();
        assert_eq!(ranked_workers(&place(&request(1), &candidates)), expected);
    }

    #[test]
    fn nothing_to_choose() {
        let empty = place(&request(1), &[]);
        assert_eq!(empty.chosen, None);
        assert!(empty.ranked.is_empty());
        assert!(empty.filtered.is_empty());

        let all_filtered = place(
            &request(1),
            &[
                Candidate {
                    load: None,
                    ..candidate(1)
                },
                Candidate {
                    owner: NodeOwner::Org(org(2)),
                    ..candidate(2)
                },
            ],
        );
        assert_eq!(all_filtered.chosen, None);
        assert_eq!(all_filtered.filtered.len(), 2);
    }

    fn any_owner() -> impl Strategy<Value = NodeOwner> {
        prop_oneof![
            Just(NodeOwner::Platform),
            (1u128..=3).prop_map(|n| NodeOwner::Org(org(n))),
        ]
    }

    fn any_state() -> impl Strategy<Value = NodeState> {
        prop_oneof![
            4 => Just(NodeState::Ready),
            1 => prop::sample::select(vec![
                NodeState::Joining,
                NodeState::Draining,
                NodeState::Down,
                NodeState::Revoked,
            ]),
        ]
    }

    /// Generates capabilities, unknown in one case of five. About one in ten has zero cores or
    /// zero memory.
    fn any_capabilities() -> impl Strategy<Value = Option<Capabilities>> {
        let capabilities = (
            prop_oneof![1 => Just(0u32), 19 => 1u32..=64],
            prop_oneof![1 => Just(0u64), 19 => GIB..=64 * GIB],
            prop::option::of(0u64..=10_000_000_000),
            prop::bool::weighted(0.9),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(cores, memory_bytes, network_bits_per_sec, rdp, relay, connector)| Capabilities {
                    cores,
                    memory_bytes,
                    network_bits_per_sec,
                    rdp,
                    relay,
                    connector,
                },
            );
        prop::option::weighted(0.8, capabilities)
    }

    fn any_fraction() -> impl Strategy<Value = f64> {
        prop_oneof![18 => 0.0..=1.0, 1 => Just(f64::NAN), 1 => Just(1.5)]
    }

    /// Generates figures that are mostly plausible for any node `any_capabilities` makes. About
    /// one heartbeat in ten is missing, and a few figures are absurd.
    fn any_load() -> impl Strategy<Value = Option<ServiceLoad>> {
        let load = (
            any_fraction(),
            prop_oneof![19 => 0.0..1.0, 1 => Just(500.0)],
            prop_oneof![19 => 0u64..=GIB, 1 => Just(100 * GIB)],
            0u64..=512 << 20,
            0u64..=200_000_000,
            0u32..=55,
            prop_oneof![1 => Just(0u32), 19 => 1u32..=50],
            prop_oneof![1 => 0u8..MIN_HEALTH, 8 => MIN_HEALTH..=100, 1 => 101u8..=255],
        )
            .prop_map(
                |(
                    node_cpu,
                    cpu_cores,
                    memory_available_bytes,
                    memory_bytes,
                    network,
                    sessions,
                    max_sessions,
                    health,
                )| {
                    ServiceLoad {
                        node_cpu,
                        cpu_cores,
                        memory_available_bytes,
                        memory_bytes,
                        network_bytes_per_sec: network,
                        sessions,
                        max_sessions,
                        connector_load: 0.0,
                        relay_load: 0.0,
                        health,
                    }
                },
            );
        prop::option::weighted(0.9, load)
    }

    /// Generates enabled services, each present with probability 0.8.
    fn any_enabled() -> impl Strategy<Value = Vec<ServiceKind>> {
        prop::collection::vec(prop::bool::weighted(0.8), 3).prop_map(|flags| {
            ServiceKind::ALL
                .into_iter()
                .zip(flags)
                .filter_map(|(service, enabled)| enabled.then_some(service))
                .collect()
        })
    }

    /// Generates candidates with distinct worker ids and random owners (platform or one of organisations
    /// 1 to 3), states, capabilities, enabled services and figures.
    fn any_candidates() -> impl Strategy<Value = Vec<Candidate>> {
        let candidate = (
            any_owner(),
            any_state(),
            any_enabled(),
            any_capabilities(),
            any_load(),
            0u8..4,
        );
        prop::collection::vec(candidate, 0..24).prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(index, (owner, state, enabled, capabilities, load, name))| {
                    let n = index as u128 + 1;
                    Candidate {
                        worker: worker(n),
                        node: (!n.is_multiple_of(5)).then(|| NodeId(Uuid::from_u128(n))),
                        node_name: format!("node-{name}"),
                        owner,
                        state,
                        enabled,
                        capabilities,
                        load,
                    }
                })
                .collect()
        })
    }

    fn any_request() -> impl Strategy<Value = Request> {
        (1u128..=3, prop::sample::select(ServiceKind::ALL.to_vec()))
            .prop_map(|(n, service)| Request { org: org(n), service })
    }

    proptest! {
        /// Whatever the candidates, the chosen worker may serve the organisation and was not
        /// filtered out, and each candidate appears exactly once in `ranked` or `filtered`.
        #[test]
        fn never_places_on_another_organisation(request in any_request(), candidates in any_candidates()) {
            let decision = place(&request, &candidates);
            let by_worker: BTreeMap<WorkerId, &Candidate> =
                candidates.iter().map(|candidate| (candidate.worker, candidate)).collect();

            let mut seen: BTreeMap<WorkerId, usize> = BTreeMap::new();
            let ranked = decision.ranked.iter().map(|scored| scored.worker);
            for worker in ranked.chain(decision.filtered.iter().map(|filtered| filtered.worker)) {
                *seen.entry(worker).or_default() += 1;
            }
            prop_assert_eq!(seen.len(), candidates.len());
            prop_assert!(seen.values().all(|&count| count == 1), "{:?}", seen);

            prop_assert_eq!(decision.chosen, decision.ranked.first().map(|best| best.worker));
            if let Some(chosen) = decision.chosen {
                prop_assert!(by_worker[&chosen].owner.may_serve(request.org));
                prop_assert!(decision.filtered.iter().all(|filtered| filtered.worker != chosen));
            }
            for filtered in &decision.filtered {
                let expected = !by_worker[&filtered.worker].owner.may_serve(request.org);
                prop_assert_eq!(filtered.reason == Rejection::OtherOrganisation, expected);
            }
            for scored in &decision.ranked {
                let candidate = by_worker[&scored.worker];
                prop_assert!(candidate.owner.may_serve(request.org));
                prop_assert_eq!(candidate.state, NodeState::Ready);
                prop_assert!((0.0..=1.0).contains(&scored.score), "score {}", scored.score);
            }
            for pair in decision.ranked.windows(2) {
                prop_assert!(pair[0].own_node >= pair[1].own_node);
                if pair[0].own_node == pair[1].own_node {
                    prop_assert!(pair[0].score >= pair[1].score);
                }
            }
        }

        /// Workers on one machine with the same node figures, whose own CPU and traffic grow
        /// with their sessions, are ranked by sessions, fewest first.
        #[test]
        fn fewest_sessions_ranked_first(
            held in prop::collection::vec(0u32..50, 1..12),
            node_cpu in 0.0..=1.0f64,
            memory_available in GIB..=16 * GIB,
        ) {
            let candidates: Vec<Candidate> = held
                .iter()
                .enumerate()
                .map(|(index, &sessions)| {
                    with_load(candidate(index as u128 + 1), |figures| {
                        *figures = ServiceLoad {
                            node_cpu,
                            memory_available_bytes: memory_available,
                            ..load(sessions)
                        };
                    })
                })
                .collect();
            let decision = place(&request(1), &candidates);
            let ranked_sessions: Vec<u32> = decision
                .ranked
                .iter()
                .map(|scored| {
                    let index = candidates.iter().position(|candidate| candidate.worker == scored.worker);
                    index.map_or(u32::MAX, |index| held[index])
                })
                .collect();
            let mut sorted = held.clone();
            sorted.sort_unstable();
            prop_assert_eq!(ranked_sessions, sorted);
        }
    }
}
