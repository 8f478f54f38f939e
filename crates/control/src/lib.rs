//! The control plane: REST API for people and automation, authentication, the access rule,
//! session dispatch to workers, and the sweep that marks sessions of dead workers `lost`.
//! It never holds an RDP connection.

mod auth;
mod authz;
mod dispatch;
mod error;
mod extract;
mod metrics;
mod nodes;
mod openapi;
mod reaper;
mod routes;
pub mod text;
mod vault;
mod views;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use rdp_proxy_coord::{Coord, TokenStore};
use rdp_proxy_store::Store;
use tokio_util::sync::CancellationToken;

pub use auth::hash_password;
pub use error::ApiError;
pub use vault::{Vault, VaultError};

#[derive(Clone)]
pub struct ControlConfig {
    pub listen: SocketAddr,
    /// Ed25519 key that signs access tokens.
    pub signing_key: rdp_proxy_secrets::SigningKey,
    /// Keys whose tokens are accepted: the signing key's, and earlier ones during a rotation.
    pub verifying_keys: rdp_proxy_secrets::VerifyingKeys,
    /// Lifetime of an access token; at most 15 minutes.
    pub access_token_ttl: Duration,
    /// Shared secret presented to workers' internal API.
    pub cluster_secret: String,
    /// Bearer token of the operator's cluster API (`/cluster/v1`); `None` turns that API off.
    /// Workers never get it, unlike the cluster secret.
    pub operator_token: Option<String>,
    /// How long a worker may miss heartbeats before its sessions become `lost`.
    pub lost_grace: Duration,
    pub sweep_interval: Duration,
    /// Directory with the portal and viewer pages.
    pub web_dir: PathBuf,
    /// Address of the node API (mutual TLS) that node agents join and report to; `None`
    /// serves no node API (workers started without an agent still work).
    pub node_listen: Option<SocketAddr>,
    /// DNS names or IP addresses agents use to reach the node API; its certificate names them.
    pub node_api_names: Vec<String>,
    /// Lifetime of node certificates.
    pub node_cert_validity: Duration,
    /// Place sessions on workers that no node agent vouches for (started with `rdp-proxy
    /// worker` alone). Off, a heartbeat counts only when its node's agent reports a worker at
    /// the same address over mutual TLS.
    pub allow_unmanaged_workers: bool,
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) config: Arc<ControlConfig>,
    pub(crate) store: Store,
    pub(crate) coord: Coord,
    pub(crate) tokens: TokenStore,
    pub(crate) http: reqwest::Client,
    pub(crate) vault: Vault,
    pub(crate) policies: rdp_proxy_policy::PolicyCache,
    pub(crate) metrics: Arc<metrics::Metrics>,
    pub(crate) authority: Arc<nodes::Authority>,
}

/// A bound, not yet serving control plane.
pub struct Control {
    state: AppState,
    listener: tokio::net::TcpListener,
    node_api: Option<NodeApi>,
}

/// The node API's listener and TLS state, and the names its certificate is issued for.
struct NodeApi {
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    certificate: Arc<rdp_proxy_pki::ServerCertificate>,
    names: Vec<String>,
}

