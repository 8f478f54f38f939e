//! Authorisation of every action a user or API key takes in an organisation, decided by the
//! organisation's policies in the Cedar policy language (`cedar-policy` 4).
//!
//! [`PolicySet::compile`] parses an organisation's policy text and validates it in strict mode
//! against the schema in `schema.cedarschema` (namespace `RdpProxy`). [`authorize`] builds the
//! entities of one request from the facts the caller passes in and decides it. The crate does
//! no I/O and reads no clock: the caller passes the time of the request.
//!
//! A permitted request carries the session [`Limits`] set by the `@idle_detach_minutes` and
//! `@max_session_minutes` annotations of the policies that permitted it. Applying those limits
//! to a session is the caller's job.

mod authorize;
mod cache;
mod compile;
mod location;
mod model;

#[cfg(test)]
mod tests;

use std::time::Duration;

use rdp_proxy_core::access::Role;
use uuid::Uuid;

pub use authorize::authorize;
pub use cache::PolicyCache;
pub use compile::{PolicyErrors, PolicyProblem, PolicySet};

/// Policies of an organisation that has not written its own: role-based, with comments for
/// the organisation's admins.
pub const DEFAULT_POLICIES: &str = include_str!("defaults.cedar");

/// An action a principal requests; [`Action::as_str`] is its Cedar action id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Open a new desktop on a target.
    Connect,
    /// See a session in lists and read it.
    View,
    /// Become the controller of a session when no viewer has control.
    Attach,
    /// Watch a session without input.
    Observe,
    /// Take control of a session from its current controller.
    Takeover,
    Detach,
    Terminate,
    /// Copy from the remote desktop to the local clipboard.
    ClipboardCopy,
    /// Paste from the local clipboard into the remote desktop.
    ClipboardPaste,
    ListTargets,
    ManageTargets,
    ManageMembers,
    ManagePolicies,
    ManageApiKeys,
    /// Join, drain, revoke and remove the organisation's own customer-managed nodes.
    ManageNodes,
    ReadAudit,
    ViewAllSessions,
}

impl Action {
    /// Every action, in declaration order.
    pub const ALL: [Action; 17] = [
        Self::Connect,
        Self::View,
        Self::Attach,
        Self::Observe,
        Self::Takeover,
        Self::Detach,
        Self::Terminate,
        Self::ClipboardCopy,
        Self::ClipboardPaste,
        Self::ListTargets,
        Self::ManageTargets,
        Self::ManageMembers,
        Self::ManagePolicies,
        Self::ManageApiKeys,
        Self::ManageNodes,
        Self::ReadAudit,
        Self::ViewAllSessions,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::View => "view",
            Self::Attach => "attach",
            Self::Observe => "observe",
            Self::Takeover => "takeover",
            Self::Detach => "detach",
            Self::Terminate => "terminate",
            Self::ClipboardCopy => "clipboard_copy",
            Self::ClipboardPaste => "clipboard_paste",
            Self::ListTargets => "list_targets",
            Self::ManageTargets => "manage_targets",
            Self::ManageMembers => "manage_members",
            Self::ManagePolicies => "manage_policies",
            Self::ManageApiKeys => "manage_api_keys",
            Self::ManageNodes => "manage_nodes",
            Self::ReadAudit => "read_audit",
            Self::ViewAllSessions => "view_all_sessions",
        }
    }

    /// Returns the kind of resource the action applies to.
    pub fn resource_kind(self) -> ResourceKind {
        match self {
            Self::Connect => ResourceKind::Target,
            Self::View
            | Self::Attach
            | Self::Observe
            | Self::Takeover
            | Self::Detach
            | Self::Terminate
            | Self::ClipboardCopy
            | Self::ClipboardPaste => ResourceKind::Session,
            Self::ListTargets
            | Self::ManageTargets
            | Self::ManageMembers
            | Self::ManagePolicies
            | Self::ManageApiKeys
            | Self::ManageNodes
            | Self::ReadAudit
            | Self::ViewAllSessions => ResourceKind::Org,
        }
    }
}

/// Whether a principal is a person or an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    User,
    ApiKey,
}

impl PrincipalKind {
    /// Returns the value of the `kind` attribute that policies test.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::ApiKey => "api_key",
        }
    }
}

/// The user or API key that requests an action.
#[derive(Debug, Clone)]
pub struct Principal {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub kind: PrincipalKind,
}

/// A target as far as policies see it.
#[derive(Debug, Clone)]
pub struct TargetFacts {
    pub id: Uuid,
    pub name: String,
    /// Labels as (key, value); policies see each as the string "key=value".
    pub labels: Vec<(String, String)>,
}

/// A session as far as policies see it.
#[derive(Debug, Clone)]
pub struct SessionFacts {
    pub id: Uuid,
    /// The user who opened the session.
    pub owner: Uuid,
    pub owner_name: String,
    /// The owner's current role, or `None` when the owner is no longer a member. Without it,
    /// a policy that reads the owner's attributes fails to evaluate and counts as not matching.
    pub owner_role: Option<Role>,
    /// The session state as stored, for example "active" or "detached".
    pub state: String,
    pub target: TargetFacts,
}

/// The object an action applies to.
#[derive(Debug, Clone)]
pub enum Resource {
    /// The organisation itself, by id: the resource of listing and management actions.
    Org(Uuid),
    Target(TargetFacts),
    Session(SessionFacts),
}

impl Resource {
    pub fn kind(&self) -> ResourceKind {
        match self {
            Self::Org(_) => ResourceKind::Org,
            Self::Target(_) => ResourceKind::Target,
            Self::Session(_) => ResourceKind::Session,
        }
    }
}

/// The kind of a [`Resource`], which each [`Action`] fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Org,
    Target,
    Session,
}

impl ResourceKind {
    /// Returns the Cedar entity type name, without the namespace.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Org => "Org",
            Self::Target => "Target",
            Self::Session => "Session",
        }
    }
}

/// Session limits set by the permit policies that allowed a request. `None` means no limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// Time a session may stay detached (no viewer in control) before it is ended.
    pub idle_detach: Option<Duration>,
    /// Time after opening at which the session ends.
    pub max_session: Option<Duration>,
}

impl Limits {
    /// Combines two sets of limits, keeping the smaller value of each.
    pub fn tightest(self, other: Limits) -> Limits {
        Limits {
            idle_detach: smaller(self.idle_detach, other.idle_detach),
            max_session: smaller(self.max_session, other.max_session),
        }
    }
}

fn smaller(left: Option<Duration>, right: Option<Duration>) -> Option<Duration> {
    match (left, right) {
        (Some(left), Some(right)) => Some(left.min(right)),
        (left, right) => left.or(right),
    }
}

/// The outcome of [`authorize`].
#[derive(Debug, Clone)]
pub struct Decision {
    pub allowed: bool,
    /// Ids of the policies that decided (the matching permits when allowed, the matching
    /// forbids when denied), sorted, for example "member-connect". Empty when the request was
    /// denied because no permit matched.
    pub reasons: Vec<String>,
    /// The tightest limits of the permits in `reasons`; all `None` when denied.
    pub limits: Limits,
    /// Evaluation errors, if any. A policy that failed to evaluate counts as not matching.
    pub errors: Vec<String>,
}
