//! The node API's TLS server over real loopback connections: which client certificates reach
//! handlers, which handshakes fail and with which alert, pinning, HTTP/2 and shutdown.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use rdp_proxy_core::node::NodeOwner;
use rdp_proxy_core::{NodeId, OrgId};
use rdp_proxy_pki::{
    ClusterCa, IssuedCertificate, NodeIdentity, NodeKey, PeerCertificate, Revocations, SHUTDOWN_GRACE, client_config,
    http_client_builder, node_api_server_config, pinned_client_config, serve,
};
use rustls::AlertDescription;
use rustls::pki_types::ServerName;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

const HOUR: Duration = Duration::from_secs(3600);

/// A node API server on 127.0.0.1 with a fresh CA.
struct Cluster {
    ca: ClusterCa,
    revocations: Revocations,
    address: SocketAddr,
    /// Requests that reached a handler.
    handled: Arc<AtomicUsize>,
    shutdown: CancellationToken,
    server: JoinHandle<io::Result<()>>,
}

async fn describe_peer(peer: PeerCertificate) -> String {
    match peer.0 {
        None => "anonymous".to_owned(),
        Some(peer) => format!(
            "node={} owner={} serial={}",
            peer.identity.node, peer.identity.owner, peer.serial
        ),
    }
}

async fn start() -> Cluster {
    let ca = ClusterCa::generate("test").expect("CA");
    let now = OffsetDateTime::now_utc();
    let names = ["127.0.0.1".to_owned()];
    let (server_cert, server_key) = ca.issue_server(&names, HOUR, now).expect("server cert");
    let revocations = Revocations::new();
    let config = node_api_server_config(ca.cert_pem(), &server_cert.cert_pem, &server_key, revocations.clone())
        .expect("server config");

    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    let app = Router::new()
        .route("/whoami", get(describe_peer))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "done"
            }),
        )
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                counter.fetch_add(1, Ordering::SeqCst);
                next.run(request)
            },
        ));

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(listener, config, app, shutdown.clone()));
    Cluster {
        ca,
        revocations,
        address,
        handled,
        shutdown,
        server,
    }
}

struct Node {
    identity: NodeIdentity,
    certificate: IssuedCertificate,
    key: NodeKey,
}

impl Node {
    fn issue(ca: &ClusterCa, owner: NodeOwner, validity: Duration, now: OffsetDateTime) -> Self {
        let identity = NodeIdentity {
            node: NodeId::new_random(),
            owner,
        };
        let key = NodeKey::generate().expect("node key");
        let csr = key.csr_pem("node-a").expect("CSR");
        let certificate = ca.issue_node(&csr, &identity, "node-a", validity, now).expect("issue");
        Self {
            identity,
            certificate,
            key,
        }
    }

    fn client_config(&self, ca: &ClusterCa) -> rustls::ClientConfig {
        let key_pem = self.key.key_pem();
        let identity = Some((self.certificate.cert_pem.as_str(), key_pem.as_str()));
        client_config(ca.cert_pem(), identity).expect("client config")
    }
}

/// Sends `GET path` with reqwest, bypassing any system proxy so traffic stays on loopback.
async fn get_text(config: rustls::ClientConfig, address: SocketAddr, path: &str) -> Result<String, reqwest::Error> {
    let client = http_client_builder(config).no_proxy().build()?;
    let response = client.get(format!("https://{address}{path}")).send().await?;
    response.error_for_status()?.text().await
}

