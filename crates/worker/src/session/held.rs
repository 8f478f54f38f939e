//! The held phase: the RDP connection runs in its own task while this actor arbitrates control
//! between viewers and records every change in PostgreSQL before acting on it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rdp_proxy_core::lease::{self, ControlLease};
use rdp_proxy_core::session::EventKind;
use rdp_proxy_core::token::AttachGrant;
use rdp_proxy_core::{FencingToken, InputEvent, SessionState, ViewerId};
use rdp_proxy_rdp::{Connection, EndReason, ResizeHandle, SharedScreen};
use rdp_proxy_store::{ControlUpdate, SessionRecord, StoreError, Transition};
use rdp_proxy_viewer::{ControlInfo, ServerMessage, close_code};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{AttachError, Attachment, Command, CommandError, ViewerEvent};
use crate::Shared;
use crate::api::ActorRef;

/// Input events queued towards the RDP task; beyond this, events are dropped and logged.
const INPUT_QUEUE: usize = 1024;
const VIEWER_QUEUE: usize = 64;

pub(super) struct Channels {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) receiver: mpsc::Receiver<Command>,
    pub(super) lease: watch::Sender<Option<ControlLease>>,
    pub(super) state: watch::Sender<SessionState>,
    pub(super) viewers: watch::Sender<usize>,
}

pub(super) struct Held {
    shared: Shared,
    record: SessionRecord,
    channels: Channels,
    screen: Arc<SharedScreen>,
    resize: ResizeHandle,
    input: mpsc::Sender<InputEvent>,
    stop: CancellationToken,
    rdp: JoinHandle<EndReason>,
    lease: Option<ControlLease>,
    viewers: HashMap<ViewerId, mpsc::Sender<ViewerEvent>>,
    /// Viewers already sent one `not_in_control` error.
    warned: HashSet<ViewerId>,
    dropped_inputs: u64,
    /// When the session last became detached, for the idle-detach limit.
    detached_since: Option<tokio::time::Instant>,
    /// When the maximum session length ends the session.
    ends_at: Option<tokio::time::Instant>,
}

/// Outcome of the actor loop.
enum Ending {
    /// Recorded in PostgreSQL (or already recorded elsewhere); tell viewers and stop.
    Final { state: SessionState, reason: String },
}

impl Held {
    pub(super) fn new(shared: Shared, record: SessionRecord, connection: Connection, channels: Channels) -> Self {
        let screen = connection.screen();
        let resize = connection.resize_handle();
        let (input, input_rx) = mpsc::channel(INPUT_QUEUE);
        let stop = CancellationToken::new();
        let rdp = tokio::spawn(connection.run(input_rx, stop.clone()));
        let _ = channels.state.send(record.state);
        let ends_at = record.limits.max_duration_secs.map(|secs| {
            let age = (OffsetDateTime::now_utc() - record.created_at)
                .try_into()
                .unwrap_or(Duration::ZERO);
            tokio::time::Instant::now() + Duration::from_secs(u64::from(secs)).saturating_sub(age)
        });
        let detached_since = (record.state == SessionState::Detached).then(tokio::time::Instant::now);
        Self {
            shared,
            record,
            channels,
            screen,
            resize,
            input,
            stop,
            rdp,
            lease: None,
            viewers: HashMap::new(),
            warned: HashSet::new(),
            dropped_inputs: 0,
            detached_since,
            ends_at,
        }
    }

