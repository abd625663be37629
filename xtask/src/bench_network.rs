//! `cargo xtask bench network`: the access-network side of the hub (release build).
//!
//! * `acs_summary_p50_ms`, `acs_summary_p99_ms`: summarizing the largest real device document
//!   (the TP-Link XX230v's full GenieACS export, 1.2 MB of JSON), already parsed.
//! * `acs_lookup_p50_ms`, `acs_lookup_p99_ms`: a lookup by serial as the server does it, over
//!   real HTTP to the GenieACS double on loopback: the query, the projected answer, its parse
//!   and the summary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::bench::{line, percentile};

const ROUNDS: usize = 2_000;
const LOOKUPS: usize = 500;

pub(crate) fn run() -> Result<()> {
    if crate::bench::ensure_release(&["bench", "network"])? {
        return Ok(());
    }
    use sync_server::doubles::genieacs::{GenieAcsDouble, dumps};
    use sync_server::hub::acs::{self, GenieAcsClient, summary::summarize};
    let doc = dumps()
        .into_iter()
        .find(|(n, _)| *n == "XX230v")
        .map(|(_, d)| d)
        .context("the XX230v dump")?;
    let now = 1_764_460_800_000;
    let mut times = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let s = summarize(&doc, now)?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(s);
    }
    times.sort_by(f64::total_cmp);
    line("acs_summary_p50_ms", percentile(&times, 0.5), "ms");
    line("acs_summary_p99_ms", percentile(&times, 0.99), "ms");

    let rt = tokio::runtime::Runtime::new()?;
    let double = GenieAcsDouble::new(Arc::new(sync_server::SystemClock));
    for (_, d) in dumps() {
        double.add(d);
    }
    let url = rt.block_on(double.start())?;
    let client = GenieAcsClient::new(&url, Duration::from_secs(10), Duration::from_secs(1))?;
    let mut times = Vec::with_capacity(LOOKUPS);
    rt.block_on(async {
        for _ in 0..LOOKUPS {
            let t = Instant::now();
            let found = acs::find(&client, Some("22275A7000395"), None)
                .await?
                .context("the XX230v by serial")?;
            std::hint::black_box(summarize(&found, now)?);
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        anyhow::Ok(())
    })?;
    times.sort_by(f64::total_cmp);
    line("acs_lookup_p50_ms", percentile(&times, 0.5), "ms");
    line("acs_lookup_p99_ms", percentile(&times, 0.99), "ms");
    Ok(())
}
