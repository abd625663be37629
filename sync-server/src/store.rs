//! Durable storage of the engine's effects: the [`Store`] port, SQLite (embedded, the default)
//! and PostgreSQL ([`postgres_store`], to scale out). Both pass one contract suite
//! (`sync-server/tests/store_contract.rs`).
//!
//! Every effect of one sync exchange is written in one transaction before the answer leaves (with
//! those of the exchanges committed together with it, `service.rs`), so an acknowledged change
//! survives the process being killed. SQLite runs in WAL; `synchronous=NORMAL`
//! loses nothing on a process kill, `FULL` is configurable for power loss.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use shared::clock::Millis;
use shared::ids::{DeviceId, DocId};
use shared::record::EntityKind;
use shared::sync::server::{ServerEffect, StoredDoc, StoredLog};

pub mod pg_tls;
pub mod postgres_store;

/// What can go wrong with a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("postgres error: {0}")]
    Postgres(#[from] postgres::Error),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("TLS to PostgreSQL: {0}")]
    Tls(String),
    #[error("disk: {0}")]
    Io(String),
    /// A failure shared by several exchanges committed together, as the first one was told.
    #[error("{0}")]
    Failed(String),
}

/// Documents and log entries as a store holds them: what an engine is rebuilt from.
pub type Stored = (Vec<StoredDoc>, Vec<StoredLog>);

