//! Authorisation: every endpoint calls [`require`] or [`allowed`], which evaluate the
//! organisation's Cedar policies through `rdp_proxy_policy::authorize`. Denials are audited.
//!
//! An object the caller may not even see answers like a missing one (404); a visible object or
//! an organisation-wide action the caller may not perform answers 403.

use std::sync::Arc;

use rdp_proxy_core::OrgId;
use rdp_proxy_core::audit::Outcome;
use rdp_proxy_policy::{Action, Decision, PolicySet, Resource, SessionFacts, TargetFacts};
use rdp_proxy_store::{AuditEntry, SessionRecord, TargetRecord};
use time::OffsetDateTime;

use crate::auth::Caller;
use crate::{ApiError, AppState};

/// The organisation's policies as they are stored now (one cheap version query per call).
pub(crate) async fn policies(state: &AppState, org: OrgId) -> Result<Arc<PolicySet>, ApiError> {
    let mut tx = state.store.org_tx(org).await?;
    let version = tx.policy_version().await?;
    if let Some(set) = state.policies.get(org.0, version) {
        return Ok(set);
    }
    let text = tx.policy().await?.map(|record| record.text);
    state
        .policies
        .get_or_compile(org.0, version, || text)
        .map_err(|errors| {
            // Saved text was validated, so the schema changed under it. Failing closed is safe,
            // and the error tells the operator what to fix.
            tracing::error!(org.id = %org, error = %errors, "Stored policy no longer compiles");
            ApiError::unavailable(
                "policy_broken",
                format!("the organisation's policy no longer compiles ({errors}); an operator must fix it"),
            )
        })
}

pub(crate) fn target_facts(target: &TargetRecord) -> TargetFacts {
    TargetFacts {
        id: target.id.0,
        name: target.name.clone(),
        labels: target.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    }
}

pub(crate) fn session_facts(
    session: &SessionRecord,
    labels: &std::collections::BTreeMap<String, String>,
) -> SessionFacts {
    SessionFacts {
        id: session.id.0,
        owner: session.owner.0,
        owner_name: session.owner_name.clone(),
        owner_role: None,
        state: session.state.as_str().to_owned(),
        target: TargetFacts {
            id: session.target.0,
            name: session.target_name.clone(),
            labels: labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        },
    }
}

/// Evaluates one request without side effects.
pub(crate) fn decide(set: &PolicySet, caller: &Caller, action: Action, resource: &Resource) -> Decision {
    let decision = rdp_proxy_policy::authorize(set, &caller.principal, action, resource, OffsetDateTime::now_utc());
    // However the policy reads, an owner can still read and fix it: a policy that locked every
    // owner out would otherwise be repairable only with SQL.
    if !decision.allowed
        && action == Action::ManagePolicies
        && caller.principal.role == rdp_proxy_core::access::Role::Owner
        && caller.principal.kind == rdp_proxy_policy::PrincipalKind::User
    {
        return Decision {
            allowed: true,
            reasons: vec![OWNERS_MANAGE_POLICIES.to_owned()],
            limits: rdp_proxy_policy::Limits::default(),
            errors: decision.errors,
        };
    }
    decision
}

/// Reason recorded when the built-in rule, not the policy, let an owner manage policies.
pub(crate) const OWNERS_MANAGE_POLICIES: &str = "built-in: owners always manage policies";

/// [`decide`], timed into the organisation's decision histogram.
fn decide_timed(state: &AppState, set: &PolicySet, caller: &Caller, action: Action, resource: &Resource) -> Decision {
    let started = std::time::Instant::now();
    let decision = decide(set, caller, action, resource);
    state
        .metrics
        .decision_seconds
        .with_label_values(&[caller.org.to_string().as_str()])
        .observe(started.elapsed().as_secs_f64());
    decision
}

/// True when the policies allow the action.
pub(crate) async fn allowed(
    state: &AppState,
    caller: &Caller,
    action: Action,
    resource: &Resource,
) -> Result<bool, ApiError> {
    let set = policies(state, caller.org).await?;
    Ok(decide(&set, caller, action, resource).allowed)
}

