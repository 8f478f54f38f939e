//! The agent's main loop once the node has an identity: report, apply the instructions, renew
//! the certificate when it is due, and stop everything on shutdown or revocation.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdp_proxy_core::node::wire::{ConfigDocument, NodeConfig, NodeInstructions, NodeReport, RenewRequest};
use rdp_proxy_core::node::{Capabilities, ServiceKind, ServiceReport};
use rdp_proxy_pki::NodeKey;
use reqwest::{StatusCode, Url};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiError, NodeApi};
use crate::backoff::Backoff;
use crate::plan::{Action, Current, plan};
use crate::state::{DataDir, Identity, NodeRecord, WORKER_CONFIG_FILE};
use crate::supervisor::{ServiceCommand, Supervisor, Timing};
use crate::{AGENT_VERSION, Outcome};

/// Version of the `worker-config.json` the agent writes when the worker must start before the
/// control plane has published any configuration. The file contains `NodeConfig::default()`,
/// and the agent reports no configuration version for it.
pub(crate) const DEFAULT_CONFIG_VERSION: i64 = 0;

/// Environment variable with the agent's PID. The worker exits when that process is gone.
const EXIT_WITH_PARENT_ENV: &str = "RDP_PROXY_EXIT_WITH_PARENT";

/// Environment variables the worker must not inherit from the agent.
const WITHHELD_ENV: [&str; 1] = ["RDP_PROXY_JOIN_TOKEN"];

/// Retry delays while the control plane is unreachable.
const RETRY_INITIAL: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Settings that hold for the agent's whole run.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub control: Url,
    pub worker_bin: PathBuf,
    pub worker_listen: String,
    pub worker_viewer_url: Option<String>,
    /// `--no-rdp` was not given.
    pub rdp_enabled: bool,
}

impl Settings {
    /// Returns whether the worker binary exists and is executable.
    fn worker_bin_present(&self) -> bool {
        std::fs::metadata(&self.worker_bin)
            .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
    }

    /// Measures the node. RDP is reported only when enabled and the worker binary is present.
    pub fn measure_capabilities(&self) -> anyhow::Result<Capabilities> {
        let rdp = self.rdp_enabled && self.worker_bin_present();
        rdp_proxy_host::capabilities(rdp, false, false).context("failed to measure the node from /proc")
    }
}

/// Builds the worker's command line: `<worker-bin> worker --node-id … [--node-org …]
/// --node-config … --listen … [--viewer-url …]`.
pub(crate) fn worker_command(settings: &Settings, record: &NodeRecord, data: &DataDir) -> ServiceCommand {
    let mut args: Vec<OsString> = vec!["worker".into(), "--node-id".into(), record.node_id.to_string().into()];
    if let Some(org) = record.owner.org() {
        args.push("--node-org".into());
        args.push(org.to_string().into());
    }
    args.push("--node-config".into());
    args.push(data.path(WORKER_CONFIG_FILE).into());
    args.push("--listen".into());
    args.push(settings.worker_listen.clone().into());
    if let Some(url) = &settings.worker_viewer_url {
        args.push("--viewer-url".into());
        args.push(url.into());
    }
    ServiceCommand {
        kind: ServiceKind::Worker,
        program: settings.worker_bin.clone(),
        args,
        env: vec![(EXIT_WITH_PARENT_ENV.into(), std::process::id().to_string().into())],
        env_remove: WITHHELD_ENV.iter().map(OsString::from).collect(),
    }
}

/// Why the agent must stop: the control plane revoked the node.
struct Revoked {
    reason: String,
}

/// Health of the link to the control plane, so a failure streak is logged once when it starts
/// and once when it ends.
struct Link {
    failing_since: Option<Instant>,
    backoff: Backoff,
    /// Status and code of the last 4xx response to a report, while the streak lasts.
    last_rejection: Option<(StatusCode, String)>,
}

impl Link {
    /// Records an unreachable control plane and returns the delay before the next attempt.
    fn failed(&mut self, error: &ApiError, not_after: OffsetDateTime) -> Duration {
        let delay = self.backoff.next_delay();
        if self.failing_since.is_none() {
            self.failing_since = Some(Instant::now());
            tracing::warn!(
                %error,
                certificate_not_after = %not_after,
                "Control plane unreachable, so reports are retried with backoff up to 30 s while services keep running"
            );
        } else {
            tracing::debug!(%error, retry_in_secs = delay.as_secs(), "Control plane still unreachable");
        }
        delay
    }

