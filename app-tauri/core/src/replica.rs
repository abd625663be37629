//! The local replica: SQLite + one Automerge document per entity.

use std::path::Path;
use std::sync::Arc;

use automerge::ReadDoc;
use rand::{RngCore, SeedableRng, rngs::StdRng};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use shared::auth;
use shared::clock::Clock;
use shared::crdt::{self, CrdtError};
use shared::ids::{Actor, Author, DocId, JobId, TechnicianId};
use shared::model::{AnyEntity, DispatchJob, Entity, JobStatus, ModelError, Note};
use shared::record::{EntityKind, FieldChange, Record};

mod materialize;
pub(crate) mod query;

/// Materialization entry points for the sync client.
pub(crate) mod materialize_api {
    pub(crate) use super::materialize::{Listed, remove};
}

pub use query::{ConflictRow, EquipmentRow, JobRow, RejectionRow, ReplicaStatus, SearchHit};

/// What can go wrong in the replica. Each variant leaves the replica as it was.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("local database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("no {kind:?} with id {id} on this device")]
    NotFound { kind: EntityKind, id: DocId },
    #[error("{0}")]
    Invalid(#[from] ModelError),
    #[error("not allowed: {0}")]
    Denied(#[from] auth::Denied),
    #[error("stored document {id} is unreadable: {source}")]
    Corrupt { id: DocId, source: Box<CrdtError> },
    #[error("sync data refused: {0}")]
    BadSyncData(String),
    #[error("an entity with id {0} already exists")]
    Exists(DocId),
}

fn corrupt(id: DocId) -> impl FnOnce(CrdtError) -> ReplicaError {
    move |source| ReplicaError::Corrupt {
        id,
        source: Box::new(source),
    }
}

/// A stored document with its kind and epoch.
pub(crate) struct StoredDoc {
    pub(crate) kind: EntityKind,
    pub(crate) epoch: u32,
    pub(crate) bytes: Vec<u8>,
    pub(crate) tail: u32,
}

/// The device's replica.
pub struct Replica {
    pub(crate) conn: Connection,
    pub(crate) author: Author,
    /// The actor incarnation this replica writes under (see [`Actor`]); changes when the replica
    /// finds itself behind its own history.
    pub(crate) incarnation: u32,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) rng: StdRng,
    /// The technician this replica writes for, if any: the author of its notes (the server
    /// writes the session's technician there anyway).
    pub(crate) technician: Option<TechnicianId>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("author", &self.author)
            .finish_non_exhaustive()
    }
}

pub(crate) fn id_blob(id: DocId) -> [u8; 16] {
    *id.as_bytes()
}

pub(crate) fn blob_id(b: &[u8]) -> Result<DocId, rusqlite::Error> {
    let a: [u8; 16] = b.try_into().map_err(|_| {
        rusqlite::Error::InvalidColumnType(0, "id".into(), rusqlite::types::Type::Blob)
    })?;
    Ok(DocId::from_bytes(a))
}

pub(crate) fn kind_of(s: &str) -> Result<EntityKind, ReplicaError> {
    EntityKind::parse(s)
        .ok_or_else(|| ReplicaError::BadSyncData(format!("unknown entity kind `{s}`")))
}

pub(crate) fn encode_record(r: &Record) -> Vec<u8> {
    // Records are plain data (no maps with non-string keys): postcard cannot fail on them.
    postcard::to_allocvec(r).unwrap_or_default()
}

/// Refuses an edit writing a value over [`shared::record::MAX_VALUE_BYTES`], naming the field.
fn within_size(changes: &[shared::record::FieldChange]) -> Result<(), ModelError> {
    match shared::record::oversized(changes) {
        Some((field, n)) => Err(ModelError::new(
            field,
            format!(
                "holds {n} bytes, at most {}",
                shared::record::MAX_VALUE_BYTES
            ),
        )),
        None => Ok(()),
    }
}

pub(crate) fn decode_record(b: &[u8]) -> Result<Record, ReplicaError> {
    postcard::from_bytes(b)
        .map_err(|e| ReplicaError::BadSyncData(format!("stored record unreadable: {e}")))
}

