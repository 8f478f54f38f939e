//! A TLS server for an axum router that passes the client's node certificate to handlers.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::ServerConfig;
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::identity::{NodeIdentity, node_certificate_facts};

/// Time allowed for a client to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time open connections get to finish after shutdown before they are aborted.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Time allowed for an HTTP/1.1 client to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed `accept`, such as when the process is out of file descriptors.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The node that authenticated a connection with its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Node and owner named by the certificate.
    pub identity: NodeIdentity,
    /// Certificate serial, lowercase hex, as listed in `Revocations`.
    pub serial: String,
    /// Expiry of the certificate. A connection may outlive it, because only the handshake checks it.
    pub not_after: OffsetDateTime,
}

/// Request extension set by [`serve`] on every request: the client certificate's identity, or
/// `None` when the client presented no certificate.
///
/// Handlers take it as an extractor. Outside [`serve`] the extractor fails with 500.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate(pub Option<PeerIdentity>);

impl<S: Send + Sync> FromRequestParts<S> for PeerCertificate {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "peer certificate is unknown: the router is not served by rdp_proxy_pki::serve",
        ))
    }
}

/// Serves `app` over TLS on `listener` until `shutdown` is cancelled.
///
/// Each connection gets [`HANDSHAKE_TIMEOUT`] for its TLS handshake. A failed handshake is
/// logged at debug level and does not stop the loop. HTTP/1.1 (with upgrades, for WebSockets)
/// and HTTP/2 are served, and every request carries a [`PeerCertificate`] and axum's
/// `ConnectInfo<SocketAddr>`. On shutdown the listener is closed, open connections finish
/// their requests for up to [`SHUTDOWN_GRACE`] and the rest are aborted. Connections upgraded
/// to another protocol run in tasks of their own and are not waited for.
///
/// Returns an error only if the listener's local address cannot be read.
pub async fn serve(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    app: Router,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(config);
    let http = Arc::new(http_builder());
    let mut connections = JoinSet::new();

    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(finished) = connections.join_next(), if !connections.is_empty() => {
                log_task_end(finished);
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) if connections.len() >= MAX_CONNECTIONS => {
                    // Dropping the stream closes it; agents retry with backoff.
                    tracing::warn!(%local, %remote, limit = MAX_CONNECTIONS, "refused a connection: too many open");
                    drop(stream);
                }
                Ok((stream, remote)) => {
                    let connection = Connection {
                        acceptor: acceptor.clone(),
                        http: http.clone(),
                        app: app.clone(),
                        shutdown: shutdown.clone(),
                        remote,
                    };
                    connections.spawn(connection.run(stream));
                }
                Err(error) => {
                    tracing::warn!(%local, %error, "accepting a TCP connection failed, retrying in 100 ms");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }

    drop(listener);
    tracing::info!(%local, open = connections.len(), "TLS server stopped accepting connections");
    let drain = async {
        while let Some(finished) = connections.join_next().await {
            log_task_end(finished);
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!(
            %local,
            aborted = connections.len(),
            "aborting connections still open {} s after shutdown",
            SHUTDOWN_GRACE.as_secs()
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Connections served at once; more are closed as soon as they are accepted, so slow or idle
/// clients cannot use up the process's file descriptors.
pub const MAX_CONNECTIONS: usize = 2048;

/// Ping interval on idle HTTP/2 connections, and how long a ping may go unanswered.
const HTTP2_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(30);

fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(HTTP2_KEEP_ALIVE))
        .keep_alive_timeout(HTTP2_KEEP_ALIVE);
    builder
}

fn log_task_end(finished: Result<(), tokio::task::JoinError>) {
    if let Err(error) = finished
        && error.is_panic()
    {
        tracing::error!(%error, "a TLS connection task panicked");
    }
}

/// One accepted TCP connection and what it needs to be served.
struct Connection {
    acceptor: TlsAcceptor,
    http: Arc<auto::Builder<TokioExecutor>>,
    app: Router,
    shutdown: CancellationToken,
    remote: SocketAddr,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        let remote = self.remote;
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(stream));
        let tls = tokio::select! {
            () = self.shutdown.cancelled() => return,
            outcome = handshake => match outcome {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%remote, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "TLS handshake timed out after {} s", HANDSHAKE_TIMEOUT.as_secs());
                    return;
                }
            },
        };

        let leaf = tls.get_ref().1.peer_certificates().and_then(|chain| chain.first());
        let peer = match leaf.map(|cert| node_certificate_facts(cert)) {
            None => None,
            Some(Ok((identity, serial, not_after))) => Some(PeerIdentity {
                identity,
                serial,
                not_after,
            }),
            Some(Err(error)) => {
                // The client verifier already requires a node identity, so this means the
                // server configuration did not come from `node_api_server_config`.
                tracing::warn!(%remote, %error, "closing a connection whose client certificate names no node");
                return;
            }
        };

        let extension = PeerCertificate(peer);
        let service = self.app.map_request(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(extension.clone());
            request.extensions_mut().insert(ConnectInfo(remote));
            request
        });
        let service = TowerToHyperService::new(service);
        let connection = self.http.serve_connection_with_upgrades(TokioIo::new(tls), service);
        tokio::pin!(connection);

        let outcome = tokio::select! {
            outcome = connection.as_mut() => outcome,
            () = self.shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(error) = outcome {
            tracing::debug!(%remote, %error, "HTTP connection ended with an error");
        }
    }
}