/// Runs one HTTP/1.1 request over a raw TLS connection and returns the response bytes, so a
/// failure keeps the rustls error that caused it.
async fn raw_request(config: rustls::ClientConfig, address: SocketAddr, server_name: &str) -> io::Result<String> {
    let name = ServerName::try_from(server_name.to_owned()).expect("server name");
    let tcp = TcpStream::connect(address).await?;
    let mut tls = TlsConnector::from(Arc::new(config)).connect(name, tcp).await?;
    tls.write_all(b"GET /whoami HTTP/1.1\r\nHost: node-api\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

fn rustls_error(error: &io::Error) -> Option<&rustls::Error> {
    error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

fn received_alert(error: &io::Error) -> Option<AlertDescription> {
    match rustls_error(error) {
        Some(rustls::Error::AlertReceived(alert)) => Some(*alert),
        _ => None,
    }
}

#[tokio::test]
async fn node_certificate_identity_reaches_handler() {
    let cluster = start().await;
    let org = OrgId::new_random();
    let node = Node::issue(&cluster.ca, NodeOwner::Org(org), HOUR, OffsetDateTime::now_utc());

    let body = get_text(node.client_config(&cluster.ca), cluster.address, "/whoami")
        .await
        .expect("request with node certificate");
    let expected = format!(
        "node={} owner=org:{org} serial={}",
        node.identity.node, node.certificate.serial
    );
    assert_eq!(body, expected);
}

#[tokio::test]
async fn no_client_certificate_reaches_handler_as_none() {
    let cluster = start().await;
    let config = client_config(cluster.ca.cert_pem(), None).expect("client config");
    let body = get_text(config, cluster.address, "/whoami")
        .await
        .expect("anonymous request");
    assert_eq!(body, "anonymous");
}

#[tokio::test]
async fn foreign_ca_certificate_fails_handshake() {
    let cluster = start().await;
    let foreign = ClusterCa::generate("foreign").expect("CA");
    let node = Node::issue(&foreign, NodeOwner::Platform, HOUR, OffsetDateTime::now_utc());
    let key_pem = node.key.key_pem();
    let identity = Some((node.certificate.cert_pem.as_str(), key_pem.as_str()));
    // The client trusts the real server, so only its own certificate can fail.
    let config = client_config(cluster.ca.cert_pem(), identity).expect("client config");

    let error = raw_request(config, cluster.address, "127.0.0.1")
        .await
        .expect_err("handshake rejected");
    assert_eq!(received_alert(&error), Some(AlertDescription::UnknownCA), "{error}");
    assert_eq!(cluster.handled.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn revoked_serial_fails_handshake() {
    let cluster = start().await;
    let node = Node::issue(&cluster.ca, NodeOwner::Platform, HOUR, OffsetDateTime::now_utc());
    // One configuration for both attempts, so the second would resume the first session if
    // the server allowed resumption.
    let config = node.client_config(&cluster.ca);

    let before = raw_request(config.clone(), cluster.address, "127.0.0.1")
        .await
        .expect("before");
    assert!(before.starts_with("HTTP/1.1 200"), "{before}");

    assert!(cluster.revocations.insert(&node.certificate.serial));
    let error = raw_request(config, cluster.address, "127.0.0.1")
        .await
        .expect_err("revoked");
    assert_eq!(
        received_alert(&error),
        Some(AlertDescription::CertificateRevoked),
        "{error}"
    );
    assert_eq!(cluster.handled.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn expired_certificate_fails_handshake() {
    let cluster = start().await;
    let two_days_ago = OffsetDateTime::now_utc() - time::Duration::days(2);
    let node = Node::issue(&cluster.ca, NodeOwner::Platform, HOUR, two_days_ago);

    let error = raw_request(node.client_config(&cluster.ca), cluster.address, "127.0.0.1")
        .await
        .expect_err("expired");
    assert_eq!(
        received_alert(&error),
        Some(AlertDescription::CertificateExpired),
        "{error}"
    );
    assert_eq!(cluster.handled.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn control_plane_certificate_fails_handshake() {
    let cluster = start().await;
    let (issued, key_pem) = cluster
        .ca
        .issue_client("control-1", HOUR, OffsetDateTime::now_utc())
        .expect("client cert");
    let identity = Some((issued.cert_pem.as_str(), key_pem.as_str()));
    let config = client_config(cluster.ca.cert_pem(), identity).expect("client config");

    let error = raw_request(config, cluster.address, "127.0.0.1")
        .await
        .expect_err("handshake rejected");
    assert_eq!(received_alert(&error), Some(AlertDescription::AccessDenied), "{error}");
}

#[tokio::test]
async fn pinned_client_accepts_only_pinned_ca() {
    let cluster = start().await;
    let pin = cluster.ca.fingerprint();

    let config = pinned_client_config(&pin).expect("pinned config");
    let body = get_text(config, cluster.address, "/whoami").await.expect("right pin");
    assert_eq!(body, "anonymous");

    let spelled = pin
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).expect("hex is ASCII"))
        .collect::<Vec<_>>()
        .join(":");
    let config = pinned_client_config(&spelled).expect("pinned config");
    let body = get_text(config, cluster.address, "/whoami")
        .await
        .expect("pin with colons");
    assert_eq!(body, "anonymous");

    let other = ClusterCa::generate("other").expect("CA");
    let config = pinned_client_config(&other.fingerprint()).expect("pinned config");
    let error = raw_request(config.clone(), cluster.address, "127.0.0.1")
        .await
        .expect_err("wrong pin");
    let expected = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
    assert_eq!(rustls_error(&error), Some(&expected), "{error}");
    assert!(get_text(config, cluster.address, "/whoami").await.is_err());
}

#[tokio::test]
async fn pinned_client_checks_server_name() {
    let cluster = start().await;
    let config = pinned_client_config(&cluster.ca.fingerprint()).expect("pinned config");
    // Connects to 127.0.0.1 but expects a name the server certificate does not carry.
    let error = raw_request(config, cluster.address, "control.invalid")
        .await
        .expect_err("wrong name");
    let name_error = matches!(
        rustls_error(&error),
        Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. }
        ))
    );
    assert!(name_error, "{error}");
}

#[tokio::test]
async fn http2_request_carries_identity() {
    let cluster = start().await;
    let node = Node::issue(&cluster.ca, NodeOwner::Platform, HOUR, OffsetDateTime::now_utc());
    let mut config = node.client_config(&cluster.ca);
    config.alpn_protocols = vec![b"h2".to_vec()];

    let tcp = TcpStream::connect(cluster.address).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

    let io = hyper_util::rt::TokioIo::new(tls);
    let executor = hyper_util::rt::TokioExecutor::new();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(executor, io)
        .await
        .expect("h2 handshake");
    tokio::spawn(connection);
    let request = hyper::Request::get(format!("https://{}/whoami", cluster.address))
        .body(Body::empty())
        .expect("request");
    let response = sender.send_request(request).await.expect("h2 response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    let body = axum::body::to_bytes(Body::new(response.into_body()), 4096)
        .await
        .expect("body");
    let expected = format!(
        "node={} owner=platform serial={}",
        node.identity.node, node.certificate.serial
    );
    assert_eq!(String::from_utf8_lossy(&body), expected);
}

#[tokio::test]
async fn failed_handshakes_keep_server_running() {
    let cluster = start().await;

    let mut garbage = TcpStream::connect(cluster.address).await.expect("connect");
    garbage.write_all(b"this is not TLS\r\n\r\n").await.expect("write");
    let mut rest = Vec::new();
    // The server drops the connection; a reset is as good as an orderly close here.
    let _ = garbage.read_to_end(&mut rest).await;

    // A silent connection waits out its handshake timeout without blocking others.
    let _silent = TcpStream::connect(cluster.address).await.expect("connect");

    let config = client_config(cluster.ca.cert_pem(), None).expect("client config");
    let body = get_text(config, cluster.address, "/whoami")
        .await
        .expect("request after garbage");
    assert_eq!(body, "anonymous");
}

#[tokio::test]
async fn shutdown_drains_open_requests() {
    let cluster = start().await;
    let config = client_config(cluster.ca.cert_pem(), None).expect("client config");
    let slow = tokio::spawn(get_text(config, cluster.address, "/slow"));
    let started = async {
        while cluster.handled.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), started)
        .await
        .expect("slow request started");

    cluster.shutdown.cancel();
    let body = slow.await.expect("task").expect("in-flight request");
    assert_eq!(body, "done");

    let limit = SHUTDOWN_GRACE + Duration::from_secs(1);
    let stopped = tokio::time::timeout(limit, cluster.server).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
    assert!(TcpStream::connect(cluster.address).await.is_err());
}
