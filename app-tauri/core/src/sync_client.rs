//! The replica's side of sync: outbox out, the server's answer in, in one transaction.

use std::collections::HashSet;

use automerge::{Automerge, ChangeHash};
use rusqlite::{Transaction, params};
use shared::crdt;
use shared::ids::DocId;
use shared::protocol::{
    self, ClientHello, DecodeError, Message, RejectReason, Snapshot, SyncRefusal, SyncRequest,
    SyncResponse,
};
use shared::sync::client::{self, OutboxEntry, SyncPoint};

use crate::replica::materialize_api::{self as mat, Listed};
use crate::replica::{Replica, ReplicaError, blob_id, id_blob, kind_of};

/// How frames reach the server: HTTP in the app, a direct call in tests and benchmarks.
pub trait Transport {
    fn exchange(&mut self, request: Vec<u8>) -> Result<Vec<u8>, TransportError>;
}

/// Why an exchange did not complete.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("server unreachable: {0}")]
    Unreachable(String),
    /// The server could not be trusted (a certificate or host name that does not verify, a
    /// plain-HTTP address): nothing was sent. A real failure, not being offline.
    #[error("the server's identity could not be verified, nothing was sent: {0}")]
    Insecure(String),
    #[error("server refused the sync: {0}")]
    Refused(SyncRefusal),
    /// An HTTP-level refusal (401 bad token, 426 app too old, 503 server unavailable…).
    #[error("server answered {status}: {message}")]
    Server { status: u16, message: String },
    #[error("server answer unreadable: {0}")]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Replica(#[from] ReplicaError),
}

/// What one [`Replica::sync`] did, for progress and status display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncReport {
    pub round_trips: u32,
    pub pushed: u64,
    pub snapshots: u64,
    pub changes: u64,
    pub evicted: u64,
    pub rejected: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// One request of a sync in progress: its encoded frame and how many changes it pushes.
#[derive(Debug, Clone)]
pub struct SyncStep {
    pub frame: Vec<u8>,
    pub pushed: u64,
}

/// What applying one response did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    pub stale: bool,
    pub more: bool,
    pub snapshots: u64,
    pub changes: u64,
    pub evicted: u64,
    pub rejected: u64,
}

fn get_meta(tx: &rusqlite::Connection, key: &str) -> Result<u64, ReplicaError> {
    let v = tx.query_row(
        "SELECT coalesce((SELECT value FROM meta WHERE key = ?1), 0)",
        [key],
        |r| r.get::<_, i64>(0),
    )?;
    Ok(u64::try_from(v).unwrap_or(0))
}

fn set_meta(tx: &Transaction<'_>, key: &str, v: u64) -> Result<(), ReplicaError> {
    tx.prepare_cached("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value")?
        .execute(params![key, i64::try_from(v).unwrap_or(i64::MAX)])?;
    Ok(())
}

fn outbox_of(
    tx: &rusqlite::Connection,
    doc: Option<DocId>,
) -> Result<Vec<OutboxEntry>, ReplicaError> {
    let sql = if doc.is_some() {
        "SELECT seq, doc, kind, epoch, change FROM outbox WHERE doc = ?1 ORDER BY seq"
    } else {
        "SELECT seq, doc, kind, epoch, change FROM outbox WHERE ?1 IS NULL ORDER BY seq"
    };
    let mut st = tx.prepare_cached(sql)?;
    let rows = st.query_map([doc.map(id_blob)], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, u32>(3)?,
            r.get::<_, Vec<u8>>(4)?,
        ))
    })?;
    rows.map(|r| {
        let (seq, d, kind, epoch, change) = r?;
        Ok(OutboxEntry {
            seq: u64::try_from(seq).unwrap_or(0),
            doc: blob_id(&d)?,
            kind: kind_of(&kind)?,
            epoch,
            change,
        })
    })
    .collect()
}

impl Replica {
    pub fn sync_point(&self) -> Result<SyncPoint, ReplicaError> {
        Ok(SyncPoint {
            cursor: get_meta(&self.conn, "cursor")?,
            token: get_meta(&self.conn, "token")?,
        })
    }

