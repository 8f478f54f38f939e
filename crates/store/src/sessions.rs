//! Held sessions and their event history. Every change bumps `version` and appends an event in
//! the same transaction; a change against a stale version fails with a conflict instead of
//! overwriting the other writer.

use rdp_proxy_core::audit::{ActorKind, Outcome};
use rdp_proxy_core::session::EventKind;
use rdp_proxy_core::{FencingToken, OrgId, SessionId, SessionState, TargetId, TransitionError, UserId, WorkerId};
use sqlx::Row;
use sqlx::postgres::PgRow;
use time::OffsetDateTime;

use crate::page::{Cursor, Page, paginate};
use crate::{AuditEntry, OrgTx, Store, StoreError};

#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub id: SessionId,
    pub org: OrgId,
    pub owner: UserId,
    pub owner_name: String,
    pub target: TargetId,
    pub target_name: String,
    pub state: SessionState,
    pub version: i64,
    pub worker: Option<WorkerId>,
    /// Fencing number of the worker registration that claimed the session.
    pub worker_fence: Option<i64>,
    pub width: u16,
    pub height: u16,
    pub control_fence: FencingToken,
    pub control_user: Option<UserId>,
    pub control_user_name: Option<String>,
    pub control_since: Option<OffsetDateTime>,
    pub reason: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub ended_at: Option<OffsetDateTime>,
    pub limits: SessionLimits,
}

/// Limits the policy granted when the session was opened; the worker enforces them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionLimits {
    /// End the session after it has been detached this long.
    pub idle_detach_secs: Option<u32>,
    /// End the session this long after it was opened.
    pub max_duration_secs: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub at: OffsetDateTime,
    pub kind: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub version: i64,
    pub actor: Option<UserId>,
    pub actor_name: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub org: OrgId,
    pub owner: UserId,
    pub target: TargetId,
    pub width: u16,
    pub height: u16,
    pub limits: SessionLimits,
}

/// A state change and the event that explains it.
#[derive(Debug, Clone)]
pub struct Transition {
    pub to: SessionState,
    /// When set, the change applies only if the row still has this version.
    pub expected_version: Option<i64>,
    pub kind: EventKind,
    pub actor: Option<UserId>,
    pub reason: Option<String>,
    /// Worker that now holds the session (set when it starts connecting).
    pub worker: Option<WorkerId>,
    /// The worker writing this change and its fencing number. When set, the change applies only
    /// while that registration is live and (after the claim) still the session's holder.
    pub holder: Option<(WorkerId, i64)>,
    /// Desktop size the target chose.
    pub size: Option<(u16, u16)>,
    /// New control holder; `Some(None)` clears it.
    pub control: Option<Option<ControlUpdate>>,
}

impl Transition {
    pub fn new(to: SessionState, kind: EventKind) -> Self {
        Self {
            to,
            expected_version: None,
            kind,
            actor: None,
            reason: None,
            worker: None,
            holder: None,
            size: None,
            control: None,
        }
    }

    /// Fences the change to `worker`'s registration with number `fence`.
    pub fn held_by(mut self, worker: WorkerId, fence: i64) -> Self {
        self.holder = Some((worker, fence));
        self
    }

    pub fn actor(mut self, actor: Option<UserId>) -> Self {
        self.actor = actor;
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn expect_version(mut self, version: i64) -> Self {
        self.expected_version = Some(version);
        self
    }
}

/// Control lease as recorded durably: the fencing token must never go backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlUpdate {
    pub user: UserId,
    pub fence: FencingToken,
    pub since: OffsetDateTime,
}

const SESSION_SELECT: &str = "SELECT s.id, s.org_id, s.owner_id, o.name AS owner_name, s.target_id,
        t.name AS target_name, s.state, s.version, s.worker_id, s.worker_fence, s.width, s.height, s.control_fence,
        s.control_user_id, c.name AS control_user_name, s.control_since, s.reason, s.created_at,
        s.updated_at, s.ended_at, s.idle_detach_secs, s.max_duration_secs
    FROM sessions s
    JOIN users o ON o.id = s.owner_id
    JOIN targets t ON t.id = s.target_id
    LEFT JOIN users c ON c.id = s.control_user_id";

