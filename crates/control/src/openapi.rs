//! The OpenAPI description, generated from the handlers and served at `/api/openapi.json`.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::AppState;
use crate::routes::{auth, sessions, targets};

#[derive(OpenApi)]
#[openapi(
    info(title = "rdp-proxy", description = "Hold remote desktops on the platform: connect, detach, reattach, take over, terminate."),
    paths(
        auth::login, auth::me, targets::list_targets,
        sessions::create_session, sessions::list_sessions, sessions::get_session, sessions::session_events,
        sessions::attach_session, sessions::detach_session, sessions::terminate_session,
    ),
    modifiers(&BearerAuth)
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .build();
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/api/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
}