    /// Records a response from the control plane.
    fn reached(&mut self) {
        if let Some(since) = self.failing_since.take() {
            tracing::info!(
                unreachable_secs = since.elapsed().as_secs(),
                "Control plane reachable again"
            );
        }
        self.backoff.reset();
    }
}

/// The running agent.
pub(crate) struct Agent {
    settings: Settings,
    data: DataDir,
    identity: Identity,
    api: NodeApi,
    timing: Timing,
    worker: Option<Supervisor>,
    capabilities: Capabilities,
    /// Version of the configuration in `worker-config.json`, when one from the control plane
    /// was applied.
    config_version: Option<i64>,
    /// A configuration version that failed validation or could not be written, so the failure
    /// is logged once.
    failed_config_version: Option<i64>,
    report_interval: Duration,
    link: Link,
}

impl Agent {
    pub fn new(settings: Settings, data: DataDir, identity: Identity) -> anyhow::Result<Self> {
        let key = NodeKey::from_pem(&identity.key_pem)
            .with_context(|| format!("failed to load {}", data.path(crate::state::KEY_FILE).display()))?;
        let matches = key
            .matches_certificate(&identity.cert_pem)
            .with_context(|| format!("failed to load {}", data.path(crate::state::CERT_FILE).display()))?;
        anyhow::ensure!(
            matches,
            "{} was not issued for {}; restore the matching pair, or join again with a new token and an empty data directory",
            data.path(crate::state::CERT_FILE).display(),
            data.path(crate::state::KEY_FILE).display()
        );
        let api = mtls_api(&settings.control, &identity)?;
        let capabilities = settings.measure_capabilities()?;
        if settings.rdp_enabled && !capabilities.rdp {
            tracing::warn!(
                worker_bin = %settings.worker_bin.display(),
                "Worker binary is missing or not executable; reporting no RDP capability until it appears"
            );
        }

        let mut config_version = None;
        let mut report_interval = Duration::from_secs(u64::from(NodeConfig::default().report_interval_secs));
        match data.load_worker_config() {
            Ok(Some(document)) if document.body.validate().is_ok() => {
                if document.version != DEFAULT_CONFIG_VERSION {
                    config_version = Some(document.version);
                }
                report_interval = Duration::from_secs(u64::from(document.body.report_interval_secs));
            }
            Ok(Some(_)) => {
                tracing::warn!("Ignoring an invalid worker-config.json until the control plane sends a new one")
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(
                error = format!("{error:#}"),
                "Ignoring an unreadable worker-config.json"
            ),
        }

        Ok(Self {
            settings,
            data,
            identity,
            api,
            timing: Timing::default(),
            worker: None,
            capabilities,
            config_version,
            failed_config_version: None,
            report_interval,
            link: Link {
                failing_since: None,
                backoff: Backoff::new(RETRY_INITIAL, RETRY_MAX),
                last_rejection: None,
            },
        })
    }

    /// Reports until `shutdown` is cancelled or the node is revoked, then stops the services.
    pub async fn run(mut self, shutdown: CancellationToken) -> Outcome {
        let record = &self.identity.record;
        tracing::info!(
            node_id = %record.node_id,
            owner = %record.owner,
            name = record.name,
            control = %self.settings.control,
            "Agent running"
        );
        loop {
            let delay = match self.step(&shutdown).await {
                Ok(delay) => delay,
                Err(Revoked { reason }) => {
                    self.stop_services().await;
                    tracing::error!(
                        node_id = %self.identity.record.node_id,
                        reason,
                        data_dir = %self.data.root().display(),
                        "The control plane revoked this node; services are stopped. The node must join \
                         again with a new token: move the data directory away (the agent deleted nothing) \
                         and start the agent with --join-token"
                    );
                    return Outcome::Revoked;
                }
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        self.stop_services().await;
        tracing::info!("Agent stopped");
        Outcome::Stopped
    }

    /// Sends one report, applies the instructions and renews the certificate when due. Returns
    /// the delay before the next report.
    async fn step(&mut self, shutdown: &CancellationToken) -> Result<Duration, Revoked> {
        self.refresh_capabilities();
        let report = NodeReport {
            capabilities: self.capabilities.clone(),
            agent_version: AGENT_VERSION.to_owned(),
            services: self.service_reports(),
            config_version: self.config_version,
        };
        let result = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(Duration::ZERO),
            result = self.api.report(&report) => result,
        };
        match result {
            Ok(instructions) => {
                self.link.reached();
                self.link.last_rejection = None;
                self.apply(&instructions).await?;
                self.renew_if_due(shutdown).await?;
                Ok(self.report_interval)
            }
            Err(error) if error.is_revocation() => Err(Revoked {
                reason: error.to_string(),
            }),
            Err(ApiError::Rejected { status, code, message }) => {
                self.link.reached();
                let streak = Some((status, code.clone()));
                if self.link.last_rejection != streak {
                    tracing::warn!(%status, code, message, "Control plane rejected the report, services keep running");
                    self.link.last_rejection = streak;
                }
                Ok(self.report_interval)
            }
            Err(error) => Ok(self.link.failed(&error, self.identity.record.not_after)),
        }
    }

    fn refresh_capabilities(&mut self) {
        match self.settings.measure_capabilities() {
            Ok(capabilities) => {
                if self.settings.rdp_enabled && capabilities.rdp != self.capabilities.rdp {
                    tracing::info!(
                        worker_bin = %self.settings.worker_bin.display(),
                        rdp = capabilities.rdp,
                        "Worker binary presence changed; updating the RDP capability"
                    );
                }
                self.capabilities = capabilities;
            }
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "Failed to measure the node; reporting the last figures"
                );
            }
        }
    }