impl Store {
    /// Records a new session in `requested` with its first event.
    pub async fn insert_session(&self, new: &NewSession, actor_name: &str) -> Result<SessionRecord, StoreError> {
        let id = SessionId::new_random();
        let mut tx = self.org_tx(new.org).await?;
        sqlx::query(
            "INSERT INTO sessions (id, org_id, owner_id, target_id, state, width, height, idle_detach_secs,
                 max_duration_secs)
             VALUES ($1, $2, $3, $4, 'requested', $5, $6, $7, $8)",
        )
        .bind(id.0)
        .bind(new.org.0)
        .bind(new.owner.0)
        .bind(new.target.0)
        .bind(i32::from(new.width))
        .bind(i32::from(new.height))
        .bind(
            new.limits
                .idle_detach_secs
                .map(|secs| i32::try_from(secs).unwrap_or(i32::MAX)),
        )
        .bind(
            new.limits
                .max_duration_secs
                .map(|secs| i32::try_from(secs).unwrap_or(i32::MAX)),
        )
        .execute(tx.conn())
        .await?;
        let event = EventParts {
            kind: EventKind::Requested,
            from: None,
            to: SessionState::Requested,
            version: 1,
            actor: Some(new.owner),
            actor_name: Some(actor_name),
            reason: None,
        };
        insert_event(&mut tx, id, &event).await?;
        let record = fetch_session(tx.conn(), new.org, id).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Loads a session of the organisation; another organisation's session is `NotFound`.
    pub async fn get_session(&self, org: OrgId, id: SessionId) -> Result<SessionRecord, StoreError> {
        let mut tx = self.org_tx(org).await?;
        fetch_session(tx.conn(), org, id).await
    }

