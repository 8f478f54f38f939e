//! The agent against a stand-in node API on 127.0.0.1, served over the cluster's real mutual
//! TLS (`rdp_proxy_pki::serve`): join, report, configuration, worker supervision, renewal,
//! revocation by HTTP status and by TLS alert, rejected joins and shutdown. The worker is a shell
//! script that prints the listening line and sleeps.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use rdp_proxy_agent::state::{CERT_FILE, DataDir, Identity, KEY_FILE, NODE_FILE, NodeRecord, WORKER_CONFIG_FILE};
use rdp_proxy_agent::{AgentError, AgentOptions, Outcome};
use rdp_proxy_core::node::wire::{
    ConfigDocument, JoinRequest, JoinResponse, NodeApiError, NodeConfig, NodeInstructions, NodeReport, RenewRequest,
};
use rdp_proxy_core::node::{NodeOwner, NodeState, ServiceKind, ServiceRun};
use rdp_proxy_core::{NodeId, OrgId};
use rdp_proxy_pki::{ClusterCa, NodeIdentity, NodeKey, PeerCertificate, Revocations, node_api_server_config, serve};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const HOUR: Duration = Duration::from_secs(3600);
const WAIT: Duration = Duration::from_secs(30);
const SECRET: &str = "Zm9vYmFy_secret";

