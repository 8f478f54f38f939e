//! The control lease: which viewer may send input to a session.
//!
//! Exactly one viewer holds control. A second viewer gets control only by an explicit takeover,
//! which increments the fencing token; input stamped with an older token is rejected.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{FencingToken, UserId, ViewerId};

/// Attach request mode of a viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// Take control if nobody holds it; rejected otherwise.
    Control,
    /// Take control even from another viewer, who is told and loses input.
    Takeover,
    /// Watch without input; control stays where it is.
    Observe,
}

impl AttachMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Control => "control",
            Self::Takeover => "takeover",
            Self::Observe => "observe",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlLease {
    pub user: UserId,
    pub user_name: String,
    pub viewer: ViewerId,
    pub fence: FencingToken,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("control is held by {holder_name} since {since}")]
    Held {
        holder: UserId,
        holder_name: String,
        since: OffsetDateTime,
    },
}

/// Result of granting control: the new lease and, on takeover, the lease it replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub lease: ControlLease,
    pub replaced: Option<ControlLease>,
}

/// Who asks for control and from which viewer connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimant {
    pub user: UserId,
    pub user_name: String,
    pub viewer: ViewerId,
}

/// Decides whether `claimant` gets control. `last_fence` is the highest fencing token ever
/// issued for the session, so tokens keep rising across detaches.
pub fn acquire(
    current: Option<&ControlLease>,
    last_fence: FencingToken,
    claimant: Claimant,
    mode: AttachMode,
    now: OffsetDateTime,
) -> Result<Grant, LeaseError> {
    // An observer never takes control; callers attach observers without asking for a lease,
    // and a stray one is treated like a plain attach.
    if let (Some(held), AttachMode::Control | AttachMode::Observe) = (current, mode) {
        return Err(LeaseError::Held {
            holder: held.user,
            holder_name: held.user_name.clone(),
            since: held.since,
        });
    }
    let base = current.map_or(last_fence, |held| held.fence.max(last_fence));
    let lease = ControlLease {
        user: claimant.user,
        user_name: claimant.user_name,
        viewer: claimant.viewer,
        fence: base.next(),
        since: now,
    };
    Ok(Grant {
        lease,
        replaced: current.cloned(),
    })
}

/// True when input from `viewer` stamped with `fence` may reach the desktop.
pub fn accepts_input(current: Option<&ControlLease>, viewer: ViewerId, fence: FencingToken) -> bool {
    current.is_some_and(|held| held.viewer == viewer && held.fence == fence)
}

/// Lease left after `viewer` goes away: released if it held control, unchanged otherwise.
pub fn release(current: Option<ControlLease>, viewer: ViewerId) -> Option<ControlLease> {
    current.filter(|held| held.viewer != viewer)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use time::macros::datetime;

    use super::*;

    fn claimant(n: u128) -> Claimant {
        Claimant {
            user: UserId(uuid::Uuid::from_u128(n)),
            user_name: format!("user{n}"),
            viewer: ViewerId(uuid::Uuid::from_u128(1000 + n)),
        }
    }

    const NOW: OffsetDateTime = datetime!(2026-12-04 12:00 UTC);

    #[test]
    fn first_viewer_gets_control() {
        let grant = acquire(None, FencingToken(0), claimant(1), AttachMode::Control, NOW).unwrap();
        assert_eq!(grant.lease.fence, FencingToken(1));
        assert_eq!(grant.replaced, None);
    }

    #[test]
    fn second_viewer_rejected_with_holder_name() {
        let first = acquire(None, FencingToken(0), claimant(1), AttachMode::Control, NOW)
            .unwrap()
            .lease;
        let err = acquire(Some(&first), FencingToken(1), claimant(2), AttachMode::Control, NOW).unwrap_err();
        let LeaseError::Held { holder_name, since, .. } = err;
        assert_eq!(holder_name, "user1");
        assert_eq!(since, NOW);
    }

    #[test]
    fn takeover_increments_fence_and_fences_out_old_viewer() {
        let first = acquire(None, FencingToken(4), claimant(1), AttachMode::Control, NOW)
            .unwrap()
            .lease;
        let grant = acquire(Some(&first), FencingToken(5), claimant(2), AttachMode::Takeover, NOW).unwrap();
        assert_eq!(grant.lease.fence, FencingToken(6));
        assert_eq!(grant.replaced.as_ref(), Some(&first));
        assert!(!accepts_input(Some(&grant.lease), first.viewer, first.fence));
        assert!(accepts_input(Some(&grant.lease), grant.lease.viewer, grant.lease.fence));
    }

    #[test]
    fn release_only_by_holder() {
        let first = acquire(None, FencingToken(0), claimant(1), AttachMode::Control, NOW)
            .unwrap()
            .lease;
        assert_eq!(release(Some(first.clone()), claimant(2).viewer), Some(first.clone()));
        assert_eq!(release(Some(first.clone()), first.viewer), None);
    }

    proptest! {
        /// Whatever sequence of attaches, takeovers and releases happens, fencing tokens strictly
        /// rise with each grant and only the latest holder's input is accepted.
        #[test]
        fn fences_strictly_increase(ops in prop::collection::vec((0u128..4, any::<bool>(), any::<bool>()), 1..60)) {
            let mut current: Option<ControlLease> = None;
            let mut last = FencingToken(0);
            let mut granted: Vec<ControlLease> = Vec::new();
            for (who, takeover, leave) in ops {
                if leave {
                    current = release(current, claimant(who).viewer);
                    continue;
                }
                let mode = if takeover { AttachMode::Takeover } else { AttachMode::Control };
                match acquire(current.as_ref(), last, claimant(who), mode, NOW) {
                    Ok(grant) => {
                        prop_assert!(grant.lease.fence > last);
                        last = grant.lease.fence;
                        granted.push(grant.lease.clone());
                        current = Some(grant.lease);
                    }
                    Err(LeaseError::Held { .. }) => prop_assert!(current.is_some() && !takeover),
                }
            }
            for old in &granted {
                let is_current = current.as_ref() == Some(old);
                prop_assert_eq!(accepts_input(current.as_ref(), old.viewer, old.fence), is_current);
            }
        }
    }
}
