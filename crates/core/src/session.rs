//! Session lifecycle: the states a held desktop goes through and which transitions are legal.
//!
//! `requested` → `connecting` → `detached` ⇄ `active` → `terminated`, plus `failed` (never
//! connected) and `lost` (its worker died or stayed unreachable). A freshly connected session is
//! `detached` until a viewer attaches. `terminated`, `failed` and `lost` are final.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    Requested,
    Connecting,
    Active,
    Detached,
    Terminated,
    Failed,
    Lost,
}

impl SessionState {
    pub const ALL: [SessionState; 7] = [
        Self::Requested,
        Self::Connecting,
        Self::Active,
        Self::Detached,
        Self::Terminated,
        Self::Failed,
        Self::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Connecting => "connecting",
            Self::Active => "active",
            Self::Detached => "detached",
            Self::Terminated => "terminated",
            Self::Failed => "failed",
            Self::Lost => "lost",
        }
    }

    /// True for states no transition leaves.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Terminated | Self::Failed | Self::Lost)
    }

    /// True while the worker holds (or is opening) an RDP connection for the session.
    pub fn is_held(self) -> bool {
        matches!(self, Self::Connecting | Self::Active | Self::Detached)
    }

    /// True when the lifecycle allows moving from `self` to `to`.
    pub fn can_transition_to(self, to: SessionState) -> bool {
        use SessionState::*;
        matches!(
            (self, to),
            (Requested, Connecting | Failed | Terminated | Lost)
                | (Connecting, Detached | Active | Failed | Terminated | Lost)
                | (Detached, Active | Terminated | Lost)
                | (Active, Detached | Terminated | Lost)
        )
    }

    /// Checks a transition and returns the new state, or why it is not allowed.
    pub fn transition(self, to: SessionState) -> Result<SessionState, TransitionError> {
        if self.is_final() {
            return Err(TransitionError::Final { state: self });
        }
        if !self.can_transition_to(to) {
            return Err(TransitionError::NotAllowed { from: self, to });
        }
        Ok(to)
    }
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown session state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for SessionState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("session is already {state}; no further transition is possible")]
    Final { state: SessionState },
    #[error("a session cannot go from {from} to {to}")]
    NotAllowed { from: SessionState, to: SessionState },
    /// Another writer changed the session first; the caller re-reads and decides again.
    #[error("session changed concurrently (expected version {expected}, found {found})")]
    VersionConflict { expected: i64, found: i64 },
}

/// Kinds of entries in a session's event history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Requested,
    Connecting,
    Connected,
    Attached,
    Detached,
    TakenOver,
    Terminated,
    Failed,
    Lost,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Attached => "attached",
            Self::Detached => "detached",
            Self::TakenOver => "taken_over",
            Self::Terminated => "terminated",
            Self::Failed => "failed",
            Self::Lost => "lost",
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::SessionState::*;
    use super::*;

    #[test]
    fn happy_path_is_allowed() {
        let path = [Requested, Connecting, Detached, Active, Detached, Active, Terminated];
        for pair in path.windows(2) {
            assert_eq!(pair[0].transition(pair[1]), Ok(pair[1]), "{} -> {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn final_states_reject_everything() {
        for from in [Terminated, Failed, Lost] {
            for to in SessionState::ALL {
                assert_eq!(from.transition(to), Err(TransitionError::Final { state: from }));
            }
        }
    }

    #[test]
    fn failed_only_before_connected() {
        assert!(Requested.can_transition_to(Failed));
        assert!(Connecting.can_transition_to(Failed));
        assert!(!Active.can_transition_to(Failed));
        assert!(!Detached.can_transition_to(Failed));
    }

    #[test]
    fn state_names_round_trip() {
        for state in SessionState::ALL {
            assert_eq!(state.as_str().parse::<SessionState>(), Ok(state));
        }
        assert!("Active".parse::<SessionState>().is_err());
    }

    fn any_state() -> impl Strategy<Value = SessionState> {
        prop::sample::select(SessionState::ALL.to_vec())
    }

    proptest! {
        /// Any sequence of requested transitions, applying only the legal ones, never leaves a
        /// final state and never reaches `requested` again.
        #[test]
        fn random_walks_respect_final_states(steps in prop::collection::vec(any_state(), 0..40)) {
            let mut state = Requested;
            let mut finished = false;
            for to in steps {
                match state.transition(to) {
                    Ok(next) => {
                        prop_assert!(!finished, "left final state {state}");
                        prop_assert_ne!(next, Requested);
                        state = next;
                        finished = state.is_final();
                    }
                    Err(TransitionError::Final { .. }) => prop_assert!(finished),
                    Err(_) => prop_assert!(!state.can_transition_to(to)),
                }
            }
        }
    }
}
