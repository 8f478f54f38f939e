//! The worker's own check when a viewer redeems an attach token: the same policy decision the
//! control plane made when it issued the token, taken again with the organisation's current
//! policy and membership. A member removed, or a policy changed, in the seconds between issue
//! and redemption is refused here.

use rdp_proxy_core::lease::AttachMode;
use rdp_proxy_core::token::AttachGrant;
use rdp_proxy_policy::{Action, Principal, PrincipalKind, Resource, SessionFacts, TargetFacts};
use time::OffsetDateTime;

use crate::Shared;

/// Checks an attach grant against the current membership and policy. The error is a sentence
/// for the viewer.
pub(crate) async fn check_attach(shared: &Shared, grant: &AttachGrant) -> Result<(), String> {
    let unavailable = |error: rdp_proxy_store::StoreError| format!("could not check access: {error}");
    let record = shared
        .store
        .get_session(grant.org, grant.session)
        .await
        .map_err(unavailable)?;
    let mut tx = shared.store.org_tx(grant.org).await.map_err(unavailable)?;
    let membership = tx
        .membership(grant.user)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| "you are no longer an enabled member of this organisation".to_owned())?;
    let target = tx.target_any_state(record.target).await.map_err(unavailable)?;
    let version = tx.policy_version().await.map_err(unavailable)?;
    let text = match shared.policies.get(grant.org.0, version) {
        Some(_) => None,
        None => tx.policy().await.map_err(unavailable)?.map(|policy| policy.text),
    };
    let set = shared
        .policies
        .get_or_compile(grant.org.0, version, || text)
        .map_err(|errors| format!("the organisation's policy does not compile: {errors}"))?;
    let principal = Principal {
        id: grant.user.0,
        name: grant.user_name.clone(),
        role: membership.role,
        kind: PrincipalKind::User,
    };
    let action = match grant.mode {
        AttachMode::Control => Action::Attach,
        AttachMode::Takeover => Action::Takeover,
        AttachMode::Observe => Action::Observe,
    };
    let resource = Resource::Session(SessionFacts {
        id: record.id.0,
        owner: record.owner.0,
        owner_name: record.owner_name.clone(),
        owner_role: None,
        state: record.state.as_str().to_owned(),
        target: TargetFacts {
            id: target.id.0,
            name: target.name.clone(),
            labels: target.labels.into_iter().collect(),
        },
    });
    let decision = rdp_proxy_policy::authorize(&set, &principal, action, &resource, OffsetDateTime::now_utc());
    if decision.allowed {
        Ok(())
    } else {
        Err(format!(
            "the organisation's policy no longer allows you to {} this session",
            grant.mode.as_str()
        ))
    }
}
