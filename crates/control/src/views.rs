//! JSON bodies of the public API.

use rdp_proxy_core::access::Role;
use rdp_proxy_store::{EventRecord, SessionRecord, TargetRecord};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Deserialize, ToSchema)]
pub(crate) struct LoginRequest {
    pub(crate) username: String,
    pub(crate) password: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct LoginResponse {
    pub(crate) access_token: String,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) expires_at: OffsetDateTime,
    pub(crate) user: UserView,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct UserView {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    /// `member` or `admin`.
    pub(crate) role: String,
    pub(crate) org_id: Uuid,
}

impl UserView {
    pub(crate) fn new(id: Uuid, name: String, role: Role, org_id: Uuid) -> Self {
        Self {
            id,
            name,
            role: role.as_str().to_owned(),
            org_id,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct TargetView {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `auto`, `tls` or `nla`.
    pub(crate) security: String,
}

impl From<TargetRecord> for TargetView {
    fn from(target: TargetRecord) -> Self {
        Self {
            id: target.id.0,
            name: target.name,
            host: target.host,
            port: target.port,
            security: target.security,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Named {
    pub(crate) id: Uuid,
    pub(crate) name: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ControlView {
    /// Name of the user whose viewer holds keyboard and mouse.
    pub(crate) user: String,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) since: OffsetDateTime,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SessionView {
    pub(crate) id: Uuid,
    pub(crate) org_id: Uuid,
    pub(crate) owner: Named,
    pub(crate) target: Named,
    /// `requested`, `connecting`, `active`, `detached`, `terminated`, `failed` or `lost`.
    pub(crate) state: String,
    /// Incremented by every change; conflicting writers are rejected.
    pub(crate) version: i64,
    pub(crate) reason: Option<String>,
    pub(crate) width: u16,
    pub(crate) height: u16,
    pub(crate) worker_id: Option<Uuid>,
    pub(crate) control: Option<ControlView>,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub(crate) ended_at: Option<OffsetDateTime>,
}

impl From<SessionRecord> for SessionView {
    fn from(record: SessionRecord) -> Self {
        let control = match (record.control_user_name, record.control_since) {
            (Some(user), Some(since)) if record.state == rdp_proxy_core::SessionState::Active => {
                Some(ControlView { user, since })
            }
            _ => None,
        };
        Self {
            id: record.id.0,
            org_id: record.org.0,
            owner: Named {
                id: record.owner.0,
                name: record.owner_name,
            },
            target: Named {
                id: record.target.0,
                name: record.target_name,
            },
            state: record.state.to_string(),
            version: record.version,
            reason: record.reason,
            width: record.width,
            height: record.height,
            worker_id: record.worker.map(|worker| worker.0),
            control,
            created_at: record.created_at,
            updated_at: record.updated_at,
            ended_at: record.ended_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct EventView {
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) at: OffsetDateTime,
    pub(crate) kind: String,
    pub(crate) from_state: Option<String>,
    pub(crate) to_state: Option<String>,
    pub(crate) version: i64,
    /// Name of the user who caused the event; absent for the system.
    pub(crate) actor: Option<String>,
    pub(crate) reason: Option<String>,
}

impl From<EventRecord> for EventView {
    fn from(event: EventRecord) -> Self {
        Self {
            at: event.at,
            kind: event.kind,
            from_state: event.from_state,
            to_state: event.to_state,
            version: event.version,
            actor: event.actor_name,
            reason: event.reason,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Page<T: ToSchema> {
    pub(crate) items: Vec<T>,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct CreateSession {
    pub(crate) target_id: Uuid,
    /// Requested desktop width in pixels (200–8192, default 1280); the target may choose another.
    pub(crate) width: Option<u16>,
    /// Requested desktop height in pixels (200–8192, default 720).
    pub(crate) height: Option<u16>,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct AttachRequest {
    /// `control` (default) or `takeover`.
    pub(crate) mode: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AttachResponse {
    /// Single-use token for the viewer's hello message; valid until `expires_at`.
    pub(crate) token: String,
    /// WebSocket URL of the worker holding the session.
    pub(crate) ws_url: String,
    /// Page that opens the viewer for this session.
    pub(crate) viewer_url: String,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) expires_at: OffsetDateTime,
    pub(crate) mode: String,
}

#[derive(Deserialize, ToSchema, Default)]
pub(crate) struct TerminateRequest {
    pub(crate) reason: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
pub(crate) struct ListQuery {
    /// Only sessions in this state.
    pub(crate) state: Option<String>,
    /// Maximum number of sessions returned (1–500, default 100).
    pub(crate) limit: Option<i64>,
}
