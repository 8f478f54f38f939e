//! Held sessions and their event history. Every change bumps `version` and appends an event in
//! the same transaction; a change against a stale version fails with a conflict instead of
//! overwriting the other writer.

use rdp_proxy_core::session::EventKind;
use rdp_proxy_core::{FencingToken, OrgId, SessionId, SessionState, TargetId, TransitionError, UserId, WorkerId};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};
use time::OffsetDateTime;

use crate::{Store, StoreError};

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
            size: None,
            control: None,
        }
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
        t.name AS target_name, s.state, s.version, s.worker_id, s.width, s.height, s.control_fence,
        s.control_user_id, c.name AS control_user_name, s.control_since, s.reason, s.created_at,
        s.updated_at, s.ended_at
    FROM sessions s
    JOIN users o ON o.id = s.owner_id
    JOIN targets t ON t.id = s.target_id
    LEFT JOIN users c ON c.id = s.control_user_id";

impl Store {
    /// Records a new session in `requested` with its first event.
    pub async fn insert_session(&self, new: &NewSession, actor_name: &str) -> Result<SessionRecord, StoreError> {
        let id = SessionId::new_random();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO sessions (id, org_id, owner_id, target_id, state, width, height)
             VALUES ($1, $2, $3, $4, 'requested', $5, $6)",
        )
        .bind(id.0)
        .bind(new.org.0)
        .bind(new.owner.0)
        .bind(new.target.0)
        .bind(i32::from(new.width))
        .bind(i32::from(new.height))
        .execute(&mut *tx)
        .await?;
        insert_event(
            &mut tx,
            new.org,
            id,
            EventKind::Requested,
            None,
            SessionState::Requested,
            1,
            Some(new.owner),
            Some(actor_name),
            None,
        )
        .await?;
        let record = fetch_session(&mut tx, Some(new.org), id).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Loads a session of the organisation; another organisation's session is `NotFound`.
    pub async fn get_session(&self, org: OrgId, id: SessionId) -> Result<SessionRecord, StoreError> {
        let mut conn = self.pool.acquire().await?;
        fetch_session(&mut conn, Some(org), id).await
    }

    /// Loads a session by id alone, for workers and the lost-worker sweep.
    pub async fn get_session_any_org(&self, id: SessionId) -> Result<SessionRecord, StoreError> {
        let mut conn = self.pool.acquire().await?;
        fetch_session(&mut conn, None, id).await
    }

    /// Sessions of the organisation, newest first; only `owner`'s and only in `state` when given.
    pub async fn list_sessions(
        &self,
        org: OrgId,
        owner: Option<UserId>,
        state: Option<SessionState>,
        limit: i64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let sql = format!(
            "{SESSION_SELECT} WHERE s.org_id = $1 AND ($2::uuid IS NULL OR s.owner_id = $2)
               AND ($3::text IS NULL OR s.state = $3)
             ORDER BY s.created_at DESC LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(org.0)
            .bind(owner.map(|user| user.0))
            .bind(state.map(SessionState::as_str))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(session_from_row).collect()
    }

    /// Sessions a worker holds or is opening, in every organisation.
    pub async fn sessions_held_by(&self, worker: WorkerId) -> Result<Vec<SessionRecord>, StoreError> {
        let sql =
            format!("{SESSION_SELECT} WHERE s.worker_id = $1 AND s.state IN ('connecting', 'active', 'detached')");
        let rows = sqlx::query(&sql).bind(worker.0).fetch_all(&self.pool).await?;
        rows.iter().map(session_from_row).collect()
    }

    /// Workers that hold at least one session, for the lost-worker sweep.
    pub async fn workers_holding_sessions(&self) -> Result<Vec<WorkerId>, StoreError> {
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
            "SELECT DISTINCT worker_id FROM sessions
             WHERE worker_id IS NOT NULL AND state IN ('connecting', 'active', 'detached')",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(WorkerId).collect())
    }

    pub async fn session_events(&self, org: OrgId, id: SessionId) -> Result<Vec<EventRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, kind, from_state, to_state, version, actor_id, actor_name, reason
             FROM session_events WHERE org_id = $1 AND session_id = $2 ORDER BY id",
        )
        .bind(org.0)
        .bind(id.0)
        .fetch_all(&self.pool)
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
    /// the expected version when given, bumps the version and appends the event.
    /// A self-transition (`active` → `active`, as on takeover) records the event and bumps the version.
    pub async fn transition(&self, id: SessionId, change: Transition) -> Result<SessionRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        let current = lock_session(&mut tx, id).await?;
        check_transition(&current, &change)?;
        let version = current.version + 1;
        apply_transition(&mut tx, &current, &change, version).await?;
        let actor_name = match change.actor {
            Some(actor) => {
                sqlx::query_scalar::<_, String>("SELECT name FROM users WHERE id = $1")
                    .bind(actor.0)
                    .fetch_optional(&mut *tx)
                    .await?
            }
            None => None,
        };
        insert_event(
            &mut tx,
            current.org,
            id,
            change.kind,
            Some(current.state),
            change.to,
            version,
            change.actor,
            actor_name.as_deref(),
            change.reason.as_deref(),
        )
        .await?;
        let record = fetch_session(&mut tx, None, id).await?;
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

async fn apply_transition(
    tx: &mut Transaction<'_, Postgres>,
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
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn insert_event(
    tx: &mut Transaction<'_, Postgres>,
    org: OrgId,
    session: SessionId,
    kind: EventKind,
    from: Option<SessionState>,
    to: SessionState,
    version: i64,
    actor: Option<UserId>,
    actor_name: Option<&str>,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO session_events (org_id, session_id, kind, from_state, to_state, version, actor_id, actor_name, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(org.0)
    .bind(session.0)
    .bind(kind.as_str())
    .bind(from.map(SessionState::as_str))
    .bind(to.as_str())
    .bind(version)
    .bind(actor.map(|user| user.0))
    .bind(actor_name)
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn lock_session(tx: &mut Transaction<'_, Postgres>, id: SessionId) -> Result<SessionRecord, StoreError> {
    sqlx::query("SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE")
        .bind(id.0)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound { what: "session" })?;
    fetch_session(tx, None, id).await
}

async fn fetch_session(
    conn: &mut sqlx::PgConnection,
    org: Option<OrgId>,
    id: SessionId,
) -> Result<SessionRecord, StoreError> {
    let sql = format!("{SESSION_SELECT} WHERE s.id = $1 AND ($2::uuid IS NULL OR s.org_id = $2)");
    let row = sqlx::query(&sql)
        .bind(id.0)
        .bind(org.map(|org| org.0))
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
    })
}

impl Store {
    /// Current state of each listed session that exists, for a worker's reconciliation.
    pub async fn session_states(
        &self,
        ids: &[SessionId],
    ) -> Result<Vec<(SessionId, SessionState, Option<String>)>, StoreError> {
        let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
        let rows = sqlx::query("SELECT id, state, reason FROM sessions WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&self.pool)
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
}

impl Store {
    /// Sessions still `requested` after `older_than`: no worker ever claimed them, for example
    /// because the control plane stopped between recording and dispatching.
    pub async fn stale_requested(&self, older_than: std::time::Duration) -> Result<Vec<SessionRecord>, StoreError> {
        let seconds = older_than.as_secs_f64();
        let sql = format!(
            "{SESSION_SELECT} WHERE s.state = 'requested' AND s.created_at < now() - make_interval(secs => $1)"
        );
        let rows = sqlx::query(&sql).bind(seconds).fetch_all(&self.pool).await?;
        rows.iter().map(session_from_row).collect()
    }
}
