//! The control plane: REST API for people and automation, authentication, the access rule,
//! session dispatch to workers, and the sweep that marks sessions of dead workers `lost`.
//! It never holds an RDP connection.

mod auth;
mod authz;
mod dispatch;
mod error;
mod extract;
mod metrics;
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
    /// How long a worker may miss heartbeats before its sessions become `lost`.
    pub lost_grace: Duration,
    pub sweep_interval: Duration,
    /// Directory with the portal and viewer pages.
    pub web_dir: PathBuf,
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
}

/// A bound, not yet serving control plane.
pub struct Control {
    state: AppState,
    listener: tokio::net::TcpListener,
}

impl Control {
    pub async fn bind(config: ControlConfig, store: Store, coord: Coord, vault: Vault) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
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
        };
        Ok(Self { state, listener })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let Control { state, listener } = self;
        tracing::info!(addr = %listener.local_addr()?, "Control plane started");
        let sweep = tokio::spawn(reaper::run(state.clone(), shutdown.clone()));
        let app = router(state);
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        sweep.abort();
        tracing::info!("Control plane stopped");
        result
    }
}

fn router(state: AppState) -> Router {
    let web = tower_http::services::ServeDir::new(&state.config.web_dir);
    Router::new()
        .merge(routes::router())
        .merge(openapi::router())
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