/// The response to a denied request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denial {
    /// 403 naming the action.
    Forbidden,
    /// 404 as for a missing object: the caller may not know it exists.
    Hidden(&'static str),
}

/// Returns the decision when allowed; otherwise audits the denial and returns the error.
pub(crate) async fn require(
    state: &AppState,
    caller: &Caller,
    action: Action,
    resource: &Resource,
    denial: Denial,
) -> Result<Decision, ApiError> {
    let set = policies(state, caller.org).await?;
    let decision = decide_timed(state, &set, caller, action, resource);
    if decision.allowed {
        return Ok(decision);
    }
    deny(state, caller, action, resource, &decision, denial).await
}

/// Requires an organisation-wide action (managing members, targets, policies, keys); a denial
/// returns 403 and is audited.
pub(crate) async fn require_in_org(state: &AppState, caller: &Caller, action: Action) -> Result<(), ApiError> {
    require(state, caller, action, &Resource::Org(caller.org.0), Denial::Forbidden).await?;
    Ok(())
}

/// Audits a denial and returns the matching error.
pub(crate) async fn deny<T>(
    state: &AppState,
    caller: &Caller,
    action: Action,
    resource: &Resource,
    decision: &Decision,
    denial: Denial,
) -> Result<T, ApiError> {
    let (object_kind, object_id) = match resource {
        Resource::Org(id) => ("org", id.to_string()),
        Resource::Target(target) => ("target", target.id.to_string()),
        Resource::Session(session) => ("session", session.id.to_string()),
    };
    let reason = if decision.reasons.is_empty() {
        format!("no policy permits {}", action.as_str())
    } else {
        format!("forbidden by {}", decision.reasons.join(", "))
    };
    state
        .metrics
        .denials
        .with_label_values(&[caller.org.to_string().as_str(), action.as_str()])
        .inc();
    tracing::info!(org.id = %caller.org, principal.id = %caller.principal.id, action = action.as_str(),
        object.kind = object_kind, object.id = %object_id, reason = %reason, "Request denied");
    let entry = caller
        .audit(
            format!("{object_kind}.{}", action.as_str()),
            object_kind,
            Outcome::Denied,
        )
        .object(&object_id)
        .reason(&reason);
    if let Err(error) = state.store.audit(caller.org, &entry).await {
        tracing::error!(error = %error, "Could not audit a denial");
    }
    Err(match denial {
        Denial::Hidden(what) => ApiError::not_found(what),
        Denial::Forbidden => ApiError::forbidden(format!(
            "your role ({}) may not {} here: {reason}",
            caller.principal.role.as_str(),
            describe(action)
        )),
    })
}

fn describe(action: Action) -> &'static str {
    match action {
        Action::Connect => "open this desktop",
        Action::View => "see this session",
        Action::Attach => "attach to this session",
        Action::Observe => "watch this session",
        Action::Takeover => "take over this session",
        Action::Detach => "detach this session",
        Action::Terminate => "end this session",
        Action::ClipboardCopy | Action::ClipboardPaste => "use the clipboard in this session",
        Action::ListTargets => "list desktops",
        Action::ManageTargets => "manage desktops and credentials",
        Action::ManageMembers => "manage members",
        Action::ManagePolicies => "manage policies",
        Action::ManageApiKeys => "manage API keys",
        Action::ManageNodes => "manage the organisation's nodes",
        Action::ReadAudit => "read the audit trail",
        Action::ViewAllSessions => "see every session of the organisation",
    }
}

/// Audits a successful change in its own transaction (when the change had no transaction).
pub(crate) async fn audit_ok(state: &AppState, caller: &Caller, entry: AuditEntry) {
    if let Err(error) = state.store.audit(caller.org, &entry).await {
        tracing::error!(error = %error, action = %entry.action, "Could not write an audit record");
    }
}