    /// Moves committed WAL pages into the database file (safe at any time; never blocks writers).
    pub fn checkpoint(&self) -> Result<(), ReplicaError> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// Whether any local change waits for the server (without reading the changes).
    pub fn has_pending(&self) -> Result<bool, ReplicaError> {
        Ok(self
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM outbox)")?
            .query_row([], |r| r.get(0))?)
    }

    /// Local changes waiting for the server.
    pub fn pending(&self) -> Result<Vec<OutboxEntry>, ReplicaError> {
        outbox_of(&self.conn, None)
    }

    /// The request for the next exchange.
    pub fn sync_request(&self, app_version: &str) -> Result<SyncRequest, ReplicaError> {
        let hello = ClientHello {
            author: self.author,
            app_version: app_version.to_owned(),
        };
        Ok(client::build_request(
            hello,
            self.sync_point()?,
            &self.pending()?,
        ))
    }

    /// Syncs until the server has nothing more, through `transport`.
    pub fn sync(&mut self, transport: &mut dyn Transport) -> Result<SyncReport, TransportError> {
        let mut report = SyncReport::default();
        loop {
            let step = self.sync_frame()?;
            let answer = transport.exchange(step.frame.clone())?;
            if !self.sync_apply(&step, &answer, &mut report)? {
                return Ok(report);
            }
        }
    }

    /// The next request of a sync, encoded. With [`Replica::sync_apply`] this lets a caller that
    /// shares the replica between threads release it while the request is on the network.
    pub fn sync_frame(&self) -> Result<SyncStep, ReplicaError> {
        let req = self.sync_request(env!("CARGO_PKG_VERSION"))?;
        let pushed = req.push.iter().map(|p| p.changes.len() as u64).sum::<u64>();
        Ok(SyncStep {
            frame: protocol::encode(&Message::Request(req)),
            pushed,
        })
    }

    /// Applies the server's `answer` to `step` and adds it to `report`. Returns whether another
    /// round trip is needed.
    pub fn sync_apply(
        &mut self,
        step: &SyncStep,
        answer: &[u8],
        report: &mut SyncReport,
    ) -> Result<bool, TransportError> {
        report.bytes_sent += step.frame.len() as u64;
        report.bytes_received += answer.len() as u64;
        report.round_trips += 1;
        let resp = match protocol::decode(answer)? {
            Message::Response(r) => r,
            Message::Refused(r) => return Err(TransportError::Refused(r)),
            Message::Request(_) => {
                return Err(DecodeError::Malformed("server sent a request".into()).into());
            }
        };
        let a = self.apply_response(&resp)?;
        report.pushed += step.pushed;
        report.snapshots += a.snapshots;
        report.changes += a.changes;
        report.evicted += a.evicted;
        report.rejected += a.rejected;
        // Keep going while the server has more, or the outbox had more than one request holds.
        let more_to_push =
            report.round_trips < 1_000 && self.has_pending()? && !a.stale && a.rejected == 0;
        if a.stale || !(a.more || more_to_push) {
            // Fold the WAL back into the database now rather than during a later edit.
            self.checkpoint()?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Applies one response in one transaction. A response for another position is ignored; a
    /// response with corrupt data is refused whole and changes nothing.
    pub fn apply_response(&mut self, resp: &SyncResponse) -> Result<Applied, ReplicaError> {
        let Ok(next) = client::accept(self.sync_point()?, resp) else {
            return Ok(Applied {
                stale: true,
                ..Applied::default()
            });
        };
        let now = self.clock.now();
        let actor = self.actor();
        // A fresh incarnation, should this replica turn out to be behind its own history.
        let fresh = loop {
            let n = rand::RngCore::next_u32(&mut self.rng);
            if n != 0 && n != actor.incarnation {
                break n;
            }
        };
        let mut writer = Writer { actor, fresh };
        let tx = self.conn.transaction()?;
        let mut out = Applied {
            more: resp.more,
            ..Applied::default()
        };

        for rej in &resp.rejected {
            match (&rej.reason, &rej.snapshot) {
                // Not refusals: the edits are moved onto the server's copy and pushed again
                // within the same sync.
                (RejectReason::StaleEpoch { current }, Some(snap)) => {
                    let ours = Replica::load_stored(&tx, rej.doc)?.map(|d| d.epoch);
                    if ours.is_some_and(|e| e > *current) {
                        // The server's epoch is older than ours: it went back in time (restored
                        // from a backup taken before a compaction). Our copy holds what it lost:
                        // compared like any snapshot, so that is written again.
                        merge_snapshot(&tx, &mut writer, now, snap, &[])?;
                    } else {
                        rebase(&tx, writer.actor, now, snap, 0, &[], Vec::new())?;
                    }
                }
                // The server lacks changes these edits build on: it was restored from an older
                // backup. Its copy is compared with ours like any snapshot: our own changes it
                // lost are sent again, and the edits are moved onto its copy (no longer
                // depending on the missing ones) and pushed again; others' changes come back
                // from their authors.
                (RejectReason::MissingDependencies, Some(snap)) => {
                    merge_snapshot(&tx, &mut writer, now, snap, &[])?;
                }
                (RejectReason::ReusedSequence, Some(snap)) => {
                    // Restored from an older backup: the server holds later changes of ours.
                    // Continue under a fresh actor and re-apply the pending edits on its copy.
                    writer.renew(&tx)?;
                    rebase(&tx, writer.actor, now, snap, 0, &[], Vec::new())?;
                }
                (_, snap) => {
                    out.rejected += 1;
                    // What the refused edits changed is kept with the rejection (the note text,
                    // the values), so nothing the user saved disappears without a trace.
                    let refused: Vec<OutboxEntry> = outbox_of(&tx, Some(rej.doc))?
                        .into_iter()
                        .filter(|e| e.seq <= resp.acked_outbox)
                        .collect();
                    let refused_changes: Vec<automerge::Change> = refused
                        .iter()
                        .filter_map(|e| crdt::decode_change(&e.change).ok())
                        .collect();
                    let refused = match Replica::load_stored(&tx, rej.doc)? {
                        Some(local) if !refused.is_empty() => {
                            // Changes too damaged to read back (a corrupt change) keep no values.
                            own_edits(rej.doc, &local, refused.iter().map(|e| e.change.as_slice()))
                                .unwrap_or_default()
                        }
                        _ => Vec::new(),
                    };
                    let reason = serde_json::to_string(&rej.reason)
                        .map_err(|e| ReplicaError::BadSyncData(e.to_string()))?;
                    let refused = serde_json::to_string(&refused)
                        .map_err(|e| ReplicaError::BadSyncData(e.to_string()))?;
                    tx.execute(
                        "INSERT INTO rejections (doc, reason, at, refused) VALUES (?1, ?2, ?3, ?4)",
                        params![id_blob(rej.doc), reason, now.0, refused],
                    )?;
                    // The refused changes are those the request carried; edits made since stay
                    // and are moved onto the server's copy.
                    tx.execute(
                        "DELETE FROM outbox WHERE doc = ?1 AND seq <= ?2",
                        params![
                            id_blob(rej.doc),
                            i64::try_from(resp.acked_outbox).unwrap_or(i64::MAX)
                        ],
                    )?;
                    match snap {
                        // Compared like any snapshot: acknowledged changes of ours a restored
                        // server lost are sent again, the refused ones are dropped.
                        Some(s) => merge_snapshot(&tx, &mut writer, now, s, &refused_changes)?,
                        // The server lost track of this replica (restarted, or restored from an
                        // older backup that may predate a reassignment): before the document
                        // goes, the rest of our work on it is queued again, to be taken back or
                        // kept as a rejection with its content.
                        None if resp.full_resync => {
                            let skip = refused_changes.iter().map(automerge::Change::hash);
                            requeue_own(&tx, rej.doc, writer.actor.author, &skip.collect())?;
                        }
                        None => {
                            let later = outbox_of(&tx, Some(rej.doc))?;
                            if let (Some(stored), true) =
                                (Replica::load_stored(&tx, rej.doc)?, later.is_empty())
                            {
                                mat::remove(&tx, rej.doc, stored.kind)?;
                            }
                        }
                    }
                }
            }
        }
        tx.execute(
            "DELETE FROM outbox WHERE seq <= ?1",
            [i64::try_from(resp.acked_outbox).unwrap_or(i64::MAX)],
        )?;

        if resp.full_resync {
            // The server lost track of this replica (a restart, or a restore from an older
            // backup whose log may lack what it acknowledged, even once its head has moved past
            // this replica's cursor again): until this resync ends, nothing this replica wrote
            // is evicted before the server has seen it again.
            set_meta(&tx, "resyncing", 1)?;
            tx.execute("DELETE FROM resync_pending", [])?;
            tx.execute("INSERT INTO resync_pending (id) SELECT id FROM docs", [])?;
        }
        for snap in &resp.snapshots {
            out.snapshots += 1;
            merge_snapshot(&tx, &mut writer, now, snap, &[])?;
            tx.prepare_cached("DELETE FROM resync_pending WHERE id = ?1")?
                .execute([id_blob(snap.doc)])?;
            // Back in scope: an eviction still waiting from before no longer applies.
            tx.prepare_cached("DELETE FROM evict_pending WHERE id = ?1")?
                .execute([id_blob(snap.doc)])?;
        }
        let mut lost_track = false;
        if !resp.more {
            // A full resync is complete: what the server did not send again is out of scope.
            tx.execute(
                "INSERT OR IGNORE INTO evict_pending (id) SELECT id FROM resync_pending",
                [],
            )?;
            tx.execute("DELETE FROM resync_pending", [])?;
        }
        for dc in &resp.changes {
            let Some(stored) = Replica::load_stored(&tx, dc.doc)? else {
                // The server believes this replica holds a document it does not: start over
                // with a full resync rather than drift.
                lost_track = true;
                continue;
            };
            tx.prepare_cached("DELETE FROM evict_pending WHERE id = ?1")?
                .execute([id_blob(dc.doc)])?;
            if stored.epoch != dc.epoch || stored.kind != dc.kind {
                continue; // a snapshot of the new epoch is on its way
            }
            let clean = tx
                .prepare_cached("SELECT NOT EXISTS (SELECT 1 FROM outbox WHERE doc = ?1)")?
                .query_row([id_blob(dc.doc)], |r| r.get::<_, bool>(0))?;
            if clean && stored.tail as usize + dc.changes.len() <= MAX_TAIL {
                // Fast path: with nothing local the server has not seen, this copy plus these
                // changes is exactly the server's state, so its materialization is ours. The
                // changes are checked (checksum, columns) and appended; no document is loaded.
                for c in &dc.changes {
                    crdt::decode_change(c).map_err(|e| {
                        ReplicaError::BadSyncData(format!("document {}: {e}", dc.doc))
                    })?;
                }
                out.changes += dc.changes.len() as u64;
                let whole;
                let record = if dc.partial {
                    // Only what the changes touched came: lay it over the clean copy's record.
                    let mut r = Replica::stored_record(&tx, dc.doc)?;
                    r.overlay(&dc.record);
                    whole = r;
                    &whole
                } else {
                    &dc.record
                };
                let listed = Listed {
                    conflicts: &dc.conflicts,
                    overridden: &dc.overridden,
                };
                Replica::append_changes(&tx, &stored, dc.doc, &dc.changes, record, listed)?;
                continue;
            }
            let mut doc = crdt::load(&stored.bytes)
                .map_err(|e| ReplicaError::BadSyncData(format!("document {}: {e}", dc.doc)))?;
            let changes = dc
                .changes
                .iter()
                .map(|c| crdt::decode_change(c))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ReplicaError::BadSyncData(format!("document {}: {e}", dc.doc)))?;
            out.changes += changes.len() as u64;
            crdt::apply(&mut doc, changes)
                .map_err(|e| ReplicaError::BadSyncData(format!("document {}: {e}", dc.doc)))?;
            Replica::store_loaded(&tx, dc.doc, dc.kind, dc.epoch, &doc)?;
        }
        for id in &resp.evict {
            out.evicted += 1;
            tx.execute(
                "INSERT OR IGNORE INTO evict_pending (id) VALUES (?1)",
                [id_blob(*id)],
            )?;
        }
        if !resp.more && get_meta(&tx, "resyncing")? == 1 {
            keep_own_work(&tx, writer.actor.author)?;
            set_meta(&tx, "resyncing", 0)?;
        }
        // Evict what left the scope, keeping documents whose local changes are not yet on the server.
        let ready: Vec<(Vec<u8>, String)> = tx
            .prepare("SELECT e.id, d.kind FROM evict_pending e JOIN docs d ON d.id = e.id WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.doc = e.id)")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (id, kind) in ready {
            mat::remove(&tx, blob_id(&id)?, kind_of(&kind)?)?;
        }
        tx.execute("DELETE FROM evict_pending WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.doc = evict_pending.id)", [])?;
        if lost_track {
            tracing::warn!("sync.lost_track: full resync on the next exchange");
            set_meta(&tx, "cursor", 0)?;
            set_meta(&tx, "token", 0)?;
            out.more = true;
        } else {
            set_meta(&tx, "cursor", next.cursor)?;
            set_meta(&tx, "token", next.token)?;
        }
        tx.commit()?;
        self.incarnation = writer.actor.incarnation;
        Ok(out)
    }
}

