//! The sync server: every replica syncs here.
//!
//! # Flow
//!
//! `POST /api/v1/sync` carries one binary frame of `shared::protocol`. [`http`] checks the device
//! token ([`auth`]), then [`service::SyncService::exchange`] decodes the request, runs
//! `shared::sync::server::ServerEngine::sync`, writes the resulting effects to the [`store`] in one
//! transaction and only then answers — an acknowledged change is on disk. On start the engine is
//! rebuilt from the store.
//!
//! Next (see the open issues): PostgreSQL for scale-out, the ERPNext bridge, SSE, webhooks and
//! the hub integrations, each a module with a port trait, a real client and a double.

use std::sync::Arc;

pub mod auth;
pub mod demo;
pub mod erpnext;
pub mod events;
pub mod http;
pub mod photos;
pub mod service;
pub mod settings;
pub mod store;

pub use http::router;

/// What handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub sync: Arc<service::SyncService>,
    pub keys: Arc<auth::Keys>,
    /// The ERPNext bridge, when configured.
    pub erp: Option<Arc<ErpEdge>>,
    /// Photos and signatures uploaded by devices, when the server has a data folder.
    pub photos: Option<Arc<photos::PhotoStore>>,
}

/// What the HTTP edge needs of the ERPNext bridge.
#[derive(Debug)]
pub struct ErpEdge {
    pub bridge: Arc<erpnext::Bridge>,
    /// Signs ERPNext's webhooks; without it webhooks are refused (polling still runs).
    pub webhook_secret: Option<settings::Secret>,
}

/// Serves `router(state)` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The system clock, for the binary. Libraries take a `Clock`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl shared::clock::Clock for SystemClock {
    fn now(&self) -> shared::clock::Millis {
        // The one place the server reads the wall clock.
        #[allow(clippy::disallowed_methods)]
        let now = std::time::SystemTime::now();
        let ms = now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        shared::clock::Millis(i64::try_from(ms).unwrap_or(i64::MAX))
    }
}
