//! The server side of sync, in memory and without I/O.
//!
//! [`ServerEngine::sync`] takes one request and returns the response plus the [`ServerEffect`]s the
//! host must make durable *before* sending the response (that is what makes an acknowledgement a
//! promise). The engine keeps every document's saved bytes and materialized record, a change log
//! ordered by sequence number, an index for scopes, and per client the set of documents it holds.

use std::collections::BTreeMap;

use automerge::{Automerge, Change, ChangeHash, ReadDoc};
use chrono::{Duration, NaiveDate};

use crate::auth;
use crate::clock::Millis;
use crate::crdt;
use crate::ids::{Author, DeviceId, DocId, LocationId, Role, TechnicianId};
use crate::merge::FieldConflict;
use crate::model::AnyEntity;
use crate::protocol::{
    DocChanges, PushDoc, RejectReason, Rejection, Snapshot, SyncRefusal, SyncRequest, SyncResponse,
};
use crate::record::{EntityKind, FieldChange, Record, Scalar};

/// Hash maps keyed by our own ids: fast hashing (the keys are not attacker-chosen for collisions:
/// UUIDs are checked and assigned per device) matters on the sync path.
pub type Map<K, V> = rustc_hash::FxHashMap<K, V>;
/// See [`Map`].
pub type Set<T> = rustc_hash::FxHashSet<T>;

/// Whose documents a client receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    /// Their jobs in the window and what those jobs reference.
    Technician(TechnicianId),
    /// All jobs in the window, all technicians, and what the jobs reference.
    Office,
}

/// The date window a scope covers, around the server's today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopeWindow {
    pub days_back: i64,
    pub days_ahead: i64,
}

impl Default for ScopeWindow {
    fn default() -> Self {
        Self {
            days_back: 7,
            days_ahead: 21,
        }
    }
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The author of compensating changes, compactions and seeded data.
    pub author: Author,
    pub window: ScopeWindow,
    /// At most this many snapshots in one response; the rest follow with `more`.
    pub max_snapshots: usize,
    /// Compact a document once this many changes were logged since its last compaction.
    pub compact_after: u32,
    /// How many recently used documents stay loaded in memory (the rest are kept as bytes).
    pub loaded_docs: usize,
    /// How long after a document left a device's scope its offline edits are still accepted.
    pub push_grace_ms: i64,
}

impl ServerConfig {
    pub fn new(author: Author) -> Self {
        Self {
            author,
            window: ScopeWindow::default(),
            max_snapshots: 10_000,
            loaded_docs: 2_048,
            push_grace_ms: 30 * 86_400_000,
            compact_after: 256,
        }
    }
}

/// What the host must persist before answering.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEffect {
    /// The document's current bytes.
    PutDoc {
        doc: DocId,
        kind: EntityKind,
        epoch: u32,
        bytes: Vec<u8>,
    },
    /// A change accepted into the log (`origin`: the pushing device; `None`: the server).
    AppendLog {
        seq: u64,
        doc: DocId,
        origin: Option<DeviceId>,
        change: Vec<u8>,
    },
    /// The document was compacted: its log entries before `seq` are gone and `seq` marks a snapshot.
    Compacted { doc: DocId, seq: u64, epoch: u32 },
    /// The conflicts now open on a document (empty: all settled).
    Conflicts {
        doc: DocId,
        conflicts: Vec<FieldConflict>,
    },
    /// The documents a device holds (or will once it applies this answer) changed: `held` are
    /// new, `released` left it (told to evict). With `reset`, every other document recorded for
    /// the device is released (the first answer of a process: what it recorded before is not
    /// known here). Kept durably, so offline work on a document that left the device's scope is
    /// still accepted within the grace window after a restart or on another instance
    /// ([`ServerEngine::allow_pushes`]).
    Held {
        device: DeviceId,
        held: Vec<DocId>,
        released: Vec<DocId>,
        reset: bool,
        at: Millis,
    },
    /// The log position a device last said it had applied, and when. Kept durably and shared by
    /// every instance: compaction never rebuilds a document past a device seen within the
    /// retention window (see [`ServerEngine::compact`]), whatever restarts in between.
    DeviceCursor {
        device: DeviceId,
        cursor: u64,
        at: Millis,
    },
}

/// How often a device's unchanged position is recorded again (its "last seen" time).
const REPORT_AGAIN_MS: i64 = 3_600_000;

#[derive(Debug, Clone)]
enum Payload {
    Change(Vec<u8>),
    /// The document was compacted here: clients behind this point need a snapshot.
    Snapshot,
}

/// A register (`None`) or a collection item's field (`Some((collection, item))`).
type FieldPath = (Option<(String, String)>, String);

#[derive(Debug, Clone)]
struct LogEntry {
    doc: DocId,
    origin: Option<DeviceId>,
    payload: Payload,
    /// What the commit that logged this entry changed in the materialized record; `None` when
    /// unknown (entries rebuilt from the store, a document's creation): send the whole record.
    touched: Option<std::sync::Arc<[FieldPath]>>,
}

fn touched(before: &Record, after: &Record) -> std::sync::Arc<[FieldPath]> {
    before
        .diff(after)
        .into_iter()
        .map(|c| match c {
            FieldChange::Set { field, .. } => (None, field),
            FieldChange::SetItem {
                collection,
                item,
                field,
                ..
            } => (Some((collection, item)), field),
        })
        .collect()
}

#[derive(Debug, Clone)]
struct DocState {
    kind: EntityKind,
    epoch: u32,
    bytes: Vec<u8>,
    record: Record,
    entity: Option<AnyEntity>,
    conflicts: Vec<FieldConflict>,
    /// Values settled against a person: shown to them, and the document is not compacted
    /// while any is unacknowledged (compaction would forget the losing value).
    overridden: Vec<FieldConflict>,
    /// Sequence numbers of this document's log entries in the current epoch.
    seqs: Vec<u64>,
}

impl DocState {
    fn snapshot(&self, doc: DocId) -> Snapshot {
        Snapshot {
            doc,
            kind: self.kind,
            epoch: self.epoch,
            bytes: self.bytes.clone(),
            record: self.record.clone(),
            conflicts: self.conflicts.clone(),
            overridden: self.overridden.clone(),
        }
    }
    fn last_seq(&self) -> u64 {
        self.seqs.last().copied().unwrap_or(0)
    }
    fn live(&self) -> Option<&AnyEntity> {
        self.entity
            .as_ref()
            .filter(|_| self.record.get("deleted") != &Scalar::Bool(true))
    }
}

#[derive(Debug, Clone, Default)]
struct Known {
    token: u64,
    cursor: u64,
    docs: Set<DocId>,
}

#[derive(Debug, Clone)]
struct Session {
    author: Author,
    subject: Subject,
    confirmed: Known,
    /// Answers sent but not yet confirmed by a later request, newest last. More than one so a
    /// late duplicate request cannot make the server forget what the client really received.
    pending: Vec<Known>,
    /// Documents this device was told to evict, and when: it may still push edits it made
    /// before, within `ServerConfig::push_grace_ms`.
    evicted: Map<DocId, Millis>,
    /// Documents the host found held within the grace window for the exchange under way
    /// ([`ServerEngine::allow_pushes`]); cleared when it ends.
    granted: Set<DocId>,
    /// The position last recorded for this device ([`ServerEffect::DeviceCursor`]) and when.
    reported: Option<(u64, Millis)>,
    /// The documents last recorded as held ([`ServerEffect::Held`]); `None` before the first
    /// answer of this process.
    held: Option<Set<DocId>>,
}