/// Who writes the changes an answer makes this replica write (rebases): the replica's actor,
/// switched to a fresh incarnation once if the replica turns out to be behind its own history.
struct Writer {
    actor: shared::ids::Actor,
    fresh: u32,
}

impl Writer {
    /// Continues under a fresh incarnation (kept in the replica's meta with the rest of the answer).
    fn renew(&mut self, tx: &Transaction<'_>) -> Result<(), ReplicaError> {
        if self.actor.incarnation != self.fresh {
            tracing::warn!("sync.new_incarnation: continuing under a fresh actor");
            self.actor.incarnation = self.fresh;
            set_meta(tx, "incarnation", u64::from(self.fresh))?;
        }
        Ok(())
    }
}

/// Stores a snapshot in place of whatever the replica had.
fn replace(tx: &Transaction<'_>, s: &Snapshot) -> Result<(), ReplicaError> {
    if let Some(old) = Replica::load_stored(tx, s.doc)?
        && old.kind != s.kind
    {
        mat::remove(tx, s.doc, old.kind)?;
    }
    store_snapshot(tx, s, false)
}

/// Stores a snapshot's bytes with the record and conflicts the server sent along (no load).
fn store_snapshot(tx: &Transaction<'_>, s: &Snapshot, fresh: bool) -> Result<(), ReplicaError> {
    Replica::store_doc(
        tx,
        s.doc,
        s.kind,
        s.epoch,
        &s.bytes,
        &s.record,
        Listed {
            conflicts: &s.conflicts,
            overridden: &s.overridden,
        },
        fresh,
    )
}

