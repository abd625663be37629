//! The Tauri v2 shell: thin commands over `app-tauri-core`, the background sync task, events,
//! plugins and capabilities.
//!
//! # Flow
//!
//! [`run`] builds the app with [`create_app`]: it opens the [`Device`]
//! in the app's data folder (or `--data-dir DIR`), manages it as state, registers the commands of
//! [`commands`] and starts [`sync_task`]. Each command locks the device, calls the core and maps
//! its error to `shared::ipc::CommandError`; edits also wake the sync task. The sync task syncs
//! at start, every minute, soon after each edit, when the dispatcher's live stream says something
//! changed, and with backoff while the server is unreachable; it emits `sync-status` and, when
//! data arrived, `data-changed`.
//!
//! Mobile-only plugins (camera scanner, location) are registered under `cfg(mobile)`; on desktop
//! the UI falls back to a photo or typed serial/MAC, and a typed position.

pub mod commands;
pub mod sync_task;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use app_tauri_core::device::Device;
use tauri::{Builder, Manager, Runtime};

/// The app's managed state.
pub struct AppState {
    pub device: Arc<Mutex<Device>>,
    pub sync: sync_task::SyncHandle,
    /// A login link received before the UI listened (the app was opened by tapping it).
    pub pending_link: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// `--data-dir DIR` on the command line (several installs side by side: tests, a dispatcher with
/// two profiles).
fn data_dir_arg() -> Option<PathBuf> {
    arg_value("--data-dir")
}

/// `NAME VALUE` or `NAME=VALUE` on the command line.
fn arg_value(name: &str) -> Option<PathBuf> {
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        if a == name {
            return args.next().map(PathBuf::from);
        }
        if let Some(v) = a
            .to_str()
            .and_then(|s| s.strip_prefix(name))
            .and_then(|s| s.strip_prefix('='))
        {
            return Some(PathBuf::from(v));
        }
    }
    None
}

/// How the app reaches its server: a private CA bundle (`--ca-file PEM`, or `server-ca.pem` in
/// the data folder, which a device-management profile can place), and `--allow-insecure-http`
/// for development against a plain-HTTP server on another machine.
fn net_settings(dir: &std::path::Path) -> Result<app_tauri_core::device::NetSettings, String> {
    let ca = arg_value("--ca-file").or_else(|| {
        let p = dir.join("server-ca.pem");
        p.exists().then_some(p)
    });
    let ca_pem = ca
        .map(|p| {
            std::fs::read(&p).map_err(|e| format!("cannot read the CA bundle {}: {e}", p.display()))
        })
        .transpose()?;
    Ok(app_tauri_core::device::NetSettings {
        ca_pem,
        allow_plain_http: std::env::args_os().any(|a| a == "--allow-insecure-http"),
    })
}

/// A login link: the verified App Link / Universal Link (`https://server/login#token=…`, which
/// only this app can receive), or the `fsm://login?token=…` fallback.
fn is_login_link(url: &tauri::Url) -> bool {
    url.scheme() == "fsm" || (url.scheme() == "https" && url.path() == "/login")
}

/// Registers plugins, commands, state and the sync task on `builder`, and builds the app.
///
/// The device is opened here rather than in a `setup` hook so that the app is complete as soon as
/// it is built (the mock runtime of the command tests never runs the event loop that calls
/// `setup`).
pub fn create_app<R: Runtime>(
    builder: Builder<R>,
    data_dir: Option<PathBuf>,
) -> Result<tauri::App<R>, Box<dyn std::error::Error>> {
    let builder = builder.plugin(tauri_plugin_deep_link::init());
    #[cfg(mobile)]
    let builder = builder
        .plugin(tauri_plugin_barcode_scanner::init())
        .plugin(tauri_plugin_geolocation::init());
    let app = builder
        .invoke_handler(commands::handler())
        .build(tauri::generate_context!())?;
    let dir = match data_dir {
        Some(d) => d,
        None => app.path().app_local_data_dir()?,
    };
    let mut device = Device::open(&dir, Arc::new(app_tauri_core::device::SystemClock))
        .map_err(|e| format!("cannot open the local data in {}: {e}", dir.display()))?;
    device.set_net(net_settings(&dir)?);
    let device = Arc::new(Mutex::new(device));
    let sync = sync_task::start(app.handle().clone(), &device);
    // A login link opened from a text or email (`fsm://login?token=…`) goes to the login screen,
    // which fills it in: as an event while the app runs, and kept for the screen to take when
    // the link is what started the app.
    let pending_link = Arc::new(Mutex::new(None));
    {
        use tauri::Emitter;
        use tauri_plugin_deep_link::DeepLinkExt;
        let first = app
            .deep_link()
            .get_current()
            .ok()
            .flatten()
            .and_then(|urls| urls.into_iter().find(is_login_link));
        if let Some(url) = first {
            *lock_link(&pending_link) = Some(url.to_string());
        }
        let (handle, pending) = (app.handle().clone(), Arc::clone(&pending_link));
        app.deep_link().on_open_url(move |e| {
            for url in e.urls().into_iter().filter(is_login_link) {
                *lock_link(&pending) = Some(url.to_string());
                let _ = handle.emit(shared::ipc::event::LOGIN_LINK, url.to_string());
            }
        });
    }
    app.manage(AppState {
        device,
        sync,
        pending_link,
    });
    Ok(app)
}

fn lock_link(m: &Mutex<Option<String>>) -> std::sync::MutexGuard<'_, Option<String>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts the app (desktop `main`, and the mobile entry point).
#[cfg_attr(mobile, tauri::mobile_entry_point)]
pub fn run() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
    match create_app(tauri::Builder::default(), data_dir_arg()) {
        Ok(app) => app.run(|_, _| {}),
        Err(e) => {
            tracing::error!("the app could not start: {e}");
            #[allow(
                clippy::print_stderr,
                reason = "the one message a user starting it by hand sees"
            )]
            {
                eprintln!("the app could not start: {e}");
            }
            std::process::exit(1);
        }
    }
}
