//! `erp_push_docs_per_s` (part of `cargo xtask bench server`): documents the bridge pushes to the
//! Frappe double with the recorded real latencies injected (GET ≈ 20 ms, POST ≈ 45 ms, PUT ≈ 85 ms).
//!
//! Two phases on one data set: the first export (a create per document) and then a burst of
//! field edits (a read and a PUT per document, the steady state).

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

pub(crate) fn run() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let erp = FrappeDouble::new("bench", "bench-secret");
    let addr = rt.block_on(erp.start());
    let client = ErpClient::new(&ErpConfig {
        url: format!("http://{addr}"),
        token: Secret::new("bench:bench-secret"),
        timeout: Duration::from_secs(30),
    })?;
    rt.block_on(setup::run(&client, None))?;
    erp.set_latency(Latency::recorded());

    let dir = tempfile::tempdir()?;
    let service = Arc::new(SyncService::open(
        ServerConfig::new(server_author()),
        Box::new(SqliteStore::open(&dir.path().join("sync.sqlite3"), false)?),
        Box::new(FixedClock::new(monday_9am())),
    )?);
    let spec = demo::Spec {
        technicians: 10,
        jobs_per_technician: 10,
        locations: 100,
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
    line(
        "erp_push_concurrency",
        BridgeOptions::default().concurrency as f64,
        "requests",
    );
    drop(rt);
    Ok(())
}
