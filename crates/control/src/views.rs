//! JSON bodies of the public API.

use std::collections::BTreeMap;

use rdp_proxy_store::{
    ApiKeyRecord, AuditRecord, CredentialRecord, EventRecord, MemberRecord, SessionRecord, TargetRecord,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// For `Option<Option<T>>` fields: absent stays `None`, `null` becomes `Some(None)`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct LoginRequest {
    pub(crate) username: String,
    pub(crate) password: String,
    /// Organisation to log in to; the user's first one when absent.
    pub(crate) org_id: Option<Uuid>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangePassword {
    pub(crate) current_password: String,
    /// At least 12 characters.
    pub(crate) new_password: String,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct RefreshRequest {
    pub(crate) refresh_token: String,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct SwitchRequest {
    pub(crate) org_id: Uuid,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct OrgView {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    /// `owner`, `admin`, `operator`, `member` or `auditor`.
    pub(crate) role: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct TokenResponse {
    /// Ed25519-signed token for `Authorization: Bearer`; short-lived.
    pub(crate) access_token: String,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) expires_at: OffsetDateTime,
    /// Single-use token for /api/v1/auth/refresh; each use returns the next one.
    pub(crate) refresh_token: String,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) refresh_expires_at: OffsetDateTime,
    pub(crate) user: Named,
    pub(crate) org: OrgView,
    /// Every organisation the user may switch to.
    pub(crate) orgs: Vec<OrgView>,
    /// Organisations that invited the user; accept with /api/v1/invitations/{org_id}/accept.
    pub(crate) invitations: Vec<OrgView>,
}

#[derive(Serialize, ToSchema, Default)]
pub(crate) struct Permissions {
    pub(crate) list_targets: bool,
    pub(crate) manage_targets: bool,
    pub(crate) manage_members: bool,
    pub(crate) manage_policies: bool,
    pub(crate) manage_api_keys: bool,
    pub(crate) manage_nodes: bool,
    pub(crate) read_audit: bool,
    pub(crate) view_all_sessions: bool,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct MeView {
    pub(crate) user: Named,
    /// `user` or `api_key`.
    pub(crate) kind: String,
    pub(crate) org: OrgView,
    pub(crate) orgs: Vec<OrgView>,
    pub(crate) invitations: Vec<OrgView>,
    pub(crate) permissions: Permissions,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct TargetView {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `auto`, `tls` or `nla`.
    pub(crate) security: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) max_width: Option<u16>,
    pub(crate) max_height: Option<u16>,
    pub(crate) credential_id: Uuid,
    pub(crate) credential_name: String,
    /// Hex SHA-256 of the certificate the target must present, when pinned.
    pub(crate) cert_sha256: Option<String>,
    /// Whether the caller may open this desktop.
    pub(crate) can_connect: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) created_at: OffsetDateTime,
}

impl TargetView {
    pub(crate) fn new(target: TargetRecord, can_connect: bool) -> Self {
        Self {
            id: target.id.0,
            name: target.name,
            host: target.host,
            port: target.port,
            security: target.security,
            labels: target.labels,
            max_width: target.max_width,
            max_height: target.max_height,
            credential_id: target.credential_id,
            credential_name: target.credential_name,
            cert_sha256: target.cert_sha256.map(hex::encode),
            can_connect,
            created_at: target.created_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TargetInput {
    pub(crate) name: Option<String>,
    pub(crate) host: Option<String>,
    pub(crate) port: Option<u16>,
    /// `auto`, `tls` or `nla`.
    pub(crate) security: Option<String>,
    pub(crate) labels: Option<BTreeMap<String, String>>,
    /// Largest desktop width a session may ask for; `null` clears the limit.
    #[serde(default, deserialize_with = "present")]
    pub(crate) max_width: Option<Option<u16>>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) max_height: Option<Option<u16>>,
    pub(crate) credential_id: Option<Uuid>,
    /// Hex SHA-256 of the target's certificate to pin; `null` removes the pin.
    #[serde(default, deserialize_with = "present")]
    pub(crate) cert_sha256: Option<Option<String>>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CredentialView {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) username: String,
    pub(crate) domain: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) updated_at: OffsetDateTime,
}

impl From<CredentialRecord> for CredentialView {
    fn from(record: CredentialRecord) -> Self {
        Self {
            id: record.id,
            name: record.name,
            username: record.username,
            domain: record.domain,
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }
}

/// A credential to create or change. The password is write-only: no response contains it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CredentialInput {
    pub(crate) name: Option<String>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub(crate) domain: Option<Option<String>>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct MemberView {
    pub(crate) user_id: Uuid,
    pub(crate) name: String,
    pub(crate) role: String,
    /// `active`, `disabled`, or `invited` (an existing user who has not accepted yet).
    pub(crate) status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) created_at: OffsetDateTime,
}

impl From<MemberRecord> for MemberView {
    fn from(record: MemberRecord) -> Self {
        Self {
            user_id: record.user.0,
            name: record.name,
            role: record.role.as_str().to_owned(),
            status: if record.disabled {
                "disabled"
            } else if record.pending {
                "invited"
            } else {
                "active"
            }
            .to_owned(),
            created_at: record.created_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddMember {
    pub(crate) username: String,
    pub(crate) role: String,
    /// Initial password when the user name is new (at least 12 characters); must be absent
    /// for an existing user, who is invited and becomes a member on accepting.
    pub(crate) password: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateMember {
    pub(crate) role: Option<String>,
    pub(crate) disabled: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct PolicyView {
    pub(crate) text: String,
    /// 0 while the organisation uses the default policy.
    pub(crate) version: i64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub(crate) updated_at: Option<OffsetDateTime>,
    pub(crate) updated_by: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SavePolicy {
    pub(crate) text: String,
    /// The version this edit started from; a newer stored version answers 409.
    pub(crate) version: i64,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct ValidatePolicy {
    pub(crate) text: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ProblemView {
    pub(crate) line: u32,
    pub(crate) column: u32,
    pub(crate) message: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ValidationView {
    pub(crate) valid: bool,
    pub(crate) problems: Vec<ProblemView>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DefaultPolicyView {
    pub(crate) text: String,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ApiKeyView {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) role: String,
    /// The user who created the key; disabling or removing that member revokes it.
    pub(crate) created_by: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub(crate) expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub(crate) revoked_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub(crate) last_used_at: Option<OffsetDateTime>,
    /// The key itself, present only in the response that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<String>,
}

impl From<ApiKeyRecord> for ApiKeyView {
    fn from(record: ApiKeyRecord) -> Self {
        Self {
            id: record.id,
            name: record.name,
            role: record.role.as_str().to_owned(),
            created_by: record.created_by.map(|user| user.0),
            created_at: record.created_at,
            expires_at: record.expires_at,
            revoked_at: record.revoked_at,
            last_used_at: record.last_used_at,
            key: None,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateApiKey {
    pub(crate) name: String,
    pub(crate) role: String,
    /// Days until the key stops working (1–3650); no expiry when absent.
    pub(crate) expires_in_days: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AuditView {
    pub(crate) seq: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) at: OffsetDateTime,
    /// `user`, `api_key`, `worker` or `system`.
    pub(crate) actor_kind: String,
    pub(crate) actor_id: Option<Uuid>,
    pub(crate) actor_name: Option<String>,
    pub(crate) action: String,
    pub(crate) object_kind: String,
    pub(crate) object_id: Option<String>,
    /// `ok`, `denied` or `failed`.
    pub(crate) result: String,
    pub(crate) reason: Option<String>,
    pub(crate) details: serde_json::Value,
    /// Hex SHA-256 of this record and the chain before it.
    pub(crate) hash: String,
}

impl From<AuditRecord> for AuditView {
    fn from(record: AuditRecord) -> Self {
        Self {
            seq: record.seq,
            at: record.at,
            actor_kind: record.actor_kind.as_str().to_owned(),
            actor_id: record.actor_id,
            actor_name: record.actor_name,
            action: record.action,
            object_kind: record.object_kind,
            object_id: record.object_id,
            result: record.outcome.as_str().to_owned(),
            reason: record.reason,
            details: record.details,
            hash: hex::encode(record.hash),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AuditCheckView {
    pub(crate) ok: bool,
    pub(crate) checked: u64,
    pub(crate) first_bad_seq: Option<i64>,
    pub(crate) problem: Option<String>,
}

/// Unknown parameters are refused, so a misspelt filter never returns an unfiltered list.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct PageQuery {
    /// Items per page (1–200, default 50).
    pub(crate) limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
}

/// Unknown parameters are refused, so a misspelt filter never returns an unfiltered list.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct TargetQuery {
    /// Only targets with these labels, as `key=value`; several separated by commas
    /// (`env=prod,team=web`) must all match.
    pub(crate) label: Option<String>,
    pub(crate) limit: Option<i64>,
    pub(crate) cursor: Option<String>,
}

/// Unknown parameters are refused, so a misspelt filter never returns an unfiltered list.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct MemberQuery {
    pub(crate) role: Option<String>,
    /// `active`, `disabled` or `invited`.
    pub(crate) status: Option<String>,
    pub(crate) limit: Option<i64>,
    pub(crate) cursor: Option<String>,
}

/// Unknown parameters are refused, so a misspelt filter never returns an unfiltered list.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    pub(crate) action: Option<String>,
    pub(crate) actor_id: Option<Uuid>,
    /// `ok`, `denied` or `failed`.
    pub(crate) result: Option<String>,
    pub(crate) limit: Option<i64>,
    pub(crate) cursor: Option<String>,
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
    /// Seconds a detached session is kept before it ends; `null` for no limit.
    pub(crate) idle_detach_secs: Option<u32>,
    /// Seconds after opening at which the session ends; `null` for no limit.
    pub(crate) max_duration_secs: Option<u32>,
    /// The caller's permissions on this session, from the organisation's policies.
    pub(crate) permissions: SessionPermissions,
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
            idle_detach_secs: record.limits.idle_detach_secs,
            max_duration_secs: record.limits.max_duration_secs,
            permissions: SessionPermissions::default(),
            created_at: record.created_at,
            updated_at: record.updated_at,
            ended_at: record.ended_at,
        }
    }
}

#[derive(Serialize, ToSchema, Default, Clone, Copy)]
pub(crate) struct SessionPermissions {
    pub(crate) attach: bool,
    pub(crate) observe: bool,
    pub(crate) takeover: bool,
    pub(crate) detach: bool,
    pub(crate) terminate: bool,
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
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub(crate) next_cursor: Option<String>,
}

impl<T: ToSchema> Page<T> {
    pub(crate) fn all(items: Vec<T>) -> Self {
        Self {
            items,
            next_cursor: None,
        }
    }

    pub(crate) fn from_store<R>(page: rdp_proxy_store::Page<R>, view: impl FnMut(R) -> T) -> Self {
        Self {
            items: page.items.into_iter().map(view).collect(),
            next_cursor: page.next.map(|cursor| cursor.encode()),
        }
    }
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
    /// `control` (default), `takeover` or `observe`.
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

/// Unknown parameters are refused, so a misspelt filter never returns an unfiltered list.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Only sessions in this state.
    pub(crate) state: Option<String>,
    /// Only the caller's own sessions, even for those who may see all.
    pub(crate) mine: Option<bool>,
    /// Items per page (1–200, default 50).
    pub(crate) limit: Option<i64>,
    pub(crate) cursor: Option<String>,
}
