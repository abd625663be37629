//! The durable inbox: every verified webhook is written here, synced to disk, before it is
//! answered 2xx; it is processed afterwards, with retries, by [`run`].
//!
//! * Acknowledged means stored: a crash between the answer and the processing loses nothing
//!   (the event is still `new` when the server starts again).
//! * A provider's event id is unique: a redelivery is answered 2xx and changes nothing.
//! * Writes from concurrent requests share one transaction and one sync (group commit), on a
//!   writer thread that blocks while there is nothing to write.
//! * The processor sleeps until an event arrives or a retry falls due.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension as _, params};
use serde::{Deserialize, Serialize};

/// Who sent a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Twilio,
    Stripe,
    Erpnext,
    UptimeKuma,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Twilio => "twilio",
            Self::Stripe => "stripe",
            Self::Erpnext => "erpnext",
            Self::UptimeKuma => "uptime_kuma",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "twilio" => Self::Twilio,
            "stripe" => Self::Stripe,
            "erpnext" => Self::Erpnext,
            "uptime_kuma" => Self::UptimeKuma,
            _ => return None,
        })
    }
}

/// A verified webhook, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub provider: Provider,
    /// The provider's own id for the event (unique per provider).
    pub id: String,
    /// What happened, in the provider's words (`checkout.session.completed`, `sms.inbound`…).
    pub kind: String,
    /// The verified payload, as JSON.
    pub payload: serde_json::Value,
    /// When it was received (Unix milliseconds).
    pub received_at: i64,
}

/// An event being processed: its row, and how many attempts came before.
#[derive(Debug, Clone)]
pub struct Pending {
    pub seq: i64,
    pub event: Event,
    pub attempts: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("inbox database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("inbox: {0}")]
    Corrupt(String),
    #[error("the inbox writer stopped")]
    Stopped,
}

/// Whether an accepted event was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    New,
    /// Already in the inbox (a redelivery): nothing changes.
    Duplicate,
}

type Reply = tokio::sync::oneshot::Sender<Result<Accepted, InboxError>>;

/// How many events one group commit takes at most.
const GROUP: usize = 1024;

/// After this many failed attempts an event is parked for a person (`GET /api/v1/webhooks`).
pub const MAX_ATTEMPTS: u32 = 12;

/// Counts of the inbox's states, for `/metrics` and the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Depth {
    pub new: u64,
    pub failed: u64,
    pub done: u64,
}

/// The inbox over a SQLite database (its own file beside the sync store).
pub struct Inbox {
    writer: std::sync::mpsc::Sender<(Event, Reply)>,
    /// Reads and processing updates (WAL: readers never wait for the writer thread).
    conn: Mutex<Connection>,
    /// Wakes the processor.
    wake: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").finish_non_exhaustive()
    }
}

fn open_conn(path: &Path, full_sync: bool) -> Result<Connection, InboxError> {
    Ok(super::open_db(path, full_sync)?)
}