    fn service_reports(&self) -> Vec<ServiceReport> {
        self.worker.iter().map(Supervisor::report).collect()
    }

    async fn apply(&mut self, instructions: &NodeInstructions) -> Result<(), Revoked> {
        let current = Current {
            worker_supervised: self.worker.is_some(),
            config_version: self.config_version,
            rdp: self.capabilities.rdp,
        };
        for action in plan(instructions, current) {
            match action {
                Action::Revoked => {
                    return Err(Revoked {
                        reason: "the control plane reports the node's state as revoked".to_owned(),
                    });
                }
                Action::ApplyConfig(document) => self.apply_config(document),
                Action::StartWorker => self.start_worker(),
                Action::StopWorker => self.stop_worker().await,
            }
        }
        Ok(())
    }

    fn apply_config(&mut self, document: ConfigDocument) {
        let first_failure = self.failed_config_version != Some(document.version);
        if let Err(reason) = document.body.validate() {
            if first_failure {
                tracing::warn!(version = document.version, reason, "Ignoring an invalid configuration");
                self.failed_config_version = Some(document.version);
            }
            return;
        }
        if let Err(error) = self.data.save_worker_config(&document) {
            if first_failure {
                tracing::error!(
                    version = document.version,
                    error = format!("{error:#}"),
                    "Failed to write the configuration; retrying after each report"
                );
                self.failed_config_version = Some(document.version);
            }
            return;
        }
        self.failed_config_version = None;
        self.config_version = Some(document.version);
        self.report_interval = Duration::from_secs(u64::from(document.body.report_interval_secs));
        tracing::info!(
            version = document.version,
            report_interval_secs = document.body.report_interval_secs,
            "Applied configuration"
        );
    }

    fn start_worker(&mut self) {
        // The worker reads its configuration at start-up, so it needs a file even before the
        // control plane has published one.
        if !self.data.path(WORKER_CONFIG_FILE).exists() {
            let defaults = ConfigDocument {
                version: DEFAULT_CONFIG_VERSION,
                body: NodeConfig::default(),
            };
            if let Err(error) = self.data.save_worker_config(&defaults) {
                tracing::error!(
                    error = format!("{error:#}"),
                    "Failed to write the default worker configuration"
                );
            }
        }
        let command = worker_command(&self.settings, &self.identity.record, &self.data);
        tracing::info!(program = %command.program.display(), "Starting the worker");
        self.worker = Some(Supervisor::start(command, self.timing));
    }

    async fn stop_worker(&mut self) {
        if let Some(worker) = self.worker.take() {
            tracing::info!("Stopping the worker");
            worker.stop().await;
        }
    }

    async fn stop_services(&mut self) {
        self.stop_worker().await;
    }

    async fn renew_if_due(&mut self, shutdown: &CancellationToken) -> Result<(), Revoked> {
        if !self.identity.record.renewal_due(OffsetDateTime::now_utc()) {
            return Ok(());
        }
        match self.renew(shutdown).await {
            Ok(()) => Ok(()),
            Err(RenewError::Api(error)) if error.is_revocation() => Err(Revoked {
                reason: error.to_string(),
            }),
            Err(error) => {
                tracing::warn!(
                    %error,
                    not_after = %self.identity.record.not_after,
                    "Certificate renewal failed; retrying after the next report"
                );
                Ok(())
            }
        }
    }

