//! The background sync: one thread that syncs the device when woken or when its timer runs out,
//! and, for office roles, one thread that listens to the server's live stream (SSE) and wakes it
//! at once when something changed.
//!
//! When it syncs: at start; every minute; 1.5 s after an edit (edits in a burst share one sync);
//! at once when asked (`sync_now`) or when the live stream announces a change; and while the
//! server is unreachable, with a backoff from 5 s to a minute with jitter (so a fleet coming
//! back after an outage does not reconnect in lockstep), so coming back into coverage is
//! noticed within that time. Each sync emits `sync-status`; one that brought data also emits
//! `data-changed`.
//!
//! The live-stream thread sleeps while no office session is open: a login or logout wakes it
//! ([`SyncHandle::session_changed`]), never a timer.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app_tauri_core::TransportError;
use app_tauri_core::device::{self, Device, DeviceError};
use backon::BackoffBuilder;
use shared::ipc::event;
use tauri::{AppHandle, Emitter, Runtime};

const PERIOD: Duration = Duration::from_secs(60);
const DEBOUNCE: Duration = Duration::from_millis(1_500);
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
const BACKOFF_MIN: Duration = Duration::from_secs(5);

enum Wake {
    /// Something changed locally: sync shortly.
    Soon,
    /// Sync now; tell the sender when done.
    Now(Option<Sender<()>>),
}

/// Wakes the sync and live-stream threads.
#[derive(Clone)]
pub struct SyncHandle {
    tx: Sender<Wake>,
    /// Tells the live-stream thread the session changed (login, logout).
    live: Sender<()>,
}

impl std::fmt::Debug for SyncHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncHandle")
    }
}

impl SyncHandle {
    /// A local edit happened.
    pub fn poke(&self) {
        let _ = self.tx.send(Wake::Soon);
    }

    /// Someone logged in or out: sync shortly, and follow (or stop following) the live stream.
    pub fn session_changed(&self) {
        self.poke();
        let _ = self.live.send(());
    }

    /// Syncs now and waits for the outcome (at most the sync's own timeout and a little).
    pub async fn sync_and_wait(&self) {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Wake::Now(Some(tx))).is_ok() {
            let _ = tauri::async_runtime::spawn_blocking(move || {
                rx.recv_timeout(SYNC_TIMEOUT + Duration::from_secs(5))
            })
            .await;
        }
    }
}

fn lock(d: &Mutex<Device>) -> std::sync::MutexGuard<'_, Device> {
    d.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts the sync and live-stream threads.
