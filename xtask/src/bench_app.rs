//! `cargo xtask bench app`: the real app (release build) in WebKitGTK under Xvfb, driven through
//! tauri-driver, against a sync server holding a technician with 300 jobs in the list's window.
//!
//! * `app_cold_start_ms` — from asking for a new app process to the technician's list showing all
//!   300 jobs (the device already holds them; WebDriver session set-up is counted too, so this is
//!   an upper bound). Median of 5 starts.
//! * `job_open_ms` — a click on a job to its detail rendered with its data, measured in the page
//!   (DOM mutation, then the next frame). Median of 15.
//! * `search_ui_ms` — typing a serial prefix in the equipment search to the matching results
//!   rendered, searching everything on the device. Median of 12 prefixes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use shared::clock::Clock;
use shared::ids::{DeviceId, DocId, Role};
use sync_server::auth::Keys;
use sync_server::service::SyncService;
use sync_server::store::SqliteStore;
use sync_server::{AppState, SystemClock, demo};
use tests::app_driver::{self, App, Stage};
use tests::harness::server_author;

use crate::bench::{ensure_release, line};

const SECRET: &[u8] = b"bench app secret, thirty-two bytes or more";
const JOBS: usize = 300;

fn spec() -> demo::Spec {
    demo::Spec {
        technicians: 6,
        jobs_per_technician: JOBS,
        locations: 2_000,
        subscribers_per_location: 1,
        equipment_per_location: 3,
        days_back: 0,
        // The technician's list shows 14 days from today.
        days_ahead: 13,
    }
}

/// Seeds and serves in this process, on its own runtime thread; returns the URL and a
/// technician's session token.
fn serve(dir: &std::path::Path) -> Result<(String, String)> {
    let store = Box::new(SqliteStore::open(&dir.join("sync.sqlite3"), false)?);
    let service = Arc::new(SyncService::open(
        shared::sync::server::ServerConfig::new(server_author()),
        store,
        Box::new(SystemClock),
    )?);
    let data = demo::generate(7, spec(), SystemClock.now().date());
    service.seed(&data.entities, SystemClock.now())?;
    let keys = Arc::new(Keys::from_secret(SECRET));
    let token = keys.issue(
        DeviceId(DocId::from_u128(0xbe_0001)),
        Role::Technician,
        Some(data.technicians[0]),
        SystemClock.now().0 / 1000,
        86_400,
    )?;
    let state = AppState {
        sync: service,
        keys,
        erp: None,
        photos: None,
        links: Default::default(),
        hub: None,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("the server runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a loopback port");
            let _ = tx.send(listener.local_addr().map(|a| a.port()));
            let _ = sync_server::serve(listener, state, std::future::pending()).await;
        });
    });
    let port = rx.recv().context("the server thread stopped")??;
    Ok((format!("http://127.0.0.1:{port}"), token))
}

pub(crate) fn run() -> Result<()> {
    if ensure_release(&["bench", "app"])? {
        return Ok(());
    }
    crate::ui::build(true)?;
    let (app_bin, _) = app_driver::build_binaries(true)?;
    let dir = crate::bench::disk_dir()?;
    eprintln!("bench app: seeding the server ({JOBS} jobs for the technician)…");
    let (url, token) = serve(dir.path())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(measure(&app_bin, &dir.path().join("device"), &url, &token))
}

