//! The worker: holds one RDP connection per session, keeps decoding it while nobody watches, and
//! serves viewers over WebSocket. It trusts only attach tokens for viewers and the cluster secret
//! for commands from the control plane; it makes no other authorisation decision.

pub mod api;
mod authz;
mod config;
mod heartbeat;
mod internal;
mod load;
mod metrics;
mod registry;
mod session;
mod settings;
mod viewer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

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
    /// Fencing number of this worker's registration in PostgreSQL; every session write carries
    /// it, so a worker declared lost cannot overwrite what happened meanwhile.
    fence: Arc<AtomicI64>,
    pub(crate) settings: Arc<settings::Live>,
    pub(crate) traffic: load::Traffic,
    /// Set once the supervising process is gone; see [`WorkerConfig::parent`].
    pub(crate) orphaned: Arc<std::sync::atomic::AtomicBool>,
}

impl Shared {
    pub(crate) fn fence(&self) -> i64 {
        self.fence.load(Ordering::SeqCst)
    }

    pub(crate) fn set_fence(&self, fence: i64) {
        self.fence.store(fence, Ordering::SeqCst);
    }

    /// Records a session change fenced to this worker's registration.
    pub(crate) async fn record(
        &self,
        org: rdp_proxy_core::OrgId,
        id: rdp_proxy_core::SessionId,
        change: rdp_proxy_store::Transition,
    ) -> Result<rdp_proxy_store::SessionRecord, rdp_proxy_store::StoreError> {
        self.store
            .transition(org, id, change.held_by(self.id, self.fence()))
            .await
    }
}

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("could not bind the listener")]
    Listen(#[from] std::io::Error),
    #[error("could not register the worker in PostgreSQL")]
    Register(#[from] rdp_proxy_store::StoreError),
}

/// A bound, not yet serving worker.
pub struct Worker {
    shared: Shared,
    listener: tokio::net::TcpListener,
}

impl Worker {
    /// Binds the listener and registers this worker (and its fencing number) in PostgreSQL.
    pub async fn bind(config: WorkerConfig, store: Store, coord: Coord) -> Result<Self, BindError> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let mut config = config;
        let local = listener.local_addr()?;
        config.resolve_urls(local);
        let id = WorkerId::new_random();
        let fence = store.register_worker(id, config.node).await?;
        let settings = Arc::new(settings::Live::new(&config));
        let shared = Shared {
            id,
            fence: Arc::new(AtomicI64::new(fence)),
            settings,
            traffic: load::Traffic::default(),
            orphaned: Arc::default(),
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
        if let Err(error) = shared.store.end_worker(shared.id, false, "worker shut down").await {
            tracing::warn!(worker.id = %shared.id, error = %error, "Could not record the worker's shutdown");
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
