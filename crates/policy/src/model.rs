//! The schema, validator and Cedar names of the policy model, built once per process.

use std::str::FromStr;
use std::sync::OnceLock;

use cedar_policy::{Authorizer, EntityId, EntityTypeName, EntityUid, Schema, Validator};

use crate::Action;

const SCHEMA: &str = include_str!("schema.cedarschema");

pub(crate) struct Model {
    pub validator: Validator,
    pub authorizer: Authorizer,
    pub user: EntityTypeName,
    pub target: EntityTypeName,
    pub session: EntityTypeName,
    pub org: EntityTypeName,
    /// Action uids indexed by `Action as usize`.
    actions: Vec<EntityUid>,
}

impl Model {
    pub fn action(&self, action: Action) -> &EntityUid {
        &self.actions[action as usize]
    }

    /// Parses the schema and the names, and panics if either is invalid. Both are constants of
    /// this crate, which its tests load.
    fn load() -> Model {
        let (schema, _warnings) = Schema::from_cedarschema_str(SCHEMA).expect("schema.cedarschema is valid");
        let action_type = type_name("Action");
        let actions = Action::ALL
            .iter()
            .map(|action| EntityUid::from_type_name_and_id(action_type.clone(), EntityId::new(action.as_str())))
            .collect();
        Model {
            validator: Validator::new(schema),
            authorizer: Authorizer::new(),
            user: type_name("User"),
            target: type_name("Target"),
            session: type_name("Session"),
            org: type_name("Org"),
            actions,
        }
    }
}

fn type_name(name: &str) -> EntityTypeName {
    EntityTypeName::from_str(&format!("RdpProxy::{name}")).expect("entity type names of the schema parse")
}

/// Returns the model, building it on first use.
pub(crate) fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(Model::load)
}