/// How many unconfirmed answers a session remembers.
const PENDING_ANSWERS: usize = 4;

#[derive(Debug, Default)]
struct Index {
    jobs_of_tech: Map<TechnicianId, Set<DocId>>,
    jobs_on: BTreeMap<NaiveDate, Set<DocId>>,
    equipment_at: Map<LocationId, Set<DocId>>,
    subscriptions_at: Map<LocationId, Set<DocId>>,
    technicians: Set<DocId>,
    tags: Set<DocId>,
    /// Live equipment by serial and by MAC: where two records of one unit meet.
    serials: Map<String, Set<DocId>>,
    macs: Map<String, Set<DocId>>,
}

impl Index {
    fn edit(&mut self, id: DocId, e: &AnyEntity, add: bool) {
        fn put<K: std::hash::Hash + Eq>(m: &mut Map<K, Set<DocId>>, k: K, id: DocId, add: bool) {
            if add {
                m.entry(k).or_default().insert(id);
            } else if let Some(s) = m.get_mut(&k) {
                s.remove(&id);
            }
        }
        let set = |s: &mut Set<DocId>| if add { s.insert(id) } else { s.remove(&id) };
        match e {
            AnyEntity::Job(j) => {
                for t in j.technician.iter().chain(&j.assistants) {
                    put(&mut self.jobs_of_tech, *t, id, add);
                }
                if add {
                    self.jobs_on.entry(j.date).or_default().insert(id);
                } else if let Some(s) = self.jobs_on.get_mut(&j.date) {
                    s.remove(&id);
                }
            }
            AnyEntity::Equipment(q) => {
                if let Some(l) = q.location {
                    put(&mut self.equipment_at, l, id, add);
                }
                put(&mut self.serials, q.serial.as_str().to_owned(), id, add);
                if let Some(m) = q.mac {
                    put(&mut self.macs, m.to_string(), id, add);
                }
            }
            AnyEntity::Subscription(s) => put(&mut self.subscriptions_at, s.location, id, add),
            AnyEntity::Technician(_) => {
                set(&mut self.technicians);
            }
            AnyEntity::Tag(_) => {
                set(&mut self.tags);
            }
            AnyEntity::Customer(_) | AnyEntity::Location(_) => {}
        }
    }
}

/// A document as the host stored it (from [`ServerEffect::PutDoc`]).
#[derive(Debug, Clone)]
pub struct StoredDoc {
    pub doc: DocId,
    pub kind: EntityKind,
    pub epoch: u32,
    pub bytes: Vec<u8>,
}

/// A log entry as the host stored it; `change: None` marks a compaction.
#[derive(Debug, Clone)]
pub struct StoredLog {
    pub seq: u64,
    pub doc: DocId,
    pub origin: Option<DeviceId>,
    pub change: Option<Vec<u8>>,
}

/// Statistics for tests, benchmarks and health pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    pub docs: usize,
    pub log_entries: usize,
    pub head_seq: u64,
    pub clients: usize,
}

/// The server side of sync.
#[derive(Debug)]
pub struct ServerEngine {
    config: ServerConfig,
    docs: Map<DocId, DocState>,
    log: BTreeMap<u64, LogEntry>,
    head: u64,
    next_token: u64,
    sessions: Map<DeviceId, Session>,
    index: Index,
    /// Recently used documents, loaded; bounded by `config.loaded_docs`, oldest dropped first.
    loaded: Map<DocId, (Automerge, u64)>,
    loaded_order: std::collections::VecDeque<(DocId, u64)>,
    loaded_clock: u64,
}

/// The changes of each pushed document, decoded and checked against the request's author (or
/// why they cannot be used), in push order. Pure: a host runs it before taking the engine's lock.
#[derive(Debug, Clone)]
pub struct DecodedPushes(Vec<Result<Vec<Change>, RejectReason>>);

/// Decodes every pushed change (checksums, columns) and checks each is the request author's.
pub fn decode_pushes(req: &SyncRequest) -> DecodedPushes {
    let author = req.hello.author;
    DecodedPushes(
        req.push
            .iter()
            .map(|push| {
                push.changes
                    .iter()
                    .map(|bytes| {
                        let change = crdt::decode_change(bytes)
                            .map_err(|e| RejectReason::CorruptChange(e.to_string()))?;
                        if Author::from_actor_bytes(change.actor_id().to_bytes()) == Some(author) {
                            Ok(change)
                        } else {
                            Err(RejectReason::UnknownActor)
                        }
                    })
                    .collect()
            })
            .collect(),
    )
}

/// What a technician reads on a job the office deleted while they were working on it.
const DELETED_NOTE: &str = "Ce travail a été supprimé au bureau (ou dans ERPNext) pendant que vous \
    le faisiez. Rien n'est perdu : le bureau décide de le restaurer ou de l'archiver.";

/// Who pushes, and when.
#[derive(Debug, Clone, Copy)]
struct Pusher {
    device: DeviceId,
    author: Author,
    subject: Subject,
    now: Millis,
    today: NaiveDate,
}

/// The compensating changes that undo one refused part of a push, back to `before` (the server's
/// state). A new item that may not exist cannot be undone by a change: the push is refused.
fn restore(
    denied: &auth::Denied,
    before: &Record,
    after: &Record,
    out: &mut Vec<FieldChange>,
) -> Result<(), RejectReason> {
    match denied.target() {
        auth::Target::Document => {}
        auth::Target::Field(field) => {
            if after.get(field) != before.get(field) {
                out.push(FieldChange::Set {
                    field: field.to_owned(),
                    value: before.get(field).clone(),
                });
            }
        }
        auth::Target::Item { collection, item } => {
            let Some(old) = before.items(collection).and_then(|i| i.get(item)) else {
                return Err(RejectReason::Invalid(denied.to_string()));
            };
            let now = after.items(collection).and_then(|i| i.get(item));
            for (field, value) in old {
                if now.and_then(|n| n.get(field)) != Some(value) {
                    out.push(FieldChange::SetItem {
                        collection: collection.to_owned(),
                        item: item.to_owned(),
                        field: field.clone(),
                        value: value.clone(),
                    });
                }
            }
        }
    }
    Ok(())
}

struct Applied {
    effects: Vec<ServerEffect>,
}

impl ServerEngine {
    pub fn new(config: ServerConfig) -> Self {
        Self {
            config,
            docs: Map::default(),
            log: BTreeMap::new(),
            head: 0,
            next_token: 1,
            sessions: Map::default(),
            index: Index::default(),
            loaded: Map::default(),
            loaded_order: std::collections::VecDeque::new(),
            loaded_clock: 0,
        }
    }