    /// Sessions of the organisation, newest first; only `owner`'s and only in `state` when given.
    pub async fn list_sessions(
        &self,
        org: OrgId,
        owner: Option<UserId>,
        state: Option<SessionState>,
        after: Option<&Cursor>,
        limit: i64,
    ) -> Result<Page<SessionRecord>, StoreError> {
        let (after_time, after_id) = match after {
            Some(cursor) => {
                let (micros, id) = cursor.0.split_once(':').ok_or(StoreError::InvalidCursor)?;
                let micros: i128 = micros.parse().map_err(|_| StoreError::InvalidCursor)?;
                let time =
                    OffsetDateTime::from_unix_timestamp_nanos(micros * 1_000).map_err(|_| StoreError::InvalidCursor)?;
                let id: uuid::Uuid = id.parse().map_err(|_| StoreError::InvalidCursor)?;
                (Some(time), Some(id))
            }
            None => (None, None),
        };
        let sql = format!(
            "{SESSION_SELECT} WHERE s.org_id = $1 AND ($2::uuid IS NULL OR s.owner_id = $2)
               AND ($3::text IS NULL OR s.state = $3)
               AND ($4::timestamptz IS NULL OR (s.created_at, s.id) < ($4, $5))
             ORDER BY s.created_at DESC, s.id DESC LIMIT $6"
        );
        let mut tx = self.org_tx(org).await?;
        let rows = sqlx::query(&sql)
            .bind(org.0)
            .bind(owner.map(|user| user.0))
            .bind(state.map(SessionState::as_str))
            .bind(after_time)
            .bind(after_id)
            .bind(limit + 1)
            .fetch_all(tx.conn())
            .await?;
        let records = rows.iter().map(session_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(paginate(records, limit, |record| {
            format!("{}:{}", record.created_at.unix_timestamp_nanos() / 1_000, record.id.0)
        }))
    }

    /// Sessions a worker holds or is opening, in every organisation: (organisation, session, worker).
    pub async fn held_sessions(&self) -> Result<Vec<(OrgId, SessionId, WorkerId)>, StoreError> {
        let rows = sqlx::query("SELECT org_id, session_id, worker_id FROM rdp_proxy_held_sessions()")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                (
                    OrgId(row.get("org_id")),
                    SessionId(row.get("session_id")),
                    WorkerId(row.get("worker_id")),
                )
            })
            .collect())
    }

    /// Active sessions whose control `user` holds, for revoking that user.
    pub async fn sessions_controlled_by(&self, org: OrgId, user: UserId) -> Result<Vec<SessionRecord>, StoreError> {
        let sql = format!("{SESSION_SELECT} WHERE s.org_id = $1 AND s.control_user_id = $2 AND s.state = 'active'");
        let mut tx = self.org_tx(org).await?;
        let rows = sqlx::query(&sql).bind(org.0).bind(user.0).fetch_all(tx.conn()).await?;
        rows.iter().map(session_from_row).collect()
    }

    pub async fn session_events(&self, org: OrgId, id: SessionId) -> Result<Vec<EventRecord>, StoreError> {
        let mut tx = self.org_tx(org).await?;
        let rows = sqlx::query(
            "SELECT at, kind, from_state, to_state, version, actor_id, actor_name, reason
             FROM session_events WHERE org_id = $1 AND session_id = $2 ORDER BY id",
        )
        .bind(org.0)
        .bind(id.0)
        .fetch_all(tx.conn())
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| EventRecord {
                at: row.get("at"),
                kind: row.get("kind"),
                from_state: row.get("from_state"),
                to_state: row.get("to_state"),
                version: row.get("version"),
                actor: row.get::<Option<uuid::Uuid>, _>("actor_id").map(UserId),
                actor_name: row.get("actor_name"),
                reason: row.get("reason"),
            })
            .collect())
    }

    /// Applies a lifecycle change atomically: checks the lifecycle rule against the stored state,
    /// the expected version when given, bumps the version, appends the event and the audit record.
    /// A self-transition (`active` → `active`, as on takeover) records the event and bumps the version.
    pub async fn transition(&self, org: OrgId, id: SessionId, change: Transition) -> Result<SessionRecord, StoreError> {
        let mut tx = self.org_tx(org).await?;
        let current = lock_session(&mut tx, id).await?;
        check_transition(&current, &change)?;
        if let Some(holder) = change.holder {
            check_fence(&mut tx, &current, &change, holder).await?;
        }
        let version = current.version + 1;
        apply_transition(&mut tx, &current, &change, version).await?;
        let actor_name = match change.actor {
            Some(actor) => {
                sqlx::query_scalar::<_, String>("SELECT name FROM users WHERE id = $1")
                    .bind(actor.0)
                    .fetch_optional(tx.conn())
                    .await?
            }
            None => None,
        };
        let event = EventParts {
            kind: change.kind,
            from: Some(current.state),
            to: change.to,
            version,
            actor: change.actor,
            actor_name: actor_name.as_deref(),
            reason: change.reason.as_deref(),
        };
        insert_event(&mut tx, id, &event).await?;
        let record = fetch_session(tx.conn(), org, id).await?;
        tx.commit().await?;
        Ok(record)
    }
}

fn check_transition(current: &SessionRecord, change: &Transition) -> Result<(), StoreError> {
    if let Some(expected) = change.expected_version
        && expected != current.version
    {
        return Err(TransitionError::VersionConflict {
            expected,
            found: current.version,
        }
        .into());
    }
    let same_state = current.state == change.to && !current.state.is_final();
    if !same_state {
        current.state.transition(change.to)?;
    }
    if let Some(Some(control)) = change.control
        && control.fence < current.control_fence
    {
        return Err(StoreError::Corrupt(format!(
            "fencing token would go back from {} to {}",
            current.control_fence, control.fence
        )));
    }
    Ok(())
}

