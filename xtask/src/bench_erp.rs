//! `erp_push_docs_per_s` (part of `cargo xtask bench server`): documents the bridge pushes to the
//! Frappe double, each request delayed by a draw from the latencies recorded against a real
//! ERPNext 15 (`latency_stats.json`: GET 20 ms; POST median 45 ms, p95 78 ms; PUT median 85 ms,
//! 41 to 119 ms), served by 4 workers at most like a default gunicorn.
//!
//! Two phases on one data set: the first export (a create per document) and then a burst of
//! field edits on 1,000 documents (a read and a PUT each, the steady state).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use shared::clock::{Clock, FixedClock};
use shared::model::{AnyEntity, Priority};
use shared::record::{FieldChange, Scalar};
use shared::sync::server::ServerConfig;
use sync_server::demo;
use sync_server::erpnext::{Bridge, BridgeOptions, ErpClient, ErpConfig, setup};
use sync_server::service::SyncService;
use sync_server::settings::Secret;
use sync_server::store::SqliteStore;
use tests::frappe::{FrappeDouble, Latency};
use tests::harness::{monday_9am, server_author};

use crate::bench::line;

/// A runtime with `workers` threads serving a set-up Frappe double (key `bench`), and a client
/// for it; the double's address is `client`'s.
fn double(workers: usize) -> Result<(tokio::runtime::Runtime, FrappeDouble, String, ErpClient)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    let erp = FrappeDouble::new(KEY, SECRET);
    let url = format!("http://{}", rt.block_on(erp.start()));
    let client = ErpClient::new(&ErpConfig {
        url: url.clone(),
        token: Secret::new(format!("{KEY}:{SECRET}")),
        timeout: Duration::from_secs(30),
        ca_pem: None,
    })?;
    rt.block_on(setup::run(&client, None))?;
    Ok((rt, erp, url, client))
}

const KEY: &str = "bench";
/// ERPNext's gunicorn workers.
const ERP_WORKERS: usize = 4;
const SECRET: &str = "bench-secret";

pub(crate) fn run() -> Result<()> {
    let (rt, erp, _, client) = double(2)?;
    erp.set_latency(Latency::recorded());
    erp.set_workers(Some(ERP_WORKERS));

    let dir = crate::bench::disk_dir()?;
    let service = Arc::new(SyncService::open(
        ServerConfig::new(server_author()),
        Box::new(SqliteStore::open(&dir.path().join("sync.sqlite3"), true)?),
        Box::new(FixedClock::new(monday_9am())),
    )?);
    // 400 jobs and 600 pieces of equipment: the 1,000 documents edited below.
    let spec = demo::Spec {
        technicians: 20,
        jobs_per_technician: 20,
        locations: 300,
        subscribers_per_location: 1,
        equipment_per_location: 2,
        days_back: 2,
        days_ahead: 10,
    };
    let data = demo::generate(9, spec, monday_9am().date());
    service.seed(&data.entities, monday_9am())?;
    let bridge = rt.block_on(async {
        Bridge::new(
            Arc::clone(&service),
            client.clone(),
            BridgeOptions::default(),
        )
    })?;

    let t = Instant::now();
    let created = rt.block_on(bridge.push_pass())?;
    let create_s = t.elapsed().as_secs_f64();

    // A day's field edits reach the server: one register on every job and equipment.
    let now = FixedClock::new(monday_9am()).now();
    let edited = service.with_engine(|e| {
        let mut effects = Vec::new();
        let mut n = 0;
        for d in e.doc_ids().collect::<Vec<_>>() {
            let change = match e.entity(d) {
                Some(AnyEntity::Job(j)) => FieldChange::Set {
                    field: "priority".into(),
                    value: Scalar::str(if j.priority == Priority::High {
                        "normal"
                    } else {
                        "high"
                    }),
                },
                Some(AnyEntity::Equipment(_)) => FieldChange::Set {
                    field: "firmware".into(),
                    value: Scalar::str("V5R021C10S125"),
                },
                _ => continue,
            };
            effects.extend(e.edit(d, &[change], now)?);
            n += 1;
        }
        Ok((n, effects))
    })?;
    let t = Instant::now();
    let pushed = rt.block_on(bridge.push_pass())?;
    let update_s = t.elapsed().as_secs_f64();
    let counts = erp.counts();
    let updates: usize = counts.updates.values().sum();
    anyhow::ensure!(pushed == edited, "pushed {pushed} of {edited} edits");
    anyhow::ensure!(updates >= edited, "only {updates} PUTs for {edited} edits");
    let stats = bridge.stats();
    anyhow::ensure!(stats.parked == 0, "parked: {:?}", bridge.issues());
    line("erp_push_docs_per_s", edited as f64 / update_s, "docs/s");
    line("erp_create_docs_per_s", created as f64 / create_s, "docs/s");
    line("erp_push_docs", edited as f64, "docs");
    line(
        "erp_push_concurrency",
        BridgeOptions::default().concurrency as f64,
        "requests",
    );
    line("erp_workers", ERP_WORKERS as f64, "workers");
    drop(rt);
    Ok(())
}

/// `bridge_idle_cpu_pct`: the real `sync-server demo` process (release, its own runtime and
/// settings) with the bridge on against the double, measured for 60 s with nothing changing
/// anywhere, after the initial export of the demo's documents. Also its thread count.
pub(crate) fn idle() -> Result<()> {
    let (rt, _erp, url, _client) = double(1)?;
    let dir = crate::bench::disk_dir()?;
    let demo = crate::bench::release_demo(
        dir.path(),
        &[
            ("APP_ERPNEXT__URL", url),
            ("APP_ERPNEXT__TOKEN", format!("{KEY}:{SECRET}")),
        ],
    )?;
    let (port, token) = (demo.port, demo.token.clone());
    let result = (|| {
        // The initial export is over once the bridge's counters stop moving.
        sync_server::tls::install_crypto();
        let http = reqwest::blocking::Client::new();
        let status = || -> Result<serde_json::Value> {
            Ok(http
                .get(format!("http://127.0.0.1:{port}/api/v1/erpnext/status"))
                .bearer_auth(&token)
                .send()?
                .error_for_status()?
                .json()?)
        };
        let started = Instant::now();
        let mut last = serde_json::Value::Null;
        let mut still_since = Instant::now();
        loop {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(600),
                "the initial export did not finish"
            );
            std::thread::sleep(Duration::from_millis(500));
            let Ok(mut s) = status() else { continue };
            if let Some(o) = s.as_object_mut() {
                o.remove("wakeups");
            }
            let exported = s.get("created").and_then(serde_json::Value::as_u64) > Some(2_000);
            if s != last {
                last = s;
                still_since = Instant::now();
            } else if exported && still_since.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
        let pid = demo.child.id();
        let cpu0 = crate::bench_server::cpu_s(pid);
        let t = Instant::now();
        std::thread::sleep(Duration::from_secs(60));
        let cpu = crate::bench_server::cpu_s(pid) - cpu0;
        let pct = 100.0 * cpu / t.elapsed().as_secs_f64();
        let threads = std::fs::read_to_string(format!("/proc/{pid}/status"))?
            .lines()
            .find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim().to_owned()))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN);
        line("bridge_idle_cpu_pct", pct, "%");
        line("bridge_idle_threads", threads, "threads");
        Ok(())
    })();
    drop(demo);
    drop(rt);
    result
}