    /// Rebuilds the engine from what the host persisted. Device sessions are not persisted: each
    /// device's first sync after a restart is a full resync (correct, only slower). `token_seed`
    /// starts the answer tokens: the host passes a random value, so tokens from before a restart,
    /// or from another instance, are never reissued to the same device.
    pub fn restore(
        config: ServerConfig,
        docs: Vec<StoredDoc>,
        log: Vec<StoredLog>,
        token_seed: u64,
    ) -> Result<Self, crdt::CrdtError> {
        let mut e = Self::new(config);
        // Tokens count up from the seed; keep clear of 0 (a device's "nothing yet").
        e.next_token = (token_seed >> 1).max(1);
        let mut seqs: Map<DocId, Vec<u64>> = Map::default();
        for l in log {
            e.head = e.head.max(l.seq);
            seqs.entry(l.doc).or_default().push(l.seq);
            e.log_stored(l);
        }
        for d in docs {
            let mut doc_seqs = seqs.remove(&d.doc).unwrap_or_default();
            doc_seqs.sort_unstable();
            e.install(d, doc_seqs)?;
        }
        Ok(e)
    }

    /// Takes in what other server instances sharing the store wrote after this one's head: their
    /// log entries (a `None` change marks a compaction) and the current bytes of the documents
    /// they touched. Entries at or below the head are ignored, so absorbing twice is harmless.
    pub fn absorb(
        &mut self,
        docs: Vec<StoredDoc>,
        log: Vec<StoredLog>,
    ) -> Result<(), crdt::CrdtError> {
        let mut touched: Map<DocId, Vec<(u64, bool)>> = Map::default();
        for l in log {
            if l.seq <= self.head {
                continue;
            }
            self.head = l.seq;
            touched
                .entry(l.doc)
                .or_default()
                .push((l.seq, l.change.is_none()));
            self.log_stored(l);
        }
        for d in docs {
            let Some(entries) = touched.remove(&d.doc) else {
                continue;
            };
            let mut seqs = self
                .docs
                .get(&d.doc)
                .filter(|o| o.epoch == d.epoch)
                .map(|o| o.seqs.clone())
                .unwrap_or_default();
            if let Some(pos) = entries.iter().rposition(|(_, marker)| *marker) {
                // Compacted elsewhere: the older history is gone there, so it goes here too.
                let marker_seq = entries[pos].0;
                let old: Vec<u64> = self
                    .docs
                    .get(&d.doc)
                    .map(|o| o.seqs.clone())
                    .unwrap_or_default();
                for s in old.into_iter().filter(|s| *s < marker_seq) {
                    self.log.remove(&s);
                }
                seqs = entries[pos..].iter().map(|(s, _)| *s).collect();
            } else {
                seqs.extend(entries.iter().map(|(s, _)| *s));
            }
            self.install(d, seqs)?;
        }
        Ok(())
    }

    /// Puts a stored log entry back into the log.
    fn log_stored(&mut self, l: StoredLog) {
        let payload = match l.change {
            Some(c) => Payload::Change(c),
            None => Payload::Snapshot,
        };
        self.log.insert(
            l.seq,
            LogEntry {
                doc: l.doc,
                origin: l.origin,
                payload,
                touched: None,
            },
        );
    }

    /// Installs a stored document (replacing this engine's copy), with its log positions.
    fn install(&mut self, d: StoredDoc, seqs: Vec<u64>) -> Result<(), crdt::CrdtError> {
        let doc = crdt::load(&d.bytes)?;
        let m = crdt::read(&doc, d.kind);
        let entity = AnyEntity::from_record(d.kind, d.doc, &m.record).ok();
        if let Some(e) = self.docs.remove(&d.doc).as_ref().and_then(DocState::live) {
            self.index.edit(d.doc, e, false);
        }
        self.loaded.remove(&d.doc);
        let state = DocState {
            kind: d.kind,
            epoch: d.epoch,
            bytes: d.bytes,
            record: m.record,
            entity,
            conflicts: m.conflicts,
            overridden: m.overridden,
            seqs,
        };
        if let Some(e) = state.live() {
            self.index.edit(d.doc, e, true);
        }
        self.docs.insert(d.doc, state);
        Ok(())
    }

    /// The highest log position this engine holds.
    pub fn head(&self) -> u64 {
        self.head
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Registers (or re-registers) a device; the host has authenticated it.
    pub fn register(&mut self, device: DeviceId, author: Author, subject: Subject) {
        self.sessions.insert(
            device,
            Session {
                author,
                subject,
                confirmed: Known::default(),
                pending: Vec::new(),
                evicted: Map::default(),
                granted: Set::default(),
                reported: None,
                held: None,
            },
        );
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            docs: self.docs.len(),
            log_entries: self.log.len(),
            head_seq: self.head,
            clients: self.sessions.len(),
        }
    }

