//! The node agent: joins the cluster with a single-use token, keeps its client certificate
//! fresh, reports the node's capabilities and services to the control plane, and runs the
//! services the control plane enables (today only the worker) under a [`Supervisor`].
//!
//! [`run`] is the whole agent; the `rdp-proxy-agent` binary parses arguments and calls it.

pub mod api;
pub mod backoff;
mod join;
mod node;
pub mod plan;
pub mod state;
pub mod supervisor;
pub mod token;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
pub use rdp_proxy_core::OrgId;
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

pub use supervisor::Supervisor;

/// Exit code after the control plane revoked the node.
pub const EXIT_REVOKED: u8 = 3;

/// Version sent as `agent_version`.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Settings from the command line.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Base URL of the control plane's node API, `https://HOST:PORT`.
    pub control_url: String,
    pub data_dir: PathBuf,
    /// Needed only while the data directory has no identity. Secret.
    pub join_token: Option<String>,
    /// Node name to ask for at join; the host name when `None`.
    pub name: Option<String>,
    /// Organisation the node expects to belong to, checked against the token's.
    pub org: Option<OrgId>,
    pub labels: BTreeMap<String, String>,
    /// The `rdp-proxy` binary; `rdp-proxy` beside the agent's own executable when `None`.
    pub worker_bin: Option<PathBuf>,
    /// `--listen` of the worker.
    pub worker_listen: String,
    /// `--viewer-url` of the worker.
    pub worker_viewer_url: Option<String>,
    /// Whether to report the RDP capability (and so run the worker when enabled).
    pub rdp: bool,
}

/// Reason [`run`] returned without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Shutdown was requested; services were stopped.
    Stopped,
    /// The control plane revoked the node; services were stopped and the node must join again.
    Revoked,
}

/// A failure that ends the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The control plane rejected the join request; retrying with the same token cannot help.
    #[error("the control plane rejected the join request: {code}: {message} (HTTP {status})")]
    JoinRejected {
        status: StatusCode,
        code: String,
        message: String,
    },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Runs the agent until `shutdown` is cancelled or the node is revoked.
///
/// Joins first when the data directory has no identity. Errors are startup failures: an invalid
/// option, an unusable data directory, a malformed or rejected join token.
pub async fn run(options: AgentOptions, shutdown: CancellationToken) -> Result<Outcome, AgentError> {
    let control = api::parse_control_url(&options.control_url)?;
    let data = state::DataDir::open(&options.data_dir)
        .with_context(|| format!("failed to create data directory {}", options.data_dir.display()))?;
    let _lock = data.lock()?;
    match data
        .recover_staged()
        .context("failed to recover an interrupted identity write")?
    {
        state::Recovery::Clean => {}
        state::Recovery::Completed => tracing::info!("Finished an identity write that was interrupted"),
        state::Recovery::Discarded => {
            tracing::warn!("Discarded an incomplete identity write; the previous identity stays")
        }
    }

    let settings = node::Settings {
        control,
        worker_bin: match options.worker_bin {
            Some(path) => path,
            None => default_worker_bin()?,
        },
        worker_listen: options.worker_listen,
        worker_viewer_url: options.worker_viewer_url,
        rdp_enabled: options.rdp,
    };

    let identity = match data.load_identity()? {
        Some(identity) => {
            if options.join_token.is_some() {
                tracing::info!(node_id = %identity.record.node_id, "Already joined; ignoring the join token");
            }
            identity
        }
        None => {
            let Some(raw_token) = options.join_token.as_deref() else {
                return Err(anyhow::anyhow!(
                    "data directory {} has no node identity yet; pass --join-token (or set RDP_PROXY_JOIN_TOKEN) with a token from the control plane",
                    data.root().display()
                )
                .into());
            };
            let token = token::JoinToken::parse(raw_token).map_err(anyhow::Error::from)?;
            let name = match options.name {
                Some(name) => name,
                None => rdp_proxy_host::hostname().context("failed to read the host name; pass --name")?,
            };
            let request = join::JoinSettings {
                name,
                org: options.org,
                labels: options.labels,
            };
            match join::join(&settings, &data, &token, request, &shutdown).await? {
                Some(identity) => identity,
                None => return Ok(Outcome::Stopped),
            }
        }
    };

    let agent = node::Agent::new(settings, data, identity)?;
    Ok(agent.run(shutdown).await)
}

/// `rdp-proxy` in the directory of the running executable.
fn default_worker_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("failed to find the agent's own executable; pass --worker-bin")?;
    Ok(exe.with_file_name("rdp-proxy"))
}

/// Parses a `--label` value, `key=value`.
pub fn parse_label(raw: &str) -> Result<(String, String), String> {
    let (key, value) = raw
        .split_once('=')
        .ok_or_else(|| format!("label {raw:?} is invalid: expected key=value"))?;
    if key.is_empty() || key.chars().any(char::is_whitespace) {
        return Err(format!(
            "label {raw:?} is invalid: the key must be non-empty and contain no whitespace"
        ));
    }
    Ok((key.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse() {
        assert_eq!(parse_label("zone=eu-1"), Ok(("zone".into(), "eu-1".into())));
        assert_eq!(parse_label("note=a=b"), Ok(("note".into(), "a=b".into())));
        assert_eq!(parse_label("empty="), Ok(("empty".into(), String::new())));
        assert!(parse_label("zone").is_err());
        assert!(parse_label("=eu").is_err());
        assert!(parse_label("my zone=eu").is_err());
    }
}
