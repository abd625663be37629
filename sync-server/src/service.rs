//! The sync use case: decode, merge through the engine, persist, answer. No HTTP types here.

use std::sync::{Arc, Mutex};

use shared::clock::Clock;
use shared::ids::DeviceId;
use shared::protocol::{self, DecodeError, Message, SyncRefusal};
use shared::sync::server::{ServerConfig, ServerEffect, ServerEngine};

use crate::auth::Device;
use crate::events::{self, LiveEvent};
use crate::store::{Store, StoreError};

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("unreadable sync message: {0}")]
    BadFrame(DecodeError),
    #[error("{0}")]
    Refused(SyncRefusal),
    #[error("the request author does not match the token")]
    WrongAuthor,
    #[error("storage failed; the server takes changes again once the store answers")]
    Storage(#[from] StoreError),
    #[error("the server stopped accepting changes after a storage failure")]
    Poisoned,
    #[error("{0}")]
    Engine(String),
    #[error("this device is registered to another account")]
    DeviceBound,
}

struct Inner {
    engine: ServerEngine,
    store: Box<dyn Store>,
    /// Devices registered with the engine, and as whom.
    registered: std::collections::HashMap<DeviceId, Device>,
}

/// The sync service: one engine, one store, one lock.
pub struct SyncService {
    inner: Mutex<Inner>,
    /// Exchanges waiting for the engine, merged and committed together by the next thread to
    /// take `inner` ([`Self::merge_grouped`]).
    waiting: Mutex<Vec<Waiting>>,
    /// What is revoked (sessions, used magic links, every session of a device or technician),
    /// mirrored from the store. Apart from the engine lock, so checking a token never waits
    /// for a sync.
    revoked: std::sync::RwLock<crate::revocation::Revoked>,
    /// Moves on every revocation seen (here or from another instance): live streams look again
    /// whether their session is still valid.
    revocations: tokio::sync::watch::Sender<u64>,
    /// Orders audit entries written in the same millisecond.
    audit_seq: std::sync::atomic::AtomicU64,
    /// Set when persisting failed: the engine is then ahead of the disk, so nothing more may be
    /// acknowledged until it is rebuilt from the store ([`Self::recover`]).
    poisoned: std::sync::atomic::AtomicBool,
    /// Wakes [`Self::keep_recovering`] when the service is poisoned.
    poisoned_signal: tokio::sync::Notify,
    /// Set while the store cannot be reached (cleared by the next exchange that reaches it):
    /// `/ready` reports it so a balancer sends devices elsewhere.
    degraded: std::sync::atomic::AtomicBool,
    clock: Box<dyn Clock>,
    events: tokio::sync::broadcast::Sender<LiveEvent>,
    /// Apps older than this are refused with a message telling the user to update.
    min_app_version: Option<semver::Version>,
    /// The log head after each committed critical section: wakes the ERPNext bridge.
    head: tokio::sync::watch::Sender<u64>,
    /// How long a device's offline work on a document that left its scope is still accepted.
    retention: std::time::Duration,
    /// What `GET /metrics` shows.
    metrics: Arc<crate::metrics::Metrics>,
    /// Makes deferred group commits durable outside the engine lock ([`Store::flusher`]).
    flusher: Option<crate::store::Flusher>,
    /// Group commits and how far they are on disk; taken briefly.
    durable: Mutex<Durable>,
    /// Held while flushing: one sync at a time, each covering every commit before it started.
    flushing: Mutex<()>,
}

/// Group commits made and how far they are durable, with what each publishes once it is.
#[derive(Default)]
struct Durable {
    /// Group commits made (under the engine lock).
    committed: u64,
    /// Group commits known to be on disk.
    synced: u64,
    /// Set when a sync failed: nothing later is acknowledged until the service is recovered.
    failed: bool,
    /// Live events and log head of each commit not yet durable, in commit order.
    pending: std::collections::VecDeque<(u64, Vec<LiveEvent>, u64)>,
}

/// When the store was last restored from a backup (Unix milliseconds), in the store's meta.
pub const RESTORED_AT: &str = "restored_at";

/// The account a device id is bound to, as stored: `technician/<id>`, `dispatcher/office`…
fn account_key(who: &Device) -> String {
    match who.subject {
        shared::sync::server::Subject::Technician(t) => {
            format!("{}/{t}", who.author.role.as_str())
        }
        shared::sync::server::Subject::Office => format!("{}/office", who.author.role.as_str()),
    }
}

/// The binding as versions before the typed form stored it (read once, then rewritten).
fn legacy_account_key(who: &Device) -> String {
    let subject = match who.subject {
        shared::sync::server::Subject::Technician(t) => {
            format!("Technician(TechnicianId({}))", t.doc())
        }
        shared::sync::server::Subject::Office => "Office".to_owned(),
    };
    let role = match who.author.role {
        shared::ids::Role::Technician => "Technician",
        shared::ids::Role::Dispatcher => "Dispatcher",
        shared::ids::Role::Admin => "Admin",
        shared::ids::Role::Server => "Server",
    };
    format!("{role}/{subject}")
}

