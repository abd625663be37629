//! Keeping the screen tables in step with the documents.

use rusqlite::{Transaction, params};
use shared::ids::DocId;
use shared::merge::FieldConflict;
use shared::model::{AnyEntity, MacAddr};
use shared::record::{EntityKind, Record, Scalar};

use super::{ReplicaError, id_blob};

fn clear(tx: &Transaction<'_>, id: &[u8; 16], kind: EntityKind) -> Result<(), ReplicaError> {
    let sql = match kind {
        EntityKind::Job => {
            tx.prepare_cached("DELETE FROM job_people WHERE job = ?1")?
                .execute([id])?;
            "DELETE FROM jobs WHERE id = ?1"
        }
        EntityKind::Equipment => "DELETE FROM equipment WHERE id = ?1",
        EntityKind::Customer => "DELETE FROM customers WHERE id = ?1",
        EntityKind::Location => "DELETE FROM locations WHERE id = ?1",
        EntityKind::Subscription => "DELETE FROM subscriptions WHERE id = ?1",
        EntityKind::Technician => "DELETE FROM technicians WHERE id = ?1",
        EntityKind::Tag => "DELETE FROM tags WHERE id = ?1",
    };
    tx.prepare_cached(sql)?.execute([id])?;
    if matches!(kind, EntityKind::Customer | EntityKind::Location) {
        tx.prepare_cached(
            "DELETE FROM search WHERE rowid = (SELECT rid FROM search_ids WHERE id = ?1)",
        )?
        .execute([id])?;
    }
    Ok(())
}

fn index_text(
    tx: &Transaction<'_>,
    id: &[u8; 16],
    kind: EntityKind,
    text: &str,
) -> Result<(), ReplicaError> {
    tx.prepare_cached("INSERT OR IGNORE INTO search_ids (id) VALUES (?1)")?
        .execute([id])?;
    tx.prepare_cached("INSERT INTO search (rowid, id, kind, text) SELECT rid, id, ?2, ?3 FROM search_ids WHERE id = ?1")?
        .execute(params![id, kind.as_str(), text])?;
    Ok(())
}

/// Replaces the materialized rows of one document. An entity that does not validate (a merge of
/// two valid states can, in rare cases, be invalid) keeps no rows and is logged; its document and
/// record stay so the next change can repair it.
pub(super) fn rows(
    tx: &Transaction<'_>,
    id: DocId,
    kind: EntityKind,
    record: &Record,
    fresh: bool,
) -> Result<(), ReplicaError> {
    let key = id_blob(id);
    // A document new to this replica has no rows to clear (the common case in a first sync).
    if !fresh {
        clear(tx, &key, kind)?;
    }
    if record.get("deleted") == &Scalar::Bool(true) {
        return Ok(());
    }
    let entity = match AnyEntity::from_record(kind, id, record) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(doc.id = %id, doc.kind = kind.as_str(), error = %e, "replica.materialize_invalid");
            return Ok(());
        }
    };
    match entity {
        AnyEntity::Job(j) => {
            let date = j.date.to_string();
            tx.prepare_cached(
                "INSERT INTO jobs (id, date, start, duration, status, priority, title, technician, customer, location)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                key,
                date,
                j.start.map(|t| t.format("%H:%M").to_string()),
                j.duration_min,
                j.status.as_str(),
                j.priority.as_str(),
                j.title.as_str(),
                j.technician.map(|t| id_blob(t.doc())),
                id_blob(j.customer.doc()),
                id_blob(j.location.doc()),
            ])?;
            for t in j.technician.iter().chain(&j.assistants) {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO job_people (technician, date, job) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![id_blob(t.doc()), date, key])?;
            }
        }
        AnyEntity::Equipment(q) => {
            tx.prepare_cached("INSERT INTO equipment (id, serial, mac, kind, status, location) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
                .execute(params![
                    key,
                    q.serial.as_str(),
                    q.mac.as_ref().map(MacAddr::compact),
                    q.kind.as_str(),
                    q.status.as_str(),
                    q.location.map(|l| id_blob(l.doc())),
                ])?;
        }
        AnyEntity::Customer(c) => {
            tx.prepare_cached("INSERT INTO customers (id, name) VALUES (?1, ?2)")?
                .execute(params![key, c.name.as_str()])?;
            let phone = c
                .phone
                .as_ref()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            index_text(tx, &key, kind, &format!("{} {}", c.name, phone))?;
        }
        AnyEntity::Location(l) => {
            let address = l.address.one_line();
            tx.prepare_cached(
                "INSERT INTO locations (id, customer, address, city) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                key,
                id_blob(l.customer.doc()),
                address,
                l.address.city.as_str()
            ])?;
            index_text(tx, &key, kind, &address)?;
        }
        AnyEntity::Subscription(s) => {
            tx.prepare_cached("INSERT INTO subscriptions (id, customer, location, plan, status) VALUES (?1, ?2, ?3, ?4, ?5)")?
                .execute(params![key, id_blob(s.customer.doc()), id_blob(s.location.doc()), s.plan.as_str(), s.status.as_str()])?;
        }
        AnyEntity::Technician(t) => {
            tx.prepare_cached("INSERT INTO technicians (id, name) VALUES (?1, ?2)")?
                .execute(params![key, t.name.as_str()])?;
        }
        AnyEntity::Tag(t) => {
            tx.prepare_cached("INSERT INTO tags (id, label) VALUES (?1, ?2)")?
                .execute(params![key, t.label.as_str()])?;
        }
    }
    Ok(())
}

/// What a document lists for people, as the server computed it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Listed<'a> {
    /// Open conflicts: a dispatcher decides.
    pub conflicts: &'a [FieldConflict],
    /// Values settled against someone, shown to them until acknowledged.
    pub overridden: &'a [FieldConflict],
}

/// Replaces the open conflicts and overridden values of one document.
pub(super) fn conflicts(
    tx: &Transaction<'_>,
    id: DocId,
    listed: Listed<'_>,
    fresh: bool,
) -> Result<(), ReplicaError> {
    let key = id_blob(id);
    if !fresh {
        tx.prepare_cached("DELETE FROM conflicts WHERE doc = ?1")?
            .execute([key])?;
    }
    let all = (listed.conflicts.iter().map(|c| (c, false)))
        .chain(listed.overridden.iter().map(|c| (c, true)));
    for (c, settled) in all {
        let data =
            serde_json::to_string(c).map_err(|e| ReplicaError::BadSyncData(e.to_string()))?;
        tx.prepare_cached(
            "INSERT INTO conflicts (doc, field, settled, data) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(doc, field) DO UPDATE SET settled = excluded.settled, data = excluded.data",
        )?
        .execute(params![key, c.field, settled, data])?;
    }
    Ok(())
}

/// Removes a document and everything materialized from it.
pub(crate) fn remove(
    tx: &Transaction<'_>,
    id: DocId,
    kind: EntityKind,
) -> Result<(), ReplicaError> {
    let key = id_blob(id);
    clear(tx, &key, kind)?;
    tx.prepare_cached("DELETE FROM conflicts WHERE doc = ?1")?
        .execute([key])?;
    tx.prepare_cached("DELETE FROM search_ids WHERE id = ?1")?
        .execute([key])?;
    tx.prepare_cached("DELETE FROM docs WHERE id = ?1")?
        .execute([key])?;
    Ok(())
}
