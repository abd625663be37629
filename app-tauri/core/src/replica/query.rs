//! What screens read: the materialized tables, never the documents.

use chrono::NaiveDate;
use rusqlite::{OptionalExtension, params};
use shared::ids::{Author, DocId, TechnicianId};
use shared::merge::FieldConflict;
use shared::model::{AnyEntity, MacAddr, Serial};
use shared::record::{EntityKind, Scalar};

use super::{Replica, ReplicaError, blob_id, decode_record, id_blob, kind_of};

/// A job in a day list.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub id: DocId,
    pub date: String,
    pub start: Option<String>,
    pub duration_min: u32,
    pub status: String,
    pub priority: String,
    pub title: String,
    pub technician: Option<DocId>,
}

/// A piece of equipment in a lookup.
#[derive(Debug, Clone, PartialEq)]
pub struct EquipmentRow {
    pub id: DocId,
    pub serial: String,
    pub mac: Option<String>,
    pub kind: String,
    pub status: String,
    pub location: Option<DocId>,
}

/// A customer or address matching a search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub id: DocId,
    pub kind: EntityKind,
    pub text: String,
}

/// An open conflict or an overridden value, for the inbox.
#[derive(Debug, Clone, PartialEq)]
pub struct ConflictRow {
    pub doc: DocId,
    /// `false`: an open conflict a dispatcher decides; `true`: a value a field's policy settled
    /// against someone, listed so they see it.
    pub settled: bool,
    pub field: String,
    pub shown: Scalar,
    /// Each concurrent value with its author, when known.
    pub values: Vec<(Scalar, Option<Author>)>,
}

/// An edit the server refused, kept on the device.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectionRow {
    pub doc: DocId,
    /// Why (absent for rows stored before reasons were typed).
    pub reason: Option<shared::protocol::RejectReason>,
    /// What the refused edits changed, to show and apply again.
    pub refused: Vec<shared::record::FieldChange>,
    pub at: shared::clock::Millis,
}

/// What is on the device, for the status indicator.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplicaStatus {
    pub documents: u64,
    pub jobs: u64,
    pub pending_changes: u64,
    pub conflicts: u64,
    pub rejections: u64,
    pub cursor: u64,
    pub first_job_date: Option<String>,
    pub last_job_date: Option<String>,
}

pub(crate) fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: blob_id(&r.get::<_, Vec<u8>>(0)?)?,
        date: r.get(1)?,
        start: r.get(2)?,
        duration_min: r.get(3)?,
        status: r.get(4)?,
        priority: r.get(5)?,
        title: r.get(6)?,
        technician: r
            .get::<_, Option<Vec<u8>>>(7)?
            .map(|b| blob_id(&b))
            .transpose()?,
    })
}

fn equipment_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EquipmentRow> {
    Ok(EquipmentRow {
        id: blob_id(&r.get::<_, Vec<u8>>(0)?)?,
        serial: r.get(1)?,
        mac: r.get(2)?,
        kind: r.get(3)?,
        status: r.get(4)?,
        location: r
            .get::<_, Option<Vec<u8>>>(5)?
            .map(|b| blob_id(&b))
            .transpose()?,
    })
}

const JOB_COLS: &str =
    "j.id, j.date, j.start, j.duration, j.status, j.priority, j.title, j.technician";
const EQUIPMENT_COLS: &str = "id, serial, mac, kind, status, location";

