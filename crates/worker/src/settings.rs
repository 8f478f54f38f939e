//! Settings that change while the worker runs: the node agent writes the cluster's
//! configuration document to a file, and the worker applies it on its next heartbeat.

use std::path::Path;
use std::sync::RwLock;
use std::time::Duration;

use rdp_proxy_core::node::wire::ConfigDocument;

use crate::WorkerConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Current {
    pub(crate) max_sessions: u32,
    pub(crate) connect_timeout: Duration,
    /// Version of the configuration document in force; `None` before the first one.
    pub(crate) config_version: Option<i64>,
}

pub(crate) struct Live {
    current: RwLock<Current>,
}

impl Live {
    pub(crate) fn new(config: &WorkerConfig) -> Self {
        Self {
            current: RwLock::new(Current {
                max_sessions: config.max_sessions,
                connect_timeout: config.connect_timeout,
                config_version: None,
            }),
        }
    }

    pub(crate) fn get(&self) -> Current {
        *self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies the document at `path` when its version differs from the one in force. A missing
    /// file keeps the current settings; an unreadable or invalid one is an error and changes
    /// nothing.
    pub(crate) fn reload(&self, path: &Path) -> Result<Option<i64>, String> {
        let raw = match std::fs::read_to_string(path) {
            Ok(raw) => raw,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(format!("could not read {}: {error}", path.display())),
        };
        let document: ConfigDocument = serde_json::from_str(&raw)
            .map_err(|error| format!("{} is not a configuration document: {error}", path.display()))?;
        document.body.validate()?;
        let mut current = self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.config_version == Some(document.version) {
            return Ok(None);
        }
        current.max_sessions = document.body.worker_max_sessions;
        current.connect_timeout = Duration::from_secs(u64::from(document.body.worker_connect_timeout_secs));
        current.config_version = Some(document.version);
        Ok(Some(document.version))
    }
}