/// Refuses a worker's write when its registration is no longer live (declared lost, or
/// registered again since) or when another registration holds the session.
async fn check_fence(
    tx: &mut OrgTx,
    current: &SessionRecord,
    change: &Transition,
    (worker, fence): (WorkerId, i64),
) -> Result<(), StoreError> {
    let row = sqlx::query("SELECT fence, state FROM workers WHERE id = $1 FOR SHARE")
        .bind(worker.0)
        .fetch_optional(tx.conn())
        .await?;
    let stale = || StoreError::StaleFence { worker, fence };
    let Some(row) = row else { return Err(stale()) };
    if row.get::<i64, _>("fence") != fence || row.get::<String, _>("state") != "live" {
        return Err(stale());
    }
    let claiming = change.worker == Some(worker);
    if !claiming && (current.worker != Some(worker) || current.worker_fence != Some(fence)) {
        return Err(stale());
    }
    Ok(())
}

async fn apply_transition(
    tx: &mut OrgTx,
    current: &SessionRecord,
    change: &Transition,
    version: i64,
) -> Result<(), StoreError> {
    let (set_control, control_user, control_fence, control_since) = match change.control {
        None => (false, None, current.control_fence, None),
        Some(None) => (true, None, current.control_fence, None),
        Some(Some(update)) => (true, Some(update.user.0), update.fence, Some(update.since)),
    };
    let (width, height) = change.size.unwrap_or((current.width, current.height));
    let ends = change.to.is_final();
    sqlx::query(
        "UPDATE sessions SET state = $2, version = $3, worker_id = COALESCE($4, worker_id),
            width = $5, height = $6,
            control_user_id = CASE WHEN $7 THEN $8 ELSE control_user_id END,
            control_since = CASE WHEN $7 THEN $9 ELSE control_since END,
            control_fence = $10,
            reason = COALESCE($11, reason),
            worker_fence = CASE WHEN $4::uuid IS NOT NULL THEN $13 ELSE worker_fence END,
            updated_at = now(),
            ended_at = CASE WHEN $12 THEN now() ELSE ended_at END
         WHERE id = $1",
    )
    .bind(current.id.0)
    .bind(change.to.as_str())
    .bind(version)
    .bind(change.worker.map(|worker| worker.0))
    .bind(i32::from(width))
    .bind(i32::from(height))
    .bind(set_control || ends)
    .bind(if ends { None } else { control_user })
    .bind(if ends { None } else { control_since })
    .bind(i64::try_from(control_fence.0).unwrap_or(i64::MAX))
    .bind(&change.reason)
    .bind(ends)
    .bind(change.holder.map(|(_, fence)| fence))
    .execute(tx.conn())
    .await?;
    Ok(())
}

struct EventParts<'a> {
    kind: EventKind,
    from: Option<SessionState>,
    to: SessionState,
    version: i64,
    actor: Option<UserId>,
    actor_name: Option<&'a str>,
    reason: Option<&'a str>,
}

/// Appends the session event and its audit record.
async fn insert_event(tx: &mut OrgTx, session: SessionId, event: &EventParts<'_>) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO session_events (org_id, session_id, kind, from_state, to_state, version, actor_id, actor_name, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(tx.org().0)
    .bind(session.0)
    .bind(event.kind.as_str())
    .bind(event.from.map(SessionState::as_str))
    .bind(event.to.as_str())
    .bind(event.version)
    .bind(event.actor.map(|user| user.0))
    .bind(event.actor_name)
    .bind(event.reason)
    .execute(tx.conn())
    .await?;
    let (kind, id, name) = match event.actor {
        Some(user) => (ActorKind::User, Some(user.0), event.actor_name.map(str::to_owned)),
        None => (ActorKind::System, None, None),
    };
    let mut entry = AuditEntry::new(format!("session.{}", event.kind.as_str()), "session", Outcome::Ok)
        .actor(kind, id, name)
        .object(session.0)
        .details(serde_json::json!({
            "from": event.from.map(SessionState::as_str),
            "to": event.to.as_str(),
            "version": event.version,
        }));
    if let Some(reason) = event.reason {
        entry = entry.reason(reason);
    }
    tx.audit(&entry).await?;
    Ok(())
}

