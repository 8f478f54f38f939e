//! The worker: holds one RDP connection per session, keeps decoding it while nobody watches, and
//! serves viewers over WebSocket. It trusts only attach tokens for viewers and the cluster secret
//! for commands from the control plane; it makes no other authorisation decision.

pub mod api;
mod authz;
mod config;
mod heartbeat;
mod internal;
mod metrics;
mod registry;
mod session;
mod viewer;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use rdp_proxy_coord::{Coord, TokenStore};
use rdp_proxy_core::WorkerId;
use rdp_proxy_store::Store;
use tokio_util::sync::CancellationToken;

pub use config::WorkerConfig;
use registry::Registry;

/// State shared by the worker's HTTP handlers and background tasks.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) id: WorkerId,
    pub(crate) config: Arc<WorkerConfig>,
    pub(crate) store: Store,
    pub(crate) coord: Coord,
    pub(crate) tokens: TokenStore,
    pub(crate) registry: Registry,
    pub(crate) policies: rdp_proxy_policy::PolicyCache,
    pub(crate) metrics: Arc<metrics::Metrics>,
}

/// A bound, not yet serving worker.
pub struct Worker {
    shared: Shared,
    listener: tokio::net::TcpListener,
}

impl Worker {
    /// Connects to PostgreSQL and Redis and binds the listener.
    pub async fn bind(config: WorkerConfig, store: Store, coord: Coord) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let mut config = config;
        let local = listener.local_addr()?;
        config.resolve_urls(local);
        let shared = Shared {
            id: WorkerId::new_random(),
            tokens: TokenStore::new(coord.clone()),
            policies: rdp_proxy_policy::PolicyCache::default(),
            metrics: Arc::new(metrics::Metrics::new()),
            config: Arc::new(config),
            store,
            coord,
            registry: Registry::default(),
        };
        Ok(Self { shared, listener })
    }

    pub fn id(&self) -> WorkerId {
        self.shared.id
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` is cancelled, then terminates the sessions it holds.
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let Worker { shared, listener } = self;
        tracing::info!(worker.id = %shared.id, addr = %listener.local_addr()?, "Worker started");
        let beat = tokio::spawn(heartbeat::run(shared.clone(), shutdown.clone()));
        let app = router(shared.clone());
        // Sessions end first, which closes their viewer sockets; graceful shutdown waits for
        // open connections, so it would otherwise wait for viewers that never leave.
        let terminate = tokio::spawn({
            let (shared, shutdown) = (shared.clone(), shutdown.clone());
            async move {
                shutdown.cancelled().await;
                shared.registry.terminate_all("worker shut down").await;
            }
        });
        let serve = axum::serve(listener, app).with_graceful_shutdown({
            let shutdown = shutdown.clone();
            async move { shutdown.cancelled().await }
        });
        let result = serve.await;
        let _ = terminate.await;
        beat.abort();
        if let Err(error) = shared.coord.remove_worker(shared.id).await {
            tracing::warn!(worker.id = %shared.id, error = %error, "Could not remove the worker heartbeat");
        }
        tracing::info!(worker.id = %shared.id, "Worker stopped");
        result
    }
}

fn router(shared: Shared) -> Router {
    Router::new()
        .merge(viewer::router())
        .merge(internal::router(shared.clone()))
        .with_state(shared)
}