/// Whether a table of the replica has a column (replicas made by older versions may lack it).
fn has_column(conn: &Connection, table: &str, column: &str) -> Result<bool, ReplicaError> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2)",
        [table, column],
        |r| r.get(0),
    )?)
}

/// A copy of a replica taken by [`Replica::backup`], to restore with [`Replica::restore`].
pub struct ReplicaBackup(Connection);

impl std::fmt::Debug for ReplicaBackup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplicaBackup")
    }
}

impl Replica {
    /// Opens (creating if needed) the replica at `path`.
    pub fn open(path: &Path, author: Author, clock: Arc<dyn Clock>) -> Result<Self, ReplicaError> {
        Self::init(Connection::open(path)?, author, clock, None)
    }

    /// An in-memory replica (tests, simulation). `seed` makes generated ids reproducible.
    pub fn open_in_memory(
        author: Author,
        clock: Arc<dyn Clock>,
        seed: Option<u64>,
    ) -> Result<Self, ReplicaError> {
        Self::init(Connection::open_in_memory()?, author, clock, seed)
    }

    /// A consistent copy of the whole replica, as a device backup holds it (SQLite's online
    /// backup: taken between transactions, so it never holds half an edit).
    pub fn backup(&self) -> Result<ReplicaBackup, ReplicaError> {
        let mut copy = Connection::open_in_memory()?;
        rusqlite::backup::Backup::new(&self.conn, &mut copy)?.run_to_completion(
            1024,
            std::time::Duration::ZERO,
            None,
        )?;
        Ok(ReplicaBackup(copy))
    }

    /// A replica restored from a backup of this device's (same identity). It may be behind its
    /// own history: its next sync notices and continues under a fresh actor incarnation.
    pub fn restore(
        backup: ReplicaBackup,
        author: Author,
        clock: Arc<dyn Clock>,
        seed: Option<u64>,
    ) -> Result<Self, ReplicaError> {
        Self::init(backup.0, author, clock, seed)
    }

    fn init(
        conn: Connection,
        author: Author,
        clock: Arc<dyn Clock>,
        seed: Option<u64>,
    ) -> Result<Self, ReplicaError> {
        // WAL with synchronous=FULL: the WAL is synced at every commit, so an edit the user saw
        // saved survives the phone dying (power loss, the OS stopped mid-write), not only the
        // app being killed.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "cache_size", -48_000)?;
        // Checkpoints happen after each sync (an idle moment), not in the middle of a user's edit;
        // this limit only bounds the WAL if a device never syncs.
        conn.pragma_update(None, "wal_autocheckpoint", 8_000)?;
        conn.execute_batch(include_str!("replica/schema.sql"))?;
        // Replicas made before refused edits were kept: add the column.
        if !has_column(&conn, "rejections", "refused")? {
            conn.execute_batch(
                "ALTER TABLE rejections ADD COLUMN refused TEXT NOT NULL DEFAULT '[]'",
            )?;
        }
        // Replicas made before board cards showed the town: add the column and fill it from the
        // stored records.
        if !has_column(&conn, "locations", "city")? {
            conn.execute_batch("ALTER TABLE locations ADD COLUMN city TEXT NOT NULL DEFAULT ''")?;
            let stored: Vec<(Vec<u8>, Vec<u8>)> = conn
                .prepare("SELECT id, record FROM docs WHERE kind = 'location'")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            for (id, record) in stored {
                let city = decode_record(&record)?
                    .get("city")
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                conn.execute(
                    "UPDATE locations SET city = ?1 WHERE id = ?2",
                    rusqlite::params![city, id],
                )?;
            }
        }
        // Replicas made before overridden values were listed stored conflicts as display text:
        // drop them and resync in full, which lists both again from the server, typed.
        if !has_column(&conn, "conflicts", "settled")? {
            conn.execute_batch(
                "BEGIN;
                 DROP TABLE conflicts;
                 UPDATE meta SET value = 0 WHERE key IN ('cursor', 'token');
                 COMMIT;",
            )?;
            conn.execute_batch(include_str!("replica/schema.sql"))?;
        }
        let rng = match seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        let incarnation: i64 = conn.query_row(
            "SELECT coalesce((SELECT value FROM meta WHERE key = 'incarnation'), 0)",
            [],
            |r| r.get(0),
        )?;
        Ok(Self {
            conn,
            author,
            incarnation: u32::try_from(incarnation).unwrap_or(0),
            clock,
            rng,
            technician: None,
        })
    }