async fn lock_session(tx: &mut OrgTx, id: SessionId) -> Result<SessionRecord, StoreError> {
    let org = tx.org();
    sqlx::query("SELECT 1 FROM sessions WHERE org_id = $1 AND id = $2 FOR UPDATE")
        .bind(org.0)
        .bind(id.0)
        .fetch_optional(tx.conn())
        .await?
        .ok_or(StoreError::NotFound { what: "session" })?;
    fetch_session(tx.conn(), org, id).await
}

async fn fetch_session(conn: &mut sqlx::PgConnection, org: OrgId, id: SessionId) -> Result<SessionRecord, StoreError> {
    let sql = format!("{SESSION_SELECT} WHERE s.id = $1 AND s.org_id = $2");
    let row = sqlx::query(&sql)
        .bind(id.0)
        .bind(org.0)
        .fetch_optional(conn)
        .await?
        .ok_or(StoreError::NotFound { what: "session" })?;
    session_from_row(&row)
}

fn session_from_row(row: &PgRow) -> Result<SessionRecord, StoreError> {
    let state: String = row.get("state");
    let state = state
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("session state {state:?}")))?;
    let dimension = |column: &str| -> Result<u16, StoreError> {
        let value: i32 = row.get(column);
        u16::try_from(value).map_err(|_| StoreError::Corrupt(format!("session {column} {value}")))
    };
    let fence: i64 = row.get("control_fence");
    Ok(SessionRecord {
        id: SessionId(row.get("id")),
        org: OrgId(row.get("org_id")),
        owner: UserId(row.get("owner_id")),
        owner_name: row.get("owner_name"),
        target: TargetId(row.get("target_id")),
        target_name: row.get("target_name"),
        state,
        version: row.get("version"),
        worker: row.get::<Option<uuid::Uuid>, _>("worker_id").map(WorkerId),
        worker_fence: row.get("worker_fence"),
        width: dimension("width")?,
        height: dimension("height")?,
        control_fence: FencingToken(u64::try_from(fence).unwrap_or(0)),
        control_user: row.get::<Option<uuid::Uuid>, _>("control_user_id").map(UserId),
        control_user_name: row.get("control_user_name"),
        control_since: row.get("control_since"),
        reason: row.get("reason"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        ended_at: row.get("ended_at"),
        limits: SessionLimits {
            idle_detach_secs: row
                .get::<Option<i32>, _>("idle_detach_secs")
                .and_then(|secs| u32::try_from(secs).ok()),
            max_duration_secs: row
                .get::<Option<i32>, _>("max_duration_secs")
                .and_then(|secs| u32::try_from(secs).ok()),
        },
    })
}

impl Store {
    /// Current state of each listed session of the organisation, for a worker's reconciliation.
    pub async fn session_states(
        &self,
        org: OrgId,
        ids: &[SessionId],
    ) -> Result<Vec<(SessionId, SessionState, Option<String>)>, StoreError> {
        let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
        let mut tx = self.org_tx(org).await?;
        let rows = sqlx::query("SELECT id, state, reason FROM sessions WHERE org_id = $1 AND id = ANY($2)")
            .bind(org.0)
            .bind(&ids)
            .fetch_all(tx.conn())
            .await?;
        rows.into_iter()
            .map(|row| {
                let state: String = row.get("state");
                let state = state
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("session state {state:?}")))?;
                Ok((SessionId(row.get("id")), state, row.get("reason")))
            })
            .collect()
    }

    /// Sessions still `requested` after `older_than`: no worker ever claimed them, for example
    /// because the control plane stopped between recording and dispatching.
    pub async fn stale_requested(
        &self,
        older_than: std::time::Duration,
    ) -> Result<Vec<(OrgId, SessionId)>, StoreError> {
        let rows = sqlx::query("SELECT org_id, session_id FROM rdp_proxy_stale_requested($1)")
            .bind(older_than.as_secs_f64())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| (OrgId(row.get("org_id")), SessionId(row.get("session_id"))))
            .collect())
    }
}
