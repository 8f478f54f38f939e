//! Newtype identifiers, so that one kind of id cannot be passed where another is expected.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(value: Uuid) -> Self {
                Self(value)
            }
        }
    };
}

uuid_id!(
    /// An organisation (tenant).
    OrgId
);
uuid_id!(
    /// A user identity.
    UserId
);
uuid_id!(
    /// A held remote desktop session.
    SessionId
);
uuid_id!(
    /// An RDP target (resource) inside one organisation.
    TargetId
);
uuid_id!(
    /// One worker process; a restarted worker gets a new id.
    WorkerId
);
uuid_id!(
    /// One viewer connection (a browser tab's WebSocket).
    ViewerId
);
uuid_id!(
    /// A machine in the cluster, run by the platform or by one organisation, with an agent.
    NodeId
);

/// Monotonic number of the control lease: each takeover increments it, and input stamped with an
/// older number is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FencingToken(pub u64);

impl FencingToken {
    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
