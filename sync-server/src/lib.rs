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

pub mod accounts;
pub mod audit;
pub mod auth;
pub mod demo;
pub mod doubles;
pub mod erpnext;
pub mod events;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod photos;
pub mod revocation;
pub mod service;
pub mod settings;
pub mod store;
pub mod tls;

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
    /// Where login links point, and which apps may open them.
    pub links: Arc<LinkSettings>,
    /// The webhook inbox, SMS conversations and payments, when the server has a data folder.
    pub hub: Option<Arc<hub::Hub>>,
}

/// Login links as App Links (Android) and Universal Links (iOS): `https://{public_url}/login#
/// token=…` opens only the app whose identity the server vouches for in its association files,
/// so another app claiming the `fsm://` scheme cannot catch a link. Without `public_url`, links
/// use the `fsm://` scheme.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkSettings {
    pub public_url: Option<String>,
    pub android_package: Option<String>,
    /// SHA-256 fingerprints of the Android app's signing certificates (`AA:BB:…`).
    pub android_cert_sha256: Vec<String>,
    /// The iOS apps (`TEAMID.bundle.id`).
    pub apple_app_ids: Vec<String>,
}

impl LinkSettings {
    /// The link that logs a technician in with `token`.
    pub fn login_link(&self, token: &str) -> String {
        match &self.public_url {
            // In the fragment: never sent to a server, never in an access log.
            Some(base) => format!("{}/login#token={token}", base.trim_end_matches('/')),
            None => format!("fsm://login?token={token}"),
        }
    }
}

/// What the HTTP edge needs of the ERPNext bridge.
#[derive(Debug)]
pub struct ErpEdge {
    pub bridge: Arc<erpnext::Bridge>,
    /// Signs ERPNext's webhooks; without it webhooks are refused (polling still runs).
    pub webhook_secret: Option<settings::Secret>,
}

/// Connection limits of the HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Connections served at once; the next ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// A client must send its request headers within this time (also while a kept-alive
    /// connection waits for its next request): slow or silent clients are dropped.
    pub header_read_timeout: std::time::Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_read_timeout: std::time::Duration::from_secs(15),
        }
    }
}

/// Serves `router(state)` on `listener` until `shutdown` resolves, with the default limits.
pub async fn serve<L>(
    listener: L,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
{
    // After a storage failure (the database restarted), the service answers 503 and rebuilds
    // itself from the store as soon as it can be reached again.
    let recovering =
        tokio::spawn(Arc::clone(&state.sync).keep_recovering(std::time::Duration::from_secs(2)));
    let served = serve_with(listener, router(state), ServeLimits::default(), shutdown).await;
    recovering.abort();
    served
}

/// Serves `app` on `listener` (plain TCP, or [`tls::TlsListener`]) until `shutdown` resolves:
/// HTTP/1.1 with a header-read deadline and a cap on connections. On shutdown, connections
/// finish their requests (for up to 30 s).
pub async fn serve_with<L>(
    mut listener: L,
    app: axum::Router,
    limits: ServeLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = Box::pin(shutdown);
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (io, _) = tokio::select! {
            c = listener.accept() => c,
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(io), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::trace!("connection ended: {e}");
                    }
                }
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    let _ = stop_tx.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), slots.acquire_many(all)).await;
    Ok(())
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