/// Requests the stand-in node API received, and the failures it is set to return.
#[derive(Default)]
struct Seen {
    joins: Vec<JoinRequest>,
    /// Certificate serial of the caller and the report.
    reports: Vec<(String, NodeReport)>,
    renewals: usize,
    /// Serials whose reports get 403 `node_revoked`.
    revoked_serials: HashSet<String>,
    /// When set, every join gets this status and code.
    join_rejection: Option<(StatusCode, &'static str)>,
    /// When set, every report gets this status and code.
    report_failure: Option<(StatusCode, &'static str)>,
}

struct NodeApi {
    ca: ClusterCa,
    /// Certificate lifetime the stand-in issues.
    validity: Duration,
    config: Option<ConfigDocument>,
    seen: Mutex<Seen>,
}

impl NodeApi {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn api_error(status: StatusCode, code: &str) -> Response {
    let body = NodeApiError {
        code: code.to_owned(),
        message: format!("stand-in error {code}"),
    };
    (status, Json(body)).into_response()
}

async fn join(State(api): State<Arc<NodeApi>>, Json(request): Json<JoinRequest>) -> Response {
    let rejection = {
        let mut seen = api.seen();
        seen.joins.push(request.clone());
        seen.join_rejection
    };
    if let Some((status, code)) = rejection {
        return api_error(status, code);
    }
    if !request.token.ends_with(SECRET) {
        return api_error(StatusCode::UNAUTHORIZED, "join_token_invalid");
    }
    let identity = NodeIdentity {
        node: NodeId::new_random(),
        owner: NodeOwner::from_org(request.org_id),
    };
    let issued = api.ca.issue_node(
        &request.csr_pem,
        &identity,
        &request.name,
        api.validity,
        OffsetDateTime::now_utc(),
    );
    match issued {
        Ok(certificate) => Json(JoinResponse {
            node_id: identity.node,
            owner: identity.owner,
            certificate,
            ca_pem: api.ca.cert_pem().to_owned(),
        })
        .into_response(),
        Err(error) => api_error(StatusCode::BAD_REQUEST, &error.to_string()),
    }
}

async fn report(State(api): State<Arc<NodeApi>>, peer: PeerCertificate, Json(report): Json<NodeReport>) -> Response {
    let Some(peer) = peer.0 else {
        return api_error(StatusCode::UNAUTHORIZED, "client_certificate_required");
    };
    let mut seen = api.seen();
    if seen.revoked_serials.contains(&peer.serial) {
        return api_error(StatusCode::FORBIDDEN, "node_revoked");
    }
    if let Some((status, code)) = seen.report_failure {
        return api_error(status, code);
    }
    seen.reports.push((peer.serial.clone(), report));
    Json(NodeInstructions {
        node_id: peer.identity.node,
        owner: peer.identity.owner,
        state: NodeState::Ready,
        enabled_services: vec![ServiceKind::Worker],
        labels: BTreeMap::new(),
        config: api.config.clone(),
    })
    .into_response()
}

async fn renew(State(api): State<Arc<NodeApi>>, peer: PeerCertificate, Json(request): Json<RenewRequest>) -> Response {
    let Some(peer) = peer.0 else {
        return api_error(StatusCode::UNAUTHORIZED, "client_certificate_required");
    };
    api.seen().renewals += 1;
    let issued = api.ca.issue_node(
        &request.csr_pem,
        &peer.identity,
        "renewed",
        api.validity,
        OffsetDateTime::now_utc(),
    );
    match issued {
        Ok(certificate) => Json(certificate).into_response(),
        Err(error) => api_error(StatusCode::BAD_REQUEST, &error.to_string()),
    }
}

/// The stand-in node API, serving until dropped.
struct Server {
    api: Arc<NodeApi>,
    revocations: Revocations,
    address: SocketAddr,
    shutdown: CancellationToken,
    _task: JoinHandle<std::io::Result<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start_server(validity: Duration, config: Option<ConfigDocument>) -> Server {
    let ca = ClusterCa::generate("agent-test").expect("CA");
    let (server_cert, server_key) = ca
        .issue_server(&["127.0.0.1".to_owned()], HOUR, OffsetDateTime::now_utc())
        .expect("server certificate");
    let revocations = Revocations::new();
    let tls = node_api_server_config(ca.cert_pem(), &server_cert.cert_pem, &server_key, revocations.clone())
        .expect("server TLS config");
    let api = Arc::new(NodeApi {
        ca,
        validity,
        config,
        seen: Mutex::new(Seen::default()),
    });
    let app = Router::new()
        .route("/node/v1/join", post(join))
        .route("/node/v1/report", post(report))
        .route("/node/v1/renew", post(renew))
        .with_state(api.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("local address");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(listener, tls, app, shutdown.clone()));
    Server {
        api,
        revocations,
        address,
        shutdown,
        _task: task,
    }
}

/// Writes a stand-in worker that prints a version for `--version`, records its arguments and `RDP_PROXY_EXIT_WITH_PARENT`
/// in `worker-args`, prints the listening line and sleeps.
fn stand_in_worker(dir: &Path) -> PathBuf {
    let path = dir.join("rdp-proxy");
    let record = dir.join("worker-args");
    let text = format!(
        "#!/bin/sh\n\
         if [ \"$1\" = --version ]; then echo 'rdp-proxy 0.0.1-test'; exit 0; fi\n\
         echo \"$* parent=$RDP_PROXY_EXIT_WITH_PARENT\" > {}\n\
         echo '{{\"event\":\"listening\",\"addr\":\"127.0.0.1:1\"}}'\n\
         exec sleep 600\n",
        record.display()
    );
    std::fs::write(&path, text).expect("write stand-in worker");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod stand-in worker");
    path
}

fn options(server: &Server, data_dir: &Path, worker_bin: PathBuf, token: Option<String>) -> AgentOptions {
    AgentOptions {
        control_url: format!("https://{}", server.address),
        data_dir: data_dir.to_path_buf(),
        join_token: token,
        name: Some("edge-test".to_owned()),
        org: None,
        labels: BTreeMap::from([("zone".to_owned(), "test".to_owned())]),
        worker_bin: Some(worker_bin),
        worker_listen: "127.0.0.1:0".to_owned(),
        worker_viewer_url: None,
        rdp: true,
    }
}

fn token_for(server: &Server) -> String {
    format!("rpj1_{}_{SECRET}", server.api.ca.fingerprint())
}

/// Polls `condition` every 50 ms until it returns `Some`, or panics after [`WAIT`].
async fn wait_until<T>(what: &str, mut condition: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Returns the worker's PID from the last report, if that report shows it running.
fn running_worker_pid(server: &Server) -> Option<u32> {
    let seen = server.api.seen();
    let (_, report) = seen.reports.last()?;
    let worker = report
        .services
        .iter()
        .find(|service| service.kind == ServiceKind::Worker)?;
    (worker.run == ServiceRun::Running).then_some(worker.pid).flatten()
}

#[tokio::test(flavor = "multi_thread")]
async fn join_report_renew_then_revoke() {
    let config = ConfigDocument {
        version: 2,
        body: NodeConfig {
            report_interval_secs: 1,
            ..NodeConfig::default()
        },
    };
    // Renewal is due once less than a third of the lifetime remains: about 4 s after issue.
    let server = start_server(Duration::from_secs(6), Some(config.clone())).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let worker_bin = stand_in_worker(dir.path());
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(rdp_proxy_agent::run(
        options(&server, &data_dir, worker_bin, Some(token_for(&server))),
        shutdown.clone(),
    ));

    let pid = wait_until("a running worker", || running_worker_pid(&server)).await;
    {
        let seen = server.api.seen();
        assert_eq!(seen.joins.len(), 1);
        let join = &seen.joins[0];
        assert_eq!(join.name, "edge-test");
        assert_eq!(join.agent_version, rdp_proxy_agent::AGENT_VERSION);
        assert_eq!(join.labels.get("zone").map(String::as_str), Some("test"));
        assert!(join.capabilities.rdp);
        assert_eq!(join.capabilities.validate(), Ok(()));
        let (_, last) = seen.reports.last().expect("a report");
        assert_eq!(last.config_version, Some(2));
        assert_eq!(last.services[0].version.as_deref(), Some("0.0.1-test"));
    }
    let data = DataDir::open(&data_dir).expect("open data dir");
    let identity = data.load_identity().expect("load identity").expect("identity stored");
    let key_mode = std::fs::metadata(data.path(KEY_FILE))
        .expect("key metadata")
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    assert_eq!(data.load_worker_config().expect("load worker config"), Some(config));
    let worker_args = std::fs::read_to_string(dir.path().join("worker-args")).expect("worker recorded its args");
    let expected_args = format!(
        "worker --node-id {} --node-config {} --listen 127.0.0.1:0 parent={}",
        identity.record.node_id,
        data.path(WORKER_CONFIG_FILE).display(),
        std::process::id()
    );
    assert_eq!(worker_args.trim(), expected_args);

    let first_serial = identity.record.serial.clone();
    let renewed_serial = wait_until("a report with a renewed certificate", || {
        let seen = server.api.seen();
        let (serial, _) = seen.reports.last()?;
        (*serial != first_serial).then(|| serial.clone())
    })
    .await;
    let renewed = data.load_identity().expect("load identity").expect("identity stored");
    assert_eq!(renewed.record.serial, renewed_serial);
    assert_eq!(renewed.record.node_id, identity.record.node_id);
    assert_ne!(renewed.key_pem, identity.key_pem);
    assert!(server.api.seen().renewals >= 1);

    let revoked: Vec<String> = vec![first_serial, renewed_serial];
    server.api.seen().revoked_serials.extend(revoked);
    let outcome = tokio::time::timeout(WAIT, agent)
        .await
        .expect("agent exits")
        .expect("agent task");
    assert_eq!(outcome.expect("agent result"), Outcome::Revoked);
    assert!(!process_exists(pid), "worker {pid} still runs after revocation");
    for file in [KEY_FILE, CERT_FILE, NODE_FILE] {
        assert!(data.path(file).exists(), "{file} was deleted");
    }
}

/// Stores an identity issued by `server`'s CA directly, as if the node had joined earlier.
fn preissued_identity(server: &Server, data_dir: &Path) -> Identity {
    let key = NodeKey::generate().expect("node key");
    let csr = key.csr_pem("edge-test").expect("CSR");
    let node = NodeIdentity {
        node: NodeId::new_random(),
        owner: NodeOwner::Org(OrgId::new_random()),
    };
    let now = OffsetDateTime::now_utc();
    let certificate = server
        .api
        .ca
        .issue_node(&csr, &node, "edge-test", HOUR, now)
        .expect("issue");
    let identity = Identity {
        record: NodeRecord {
            node_id: node.node,
            owner: node.owner,
            name: "edge-test".to_owned(),
            serial: certificate.serial,
            issued_at: now,
            not_after: certificate.not_after,
        },
        key_pem: key.key_pem(),
        cert_pem: certificate.cert_pem,
        ca_pem: server.api.ca.cert_pem().to_owned(),
    };
    DataDir::open(data_dir)
        .expect("open data dir")
        .save_identity(&identity)
        .expect("save identity");
    identity
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_stops_worker() {
    let server = start_server(HOUR, None).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let identity = preissued_identity(&server, dir.path());
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(rdp_proxy_agent::run(
        options(&server, dir.path(), stand_in_worker(dir.path()), None),
        shutdown.clone(),
    ));

    let pid = wait_until("a running worker", || running_worker_pid(&server)).await;
    let worker_args = std::fs::read_to_string(dir.path().join("worker-args")).expect("worker recorded its args");
    let org = identity.record.owner.org().expect("org-owned node");
    assert!(worker_args.contains(&format!("--node-org {org}")), "{worker_args}");
    // No configuration is published, so the agent wrote the defaults for the worker to read.
    let data = DataDir::open(dir.path()).expect("open data dir");
    let defaults = data
        .load_worker_config()
        .expect("load worker config")
        .expect("defaults written");
    assert_eq!(defaults.body, NodeConfig::default());
    assert_eq!(
        server
            .api
            .seen()
            .reports
            .last()
            .map(|(_, report)| report.config_version),
        Some(None)
    );

    shutdown.cancel();
    let outcome = tokio::time::timeout(WAIT, agent)
        .await
        .expect("agent exits")
        .expect("agent task");
    assert_eq!(outcome.expect("agent result"), Outcome::Stopped);
    assert!(!process_exists(pid), "worker {pid} still runs after shutdown");
    assert_eq!(server.api.seen().joins.len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_reports_keep_worker_running() {
    let config = ConfigDocument {
        version: 1,
        body: NodeConfig {
            report_interval_secs: 1,
            ..NodeConfig::default()
        },
    };
    let server = start_server(HOUR, Some(config)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    preissued_identity(&server, dir.path());
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(rdp_proxy_agent::run(
        options(&server, dir.path(), stand_in_worker(dir.path()), None),
        shutdown.clone(),
    ));
    let pid = wait_until("a running worker", || running_worker_pid(&server)).await;

    let failures = [
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        (StatusCode::BAD_REQUEST, "invalid_report"),
    ];
    for (status, code) in failures {
        server.api.seen().report_failure = Some((status, code));
        let reports_before = server.api.seen().reports.len();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            process_exists(pid),
            "worker {pid} stopped while reports failed with {status}"
        );
        assert!(!agent.is_finished(), "agent exited while reports failed with {status}");
        server.api.seen().report_failure = None;
        wait_until("a report after the failures", || {
            (server.api.seen().reports.len() > reports_before).then_some(())
        })
        .await;
        assert_eq!(running_worker_pid(&server), Some(pid));
    }

    shutdown.cancel();
    let outcome = tokio::time::timeout(WAIT, agent)
        .await
        .expect("agent exits")
        .expect("agent task");
    assert_eq!(outcome.expect("agent result"), Outcome::Stopped);
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_certificate_fails_handshake() {
    let server = start_server(HOUR, None).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let identity = preissued_identity(&server, dir.path());
    server.revocations.insert(&identity.record.serial);

    let outcome = tokio::time::timeout(
        WAIT,
        rdp_proxy_agent::run(
            options(&server, dir.path(), stand_in_worker(dir.path()), None),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("agent exits");
    assert_eq!(outcome.expect("agent result"), Outcome::Revoked);
    assert!(server.api.seen().reports.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_join_is_not_retried() {
    let server = start_server(HOUR, None).await;
    server.api.seen().join_rejection = Some((StatusCode::CONFLICT, "join_token_used"));
    let dir = tempfile::tempdir().expect("temp dir");
    let result = tokio::time::timeout(
        WAIT,
        rdp_proxy_agent::run(
            options(
                &server,
                dir.path(),
                stand_in_worker(dir.path()),
                Some(token_for(&server)),
            ),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("agent exits");

    match result {
        Err(AgentError::JoinRejected { status, code, .. }) => {
            assert_eq!(status, StatusCode::CONFLICT);
            assert_eq!(code, "join_token_used");
        }
        other => panic!("expected a rejected join, got {other:?}"),
    }
    assert_eq!(server.api.seen().joins.len(), 1);
    assert!(!dir.path().join(NODE_FILE).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_fingerprint_fails_join() {
    let server = start_server(HOUR, None).await;
    let other_ca = ClusterCa::generate("other").expect("CA");
    let token = format!("rpj1_{}_{SECRET}", other_ca.fingerprint());
    let dir = tempfile::tempdir().expect("temp dir");
    let result = tokio::time::timeout(
        WAIT,
        rdp_proxy_agent::run(
            options(&server, dir.path(), stand_in_worker(dir.path()), Some(token)),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("agent exits");

    let error = result.expect_err("join over an unpinned server fails");
    let message = format!("{error:#}");
    assert!(message.contains("TLS handshake failed"), "{message}");
    assert!(message.contains(&other_ca.fingerprint()), "{message}");
    assert!(server.api.seen().joins.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_identity_needs_token() {
    let server = start_server(HOUR, None).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let result = rdp_proxy_agent::run(
        options(&server, dir.path(), stand_in_worker(dir.path()), None),
        CancellationToken::new(),
    )
    .await;
    let message = format!("{:#}", result.expect_err("no identity and no token"));
    assert!(message.contains("--join-token"), "{message}");

    let malformed = rdp_proxy_agent::run(
        options(
            &server,
            dir.path(),
            stand_in_worker(dir.path()),
            Some("rpj1_nothex_x".to_owned()),
        ),
        CancellationToken::new(),
    )
    .await;
    let message = format!("{:#}", malformed.expect_err("malformed token"));
    assert!(message.contains("join token is invalid"), "{message}");
}
