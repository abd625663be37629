//! The PostgreSQL store: the same effects and layout as SQLite, for deployments that scale out.

use postgres::Client;
use postgres::fallible_iterator::FallibleIterator;
use shared::clock::Millis;
use shared::ids::{DeviceId, DocId};
use shared::record::EntityKind;
use shared::sync::server::{ServerEffect, StoredDoc, StoredLog};

use super::{Store, StoreError, Stored};

/// A store in one PostgreSQL schema, shareable by several server instances: exchanges are
/// serialized by an advisory lock, each instance catches up on the others' log before merging,
/// and every commit is announced on a notification channel (see [`PostgresStore::listen`]).
pub struct PostgresStore {
    client: Client,
    /// How to connect again after the database restarts (the URL may hold a password).
    url: String,
    schema: String,
    ca_pem: Option<Vec<u8>>,
    lock_key: i64,
    channel: String,
    locked: bool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection string may hold a password: never print it.
        f.write_str("PostgresStore")
    }
}

fn id(b: &[u8]) -> Result<DocId, StoreError> {
    let a: [u8; 16] = b
        .try_into()
        .map_err(|_| StoreError::Corrupt("id is not 16 bytes".into()))?;
    Ok(DocId::from_bytes(a))
}

/// The advisory-lock key of a schema (stable across processes).
fn lock_key(schema: &str) -> i64 {
    let h = schema.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    i64::from_ne_bytes(h.to_ne_bytes())
}

fn channel(schema: &str) -> String {
    format!("fsm_changes_{schema}")
}

fn seq(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl PostgresStore {
    /// Connects and creates the tables in `schema` if needed. `schema` must be a plain identifier.
    pub fn connect(url: &str, schema: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, schema, None)
    }

    /// Connects with a CA trusted besides the system's (a private PostgreSQL), `sslmode` in
    /// `url` honoured as libpq does (see [`super::pg_tls`]).
    pub fn connect_with(
        url: &str,
        schema: &str,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, StoreError> {
        if schema.is_empty()
            || !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(StoreError::Corrupt(format!(
                "`{schema}` is not a plain schema name"
            )));
        }
        let mut client = open(url, ca_pem)?;
        prepare(&mut client, schema)?;
        Ok(Self {
            client,
            url: url.to_owned(),
            schema: schema.to_owned(),
            ca_pem: ca_pem.map(<[u8]>::to_vec),
            lock_key: lock_key(schema),
            channel: channel(schema),
            locked: false,
        })
    }

    /// A new connection when the current one is closed (the database restarted, or ended it).
    /// A lock the closed connection held ended with it.
    fn reopen_if_closed(&mut self) -> Result<(), StoreError> {
        if self.client.is_closed() {
            self.reopen()?;
        }
        Ok(())
    }

    /// Takes the cross-instance lock and reads what other instances wrote after `head`.
    fn catch_up(&mut self, head: u64) -> Result<Option<Stored>, StoreError> {
        if !self.locked {
            self.client
                .execute("SELECT pg_advisory_lock($1)", &[&self.lock_key])?;
            self.locked = true;
        }
        let log = self
            .client
            .query(
                "SELECT seq, doc, origin, change FROM log WHERE seq > $1 ORDER BY seq",
                &[&seq(head)],
            )?
            .into_iter()
            .map(|r| log_row(&r))
            .collect::<Result<Vec<_>, StoreError>>()?;
        if log.is_empty() {
            return Ok(None);
        }
        let mut ids: Vec<Vec<u8>> = log.iter().map(|l| l.doc.as_bytes().to_vec()).collect();
        ids.sort_unstable();
        ids.dedup();
        let docs = self
            .client
            .query(
                "SELECT id, kind, epoch, bytes FROM docs WHERE id = ANY($1)",
                &[&ids],
            )?
            .into_iter()
            .map(|r| doc_row(&r))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some((docs, log)))
    }

    fn reopen(&mut self) -> Result<(), StoreError> {
        let mut client = open(&self.url, self.ca_pem.as_deref())?;
        prepare(&mut client, &self.schema)?;
        self.client = client;
        self.locked = false;
        tracing::info!("store.reconnected");
        Ok(())
    }

    /// Whether this connection is encrypted (TLS).
    pub fn encrypted(&mut self) -> Result<bool, StoreError> {
        let row = self.client.query_one(
            "SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
            &[],
        )?;
        Ok(row.get(0))
    }

    /// Blocks the calling thread, running `on_change` each time another instance (or this one)
    /// commits to `schema`. Runs until the connection fails.
    pub fn listen(
        url: &str,
        schema: &str,
        ca_pem: Option<&[u8]>,
        mut on_change: impl FnMut(),
    ) -> Result<(), StoreError> {
        let mut client = open(url, ca_pem)?;
        client.batch_execute(&format!("LISTEN {}", channel(schema)))?;
        let mut notes = client.notifications();
        let mut it = notes.blocking_iter();
        while let Some(_n) = it.next()? {
            on_change();
        }
        Ok(())
    }

    /// Drops a schema and everything in it (tests clean up after themselves).
    pub fn drop_schema(url: &str, schema: &str) -> Result<(), StoreError> {
        if !schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(StoreError::Corrupt(format!(
                "`{schema}` is not a plain schema name"
            )));
        }
        open(url, None)?.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))?;
        Ok(())
    }
}