fn load_snapshot(s: &Snapshot) -> Result<Automerge, ReplicaError> {
    crdt::load(&s.bytes).map_err(|e| ReplicaError::BadSyncData(format!("snapshot {}: {e}", s.doc)))
}

/// How many change chunks may be appended to a stored document before it is saved whole again.
const MAX_TAIL: usize = 16;

/// The first bytes of every Automerge chunk.
const AUTOMERGE_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

/// A snapshot for a document: new ones are stored as they come (no document load, which is what
/// makes a first sync fast); known ones are merged, or rebased when the server compacted them.
/// `refused`: changes of ours the server just refused (already out of the outbox), which the
/// copy must drop rather than send again.
fn merge_snapshot(
    tx: &Transaction<'_>,
    writer: &mut Writer,
    now: shared::clock::Millis,
    s: &Snapshot,
    refused: &[automerge::Change],
) -> Result<(), ReplicaError> {
    let Some(local) = Replica::load_stored(tx, s.doc)? else {
        // New documents are stored unloaded (that is what keeps a first sync fast), so at least
        // check they are Automerge documents; deeper damage shows as a typed error on first edit.
        if !s.bytes.starts_with(&AUTOMERGE_MAGIC) {
            return Err(ReplicaError::BadSyncData(format!(
                "snapshot {} is not an Automerge document",
                s.doc
            )));
        }
        return store_snapshot(tx, s, true);
    };
    if local.kind == s.kind && local.epoch < s.epoch {
        // A compacted copy. Items are append-only, so one this copy shows that the compacted
        // copy lacks was lost by the server (compacted after a restore from an older backup,
        // before this replica could send it again): it is written again, with the pending edits.
        let mine = crdt::load(&local.bytes)
            .map_err(|e| ReplicaError::BadSyncData(format!("document {}: {e}", s.doc)))?;
        let theirs = load_snapshot(s)?;
        let missing = items_lost(&mine, &theirs, s.kind, writer.actor.author.role);
        return rebase(tx, writer.actor, now, s, 0, &[], missing);
    }
    if local.kind != s.kind {
        return rebase(tx, writer.actor, now, s, 0, &[], Vec::new());
    }
    // An older epoch than ours: the server went back in time (restored from a backup).
    let behind = local.epoch > s.epoch;
    let mut doc = crdt::load(&local.bytes)
        .map_err(|e| ReplicaError::BadSyncData(format!("document {}: {e}", s.doc)))?;
    let mut theirs = load_snapshot(s)?;
    // Changes this replica holds that the server's copy lacks, beyond the ones still waiting in
    // the outbox: the server lost changes it had acknowledged (it was restored from an older
    // backup). This replica's own are written again, under a fresh actor (the old sequence
    // numbers may live on elsewhere); others' come back from their own devices.
    let lacking = theirs.get_changes_added(&doc);
    if !lacking.is_empty() || behind || !refused.is_empty() {
        let waiting: HashSet<ChangeHash> = outbox_of(tx, Some(s.doc))?
            .iter()
            .filter_map(|e| crdt::decode_change(&e.change).ok().map(|c| c.hash()))
            .chain(refused.iter().map(automerge::Change::hash))
            .collect();
        let lost: Vec<&automerge::Change> = lacking
            .iter()
            .filter(|c| !waiting.contains(&c.hash()))
            .collect();
        if !lost.is_empty() || behind || !refused.is_empty() {
            let author = writer.actor.author;
            let own: Vec<Vec<u8>> = lost
                .iter()
                .filter(|c| {
                    shared::ids::Author::from_actor_bytes(c.actor_id().to_bytes()) == Some(author)
                })
                .map(|c| c.raw_bytes().to_vec())
                .collect();
            tracing::warn!(
                doc = %s.doc,
                own = own.len(),
                others = lost.len() - own.len(),
                "sync.server_behind: re-sending acknowledged changes"
            );
            // What the lost changes made that is not this device's own (another device's note
            // it received, values a compaction folded into the server's snapshot) is written
            // again from this copy too: its author may no longer hold the document.
            let mut refold = if behind || author.role != shared::ids::Role::Technician {
                lost_by_server(s.doc, &doc, &theirs, s.kind, author.role)?
            } else {
                Vec::new()
            };
            // Never what was just refused.
            let no = edits_of(s.doc, &doc, s.kind, refused.iter().map(|c| c.raw_bytes()))?;
            refold.retain(|c| !no.iter().any(|n| same_register(n, c)));
            if !own.is_empty() || !refold.is_empty() {
                writer.renew(tx)?;
            }
            return rebase(tx, writer.actor, now, s, 0, &own, refold);
        }
    }
    doc.merge(&mut theirs)
        .map_err(|e| ReplicaError::BadSyncData(format!("snapshot {}: {e}", s.doc)))?;
    Replica::store_loaded(tx, s.doc, s.kind, s.epoch, &doc)
}