/// Where the engine's effects are kept and rebuilt from.
pub trait Store: Send {
    /// Writes the effects of one exchange, or of a group of exchanges, atomically.
    fn persist(&mut self, effects: &[ServerEffect]) -> Result<(), StoreError>;
    /// Like [`Self::persist`], but the effects may still be on their way to the disk when it
    /// returns: they are durable once [`Self::flusher`]'s flush has run after it. A store that
    /// cannot split the two persists durably here (the default).
    fn persist_deferred(&mut self, effects: &[ServerEffect]) -> Result<(), StoreError> {
        self.persist(effects)
    }
    /// What makes every deferred commit so far durable, callable without the store (so the next
    /// group merges while the disk syncs). `None`: commits are durable when they return.
    fn flusher(&self) -> Option<Flusher> {
        None
    }
    /// Everything needed to rebuild the engine.
    fn load(&mut self) -> Result<Stored, StoreError>;
    fn is_empty(&mut self) -> Result<bool, StoreError>;
    fn meta(&mut self, key: &str) -> Result<Option<String>, StoreError>;
    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError>;
    fn delete_meta(&mut self, key: &str) -> Result<(), StoreError>;
    /// Every meta entry whose key starts with `prefix`, by key.
    fn meta_prefix(&mut self, prefix: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// Revokes a token id until `exp` (Unix seconds, when the token would expire anyway).
    /// Returns `false` if it was already revoked: a magic link is used by revoking it, so this
    /// is also the single-use check.
    fn revoke(&mut self, jti: &str, exp: i64) -> Result<bool, StoreError>;
    /// The revoked token ids that have not expired at `now` (Unix seconds).
    fn revoked(&mut self, now: i64) -> Result<Vec<String>, StoreError>;
    /// The lowest log position of the devices seen at or after `seen_since`
    /// ([`ServerEffect::DeviceCursor`]); `None` when no such device is recorded. Compaction never
    /// goes past it.
    fn horizon(&mut self, seen_since: Millis) -> Result<Option<u64>, StoreError>;
    /// Which of `docs` the device holds, or released at or after `since` ([`ServerEffect::Held`]).
    fn held(
        &mut self,
        device: DeviceId,
        docs: &[DocId],
        since: Millis,
    ) -> Result<Vec<DocId>, StoreError>;
    /// Called before an exchange with the engine's head: a store shared by several server
    /// instances takes its cross-instance lock and returns what the others wrote after `head`
    /// (their log entries and the current bytes of the documents they touched). A store owned by
    /// one process returns nothing.
    fn begin_exchange(&mut self, _head: u64) -> Result<Option<Stored>, StoreError> {
        Ok(None)
    }
    /// Called after the exchange (persisted or not): releases what `begin_exchange` took.
    fn end_exchange(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Connects again if the connection to a database server was lost (it restarted). A store
    /// in a local file has nothing to do.
    fn reconnect(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Makes a store's deferred commits durable (an fsync).
pub type Flusher = std::sync::Arc<dyn Fn() -> Result<(), StoreError> + Send + Sync>;

/// The SQLite store.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    /// The database file's path, when it survives power loss (`full_sync`).
    full_sync: Option<std::path::PathBuf>,
}

/// Syncs a SQLite database's write-ahead log to the disk. A commit in WAL mode with
/// `synchronous=NORMAL` has written its frames to the log but not synced them; syncing the log
/// file afterwards makes every commit so far as durable as `synchronous=FULL` would have.
/// Frames moved into the database by a checkpoint are synced by SQLite itself at `NORMAL`.
fn sync_wal(db: &Path, dir_synced: &std::sync::atomic::AtomicBool) -> Result<(), StoreError> {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let io = |e: std::io::Error| StoreError::Io(format!("syncing the write-ahead log: {e}"));
    match std::fs::File::open(&wal) {
        Ok(f) => f.sync_data().map_err(io)?,
        // Not there: nothing written since the last checkpoint closed it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    }
    // The log file's own directory entry, once, as SQLite does for a journal it creates.
    if !dir_synced.load(std::sync::atomic::Ordering::Acquire)
        && let Some(dir) = db.parent()
    {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        dir_synced.store(true, std::sync::atomic::Ordering::Release);
    }
    Ok(())
}

fn blob(id: DocId) -> [u8; 16] {
    *id.as_bytes()
}

fn id(b: &[u8]) -> Result<DocId, StoreError> {
    let a: [u8; 16] = b
        .try_into()
        .map_err(|_| StoreError::Corrupt("id is not 16 bytes".into()))?;
    Ok(DocId::from_bytes(a))
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`; `full_sync` also survives power loss.
    pub fn open(path: &Path, full_sync: bool) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(
            None,
            "synchronous",
            if full_sync { "FULL" } else { "NORMAL" },
        )?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS docs (
                 id BLOB PRIMARY KEY, kind TEXT NOT NULL, epoch INTEGER NOT NULL, bytes BLOB NOT NULL
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS log (
                 seq INTEGER PRIMARY KEY, doc BLOB NOT NULL, origin BLOB, change BLOB
             );
             CREATE INDEX IF NOT EXISTS log_doc ON log(doc, seq);
             CREATE TABLE IF NOT EXISTS conflicts (
                 doc BLOB PRIMARY KEY, conflicts TEXT NOT NULL
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS revoked (jti TEXT PRIMARY KEY, exp INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS device_cursors (
                 device BLOB PRIMARY KEY, cursor INTEGER NOT NULL, seen INTEGER NOT NULL
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS held (
                 device BLOB NOT NULL, doc BLOB NOT NULL, until INTEGER, PRIMARY KEY (device, doc)
             ) WITHOUT ROWID;",
        )?;
        Ok(Self {
            conn,
            full_sync: full_sync.then(|| path.to_owned()),
        })
    }
}

impl Store for SqliteStore {
    fn persist_deferred(&mut self, effects: &[ServerEffect]) -> Result<(), StoreError> {
        if self.full_sync.is_none() {
            return self.persist(effects);
        }
        // The commit writes its frames without waiting for the disk; the flusher syncs them.
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let done = self.persist(effects);
        let restored = self.conn.pragma_update(None, "synchronous", "FULL");
        done?;
        Ok(restored?)
    }

    fn flusher(&self) -> Option<Flusher> {
        let db = self.full_sync.clone()?;
        let dir_synced = std::sync::atomic::AtomicBool::new(false);
        Some(std::sync::Arc::new(move || sync_wal(&db, &dir_synced)))
    }

    fn persist(&mut self, effects: &[ServerEffect]) -> Result<(), StoreError> {
        if effects.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        for e in effects {
            match e {
                ServerEffect::PutDoc {
                    doc,
                    kind,
                    epoch,
                    bytes,
                } => {
                    tx.prepare_cached(
                        "INSERT INTO docs (id, kind, epoch, bytes) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT(id) DO UPDATE SET kind = excluded.kind, epoch = excluded.epoch, bytes = excluded.bytes",
                    )?
                    .execute(params![blob(*doc), kind.as_str(), epoch, bytes])?;
                }
                ServerEffect::AppendLog {
                    seq,
                    doc,
                    origin,
                    change,
                } => {
                    tx.prepare_cached(
                        "INSERT INTO log (seq, doc, origin, change) VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![
                        i64_of(*seq),
                        blob(*doc),
                        origin.map(|o| blob(o.doc())),
                        change
                    ])?;
                }
                ServerEffect::Compacted { doc, seq, .. } => {
                    tx.prepare_cached("DELETE FROM log WHERE doc = ?1 AND seq < ?2")?
                        .execute(params![blob(*doc), i64_of(*seq)])?;
                    tx.prepare_cached(
                        "INSERT INTO log (seq, doc, origin, change) VALUES (?1, ?2, NULL, NULL)",
                    )?
                    .execute(params![i64_of(*seq), blob(*doc)])?;
                }
                ServerEffect::Conflicts { doc, conflicts } => {
                    if conflicts.is_empty() {
                        tx.prepare_cached("DELETE FROM conflicts WHERE doc = ?1")?
                            .execute([blob(*doc)])?;
                    } else {
                        let json = serde_json::to_string(conflicts)
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                        tx.prepare_cached(
                            "INSERT INTO conflicts (doc, conflicts) VALUES (?1, ?2)
                             ON CONFLICT(doc) DO UPDATE SET conflicts = excluded.conflicts",
                        )?
                        .execute(params![blob(*doc), json])?;
                    }
                }
                ServerEffect::DeviceCursor { device, cursor, at } => {
                    tx.prepare_cached(
                        "INSERT INTO device_cursors (device, cursor, seen) VALUES (?1, ?2, ?3)
                         ON CONFLICT(device) DO UPDATE SET cursor = excluded.cursor, seen = excluded.seen",
                    )?
                    .execute(params![blob(device.doc()), i64_of(*cursor), at.0])?;
                }
                ServerEffect::Held {
                    device,
                    held,
                    released,
                    reset,
                    at,
                } => {
                    let d = blob(device.doc());
                    if *reset {
                        tx.prepare_cached(
                            "UPDATE held SET until = ?2 WHERE device = ?1 AND until IS NULL",
                        )?
                        .execute(params![d, at.0])?;
                    }
                    let mut hold = tx.prepare_cached(
                        "INSERT INTO held (device, doc, until) VALUES (?1, ?2, NULL)
                         ON CONFLICT(device, doc) DO UPDATE SET until = NULL",
                    )?;
                    for doc in held {
                        hold.execute(params![d, blob(*doc)])?;
                    }
                    let mut release = tx.prepare_cached(
                        "UPDATE held SET until = ?3 WHERE device = ?1 AND doc = ?2 AND until IS NULL",
                    )?;
                    for doc in released {
                        release.execute(params![d, blob(*doc), at.0])?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn load(&mut self) -> Result<Stored, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT id, kind, epoch, bytes FROM docs")?;
        let docs = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u32>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            })?
            .map(|r| {
                let (d, k, epoch, bytes) = r?;
                let kind = EntityKind::parse(&k)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown kind {k}")))?;
                Ok(StoredDoc {
                    doc: id(&d)?,
                    kind,
                    epoch,
                    bytes,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut st = self
            .conn
            .prepare("SELECT seq, doc, origin, change FROM log ORDER BY seq")?;
        let log = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Option<Vec<u8>>>(2)?,
                    r.get::<_, Option<Vec<u8>>>(3)?,
                ))
            })?
            .map(|r| {
                let (seq, d, origin, change) = r?;
                Ok(StoredLog {
                    seq: u64::try_from(seq)
                        .map_err(|_| StoreError::Corrupt("negative sequence".into()))?,
                    doc: id(&d)?,
                    origin: origin.map(|o| id(&o).map(DeviceId)).transpose()?,
                    change,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((docs, log))
    }

    fn is_empty(&mut self) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT NOT EXISTS (SELECT 1 FROM docs)", [], |r| r.get(0))?)
    }

    fn meta(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    fn delete_meta(&mut self, key: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM meta WHERE key = ?1", [key])?;
        Ok(())
    }

    fn meta_prefix(&mut self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT key, value FROM meta WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
        )?;
        let rows = st.query_map([prefix], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn revoke(&mut self, jti: &str, exp: i64) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "INSERT OR IGNORE INTO revoked (jti, exp) VALUES (?1, ?2)",
            params![jti, exp],
        )? == 1)
    }

    fn horizon(&mut self, seen_since: Millis) -> Result<Option<u64>, StoreError> {
        let min: Option<i64> = self.conn.query_row(
            "SELECT min(cursor) FROM device_cursors WHERE seen >= ?1",
            [seen_since.0],
            |r| r.get(0),
        )?;
        Ok(min.map(|m| u64::try_from(m).unwrap_or(0)))
    }

    fn held(
        &mut self,
        device: DeviceId,
        docs: &[DocId],
        since: Millis,
    ) -> Result<Vec<DocId>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM held WHERE device = ?1 AND doc = ?2
                 AND (until IS NULL OR until >= ?3))",
        )?;
        let mut out = Vec::new();
        for doc in docs {
            if st.query_row(params![blob(device.doc()), blob(*doc), since.0], |r| {
                r.get::<_, bool>(0)
            })? {
                out.push(*doc);
            }
        }
        Ok(out)
    }

    fn revoked(&mut self, now: i64) -> Result<Vec<String>, StoreError> {
        self.conn
            .execute("DELETE FROM revoked WHERE exp < ?1", [now])?;
        let mut st = self.conn.prepare("SELECT jti FROM revoked")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
