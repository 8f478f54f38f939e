//! Roles a member can hold in an organisation. What each role may do is written in the
//! organisation's policies (`rdp-proxy-policy`), not here.

use serde::{Deserialize, Serialize};

/// A member's role in one organisation. What each role may do is decided by the organisation's
/// policies; the role is the principal attribute those policies test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads sessions and the audit trail; opens nothing.
    Auditor,
    /// Opens desktops and acts on their own sessions.
    Member,
    /// Watches, takes over and ends any session of the organisation.
    Operator,
    /// Manages members, resources and policies.
    Admin,
    /// An admin who may also grant or remove the owner role.
    Owner,
}

impl Role {
    pub const ALL: [Role; 5] = [Self::Owner, Self::Admin, Self::Operator, Self::Member, Self::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Operator => "operator",
            Self::Member => "member",
            Self::Auditor => "auditor",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == raw)
    }
}