    /// Requests a certificate for a new key, then replaces the identity files and the client.
    async fn renew(&mut self, shutdown: &CancellationToken) -> Result<(), RenewError> {
        let key = NodeKey::generate().context("failed to generate a node key")?;
        let request = RenewRequest {
            csr_pem: key
                .csr_pem(&self.identity.record.name)
                .context("failed to create a certificate request")?,
        };
        let issued = tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            result = self.api.renew(&request) => result?,
        };
        let matches = key
            .matches_certificate(&issued.cert_pem)
            .context("the control plane returned an unreadable certificate")?;
        if !matches {
            return Err(anyhow::anyhow!("the control plane returned a certificate for another key").into());
        }

        let mut identity = self.identity.clone();
        identity.key_pem = key.key_pem();
        identity.cert_pem = issued.cert_pem;
        identity.record.serial = issued.serial;
        identity.record.issued_at = OffsetDateTime::now_utc();
        identity.record.not_after = issued.not_after;
        // Build the client first, so a certificate it cannot use never replaces a working one.
        let api = mtls_api(&self.settings.control, &identity)?;
        self.data.save_identity(&identity)?;
        tracing::info!(
            serial = identity.record.serial,
            not_after = %identity.record.not_after,
            "Renewed the node certificate"
        );
        self.identity = identity;
        self.api = api;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
enum RenewError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

/// Builds the node API client that presents the node's certificate and trusts only the cluster
/// CA.
fn mtls_api(control: &Url, identity: &Identity) -> anyhow::Result<NodeApi> {
    let tls = rdp_proxy_pki::client_config(&identity.ca_pem, Some((&identity.cert_pem, &identity.key_pem)))
        .context("failed to load the node certificate, key or cluster CA")?;
    let client = rdp_proxy_pki::http_client(tls).context("failed to build the HTTP client")?;
    Ok(NodeApi::new(control.clone(), client))
}

#[cfg(test)]
mod tests {
    use rdp_proxy_core::node::NodeOwner;
    use rdp_proxy_core::{NodeId, OrgId};
    use time::macros::datetime;

    use super::*;

    fn settings(viewer_url: Option<&str>) -> Settings {
        Settings {
            control: Url::parse("https://127.0.0.1:8443").expect("url"),
            worker_bin: PathBuf::from("/opt/rdp-proxy/bin/rdp-proxy"),
            worker_listen: "127.0.0.1:0".into(),
            worker_viewer_url: viewer_url.map(str::to_owned),
            rdp_enabled: true,
        }
    }

    fn record(owner: NodeOwner) -> NodeRecord {
        NodeRecord {
            node_id: NodeId::new_random(),
            owner,
            name: "edge-1".into(),
            serial: "01".into(),
            issued_at: datetime!(2026-01-01 00:00 UTC),
            not_after: datetime!(2026-01-31 00:00 UTC),
        }
    }

    fn args(command: &ServiceCommand) -> Vec<String> {
        command
            .args
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn worker_command_for_org_node() {
        let org = OrgId::new_random();
        let record = record(NodeOwner::Org(org));
        let dir = tempfile::tempdir().expect("temp dir");
        let data = DataDir::open(dir.path()).expect("open data dir");
        let command = worker_command(&settings(Some("https://127.0.0.1:9000")), &record, &data);

        let config = dir.path().join("worker-config.json");
        let expected = vec![
            "worker".to_owned(),
            "--node-id".to_owned(),
            record.node_id.to_string(),
            "--node-org".to_owned(),
            org.to_string(),
            "--node-config".to_owned(),
            config.to_string_lossy().into_owned(),
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--viewer-url".to_owned(),
            "https://127.0.0.1:9000".to_owned(),
        ];
        assert_eq!(args(&command), expected);
        assert_eq!(command.program, PathBuf::from("/opt/rdp-proxy/bin/rdp-proxy"));
        assert_eq!(command.kind, ServiceKind::Worker);
        let pid = std::process::id().to_string();
        assert_eq!(
            command.env,
            [(OsString::from(EXIT_WITH_PARENT_ENV), OsString::from(pid))]
        );
        assert_eq!(command.env_remove, [OsString::from("RDP_PROXY_JOIN_TOKEN")]);
    }

    #[test]
    fn worker_command_for_platform_node() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = DataDir::open(dir.path()).expect("open data dir");
        let record = record(NodeOwner::Platform);
        let command = worker_command(&settings(None), &record, &data);
        let args = args(&command);
        assert!(!args.contains(&"--node-org".to_owned()), "{args:?}");
        assert!(!args.contains(&"--viewer-url".to_owned()), "{args:?}");
        assert_eq!(args.len(), 7, "{args:?}");
    }
}
