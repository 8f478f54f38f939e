//! The sessions this worker holds, by id. Each entry is a handle to the session's actor task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdp_proxy_core::lease::ControlLease;
use rdp_proxy_core::{OrgId, SessionId, SessionState};
use tokio::sync::{mpsc, oneshot, watch};

use crate::api::ActorRef;
use crate::session::Command;

/// How to reach a session's actor.
#[derive(Clone)]
pub(crate) struct Handle {
    pub(crate) org: OrgId,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) lease: watch::Receiver<Option<ControlLease>>,
    pub(crate) state: watch::Receiver<SessionState>,
    pub(crate) viewers: watch::Receiver<usize>,
}

#[derive(Clone, Default)]
pub(crate) struct Registry {
    inner: Arc<Mutex<HashMap<SessionId, Handle>>>,
}

impl Registry {
    /// Adds a handle; returns false when the session is already held here.
    pub(crate) fn insert(&self, id: SessionId, handle: Handle) -> bool {
        let mut map = self.lock();
        if map.contains_key(&id) {
            return false;
        }
        map.insert(id, handle);
        true
    }

    pub(crate) fn remove(&self, id: SessionId) {
        self.lock().remove(&id);
    }

    pub(crate) fn get(&self, id: SessionId) -> Option<Handle> {
        self.lock().get(&id).cloned()
    }

    pub(crate) fn snapshot(&self) -> Vec<(SessionId, Handle)> {
        self.lock().iter().map(|(id, handle)| (*id, handle.clone())).collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Terminates every held session and waits (up to 10 s each) for them to finish.
    pub(crate) async fn terminate_all(&self, reason: &str) {
        for (id, handle) in self.snapshot() {
            let (reply, done) = oneshot::channel();
            let actor = ActorRef {
                user_id: None,
                reason: reason.to_owned(),
            };
            if handle.commands.send(Command::Terminate { actor, reply }).await.is_err() {
                continue;
            }
            if tokio::time::timeout(Duration::from_secs(10), done).await.is_err() {
                tracing::warn!(session.id = %id, "Session did not finish terminating within 10 s");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Handle>> {
        // A panic while holding this lock leaves the map consistent, so poisoning is ignored.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