impl Inbox {
    /// Opens (creating if needed) the inbox at `path`; `full_sync` also survives power loss.
    ///
    /// Only the writer syncs to disk. What processing records is not synced: a power cut may
    /// lose the last marks, but never a mark without the handler's own writes before it (the
    /// write-ahead log comes back as a prefix), so an event is at worst processed again, and
    /// handlers are idempotent.
    pub fn open(path: &Path, full_sync: bool) -> Result<Arc<Self>, InboxError> {
        let conn = open_conn(path, false)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS inbox (
                 seq INTEGER PRIMARY KEY,
                 provider TEXT NOT NULL,
                 event_id TEXT NOT NULL,
                 kind TEXT NOT NULL,
                 payload TEXT NOT NULL,
                 received_at INTEGER NOT NULL,
                 state TEXT NOT NULL DEFAULT 'new',
                 attempts INTEGER NOT NULL DEFAULT 0,
                 next_at INTEGER NOT NULL DEFAULT 0,
                 last_error TEXT,
                 UNIQUE (provider, event_id)
             );
             CREATE INDEX IF NOT EXISTS inbox_due ON inbox(state, next_at);",
        )?;
        let writer_conn = open_conn(path, full_sync)?;
        // Checkpoints are left to the processing side, so a group commit does not wait for one
        // (the writer still checkpoints if the log grows large, e.g. with processing off).
        writer_conn.pragma_update(None, "wal_autocheckpoint", 10_000)?;
        let wake = Arc::new(tokio::sync::Notify::new());
        let (tx, rx) = std::sync::mpsc::channel();
        let woken = Arc::clone(&wake);
        std::thread::Builder::new()
            .name("inbox-writer".into())
            .spawn(move || write_groups(writer_conn, &rx, &woken))
            .map_err(|e| InboxError::Corrupt(format!("starting the writer: {e}")))?;
        Ok(Arc::new(Self {
            writer: tx,
            conn: Mutex::new(conn),
            wake,
        }))
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        super::lock_db(&self.conn)
    }

    /// Stores a verified event durably; returns once it is on disk (or known already).
    pub async fn accept(&self, event: Event) -> Result<Accepted, InboxError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.writer
            .send((event, tx))
            .map_err(|_| InboxError::Stopped)?;
        rx.await.map_err(|_| InboxError::Stopped)?
    }

    /// Events due for processing at `now` (oldest first).
    pub fn due(&self, now: i64, limit: usize) -> Result<Vec<Pending>, InboxError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, provider, event_id, kind, payload, received_at, attempts FROM inbox
             WHERE state = 'new' AND next_at <= ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(
            params![now, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, u32>(6)?,
                ))
            },
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, provider, id, kind, payload, received_at, attempts) = row?;
            let provider = Provider::parse(&provider)
                .ok_or_else(|| InboxError::Corrupt(format!("unknown provider {provider:?}")))?;
            let payload = serde_json::from_str(&payload)
                .map_err(|e| InboxError::Corrupt(format!("event {seq}: {e}")))?;
            out.push(Pending {
                seq,
                event: Event {
                    provider,
                    id,
                    kind,
                    payload,
                    received_at,
                },
                attempts,
            });
        }
        Ok(out)
    }

    /// When the next retry falls due, if any is waiting.
    pub fn next_retry(&self) -> Result<Option<i64>, InboxError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT MIN(next_at) FROM inbox WHERE state = 'new'",
                [],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()?
            .flatten())
    }

    /// Records what processing a batch of events came to, in one transaction.
    pub fn record(&self, marks: &[Mark]) -> Result<(), InboxError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for m in marks {
            match m {
                Mark::Done(seq) => tx.execute(
                    "UPDATE inbox SET state = 'done', last_error = NULL WHERE seq = ?1",
                    [seq],
                )?,
                Mark::Retry { seq, at, error } => tx.execute(
                    "UPDATE inbox SET attempts = attempts + 1, next_at = ?2, last_error = ?3
                     WHERE seq = ?1",
                    params![seq, at, error],
                )?,
                Mark::Parked { seq, error } => tx.execute(
                    "UPDATE inbox SET attempts = attempts + 1, state = 'failed', last_error = ?2
                     WHERE seq = ?1",
                    params![seq, error],
                )?,
            };
        }
        tx.commit()?;
        Ok(())
    }

    /// Puts a parked event back in line (after someone fixed what it needed).
    pub fn retry(&self, seq: i64) -> Result<bool, InboxError> {
        let n = self.conn().execute(
            "UPDATE inbox SET state = 'new', attempts = 0, next_at = 0 WHERE seq = ?1 AND state = 'failed'",
            [seq],
        )?;
        if n > 0 {
            self.wake.notify_one();
        }
        Ok(n > 0)
    }

    pub fn depth(&self) -> Result<Depth, InboxError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT state, COUNT(*) FROM inbox GROUP BY state")?;
        let mut d = Depth::default();
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (state, n) = row?;
            let n = u64::try_from(n).unwrap_or(0);
            match state.as_str() {
                "new" => d.new = n,
                "failed" => d.failed = n,
                _ => d.done += n,
            }
        }
        Ok(d)
    }

    /// Parked events, newest first, with their last error.
    pub fn parked(&self, limit: usize) -> Result<Vec<Parked>, InboxError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, provider, event_id, kind, received_at, attempts, last_error FROM inbox
             WHERE state = 'failed' ORDER BY seq DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok(Parked {
                seq: r.get(0)?,
                provider: r.get(1)?,
                event_id: r.get(2)?,
                kind: r.get(3)?,
                received_at: r.get(4)?,
                attempts: r.get(5)?,
                error: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many times an event was received and stored (0 or 1: redeliveries are not stored).
    pub fn stored(&self, provider: Provider, id: &str) -> Result<u32, InboxError> {
        Ok(self.conn().query_row(
            "SELECT COUNT(*) FROM inbox WHERE provider = ?1 AND event_id = ?2",
            params![provider.as_str(), id],
            |r| r.get(0),
        )?)
    }

    /// The processor's wake-up (an event was stored or put back in line).
    pub fn waker(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.wake)
    }
}

/// What processing one event came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    Done(i64),
    /// Failed; tried again at `at` (Unix milliseconds).
    Retry {
        seq: i64,
        at: i64,
        error: String,
    },
    /// Failed for good, or too many times: waits for a person.
    Parked {
        seq: i64,
        error: String,
    },
}

/// A parked event, for the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Parked {
    pub seq: i64,
    pub provider: String,
    pub event_id: String,
    pub kind: String,
    pub received_at: i64,
    pub attempts: u32,
    pub error: Option<String>,
}