/// What a critical section returns: its result and the effects to persist.
type Effects<T> = Result<(T, Vec<ServerEffect>), ServiceError>;

/// An exchange's work on the engine, run by whichever thread merges its group.
type Work =
    Box<dyn FnOnce(&SyncService, &mut Inner) -> Effects<shared::protocol::SyncResponse> + Send>;

/// Where an exchange's answer goes.
type Done = std::sync::mpsc::SyncSender<Result<shared::protocol::SyncResponse, ServiceError>>;

/// An exchange's answer, sent once its group is committed.
type Answer = (Done, Result<shared::protocol::SyncResponse, ServiceError>);

/// An exchange waiting for the engine.
struct Waiting {
    work: Work,
    pusher: shared::ids::Role,
    done: Done,
}

/// An exchange merged in memory, not yet committed.
struct Merged {
    done: Done,
    pusher: shared::ids::Role,
    resp: shared::protocol::SyncResponse,
    effects: Vec<ServerEffect>,
}

/// Every exchange of a group gets the group's failure: the first the error itself, the others
/// the same message.
fn fail_all(dones: impl Iterator<Item = Done>, e: ServiceError) -> Vec<Answer> {
    let message = e.to_string();
    let mut first = Some(e);
    dones
        .map(|d| {
            let e = first
                .take()
                .unwrap_or_else(|| ServiceError::Storage(StoreError::Failed(message.clone())));
            (d, Err(e))
        })
        .collect()
}

fn panicked() -> ServiceError {
    ServiceError::Engine("an internal error stopped this request; nothing of it was applied".into())
}

fn lock_waiting(w: &Mutex<Vec<Waiting>>) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
    // The list is only pushed to and taken whole: a panic cannot leave it half-changed.
    w.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The default grace window and compaction retention: 30 days.
pub const DEFAULT_RETENTION: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// How many live events a slow listener may fall behind before it is told to resync.
const EVENT_BUFFER: usize = 4096;

impl std::fmt::Debug for SyncService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncService").finish_non_exhaustive()
    }
}

