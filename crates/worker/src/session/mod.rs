//! One actor task per session: it opens the RDP connection, then owns the control lease, the
//! attached viewers and every state change of the session while this worker holds it.

mod connect;
mod held;

use std::sync::Arc;

use rdp_proxy_core::lease::ControlLease;
use rdp_proxy_core::token::AttachGrant;
use rdp_proxy_core::{FencingToken, InputEvent, SessionState, ViewerId};
use rdp_proxy_rdp::SharedScreen;
use rdp_proxy_store::{SessionRecord, StoreError, Transition};
use rdp_proxy_viewer::ServerMessage;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use crate::Shared;
use crate::api::ActorRef;
use crate::api::{StartSession, TargetSpec};
use crate::registry::Handle;

/// Messages to a session's actor.
pub(crate) enum Command {
    Attach {
        grant: AttachGrant,
        viewer: ViewerId,
        reply: oneshot::Sender<Result<Attachment, AttachError>>,
    },
    ViewerGone {
        viewer: ViewerId,
    },
    Input {
        viewer: ViewerId,
        fence: FencingToken,
        event: InputEvent,
    },
    Resize {
        viewer: ViewerId,
        fence: FencingToken,
        width: u16,
        height: u16,
    },
    Detach {
        actor: ActorRef,
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
    Terminate {
        actor: ActorRef,
        reply: oneshot::Sender<Result<(), CommandError>>,
    },
    /// PostgreSQL records the session as final (for example `lost`); stop without writing.
    EndedElsewhere {
        state: SessionState,
        reason: Option<String>,
    },
}

/// Channels and screen handed to a viewer task after a successful attach.
pub(crate) struct Attachment {
    pub(crate) fence: FencingToken,
    pub(crate) screen: Arc<SharedScreen>,
    pub(crate) events: mpsc::Receiver<ViewerEvent>,
    pub(crate) commands: mpsc::Sender<Command>,
}

/// Something the actor wants a viewer to do.
#[derive(Debug)]
pub(crate) enum ViewerEvent {
    Send(ServerMessage),
    Close { code: u16, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum AttachError {
    #[error("session is {0}; only an active or detached session can be attached")]
    NotAttachable(SessionState),
    #[error("control is held by {holder} since {since}; ask them to detach or request a takeover")]
    Held { holder: String, since: String },
    #[error("could not record the attach: {0}")]
    Store(String),
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CommandError {
    #[error("session is {0}")]
    NotHeld(SessionState),
    #[error("could not record the change: {0}")]
    Store(String),
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error("session not found")]
    NotFound,
    #[error("session is {0}; only a requested session can be started")]
    NotRequested(SessionState),
    #[error("session is already held by this worker")]
    AlreadyHeld,
    #[error("this node serves only organisation {served}; refused a session of {requested}")]
    OrgNotServed {
        served: rdp_proxy_core::OrgId,
        requested: rdp_proxy_core::OrgId,
    },
    #[error("this worker holds {held} sessions, its limit")]
    Full { held: usize },
    #[error("this worker lost its supervisor and takes no new sessions")]
    Orphaned,
    #[error("storage failed: {0}")]
    Store(#[source] StoreError),
}

/// Claims a `requested` session for this worker (moving it to `connecting`) and spawns its actor.
pub(crate) async fn start(shared: &Shared, request: StartSession) -> Result<SessionRecord, StartError> {
    let id = request.session_id;
    // Checked before anything is read: a customer-managed node never touches another
    // organisation's rows, even when a crafted request names them.
    if let Some(served) = shared.config.node_org
        && served != request.org_id
    {
        tracing::warn!(session.id = %id, org.id = %request.org_id, served = %served, "Refused a session of another organisation");
        return Err(StartError::OrgNotServed {
            served,
            requested: request.org_id,
        });
    }
    if shared.orphaned.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(StartError::Orphaned);
    }
    let held = shared.registry.len();
    if held >= usize::try_from(shared.settings.get().max_sessions).unwrap_or(usize::MAX) {
        return Err(StartError::Full { held });
    }
    let record = match shared.store.get_session(request.org_id, id).await {
        Ok(record) => record,
        Err(StoreError::NotFound { .. }) => return Err(StartError::NotFound),
        Err(error) => return Err(StartError::Store(error)),
    };
    if record.state != SessionState::Requested {
        return Err(StartError::NotRequested(record.state));
    }
    let (commands, receiver) = mpsc::channel(256);
    let (lease_tx, lease) = watch::channel(None::<ControlLease>);
    let (state_tx, state) = watch::channel(SessionState::Connecting);
    let (viewers_tx, viewers) = watch::channel(0usize);
    let handle = Handle {
        org: record.org,
        commands: commands.clone(),
        lease,
        state,
        viewers,
    };
    if !shared.registry.insert(id, handle) {
        return Err(StartError::AlreadyHeld);
    }
    let mut change = Transition::new(SessionState::Connecting, rdp_proxy_core::session::EventKind::Connecting)
        .expect_version(record.version)
        .reason(format!("worker {} is connecting", shared.id));
    change.worker = Some(shared.id);
    let record = match shared.record(record.org, id, change).await {
        Ok(record) => record,
        Err(error) => {
            shared.registry.remove(id);
            return Err(StartError::Store(error));
        }
    };
    let span = tracing::info_span!("session", session.id = %id, org.id = %record.org, worker.id = %shared.id);
    let channels = held::Channels {
        commands,
        receiver,
        lease: lease_tx,
        state: state_tx,
        viewers: viewers_tx,
    };
    tokio::spawn(run(shared.clone(), record.clone(), request.target, channels).instrument(span));
    Ok(record)
}

async fn run(shared: Shared, record: SessionRecord, target: TargetSpec, mut channels: held::Channels) {
    let id = record.id;
    match connect::connect_phase(&shared, record, &target, &mut channels.receiver).await {
        Some((record, connection)) => {
            held::Held::new(shared.clone(), record, connection, channels)
                .run()
                .await
        }
        None => tracing::info!("Session ended before it connected"),
    }
    shared.registry.remove(id);
}