/// Before documents leave a replica at the end of a full resync, this replica's own changes to
/// them are queued again: a server restored from an older backup may have lost them, and the
/// documents may have left the scope only because the backup predates a reassignment. The server takes
/// them back (duplicates are harmless) or refuses them, and a refusal keeps what they changed
/// as a rejection the user sees; either way the work is not dropped with the document.
fn keep_own_work(tx: &Transaction<'_>, me: shared::ids::Author) -> Result<(), ReplicaError> {
    let leaving: Vec<Vec<u8>> = tx
        .prepare("SELECT id FROM evict_pending")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in leaving {
        requeue_own(tx, blob_id(&id)?, me, &HashSet::new())?;
    }
    Ok(())
}

/// Queues this replica's own changes to a document again (but those in `skip` and those still
/// queued), so a server that may have lost them sees them before the document goes.
fn requeue_own(
    tx: &Transaction<'_>,
    id: DocId,
    me: shared::ids::Author,
    skip: &HashSet<ChangeHash>,
) -> Result<(), ReplicaError> {
    let Some(stored) = Replica::load_stored(tx, id)? else {
        return Ok(());
    };
    let doc = crdt::load(&stored.bytes)
        .map_err(|e| ReplicaError::BadSyncData(format!("document {id}: {e}")))?;
    let queued: HashSet<ChangeHash> = outbox_of(tx, Some(id))?
        .iter()
        .filter_map(|e| crdt::decode_change(&e.change).ok().map(|c| c.hash()))
        .collect();
    for c in doc.get_changes(&[]) {
        if shared::ids::Author::from_actor_bytes(c.actor_id().to_bytes()) == Some(me)
            && !queued.contains(&c.hash())
            && !skip.contains(&c.hash())
        {
            Replica::queue(tx, id, stored.kind, stored.epoch, c.raw_bytes())?;
        }
    }
    Ok(())
}