impl SyncService {
    /// Opens the service over a store, rebuilding the engine from it.
    pub fn open(
        config: ServerConfig,
        mut store: Box<dyn Store>,
        clock: Box<dyn Clock>,
    ) -> Result<Self, anyhow::Error> {
        let (docs, log) = store.load()?;
        let revoked = crate::revocation::Revoked::from_keys(store.revoked(clock.now().0 / 1000)?);
        let engine = ServerEngine::restore(config, docs, log, rand::random::<u64>())?;
        let head = tokio::sync::watch::channel(engine.head()).0;
        let flusher = store.flusher();
        tracing::info!(
            docs = engine.stats().docs,
            log = engine.stats().log_entries,
            "sync.restored"
        );
        Ok(Self {
            inner: Mutex::new(Inner {
                engine,
                store,
                registered: Default::default(),
            }),
            waiting: Mutex::new(Vec::new()),
            clock,
            events: tokio::sync::broadcast::channel(EVENT_BUFFER).0,
            revoked: std::sync::RwLock::new(revoked),
            revocations: tokio::sync::watch::channel(0).0,
            audit_seq: std::sync::atomic::AtomicU64::new(0),
            poisoned: std::sync::atomic::AtomicBool::new(false),
            poisoned_signal: tokio::sync::Notify::new(),
            degraded: std::sync::atomic::AtomicBool::new(false),
            min_app_version: None,
            head,
            retention: DEFAULT_RETENTION,
            metrics: Arc::new(crate::metrics::Metrics::new()),
            flusher,
            durable: Mutex::new(Durable::default()),
            flushing: Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the engine possibly half-updated: treat it like a
        // storage failure.
        self.inner.lock().unwrap_or_else(|p| {
            let mut g = p.into_inner();
            self.poison();
            // Release the store's cross-instance lock the panic may have left taken, so other
            // instances carry on while this one waits to be restarted.
            if let Err(e) = g.store.end_exchange() {
                tracing::error!(error = %e, "store.unlock_after_panic_failed");
            }
            g
        })
    }

    fn publish(
        &self,
        engine: &ServerEngine,
        effects: &[ServerEffect],
        pusher: Option<shared::ids::Role>,
    ) {
        if self.events.receiver_count() == 0 {
            return;
        }
        for ev in events::from_effects(engine, effects, pusher) {
            // No listener left is not an error.
            let _ = self.events.send(ev);
        }
    }

    /// Subscribes to live events; with `after`, first what was missed since that event id.
    /// Done under the lock, so nothing falls between the replay and the live stream.
    pub fn subscribe(
        &self,
        after: Option<u64>,
    ) -> (Vec<LiveEvent>, tokio::sync::broadcast::Receiver<LiveEvent>) {
        let g = self.lock();
        let rx = self.events.subscribe();
        let missed = after
            .map(|a| events::replay(&g.engine, a))
            .unwrap_or_default();
        (missed, rx)
    }

    /// How long offline work on a document that left a device's scope is accepted (default 30
    /// days, the same as the compaction retention).
    pub fn with_retention(mut self, retention: std::time::Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Refuses apps older than `min` (the admin's minimum supported version).
    pub fn with_min_app_version(mut self, min: semver::Version) -> Self {
        self.min_app_version = Some(min);
        self
    }

    /// The service's clock.
    pub fn now(&self) -> shared::clock::Millis {
        self.clock.now()
    }

    /// Whether a single token id is revoked (a used login link).
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revoked.read().map_or(true, |r| r.token(jti))
    }

    /// Whether a session is revoked: by itself, by its device or by its technician.
    pub fn is_session_revoked(&self, s: &crate::auth::Session) -> bool {
        self.revoked.read().map_or(true, |r| r.covers(s))
    }

    /// When a new session for these may be dated: after any revocation that names them (a
    /// revocation covers sessions issued up to its second, so a session issued in that same
    /// second, after it, is dated the next).
    pub fn session_time(
        &self,
        now_s: i64,
        device: shared::ids::DeviceId,
        technician: Option<shared::ids::TechnicianId>,
        account: Option<shared::ids::DocId>,
    ) -> i64 {
        self.revoked.read().map_or(now_s, |r| {
            r.latest(device, technician, account)
                .map_or(now_s, |upto| now_s.max(upto + 1))
        })
    }

    /// Moves whenever something is revoked.
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    fn poison(&self) {
        let was = self
            .poisoned
            .swap(true, std::sync::atomic::Ordering::SeqCst);
        if !was {
            tracing::error!("sync.poisoned: refusing work until rebuilt from the store");
        }
        self.poisoned_signal.notify_one();
    }

    /// After a storage failure: connects to the store again and rebuilds the engine from it (it
    /// holds everything ever acknowledged; what failed was never acknowledged), then takes work
    /// again. `Ok(false)`: nothing to recover from. Devices then resync in full, which merges
    /// harmlessly into what they hold.
    pub fn recover(&self) -> Result<bool, ServiceError> {
        if !self.is_poisoned() {
            return Ok(false);
        }
        let mut g = self.lock();
        g.store.reconnect()?;
        // A cross-instance lock left taken by the failed exchange is released first.
        g.store.end_exchange()?;
        // What the rebuilt engine serves must be on disk: a failed sync is retried here.
        if let Some(flush) = &self.flusher {
            flush()?;
        }
        self.rebuild(&mut g)?;
        {
            let mut d = self.lock_durable();
            d.failed = false;
            d.synced = d.committed;
            // Their events are replayed to listeners that reconnect; the head moves below.
            d.pending.clear();
        }
        let now_s = self.clock.now().0 / 1000;
        let revoked = g.store.revoked(now_s)?;
        self.set_revoked(revoked, true);
        self.poisoned
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.degraded
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.head.send_replace(g.engine.head());
        tracing::info!(head = g.engine.head(), "sync.recovered");
        Ok(true)
    }

    /// Sleeps until the service is poisoned, then tries [`Self::recover`] every `every` until it
    /// works, and sleeps again. Runs until dropped.
    pub async fn keep_recovering(self: Arc<Self>, every: std::time::Duration) {
        loop {
            if !self.is_poisoned() {
                self.poisoned_signal.notified().await;
            }
            tokio::time::sleep(every).await;
            let svc = Arc::clone(&self);
            match tokio::task::spawn_blocking(move || svc.recover()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "sync.recover_failed"),
                Err(e) => tracing::error!(error = %e, "sync.recover_panicked"),
            }
        }
    }

    fn is_poisoned(&self) -> bool {
        self.poisoned.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn set_revoked(&self, keys: impl IntoIterator<Item = String>, replace: bool) {
        if let Ok(mut r) = self.revoked.write() {
            let before = r.clone();
            if replace {
                *r = crate::revocation::Revoked::default();
            }
            for k in keys {
                r.add(crate::revocation::Revocation::parse(&k));
            }
            if *r != before {
                self.revocations.send_modify(|n| *n += 1);
            }
        }
    }

    /// Revokes a token id until `exp`. `Ok(false)`: it was already revoked (a used magic link).
    pub fn revoke(&self, jti: &str, exp: i64) -> Result<bool, ServiceError> {
        self.revoke_key(&crate::revocation::Revocation::Token(jti.to_owned()), exp)
    }

    /// Stores a revocation, kept until `exp` (when nothing it covers can be valid any more).
    pub fn revoke_key(
        &self,
        what: &crate::revocation::Revocation,
        exp: i64,
    ) -> Result<bool, ServiceError> {
        let mut g = self.lock();
        if self.is_poisoned() {
            return Err(ServiceError::Poisoned);
        }
        let key = what.key();
        let fresh = g.store.revoke(&key, exp)?;
        self.set_revoked([key], false);
        Ok(fresh)
    }

    /// Revokes every session of a device, technician or account so far: `at(upto)` names it.
    /// Sessions issued after an earlier revocation are dated past it (see
    /// [`Self::session_time`]), so this one reaches past them too.
    pub fn revoke_sessions(
        &self,
        now_s: i64,
        keep_until: i64,
        at: impl Fn(i64) -> crate::revocation::Revocation,
    ) -> Result<crate::revocation::Revocation, ServiceError> {
        let upto = self
            .revoked
            .read()
            .ok()
            .and_then(|r| r.current(&at(now_s)))
            .map_or(now_s, |u| now_s.max(u + 1));
        let what = at(upto);
        self.revoke_key(&what, keep_until.max(upto + 1))?;
        Ok(what)
    }

    /// Reads the revocations again (made by the command line, or by another instance).
    pub fn reload_revocations(&self) -> Result<(), ServiceError> {
        let mut g = self.lock();
        let now_s = self.clock.now().0 / 1000;
        let revoked = g.store.revoked(now_s)?;
        self.set_revoked(revoked, true);
        Ok(())
    }

    pub fn is_ready(&self) -> bool {
        !self.is_poisoned() && !self.degraded.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Runs `f` on the engine and persists its effects (seeding, administrative edits).
    pub fn with_engine<T>(
        &self,
        f: impl FnOnce(&mut ServerEngine) -> anyhow::Result<(T, Vec<ServerEffect>)>,
    ) -> anyhow::Result<T> {
        let mut g = self.lock();
        if self.is_poisoned() {
            return Err(ServiceError::Poisoned.into());
        }
        Ok(self.critical(&mut g, None, |e| {
            f(e).map_err(|err| ServiceError::Engine(format!("{err:#}")))
        })?)
    }

    /// Reads the engine after catching up on other instances; changes nothing.
    pub fn read<T>(&self, f: impl FnOnce(&mut ServerEngine) -> T) -> Result<T, ServiceError> {
        let mut g = self.lock();
        if self.is_poisoned() {
            return Err(ServiceError::Poisoned);
        }
        self.critical(&mut g, None, |e| Ok((f(e), Vec::new())))
    }

    /// Watches the log head: changes whenever something is committed.
    pub fn watch_head(&self) -> tokio::sync::watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// A value the server keeps beside the documents (bridge cursors and shadows, bindings).
    pub fn meta(&self, key: &str) -> Result<Option<String>, ServiceError> {
        Ok(self.lock().store.meta(key)?)
    }
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), ServiceError> {
        Ok(self.lock().store.set_meta(key, value)?)
    }
    pub fn delete_meta(&self, key: &str) -> Result<(), ServiceError> {
        Ok(self.lock().store.delete_meta(key)?)
    }
    pub fn meta_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>, ServiceError> {
        Ok(self.lock().store.meta_prefix(prefix)?)
    }

    /// Seeds documents as the server (a demo or benchmark data set), persisted like any change.
    pub fn seed(
        &self,
        entities: &[shared::model::AnyEntity],
        now: shared::clock::Millis,
    ) -> anyhow::Result<()> {
        self.with_engine(|e| Ok(((), e.insert_all(entities, now)?)))
    }

    /// Records that the store was just restored from a backup (`sync-server restored`): nothing
    /// is compacted for the retention that follows, while devices still hold work the store lost
    /// (the recorded positions belong to the backup's history, and devices that synced only after
    /// the backup are not recorded at all).
    pub fn mark_restored(&self) -> Result<(), ServiceError> {
        let now = self.clock.now();
        let mut g = self.lock();
        g.store.set_meta(RESTORED_AT, &now.0.to_string())?;
        Ok(())
    }

    /// Compacts what every device still expected back has synced past: the horizon is the lowest
    /// position of the devices seen within `retention` (durable, shared by all instances, read
    /// under the store's cross-instance lock). A device away longer than that rebases its
    /// offline edits onto the compacted copy. Returns how many documents were compacted.
    pub fn compact(&self, retention: std::time::Duration) -> Result<usize, ServiceError> {
        let now = self.clock.now();
        let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let since = shared::clock::Millis(now.0.saturating_sub(retention_ms));
        let mut g = self.lock();
        if self.is_poisoned() {
            return Err(ServiceError::Poisoned);
        }
        self.critical_with_store(&mut g, None, |engine, store| {
            // Within the retention after a restore from a backup, the recorded positions belong
            // to the backup's history, and devices that synced only after the backup was taken
            // are not recorded at all: any of them may hold work the store lost.
            let restored_recently = store
                .meta(RESTORED_AT)?
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|at| at >= since.0);
            let horizon = if restored_recently {
                0
            } else {
                store.horizon(since)?.unwrap_or(u64::MAX)
            };
            let effects = engine
                .compact(now, horizon)
                .map_err(|e| ServiceError::Engine(e.to_string()))?;
            let n = effects
                .iter()
                .filter(|e| matches!(e, ServerEffect::Compacted { .. }))
                .count();
            Ok((n, effects))
        })
    }

    /// Catches up on what other instances sharing the store committed (called when the store
    /// announces a change), publishing it to live listeners.
    pub fn catch_up(&self) -> Result<(), ServiceError> {
        let mut g = self.lock();
        if self.is_poisoned() {
            return Err(ServiceError::Poisoned);
        }
        let now_s = self.clock.now().0 / 1000;
        // Revocations made on another instance arrive with the same announcement.
        let revoked = g.store.revoked(now_s)?;
        self.set_revoked(revoked, true);
        self.critical(&mut g, None, |_| Ok(((), Vec::new())))
    }

    /// One critical section against the store: catch up on other instances, run `f`, persist its
    /// effects, publish them. The store's cross-instance lock is released whatever happens.
    fn critical<T>(
        &self,
        g: &mut Inner,
        pusher: Option<shared::ids::Role>,
        f: impl FnOnce(&mut ServerEngine) -> Result<(T, Vec<ServerEffect>), ServiceError>,
    ) -> Result<T, ServiceError> {
        self.critical_with_store(g, pusher, |engine, _| f(engine))
    }

    /// [`Self::critical`] for work that also reads the store under its cross-instance lock.
    fn critical_with_store<T>(
        &self,
        g: &mut Inner,
        pusher: Option<shared::ids::Role>,
        f: impl FnOnce(&mut ServerEngine, &mut dyn Store) -> Effects<T>,
    ) -> Result<T, ServiceError> {
        let result = self.critical_inner(g, pusher, f);
        if let Err(e) = g.store.end_exchange() {
            tracing::error!(error = %e, "store.unlock_failed");
            self.poison();
            return result.and(Err(e.into()));
        }
        result
    }

    fn critical_inner<T>(
        &self,
        g: &mut Inner,
        pusher: Option<shared::ids::Role>,
        f: impl FnOnce(&mut ServerEngine, &mut dyn Store) -> Effects<T>,
    ) -> Result<T, ServiceError> {
        self.catch_up_locked(g)?;
        // A panic in the engine (a bug reached by one request) fails that request only: the
        // engine, maybe half-updated, is rebuilt from the store, which holds everything ever
        // acknowledged; nothing of the failed request was persisted.
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            f(&mut g.engine, g.store.as_mut())
        }));
        let (out, effects) = match run {
            Ok(r) => r?,
            Err(_) => {
                tracing::error!("sync.engine_panicked");
                self.rebuild(g)?;
                return Err(panicked());
            }
        };
        self.commit_locked(g, &effects)?;
        // Published under the lock, after the write: listeners see acknowledged changes, in order.
        self.publish(&g.engine, &effects, pusher);
        self.moved_head(g);
        Ok(out)
    }

    /// Takes the store's cross-instance lock and absorbs what other instances wrote meanwhile,
    /// telling this instance's listeners about it.
    fn catch_up_locked(&self, g: &mut Inner) -> Result<(), ServiceError> {
        let head = g.engine.head();
        let caught_up = g.store.begin_exchange(head);
        self.degraded
            .store(caught_up.is_err(), std::sync::atomic::Ordering::SeqCst);
        let Some((docs, log)) = caught_up? else {
            return Ok(());
        };
        let seen: Vec<ServerEffect> = log
            .iter()
            .map(|l| ServerEffect::AppendLog {
                seq: l.seq,
                doc: l.doc,
                origin: l.origin,
                change: Vec::new(),
            })
            .collect();
        if let Err(e) = g.engine.absorb(docs, log) {
            self.poison();
            return Err(ServiceError::Storage(StoreError::Corrupt(e.to_string())));
        }
        tracing::debug!(
            entries = seen.len(),
            head = g.engine.head(),
            "store.caught_up"
        );
        self.publish(&g.engine, &seen, None);
        // Conflicts that arrived through another instance reach this instance's listeners too.
        let mut docs: Vec<shared::ids::DocId> = seen
            .iter()
            .filter_map(|e| match e {
                ServerEffect::AppendLog { doc, .. } => Some(*doc),
                _ => None,
            })
            .collect();
        docs.sort_unstable();
        docs.dedup();
        let open: Vec<ServerEffect> = docs
            .into_iter()
            .filter_map(|d| {
                let c = g.engine.conflicts_of(d);
                (!c.is_empty()).then(|| ServerEffect::Conflicts {
                    doc: d,
                    conflicts: c.to_vec(),
                })
            })
            .collect();
        self.publish(&g.engine, &open, None);
        Ok(())
    }

    /// Writes effects in one transaction; a failure poisons the service (the engine is then
    /// ahead of the disk).
    fn commit_locked(&self, g: &mut Inner, effects: &[ServerEffect]) -> Result<(), ServiceError> {
        let writing = std::time::Instant::now();
        let persisted = g.store.persist(effects);
        self.metrics.commit(writing.elapsed());
        if let Err(e) = persisted {
            // The error itself is logged once, where the request ends (HTTP, the bridge).
            self.poison();
            return Err(e.into());
        }
        Ok(())
    }

    /// Only a moved head wakes the watchers (the ERPNext bridge): a read must not.
    fn moved_head(&self, g: &Inner) {
        let head = g.engine.head();
        self.head
            .send_if_modified(|h| std::mem::replace(h, head) != head);
    }

    /// Merges `work` together with every exchange waiting for the engine at the same time, and
    /// commits them in one transaction (group commit: one fsync for many exchanges). Nothing is
    /// answered before the commit is on disk; if it fails, every exchange of the group fails.
    fn merge_grouped(
        &self,
        pusher: shared::ids::Role,
        work: Work,
    ) -> Result<shared::protocol::SyncResponse, ServiceError> {
        let (done, answer) = std::sync::mpsc::sync_channel(1);
        lock_waiting(&self.waiting).push(Waiting { work, pusher, done });
        let merged = {
            let mut g = self.lock();
            // Whoever holds the lock merges everything waiting, this thread's exchange included
            // unless an earlier holder already did.
            let group = std::mem::take(&mut *lock_waiting(&self.waiting));
            (!group.is_empty()).then(|| self.merge_group(&mut g, group))
        };
        // The disk syncs while the next group merges; the answers wait for it.
        if let Some((answers, needed)) = merged {
            self.settle(answers, needed);
        }
        // A group dropped without answering (a panic outside the engine) failed.
        answer.recv().unwrap_or(Err(ServiceError::Poisoned))
    }

    /// Answers a group once every commit it made or read (up to `needed`) is on disk.
    fn settle(&self, mut answers: Vec<Answer>, needed: u64) {
        if let Err(e) = self.flush_to(needed) {
            answers = fail_all(answers.into_iter().map(|(done, _)| done), e);
        }
        for (done, answer) in answers {
            // The exchange's thread is waiting on its answer; it cannot have gone.
            let _ = done.send(answer);
        }
    }

    fn lock_durable(&self) -> std::sync::MutexGuard<'_, Durable> {
        // Counters and a queue changed in single steps: a panic cannot leave them half-changed.
        self.durable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes group commits up to `needed` durable, then publishes what they changed, in commit
    /// order. One sync at a time; a sync covers every commit made before it started, so under
    /// load one sync serves several groups.
    fn flush_to(&self, needed: u64) -> Result<(), ServiceError> {
        let settled = |d: &Durable| {
            if d.failed {
                Some(Err(ServiceError::Poisoned))
            } else {
                (d.synced >= needed).then_some(Ok(()))
            }
        };
        if let Some(done) = settled(&self.lock_durable()) {
            return done;
        }
        let _turn = self
            .flushing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let target = {
            let d = self.lock_durable();
            // Another group's sync may have covered this one while it waited.
            if let Some(done) = settled(&d) {
                return done;
            }
            d.committed
        };
        let syncing = std::time::Instant::now();
        let synced = self.flusher.as_ref().map_or(Ok(()), |flush| flush());
        self.metrics.flush(syncing.elapsed());
        let ready: Vec<_> = {
            let mut d = self.lock_durable();
            if let Err(e) = synced {
                d.failed = true;
                drop(d);
                self.poison();
                return Err(e.into());
            }
            d.synced = d.synced.max(target);
            let mut ready = Vec::new();
            while d.pending.front().is_some_and(|(n, ..)| *n <= target) {
                ready.extend(d.pending.pop_front());
            }
            ready
        };
        for (_, events, head) in ready {
            for ev in events {
                // No listener left is not an error.
                let _ = self.events.send(ev);
            }
            self.head.send_if_modified(|h| {
                let moved = head > *h;
                *h = (*h).max(head);
                moved
            });
        }
        Ok(())
    }

    /// Runs a group of waiting exchanges through the engine and commits what they did at once.
    /// Returns the answers and the group commit they need on disk before they are sent.
    fn merge_group(&self, g: &mut Inner, group: Vec<Waiting>) -> (Vec<Answer>, u64) {
        self.metrics.group(group.len());
        let mut answers = Vec::with_capacity(group.len());
        if self.is_poisoned() {
            answers.extend(
                group
                    .into_iter()
                    .map(|w| (w.done, Err(ServiceError::Poisoned))),
            );
        } else if let Err(e) = self.catch_up_locked(g) {
            answers.extend(fail_all(group.into_iter().map(|w| w.done), e));
        } else {
            let mut merged: Vec<Merged> = Vec::new();
            for w in group {
                if self.is_poisoned() {
                    answers.push((w.done, Err(ServiceError::Poisoned)));
                    continue;
                }
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    (w.work)(self, &mut *g)
                }));
                match run {
                    Ok(Ok((resp, effects))) => merged.push(Merged {
                        done: w.done,
                        pusher: w.pusher,
                        resp,
                        effects,
                    }),
                    Ok(Err(e)) => answers.push((w.done, Err(e))),
                    Err(_) => {
                        // What the group merged before the panic is committed; the engine, maybe
                        // half-updated by the failed exchange, is then rebuilt from the store.
                        tracing::error!("sync.engine_panicked");
                        self.commit_group(g, std::mem::take(&mut merged), &mut answers);
                        answers.push((w.done, Err(panicked())));
                        if !self.is_poisoned() {
                            let _ = self.rebuild(g);
                        }
                    }
                }
            }
            self.commit_group(g, merged, &mut answers);
        }
        // The cross-instance lock is released before anyone is answered.
        if let Err(e) = g.store.end_exchange() {
            tracing::error!(error = %e, "store.unlock_failed");
            self.poison();
            answers = fail_all(answers.into_iter().map(|(done, _)| done), e.into());
        }
        // Also what earlier groups committed and this one may have read.
        let needed = self.lock_durable().committed;
        (answers, needed)
    }

    /// Commits the effects of merged exchanges in one transaction, then publishes them in order.
    fn commit_group(&self, g: &mut Inner, merged: Vec<Merged>, answers: &mut Vec<Answer>) {
        if merged.is_empty() {
            return;
        }
        let mut all = Vec::new();
        let mut parts = Vec::with_capacity(merged.len());
        for mut m in merged {
            let start = all.len();
            all.append(&mut m.effects);
            parts.push((m.done, m.pusher, m.resp, start..all.len()));
        }
        let writing = std::time::Instant::now();
        let persisted = g.store.persist_deferred(&all);
        self.metrics.commit(writing.elapsed());
        if let Err(e) = persisted {
            self.poison();
            answers.extend(fail_all(parts.into_iter().map(|p| p.0), e.into()));
            return;
        }
        let listening = self.events.receiver_count() > 0;
        let mut events = Vec::new();
        for (done, pusher, resp, range) in parts {
            if listening {
                events.extend(events::from_effects(&g.engine, &all[range], Some(pusher)));
            }
            answers.push((done, Ok(resp)));
        }
        // Published, and the head moved, once on disk ([`Self::flush_to`]).
        let mut d = self.lock_durable();
        d.committed += 1;
        let n = d.committed;
        d.pending.push_back((n, events, g.engine.head()));
    }

    /// Whether this device may upload the photo or signature with this SHA-256: a job it may
    /// write names it.
    pub fn wants_photo(&self, who: Device, sha256: &str) -> Result<bool, ServiceError> {
        let now = self.clock.now();
        self.read(|e| e.wants_photo(who.author.device, who.subject, now.date(), now, sha256))
    }

    /// Writes an entry to the audit log (a failure to write it is logged, not fatal: the act it
    /// records has happened).
    pub fn audit(&self, event: crate::audit::AuditEvent) {
        let entry = crate::audit::AuditEntry {
            at: self.clock.now().0,
            event,
        };
        let written = serde_json::to_string(&entry)
            .map_err(|e| ServiceError::Engine(e.to_string()))
            .and_then(|v| {
                // Entries of one millisecond keep their order.
                let n = self
                    .audit_seq
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                self.set_meta(&entry.key(n), &v)
            });
        if let Err(e) = written {
            tracing::warn!(error = %e, "audit.not_written");
        }
    }

    /// The newest `limit` audit entries, newest first.
    pub fn audit_log(&self, limit: usize) -> Result<Vec<crate::audit::AuditEntry>, ServiceError> {
        let mut rows = self.meta_prefix(crate::audit::PREFIX)?;
        rows.reverse();
        Ok(rows
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_str(&v).ok())
            .take(limit)
            .collect())
    }

    /// Rebuilds the engine from the store, as a restart would (devices register again).
    fn rebuild(&self, g: &mut Inner) -> Result<(), ServiceError> {
        let config = g.engine.config().clone();
        let rebuilt = g
            .store
            .load()
            .map_err(ServiceError::from)
            .and_then(|(docs, log)| {
                ServerEngine::restore(config, docs, log, rand::random::<u64>())
                    .map_err(|e| ServiceError::Storage(StoreError::Corrupt(e.to_string())))
            });
        match rebuilt {
            Ok(engine) => {
                g.engine = engine;
                g.registered.clear();
                Ok(())
            }
            Err(e) => {
                self.poison();
                Err(e)
            }
        }
    }

    /// One sync exchange for an authenticated device: frame in, frame out. The answer is only
    /// produced once everything it acknowledges is on disk.
    pub fn exchange(&self, who: Device, frame: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let started = std::time::Instant::now();
        let result = self.exchange_inner(who, frame);
        let (outcome, merged) = match &result {
            Ok((_, merged)) => ("ok", *merged),
            Err(ServiceError::Refused(_)) => ("refused", 0),
            Err(_) => ("error", 0),
        };
        self.metrics.exchange(outcome, started.elapsed(), merged);
        result.map(|(answer, _)| answer)
    }

    /// The service's counters and histograms.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// The levels `GET /metrics` reads when scraped.
    pub fn levels(&self) -> Result<crate::metrics::Levels, ServiceError> {
        self.read(|e| {
            let s = e.stats();
            crate::metrics::Levels {
                documents: s.docs as u64,
                log_entries: s.log_entries as u64,
                head: s.head_seq,
                conflicts: e.conflict_count() as u64,
                ..Default::default()
            }
        })
    }

    /// Binds the device to its account on first use (in the store, so across instances and
    /// restarts: another account presenting the same id is refused) and registers it with the
    /// engine.
    fn register_locked(&self, g: &mut Inner, who: Device) -> Result<(), ServiceError> {
        let device = who.author.device;
        if g.registered.get(&device) == Some(&who) {
            return Ok(());
        }
        let key = format!("device:{device}");
        let account = account_key(&who);
        match g.store.meta(&key)? {
            Some(bound) if bound == account => {}
            // Written by an earlier version as Rust debug text: the same account is accepted
            // and the binding rewritten in the typed form.
            Some(bound) if bound == legacy_account_key(&who) => {
                g.store.set_meta(&key, &account)?;
            }
            Some(_) => return Err(ServiceError::DeviceBound),
            None => g.store.set_meta(&key, &account)?,
        }
        g.engine.register(device, who.author, who.subject);
        g.registered.insert(device, who);
        Ok(())
    }

    /// One exchange; also says how many pushed documents were merged.
    fn exchange_inner(&self, who: Device, frame: &[u8]) -> Result<(Vec<u8>, usize), ServiceError> {
        let req = match protocol::decode(frame) {
            Ok(Message::Request(r)) => r,
            Ok(_) => {
                return Err(ServiceError::BadFrame(DecodeError::Malformed(
                    "expected a sync request".into(),
                )));
            }
            Err(DecodeError::UnsupportedVersion { got, min, .. }) if got < min => {
                return Err(ServiceError::Refused(SyncRefusal::ClientTooOld {
                    got,
                    min,
                }));
            }
            Err(e) => return Err(ServiceError::BadFrame(e)),
        };
        if req.hello.author != who.author {
            return Err(ServiceError::WrongAuthor);
        }
        if let Some(min) = &self.min_app_version {
            let ok = semver::Version::parse(&req.hello.app_version).is_ok_and(|v| &v >= min);
            if !ok {
                return Err(ServiceError::Refused(SyncRefusal::AppTooOld {
                    version: req.hello.app_version,
                    min: min.to_string(),
                }));
            }
        }
        // The heavy decoding of what is pushed happens here, before the engine's lock.
        let decoded = shared::sync::server::decode_pushes(&req);
        let now = self.clock.now();
        let device = who.author.device;
        let grace = i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
        let pushed: Vec<shared::ids::DocId> = req.push.iter().map(|p| p.doc).collect();
        let req = Arc::new(req);
        let in_group = Arc::clone(&req);
        let work: Work = Box::new(move |svc, g| {
            svc.register_locked(g, who)?;
            // Documents this device held within the grace window may still receive its offline
            // work, whatever this process remembers (restarts, other instances).
            if !pushed.is_empty() {
                let since = shared::clock::Millis(now.0.saturating_sub(grace));
                let held = g.store.held(device, &pushed, since)?;
                g.engine.allow_pushes(device, held);
            }
            g.engine
                .sync_decoded(device, &in_group, &decoded, now.date(), now)
                .map_err(ServiceError::Refused)
        });
        let resp = self.merge_grouped(who.author.role, work)?;
        tracing::debug!(
            device.id = %device,
            push.docs = req.push.len(),
            snapshots = resp.snapshots.len(),
            changes = resp.changes.len(),
            "sync.exchange"
        );
        let merged = req.push.len().saturating_sub(resp.rejected.len());
        Ok((protocol::encode(&Message::Response(resp)), merged))
    }
}
