//! `cargo xtask bench hub`: the webhook inbox under load, the real server (release) over real
//! HTTP with its production store settings (`synchronous=FULL` on a disk folder).
//!
//! * `webhook_ingest_per_s`: signed Stripe events from 64 concurrent senders, each verified,
//!   stored and synced before its 2xx, per second of wall time (processing runs meanwhile).
//! * `webhook_ack_p50_ms`, `webhook_ack_p99_ms`: the senders' latency to that 2xx.
//! * `webhook_server_cores`: the server's CPU over the run, in cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::bench::{line, percentile};

const SENDERS: usize = 64;
const EVENTS: usize = 40_000;
const WARMUP: usize = 2_000;
const SECRET: &str = "whsec_bench_secret";

pub(crate) fn run() -> Result<()> {
    if crate::bench::ensure_release(&["bench", "hub"])? {
        return Ok(());
    }
    let dir = crate::bench::disk_dir()?;
    let demo = crate::bench::release_demo(
        dir.path(),
        &[("APP_STRIPE__WEBHOOK_SECRET", SECRET.to_owned())],
    )?;
    load(demo.port, demo.child.id(), &demo.token)
}

fn event(i: usize) -> Vec<u8> {
    serde_json::json!({
        "id": format!("evt_bench_{i:08}"),
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": 1_764_000_000,
        "livemode": false,
        "data": {"object": {
            "id": format!("pi_bench_{i:08}"),
            "object": "payment_intent",
            "amount_received": 8330,
            "currency": "cad",
            "metadata": {"invoice": format!("ACC-SINV-2026-{i:06}")}
        }}
    })
    .to_string()
    .into_bytes()
}

fn load(port: u16, pid: u32, token: &str) -> Result<()> {
    sync_server::tls::install_crypto();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let url = format!("http://127.0.0.1:{port}/api/v1/webhooks/stripe");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(SENDERS)
        .build()?;
    let send = |range: std::ops::Range<usize>| -> Result<(Vec<f64>, Duration)> {
        let next = Arc::new(AtomicUsize::new(range.start));
        let started = Instant::now();
        let latencies = rt.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..SENDERS {
                let (client, url, next) = (client.clone(), url.clone(), Arc::clone(&next));
                let end = range.end;
                tasks.push(tokio::spawn(async move {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= end {
                            return anyhow::Ok(mine);
                        }
                        let body = event(i);
                        let now = {
                            use shared::clock::Clock as _;
                            sync_server::SystemClock.now().0 / 1000
                        };
                        let header = sync_server::hub::signature::stripe_header(SECRET, now, &body);
                        let t = Instant::now();
                        let resp = client
                            .post(&url)
                            .header("stripe-signature", header)
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await?;
                        anyhow::ensure!(resp.status().is_success(), "event {i}: {}", resp.status());
                        mine.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await??);
            }
            anyhow::Ok(all)
        })?;
        Ok((latencies, started.elapsed()))
    };
    send(0..WARMUP)?;
    let cpu0 = crate::bench_server::cpu_s(pid);
    let (mut lat, took) = send(WARMUP..WARMUP + EVENTS)?;
    let cpu = crate::bench_server::cpu_s(pid) - cpu0;
    lat.sort_by(f64::total_cmp);
    // Every acknowledged event is in the inbox, once.
    let depth: serde_json::Value = reqwest::blocking::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/v1/webhooks"))
        .bearer_auth(token)
        .send()?
        .error_for_status()?
        .json()?;
    let stored: u64 = ["new", "done", "failed"]
        .iter()
        .filter_map(|k| depth["depth"][k].as_u64())
        .sum();
    anyhow::ensure!(
        stored == (WARMUP + EVENTS) as u64,
        "{stored} events stored for {} acknowledged",
        WARMUP + EVENTS
    );
    line(
        "webhook_ingest_per_s",
        EVENTS as f64 / took.as_secs_f64(),
        "events/s",
    );
    line("webhook_ack_p50_ms", percentile(&lat, 0.50), "ms");
    line("webhook_ack_p99_ms", percentile(&lat, 0.99), "ms");
    line("webhook_server_cores", cpu / took.as_secs_f64(), "cores");
    line("webhook_senders", SENDERS as f64, "senders");
    Ok(())
}