/// The field changes `pending` made, each judged against the state it was written on: only this
/// device's own edits, never values it merely merged from others meanwhile (re-asserting those
/// would overwrite newer edits made elsewhere). Each change is diffed from its own dependencies,
/// not the set from the union of theirs: another device's change that builds on one of ours (the
/// server stamping a note's author) would otherwise carry ours into the base and hide it.
/// A run of changes each building only on the one before is diffed as one.
fn own_edits<'a>(
    id: DocId,
    local: &crate::replica::StoredDoc,
    pending: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<shared::record::FieldChange>, ReplicaError> {
    let bad = |e: &dyn std::fmt::Display| ReplicaError::BadSyncData(format!("document {id}: {e}"));
    let old = crdt::load(&local.bytes).map_err(|e| bad(&e))?;
    edits_of(id, &old, local.kind, pending)
}

/// The field changes `changes` (held by `old`) made, each from its own dependencies.
fn edits_of<'a>(
    id: DocId,
    old: &Automerge,
    kind: shared::record::EntityKind,
    changes: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<shared::record::FieldChange>, ReplicaError> {
    let bad = |e: &dyn std::fmt::Display| ReplicaError::BadSyncData(format!("document {id}: {e}"));
    let mut out: Vec<shared::record::FieldChange> = Vec::new();
    let mut flush = |base: &Automerge, made: &Automerge| {
        let diff = crdt::read(base, kind)
            .record
            .diff(&crdt::read(made, kind).record);
        for ch in diff {
            out.retain(|x| !same_register(x, &ch));
            out.push(ch);
        }
    };
    // The run being diffed: its base, the base with the run applied, and the run's last hash.
    let mut run: Option<(Automerge, Automerge, ChangeHash)> = None;
    for bytes in changes {
        let c = crdt::decode_change(bytes).map_err(|e| bad(&e))?;
        let hash = c.hash();
        let continues = matches!(&run, Some((_, _, last)) if c.deps() == [*last]);
        if !continues {
            if let Some((base, made, _)) = run.take() {
                flush(&base, &made);
            }
            let base = old.fork_at(c.deps()).map_err(|e| bad(&e))?;
            let made = base.fork();
            run = Some((base, made, hash));
        }
        if let Some((_, made, last)) = run.as_mut() {
            crdt::apply(made, vec![c]).map_err(|e| bad(&e))?;
            *last = hash;
        }
    }
    if let Some((base, made, _)) = run {
        flush(&base, &made);
    }
    Ok(out)
}

/// What this replica's copy shows that a server restored from an older backup lost: changes of
/// other devices it received (whose author may no longer hold the document) and values a
/// compaction folded into the server's own snapshot, acknowledged work everyone was told.
/// Written again as the values this copy shows, except registers changed on the server since it
/// came back (those are newer) and what this role may not write (office fields, existing items'
/// write-once fields).
fn lost_by_server(
    id: DocId,
    mine: &Automerge,
    theirs: &Automerge,
    kind: shared::record::EntityKind,
    role: shared::ids::Role,
) -> Result<Vec<shared::record::FieldChange>, ReplicaError> {
    let newer: Vec<Vec<u8>> = mine
        .get_changes_added(theirs)
        .iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    let touched = edits_of(id, theirs, kind, newer.iter().map(Vec::as_slice))?;
    let mut out = writable_differences(mine, theirs, kind, role);
    out.retain(|c| !touched.iter().any(|t| same_register(t, c)));
    Ok(out)
}

/// The collection items `mine` shows that `theirs` lacks entirely, as this role may add them.
fn items_lost(
    mine: &Automerge,
    theirs: &Automerge,
    kind: shared::record::EntityKind,
    role: shared::ids::Role,
) -> Vec<shared::record::FieldChange> {
    let server = crdt::read(theirs, kind).record;
    let mut out = writable_differences(mine, theirs, kind, role);
    out.retain(|c| match c.register() {
        (Some((collection, item)), _) => !server
            .items(collection)
            .is_some_and(|items| items.contains_key(item)),
        (None, _) => false,
    });
    out
}

/// The field changes that take `theirs` to what `mine` shows, keeping only what this role may
/// write: registers its role writes, new items of collections it writes, and the mutable fields
/// of existing items.
fn writable_differences(
    mine: &Automerge,
    theirs: &Automerge,
    kind: shared::record::EntityKind,
    role: shared::ids::Role,
) -> Vec<shared::record::FieldChange> {
    let server = crdt::read(theirs, kind).record;
    let schema = shared::model::schema(kind);
    let mut out = server.diff(&crdt::read(mine, kind).record);
    out.retain(|c| match c.register() {
        (None, field) => schema.field(field).is_some_and(|f| f.writers.allows(role)),
        (Some((collection, item)), field) => schema.collection(collection).is_some_and(|spec| {
            let exists = server
                .items(collection)
                .is_some_and(|items| items.contains_key(item));
            spec.writers.allows(role) && (!exists || spec.mutable.contains(&field))
        }),
    });
    out
}