pub fn start<R: Runtime>(app: AppHandle<R>, device: &Arc<Mutex<Device>>) -> SyncHandle {
    let (tx, rx) = mpsc::channel::<Wake>();
    let (live, live_rx) = mpsc::channel::<()>();
    let handle = SyncHandle { tx, live };
    {
        let device = Arc::clone(device);
        std::thread::Builder::new()
            .name("sync".into())
            .spawn(move || {
                let mut backoff: Option<backon::ExponentialBackoff> = None;
                let mut waiters: Vec<Sender<()>> = Vec::new();
                loop {
                    let wait = if sync_once(&app, &device) {
                        backoff = None;
                        PERIOD
                    } else {
                        backoff
                            .get_or_insert_with(unreachable_backoff)
                            .next()
                            .unwrap_or(PERIOD)
                    };
                    for w in waiters.drain(..) {
                        let _ = w.send(());
                    }
                    match rx.recv_timeout(wait) {
                        Ok(Wake::Now(w)) => waiters.extend(w),
                        Ok(Wake::Soon) => {
                            // Let a burst of edits settle, then take every wake-up queued meanwhile.
                            std::thread::sleep(DEBOUNCE);
                            while let Ok(w) = rx.try_recv() {
                                if let Wake::Now(Some(w)) = w {
                                    waiters.push(w);
                                }
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })
            .expect("the OS refused to start the sync thread");
    }
    {
        let (device, handle) = (Arc::clone(device), handle.clone());
        std::thread::Builder::new()
            .name("live".into())
            .spawn(move || live_stream(&device, &handle, &live_rx))
            .expect("the OS refused to start the live-stream thread");
    }
    handle
}

/// Retries while the server is unreachable: 5 s doubling to a minute, each with up to as much
/// again of random jitter, without end.
fn unreachable_backoff() -> backon::ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(BACKOFF_MIN)
        .with_max_delay(PERIOD)
        .with_jitter()
        .without_max_times()
        .build()
}

/// One sync; `false` when the server was unreachable (retry with a backoff).
fn sync_once<R: Runtime>(app: &AppHandle<R>, device: &Arc<Mutex<Device>>) -> bool {
    let status = {
        let mut d = lock(device);
        if d.credentials().is_none() {
            return true;
        }
        // The status bar shows the sync under way at once, not after the first exchange.
        d.begin_sync();
        d.status()
    };
    if let Ok(s) = status {
        let _ = app.emit(event::SYNC_STATUS, s);
    }
    let result = device::sync_over_http(device, SYNC_TIMEOUT);
    let reached = match &result {
        Ok(r) => {
            if r.snapshots + r.changes + r.evicted + r.rejected > 0 {
                let _ = app.emit(event::DATA_CHANGED, ());
            }
            true
        }
        Err(DeviceError::Transport(TransportError::Unreachable(_))) => false,
        Err(e) => {
            tracing::warn!(error = %e, "sync failed");
            true
        }
    };
    if let Ok(s) = lock(device).status() {
        let _ = app.emit(event::SYNC_STATUS, s);
    }
    reached
}

/// Office roles: listen to `GET /api/v1/events` and wake the sync on every event. A stream that
/// drops resumes where it stopped (`Last-Event-ID`), after a backoff with jitter; another login
/// starts afresh. With no office session the thread sleeps until the session changes.
fn live_stream(device: &Arc<Mutex<Device>>, handle: &SyncHandle, session: &mpsc::Receiver<()>) {
    let mut live = app_tauri_core::live::LiveStream::default();
    let mut following: Option<(String, String)> = None;
    let mut backoff: Option<backon::ExponentialBackoff> = None;
    loop {
        let creds = lock(device).credentials().cloned();
        let Some(creds) = creds.filter(|c| c.role.is_office()) else {
            // Technicians, and nobody logged in: nothing to follow until the session changes.
            backoff = None;
            if session.recv().is_err() {
                return;
            }
            while session.try_recv().is_ok() {}
            continue;
        };
        let account = (creds.server.clone(), creds.device.to_string());
        if following.as_ref() != Some(&account) {
            live = app_tauri_core::live::LiveStream::default();
            following = Some(account);
        }
        let net = lock(device).net().clone();
        let opened = Instant::now();
        // The stream stays open (keep-alives arrive every 15 s): no deadline.
        let followed = app_tauri_core::http_client(&net, &creds.server, None)
            .map_err(|e| e.to_string())
            .and_then(|http| {
                live.follow(&http, &creds.server, &creds.token, |_| {
                    let _ = handle.tx.send(Wake::Now(None));
                    // A new login (or logout) restarts the stream with the right token.
                    if lock(device).credentials().map(|c| &c.token) == Some(&creds.token) {
                        app_tauri_core::live::Flow::Continue
                    } else {
                        app_tauri_core::live::Flow::Stop
                    }
                })
                .map_err(|e| e.to_string())
            });
        if let Err(e) = &followed {
            tracing::debug!(error = %e, "live stream ended");
        }
        // A stream that held for a while starts the backoff afresh.
        if opened.elapsed() > PERIOD {
            backoff = None;
        }
        let wait = backoff
            .get_or_insert_with(unreachable_backoff)
            .next()
            .unwrap_or(PERIOD);
        // A login or logout meanwhile acts at once.
        match session.recv_timeout(wait) {
            Ok(()) => while session.try_recv().is_ok() {},
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