    /// The next moment a policy limit ends the session, and the reason it will record.
    fn next_limit(&self) -> Option<(tokio::time::Instant, String)> {
        let idle = self
            .record
            .limits
            .idle_detach_secs
            .zip(self.detached_since)
            .map(|(secs, since)| {
                (
                    since + Duration::from_secs(u64::from(secs)),
                    format!(
                        "detached for {} min: the idle-detach limit of its policy",
                        secs.div_ceil(60)
                    ),
                )
            });
        let max = self
            .ends_at
            .zip(self.record.limits.max_duration_secs)
            .map(|(at, secs)| {
                (
                    at,
                    format!(
                        "open for {} min: the maximum session length of its policy",
                        secs.div_ceil(60)
                    ),
                )
            });
        match (idle, max) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    pub(super) async fn run(mut self) {
        let Ending::Final { state, reason } = self.serve().await;
        self.stop.cancel();
        if !self.rdp.is_finished()
            && tokio::time::timeout(Duration::from_secs(5), &mut self.rdp)
                .await
                .is_err()
        {
            tracing::warn!("RDP task did not stop within 5 s; aborting it");
            self.rdp.abort();
        }
        let _ = self.channels.state.send(state);
        let code = if state == SessionState::Terminated {
            close_code::TERMINATED
        } else {
            close_code::SESSION_GONE
        };
        self.broadcast(ServerMessage::State {
            state: state.to_string(),
            reason: Some(reason.clone()),
            control: None,
        });
        for sender in self.viewers.values() {
            let _ = sender.try_send(ViewerEvent::Close {
                code,
                reason: reason.clone(),
            });
        }
        // Removed from the registry first, so the heartbeat cannot re-assert the keys deleted next.
        self.shared.registry.remove(self.record.id);
        if let Err(error) = self.shared.coord.forget_session(self.record.org, self.record.id).await {
            tracing::debug!(error = %error, "Could not remove routing keys; they expire on their own");
        }
        tracing::info!(state = %state, reason = %reason, "Session ended");
    }

    async fn serve(&mut self) -> Ending {
        loop {
            let limit = self.next_limit();
            let deadline = limit.as_ref().map(|(at, _)| *at);
            tokio::select! {
                () = sleep_until_some(deadline) => {
                    let reason = limit.map(|(_, reason)| reason).unwrap_or_default();
                    tracing::info!(reason = %reason, "Session limit reached");
                    self.stop.cancel();
                    return self.finish(Transition::new(SessionState::Terminated, EventKind::Terminated).reason(reason)).await;
                }
                end = &mut self.rdp => {
                    let reason = match end {
                        Ok(EndReason::Stopped) => "stopped by the worker".to_owned(),
                        Ok(other) => format!("target connection ended: {other}"),
                        Err(error) => format!("RDP task failed: {error}"),
                    };
                    return self.finish(Transition::new(SessionState::Terminated, EventKind::Terminated).reason(reason)).await;
                }
                command = self.channels.receiver.recv() => {
                    let Some(command) = command else {
                        return Ending::Final { state: SessionState::Terminated, reason: "worker shut down".into() };
                    };
                    if let Some(ending) = self.handle(command).await {
                        return ending;
                    }
                }
            }
        }
    }

    async fn handle(&mut self, command: Command) -> Option<Ending> {
        match command {
            Command::Attach { grant, viewer, reply } => {
                let result = self.attach(grant, viewer).await;
                let failed_final = matches!(&result, Err(AttachError::NotAttachable(state)) if state.is_final());
                let _ = reply.send(result);
                if failed_final {
                    return Some(Ending::Final {
                        state: self.record.state,
                        reason: self.current_reason(),
                    });
                }
            }
            Command::ViewerGone { viewer } => return self.viewer_gone(viewer).await,
            Command::Input { viewer, fence, event } => self.input(viewer, fence, event),
            Command::Resize {
                viewer,
                fence,
                width,
                height,
            } => {
                if lease::accepts_input(self.lease.as_ref(), viewer, fence)
                    && self.resize.resize(width, height).is_err()
                {
                    tracing::debug!("Resize ignored: the RDP task has ended");
                }
            }
            Command::Detach { actor, reply } => {
                let result = self.detach_all(&actor).await;
                let ending = match &result {
                    Err(CommandError::NotHeld(state)) if state.is_final() => Some(Ending::Final {
                        state: *state,
                        reason: self.current_reason(),
                    }),
                    _ => None,
                };
                let _ = reply.send(result);
                return ending;
            }
            Command::Terminate { actor, reply } => {
                self.stop.cancel();
                let change = Transition::new(SessionState::Terminated, EventKind::Terminated)
                    .actor(actor.user_id)
                    .reason(actor.reason);
                let ending = self.finish(change).await;
                let _ = reply.send(Ok(()));
                return Some(ending);
            }
            Command::EndedElsewhere { state, reason } => {
                let reason = reason.unwrap_or_else(|| format!("session was marked {state} elsewhere"));
                return Some(Ending::Final { state, reason });
            }
        }
        None
    }

    async fn attach(&mut self, grant: AttachGrant, viewer: ViewerId) -> Result<Attachment, AttachError> {
        if !matches!(self.record.state, SessionState::Active | SessionState::Detached) {
            return Err(AttachError::NotAttachable(self.record.state));
        }
        if grant.mode == lease::AttachMode::Observe {
            return Ok(self.observe(&grant, viewer));
        }
        let now = OffsetDateTime::now_utc();
        let claimant = lease::Claimant {
            user: grant.user,
            user_name: grant.user_name.clone(),
            viewer,
        };
        let granted = lease::acquire(
            self.lease.as_ref(),
            self.record.control_fence,
            claimant,
            grant.mode,
            now,
        )
        .map_err(|lease::LeaseError::Held { holder_name, since, .. }| AttachError::Held {
            holder: holder_name,
            since: rfc3339(since),
        })?;
        let (kind, reason) = match &granted.replaced {
            Some(old) => (EventKind::TakenOver, format!("control taken from {}", old.user_name)),
            None => (EventKind::Attached, "viewer attached".to_owned()),
        };
        let mut change = Transition::new(SessionState::Active, kind)
            .actor(Some(grant.user))
            .reason(reason);
        change.control = Some(Some(ControlUpdate {
            user: grant.user,
            fence: granted.lease.fence,
            since: now,
        }));
        if let Err(error) = self.persist(change).await {
            return Err(match self.record.state.is_final() {
                true => AttachError::NotAttachable(self.record.state),
                false => AttachError::Store(error.to_string()),
            });
        }
        let fence = granted.lease.fence;
        self.set_lease(Some(granted.lease));
        self.detached_since = None;
        let (sender, events) = mpsc::channel(VIEWER_QUEUE);
        self.viewers.insert(viewer, sender);
        let _ = self.channels.viewers.send(self.viewers.len());
        self.broadcast_state();
        // Sent after the state broadcast, so the replaced viewer's last word is who took control.
        if let Some(old) = &granted.replaced
            && let Some(sender) = self.viewers.get(&old.viewer)
        {
            let _ = sender.try_send(ViewerEvent::Send(ServerMessage::ControlLost {
                by: grant.user_name.clone(),
                at: now,
            }));
            let _ = self.input.try_send(InputEvent::ReleaseAll);
        }
        tracing::info!(viewer.id = %viewer, user.id = %grant.user, fence = fence.0, mode = grant.mode.as_str(), "Viewer attached");
        self.shared
            .metrics
            .attached(&self.record.org.to_string(), grant.mode.as_str());
        Ok(Attachment {
            fence,
            screen: Arc::clone(&self.screen),
            events,
            commands: self.channels.commands.clone(),
        })
    }

    /// Adds a viewer that sees the screen and sends no input; control and state stay as they are.
    // NOTE: observers are checked only when they attach. Revoking a member detaches the sessions
    // they control, but an observer's stream stays open until it closes.
    fn observe(&mut self, grant: &AttachGrant, viewer: ViewerId) -> Attachment {
        let (sender, events) = mpsc::channel(VIEWER_QUEUE);
        let control = self.lease.as_ref().map(|held| ControlInfo {
            user: held.user_name.clone(),
            since: held.since,
        });
        let _ = sender.try_send(ViewerEvent::Send(ServerMessage::State {
            state: self.record.state.to_string(),
            reason: None,
            control,
        }));
        self.viewers.insert(viewer, sender);
        let _ = self.channels.viewers.send(self.viewers.len());
        tracing::info!(viewer.id = %viewer, user.id = %grant.user, "Observer attached");
        self.shared
            .metrics
            .attached(&self.record.org.to_string(), grant.mode.as_str());
        Attachment {
            // Never matches a lease, so input from an observer is dropped.
            fence: FencingToken(0),
            screen: Arc::clone(&self.screen),
            events,
            commands: self.channels.commands.clone(),
        }
    }

    async fn viewer_gone(&mut self, viewer: ViewerId) -> Option<Ending> {
        self.viewers.remove(&viewer);
        self.warned.remove(&viewer);
        let _ = self.channels.viewers.send(self.viewers.len());
        let held_control = self.lease.as_ref().is_some_and(|held| held.viewer == viewer);
        if !held_control {
            return None;
        }
        let _ = self.input.try_send(InputEvent::ReleaseAll);
        self.set_lease(None);
        let mut change = Transition::new(SessionState::Detached, EventKind::Detached).reason("viewer disconnected");
        change.control = Some(None);
        match self.persist(change).await {
            Ok(()) => {
                self.detached_since = Some(tokio::time::Instant::now());
                tracing::info!(viewer.id = %viewer, "Viewer left; session detached and still connected");
                self.broadcast_state();
                None
            }
            Err(_) if self.record.state.is_final() => Some(Ending::Final {
                state: self.record.state,
                reason: self.current_reason(),
            }),
            Err(error) => {
                tracing::warn!(error = %error, "Could not record the detach");
                None
            }
        }
    }

    fn input(&mut self, viewer: ViewerId, fence: FencingToken, event: InputEvent) {
        if !lease::accepts_input(self.lease.as_ref(), viewer, fence) {
            if self.warned.insert(viewer)
                && let Some(sender) = self.viewers.get(&viewer)
            {
                let message = match &self.lease {
                    Some(held) => format!(
                        "control is held by {} since {}; input was dropped",
                        held.user_name,
                        rfc3339(held.since)
                    ),
                    None => "this viewer no longer has control; input was dropped".to_owned(),
                };
                let _ = sender.try_send(ViewerEvent::Send(ServerMessage::error("not_in_control", message)));
            }
            return;
        }
        if self.input.try_send(event).is_err() {
            self.dropped_inputs += 1;
            if self.dropped_inputs.is_power_of_two() {
                tracing::warn!(
                    dropped = self.dropped_inputs,
                    "Input queue to the target is full; dropping events"
                );
            }
        }
    }

    async fn detach_all(&mut self, actor: &ActorRef) -> Result<(), CommandError> {
        if self.record.state != SessionState::Active {
            return match self.record.state {
                SessionState::Detached => Ok(()),
                other => Err(CommandError::NotHeld(other)),
            };
        }
        let mut change = Transition::new(SessionState::Detached, EventKind::Detached)
            .actor(actor.user_id)
            .reason(actor.reason.clone());
        change.control = Some(None);
        self.persist(change)
            .await
            .map_err(|error| match self.record.state.is_final() {
                true => CommandError::NotHeld(self.record.state),
                false => CommandError::Store(error.to_string()),
            })?;
        self.set_lease(None);
        self.detached_since = Some(tokio::time::Instant::now());
        let _ = self.input.try_send(InputEvent::ReleaseAll);
        self.broadcast_state();
        for (_, sender) in self.viewers.drain() {
            let _ = sender.try_send(ViewerEvent::Close {
                code: close_code::DETACHED,
                reason: actor.reason.clone(),
            });
        }
        let _ = self.channels.viewers.send(0);
        Ok(())
    }

    /// Records a final transition and returns how the loop ends. When PostgreSQL already holds
    /// a final state (recorded by someone else), that state wins.
    async fn finish(&mut self, change: Transition) -> Ending {
        let state = change.to;
        let reason = change.reason.clone().unwrap_or_default();
        match self.persist(change).await {
            Ok(()) => Ending::Final { state, reason },
            Err(error) => {
                if !self.record.state.is_final() {
                    tracing::error!(error = %error, "Could not record the end of the session");
                }
                Ending::Final {
                    state: self.record.state,
                    reason: self.current_reason(),
                }
            }
        }
    }

    /// Applies a change against the version this actor last saw. On a conflict it reloads the
    /// row once: a final state recorded elsewhere wins, otherwise the change is retried.
    async fn persist(&mut self, change: Transition) -> Result<(), StoreError> {
        let attempt = change.clone().expect_version(self.record.version);
        match self.shared.record(self.record.org, self.record.id, attempt).await {
            Ok(record) => {
                self.record = record;
                let _ = self.channels.state.send(self.record.state);
                Ok(())
            }
            Err(StoreError::Transition(_)) => {
                self.record = self.shared.store.get_session(self.record.org, self.record.id).await?;
                let _ = self.channels.state.send(self.record.state);
                if self.record.state.is_final() {
                    return Err(StoreError::Transition(rdp_proxy_core::TransitionError::Final {
                        state: self.record.state,
                    }));
                }
                let record = self
                    .shared
                    .record(
                        self.record.org,
                        self.record.id,
                        change.expect_version(self.record.version),
                    )
                    .await?;
                self.record = record;
                let _ = self.channels.state.send(self.record.state);
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    fn set_lease(&mut self, lease: Option<ControlLease>) {
        self.lease = lease.clone();
        let _ = self.channels.lease.send(lease.clone());
        let coord = self.shared.coord.clone();
        let (org, id) = (self.record.org, self.record.id);
        let ttl = self.shared.config.heartbeat_ttl() * 5;
        tokio::spawn(async move {
            if let Err(error) = coord.set_control(org, id, lease.as_ref(), ttl).await {
                tracing::debug!(error = %error, "Could not mirror the control lease; the next heartbeat retries");
            }
        });
    }

    fn broadcast_state(&self) {
        let control = self.lease.as_ref().map(|held| ControlInfo {
            user: held.user_name.clone(),
            since: held.since,
        });
        self.broadcast(ServerMessage::State {
            state: self.record.state.to_string(),
            reason: None,
            control,
        });
    }

    fn broadcast(&self, message: ServerMessage) {
        for sender in self.viewers.values() {
            let _ = sender.try_send(ViewerEvent::Send(message.clone()));
        }
    }

    fn current_reason(&self) -> String {
        self.record
            .reason
            .clone()
            .unwrap_or_else(|| format!("session is {}", self.record.state))
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
