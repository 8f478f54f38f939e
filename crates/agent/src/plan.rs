//! Turns the control plane's instructions into the actions the agent takes, as a pure function
//! of the instructions and the agent's current state.

use rdp_proxy_core::node::wire::{ConfigDocument, NodeInstructions};
use rdp_proxy_core::node::{NodeState, ServiceKind};

/// The agent's state when the control plane's instructions arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Current {
    /// A worker supervisor exists (the worker is starting, running or backing off).
    pub worker_supervised: bool,
    /// Version of the configuration document in `worker-config.json`, if one was applied.
    pub config_version: Option<i64>,
    /// The node can run the worker (`Capabilities::rdp`).
    pub rdp: bool,
}

/// One step the agent takes, in the order [`plan`] returns them.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Stop every service and exit: the node's certificate is revoked.
    Revoked,
    /// Write the document to `worker-config.json` and apply its agent settings.
    ApplyConfig(ConfigDocument),
    StartWorker,
    StopWorker,
}

/// Returns the actions that bring the agent in line with `instructions`.
///
/// A draining node keeps every service it runs, even one no longer enabled, so its held
/// sessions can finish. A new configuration is applied before the worker starts, so a new
/// worker reads it at start-up.
pub fn plan(instructions: &NodeInstructions, current: Current) -> Vec<Action> {
    if instructions.state == NodeState::Revoked {
        return vec![Action::Revoked];
    }
    let mut actions = Vec::new();
    if let Some(config) = &instructions.config
        && current.config_version != Some(config.version)
    {
        actions.push(Action::ApplyConfig(config.clone()));
    }
    let worker_wanted = current.rdp && instructions.enabled_services.contains(&ServiceKind::Worker);
    if worker_wanted && !current.worker_supervised {
        actions.push(Action::StartWorker);
    }
    if !worker_wanted && current.worker_supervised && instructions.state != NodeState::Draining {
        actions.push(Action::StopWorker);
    }
    actions
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rdp_proxy_core::NodeId;
    use rdp_proxy_core::node::NodeOwner;
    use rdp_proxy_core::node::wire::NodeConfig;

    use super::*;

    fn instructions(state: NodeState, enabled: &[ServiceKind], config_version: Option<i64>) -> NodeInstructions {
        NodeInstructions {
            node_id: NodeId::new_random(),
            owner: NodeOwner::Platform,
            state,
            enabled_services: enabled.to_vec(),
            labels: BTreeMap::new(),
            config: config_version.map(|version| ConfigDocument {
                version,
                body: NodeConfig::default(),
            }),
        }
    }

    fn current(worker_supervised: bool, config_version: Option<i64>) -> Current {
        Current {
            worker_supervised,
            config_version,
            rdp: true,
        }
    }

    const WORKER: &[ServiceKind] = &[ServiceKind::Worker];

    #[test]
    fn enabled_worker_starts() {
        let actions = plan(&instructions(NodeState::Ready, WORKER, None), current(false, None));
        assert_eq!(actions, [Action::StartWorker]);
    }

    #[test]
    fn running_worker_is_kept() {
        let actions = plan(&instructions(NodeState::Ready, WORKER, None), current(true, None));
        assert_eq!(actions, []);
    }

    #[test]
    fn disabled_worker_stops() {
        let actions = plan(&instructions(NodeState::Ready, &[], None), current(true, None));
        assert_eq!(actions, [Action::StopWorker]);
        let relay_only = plan(
            &instructions(NodeState::Ready, &[ServiceKind::Relay], None),
            current(true, None),
        );
        assert_eq!(relay_only, [Action::StopWorker]);
    }

    #[test]
    fn worker_needs_rdp_capability() {
        let no_rdp = Current {
            rdp: false,
            ..current(false, None)
        };
        assert_eq!(plan(&instructions(NodeState::Ready, WORKER, None), no_rdp), []);
        let running_without_rdp = Current {
            rdp: false,
            ..current(true, None)
        };
        let actions = plan(&instructions(NodeState::Ready, WORKER, None), running_without_rdp);
        assert_eq!(actions, [Action::StopWorker]);
    }

    #[test]
    fn draining_keeps_services() {
        let actions = plan(&instructions(NodeState::Draining, &[], None), current(true, None));
        assert_eq!(actions, []);
        let running = plan(&instructions(NodeState::Draining, WORKER, None), current(true, None));
        assert_eq!(running, []);
    }

    #[test]
    fn revoked_overrides_everything() {
        let actions = plan(&instructions(NodeState::Revoked, WORKER, Some(3)), current(true, None));
        assert_eq!(actions, [Action::Revoked]);
    }

    #[test]
    fn new_config_applies_before_start() {
        let answer = instructions(NodeState::Ready, WORKER, Some(4));
        let actions = plan(&answer, current(false, Some(3)));
        let expected_config = answer.config.clone().expect("config present");
        assert_eq!(actions, [Action::ApplyConfig(expected_config), Action::StartWorker]);
    }

    #[test]
    fn same_config_version_is_not_reapplied() {
        let actions = plan(&instructions(NodeState::Ready, WORKER, Some(4)), current(true, Some(4)));
        assert_eq!(actions, []);
    }

    #[test]
    fn absent_config_keeps_current() {
        let actions = plan(&instructions(NodeState::Ready, WORKER, None), current(true, Some(4)));
        assert_eq!(actions, []);
    }

    #[test]
    fn joining_and_down_act_like_ready() {
        for state in [NodeState::Joining, NodeState::Down] {
            let actions = plan(&instructions(state, WORKER, None), current(false, None));
            assert_eq!(actions, [Action::StartWorker], "state {state}");
        }
    }
}
