//! The ERPNext bridge: a three-way merge per document between the field and ERPNext.
//!
//! For each document the bridge keeps a **shadow**: ERPNext's record as last reconciled (its
//! `name`, its exact `modified` string, its mapped registers) and the document's heads at that
//! moment. Reconciling a document ([`Bridge::reconcile`]):
//!
//! 1. reads ERPNext's record now (`theirs`);
//! 2. **pull**: the registers ERPNext changed since the shadow are written into the document as
//!    the `erpnext` author, *concurrently with the shadow's heads* — so a field edit made meanwhile
//!    is merged by the field's own policy and an unsettled pair is listed in the dispatchers'
//!    conflict inbox, as for two devices;
//! 3. **push**: the registers where the document now differs from `theirs` are sent in one PUT
//!    carrying `theirs`' `modified` verbatim (a concurrent ERPNext save makes it 417: start over);
//! 4. the answer becomes the new shadow. What was pushed comes back equal, so nothing echoes.
//!
//! The decisions are pure functions of the three records ([`super::plan`]); the bridge reads,
//! asks them, and acts. Its own durable state (shadows, issues, markers, cursors) is typed
//! ([`super::state`]); a piece it cannot read back stops that document as an issue.
//!
//! Outbound work is the change log itself: the bridge keeps a cursor into it
//! and only moves it past documents that are reconciled or parked, so nothing acknowledged is
//! missed across restarts or an ERPNext outage. Inbound work is ERPNext's webhooks and a poll on
//! `modified >= cursor` (de-duplicated against the shadows), plus the `Deleted Document` feed.
//! Data ERPNext refuses (417 and deterministic 500s) is parked as an **issue** for dispatchers
//! instead of being retried forever, and so are failures that would repeat (the engine refusing
//! ERPNext's values) after a few attempts; transient failures (ERPNext or the store unreachable)
//! are retried with capped backoff for as long as they last.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::BackoffBuilder;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use shared::clock::Millis;
use shared::ids::{Author, DocId};
use shared::model::AnyEntity;
use shared::record::{EntityKind, FieldChange, Record, Scalar};
use shared::sync::server::ServerEngine;

use super::client::{ErpClient, ErpError};
use super::mapping::{self, DocMap, ID_FIELD, MapError, Names};
use super::plan::{self, Start};
use super::state::{Shadow, State, blocking};
use crate::service::{ServiceError, SyncService};

/// The author of every change the bridge writes on ERPNext's behalf.
pub fn erpnext_author() -> Author {
    Author::ERPNEXT
}

/// Tuning; the defaults suit a single ERPNext on a LAN.
#[derive(Debug, Clone)]
pub struct BridgeOptions {
    /// Requests in flight to ERPNext at once.
    pub concurrency: usize,
    /// How often to poll ERPNext for its own edits (webhooks make this a safety net).
    pub poll_interval: Duration,
    /// The longest wait between retries while ERPNext fails.
    pub max_backoff: Duration,
    /// Documents per outbound batch (the cursor moves once per batch).
    pub batch: usize,
    /// Rows per list page when polling.
    pub page: usize,
}

impl Default for BridgeOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            poll_interval: Duration::from_secs(30),
            max_backoff: Duration::from_secs(60),
            batch: 256,
            page: 500,
        }
    }
}

/// A document ERPNext refused, waiting for a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issue {
    pub doc: DocId,
    pub kind: EntityKind,
    pub doctype: String,
    pub erp_name: Option<String>,
    /// `push` (ERPNext refused our data) or `pull` (ERPNext's record cannot be read).
    pub direction: String,
    pub exc_type: String,
    pub message: String,
    pub at: Millis,
}

/// What reconciling one document did (sent as `{"outcome": "merged", "pulled": true, …}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing differed.
    InStep,
    /// Created in ERPNext.
    Created,
    /// Registers were pulled and/or pushed.
    Merged { pulled: bool, pushed: bool },
    /// ERPNext deleted it: the document is marked deleted and not recreated.
    DeletedInErp,
    /// Deleted here: ERPNext's record was deleted too.
    Removed,
    /// Not for ERPNext (deleted here, or gone).
    Skipped,
}

