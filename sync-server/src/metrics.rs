//! What an operator scrapes: `GET /metrics` in the Prometheus text format (OpenMetrics), with
//! `prometheus-client`'s registry owned by the service (no process-wide global).
//!
//! Counters and histograms are updated where the work happens (an exchange, a store commit, a
//! live stream opening or ending); levels that already live elsewhere (documents held, the
//! ERPNext bridge's backlog) are read when scraped.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How an exchange ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

/// Levels read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Levels {
    pub documents: u64,
    pub log_entries: u64,
    pub head: u64,
    pub conflicts: u64,
    /// Log positions the ERPNext bridge has not reconciled yet (`None`: no bridge).
    pub bridge_backlog: Option<u64>,
    pub bridge_parked: u64,
    pub bridge_failures: u64,
    /// Webhooks stored and waiting to be processed, and parked ones.
    pub webhooks_waiting: u64,
    pub webhooks_parked: u64,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    exchanges: Family<Outcome, Counter>,
    exchange_seconds: Histogram,
    merged: Counter,
    commit_seconds: Histogram,
    flush_seconds: Histogram,
    group_size: Histogram,
    live_streams: Gauge,
    documents: Gauge,
    log_entries: Gauge,
    head: Gauge,
    conflicts: Gauge,
    bridge_backlog: Gauge,
    bridge_parked: Gauge,
    webhooks_waiting: Gauge,
    webhooks_parked: Gauge,
    bridge_failures: Gauge<u64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fsm");
        let exchanges = Family::<Outcome, Counter>::default();
        registry.register(
            "sync_exchanges",
            "Sync exchanges, by how they ended (ok, refused, error)",
            exchanges.clone(),
        );
        // 0.5 ms to about 16 s.
        let exchange_seconds = Histogram::new(exponential_buckets(0.000_5, 2.0, 16));
        registry.register(
            "sync_exchange_seconds",
            "Time to answer a sync exchange, from the decoded request to the encoded answer",
            exchange_seconds.clone(),
        );
        let merged = Counter::default();
        registry.register(
            "sync_documents_merged",
            "Pushed documents merged into the server's copy",
            merged.clone(),
        );
        let commit_seconds = Histogram::new(exponential_buckets(0.000_1, 2.0, 16));
        registry.register(
            "store_commit_seconds",
            "Time to write one commit's effects to the store (durably, or to the operating system when a flush follows)",
            commit_seconds.clone(),
        );
        let flush_seconds = Histogram::new(exponential_buckets(0.000_1, 2.0, 16));
        registry.register(
            "store_flush_seconds",
            "Time to sync group commits to the disk, outside the engine lock (one sync covers every commit before it)",
            flush_seconds.clone(),
        );
        // 1 to 256 exchanges.
        let group_size = Histogram::new(exponential_buckets(1.0, 2.0, 9));
        registry.register(
            "sync_group_exchanges",
            "Sync exchanges merged and committed together in one store transaction",
            group_size.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let live_streams = gauge(
            &mut registry,
            "live_streams",
            "Dispatchers' live event streams open now",
        );
        let documents = gauge(&mut registry, "documents", "Documents the server holds");
        let log_entries = gauge(&mut registry, "log_entries", "Entries in the change log");
        let head = gauge(&mut registry, "log_head", "The change log's last position");
        let conflicts = gauge(
            &mut registry,
            "conflicts_open",
            "Conflicts waiting for a dispatcher's decision",
        );
        let bridge_backlog = gauge(
            &mut registry,
            "erpnext_backlog",
            "Log positions the ERPNext bridge has not reconciled yet",
        );
        let bridge_parked = gauge(
            &mut registry,
            "erpnext_parked",
            "Documents ERPNext refused and parked for the office, since start",
        );
        let webhooks_waiting = gauge(
            &mut registry,
            "webhooks_waiting",
            "Verified webhooks stored and not processed yet",
        );
        let webhooks_parked = gauge(
            &mut registry,
            "webhooks_parked",
            "Webhooks whose processing failed for good, waiting for a person",
        );
        let bridge_failures = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "erpnext_transient_failures",
            "ERPNext requests that failed and are retried, since start",
            bridge_failures.clone(),
        );
        Self {
            registry,
            exchanges,
            exchange_seconds,
            merged,
            commit_seconds,
            flush_seconds,
            group_size,
            live_streams,
            documents,
            log_entries,
            head,
            conflicts,
            bridge_backlog,
            bridge_parked,
            webhooks_waiting,
            webhooks_parked,
            bridge_failures,
        }
    }

    /// One exchange answered (`ok`), refused with a reason the device shows (`refused`), or
    /// failed (`error`).
    pub fn exchange(&self, outcome: &'static str, took: Duration, merged: usize) {
        self.exchanges.get_or_create(&Outcome { outcome }).inc();
        self.exchange_seconds.observe(took.as_secs_f64());
        self.merged
            .inc_by(u64::try_from(merged).unwrap_or(u64::MAX));
    }

    pub fn commit(&self, took: Duration) {
        self.commit_seconds.observe(took.as_secs_f64());
    }

    pub fn flush(&self, took: Duration) {
        self.flush_seconds.observe(took.as_secs_f64());
    }

    /// A group of exchanges committed together.
    pub fn group(&self, exchanges: usize) {
        self.group_size.observe(exchanges as f64);
    }

    /// Counts a live stream while the returned guard lives.
    pub fn stream_opened(self: &std::sync::Arc<Self>) -> StreamGuard {
        self.live_streams.inc();
        StreamGuard(std::sync::Arc::clone(self))
    }

    /// The text exposition, with the levels read now.
    pub fn render(&self, levels: Levels) -> String {
        let set = |g: &Gauge, v: u64| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        set(&self.documents, levels.documents);
        set(&self.log_entries, levels.log_entries);
        set(&self.head, levels.head);
        set(&self.conflicts, levels.conflicts);
        set(&self.bridge_backlog, levels.bridge_backlog.unwrap_or(0));
        set(&self.bridge_parked, levels.bridge_parked);
        set(&self.webhooks_waiting, levels.webhooks_waiting);
        set(&self.webhooks_parked, levels.webhooks_parked);
        self.bridge_failures.set(levels.bridge_failures);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A live stream being counted; dropping it ends the count.
#[derive(Debug)]
pub struct StreamGuard(std::sync::Arc<Metrics>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.live_streams.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_figure() {
        let m = std::sync::Arc::new(Metrics::new());
        m.exchange("ok", Duration::from_millis(3), 2);
        m.exchange("refused", Duration::from_millis(1), 0);
        m.commit(Duration::from_micros(800));
        let guard = m.stream_opened();
        let text = m.render(Levels {
            documents: 12,
            bridge_backlog: Some(4),
            ..Levels::default()
        });
        for line in [
            "fsm_sync_exchanges_total{outcome=\"ok\"} 1",
            "fsm_sync_exchanges_total{outcome=\"refused\"} 1",
            "fsm_sync_exchange_seconds_count 2",
            "fsm_sync_documents_merged_total 2",
            "fsm_store_commit_seconds_count 1",
            "fsm_live_streams 1",
            "fsm_documents 12",
            "fsm_erpnext_backlog 4",
            "# EOF",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
        drop(guard);
        assert!(m.render(Levels::default()).contains("fsm_live_streams 0"));
    }
}