/// Whether two field changes write the same register (a later one replaces the earlier).
fn same_register(a: &shared::record::FieldChange, b: &shared::record::FieldChange) -> bool {
    a.register() == b.register()
}

/// Moves local, unpushed edits of a document onto the server's copy (compacted, or refused): the
/// field changes they made (from the state they were based on) are written again on the
/// snapshot, replacing the old outbox entries; `resend` adds changes of this replica's that the
/// server lost, and `refold` values it lost that are not this replica's own (written first, the
/// device's own edits over them). Nothing the user saved is dropped.
fn rebase(
    tx: &Transaction<'_>,
    actor: shared::ids::Actor,
    now: shared::clock::Millis,
    s: &Snapshot,
    after_seq: u64,
    resend: &[Vec<u8>],
    refold: Vec<shared::record::FieldChange>,
) -> Result<(), ReplicaError> {
    let pending: Vec<OutboxEntry> = outbox_of(tx, Some(s.doc))?
        .into_iter()
        .filter(|e| e.seq > after_seq)
        .collect();
    let local = Replica::load_stored(tx, s.doc)?;
    let nothing = pending.is_empty() && resend.is_empty() && refold.is_empty();
    let (Some(local), false) = (local, nothing) else {
        return replace(tx, s);
    };
    // What the compaction the server lost folded in first; this device's own edits over it.
    let mut edits = refold;
    let own = own_edits(
        s.doc,
        &local,
        resend
            .iter()
            .map(Vec::as_slice)
            .chain(pending.iter().map(|e| e.change.as_slice())),
    )?;
    for ch in own {
        edits.retain(|x| !same_register(x, &ch));
        edits.push(ch);
    }
    let mut doc = load_snapshot(s)?;
    tx.execute("DELETE FROM outbox WHERE doc = ?1", [id_blob(s.doc)])?;
    if let Some(change) = crdt::write(&mut doc, actor, now, &edits)
        .map_err(|e| ReplicaError::BadSyncData(e.to_string()))?
    {
        Replica::queue(tx, s.doc, s.kind, s.epoch, &change)?;
    }
    Replica::store_loaded(tx, s.doc, s.kind, s.epoch, &doc)
}

/// The HTTP transport to a sync server (`POST {base}/api/v1/sync`, bearer token).
#[cfg(feature = "http")]
pub(crate) mod http {
    use super::{Transport, TransportError};
    use crate::device::NetSettings;

    /// The server's HTTP client with a deadline for each request (`None`: a stream that stays
    /// open).
    #[derive(Clone, Debug)]
    pub struct Http {
        client: reqwest::blocking::Client,
        timeout: Option<std::time::Duration>,
    }

    impl Http {
        pub fn request(
            &self,
            method: reqwest::Method,
            url: impl reqwest::IntoUrl,
        ) -> reqwest::blocking::RequestBuilder {
            let r = self.client.request(method, url);
            match self.timeout {
                Some(t) => r.timeout(t),
                None => r,
            }
        }
        pub fn get(&self, url: impl reqwest::IntoUrl) -> reqwest::blocking::RequestBuilder {
            self.request(reqwest::Method::GET, url)
        }
        pub fn post(&self, url: impl reqwest::IntoUrl) -> reqwest::blocking::RequestBuilder {
            self.request(reqwest::Method::POST, url)
        }
        pub fn put(&self, url: impl reqwest::IntoUrl) -> reqwest::blocking::RequestBuilder {
            self.request(reqwest::Method::PUT, url)
        }
    }

    /// The process's clients, one per network settings (in practice one): connection pools,
    /// TLS sessions and the root store are built once, not for every sync.
    static CLIENTS: std::sync::Mutex<Vec<(NetSettings, reqwest::blocking::Client)>> =
        std::sync::Mutex::new(Vec::new());

    /// The client for the server at `base`: its address is checked again (a login saved by an
    /// older version may hold a plain one), and HTTPS is verified by rustls (the same stack on
    /// desktop, Android and iOS) against the platform's roots plus the configured CA bundle.
    /// `timeout: None` for a stream that stays open.
    pub fn client(
        net: &NetSettings,
        base: &str,
        timeout: Option<std::time::Duration>,
    ) -> Result<Http, TransportError> {
        crate::device::parse_server(base, net.allow_plain_http)
            .map_err(|e| TransportError::Insecure(e.to_string()))?;
        let mut clients = CLIENTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let client = match clients.iter().find(|(n, _)| n == net) {
            Some((_, c)) => c.clone(),
            None => {
                let c = build(net)?;
                // Settings change rarely (a CA bundle configured): keep the last few.
                if clients.len() >= 4 {
                    clients.remove(0);
                }
                clients.push((net.clone(), c.clone()));
                c
            }
        };
        Ok(Http { client, timeout })
    }