/// Why a document could not be reconciled now.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error(transparent)]
    Erp(#[from] ErpError),
    #[error(transparent)]
    Map(#[from] MapError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The engine refused what the bridge wrote on ERPNext's behalf.
    #[error("the sync engine refused ERPNext's values: {0}")]
    Engine(String),
    /// The bridge's own state for a document cannot be read back.
    #[error("the bridge's {what} cannot be read: {problem}")]
    CorruptState {
        doc: Option<DocId>,
        what: &'static str,
        problem: String,
    },
    #[error("{0}")]
    Other(String),
}

impl BridgeError {
    /// From the service's engine call: a storage failure stays one (retried while the store is
    /// down); the engine's own refusal is [`BridgeError::Engine`].
    fn from_engine(e: anyhow::Error) -> Self {
        match e.downcast::<ServiceError>() {
            Ok(ServiceError::Engine(m)) => BridgeError::Engine(m),
            Ok(other) => BridgeError::Service(other),
            Err(e) => BridgeError::Engine(format!("{e:#}")),
        }
    }
}

impl BridgeError {
    fn retryable(&self) -> bool {
        match self {
            BridgeError::Erp(e) => e.retryable(),
            // A stale write that kept losing the race, or a link still on its way.
            BridgeError::Map(MapError::NotInErp { .. } | MapError::UnknownLink { .. }) => true,
            BridgeError::Map(MapError::BadValue { .. }) | BridgeError::CorruptState { .. } => false,
            BridgeError::Service(_) | BridgeError::Engine(_) | BridgeError::Other(_) => true,
        }
    }

    /// Retried a few times only: the same inputs would fail the same way (the store being
    /// down and ERPNext being unreachable are retried for as long as they last).
    fn bounded(&self) -> bool {
        matches!(self, BridgeError::Engine(_) | BridgeError::Other(_))
            || matches!(
                self,
                BridgeError::Map(MapError::NotInErp { .. } | MapError::UnknownLink { .. })
            )
    }
}

/// How many times a document is tried before a bounded failure becomes an issue.
const MAX_ATTEMPTS: u32 = 5;

/// Counters for status pages, tests and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BridgeStats {
    pub reconciled: u64,
    pub created: u64,
    pub pushed: u64,
    pub pulled: u64,
    pub imported: u64,
    pub deleted: u64,
    /// Records deleted in ERPNext because their documents were deleted here.
    pub removed: u64,
    pub parked: u64,
    pub transient_failures: u64,
    /// Records named by verified webhooks.
    pub webhooks: u64,
    /// The outbound cursor (log position reconciled up to).
    pub cursor: u64,
    /// How many times the running bridge woke up and looked for work (idle: one per poll).
    pub wakeups: u64,
    pub last_error: Option<String>,
}

/// A document's kind, record and heads, with the log head they were read at.
type DocRead = (EntityKind, Record, Vec<String>, u64);

/// ERPNext names of documents, both ways, as the bridge learns them.
#[derive(Debug, Default)]
struct NameIndex {
    by_doc: HashMap<DocId, String>,
    by_name: HashMap<(EntityKind, String), DocId>,
}

impl NameIndex {
    fn insert(&mut self, kind: EntityKind, doc: DocId, name: &str) {
        self.by_doc.insert(doc, name.to_owned());
        self.by_name.insert((kind, name.to_owned()), doc);
    }
}

struct IndexNames<'a>(&'a NameIndex, &'a jiff::tz::TimeZone);

impl Names for IndexNames<'_> {
    fn zone(&self) -> &jiff::tz::TimeZone {
        self.1
    }
    fn erp_name(&self, doc: DocId) -> Option<String> {
        self.0.by_doc.get(&doc).cloned()
    }
    fn doc_id(&self, kind: EntityKind, erp_name: &str) -> Option<DocId> {
        self.0.by_name.get(&(kind, erp_name.to_owned())).copied()
    }
}

/// The bridge; one per deployment (with several server instances, run it on one).
pub struct Bridge {
    sync: Arc<SyncService>,
    erp: ErpClient,
    opts: BridgeOptions,
    author: Author,
    names: Mutex<NameIndex>,
    /// The site's time zone (`System Settings`), read once before the first document (one
    /// request, however many reconciliations start at once).
    zone: tokio::sync::OnceCell<jiff::tz::TimeZone>,
    /// Per document, the log head after the bridge last reconciled it: its own writes and
    /// re-reads need no second round trip.
    verified: Mutex<HashMap<DocId, u64>>,
    /// Per document, its shadow's `modified` stamp, as last saved or read: a poll that sees
    /// the same record again (its look-back, an idle site) compares stamps here instead of
    /// reading and decoding every shadow from the store.
    modified: Mutex<HashMap<DocId, String>>,
    stats: Mutex<BridgeStats>,
    /// One reconciliation per document at a time (a link detour and the batch may meet).
    busy: Mutex<HashMap<DocId, Arc<tokio::sync::Mutex<()>>>>,
    /// Bounded failures per document since it was last reconciled ([`MAX_ATTEMPTS`]).
    attempts: Mutex<HashMap<DocId, u32>>,
    refresh_tx: tokio::sync::mpsc::UnboundedSender<(String, String)>,
    refresh_rx: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<(String, String)>>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge").finish_non_exhaustive()
    }
}

/// [`SyncService`] calls, each through [`blocking`].
#[derive(Clone, Copy)]
struct Svc<'a>(&'a SyncService);