/// The writer thread: blocks for the first event, takes every event queued behind it, writes
/// them in one transaction, answers each once the commit is synced.
fn write_groups(
    mut conn: Connection,
    rx: &std::sync::mpsc::Receiver<(Event, Reply)>,
    wake: &tokio::sync::Notify,
) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < GROUP {
            match rx.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let written = write_group(&mut conn, &group);
        let mut any_new = false;
        match written {
            Ok(outcomes) => {
                for ((_, reply), outcome) in group.into_iter().zip(outcomes) {
                    any_new |= outcome == Accepted::New;
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "inbox.write_failed");
                let message = e.to_string();
                for (_, reply) in group {
                    let _ = reply.send(Err(InboxError::Corrupt(message.clone())));
                }
            }
        }
        if any_new {
            wake.notify_one();
        }
    }
}

fn write_group(
    conn: &mut Connection,
    group: &[(Event, Reply)],
) -> Result<Vec<Accepted>, InboxError> {
    let tx = conn.transaction()?;
    let mut out = Vec::with_capacity(group.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO inbox (provider, event_id, kind, payload, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (provider, event_id) DO NOTHING",
        )?;
        for (e, _) in group {
            let payload = serde_json::to_string(&e.payload)
                .map_err(|err| InboxError::Corrupt(err.to_string()))?;
            let n = insert.execute(params![
                e.provider.as_str(),
                e.id,
                e.kind,
                payload,
                e.received_at
            ])?;
            out.push(if n == 1 {
                Accepted::New
            } else {
                Accepted::Duplicate
            });
        }
    }
    tx.commit()?;
    Ok(out)
}

/// Why processing an event failed.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Worth another try later (a peer down, a store busy).
    #[error("{0}")]
    Retry(String),
    /// Will never work as it is (a payload we cannot use): parked at once.
    #[error("{0}")]
    Final(String),
}

/// What processes events of one provider.
pub trait Handler: Send + Sync {
    fn handle<'a>(
        &'a self,
        event: &'a Event,
    ) -> futures_util::future::BoxFuture<'a, Result<(), HandleError>>;
}

/// The delay before the `attempt`-th retry: 1 s doubling to 10 min.
pub fn retry_delay(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(10)).min(Duration::from_secs(600))
}

/// Processes the inbox until `shutdown`: every due event through its provider's handler, in
/// arrival order; sleeps until an event arrives or a retry falls due.
pub async fn run(
    inbox: Arc<Inbox>,
    handlers: std::collections::HashMap<Provider, Arc<dyn Handler>>,
    clock: Arc<dyn shared::clock::Clock>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let wake = inbox.waker();
    let now_ms = || clock.now().0;
    loop {
        let now = now_ms();
        let batch = {
            let inbox = Arc::clone(&inbox);
            super::off_thread("inbox.due", move || inbox.due(now, 256))
                .await
                .unwrap_or_default()
        };
        let idle = batch.is_empty();
        let mut marks = Vec::with_capacity(batch.len());
        for p in batch {
            let outcome = match handlers.get(&p.event.provider) {
                Some(h) => h.handle(&p.event).await,
                None => Err(HandleError::Retry(format!(
                    "{} webhooks are not handled by this server's settings",
                    p.event.provider.as_str()
                ))),
            };
            let kind = &p.event.kind;
            marks.push(match outcome {
                Ok(()) => Mark::Done(p.seq),
                Err(HandleError::Retry(error)) if p.attempts + 1 < MAX_ATTEMPTS => {
                    tracing::warn!(seq = p.seq, kind, error, "inbox.retry");
                    Mark::Retry {
                        seq: p.seq,
                        at: now_ms().saturating_add(
                            i64::try_from(retry_delay(p.attempts).as_millis()).unwrap_or(i64::MAX),
                        ),
                        error,
                    }
                }
                Err(e) => {
                    tracing::error!(seq = p.seq, kind, error = %e, "inbox.parked");
                    Mark::Parked {
                        seq: p.seq,
                        error: e.to_string(),
                    }
                }
            });
        }
        if !marks.is_empty() {
            let inbox = Arc::clone(&inbox);
            // On failure the events stay `new` and are processed again (handlers are idempotent).
            super::off_thread("inbox.record", move || inbox.record(&marks)).await;
        }
        if !idle {
            continue;
        }
        // Nothing due: sleep until an event arrives, the next retry, or shutdown.
        let next = {
            let inbox = Arc::clone(&inbox);
            super::off_thread("inbox.next_retry", move || inbox.next_retry())
                .await
                .flatten()
        };
        if !super::rest(next, now_ms(), &wake, &mut shutdown).await {
            return;
        }
    }
}