    fn build(net: &NetSettings) -> Result<reqwest::blocking::Client, TransportError> {
        // rustls' cryptography is ring's on every platform: one process-wide choice, and
        // installing it again is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = reqwest::blocking::Client::builder()
            .user_agent(concat!("fsm-app/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(10))
            // Each request sets its own deadline.
            .timeout(None);
        if let Some(pem) = &net.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                TransportError::Insecure(format!("the CA bundle is not readable: {}", chain(&e)))
            })?;
            if certs.is_empty() {
                return Err(TransportError::Insecure(
                    "the CA bundle holds no certificate".into(),
                ));
            }
            b = b.tls_certs_merge(certs);
        }
        b.build().map_err(|e| TransportError::Insecure(chain(&e)))
    }

    /// An error with its causes, in one line (reqwest's own text is only "error sending
    /// request"; the cause says "invalid peer certificate: UnknownIssuer").
    fn chain(e: &(dyn std::error::Error + 'static)) -> String {
        let mut out = e.to_string();
        let mut cur = e.source();
        while let Some(c) = cur {
            let t = c.to_string();
            if !out.contains(&t) {
                out.push_str(": ");
                out.push_str(&t);
            }
            cur = c.source();
        }
        out
    }

    /// Whether a failure is TLS refusing the server (anywhere in its causes). The connector
    /// wraps rustls' error in types of its own, so its text is read too.
    fn is_tls(e: &(dyn std::error::Error + 'static)) -> bool {
        let mut cur = Some(e);
        while let Some(c) = cur {
            if c.downcast_ref::<rustls::Error>().is_some()
                || c.downcast_ref::<std::io::Error>()
                    .and_then(std::io::Error::get_ref)
                    .is_some_and(|i| i.downcast_ref::<rustls::Error>().is_some())
            {
                return true;
            }
            cur = c.source();
        }
        let text = chain(e);
        TLS_REFUSALS.iter().any(|m| text.contains(m))
    }

    /// How rustls words a refused server.
    const TLS_REFUSALS: &[&str] = &[
        "invalid peer certificate",
        "peer is incompatible",
        "peer misbehaved",
        "received fatal alert",
    ];

    /// A request that failed before any answer: untrusted, or unreachable.
    pub(crate) fn failed(e: reqwest::Error) -> TransportError {
        let e = e.without_url();
        if is_tls(&e) {
            TransportError::Insecure(chain(&e))
        } else {
            TransportError::Unreachable(chain(&e))
        }
    }

    /// Request bodies larger than this are sent gzipped.
    const GZIP_ABOVE: usize = 16 * 1024;

    /// A blocking HTTP client for one server and token. The token is never logged.
    pub struct HttpTransport {
        client: Http,
        url: String,
        token: String,
    }

    impl std::fmt::Debug for HttpTransport {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("HttpTransport")
                .field("url", &self.url)
                .finish_non_exhaustive()
        }
    }

    impl HttpTransport {
        /// `base` is the server's address, e.g. `https://sync.example.net`, reached with the
        /// default [`NetSettings`].
        pub fn new(
            base: &str,
            token: &str,
            timeout: std::time::Duration,
        ) -> Result<Self, TransportError> {
            Self::with_net(&NetSettings::default(), base, token, timeout)
        }

        /// The same, with a private CA or the development setting.
        pub fn with_net(
            net: &NetSettings,
            base: &str,
            token: &str,
            timeout: std::time::Duration,
        ) -> Result<Self, TransportError> {
            Ok(Self::over(client(net, base, Some(timeout))?, base, token))
        }

        fn over(client: Http, base: &str, token: &str) -> Self {
            Self {
                client,
                url: format!("{}/api/v1/sync", base.trim_end_matches('/')),
                token: token.to_owned(),
            }
        }

        /// Shares one connection pool between several transports (many devices in one process:
        /// tests and load benchmarks).
        pub fn with_client(client: reqwest::blocking::Client, base: &str, token: &str) -> Self {
            Self::over(
                Http {
                    client,
                    timeout: None,
                },
                base,
                token,
            )
        }
    }

    impl Transport for HttpTransport {
        fn exchange(&mut self, request: Vec<u8>) -> Result<Vec<u8>, TransportError> {
            // Requests past a few KB (an outbox after a day offline) travel gzipped; answers come
            // gzipped when the server chooses to (reqwest undoes it).
            let mut req = self
                .client
                .post(&self.url)
                .bearer_auth(&self.token)
                .header("content-type", "application/octet-stream");
            let body = if request.len() > GZIP_ABOVE {
                use std::io::Write;
                let mut z = flate2::write::GzEncoder::new(
                    Vec::with_capacity(request.len() / 2),
                    flate2::Compression::fast(),
                );
                let gz = z
                    .write_all(&request)
                    .and_then(|()| z.finish())
                    .map_err(|e| TransportError::Unreachable(e.to_string()))?;
                req = req.header("content-encoding", "gzip");
                gz
            } else {
                request
            };
            let resp = req.body(body).send().map_err(failed)?;
            let status = resp.status();
            let body = resp.bytes().map_err(failed)?;
            if status.is_success() {
                return Ok(body.to_vec());
            }
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
                .unwrap_or_else(|| status.to_string());
            Err(TransportError::Server {
                status: status.as_u16(),
                message,
            })
        }
    }
}
