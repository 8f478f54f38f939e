//! Deciding one request: its Cedar entities, context and evaluation.

use std::collections::{HashMap, HashSet};

use cedar_policy::{Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression};
use rdp_proxy_core::access::Role;
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;

use crate::model::{Model, model};
use crate::{Action, Decision, Limits, Principal, PrincipalKind, Resource, SessionFacts, TargetFacts};

/// Decides whether `principal` may take `action` on `resource` at the time `now`, under
/// `policies`.
///
/// The resource must be of the kind the action applies to ([`Action::resource_kind`]);
/// otherwise the decision is a denial with an error. The request context carries `now` in
/// UTC as `hour`, `minute` and `weekday` (1 for Monday up to 7 for Sunday).
pub fn authorize(
    policies: &crate::PolicySet,
    principal: &Principal,
    action: Action,
    resource: &Resource,
    now: OffsetDateTime,
) -> Decision {
    let model = model();
    let (request, entities) = match build_request(model, principal, action, resource, now) {
        Ok(built) => built,
        Err(error) => return denial(error),
    };
    let response = model.authorizer.is_authorized(&request, &policies.cedar, &entities);
    let diagnostics = response.diagnostics();
    let allowed = response.decision() == cedar_policy::Decision::Allow;
    let limits = if allowed {
        policies.limits_of(diagnostics.reason())
    } else {
        Limits::default()
    };
    let mut reasons: Vec<String> = diagnostics.reason().map(ToString::to_string).collect();
    reasons.sort_unstable();
    Decision {
        allowed,
        reasons,
        limits,
        errors: diagnostics.errors().map(ToString::to_string).collect(),
    }
}

fn denial(error: String) -> Decision {
    Decision {
        allowed: false,
        reasons: Vec::new(),
        limits: Limits::default(),
        errors: vec![error],
    }
}

/// Builds the Cedar request and its entities: the principal, and the resource with the
/// entities it refers to.
fn build_request(
    model: &Model,
    principal: &Principal,
    action: Action,
    resource: &Resource,
    now: OffsetDateTime,
) -> Result<(Request, Entities), String> {
    let expected = action.resource_kind();
    if resource.kind() != expected {
        return Err(format!(
            "action {} applies to resources of type {}, but the request names a resource of type {}",
            action.as_str(),
            expected.as_str(),
            resource.kind().as_str()
        ));
    }

    let principal_uid = uid(&model.user, principal.id);
    let mut entities = Vec::with_capacity(4);
    entities.push(user_entity(
        model,
        principal.id,
        &principal.name,
        principal.role,
        principal.kind,
    )?);
    let resource_uid = match resource {
        Resource::Org(id) => {
            let org = uid(&model.org, *id);
            entities.push(Entity::new_no_attrs(org.clone(), HashSet::new()));
            org
        }
        Resource::Target(target) => {
            let entity = target_entity(model, target)?;
            let target_uid = entity.uid();
            entities.push(entity);
            target_uid
        }
        Resource::Session(session) => push_session(model, principal, session, &mut entities)?,
    };

    let request = Request::new(
        principal_uid,
        model.action(action).clone(),
        resource_uid,
        clock_context(now)?,
        None,
    )
    .map_err(|error| format!("invalid request: {error}"))?;
    let entities = Entities::from_entities(entities, None).map_err(|error| format!("invalid entities: {error}"))?;
    Ok((request, entities))
}

/// Adds the session, its target and its owner to `entities` and returns the session's uid.
/// The owner is left out when it is the principal, who is already there, and when its role is
/// unknown.
fn push_session(
    model: &Model,
    principal: &Principal,
    session: &SessionFacts,
    entities: &mut Vec<Entity>,
) -> Result<EntityUid, String> {
    let owner_uid = uid(&model.user, session.owner);
    if session.owner != principal.id
        && let Some(owner_role) = session.owner_role
    {
        // NOTE: sessions record only the owner's user id, so the owner entity always has kind
        // "user". That is wrong for a session opened by an API key, which the defaults forbid.
        entities.push(user_entity(
            model,
            session.owner,
            &session.owner_name,
            owner_role,
            PrincipalKind::User,
        )?);
    }
    let target = target_entity(model, &session.target)?;
    let target_uid = target.uid();
    entities.push(target);

    let session_uid = uid(&model.session, session.id);
    let attributes = HashMap::from([
        ("owner".to_owned(), RestrictedExpression::new_entity_uid(owner_uid)),
        ("target".to_owned(), RestrictedExpression::new_entity_uid(target_uid)),
        (
            "state".to_owned(),
            RestrictedExpression::new_string(session.state.clone()),
        ),
    ]);
    entities.push(entity(session_uid.clone(), attributes)?);
    Ok(session_uid)
}

fn user_entity(model: &Model, id: Uuid, name: &str, role: Role, kind: PrincipalKind) -> Result<Entity, String> {
    let attributes = HashMap::from([
        (
            "role".to_owned(),
            RestrictedExpression::new_string(role.as_str().to_owned()),
        ),
        ("name".to_owned(), RestrictedExpression::new_string(name.to_owned())),
        (
            "kind".to_owned(),
            RestrictedExpression::new_string(kind.as_str().to_owned()),
        ),
    ]);
    entity(uid(&model.user, id), attributes)
}

fn target_entity(model: &Model, target: &TargetFacts) -> Result<Entity, String> {
    let labels = target
        .labels
        .iter()
        .map(|(key, value)| RestrictedExpression::new_string(format!("{key}={value}")));
    let attributes = HashMap::from([
        ("labels".to_owned(), RestrictedExpression::new_set(labels)),
        ("name".to_owned(), RestrictedExpression::new_string(target.name.clone())),
    ]);
    entity(uid(&model.target, target.id), attributes)
}

fn entity(uid: EntityUid, attributes: HashMap<String, RestrictedExpression>) -> Result<Entity, String> {
    Entity::new(uid.clone(), attributes, HashSet::new()).map_err(|error| format!("invalid entity {uid}: {error}"))
}

fn uid(entity_type: &EntityTypeName, id: Uuid) -> EntityUid {
    EntityUid::from_type_name_and_id(entity_type.clone(), EntityId::new(id.hyphenated().to_string()))
}

/// Builds the request context `{ hour, minute, weekday }` from `now` in UTC.
fn clock_context(now: OffsetDateTime) -> Result<Context, String> {
    let utc = now
        .checked_to_offset(UtcOffset::UTC)
        .ok_or_else(|| format!("invalid request time {now}: out of range in UTC"))?;
    let pairs = [
        ("hour", i64::from(utc.hour())),
        ("minute", i64::from(utc.minute())),
        ("weekday", i64::from(utc.weekday().number_from_monday())),
    ];
    Context::from_pairs(
        pairs
            .into_iter()
            .map(|(key, value)| (key.to_owned(), RestrictedExpression::new_long(value))),
    )
    .map_err(|error| format!("invalid request context: {error}"))
}