    /// The materialized record of a document, as the server sees it.
    pub fn record(&self, doc: DocId) -> Option<&Record> {
        self.docs.get(&doc).map(|d| &d.record)
    }
    pub fn kind(&self, doc: DocId) -> Option<EntityKind> {
        self.docs.get(&doc).map(|d| d.kind)
    }
    pub fn entity(&self, doc: DocId) -> Option<&AnyEntity> {
        self.docs.get(&doc).and_then(|d| d.entity.as_ref())
    }
    pub fn doc_bytes(&self, doc: DocId) -> Option<(u32, &[u8])> {
        self.docs.get(&doc).map(|d| (d.epoch, d.bytes.as_slice()))
    }
    pub fn doc_ids(&self) -> impl Iterator<Item = DocId> + '_ {
        self.docs.keys().copied()
    }
    /// Documents changed after log position `after`, each once at its latest position, in order.
    /// Live-event streams replay this after a reconnect.
    pub fn changed_since(&self, after: u64) -> Vec<(u64, DocId)> {
        let mut latest: Map<DocId, u64> = Map::default();
        for (seq, e) in self.log.range(after.saturating_add(1)..) {
            latest.insert(e.doc, *seq);
        }
        let mut out: Vec<(u64, DocId)> = latest.into_iter().map(|(d, s)| (s, d)).collect();
        out.sort_unstable();
        out
    }

    /// Every value settled against a person, by document (shown to them until acknowledged).
    pub fn overridden(&self) -> Vec<(DocId, FieldConflict)> {
        self.docs
            .iter()
            .flat_map(|(id, d)| d.overridden.iter().map(move |c| (*id, c.clone())))
            .collect()
    }

    /// The open conflicts of one document.
    pub fn conflicts_of(&self, doc: DocId) -> &[FieldConflict] {
        self.docs.get(&doc).map_or(&[], |d| d.conflicts.as_slice())
    }

    /// How many open conflicts there are (a gauge read at every metrics scrape: counted, not
    /// copied).
    pub fn conflict_count(&self) -> usize {
        self.docs.values().map(|d| d.conflicts.len()).sum()
    }

    /// Every open conflict, for the dispatchers' inbox.
    pub fn conflicts(&self) -> Vec<(DocId, FieldConflict)> {
        let mut out: Vec<(DocId, FieldConflict)> = self
            .docs
            .iter()
            .flat_map(|(id, d)| d.conflicts.iter().map(move |c| (*id, c.clone())))
            .collect();
        out.sort_by(|a, b| (a.0, &a.1.field).cmp(&(b.0, &b.1.field)));
        out
    }

    /// Creates a document authored by the server (seeding, and ERPNext records new to the field).
    pub fn insert(
        &mut self,
        entity: &AnyEntity,
        now: Millis,
    ) -> Result<Vec<ServerEffect>, crdt::CrdtError> {
        let id = entity.doc_id();
        let record = entity.to_record();
        let (doc, change) = crdt::create(entity.kind(), self.config.author, now, &record)?;
        let mut effects = Vec::new();
        self.commit_doc(
            id,
            (entity.kind(), 0),
            doc,
            (None, None),
            vec![(change, None)],
            &mut effects,
        );
        Ok(effects)
    }

    /// Creates many documents (seeding a data set); the effects of all of them.
    pub fn insert_all(
        &mut self,
        entities: &[AnyEntity],
        now: Millis,
    ) -> Result<Vec<ServerEffect>, crdt::CrdtError> {
        let mut effects = Vec::new();
        for e in entities {
            effects.extend(self.insert(e, now)?);
        }
        Ok(effects)
    }

    /// Edits a document as the server (administrative fixes, compensations, benchmarks).
    pub fn edit(
        &mut self,
        id: DocId,
        changes: &[FieldChange],
        now: Millis,
    ) -> Result<Vec<ServerEffect>, crdt::CrdtError> {
        let author = self.config.author;
        // No base: written on the current state.
        Ok(self.edit_concurrent(id, &[], &author, changes, now)?.0)
    }

    /// When the current value of `field` of `id` was written, by the writer's clock
    /// ([`crdt::written_at`]).
    pub fn written_at(
        &mut self,
        id: DocId,
        field: &str,
    ) -> Result<Option<Millis>, crdt::CrdtError> {
        if !self.docs.contains_key(&id) {
            return Ok(None);
        }
        let doc = self.checkout(id)?;
        let at = crdt::written_at(&doc, field);
        self.keep_loaded(id, doc);
        Ok(at)
    }

    /// The document's heads (hex), for a bridge that later writes concurrently with them.
    pub fn heads(&mut self, id: DocId) -> Result<Vec<String>, crdt::CrdtError> {
        if !self.docs.contains_key(&id) {
            return Ok(Vec::new());
        }
        let doc = self.checkout(id)?;
        let heads = crdt::heads_hex(&doc);
        self.keep_loaded(id, doc);
        Ok(heads)
    }

    /// Edits a document as `author` (the ERPNext bridge) as if made at `base`, concurrently with
    /// what the document gained since: merge policies settle both sides and conflicts are listed,
    /// exactly as for two devices. Returns the effects and the document's new heads.
    pub fn edit_concurrent(
        &mut self,
        id: DocId,
        base: &[String],
        author: &Author,
        changes: &[FieldChange],
        now: Millis,
    ) -> Result<(Vec<ServerEffect>, Vec<String>), crdt::CrdtError> {
        let Some(state) = self.docs.get(&id) else {
            return Ok((Vec::new(), Vec::new()));
        };
        let (kind, epoch) = (state.kind, state.epoch);
        let mut doc = self.checkout(id)?;
        let mut effects = Vec::new();
        // On error the checked-out copy is dropped, not kept loaded: the stored bytes are intact.
        let change = crdt::write_concurrent(&mut doc, base, author, now, changes)?;
        let heads = crdt::heads_hex(&doc);
        match change {
            Some(change) => self.commit_doc(
                id,
                (kind, epoch),
                doc,
                (None, None),
                vec![(change, None)],
                &mut effects,
            ),
            None => self.keep_loaded(id, doc),
        }
        Ok((effects, heads))
    }

    fn commit_doc(
        &mut self,
        id: DocId,
        (kind, epoch): (EntityKind, u32),
        doc: Automerge,
        (m, pushed): (Option<crdt::Materialized>, Option<&[FieldPath]>),
        changes: Vec<(Vec<u8>, Option<DeviceId>)>,
        effects: &mut Vec<ServerEffect>,
    ) {
        let m = m.unwrap_or_else(|| crdt::read(&doc, kind));
        let bytes = doc.save();
        let old = self.docs.remove(&id);
        // A document that stopped being a valid entity (office data typed by hand) keeps its
        // last valid reading for scopes: it never evicts anyone's pending work.
        let entity = AnyEntity::from_record(kind, id, &m.record)
            .ok()
            .or_else(|| old.as_ref().and_then(|o| o.entity.clone()));
        if let Some(e) = old.as_ref().and_then(DocState::live) {
            self.index.edit(id, e, false);
        }
        let mut seqs = old
            .as_ref()
            .filter(|o| o.epoch == epoch)
            .map(|o| o.seqs.clone())
            .unwrap_or_default();
        // What the commit changed, plus what the pushed changes themselves wrote: a write the
        // server undid (a compensation) leaves the server's reading as it was, but the device
        // that pushed it shows its own value until it gets the undoing change, so that field
        // travels with the changes too.
        let changed = old.as_ref().map(|o| {
            let t = touched(&o.record, &m.record);
            match pushed {
                Some(p) if !p.is_empty() => {
                    let all: std::collections::BTreeSet<FieldPath> =
                        t.iter().chain(p.iter()).cloned().collect();
                    all.into_iter().collect()
                }
                _ => t,
            }
        });
        for (change, origin) in changes {
            self.head += 1;
            seqs.push(self.head);
            effects.push(ServerEffect::AppendLog {
                seq: self.head,
                doc: id,
                origin,
                change: change.clone(),
            });
            self.log.insert(
                self.head,
                LogEntry {
                    doc: id,
                    origin,
                    payload: Payload::Change(change),
                    touched: changed.clone(),
                },
            );
        }
        if old.as_ref().map(|o| &o.conflicts) != Some(&m.conflicts)
            && !(old.is_none() && m.conflicts.is_empty())
        {
            effects.push(ServerEffect::Conflicts {
                doc: id,
                conflicts: m.conflicts.clone(),
            });
        }
        effects.push(ServerEffect::PutDoc {
            doc: id,
            kind,
            epoch,
            bytes: bytes.clone(),
        });
        let state = DocState {
            kind,
            epoch,
            bytes,
            record: m.record,
            entity,
            conflicts: m.conflicts,
            overridden: m.overridden,
            seqs,
        };
        if let Some(e) = state.live() {
            self.index.edit(id, e, true);
        }
        self.docs.insert(id, state);
        self.keep_loaded(id, doc);
    }

    /// One sync exchange for an authenticated device.
    pub fn sync(
        &mut self,
        device: DeviceId,
        req: &SyncRequest,
        today: NaiveDate,
        now: Millis,
    ) -> Result<(SyncResponse, Vec<ServerEffect>), SyncRefusal> {
        let decoded = decode_pushes(req);
        self.sync_decoded(device, req, &decoded, today, now)
    }

    /// [`Self::sync`] with the pushed changes already decoded by [`decode_pushes`] (which a
    /// host runs before taking the engine's lock: the heavy decoding of a large push then never
    /// holds up other devices).
    pub fn sync_decoded(
        &mut self,
        device: DeviceId,
        req: &SyncRequest,
        decoded: &DecodedPushes,
        today: NaiveDate,
        now: Millis,
    ) -> Result<(SyncResponse, Vec<ServerEffect>), SyncRefusal> {
        if decoded.0.len() != req.push.len() {
            return Err(SyncRefusal::TooLarge {
                what: "the decoded pushes do not match the request".into(),
            });
        }
        let session = self
            .sessions
            .get(&device)
            .ok_or(SyncRefusal::UnknownClient)?;
        if session.author != req.hello.author {
            return Err(SyncRefusal::UnknownClient);
        }
        let (author, subject) = (session.author, session.subject);
        if req.push.len() > crate::sync::client::MAX_PUSH_DOCS {
            return Err(SyncRefusal::TooLarge {
                what: format!(
                    "{} documents pushed at once, at most {}",
                    req.push.len(),
                    crate::sync::client::MAX_PUSH_DOCS
                ),
            });
        }

        let pushed: usize = req.push.iter().map(|p| p.changes.len()).sum();
        if pushed > crate::sync::client::MAX_PUSH_CHANGES {
            return Err(SyncRefusal::TooLarge {
                what: format!(
                    "{pushed} changes pushed at once, at most {}",
                    crate::sync::client::MAX_PUSH_CHANGES
                ),
            });
        }

        // Log entries past this come from this request's own pushes, which the device holds.
        let head_before = self.head;
        let mut effects = Vec::new();
        let mut rejected = Vec::new();
        // What the device could see before this exchange: it may only write there, to
        // documents it creates, and to documents it held within the grace window (told to evict
        // while it still had edits, or known to the host from the durable `Held` records:
        // `allow_pushes`). Knowing a document's history is not a permission.
        let mut visible_before: Option<Set<DocId>> = None;
        // Documents this request creates, applied first: a job's new equipment line may name
        // equipment created in the same request.
        let mut created: Set<DocId> = Set::default();
        let mut order: Vec<(&PushDoc, &Result<Vec<Change>, RejectReason>)> =
            req.push.iter().zip(&decoded.0).collect();
        order.sort_by_key(|(p, _)| self.docs.contains_key(&p.doc));
        let who = Pusher {
            device,
            author,
            subject,
            now,
            today,
        };
        for (push, changes) in order {
            let new = !self.docs.contains_key(&push.doc);
            let visible = new
                || self.holds(device, push.doc, now)
                || visible_before
                    .get_or_insert_with(|| self.scope(subject, today))
                    .contains(&push.doc);
            if !visible {
                rejected.push(Rejection {
                    doc: push.doc,
                    reason: RejectReason::OutOfScope,
                    snapshot: None,
                });
                continue;
            }
            let undecided_twin = self.open_on(push.doc, "duplicate_of");
            let applied = match changes {
                Ok(changes) => self.apply_push(&who, push, changes, &mut visible_before, &created),
                Err(reason) => Err(reason.clone()),
            };
            match applied {
                Ok(applied) => {
                    if new && self.docs.contains_key(&push.doc) {
                        created.insert(push.doc);
                    }
                    effects.extend(applied.effects);
                    if undecided_twin && !self.open_on(push.doc, "duplicate_of") {
                        effects.extend(self.merge_duplicate(push.doc, now));
                    }
                }
                Err(reason) => rejected.push(Rejection {
                    doc: push.doc,
                    reason,
                    snapshot: self.docs.get(&push.doc).map(|d| d.snapshot(push.doc)),
                }),
            }
        }

        let full_resync = !self.confirm(device, req.cursor, req.token);
        let empty = Known::default();
        let known = match self.sessions.get(&device) {
            Some(s) if !full_resync => &s.confirmed,
            _ => &empty,
        };
        let scope = self.scope(subject, today);
        let mut entering: Vec<DocId> = scope
            .iter()
            .filter(|d| !known.docs.contains(d))
            .copied()
            .collect();
        entering.sort_unstable();
        let more = entering.len() > self.config.max_snapshots;
        entering.truncate(self.config.max_snapshots);
        let mut evict: Vec<DocId> = known
            .docs
            .iter()
            .filter(|d| !scope.contains(d))
            .copied()
            .collect();
        evict.sort_unstable();

        let mut snapshot_ids: Vec<DocId> = entering.clone();
        let mut changes: Vec<DocChanges> = Vec::new();
        if !known.docs.is_empty() {
            let mut at: Map<DocId, usize> = Map::default();
            // Per document: the paths the changes touched (`None`: unknown, send it whole).
            let mut paths: Vec<Option<std::collections::BTreeSet<&FieldPath>>> = Vec::new();
            let mut resnap: Set<DocId> = Set::default();
            for (seq, e) in self.log.range(known.cursor + 1..) {
                if !known.docs.contains(&e.doc)
                    || !scope.contains(&e.doc)
                    || resnap.contains(&e.doc)
                {
                    continue;
                }
                match &e.payload {
                    Payload::Snapshot => {
                        resnap.insert(e.doc);
                    }
                    // The changes this request pushed are not sent back: the device holds them.
                    // Its earlier ones after its position are: it may not hold them any more (a
                    // retry whose answer was lost, a device restored from a backup, a late
                    // request applied after the device moved its edit onto the server's copy).
                    Payload::Change(bytes) if e.origin != Some(device) || *seq <= head_before => {
                        let Some(state) = self.docs.get(&e.doc) else {
                            continue;
                        };
                        let i = *at.entry(e.doc).or_insert_with(|| {
                            changes.push(DocChanges {
                                doc: e.doc,
                                kind: state.kind,
                                epoch: state.epoch,
                                changes: Vec::new(),
                                record: Record::default(),
                                conflicts: state.conflicts.clone(),
                                overridden: state.overridden.clone(),
                                partial: true,
                            });
                            paths.push(Some(std::collections::BTreeSet::new()));
                            changes.len() - 1
                        });
                        changes[i].changes.push(bytes.clone());
                        match (&mut paths[i], &e.touched) {
                            (Some(p), Some(t)) => p.extend(t.iter()),
                            (p, _) => *p = None,
                        }
                    }
                    Payload::Change(_) => {}
                }
            }
            for (c, p) in changes.iter_mut().zip(&paths) {
                let Some(state) = self.docs.get(&c.doc) else {
                    continue;
                };
                match p {
                    Some(p) => c.record = state.record.only(p.iter().copied()),
                    None => {
                        c.record = state.record.clone();
                        c.partial = false;
                    }
                }
            }
            changes.retain(|c| !resnap.contains(&c.doc));
            let mut resnap: Vec<DocId> = resnap.into_iter().collect();
            resnap.sort_unstable();
            snapshot_ids.extend(resnap);
        }
        let snapshots: Vec<Snapshot> = snapshot_ids
            .iter()
            .filter_map(|id| self.docs.get(id).map(|d| d.snapshot(*id)))
            .collect();

        // What the client will hold once it applies this answer: its scope, minus entering
        // documents held back for a later page.
        let docs: Set<DocId> = if more {
            let mut d: Set<DocId> = known
                .docs
                .iter()
                .filter(|d| scope.contains(d))
                .copied()
                .collect();
            d.extend(entering.iter().copied());
            d
        } else {
            scope
        };
        let token = self.next_token;
        self.next_token += 1;
        let cursor = self.head;
        // Where the device stands, recorded durably for compaction. An unconfirmed position
        // past this server's head comes from another history (a server restored from an older
        // backup): it counts as nothing, so no document is compacted before the device could
        // compare it with its own copy and send again what the server lost.
        let position = if full_resync && req.cursor > self.head {
            0
        } else {
            req.cursor.min(self.head)
        };
        if let Some(s) = self.sessions.get_mut(&device) {
            // What the device holds, recorded durably when it changes.
            let (held, released, reset) = match &s.held {
                None => (docs.iter().copied().collect::<Vec<_>>(), Vec::new(), true),
                Some(old) => (
                    docs.iter().filter(|d| !old.contains(d)).copied().collect(),
                    old.iter().filter(|d| !docs.contains(d)).copied().collect(),
                    false,
                ),
            };
            if reset || !held.is_empty() || !released.is_empty() {
                let (mut held, mut released) = (held, released);
                held.sort_unstable();
                released.sort_unstable();
                effects.push(ServerEffect::Held {
                    device,
                    held,
                    released,
                    reset,
                    at: now,
                });
            }
            s.held = Some(docs.clone());
            let due = s.reported.is_none_or(|(c, at)| {
                c != position || now.0.saturating_sub(at.0) >= REPORT_AGAIN_MS
            });
            if due {
                s.reported = Some((position, now));
                effects.push(ServerEffect::DeviceCursor {
                    device,
                    cursor: position,
                    at: now,
                });
            }
            // Told to evict: the device may still push edits it made before it heard.
            for d in &evict {
                s.evicted.entry(*d).or_insert(now);
            }
            s.granted.clear();
            for d in &snapshot_ids {
                s.evicted.remove(d);
            }
            s.pending.push(Known {
                token,
                cursor,
                docs,
            });
            if s.pending.len() > PENDING_ANSWERS {
                s.pending.remove(0);
            }
        }
        let resp = SyncResponse {
            base_cursor: req.cursor,
            base_token: req.token,
            cursor,
            token,
            acked_outbox: req.outbox_upto,
            snapshots,
            changes,
            evict,
            rejected,
            more,
            full_resync,
        };
        Ok((resp, effects))
    }

    /// Whether a job this device may write (in its scope, or held within the grace window)
    /// names a photo or signature by this SHA-256: what a device may upload.
    pub fn wants_photo(
        &self,
        device: DeviceId,
        subject: Subject,
        today: NaiveDate,
        now: Millis,
        sha256: &str,
    ) -> bool {
        let names = |d: &DocId| match self.docs.get(d).and_then(DocState::live) {
            Some(AnyEntity::Job(j)) => {
                j.photos.iter().any(|p| p.sha256 == sha256)
                    || j.signature
                        .as_ref()
                        .is_some_and(|s| s.image_sha256 == sha256)
            }
            _ => false,
        };
        let held = self.sessions.get(&device).into_iter().flat_map(|s| {
            s.confirmed
                .docs
                .iter()
                .chain(s.evicted.keys())
                .filter(|d| self.holds(device, **d, now))
        });
        held.chain(self.scope(subject, today).iter()).any(names)
    }

    /// Lets a device push to documents the host knows it held within the grace window (from the
    /// durable [`ServerEffect::Held`] records): offline work on a job that left its scope, after
    /// a restart or through another instance, is still judged like any other write.
    pub fn allow_pushes(&mut self, device: DeviceId, docs: impl IntoIterator<Item = DocId>) {
        if let Some(s) = self.sessions.get_mut(&device) {
            s.granted = docs.into_iter().collect();
        }
    }

    /// Whether the device holds a document, or was told to evict it within the grace window.
    fn holds(&self, device: DeviceId, doc: DocId, now: Millis) -> bool {
        self.sessions.get(&device).is_some_and(|s| {
            s.confirmed.docs.contains(&doc)
                || s.pending.iter().any(|p| p.docs.contains(&doc))
                || s.granted.contains(&doc)
                || s.evicted
                    .get(&doc)
                    .is_some_and(|at| now.0.saturating_sub(at.0) <= self.config.push_grace_ms)
        })
    }

    /// Finds what the client holds, as of the answer it last applied (named by cursor and token),
    /// and makes it the confirmed state. `false` when the position is unknown (a first sync, a
    /// late duplicate, a server restart): the client then gets its whole scope again, which
    /// merges harmlessly into what it has.
    fn confirm(&mut self, device: DeviceId, cursor: u64, token: u64) -> bool {
        let Some(s) = self.sessions.get_mut(&device) else {
            return false;
        };
        if cursor == 0 && token == 0 {
            return false;
        }
        if let Some(i) = s
            .pending
            .iter()
            .position(|p| p.token == token && p.cursor == cursor)
        {
            s.confirmed = s.pending.remove(i);
            s.pending.clear();
        }
        s.confirmed.token == token && s.confirmed.cursor == cursor
    }

    fn apply_push(
        &mut self,
        who: &Pusher,
        push: &PushDoc,
        decoded: &[Change],
        visible_before: &mut Option<Set<DocId>>,
        created: &Set<DocId>,
    ) -> Result<Applied, RejectReason> {
        let Pusher {
            device,
            author,
            subject,
            now,
            today,
        } = *who;
        let existing = self.docs.get(&push.doc);
        let existing_epoch = existing.map(|s| s.epoch);
        if let Some(state) = existing {
            if state.kind != push.kind {
                return Err(RejectReason::KindMismatch);
            }
            if state.epoch != push.epoch {
                return Err(RejectReason::StaleEpoch {
                    current: state.epoch,
                });
            }
        } else if push.epoch != 0 {
            return Err(RejectReason::StaleEpoch { current: 0 });
        }
        let epoch = push.epoch;
        let before: Option<Record> = existing.map(|s| s.record.clone());
        // Work on a checked-out copy: on any refusal it is dropped and the state stays as it was.
        let mut doc = match before {
            Some(_) => self
                .checkout(push.doc)
                .map_err(|e| RejectReason::CorruptChange(e.to_string()))?,
            None => Automerge::new(),
        };

        let mut fresh: Vec<Change> = Vec::new();
        let mut seen: Set<ChangeHash> = Set::default();
        for change in decoded {
            // Decoded outside the lock by `decode_pushes`, for this request's author.
            if Author::from_actor_bytes(change.actor_id().to_bytes()) != Some(author) {
                return Err(RejectReason::UnknownActor);
            }
            if doc.get_change_by_hash(&change.hash()).is_none() && seen.insert(change.hash()) {
                fresh.push(change.clone());
            }
        }
        if fresh.is_empty() {
            // A retry of changes already merged: acknowledge, and keep the document loaded.
            if existing_epoch.is_some() {
                self.keep_loaded(push.doc, doc);
            }
            return Ok(Applied {
                effects: Vec::new(),
            });
        }
        let base_heads: Vec<ChangeHash> = {
            let mut deps: Vec<ChangeHash> = fresh
                .iter()
                .flat_map(|c| c.deps().iter().copied())
                .filter(|h| !seen.contains(h))
                .collect();
            deps.sort_unstable();
            deps.dedup();
            deps
        };
        let heads_before = doc.get_heads();
        let logged: Vec<(Vec<u8>, Option<DeviceId>)> = fresh
            .iter()
            .map(|c| (c.raw_bytes().to_vec(), Some(device)))
            .collect();
        crdt::apply(&mut doc, fresh.clone()).map_err(|e| match e {
            crdt::CrdtError::Automerge(automerge::AutomergeError::DuplicateSeqNumber(..)) => {
                RejectReason::ReusedSequence
            }
            _ => RejectReason::MissingDependencies,
        })?;
        let after = crdt::read(&doc, push.kind);
        let entity = AnyEntity::from_record(push.kind, push.doc, &after.record)
            .map_err(|e| RejectReason::Invalid(e.to_string()))?;
        // Nothing hidden: no key outside the schema, no object or bytes where a value belongs, no
        // oversized value, not even as a losing concurrent value (what the server's copy already
        // held, from before these checks, is not this push's doing).
        let mut strays: Vec<String> = after.strays.iter().map(ToString::to_string).collect();
        if !strays.is_empty() {
            let old = doc
                .fork_at(&heads_before)
                .map_err(|_| RejectReason::MissingDependencies)?;
            let held: Set<String> = crdt::read(&old, push.kind)
                .strays
                .iter()
                .map(ToString::to_string)
                .collect();
            strays.retain(|s| !held.contains(s));
            if !strays.is_empty() {
                return Err(RejectReason::Invalid(strays.join("; ")));
            }
        }
        // A device names only documents it can see, of the right kind: its writes never widen
        // its scope.
        if let Subject::Technician(_) = subject {
            for r in auth::references(push.kind, before.as_ref(), &after.record) {
                let right_kind = self
                    .docs
                    .get(&r.doc)
                    .is_some_and(|d| d.kind == r.kind && d.live().is_some());
                let seen_by_device = created.contains(&r.doc)
                    || self.holds(device, r.doc, now)
                    || visible_before
                        .get_or_insert_with(|| self.scope(subject, today))
                        .contains(&r.doc);
                if !(right_kind && seen_by_device) {
                    return Err(RejectReason::Invalid(format!(
                        "`{}` names no {} this device can see",
                        r.path,
                        r.kind.as_str()
                    )));
                }
            }
        }

        let mut compensation: Vec<FieldChange> = Vec::new();
        if !auth::check(push.kind, author.role, before.as_ref(), &after.record).is_empty() {
            match &before {
                None => {
                    for denied in auth::check(push.kind, author.role, None, &after.record) {
                        match denied.target() {
                            // Allowed to create, with a field it may not set: that field is
                            // left blank.
                            auth::Target::Field(f) => compensation.push(FieldChange::Set {
                                field: f.to_owned(),
                                value: auth::blank(f),
                            }),
                            // A kind it may not create: nothing is stored.
                            auth::Target::Document | auth::Target::Item { .. } => {
                                return Err(RejectReason::Invalid(denied.to_string()));
                            }
                        }
                    }
                }
                Some(before) => {
                    // Judge the change against the state its author saw, not against concurrent
                    // edits the server merged meanwhile; then restore what it was not allowed to
                    // change.
                    let mut base = doc
                        .fork_at(&base_heads)
                        .map_err(|_| RejectReason::MissingDependencies)?;
                    let seen_state = crdt::read(&base, push.kind).record;
                    crdt::apply(&mut base, fresh).map_err(|_| RejectReason::MissingDependencies)?;
                    let made = crdt::read(&base, push.kind).record;
                    for denied in auth::check(push.kind, author.role, Some(&seen_state), &made) {
                        restore(&denied, before, &after.record, &mut compensation)?;
                    }
                }
            }
        }
        // Field work that lands on a document deleted meanwhile (by the office, or in ERPNext)
        // is not left inside a deleted document nobody sees: the deletion becomes a decision for
        // the office (restore, or archive the work), the document stays visible until then,
        // and a note on the job tells the technician.
        let restored: Set<String> = compensation.iter().map(|c| c.target().to_owned()).collect();
        let work_on_deleted = author.role == Role::Technician
            && before.as_ref().is_some_and(|b| {
                b.get("deleted") == &Scalar::Bool(true)
                    && b.diff(&after.record)
                        .iter()
                        .any(|c| !restored.contains(c.target()))
            });
        if work_on_deleted && push.kind == EntityKind::Job {
            let key = format!("deleted-{}", now.0);
            let item = |field: &str, value: Scalar| FieldChange::SetItem {
                collection: "notes".into(),
                item: key.clone(),
                field: field.into(),
                value,
            };
            compensation.extend([
                item("text", Scalar::str(DELETED_NOTE)),
                item("author", Scalar::Null),
                item("at", Scalar::Int(now.0)),
            ]);
        }
        // Whoever the device says wrote a note, it is the session's technician.
        let technician = match subject {
            Subject::Technician(t) => Some(t.to_string()),
            Subject::Office => None,
        };
        compensation.extend(auth::authorship(
            push.kind,
            before.as_ref(),
            &after.record,
            technician.as_deref(),
        ));
        let mut changes = logged;
        let pushed = before.as_ref().map(|b| touched(b, &after.record));
        let mut materialized = Some(after);
        if let Some(fix) = crdt::write(&mut doc, self.config.author, now, &compensation)
            .map_err(|e| RejectReason::CorruptChange(e.to_string()))?
        {
            changes.push((fix, None));
            materialized = None;
        }
        // Two records of one unit (two technicians registered it offline, each at their job):
        // the office decides whether they are the same unit (`duplicate_of` kept) or not.
        let duplicate = match &entity {
            AnyEntity::Equipment(q) if author.role != Role::Server => {
                self.twin(push.doc, q, before.as_ref())
            }
            _ => None,
        };
        if let Some(twin) = duplicate {
            let values = [&Scalar::str(twin.to_string()), &Scalar::Null];
            for c in crdt::open_decision(&mut doc, self.config.author, now, "duplicate_of", values)
                .map_err(|e| RejectReason::CorruptChange(e.to_string()))?
            {
                changes.push((c, None));
            }
            materialized = None;
        }
        if work_on_deleted {
            let deleted = [&Scalar::Bool(false), &Scalar::Bool(true)];
            for c in crdt::open_decision(&mut doc, self.config.author, now, "deleted", deleted)
                .map_err(|e| RejectReason::CorruptChange(e.to_string()))?
            {
                changes.push((c, None));
            }
            materialized = None;
        }
        let mut effects = Vec::new();
        self.commit_doc(
            push.doc,
            (push.kind, epoch),
            doc,
            (materialized, pushed.as_deref()),
            changes,
            &mut effects,
        );
        Ok(Applied { effects })
    }

    /// Whether a conflict is open on a document's register.
    fn open_on(&self, doc: DocId, field: &str) -> bool {
        self.docs
            .get(&doc)
            .is_some_and(|d| d.conflicts.iter().any(|c| c.field == field))
    }

    /// The office decided that `dup` is the same unit as the record its `duplicate_of` names:
    /// every job's equipment line naming `dup` is pointed at the twin, and `dup` is deleted, so
    /// one record of the unit remains everywhere (its history stays in the deleted record). A
    /// decision that it is another unit changes nothing here.
    fn merge_duplicate(&mut self, dup: DocId, now: Millis) -> Vec<ServerEffect> {
        let Some(twin) = self
            .docs
            .get(&dup)
            .and_then(|d| d.record.get("duplicate_of").as_str()?.parse::<DocId>().ok())
            .filter(|t| self.docs.get(t).is_some_and(|d| d.live().is_some()))
        else {
            return Vec::new();
        };
        let (dup_s, twin_s) = (dup.to_string(), Scalar::str(twin.to_string()));
        let mut lines: Vec<(DocId, Vec<FieldChange>)> = Vec::new();
        for (id, d) in &self.docs {
            let Some(items) = d.record.items("equipment_items") else {
                continue;
            };
            let mut fix = Vec::new();
            for (key, it) in items {
                for f in ["equipment", "replaces"] {
                    if it.get(f).and_then(Scalar::as_str) == Some(dup_s.as_str()) {
                        fix.push(FieldChange::SetItem {
                            collection: "equipment_items".into(),
                            item: key.clone(),
                            field: f.into(),
                            value: twin_s.clone(),
                        });
                    }
                }
            }
            if !fix.is_empty() {
                lines.push((*id, fix));
            }
        }
        let mut effects = Vec::new();
        let mut all_repointed = true;
        for (id, fix) in lines {
            match self.edit(id, &fix, now) {
                Ok(e) => effects.extend(e),
                // An unreadable job keeps naming `dup`, which then stays (a confirmed duplicate,
                // out of ERPNext) rather than leave the line pointing at a deleted record.
                Err(_) => all_repointed = false,
            }
        }
        if all_repointed {
            let delete = FieldChange::Set {
                field: "deleted".into(),
                value: Scalar::Bool(true),
            };
            if let Ok(e) = self.edit(dup, &[delete], now) {
                effects.extend(e);
            }
        }
        effects
    }

    /// Another live record with the serial or MAC this equipment now has, when the write gave it
    /// that serial or MAC and no decision about a twin was made on it yet.
    fn twin(
        &self,
        id: DocId,
        q: &crate::model::ServiceEquipment,
        before: Option<&Record>,
    ) -> Option<DocId> {
        let serial = q.serial.as_str();
        let mac = q.mac.map(|m| m.to_string());
        let changed = before.is_none_or(|b| {
            b.get("serial").as_str() != Some(serial)
                || b.get("mac").as_str().map(str::to_owned) != mac
        });
        let decided = q.duplicate_of.is_some()
            || before.is_some_and(|b| b.get("duplicate_of") != &Scalar::Null)
            || self.open_on(id, "duplicate_of");
        if !changed || decided {
            return None;
        }
        let by_serial = self.index.serials.get(serial).into_iter().flatten();
        let by_mac = mac
            .as_ref()
            .and_then(|m| self.index.macs.get(m))
            .into_iter()
            .flatten();
        by_serial.chain(by_mac).copied().filter(|d| *d != id).min()
    }

    /// Takes a document out of the loaded set, or loads it from its bytes.
    fn checkout(&mut self, id: DocId) -> Result<Automerge, crdt::CrdtError> {
        if let Some((doc, _)) = self.loaded.remove(&id) {
            return Ok(doc);
        }
        let bytes = self
            .docs
            .get(&id)
            .map(|d| d.bytes.as_slice())
            .unwrap_or_default();
        crdt::load(bytes)
    }

    /// Keeps a document loaded, dropping the least recently stored ones past the limit.
    fn keep_loaded(&mut self, id: DocId, doc: Automerge) {
        if self.config.loaded_docs == 0 {
            return;
        }
        self.loaded_clock += 1;
        self.loaded.insert(id, (doc, self.loaded_clock));
        self.loaded_order.push_back((id, self.loaded_clock));
        while self.loaded.len() > self.config.loaded_docs {
            let Some((old, stamp)) = self.loaded_order.pop_front() else {
                break;
            };
            // An entry whose stamp moved on was stored again since: only its last place counts.
            if self.loaded.get(&old).is_some_and(|(_, s)| *s == stamp) {
                self.loaded.remove(&old);
            }
        }
        if self.loaded_order.len() > 4 * self.config.loaded_docs {
            let loaded = &self.loaded;
            self.loaded_order
                .retain(|(id, stamp)| loaded.get(id).is_some_and(|(_, s)| s == stamp));
        }
    }

    /// The documents a subject may see today.
    pub fn scope(&self, subject: Subject, today: NaiveDate) -> Set<DocId> {
        let from = today - Duration::days(self.config.window.days_back);
        let to = today + Duration::days(self.config.window.days_ahead);
        let mut out: Set<DocId> = Set::default();
        let job_ids: Vec<DocId> = match subject {
            Subject::Office => self
                .index
                .jobs_on
                .range(from..=to)
                .flat_map(|(_, s)| s.iter().copied())
                .collect(),
            Subject::Technician(t) => self
                .index
                .jobs_of_tech
                .get(&t)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default(),
        };
        let mut locations: Set<LocationId> = Set::default();
        for id in job_ids {
            let Some(AnyEntity::Job(job)) = self.docs.get(&id).and_then(DocState::live) else {
                continue;
            };
            if job.date < from || job.date > to {
                continue;
            }
            out.insert(id);
            out.insert(job.customer.doc());
            out.insert(job.location.doc());
            locations.insert(job.location);
            out.extend(job.equipment_items.iter().flat_map(|e| {
                std::iter::once(e.equipment.doc()).chain(e.replaces.map(|r| r.doc()))
            }));
        }
        for l in &locations {
            out.extend(self.index.equipment_at.get(l).into_iter().flatten());
            for sub in self.index.subscriptions_at.get(l).into_iter().flatten() {
                out.insert(*sub);
                // The customers served at the location (every unit of a multi-dwelling building).
                if let Some(AnyEntity::Subscription(s)) =
                    self.docs.get(sub).and_then(DocState::live)
                {
                    out.insert(s.customer.doc());
                }
            }
        }
        out.extend(self.index.tags.iter());
        match subject {
            Subject::Office => out.extend(self.index.technicians.iter()),
            Subject::Technician(t) => {
                out.insert(t.doc());
            }
        }
        out.retain(|d| self.docs.get(d).is_some_and(|s| s.live().is_some()));
        out
    }

    /// Compacts documents whose history is long, once every client holding one has synced past all
    /// of it and no conflict is open on it. `horizon` is the lowest position of every device the
    /// host still expects back (from the durable [`ServerEffect::DeviceCursor`] records, across
    /// restarts and instances): no document whose history goes past it is compacted, so a device
    /// returning with offline edits finds the history they build on, and concurrent edits are
    /// still seen as concurrent. Returns the effects to persist.
    pub fn compact(
        &mut self,
        now: Millis,
        horizon: u64,
    ) -> Result<Vec<ServerEffect>, crdt::CrdtError> {
        let due: Vec<DocId> = self
            .docs
            .iter()
            .filter(|(id, d)| {
                d.seqs.len() >= self.config.compact_after as usize
                    && d.conflicts.is_empty()
                    && d.overridden.is_empty()
                    && d.last_seq() <= horizon
                    && self.sessions.values().all(|s| {
                        let holds = s.confirmed.docs.contains(id)
                            || s.pending.iter().any(|p| p.docs.contains(id));
                        !holds
                            || (s.confirmed.cursor >= d.last_seq()
                                && s.pending.iter().all(|p| p.cursor >= d.last_seq()))
                    })
            })
            .map(|(id, _)| *id)
            .collect();
        let mut effects = Vec::new();
        for id in due {
            let Some(state) = self.docs.get(&id) else {
                continue;
            };
            let (doc, _) = crdt::create(state.kind, self.config.author, now, &state.record)?;
            let bytes = doc.save();
            let seqs = state.seqs.clone();
            for s in seqs {
                self.log.remove(&s);
            }
            self.head += 1;
            let seq = self.head;
            self.log.insert(
                seq,
                LogEntry {
                    doc: id,
                    origin: None,
                    payload: Payload::Snapshot,
                    touched: None,
                },
            );
            self.loaded.remove(&id);
            if let Some(state) = self.docs.get_mut(&id) {
                state.epoch += 1;
                state.bytes = bytes.clone();
                state.seqs = vec![seq];
                effects.push(ServerEffect::Compacted {
                    doc: id,
                    seq,
                    epoch: state.epoch,
                });
                effects.push(ServerEffect::PutDoc {
                    doc: id,
                    kind: state.kind,
                    epoch: state.epoch,
                    bytes,
                });
            }
        }
        Ok(effects)
    }
}
