//! The OpenAPI description, generated from the handlers and served at `/api/openapi.json`.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::AppState;
use crate::routes::{api_keys, audit, auth, credentials, members, nodes, policy, sessions, targets};

#[derive(OpenApi)]
#[openapi(
    info(title = "rdp-proxy", description = "Hold remote desktops on the platform: connect, detach, reattach, take over, terminate."),
    paths(
        auth::login, auth::refresh, auth::switch_org, auth::logout, auth::me, auth::change_password,
        auth::accept_invitation, auth::decline_invitation,
        members::list_members, members::get_member, members::add_member, members::update_member, members::remove_member,
        targets::list_targets, targets::get_target, targets::create_target, targets::update_target, targets::delete_target,
        credentials::list_credentials, credentials::get_credential, credentials::create_credential,
        credentials::update_credential, credentials::delete_credential,
        policy::get_policy, policy::save_policy, policy::validate_policy, policy::default_policy,
        api_keys::list_api_keys, api_keys::create_api_key, api_keys::revoke_api_key,
        audit::list_audit, audit::verify_audit,
        sessions::create_session, sessions::list_sessions, sessions::get_session, sessions::session_events,
        sessions::attach_session, sessions::detach_session, sessions::terminate_session,
        nodes::list_nodes, nodes::create_join_token, nodes::drain_node, nodes::resume_node, nodes::revoke_node,
        nodes::remove_node,
    ),
    modifiers(&BearerAuth)
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        // An Ed25519-signed access token from /api/v1/login, or an API key (`rpk_…`).
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/api/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}