impl Svc<'_> {
    fn read<T>(self, f: impl FnOnce(&mut ServerEngine) -> T) -> Result<T, ServiceError> {
        blocking(|| self.0.read(f))
    }
    fn with_engine<T>(
        self,
        f: impl FnOnce(
            &mut ServerEngine,
        ) -> anyhow::Result<(T, Vec<shared::sync::server::ServerEffect>)>,
    ) -> Result<T, BridgeError> {
        blocking(|| self.0.with_engine(f)).map_err(BridgeError::from_engine)
    }
    fn now(self) -> Millis {
        self.0.now()
    }
    fn watch_head(self) -> tokio::sync::watch::Receiver<u64> {
        self.0.watch_head()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded maps are caches and counters: a panic elsewhere leaves them usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How far before its cursor a poll starts reading again. ERPNext stamps `modified` and
/// `creation` in the site's local time: when daylight saving time ends (America/Toronto, every
/// November), stamps go back an hour, and a poll from the cursor alone would never see the
/// records changed in the repeated hour. Rows seen again are recognised by their shadow.
const POLL_LOOKBACK: chrono::TimeDelta = chrono::TimeDelta::hours(2);

/// A poll cursor moved back by [`POLL_LOOKBACK`], in ERPNext's own spelling.
fn looking_back(cursor: &str) -> String {
    const FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";
    match chrono::NaiveDateTime::parse_from_str(cursor, "%Y-%m-%d %H:%M:%S%.f") {
        Ok(t) => t
            .checked_sub_signed(POLL_LOOKBACK)
            .map_or_else(|| cursor.to_owned(), |t| t.format(FORMAT).to_string()),
        // Not a timestamp ERPNext writes: read from the cursor itself.
        Err(e) => {
            tracing::warn!(cursor, error = %e, "erpnext.cursor_not_a_timestamp");
            cursor.to_owned()
        }
    }
}

fn doc_id_of(v: &Value) -> Option<DocId> {
    v.get(ID_FIELD)?.as_str()?.parse().ok()
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

impl Bridge {
    /// A bridge over the service; learns the ERPNext names the documents already carry.
    pub fn new(
        sync: Arc<SyncService>,
        erp: ErpClient,
        opts: BridgeOptions,
    ) -> Result<Arc<Self>, BridgeError> {
        let mut names = NameIndex::default();
        Svc(&sync).read(|e| {
            for doc in e.doc_ids().collect::<Vec<_>>() {
                if let (Some(kind), Some(name)) = (
                    e.kind(doc),
                    e.record(doc).and_then(|r| r.get("erp_name").as_str()),
                ) {
                    names.insert(kind, doc, name);
                }
            }
        })?;
        let cursor = State(&sync).out_cursor()?;
        let (refresh_tx, refresh_rx) = tokio::sync::mpsc::unbounded_channel();
        Ok(Arc::new(Self {
            sync,
            erp,
            opts,
            author: erpnext_author(),
            names: Mutex::new(names),
            zone: tokio::sync::OnceCell::new(),
            verified: Mutex::new(HashMap::new()),
            modified: Mutex::new(HashMap::new()),
            stats: Mutex::new(BridgeStats {
                cursor,
                ..BridgeStats::default()
            }),
            busy: Mutex::new(HashMap::new()),
            attempts: Mutex::new(HashMap::new()),
            refresh_tx,
            refresh_rx: tokio::sync::Mutex::new(refresh_rx),
        }))
    }

    fn svc(&self) -> Svc<'_> {
        Svc(&self.sync)
    }

    fn state(&self) -> State<'_> {
        State(&self.sync)
    }

    /// The ERPNext client the bridge speaks through (for reads other parts need, such as an
    /// invoice's amount).
    pub fn erp(&self) -> &ErpClient {
        &self.erp
    }

    pub fn stats(&self) -> BridgeStats {
        lock(&self.stats).clone()
    }

    /// Asks for one ERPNext record to be re-read soon (a verified webhook).
    pub fn refresh(&self, doctype: &str, name: &str) {
        lock(&self.stats).webhooks += 1;
        // The receiver lives as long as the bridge.
        let _ = self.refresh_tx.send((doctype.to_owned(), name.to_owned()));
    }

    /// Open issues, oldest first.
    pub fn issues(&self) -> Result<Vec<Issue>, BridgeError> {
        self.state().issues(self.svc().now())
    }

    /// Forgets an issue and reconciles its document again (after someone fixed the data).
    pub async fn retry(&self, doc: DocId) -> Result<Outcome, BridgeError> {
        self.state().clear_issue(doc)?;
        lock(&self.attempts).remove(&doc);
        let outcome = self.reconcile_or_park(doc).await?;
        Ok(outcome)
    }

    fn save_shadow(&self, doc: DocId, kind: EntityKind, sh: &Shadow) -> Result<(), BridgeError> {
        self.state().set_shadow(doc, sh)?;
        lock(&self.names).insert(kind, doc, &sh.name);
        lock(&self.modified).insert(doc, sh.modified.clone());
        Ok(())
    }

    fn forget_shadow(&self, doc: DocId) -> Result<(), BridgeError> {
        lock(&self.modified).remove(&doc);
        self.state().forget_shadow(doc)
    }

    /// Whether the document's shadow already carries ERPNext's `modified` stamp.
    fn in_step_at(&self, doc: DocId, modified: &str) -> bool {
        if let Some(m) = lock(&self.modified).get(&doc) {
            return m == modified;
        }
        // An unreadable shadow is looked at again, and parked there.
        match self.state().shadow(doc) {
            Ok(Some(s)) => {
                let same = s.modified == modified;
                lock(&self.modified).insert(doc, s.modified);
                same
            }
            _ => false,
        }
    }

    /// Reads the site's time zone once: ERPNext keeps `Datetime` values as the site's wall-clock
    /// time. A site that names none, or a zone this build does not know, stops the bridge with
    /// that message rather than writing times an hour or more off.
    async fn ensure_zone(&self) -> Result<(), BridgeError> {
        self.zone
            .get_or_try_init(|| async {
                let settings = self.erp.get("System Settings", "System Settings").await?;
                let name = text(&settings, "time_zone").ok_or_else(|| {
                    BridgeError::Other(
                        "ERPNext's System Settings name no time zone: set the site's time zone"
                            .into(),
                    )
                })?;
                let zone = jiff::tz::TimeZone::get(&name).map_err(|e| {
                    BridgeError::Other(format!("ERPNext's time zone {name:?} is unknown here: {e}"))
                })?;
                tracing::info!(time_zone = %name, "erpnext.site_zone");
                Ok::<_, BridgeError>(zone)
            })
            .await?;
        Ok(())
    }

    fn site_zone(&self) -> Result<&jiff::tz::TimeZone, MapError> {
        self.zone.get().ok_or_else(|| MapError::BadValue {
            field: "time_zone".into(),
            problem: "the site's time zone was not read yet".into(),
        })
    }

    fn to_erp(
        &self,
        map: &DocMap,
        r: &Record,
        fields: Option<&[&str]>,
        tables: Option<&[&str]>,
    ) -> Result<Map<String, Value>, MapError> {
        let zone = self.site_zone()?;
        mapping::to_erp(
            map,
            r,
            fields,
            tables,
            &IndexNames(&lock(&self.names), zone),
        )
    }

    /// ERPNext's document as a record; `prior` is what we last knew of it (or just sent).
    fn read_erp(
        &self,
        map: &DocMap,
        v: &Value,
        prior: Option<&Record>,
    ) -> Result<Record, MapError> {
        let zone = self.site_zone()?;
        mapping::from_erp(map, v, &IndexNames(&lock(&self.names), zone), prior)
    }

    /// The document's record, heads and the log head, read together.
    fn read_doc(&self, doc: DocId) -> Result<Option<DocRead>, BridgeError> {
        let read = self.svc().read(|e: &mut ServerEngine| {
            let kind = e.kind(doc)?;
            let record = e.record(doc)?.clone();
            let heads = e.heads(doc).ok()?;
            Some((kind, record, heads, e.head()))
        })?;
        Ok(read)
    }

    /// Writes registers into a document as ERPNext, concurrently with `base` heads.
    fn write_as_erp(
        &self,
        doc: DocId,
        base: &[String],
        changes: &[FieldChange],
    ) -> Result<Vec<String>, BridgeError> {
        let author = self.author;
        let now = self.svc().now();
        self.svc().with_engine(|e| {
            let (effects, heads) = e.edit_concurrent(doc, base, &author, changes, now)?;
            Ok((heads, effects))
        })
    }

    /// Records ERPNext's name for the document, or forgets it (`None`: the record is gone).
    fn set_erp_name(
        &self,
        doc: DocId,
        heads: &[String],
        name: Option<&str>,
    ) -> Result<(), BridgeError> {
        self.write_as_erp(
            doc,
            heads,
            &[FieldChange::Set {
                field: "erp_name".into(),
                value: Scalar::opt_str(name),
            }],
        )?;
        Ok(())
    }

    /// Reconciles one document with ERPNext (see the module docs).
    pub async fn reconcile(&self, doc: DocId) -> Result<Outcome, BridgeError> {
        self.reconcile_depth(doc, 0).await
    }

    fn reconcile_depth<'a>(
        &'a self,
        doc: DocId,
        depth: u8,
    ) -> futures_util::future::BoxFuture<'a, Result<Outcome, BridgeError>> {
        Box::pin(async move {
            self.ensure_zone().await?;
            let gate = Arc::clone(lock(&self.busy).entry(doc).or_default());
            let _turn = gate.lock().await;
            let result = self.reconcile_locked(doc, depth).await;
            if result.is_ok() {
                // In step now, however it got there (its own turn or another's link detour).
                self.state().clear_issue(doc)?;
                lock(&self.attempts).remove(&doc);
            }
            drop(_turn);
            let mut busy = lock(&self.busy);
            // Forget the gate once nobody else holds or waits for it.
            if busy.get(&doc).is_some_and(|g| Arc::strong_count(g) <= 2) {
                busy.remove(&doc);
            }
            result
        })
    }

    async fn reconcile_locked(&self, doc: DocId, depth: u8) -> Result<Outcome, BridgeError> {
        let mut last = None;
        // A concurrent ERPNext save makes our PUT stale: read again and merge again.
        for _ in 0..4 {
            match self.reconcile_once(doc).await {
                Err(BridgeError::Erp(ErpError::Stale)) => {
                    last = Some(BridgeError::Erp(ErpError::Stale));
                }
                Err(BridgeError::Map(MapError::NotInErp { doc: dep, .. })) if depth < 4 => {
                    // A link to a document ERPNext does not have yet: send that one first.
                    self.reconcile_depth(dep, depth + 1).await?;
                }
                Err(BridgeError::Map(MapError::UnknownLink { kind, name, .. })) if depth < 4 => {
                    self.import(kind, &name, depth + 1).await?;
                }
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| BridgeError::Other("links kept changing".into())))
    }

    async fn reconcile_once(&self, doc: DocId) -> Result<Outcome, BridgeError> {
        let Some((kind, ours, heads, head)) = self.read_doc(doc)? else {
            return Ok(Outcome::Skipped);
        };
        let map = mapping::doc_map(kind);
        let shadow = self.state().shadow(doc)?;
        // Field work arrived on a document deleted here or in ERPNext, or two records of one
        // unit met: nothing goes to ERPNext until the office decides.
        let undecided = self.svc().read(|e| {
            e.conflicts_of(doc)
                .iter()
                .any(|c| c.field == "deleted" || c.field == "duplicate_of")
        })?;
        let creating = self.state().creating(doc)?;
        let name = match plan::start(
            &ours,
            plan::removal(map),
            undecided,
            shadow.as_ref().map(|s| s.name.as_str()),
            creating,
        ) {
            Start::Skip(_) => return Ok(Outcome::Skipped),
            Start::Remove(name) => return self.remove(doc, map, &name, heads).await,
            Start::Create { lookup } => {
                let found = if lookup {
                    self.erp
                        .find(map.doctype, ID_FIELD, &doc.to_string())
                        .await?
                } else {
                    None
                };
                match found {
                    Some(name) => name,
                    None => return self.create(doc, kind, &ours, heads, head).await,
                }
            }
            Start::Fetch(name) => name,
        };
        let theirs = match self.erp.get(map.doctype, &name).await {
            Ok(v) => v,
            Err(ErpError::NotFound) => return self.deleted_in_erp(doc, heads, shadow.as_ref()),
            Err(e) => return Err(e.into()),
        };
        let theirs_rec = self.read_erp(map, &theirs, shadow.as_ref().map(|s| &s.record))?;
        let modified = text(&theirs, "modified").unwrap_or_default();

        // Pull: what ERPNext changed since the shadow, merged concurrently with the field's edits.
        let pull = plan::pull(
            kind,
            doc,
            &ours,
            shadow.as_ref().map(|s| &s.record),
            &theirs_rec,
        )?;
        let pulled = !pull.is_empty();
        let (ours, heads, head) = match &shadow {
            Some(sh) if pulled => {
                self.write_as_erp(doc, &sh.heads, &pull)?;
                let (_, ours, heads, head) = self
                    .read_doc(doc)?
                    .ok_or_else(|| BridgeError::Other("document vanished".into()))?;
                (ours, heads, head)
            }
            _ => (ours, heads, head),
        };
        if plan::needs_name(&ours, &name) {
            self.set_erp_name(doc, &heads, Some(&name))?;
        }

        // Push: where the document now differs from ERPNext, and what an earlier version wrote
        // differently (tables as JSON, times as milliseconds): written again, typed.
        let push = plan::push(
            map,
            &ours,
            &theirs_rec,
            &plan::Legacy {
                fields: mapping::legacy_fields(map, &theirs),
                tables: mapping::legacy_tables(map, &theirs),
            },
        );
        let pushed = !push.is_empty();
        let (modified, record) = if pushed {
            let sent = mapping::mapped(map, &ours);
            let body = self.to_erp(map, &sent, Some(&push.fields), Some(&push.tables))?;
            let answer = self
                .erp
                .update(map.doctype, &name, Some(&modified), &body)
                .await?;
            (
                text(&answer, "modified").unwrap_or_default(),
                self.read_erp(map, &answer, Some(&sent))?,
            )
        } else {
            (modified, theirs_rec)
        };
        let heads = match self.read_doc(doc)? {
            Some((_, _, h, _)) => h,
            None => heads,
        };
        self.save_shadow(
            doc,
            kind,
            &Shadow {
                name,
                modified,
                heads,
                record,
            },
        )?;
        self.mark(doc, head.max(self.sync_head()?), |s| {
            s.pulled += u64::from(pulled);
            s.pushed += u64::from(pushed);
        });
        Ok(if pulled || pushed {
            Outcome::Merged { pulled, pushed }
        } else {
            Outcome::InStep
        })
    }

    /// Deletes ERPNext's record of a document deleted here. The document forgets the name, so
    /// one restored later is created again.
    async fn remove(
        &self,
        doc: DocId,
        map: &DocMap,
        name: &str,
        heads: Vec<String>,
    ) -> Result<Outcome, BridgeError> {
        match self.erp.delete(map.doctype, name).await {
            Ok(()) | Err(ErpError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        self.set_erp_name(doc, &heads, None)?;
        self.forget_shadow(doc)?;
        let head = self.sync_head()?;
        self.mark(doc, head, |s| s.removed += 1);
        Ok(Outcome::Removed)
    }

    /// Creates ERPNext's record of a document it has never had.
    async fn create(
        &self,
        doc: DocId,
        kind: EntityKind,
        ours: &Record,
        heads: Vec<String>,
        head: u64,
    ) -> Result<Outcome, BridgeError> {
        let map = mapping::doc_map(kind);
        let sent = mapping::mapped(map, ours);
        let mut body = self.to_erp(map, &sent, None, None)?;
        body.insert(ID_FIELD.into(), Value::String(doc.to_string()));
        self.state().set_creating(doc, true)?;
        let created = match self.erp.insert(map.doctype, &body).await {
            Ok(v) => v,
            // Created by an attempt whose answer was lost: look it up next time.
            Err(ErpError::Invalid { exc_type, .. }) if exc_type == "UniqueValidationError" => {
                return Err(ErpError::Stale.into());
            }
            Err(ErpError::Duplicate(_)) => return Err(ErpError::Stale.into()),
            Err(e) => return Err(e.into()),
        };
        let name = text(&created, "name")
            .ok_or_else(|| BridgeError::Other("create answer without name".into()))?;
        self.set_erp_name(doc, &heads, Some(&name))?;
        let (heads, head) = match self.read_doc(doc)? {
            Some((_, _, h, hd)) => (h, hd),
            None => (heads, head),
        };
        self.save_shadow(
            doc,
            kind,
            &Shadow {
                name,
                modified: text(&created, "modified").unwrap_or_default(),
                heads,
                record: self.read_erp(map, &created, Some(&sent))?,
            },
        )?;
        self.state().set_creating(doc, false)?;
        self.mark(doc, head, |s| s.created += 1);
        Ok(Outcome::Created)
    }

    fn sync_head(&self) -> Result<u64, BridgeError> {
        Ok(self.svc().read(|e| e.head())?)
    }

    fn mark(&self, doc: DocId, head: u64, f: impl FnOnce(&mut BridgeStats)) {
        lock(&self.verified).insert(doc, head);
        let mut s = lock(&self.stats);
        s.reconciled += 1;
        f(&mut s);
    }

    fn deleted_in_erp(
        &self,
        doc: DocId,
        heads: Vec<String>,
        shadow: Option<&Shadow>,
    ) -> Result<Outcome, BridgeError> {
        let base = shadow.map_or(heads, |s| s.heads.clone());
        self.write_as_erp(
            doc,
            &base,
            &[
                FieldChange::Set {
                    field: "deleted".into(),
                    value: Scalar::Bool(true),
                },
                // The record is gone: a document restored later is created again.
                FieldChange::Set {
                    field: "erp_name".into(),
                    value: Scalar::Null,
                },
            ],
        )?;
        self.forget_shadow(doc)?;
        let head = self.sync_head()?;
        self.mark(doc, head, |s| s.deleted += 1);
        Ok(Outcome::DeletedInErp)
    }

    /// Creates the document for an ERPNext record the field has never seen.
    async fn import(&self, kind: EntityKind, name: &str, depth: u8) -> Result<DocId, BridgeError> {
        self.ensure_zone().await?;
        let map = mapping::doc_map(kind);
        let theirs = self.erp.get(map.doctype, name).await?;
        if let Some(doc) = doc_id_of(&theirs).filter(|d| self.read_doc(*d).ok().flatten().is_some())
        {
            self.reconcile_depth(doc, depth).await?;
            return Ok(doc);
        }
        let mut record = loop {
            match self.read_erp(map, &theirs, None) {
                Ok(r) => break r,
                Err(MapError::UnknownLink { kind, name, .. }) if depth < 4 => {
                    Box::pin(self.import(kind, &name, depth + 1)).await?;
                }
                Err(e) => return Err(e.into()),
            }
        };
        // One id per ERPNext record, chosen before anything is written: an import cut short
        // and retried reuses it instead of creating a second document.
        let doc = match self.state().importing(map.doctype, name)? {
            Some(d) => d,
            None => {
                let d = DocId::new_v7(self.svc().now(), rand::random());
                self.state().set_importing(map.doctype, name, Some(d))?;
                d
            }
        };
        record.set("erp_name", Scalar::str(name));
        record.set("deleted", Scalar::Bool(false));
        let entity = AnyEntity::from_record(kind, doc, &record).map_err(|e| {
            BridgeError::Map(MapError::BadValue {
                field: e.field.clone(),
                problem: e.problem,
            })
        })?;
        if self.read_doc(doc)?.is_none() {
            let now = self.svc().now();
            self.svc()
                .with_engine(|e| Ok(((), e.insert(&entity, now)?)))?;
        }
        let mut body = Map::new();
        body.insert(ID_FIELD.into(), Value::String(doc.to_string()));
        let answer = self
            .erp
            .update(
                map.doctype,
                name,
                text(&theirs, "modified").as_deref(),
                &body,
            )
            .await?;
        let heads = self.read_doc(doc)?.map(|d| d.2).unwrap_or_default();
        self.save_shadow(
            doc,
            kind,
            &Shadow {
                name: name.to_owned(),
                modified: text(&answer, "modified").unwrap_or_default(),
                heads,
                record: self.read_erp(map, &answer, Some(&record))?,
            },
        )?;
        self.state().set_importing(map.doctype, name, None)?;
        let head = self.sync_head()?;
        self.mark(doc, head, |s| s.imported += 1);
        Ok(doc)
    }

    /// Reconciles; data ERPNext refuses becomes an issue instead of an error.
    /// Failures that would repeat (the engine refusing ERPNext's values, a link that never
    /// resolves) are tried [`MAX_ATTEMPTS`] times, then parked too.
    async fn reconcile_or_park(&self, doc: DocId) -> Result<Outcome, BridgeError> {
        match self.reconcile(doc).await {
            Ok(o) => Ok(o),
            Err(e) if e.retryable() => {
                if e.bounded() {
                    let tries = {
                        let mut a = lock(&self.attempts);
                        let n = a.entry(doc).or_default();
                        *n += 1;
                        *n
                    };
                    if tries >= MAX_ATTEMPTS {
                        lock(&self.attempts).remove(&doc);
                        self.park(doc, "push", &e)?;
                        return Ok(Outcome::Skipped);
                    }
                }
                Err(e)
            }
            Err(e) => {
                self.park(doc, "push", &e)?;
                Ok(Outcome::Skipped)
            }
        }
    }

    fn park(&self, doc: DocId, direction: &str, e: &BridgeError) -> Result<(), BridgeError> {
        let kind = self
            .svc()
            .read(|en| en.kind(doc))?
            .unwrap_or(EntityKind::Job);
        let exc_type = match e {
            BridgeError::Erp(ErpError::Invalid { exc_type, .. })
            | BridgeError::Erp(ErpError::Server { exc_type, .. }) => exc_type.clone(),
            BridgeError::Erp(ErpError::Duplicate(_)) => "DuplicateEntryError".into(),
            BridgeError::Map(_) => "MappingError".into(),
            BridgeError::Engine(_) => "EngineError".into(),
            BridgeError::CorruptState { .. } => "CorruptState".into(),
            _ => String::new(),
        };
        let issue = Issue {
            doc,
            kind,
            doctype: mapping::doc_map(kind).doctype.to_owned(),
            erp_name: lock(&self.names).by_doc.get(&doc).cloned(),
            direction: direction.to_owned(),
            exc_type,
            message: match e {
                BridgeError::Erp(ErpError::Invalid { message, .. }) => message.clone(),
                other => other.to_string(),
            },
            at: self.svc().now(),
        };
        tracing::warn!(doc = %doc, doctype = %issue.doctype, exc_type = %issue.exc_type, "erpnext.parked");
        self.state().set_issue(&issue)?;
        let head = self.sync_head()?;
        self.mark(doc, head, |s| s.parked += 1);
        Ok(())
    }

    /// One outbound pass: reconciles what changed after the cursor, batch by batch. Stops at the
    /// first transient failure, leaving the cursor before it. Returns how many were reconciled.
    pub async fn push_pass(&self) -> Result<usize, BridgeError> {
        let mut done = 0;
        loop {
            let cursor = lock(&self.stats).cursor;
            let pending = self.svc().read(|e| e.changed_since(cursor))?;
            if pending.is_empty() {
                return Ok(done);
            }
            let window: Vec<(u64, DocId)> = pending.into_iter().take(self.opts.batch).collect();
            let upto = window.iter().map(|x| x.0).max().unwrap_or(cursor);
            let mut batch: Vec<(usize, u64, DocId)> = {
                let verified = lock(&self.verified);
                let window: Vec<(u64, DocId)> = window
                    .into_iter()
                    .filter(|(seq, d)| verified.get(d).is_none_or(|v| v < seq))
                    .collect();
                drop(verified);
                // Referenced kinds first, so links resolve without detours.
                self.svc().read(|e| {
                    window
                        .iter()
                        .map(|&(seq, d)| {
                            let rank = e.kind(d).map_or(mapping::ALL.len(), |k| {
                                mapping::ALL.iter().position(|m| m.kind == k).unwrap_or(0)
                            });
                            (rank, seq, d)
                        })
                        .collect()
                })?
            };
            batch.sort_unstable();
            let results: Vec<(u64, Result<Outcome, BridgeError>)> = futures_util::stream::iter(
                batch
                    .into_iter()
                    .map(|(_, seq, d)| async move { (seq, self.reconcile_or_park(d).await) }),
            )
            .buffer_unordered(self.opts.concurrency.max(1))
            .collect()
            .await;
            let failed = results
                .iter()
                .filter_map(|(seq, r)| r.as_ref().err().map(|e| (*seq, e)))
                .min_by_key(|x| x.0);
            done += results.iter().filter(|r| r.1.is_ok()).count();
            match failed {
                None => self.set_cursor(upto)?,
                Some((seq, e)) => {
                    self.set_cursor(seq.saturating_sub(1).max(cursor))?;
                    let msg = e.to_string();
                    let mut s = lock(&self.stats);
                    s.transient_failures += 1;
                    s.last_error = Some(msg.clone());
                    return Err(BridgeError::Other(msg));
                }
            }
        }
    }

    fn set_cursor(&self, c: u64) -> Result<(), BridgeError> {
        let mut s = lock(&self.stats);
        if c > s.cursor {
            self.state().set_out_cursor(c)?;
            s.cursor = c;
        }
        Ok(())
    }

    /// Re-reads one ERPNext record (a webhook, or a poll row): merges it into its document, or
    /// imports it if the field has never seen it.
    pub async fn refresh_one(&self, doctype: &str, name: &str) -> Result<(), BridgeError> {
        let Some(map) = mapping::by_doctype(doctype) else {
            return Ok(());
        };
        let known = lock(&self.names)
            .by_name
            .get(&(map.kind, name.to_owned()))
            .copied();
        match known {
            Some(doc) => self.reconcile_or_park(doc).await.map(drop),
            None => match self.import(map.kind, name, 0).await {
                Ok(_) | Err(BridgeError::Erp(ErpError::NotFound)) => Ok(()),
                Err(e) if e.retryable() => Err(e),
                Err(e) => {
                    tracing::warn!(doctype, name, error = %e, "erpnext.import_refused");
                    Ok(())
                }
            },
        }
    }

    /// One inbound pass: ERPNext's records modified since each doctype's cursor, then its
    /// deletions. Returns how many records were looked at.
    pub async fn poll_pass(&self) -> Result<usize, BridgeError> {
        let mut seen = 0;
        for map in mapping::ALL {
            seen += self.poll_doctype(map).await?;
        }
        seen += self.poll_deleted().await?;
        Ok(seen)
    }

    async fn poll_doctype(&self, map: &DocMap) -> Result<usize, BridgeError> {
        let mut cursor = looking_back(&self.state().poll_cursor(map.doctype)?);
        let mut start = 0;
        let mut seen = 0;
        loop {
            let rows = self
                .erp
                .list(
                    map.doctype,
                    &["name", "modified", ID_FIELD],
                    &json!([["modified", ">=", cursor]]),
                    "modified asc, name asc",
                    start,
                    self.opts.page,
                )
                .await?;
            let full = rows.len() == self.opts.page;
            let mut work = Vec::new();
            for row in &rows {
                let (Some(name), Some(modified)) = (text(row, "name"), text(row, "modified"))
                else {
                    continue;
                };
                seen += 1;
                // Rows at the cursor's own timestamp come back every time: skip what is known.
                let doc = doc_id_of(row).or_else(|| {
                    lock(&self.names)
                        .by_name
                        .get(&(map.kind, name.clone()))
                        .copied()
                });
                let known = doc.is_some_and(|d| self.in_step_at(d, &modified));
                if !known {
                    work.push(name);
                }
            }
            let doctype = map.doctype;
            let results: Vec<Result<(), BridgeError>> = futures_util::stream::iter(
                work.into_iter()
                    .map(|name| async move { self.refresh_one(doctype, &name).await }),
            )
            .buffer_unordered(self.opts.concurrency.max(1))
            .collect()
            .await;
            for r in results {
                r?;
            }
            let last = rows.last().and_then(|r| text(r, "modified"));
            match last {
                Some(m) if m != cursor => {
                    cursor = m;
                    start = 0;
                    self.state().set_poll_cursor(map.doctype, &cursor)?;
                }
                // A full page all at the cursor's timestamp: page within it.
                Some(_) => start += rows.len(),
                None => {}
            }
            if !full {
                return Ok(seen);
            }
        }
    }

    async fn poll_deleted(&self) -> Result<usize, BridgeError> {
        let doctypes: Vec<&str> = mapping::ALL.iter().map(|m| m.doctype).collect();
        let mut cursor = looking_back(&self.state().deleted_cursor()?);
        let mut seen = 0;
        loop {
            let rows = self
                .erp
                .list(
                    "Deleted Document",
                    &["name", "deleted_doctype", "deleted_name", "creation"],
                    &json!([
                        ["deleted_doctype", "in", doctypes],
                        ["creation", ">=", cursor]
                    ]),
                    "creation asc, name asc",
                    0,
                    self.opts.page,
                )
                .await?;
            let full = rows.len() == self.opts.page;
            for row in &rows {
                seen += 1;
                let (Some(dt), Some(name)) =
                    (text(row, "deleted_doctype"), text(row, "deleted_name"))
                else {
                    continue;
                };
                let Some(map) = mapping::by_doctype(&dt) else {
                    continue;
                };
                let doc = lock(&self.names).by_name.get(&(map.kind, name)).copied();
                if let Some(doc) = doc
                    && let Some((_, r, heads, _)) = self.read_doc(doc)?
                    && r.get("deleted") != &Scalar::Bool(true)
                {
                    match self.state().shadow(doc) {
                        Ok(shadow) => {
                            self.deleted_in_erp(doc, heads, shadow.as_ref())?;
                        }
                        // Its state is unreadable: a person looks at it, the feed goes on.
                        Err(e) => self.park(doc, "pull", &e)?,
                    }
                }
            }
            match rows.last().and_then(|r| text(r, "creation")) {
                Some(c) if c != cursor => {
                    cursor = c;
                    self.state().set_deleted_cursor(&cursor)?;
                }
                _ => return Ok(seen),
            }
            if !full {
                return Ok(seen);
            }
        }
    }

    /// Runs the bridge until `shutdown`: pushes whenever the log moves, polls every
    /// `poll_interval`, re-reads records named by webhooks, backs off while ERPNext fails.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut head = self.svc().watch_head();
        let mut rx = self.refresh_rx.lock().await;
        // While ERPNext fails: 1 s doubling to `max_backoff`, with jitter so several instances
        // (or a restart) do not retry in step.
        let mut backoff: Option<backon::ExponentialBackoff> = None;
        let mut next_poll = tokio::time::Instant::now();
        loop {
            lock(&self.stats).wakeups += 1;
            let mut ok = true;
            if let Err(e) = self.push_pass().await {
                ok = false;
                tracing::warn!(error = %e, "erpnext.push_failed");
            }
            if tokio::time::Instant::now() >= next_poll {
                match self.poll_pass().await {
                    Ok(_) => next_poll = tokio::time::Instant::now() + self.opts.poll_interval,
                    Err(e) => {
                        ok = false;
                        lock(&self.stats).last_error = Some(e.to_string());
                        tracing::warn!(error = %e, "erpnext.poll_failed");
                    }
                }
            }
            let wait = if ok {
                backoff = None;
                lock(&self.stats).last_error = None;
                next_poll.saturating_duration_since(tokio::time::Instant::now())
            } else {
                backoff
                    .get_or_insert_with(|| {
                        backon::ExponentialBuilder::default()
                            .with_min_delay(Duration::from_secs(1))
                            .with_max_delay(self.opts.max_backoff)
                            .with_jitter()
                            .without_max_times()
                            .build()
                    })
                    .next()
                    .unwrap_or(self.opts.max_backoff)
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = head.changed(), if ok => {}
                Some((dt, name)) = rx.recv() => {
                    let mut todo: BTreeMap<(String, String), ()> = BTreeMap::new();
                    todo.insert((dt, name), ());
                    while let Ok((dt, name)) = rx.try_recv() {
                        todo.insert((dt, name), ());
                    }
                    for (dt, name) in todo.into_keys() {
                        if let Err(e) = self.refresh_one(&dt, &name).await {
                            tracing::warn!(doctype = %dt, error = %e, "erpnext.refresh_failed");
                            // The poll catches it up.
                        }
                    }
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}