/// Whether an error says the connection is gone: closed, or ended by the server (a restart, a
/// shutdown, an administrator ending it).
fn connection_lost(e: &StoreError) -> bool {
    use postgres::error::SqlState;
    match e {
        StoreError::Postgres(e) => {
            e.is_closed()
                || e.code().is_some_and(|c| {
                    [
                        SqlState::ADMIN_SHUTDOWN,
                        SqlState::CRASH_SHUTDOWN,
                        SqlState::CANNOT_CONNECT_NOW,
                    ]
                    .contains(c)
                })
        }
        _ => false,
    }
}

/// Sets a connection up: the schema and tables, created if needed.
fn prepare(client: &mut Client, schema: &str) -> Result<(), StoreError> {
    client.batch_execute(&format!(
        "SET lock_timeout = '30s';
         CREATE SCHEMA IF NOT EXISTS {schema};
         SET search_path TO {schema};
         CREATE TABLE IF NOT EXISTS docs (id BYTEA PRIMARY KEY, kind TEXT NOT NULL, epoch INTEGER NOT NULL, bytes BYTEA NOT NULL);
         CREATE TABLE IF NOT EXISTS log (seq BIGINT PRIMARY KEY, doc BYTEA NOT NULL, origin BYTEA, change BYTEA);
         CREATE INDEX IF NOT EXISTS log_doc ON log(doc, seq);
         CREATE TABLE IF NOT EXISTS conflicts (doc BYTEA PRIMARY KEY, conflicts TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS revoked (jti TEXT PRIMARY KEY, exp BIGINT NOT NULL);
         CREATE TABLE IF NOT EXISTS device_cursors (device BYTEA PRIMARY KEY, cursor BIGINT NOT NULL, seen BIGINT NOT NULL);
         CREATE TABLE IF NOT EXISTS held (device BYTEA NOT NULL, doc BYTEA NOT NULL, until BIGINT, PRIMARY KEY (device, doc));"
    ))?;
    Ok(())
}

/// A connection, over TLS as `sslmode` asks.
fn open(url: &str, ca_pem: Option<&[u8]>) -> Result<Client, StoreError> {
    let (url, verify) = super::pg_tls::sslmode(url, ca_pem.is_some());
    Client::connect(&url, super::pg_tls::connector(verify, ca_pem)?).map_err(|e| {
        // The client's own text is only "error performing TLS handshake": say why.
        match std::error::Error::source(&e) {
            Some(cause) if e.to_string().contains("TLS") => {
                StoreError::Tls(format!("{e}: {cause}"))
            }
            _ => StoreError::Postgres(e),
        }
    })
}

fn doc_row(r: &postgres::Row) -> Result<StoredDoc, StoreError> {
    let k: String = r.get(1);
    let kind =
        EntityKind::parse(&k).ok_or_else(|| StoreError::Corrupt(format!("unknown kind {k}")))?;
    let epoch: i32 = r.get(2);
    Ok(StoredDoc {
        doc: id(r.get::<_, &[u8]>(0))?,
        kind,
        epoch: u32::try_from(epoch).map_err(|_| StoreError::Corrupt("negative epoch".into()))?,
        bytes: r.get(3),
    })
}

fn log_row(r: &postgres::Row) -> Result<StoredLog, StoreError> {
    let s: i64 = r.get(0);
    let origin: Option<&[u8]> = r.get(2);
    Ok(StoredLog {
        seq: u64::try_from(s).map_err(|_| StoreError::Corrupt("negative sequence".into()))?,
        doc: id(r.get::<_, &[u8]>(1))?,
        origin: origin.map(|o| id(o).map(DeviceId)).transpose()?,
        change: r.get(3),
    })
}

impl Store for PostgresStore {
    fn persist(&mut self, effects: &[ServerEffect]) -> Result<(), StoreError> {
        if effects.is_empty() {
            return Ok(());
        }
        let mut tx = self.client.transaction()?;
        for e in effects {
            match e {
                ServerEffect::PutDoc {
                    doc,
                    kind,
                    epoch,
                    bytes,
                } => {
                    tx.execute(
                        "INSERT INTO docs (id, kind, epoch, bytes) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, epoch = EXCLUDED.epoch, bytes = EXCLUDED.bytes",
                        &[&doc.as_bytes().as_slice(), &kind.as_str(), &i32::try_from(*epoch).unwrap_or(i32::MAX), bytes],
                    )?;
                }
                ServerEffect::AppendLog {
                    seq: s,
                    doc,
                    origin,
                    change,
                } => {
                    let origin = origin.map(|o| o.doc().as_bytes().to_vec());
                    tx.execute(
                        "INSERT INTO log (seq, doc, origin, change) VALUES ($1, $2, $3, $4)",
                        &[&seq(*s), &doc.as_bytes().as_slice(), &origin, change],
                    )?;
                }
                ServerEffect::Compacted { doc, seq: s, .. } => {
                    tx.execute(
                        "DELETE FROM log WHERE doc = $1 AND seq < $2",
                        &[&doc.as_bytes().as_slice(), &seq(*s)],
                    )?;
                    tx.execute(
                        "INSERT INTO log (seq, doc, origin, change) VALUES ($1, $2, NULL, NULL)",
                        &[&seq(*s), &doc.as_bytes().as_slice()],
                    )?;
                }
                ServerEffect::Conflicts { doc, conflicts } => {
                    if conflicts.is_empty() {
                        tx.execute(
                            "DELETE FROM conflicts WHERE doc = $1",
                            &[&doc.as_bytes().as_slice()],
                        )?;
                    } else {
                        let json = serde_json::to_string(conflicts)
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                        tx.execute(
                            "INSERT INTO conflicts (doc, conflicts) VALUES ($1, $2)
                             ON CONFLICT (doc) DO UPDATE SET conflicts = EXCLUDED.conflicts",
                            &[&doc.as_bytes().as_slice(), &json],
                        )?;
                    }
                }
                ServerEffect::DeviceCursor { device, cursor, at } => {
                    tx.execute(
                        "INSERT INTO device_cursors (device, cursor, seen) VALUES ($1, $2, $3)
                         ON CONFLICT (device) DO UPDATE SET cursor = EXCLUDED.cursor, seen = EXCLUDED.seen",
                        &[&device.doc().as_bytes().as_slice(), &seq(*cursor), &at.0],
                    )?;
                }
                ServerEffect::Held {
                    device,
                    held,
                    released,
                    reset,
                    at,
                } => {
                    let d = device.doc().as_bytes().to_vec();
                    if *reset {
                        tx.execute(
                            "UPDATE held SET until = $2 WHERE device = $1 AND until IS NULL",
                            &[&d, &at.0],
                        )?;
                    }
                    let held: Vec<Vec<u8>> = held.iter().map(|x| x.as_bytes().to_vec()).collect();
                    if !held.is_empty() {
                        tx.execute(
                            "INSERT INTO held (device, doc, until) SELECT $1, unnest($2::bytea[]), NULL
                             ON CONFLICT (device, doc) DO UPDATE SET until = NULL",
                            &[&d, &held],
                        )?;
                    }
                    let released: Vec<Vec<u8>> =
                        released.iter().map(|x| x.as_bytes().to_vec()).collect();
                    if !released.is_empty() {
                        tx.execute(
                            "UPDATE held SET until = $3 WHERE device = $1 AND doc = ANY($2) AND until IS NULL",
                            &[&d, &released, &at.0],
                        )?;
                    }
                }
            }
        }
        let top = effects
            .iter()
            .filter_map(|e| match e {
                ServerEffect::AppendLog { seq: s, .. } | ServerEffect::Compacted { seq: s, .. } => {
                    Some(*s)
                }
                _ => None,
            })
            .max();
        if let Some(top) = top {
            // Delivered to listeners when (and only if) the transaction commits.
            tx.execute(
                "SELECT pg_notify($1, $2)",
                &[&self.channel, &top.to_string()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn begin_exchange(&mut self, head: u64) -> Result<Option<Stored>, StoreError> {
        self.reopen_if_closed()?;
        match self.catch_up(head) {
            // The connection died under us (the database restarted): nothing was done yet, so
            // connect again and start over once.
            Err(e) if self.client.is_closed() || connection_lost(&e) => {
                self.reopen()?;
                self.catch_up(head)
            }
            other => other,
        }
    }

    fn end_exchange(&mut self) -> Result<(), StoreError> {
        if self.locked {
            self.locked = false;
            // A closed connection's session lock ended with it.
            if self.client.is_closed() {
                return Ok(());
            }
            self.client
                .execute("SELECT pg_advisory_unlock($1)", &[&self.lock_key])?;
        }
        Ok(())
    }

    fn reconnect(&mut self) -> Result<(), StoreError> {
        self.reopen_if_closed()
    }

    fn load(&mut self) -> Result<Stored, StoreError> {
        self.reopen_if_closed()?;
        let docs = self
            .client
            .query("SELECT id, kind, epoch, bytes FROM docs", &[])?
            .into_iter()
            .map(|r| {
                let k: String = r.get(1);
                let kind = EntityKind::parse(&k)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown kind {k}")))?;
                let epoch: i32 = r.get(2);
                Ok(StoredDoc {
                    doc: id(r.get::<_, &[u8]>(0))?,
                    kind,
                    epoch: u32::try_from(epoch)
                        .map_err(|_| StoreError::Corrupt("negative epoch".into()))?,
                    bytes: r.get(3),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let log = self
            .client
            .query("SELECT seq, doc, origin, change FROM log ORDER BY seq", &[])?
            .into_iter()
            .map(|r| {
                let s: i64 = r.get(0);
                let origin: Option<&[u8]> = r.get(2);
                Ok(StoredLog {
                    seq: u64::try_from(s)
                        .map_err(|_| StoreError::Corrupt("negative sequence".into()))?,
                    doc: id(r.get::<_, &[u8]>(1))?,
                    origin: origin.map(|o| id(o).map(DeviceId)).transpose()?,
                    change: r.get(3),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((docs, log))
    }

    fn is_empty(&mut self) -> Result<bool, StoreError> {
        self.reopen_if_closed()?;
        Ok(self
            .client
            .query_one("SELECT NOT EXISTS (SELECT 1 FROM docs)", &[])?
            .get(0))
    }

    fn meta(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        self.reopen_if_closed()?;
        Ok(self
            .client
            .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])?
            .map(|r| r.get(0)))
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.reopen_if_closed()?;
        self.client.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&key, &value],
        )?;
        Ok(())
    }

    fn delete_meta(&mut self, key: &str) -> Result<(), StoreError> {
        self.reopen_if_closed()?;
        self.client
            .execute("DELETE FROM meta WHERE key = $1", &[&key])?;
        Ok(())
    }

    fn meta_prefix(&mut self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.reopen_if_closed()?;
        Ok(self
            .client
            .query(
                "SELECT key, value FROM meta WHERE left(key, length($1)) = $1 ORDER BY key",
                &[&prefix],
            )?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    fn revoke(&mut self, jti: &str, exp: i64) -> Result<bool, StoreError> {
        self.reopen_if_closed()?;
        let mut tx = self.client.transaction()?;
        let fresh = tx.execute(
            "INSERT INTO revoked (jti, exp) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
            &[&jti, &exp],
        )? == 1;
        // Other instances reload their revocations when they hear this.
        tx.execute("SELECT pg_notify($1, 'revoked')", &[&self.channel])?;
        tx.commit()?;
        Ok(fresh)
    }

    fn horizon(&mut self, seen_since: Millis) -> Result<Option<u64>, StoreError> {
        self.reopen_if_closed()?;
        let min: Option<i64> = self
            .client
            .query_one(
                "SELECT min(cursor) FROM device_cursors WHERE seen >= $1",
                &[&seen_since.0],
            )?
            .get(0);
        Ok(min.map(|m| u64::try_from(m).unwrap_or(0)))
    }

    fn held(
        &mut self,
        device: DeviceId,
        docs: &[DocId],
        since: Millis,
    ) -> Result<Vec<DocId>, StoreError> {
        self.reopen_if_closed()?;
        let ids: Vec<Vec<u8>> = docs.iter().map(|d| d.as_bytes().to_vec()).collect();
        self.client
            .query(
                "SELECT doc FROM held WHERE device = $1 AND doc = ANY($2)
                 AND (until IS NULL OR until >= $3)",
                &[&device.doc().as_bytes().as_slice(), &ids, &since.0],
            )?
            .into_iter()
            .map(|r| id(r.get::<_, &[u8]>(0)))
            .collect()
    }

    fn revoked(&mut self, now: i64) -> Result<Vec<String>, StoreError> {
        self.reopen_if_closed()?;
        self.client
            .execute("DELETE FROM revoked WHERE exp < $1", &[&now])?;
        Ok(self
            .client
            .query("SELECT jti FROM revoked", &[])?
            .into_iter()
            .map(|r| r.get(0))
            .collect())
    }
}