/// Lifetime of the node API's own certificate; it is issued again when a third remains.
const NODE_API_CERT_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("could not bind the listener")]
    Listen(#[from] std::io::Error),
    #[error(transparent)]
    Authority(#[from] nodes::AuthorityError),
}

impl Control {
    pub async fn bind(config: ControlConfig, store: Store, coord: Coord, vault: Vault) -> Result<Self, BindError> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let authority = nodes::Authority::load(&store, &vault, config.node_cert_validity).await?;
        let node_api = match config.node_listen {
            Some(addr) => {
                let node_listener = tokio::net::TcpListener::bind(addr).await?;
                let mut names = config.node_api_names.clone();
                if names.is_empty() {
                    names.push(node_listener.local_addr()?.ip().to_string());
                }
                let (server, key) = authority
                    .ca
                    .issue_server(&names, NODE_API_CERT_VALIDITY, time::OffsetDateTime::now_utc())
                    .map_err(nodes::AuthorityError::from)?;
                let certificate = Arc::new(
                    rdp_proxy_pki::ServerCertificate::new(authority.ca.cert_pem(), &server.cert_pem, &key)
                        .map_err(nodes::AuthorityError::from)?,
                );
                let tls = rdp_proxy_pki::node_api_server_config_with(
                    authority.ca.cert_pem(),
                    certificate.clone(),
                    authority.revocations.clone(),
                )
                .map_err(nodes::AuthorityError::from)?;
                Some(NodeApi {
                    listener: node_listener,
                    tls,
                    certificate,
                    names,
                })
            }
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(std::io::Error::other)?;
        let state = AppState {
            config: Arc::new(config),
            tokens: TokenStore::new(coord.clone()),
            store,
            coord,
            http,
            vault,
            policies: rdp_proxy_policy::PolicyCache::default(),
            metrics: Arc::new(metrics::Metrics::new()),
            authority,
        };
        Ok(Self {
            state,
            listener,
            node_api,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Address of the node API, when it is served.
    pub fn node_api_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.node_api.as_ref().map(|api| api.listener.local_addr())
    }

    /// SHA-256 of the cluster CA certificate, which join tokens carry.
    pub fn ca_fingerprint(&self) -> &str {
        &self.state.authority.fingerprint
    }

    /// Creates a single-use join token for a platform node, valid for `ttl`; for the embedded
    /// `dev` setup, which joins its own agent.
    pub async fn platform_join_token(
        &self,
        ttl: Duration,
        created_by: &str,
    ) -> Result<String, rdp_proxy_store::StoreError> {
        let request = nodes::TokenRequest {
            owner: rdp_proxy_core::node::NodeOwner::Platform,
            ttl,
            labels: std::collections::BTreeMap::new(),
            services: vec![rdp_proxy_core::node::ServiceKind::Worker],
            created_by: created_by.to_owned(),
        };
        let (token, _) = nodes::create_join_token(&self.state.store, &self.state.authority, request).await?;
        Ok(token)
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let Control {
            state,
            listener,
            node_api,
        } = self;
        tracing::info!(addr = %listener.local_addr()?, "Control plane started");
        let sweep = tokio::spawn(reaper::run(state.clone(), shutdown.clone()));
        let revocations = tokio::spawn(refresh_revocations(state.clone(), shutdown.clone()));
        let node_server = node_api.map(|api| {
            let NodeApi {
                listener: node_listener,
                tls,
                certificate,
                names,
            } = api;
            tokio::spawn(renew_node_api_certificate(
                state.clone(),
                certificate,
                names,
                shutdown.clone(),
            ));
            let app = nodes::api::router().with_state(state.clone());
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                if let Ok(addr) = node_listener.local_addr() {
                    tracing::info!(addr = %addr, "Node API started");
                }
                if let Err(error) = rdp_proxy_pki::serve(node_listener, tls, app, shutdown).await {
                    tracing::error!(error = %error, "Node API stopped");
                }
            })
        });
        let app = router(state);
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        sweep.abort();
        revocations.abort();
        if let Some(server) = node_server {
            let _ = server.await;
        }
        tracing::info!("Control plane stopped");
        result
    }
}

/// Issues the node API's certificate again when a third of its lifetime remains, so agents
/// never meet an expired server certificate on a control plane that runs for months.
async fn renew_node_api_certificate(
    state: AppState,
    certificate: Arc<rdp_proxy_pki::ServerCertificate>,
    names: Vec<String>,
    shutdown: CancellationToken,
) {
    let renew_every = NODE_API_CERT_VALIDITY * 2 / 3;
    let mut wait = renew_every;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let issued = state
            .authority
            .ca
            .issue_server(&names, NODE_API_CERT_VALIDITY, time::OffsetDateTime::now_utc());
        wait = match issued.and_then(|(server, key)| certificate.replace(&server.cert_pem, &key)) {
            Ok(()) => {
                tracing::info!("Node API certificate renewed");
                renew_every
            }
            Err(error) => {
                tracing::error!(error = %error, "Could not renew the node API certificate; retrying in an hour");
                Duration::from_secs(3600)
            }
        };
    }
}

/// Reloads revoked certificate serials, so a revocation made through another control-plane
/// instance is refused here too within two seconds.
async fn refresh_revocations(state: AppState, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match state.store.revoked_serials().await {
            Ok(serials) => state.authority.revocations.replace_all(serials),
            Err(error) => tracing::warn!(error = %error, "Could not reload revoked certificates"),
        }
    }
}

fn router(state: AppState) -> Router {
    let web = tower_http::services::ServeDir::new(&state.config.web_dir);
    Router::new()
        .merge(routes::router())
        .merge(openapi::router())
        .merge(nodes::cluster::router())
        .route("/metrics", axum::routing::get(metrics::serve))
        .with_state(state)
        .fallback_service(web)
        .layer(axum::middleware::from_fn(hide_non_page_files))
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(request_span))
}

/// Every request's span has `org.id`, filled in once the caller is authenticated.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), org.id = tracing::field::Empty)
}

/// Keeps the page tests and notes in the web directory from being served.
async fn hide_non_page_files(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path();
    if path.starts_with("/test/") || path.ends_with(".md") {
        return ApiError::not_found("page").into_response();
    }
    next.run(request).await
}
