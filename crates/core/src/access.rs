//! Who may do what to a session. Every endpoint asks [`authorize`]; it is the single place the
//! rule lives until a policy engine replaces it.

use serde::{Deserialize, Serialize};

use crate::ids::{OrgId, UserId};

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

/// An authenticated user acting inside one organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub user: UserId,
    pub user_name: String,
    pub org: OrgId,
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAction {
    Create,
    View,
    Attach,
    Detach,
    Takeover,
    Terminate,
}

/// The session an action applies to, as far as the rule needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionFacts {
    pub org: OrgId,
    pub owner: UserId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// The object is outside the actor's organisation or not theirs to see: answer as if missing.
    Hidden,
    /// Visible, but this action needs a higher role.
    Forbidden,
}

/// Decides an action on a session. A member sees and acts only on their own sessions; an admin
/// acts on every session of their organisation; nobody sees another organisation's sessions.
///
/// Every action follows the same rule today; `_action` keeps the call sites ready for policies
/// that differ per action.
pub fn authorize(actor: &Actor, _action: SessionAction, session: SessionFacts) -> Decision {
    if actor.org != session.org {
        return Decision::Hidden;
    }
    if matches!(actor.role, Role::Owner | Role::Admin | Role::Operator) || actor.user == session.owner {
        return Decision::Allow;
    }
    // A member cannot see another user's session at all, so even a takeover request gets the
    // same answer as a missing session rather than revealing that the id exists.
    Decision::Hidden
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    const ACTIONS: [SessionAction; 6] = [
        SessionAction::Create,
        SessionAction::View,
        SessionAction::Attach,
        SessionAction::Detach,
        SessionAction::Takeover,
        SessionAction::Terminate,
    ];

    fn actor(user: u128, org: u128, role: Role) -> Actor {
        Actor {
            user: UserId(Uuid::from_u128(user)),
            user_name: "x".into(),
            org: OrgId(Uuid::from_u128(org)),
            role,
        }
    }

    fn facts(owner: u128, org: u128) -> SessionFacts {
        SessionFacts {
            org: OrgId(Uuid::from_u128(org)),
            owner: UserId(Uuid::from_u128(owner)),
        }
    }

    #[test]
    fn owner_may_do_everything() {
        for action in ACTIONS {
            assert_eq!(
                authorize(&actor(1, 1, Role::Member), action, facts(1, 1)),
                Decision::Allow
            );
        }
    }

    #[test]
    fn member_cannot_see_others_sessions() {
        for action in ACTIONS {
            let expected = Decision::Hidden;
            assert_eq!(
                authorize(&actor(2, 1, Role::Member), action, facts(1, 1)),
                expected,
                "{action:?}"
            );
        }
    }

    #[test]
    fn admin_acts_within_own_org_only() {
        for action in ACTIONS {
            assert_eq!(
                authorize(&actor(2, 1, Role::Admin), action, facts(1, 1)),
                Decision::Allow
            );
            assert_eq!(
                authorize(&actor(2, 2, Role::Admin), action, facts(1, 1)),
                Decision::Hidden
            );
        }
    }
}