impl Replica {
    /// A technician's jobs of one day (lead or assistant), by start time.
    pub fn jobs_of(&self, tech: TechnicianId, day: NaiveDate) -> Result<Vec<JobRow>, ReplicaError> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {JOB_COLS} FROM job_people p JOIN jobs j ON j.id = p.job
             WHERE p.technician = ?1 AND p.date = ?2 ORDER BY j.start, j.title"
        ))?;
        let rows = st.query_map(params![id_blob(tech.doc()), day.to_string()], job_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// All jobs of one day (the dispatch board), by start time.
    pub fn jobs_on(&self, day: NaiveDate) -> Result<Vec<JobRow>, ReplicaError> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {JOB_COLS} FROM jobs j WHERE j.date = ?1 ORDER BY j.start, j.title"
        ))?;
        let rows = st.query_map([day.to_string()], job_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Equipment by exact serial (as scanned or typed; normalized first).
    pub fn equipment_by_serial(&self, serial: &str) -> Result<Option<EquipmentRow>, ReplicaError> {
        let Ok(serial) = Serial::parse(serial) else {
            return Ok(None);
        };
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {EQUIPMENT_COLS} FROM equipment WHERE serial = ?1"
        ))?;
        Ok(st.query_row([serial.as_str()], equipment_row).optional()?)
    }

    /// Equipment whose MAC starts with what was typed, in any usual notation.
    pub fn equipment_by_mac_prefix(
        &self,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<EquipmentRow>, ReplicaError> {
        let Some(p) = MacAddr::normalize_prefix(prefix) else {
            return Ok(Vec::new());
        };
        if p.is_empty() {
            return Ok(Vec::new());
        }
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {EQUIPMENT_COLS} FROM equipment WHERE mac >= ?1 AND mac < ?1 || 'Z' ORDER BY mac LIMIT ?2"
        ))?;
        let rows = st.query_map(params![p, limit], equipment_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Customers and addresses matching every word typed (accents ignored, prefixes match).
    pub fn search(&self, text: &str, limit: u32) -> Result<Vec<SearchHit>, ReplicaError> {
        let Some(terms) = fts_terms(text) else {
            return Ok(Vec::new());
        };
        let mut st = self.conn.prepare_cached(
            "SELECT id, kind, text FROM search WHERE search MATCH ?1 ORDER BY rank LIMIT ?2",
        )?;
        let rows = st.query_map(params![terms, limit], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        rows.map(|r| {
            let (id, kind, text) = r?;
            Ok(SearchHit {
                id: blob_id(&id)?,
                kind: kind_of(&kind)?,
                text,
            })
        })
        .collect()
    }

    /// One entity for a detail screen, from its materialized record.
    pub fn entity(&self, id: DocId) -> Result<Option<AnyEntity>, ReplicaError> {
        let row = self
            .conn
            .prepare_cached("SELECT kind, record FROM docs WHERE id = ?1")?
            .query_row([id_blob(id)], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .optional()?;
        let Some((kind, record)) = row else {
            return Ok(None);
        };
        let record = decode_record(&record)?;
        if record.get("deleted") == &shared::record::Scalar::Bool(true) {
            return Ok(None);
        }
        Ok(Some(AnyEntity::from_record(kind_of(&kind)?, id, &record)?))
    }

    /// Every document id on the device with its kind.
    pub fn doc_ids(&self) -> Result<Vec<(DocId, EntityKind)>, ReplicaError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id, kind FROM docs ORDER BY id")?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
        })?;
        rows.map(|r| {
            let (id, kind) = r?;
            Ok((blob_id(&id)?, kind_of(&kind)?))
        })
        .collect()
    }

    /// The materialized record of a document (tests compare these across replicas).
    pub fn record(&self, id: DocId) -> Result<Option<shared::record::Record>, ReplicaError> {
        let row = self
            .conn
            .prepare_cached("SELECT record FROM docs WHERE id = ?1")?
            .query_row([id_blob(id)], |r| r.get::<_, Vec<u8>>(0))
            .optional()?;
        row.map(|b| decode_record(&b)).transpose()
    }

    /// The conflict inbox.
    pub fn conflicts(&self) -> Result<Vec<ConflictRow>, ReplicaError> {
        self.conflict_rows(None)
    }

    /// The open conflicts and overridden values of one document.
    pub fn conflicts_of(&self, doc: DocId) -> Result<Vec<ConflictRow>, ReplicaError> {
        self.conflict_rows(Some(doc))
    }

    fn conflict_rows(&self, doc: Option<DocId>) -> Result<Vec<ConflictRow>, ReplicaError> {
        let mut st = self.conn.prepare_cached(
            "SELECT doc, settled, data FROM conflicts WHERE ?1 IS NULL OR doc = ?1
             ORDER BY settled, doc, field",
        )?;
        let rows = st.query_map([doc.map(id_blob)], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, bool>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        rows.map(|r| {
            let (doc, settled, data) = r?;
            let c: FieldConflict = serde_json::from_str(&data)
                .map_err(|e| ReplicaError::BadSyncData(e.to_string()))?;
            Ok(ConflictRow {
                doc: blob_id(&doc)?,
                settled,
                field: c.field,
                shown: c.shown,
                values: c.values,
            })
        })
        .collect()
    }

    /// Edits the server refused, oldest first, with what they changed.
    pub fn rejections(&self) -> Result<Vec<RejectionRow>, ReplicaError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT doc, reason, refused, at FROM rejections ORDER BY id")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        rows.map(|r| {
            let (d, reason, refused, at) = r?;
            Ok(RejectionRow {
                doc: blob_id(&d)?,
                // Rows from before reasons were stored typed read as unknown.
                reason: serde_json::from_str(&reason).ok(),
                refused: serde_json::from_str(&refused)
                    .map_err(|e| ReplicaError::BadSyncData(format!("refused edits: {e}")))?,
                at: shared::clock::Millis(at),
            })
        })
        .collect()
    }

    /// Counts for the "what is on this device" indicator.
    pub fn status(&self) -> Result<ReplicaStatus, ReplicaError> {
        let count = |sql: &str| -> Result<u64, ReplicaError> {
            Ok(self
                .conn
                .query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|v| u64::try_from(v).unwrap_or(0))?)
        };
        let (first, last) =
            self.conn
                .query_row("SELECT min(date), max(date) FROM jobs", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
        Ok(ReplicaStatus {
            documents: count("SELECT count(*) FROM docs")?,
            jobs: count("SELECT count(*) FROM jobs")?,
            pending_changes: count("SELECT count(*) FROM outbox")?,
            conflicts: count("SELECT count(*) FROM conflicts WHERE settled = 0")?,
            rejections: count("SELECT count(*) FROM rejections")?,
            cursor: self.sync_point()?.cursor,
            first_job_date: first,
            last_job_date: last,
        })
    }
}

/// An FTS5 query for typed words: each word a quoted prefix (so no word is read as an operator),
/// all required; `None` when there is no word.
pub(crate) fn fts_terms(text: &str) -> Option<String> {
    let terms: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{w}\"*"))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}