fn p95(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    crate::bench::percentile(&xs, 0.95)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

async fn job_count(app: &App) -> Result<usize> {
    Ok(app
        .js(
            "return document.querySelectorAll('#job-list button.job').length",
            vec![],
        )
        .await?
        .as_u64()
        .unwrap_or(0) as usize)
}

/// Polls tightly until the list shows all the jobs.
async fn until_listed(app: &App) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if job_count(app).await.unwrap_or(0) >= JOBS {
            return Ok(());
        }
        if Instant::now() > until {
            bail!(
                "the list shows {} of {JOBS} jobs after 60 s",
                job_count(app).await?
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

const OPEN_JOB: &str = r"
const [id, done] = [arguments[0], arguments[arguments.length - 1]];
const ready = () => { const d = document.querySelector('#job-detail'); return !!d && d.dataset.job === id; };
const obs = new MutationObserver(() => {
  if (ready()) { obs.disconnect(); requestAnimationFrame(() => done(performance.now() - t0)); }
});
obs.observe(document.body, { subtree: true, childList: true, attributes: true });
const t0 = performance.now();
document.querySelector(`#job-list button.job[data-job='${id}']`).click();
";

const SEARCH: &str = r"
const [prefix, done] = [arguments[0], arguments[arguments.length - 1]];
const input = document.querySelector('#equipment-query');
const ok = () => {
  const r = document.querySelectorAll('#equipment-results li code');
  return r.length > 0 && [...r].every(c => c.textContent.startsWith(prefix));
};
const obs = new MutationObserver(() => {
  if (ok()) { obs.disconnect(); requestAnimationFrame(() => done(performance.now() - t0)); }
});
obs.observe(document.body, { subtree: true, childList: true, characterData: true });
const t0 = performance.now();
input.value = prefix;
input.dispatchEvent(new InputEvent('input', { bubbles: true }));
";

async fn clear_search(app: &App) -> Result<()> {
    app.js(
        "const i = document.querySelector('#equipment-query'); i.value = ''; \
         i.dispatchEvent(new InputEvent('input', { bubbles: true }));",
        vec![],
    )
    .await?;
    app.until(
        "no search results",
        "return document.querySelectorAll('#equipment-results li').length === 0",
        vec![],
    )
    .await
}

async fn measure(
    app_bin: &std::path::Path,
    data: &std::path::Path,
    url: &str,
    token: &str,
) -> Result<()> {
    let stage = Stage::start()?;

    // First run: log in and take the technician's data onto the device.
    let app = stage.launch(app_bin, data).await?;
    app.type_into("#server", url).await?;
    app.type_into("#credential", token).await?;
    app.click("#login").await?;
    until_listed(&app).await?;
    app.close().await?;

    let mut starts = Vec::new();
    let mut last = None;
    for i in 0..5 {
        let t0 = Instant::now();
        let app = stage.launch(app_bin, data).await?;
        until_listed(&app).await?;
        starts.push(t0.elapsed().as_secs_f64() * 1000.0);
        if i == 4 {
            last = Some(app);
        } else {
            app.close().await?;
        }
    }
    let app = last.context("the last start")?;

    let ids: Vec<String> = serde_json::from_value(
        app.js(
            "return [...document.querySelectorAll('#job-list button.job')].map(b => b.dataset.job)",
            vec![],
        )
        .await?,
    )?;
    let mut opens = Vec::new();
    // Forty opens (every job of the list in turn, again from the top if it is shorter): enough
    // for a 95th percentile.
    for id in ids.iter().cycle().take(40) {
        let ms = app.client.execute_async(OPEN_JOB, vec![json!(id)]).await?;
        opens.push(ms.as_f64().context("a duration")?);
        app.click("#back").await?;
        until_listed(&app).await?;
    }

    // Searches from a job's detail, with prefixes of serials the device holds.
    app.click(&format!("#job-list button.job[data-job='{}']", ids[0]))
        .await?;
    app.find("#equipment-query").await?;
    let mut prefixes = Vec::new();
    for vendor in ["HWTC", "ZTEG", "TPLK", "ALCL"] {
        app.type_into("#equipment-query", vendor).await?;
        app.find("#equipment-results li code").await?;
        let serials: Value = app
            .js(
                "return [...document.querySelectorAll('#equipment-results li code')].map(c => c.textContent)",
                vec![],
            )
            .await?;
        for s in serials.as_array().into_iter().flatten().take(3) {
            if let Some(s) = s.as_str() {
                prefixes.push(s[..6.min(s.len())].to_owned());
            }
        }
        clear_search(&app).await?;
    }
    if prefixes.is_empty() {
        bail!("no equipment found on the device to search for");
    }
    let mut searches = Vec::new();
    for p in prefixes.iter().cycle().take(36) {
        let ms = app.client.execute_async(SEARCH, vec![json!(p)]).await?;
        searches.push(ms.as_f64().context("a duration")?);
        clear_search(&app).await?;
    }
    app.close().await?;
    stage.stop();

    line("app_cold_start_ms", median(starts), "ms");
    line("job_open_ms", median(opens.clone()), "ms");
    line("job_open_p95_ms", p95(opens), "ms");
    line("search_ui_ms", median(searches.clone()), "ms");
    line("search_ui_p95_ms", p95(searches), "ms");
    Ok(())
}
