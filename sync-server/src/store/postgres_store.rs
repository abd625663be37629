//! The PostgreSQL store: the same effects and layout as SQLite, for deployments that scale out.

use postgres::{Client, NoTls};
use shared::ids::{DeviceId, DocId};
use shared::record::EntityKind;
use shared::sync::server::{ServerEffect, StoredDoc, StoredLog};

use super::{Store, StoreError};

/// A store in one PostgreSQL schema.
pub struct PostgresStore {
    client: Client,
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

fn seq(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl PostgresStore {
    /// Connects and creates the tables in `schema` if needed. `schema` must be a plain identifier.
    pub fn connect(url: &str, schema: &str) -> Result<Self, StoreError> {
        if schema.is_empty()
            || !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(StoreError::Corrupt(format!(
                "`{schema}` is not a plain schema name"
            )));
        }
        let mut client = Client::connect(url, NoTls)?;
        client.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             SET search_path TO {schema};
             CREATE TABLE IF NOT EXISTS docs (id BYTEA PRIMARY KEY, kind TEXT NOT NULL, epoch INTEGER NOT NULL, bytes BYTEA NOT NULL);
             CREATE TABLE IF NOT EXISTS log (seq BIGINT PRIMARY KEY, doc BYTEA NOT NULL, origin BYTEA, change BYTEA);
             CREATE INDEX IF NOT EXISTS log_doc ON log(doc, seq);
             CREATE TABLE IF NOT EXISTS conflicts (doc BYTEA PRIMARY KEY, conflicts TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS revoked (jti TEXT PRIMARY KEY, exp BIGINT NOT NULL);"
        ))?;
        Ok(Self { client })
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
        Client::connect(url, NoTls)?
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))?;
        Ok(())
    }
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
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn load(&mut self) -> Result<(Vec<StoredDoc>, Vec<StoredLog>), StoreError> {
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
        Ok(self
            .client
            .query_one("SELECT NOT EXISTS (SELECT 1 FROM docs)", &[])?
            .get(0))
    }

    fn meta(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .client
            .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])?
            .map(|r| r.get(0)))
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.client.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&key, &value],
        )?;
        Ok(())
    }

    fn revoke(&mut self, jti: &str, exp: i64) -> Result<bool, StoreError> {
        Ok(self.client.execute(
            "INSERT INTO revoked (jti, exp) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
            &[&jti, &exp],
        )? == 1)
    }

    fn revoked(&mut self, now: i64) -> Result<Vec<String>, StoreError> {
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
