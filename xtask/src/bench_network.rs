//! `cargo xtask bench network`: the access-network side of the hub (release build).
//!
//! * `acs_summary_p50_ms`, `acs_summary_p99_ms`: summarizing the largest real device document
//!   (the TP-Link XX230v's full GenieACS export, 1.2 MB of JSON), already parsed.
//! * `acs_lookup_p50_ms`, `acs_lookup_p99_ms`: a lookup by serial as the server does it, over
//!   real HTTP to the GenieACS double on loopback: the query, the projected answer, its parse
//!   and the summary.
//! * `snmp_poll_4096_s`: a full poll of a Huawei OLT with 4,096 ONUs (five columns), served by
//!   the real snmpsim agent on loopback, at most two requests in flight; `snmp_poll_onus` says
//!   how many rows it read.

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
    snmp_poll()
}

#[allow(clippy::disallowed_methods)] // where snmpsim lives is the environment's to say
fn snmpsim_python() -> std::path::PathBuf {
    std::env::var("FSM_SNMPSIM_PYTHON").map_or_else(
        |_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/fsm-snmpsim/bin/python")
        },
        std::path::PathBuf::from,
    )
}

fn snmp_poll() -> Result<()> {
    use sync_server::doubles::snmpsim::{Agent, big_huawei};
    use sync_server::hub::olt::{self, Target, Vendor};
    let python = snmpsim_python();
    anyhow::ensure!(
        python.exists(),
        "snmpsim is not installed at {} (run .ci/setup)",
        python.display()
    );
    let dir = tempfile::tempdir()?;
    let agent = Agent::start(&python, dir.path(), &[("big", big_huawei())])?;
    let target = Target {
        name: "big".into(),
        addr: ([127, 0, 0, 1], agent.port).into(),
        community: "big".into(),
        vendor: Vendor::Huawei,
        timeout: Duration::from_secs(2),
        tries: 2,
    };
    // One poll to warm the agent's index of the file, then the measured ones.
    olt::poll(&target)?;
    let mut times = Vec::new();
    let mut rows = 0;
    for _ in 0..3 {
        let t = Instant::now();
        rows = olt::poll(&target)?.len();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    line("snmp_poll_4096_s", percentile(&times, 0.5), "s");
    line("snmp_poll_4096_max_s", times[times.len() - 1], "s");
    line("snmp_poll_onus", rows as f64, "rows");
    Ok(())
}