    pub fn author(&self) -> Author {
        self.author
    }

    /// Who this replica's changes are written by.
    pub fn actor(&self) -> Actor {
        Actor {
            author: self.author,
            incarnation: self.incarnation,
        }
    }

    /// A fresh UUIDv7 for an entity created on this device.
    pub fn new_id(&mut self) -> DocId {
        let mut r = [0u8; 10];
        self.rng.fill_bytes(&mut r);
        DocId::new_v7(self.clock.now(), r)
    }

    pub(crate) fn load_stored(
        tx: &Connection,
        id: DocId,
    ) -> Result<Option<StoredDoc>, ReplicaError> {
        let row = tx
            .prepare_cached("SELECT kind, epoch, bytes, tail FROM docs WHERE id = ?1")?
            .query_row([id_blob(id)], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, u32>(3)?,
                ))
            })
            .optional()?;
        row.map(|(k, epoch, bytes, tail)| {
            Ok(StoredDoc {
                kind: kind_of(&k)?,
                epoch,
                bytes,
                tail,
            })
        })
        .transpose()
    }

    /// Writes a document's bytes, its materialized rows and conflicts. `fresh`: the replica did
    /// not have the document (a snapshot entering the scope), so there are no old rows to clear.
    #[allow(clippy::too_many_arguments)] // the columns of one row, named
    pub(crate) fn store_doc(
        tx: &Transaction<'_>,
        id: DocId,
        kind: EntityKind,
        epoch: u32,
        bytes: &[u8],
        record: &Record,
        listed: materialize::Listed<'_>,
        fresh: bool,
    ) -> Result<(), ReplicaError> {
        tx.prepare_cached(
            "INSERT INTO docs (id, kind, epoch, bytes, record, tail) VALUES (?1, ?2, ?3, ?4, ?5, 0)
             ON CONFLICT(id) DO UPDATE SET kind = excluded.kind, epoch = excluded.epoch,
               bytes = excluded.bytes, record = excluded.record, tail = 0",
        )?
        .execute(params![
            id_blob(id),
            kind.as_str(),
            epoch,
            bytes,
            encode_record(record)
        ])?;
        materialize::rows(tx, id, kind, record, fresh)?;
        materialize::conflicts(tx, id, listed, fresh)?;
        Ok(())
    }

    /// Appends changes to a stored document without loading it, with the materialization the
    /// server computed for the same set of changes.
    /// The materialized record stored beside a document's bytes.
    pub(crate) fn stored_record(tx: &Connection, id: DocId) -> Result<Record, ReplicaError> {
        let bytes: Vec<u8> = tx
            .prepare_cached("SELECT record FROM docs WHERE id = ?1")?
            .query_row([id_blob(id)], |r| r.get(0))?;
        decode_record(&bytes)
    }

    pub(crate) fn append_changes(
        tx: &Transaction<'_>,
        stored: &StoredDoc,
        id: DocId,
        changes: &[Vec<u8>],
        record: &Record,
        listed: materialize::Listed<'_>,
    ) -> Result<(), ReplicaError> {
        let mut bytes =
            Vec::with_capacity(stored.bytes.len() + changes.iter().map(Vec::len).sum::<usize>());
        bytes.extend_from_slice(&stored.bytes);
        for c in changes {
            bytes.extend_from_slice(c);
        }
        let tail = stored.tail + u32::try_from(changes.len()).unwrap_or(u32::MAX);
        tx.prepare_cached("UPDATE docs SET bytes = ?2, record = ?3, tail = ?4 WHERE id = ?1")?
            .execute(params![id_blob(id), bytes, encode_record(record), tail])?;
        materialize::rows(tx, id, stored.kind, record, false)?;
        materialize::conflicts(tx, id, listed, false)?;
        Ok(())
    }

    /// Loads a document from its bytes and checks that it reads as its stored record: the
    /// replica's own integrity check (the simulation runs it on every document).
    pub fn verify(&self, id: DocId) -> Result<(), ReplicaError> {
        let stored = Self::load_stored(&self.conn, id)?.ok_or(ReplicaError::NotFound {
            kind: EntityKind::Job,
            id,
        })?;
        let doc = crdt::load(&stored.bytes).map_err(corrupt(id))?;
        if let Some(h) = doc.get_missing_deps(&[]).first() {
            return Err(ReplicaError::Corrupt {
                id,
                source: Box::new(CrdtError::MissingDependencies {
                    hash: h.to_string(),
                }),
            });
        }
        let read = crdt::read(&doc, stored.kind).record;
        match self.record(id)? {
            Some(r) if r == read => Ok(()),
            other => Err(ReplicaError::BadSyncData(format!(
                "document {id} reads as {read:?} but its stored record is {other:?}"
            ))),
        }
    }

    /// Saves a loaded document whole, with its materialization.
    pub(crate) fn store_loaded(
        tx: &Transaction<'_>,
        id: DocId,
        kind: EntityKind,
        epoch: u32,
        doc: &automerge::Automerge,
    ) -> Result<(), ReplicaError> {
        let m = crdt::read(doc, kind);
        Self::store_doc(
            tx,
            id,
            kind,
            epoch,
            &doc.save(),
            &m.record,
            materialize::Listed {
                conflicts: &m.conflicts,
                overridden: &m.overridden,
            },
            false,
        )
    }

    pub(crate) fn queue(
        tx: &Transaction<'_>,
        id: DocId,
        kind: EntityKind,
        epoch: u32,
        change: &[u8],
    ) -> Result<(), ReplicaError> {
        tx.prepare_cached("INSERT INTO outbox (doc, kind, epoch, change) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![id_blob(id), kind.as_str(), epoch, change])?;
        Ok(())
    }

    /// Creates an entity on this device (a dispatcher's new job, a technician's scanned equipment).
    pub fn create(&mut self, entity: &AnyEntity) -> Result<DocId, ReplicaError> {
        let id = entity.doc_id();
        let kind = entity.kind();
        let record = entity.to_record();
        if let Some(d) = auth::check(kind, self.author.role, None, &record)
            .into_iter()
            .next()
        {
            return Err(d.into());
        }
        AnyEntity::from_record(kind, id, &record)?;
        within_size(&Record::default().diff(&record))?;
        let now = self.clock.now();
        let (doc, change) = crdt::create(kind, self.actor(), now, &record).map_err(corrupt(id))?;
        let tx = self.conn.transaction()?;
        if Self::load_stored(&tx, id)?.is_some() {
            return Err(ReplicaError::Exists(id));
        }
        Self::store_loaded(&tx, id, kind, 0, &doc)?;
        Self::queue(&tx, id, kind, 0, &change)?;
        tx.commit()?;
        Ok(id)
    }

    /// Edits one entity: reads it, lets `edit` change it, checks the result is valid and allowed
    /// for this device's role, and commits change, rows and outbox entry in one transaction.
    pub fn update<E: Entity>(
        &mut self,
        id: DocId,
        edit: impl FnOnce(&mut E) -> Result<(), ReplicaError>,
    ) -> Result<E, ReplicaError> {
        let kind = E::SCHEMA.kind;
        let now = self.clock.now();
        let author = self.author;
        let actor = self.actor();
        let tx = self.conn.transaction()?;
        let stored = Self::load_stored(&tx, id)?
            .filter(|s| s.kind == kind)
            .ok_or(ReplicaError::NotFound { kind, id })?;
        let mut doc = crdt::load(&stored.bytes).map_err(corrupt(id))?;
        let stored_record = crdt::read(&doc, kind).record;
        let mut entity = E::from_record(id, &stored_record)?;
        // The edit is judged and written against the entity as it reads, in canonical form: a
        // value spelled otherwise in the document (office data typed by hand: `9:30`, a trailing
        // space) is not rewritten, nor counted as this edit's change, unless the edit changes it.
        let mut before = entity.to_record();
        edit(&mut entity)?;
        let mut after = entity.to_record();
        // Registers the entity type does not model (deleted, a newer schema's fields) stay as they are.
        for (k, v) in &stored_record.fields {
            before.fields.entry(k.clone()).or_insert_with(|| v.clone());
            after.fields.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let entity = E::from_record(id, &after)?;
        let changes = before.diff(&after);
        within_size(&changes)?;
        if let Some(d) = auth::check(kind, author.role, Some(&before), &after)
            .into_iter()
            .next()
        {
            return Err(d.into());
        }
        if let Some(change) = crdt::write(&mut doc, actor, now, &changes).map_err(corrupt(id))? {
            Self::store_loaded(&tx, id, kind, stored.epoch, &doc)?;
            Self::queue(&tx, id, kind, stored.epoch, &change)?;
            tx.commit()?;
        }
        Ok(entity)
    }

    /// Settles a listed conflict: writes `value` to `field` as this author, after every
    /// concurrent value, so all replicas show it and the conflict closes (even when `value` is
    /// the one already shown). The write is checked like any other edit.
    pub fn resolve_conflict(
        &mut self,
        id: DocId,
        field: &str,
        value: &shared::record::Scalar,
    ) -> Result<(), ReplicaError> {
        let now = self.clock.now();
        let author = self.author;
        let actor = self.actor();
        let tx = self.conn.transaction()?;
        let stored = Self::load_stored(&tx, id)?.ok_or(ReplicaError::NotFound {
            kind: EntityKind::Job,
            id,
        })?;
        let kind = stored.kind;
        let decision = FieldChange::at_path(field, value.clone());
        let mut doc = crdt::load(&stored.bytes).map_err(corrupt(id))?;
        let before = crdt::read(&doc, kind).record;
        match &decision {
            FieldChange::Set { field, .. } if shared::model::field_spec(kind, field).is_none() => {
                return Err(ModelError::new(field, "is not a field of this document").into());
            }
            FieldChange::SetItem {
                collection,
                item,
                field,
                ..
            } if !before
                .items(collection)
                .is_some_and(|items| items.contains_key(item))
                || !shared::model::schema(kind)
                    .collection(collection)
                    .is_some_and(|c| c.fields.contains(&field.as_str())) =>
            {
                return Err(ModelError::new(
                    format!("{collection}[{item}].{field}"),
                    "is not a field of this document",
                )
                .into());
            }
            _ => {}
        }
        let mut after = before.clone();
        after.apply(std::slice::from_ref(&decision));
        AnyEntity::from_record(kind, id, &after)?;
        if let Some(d) = auth::check(kind, author.role, Some(&before), &after)
            .into_iter()
            .next()
        {
            return Err(d.into());
        }
        // A decision is an edit that syncs like any other, whichever value it keeps.
        let change = crdt::decide(&mut doc, actor, now, &decision).map_err(corrupt(id))?;
        Self::store_loaded(&tx, id, kind, stored.epoch, &doc)?;
        Self::queue(&tx, id, kind, stored.epoch, &change)?;
        tx.commit()?;
        Ok(())
    }

    /// Moves a job along the state machine, recording actual start and end times on the way.
    pub fn set_job_status(
        &mut self,
        job: JobId,
        to: JobStatus,
    ) -> Result<DispatchJob, ReplicaError> {
        let role = self.author.role;
        let now = self.clock.now();
        self.update::<DispatchJob>(job.doc(), |j| {
            j.status
                .check_transition(to, role)
                .map_err(auth::Denied::from)?;
            if to == JobStatus::OnSite && j.actual_start.is_none() {
                j.actual_start = Some(now);
            }
            if to.is_terminal() && to != JobStatus::Cancelled {
                j.actual_end = Some(now);
            }
            j.status = to;
            Ok(())
        })
    }

    /// Names the technician this replica writes for (the author of its notes).
    pub fn set_technician(&mut self, technician: Option<TechnicianId>) {
        self.technician = technician;
    }

    /// Appends a note to a job.
    pub fn add_note(&mut self, job: JobId, text: &str) -> Result<DispatchJob, ReplicaError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ModelError::new("note", "must not be empty").into());
        }
        let key = self.new_id().to_string();
        let at = self.clock.now();
        let author = self.technician;
        self.update::<DispatchJob>(job.doc(), |j| {
            j.notes.push(Note {
                key,
                text: text.to_owned(),
                author,
                at,
            });
            Ok(())
        })
    }
}
