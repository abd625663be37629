//! The mapping of an entity [`Record`] to one small Automerge document.
//!
//! Layout: the document root is a map; each register is a key holding a scalar, and each collection
//! is a key holding a map from item key to an item map of scalars. Collection maps are created with
//! the document, never later, so concurrent appends from two devices land in the same map.
//! Reading applies each field's merge `Policy` to the concurrent values,
//! so every replica shows the same state and lists the same conflicts.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, Change, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};

use crate::clock::Millis;
use crate::ids::{Actor, Author};
use crate::merge::{Candidate, FieldConflict, resolve};
use crate::model::{field_spec, schema};
use crate::record::{EntityKind, FieldChange, Items, Policy, Record, Scalar};

/// A document or change that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CrdtError {
    #[error("document bytes are corrupt: {0}")]
    CorruptDocument(String),
    #[error("change bytes are corrupt: {0}")]
    CorruptChange(String),
    #[error("change {hash} depends on history this replica does not have")]
    MissingDependencies { hash: String },
    #[error("automerge refused the operation: {0}")]
    Automerge(#[from] automerge::AutomergeError),
}

/// A document read through its merge policies.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Materialized {
    pub record: Record,
    pub conflicts: Vec<FieldConflict>,
    /// Values a field's policy settled against a person, shown to them until someone
    /// acknowledges it (by writing the kept value again).
    pub overridden: Vec<FieldConflict>,
    /// What the document holds outside its schema, which the reading leaves out.
    pub strays: Vec<Stray>,
}

/// Something a document holds that no reading shows: data hidden from every screen, which a push
/// may not add.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stray {
    #[error("`{0}` is not part of the schema")]
    UnknownKey(String),
    #[error("`{0}` holds an object or raw bytes where a value belongs")]
    Object(String),
    #[error("`{0}` holds {1} bytes, at most {max}", max = crate::record::MAX_VALUE_BYTES)]
    Oversized(String, usize),
}

pub fn actor_id(actor: impl Into<Actor>) -> ActorId {
    ActorId::from(actor.into().to_bytes().as_slice())
}

fn to_value(s: &Scalar) -> ScalarValue {
    match s {
        Scalar::Null => ScalarValue::Null,
        Scalar::Bool(b) => ScalarValue::Boolean(*b),
        Scalar::Int(i) => ScalarValue::Int(*i),
        Scalar::F64(x) => ScalarValue::F64(*x),
        Scalar::Str(s) => ScalarValue::Str(s.as_str().into()),
    }
}

fn from_value(v: &Value<'_>) -> Scalar {
    match v {
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Null => Scalar::Null,
            ScalarValue::Boolean(b) => Scalar::Bool(*b),
            ScalarValue::Int(i) | ScalarValue::Timestamp(i) => Scalar::Int(*i),
            ScalarValue::Uint(u) => i64::try_from(*u).map_or(Scalar::Null, Scalar::Int),
            ScalarValue::F64(x) => Scalar::F64(*x),
            ScalarValue::Str(s) => Scalar::Str(s.to_string()),
            ScalarValue::Counter(c) => Scalar::Int(i64::from(c)),
            _ => Scalar::Null,
        },
        Value::Object(_) => Scalar::Null,
    }
}

/// Commits; whether the transaction made a change (writing only values already there makes none).
fn commit(tx: automerge::transaction::Transaction<'_>, at: Millis) -> bool {
    tx.commit_with(CommitOptions::default().with_time(at.0))
        .0
        .is_some()
}

/// Creates the document of a new entity; returns it and the bytes of its one change.
pub fn create(
    kind: EntityKind,
    author: impl Into<Actor>,
    at: Millis,
    record: &Record,
) -> Result<(Automerge, Vec<u8>), CrdtError> {
    let mut doc = Automerge::new().with_actor(actor_id(author));
    let mut tx = doc.transaction();
    for (k, v) in &record.fields {
        tx.put(ROOT, k.as_str(), to_value(v))?;
    }
    let mut names: Vec<&str> = schema(kind).collections.iter().map(|c| c.name).collect();
    names.extend(record.collections.keys().map(String::as_str));
    names.sort_unstable();
    names.dedup();
    for name in names {
        let coll = tx.put_object(ROOT, name, ObjType::Map)?;
        for (key, item) in record.collections.get(name).into_iter().flatten() {
            let obj = tx.put_object(&coll, key.as_str(), ObjType::Map)?;
            for (f, v) in item {
                tx.put(&obj, f.as_str(), to_value(v))?;
            }
        }
    }
    commit(tx, at);
    let change = doc
        .get_last_local_change()
        .map(|c| c.raw_bytes().to_vec())
        .unwrap_or_default();
    Ok((doc, change))
}

fn map_at(doc: &impl ReadDoc, parent: &ObjId, key: &str) -> Option<ObjId> {
    match doc.get(parent, key).ok().flatten() {
        Some((Value::Object(ObjType::Map), id)) => Some(id),
        _ => None,
    }
}

/// Writes field changes as one change by `author`; returns its bytes (`None` if nothing changed).
pub fn write(
    doc: &mut Automerge,
    author: impl Into<Actor>,
    at: Millis,
    changes: &[FieldChange],
) -> Result<Option<Vec<u8>>, CrdtError> {
    if changes.is_empty() {
        return Ok(None);
    }
    doc.set_actor(actor_id(author));
    let mut tx = doc.transaction();
    for ch in changes {
        match ch {
            FieldChange::Set { field, value } => {
                tx.put(ROOT, field.as_str(), to_value(value))?;
            }
            FieldChange::SetItem {
                collection,
                item,
                field,
                value,
            } => {
                let coll = match map_at(&tx, &ROOT, collection) {
                    Some(id) => id,
                    None => tx.put_object(ROOT, collection.as_str(), ObjType::Map)?,
                };
                let obj = match map_at(&tx, &coll, item) {
                    Some(id) => id,
                    None => tx.put_object(&coll, item.as_str(), ObjType::Map)?,
                };
                tx.put(&obj, field.as_str(), to_value(value))?;
            }
        }
    }
    if !commit(tx, at) {
        return Ok(None);
    }
    Ok(doc.get_last_local_change().map(|c| c.raw_bytes().to_vec()))
}

/// Writes a decision on a register or an item's field (a conflict settled, an override
/// acknowledged) as a real new value that supersedes every current one, even when the value is
/// among them. Automerge writes nothing for a value equal to the one it shows (or only deletes
/// the others), which would let a concurrent opposite decision erase this one without a trace;
/// writing through a placeholder in the same change makes the decision a value of its own.
/// Returns the change's bytes.
pub fn decide(
    doc: &mut Automerge,
    author: impl Into<Actor>,
    at: Millis,
    decision: &FieldChange,
) -> Result<Vec<u8>, CrdtError> {
    let (value, field) = match decision {
        FieldChange::Set { field, value } | FieldChange::SetItem { field, value, .. } => {
            (value, field.as_str())
        }
    };
    let placeholder = if value == &Scalar::Null {
        Scalar::Bool(false)
    } else {
        Scalar::Null
    };
    doc.set_actor(actor_id(author));
    let mut tx = doc.transaction();
    let obj = match decision {
        FieldChange::Set { .. } => ROOT,
        FieldChange::SetItem {
            collection, item, ..
        } => map_at(&tx, &ROOT, collection)
            .and_then(|c| map_at(&tx, &c, item))
            .ok_or_else(|| {
                CrdtError::CorruptDocument(format!("no item {collection}[{item}] to decide on"))
            })?,
    };
    tx.put(&obj, field, to_value(&placeholder))?;
    tx.put(&obj, field, to_value(value))?;
    commit(tx, at);
    doc.get_last_local_change()
        .map(|c| c.raw_bytes().to_vec())
        .ok_or_else(|| CrdtError::CorruptDocument("the decision wrote no change".into()))
}

/// Opens a decision on a register: `values` written as concurrent values of the same key by two
/// incarnations of `author` (who must not write elsewhere concurrently), so the field's policy
/// lists them as a conflict until someone decides. Returns the changes' bytes, applied to `doc`.
pub fn open_decision(
    doc: &mut Automerge,
    author: Author,
    at: Millis,
    field: &str,
    values: [&Scalar; 2],
) -> Result<Vec<Vec<u8>>, CrdtError> {
    let heads = doc.get_heads();
    let mut out = Vec::with_capacity(2);
    for (incarnation, value) in [0u32, 1].into_iter().zip(values) {
        let mut fork = doc.fork_at(&heads)?;
        out.push(decide(
            &mut fork,
            Actor {
                author,
                incarnation,
            },
            at,
            &FieldChange::Set {
                field: field.to_owned(),
                value: value.clone(),
            },
        )?);
    }
    apply(
        doc,
        out.iter()
            .map(|c| decode_change(c))
            .collect::<Result<Vec<_>, _>>()?,
    )?;
    Ok(out)
}

/// The document's current heads, as hex strings (what a bridge remembers as "the state I last
/// reconciled with").
pub fn heads_hex(doc: &Automerge) -> Vec<String> {
    doc.get_heads().iter().map(ToString::to_string).collect()
}

/// When the current value of a top-level `field` was written, by the writer's clock (the time of
/// the change that wrote it); `None` if the field is absent, or its change is no longer in the
/// document's history (compacted into a snapshot).
pub fn written_at(doc: &Automerge, field: &str) -> Option<Millis> {
    let (_, id) = doc.get(ROOT, field).ok().flatten()?;
    let hash = doc.hash_for_opid(&id)?;
    let change = doc.get_change_by_hash(&hash)?;
    // A snapshot's changes carry no time of their own.
    (change.timestamp() > 0).then(|| Millis(change.timestamp()))
}

/// Writes `changes` by `author` as if made at `base` (hex change hashes), concurrently with
/// whatever the document gained since, and merges the result back: the fields' merge policies
/// then settle the two sides and list a conflict where they cannot. Unknown or empty `base`
/// (history compacted away) writes on the current state instead. Returns the change's bytes.
///
/// `author` must write only through this function and must not write elsewhere concurrently:
/// its latest change is always included in the fork so its sequence stays contiguous.
pub fn write_concurrent(
    doc: &mut Automerge,
    base: &[String],
    author: impl Into<Actor>,
    at: Millis,
    changes: &[FieldChange],
) -> Result<Option<Vec<u8>>, CrdtError> {
    let mut heads: Vec<automerge::ChangeHash> =
        base.iter().filter_map(|h| h.parse().ok()).collect();
    let known = !heads.is_empty()
        && heads.len() == base.len()
        && heads.iter().all(|h| doc.get_change_by_hash(h).is_some());
    let author = author.into();
    if !known {
        return write(doc, author, at, changes);
    }
    let actor = actor_id(author);
    if let Some(last) = doc
        .get_changes(&[])
        .iter()
        .rev()
        .find(|c| c.actor_id() == &actor)
        .map(|c| c.hash())
    {
        heads.push(last);
    }
    let mut fork = doc.fork_at(&heads)?;
    let Some(change) = write(&mut fork, author, at, changes)? else {
        return Ok(None);
    };
    apply(doc, vec![decode_change(&change)?])?;
    Ok(Some(change))
}

/// The concurrent values at a key, reporting each object or oversized value (a losing value is
/// hidden from the reading as much as an unknown key is).
fn candidates(
    doc: &Automerge,
    obj: &ObjId,
    key: &str,
    stray: &mut dyn FnMut(Stray),
) -> Vec<Candidate> {
    let all = doc.get_all(obj, key).unwrap_or_default();
    for (v, _) in &all {
        match v {
            Value::Object(_) => stray(Stray::Object(key.to_owned())),
            Value::Scalar(s) => match s.as_ref() {
                ScalarValue::Str(t) if t.len() > crate::record::MAX_VALUE_BYTES => {
                    stray(Stray::Oversized(key.to_owned(), t.len()));
                }
                // Read as nothing: bytes no screen shows.
                ScalarValue::Bytes(_) | ScalarValue::Unknown { .. } => {
                    stray(Stray::Object(key.to_owned()));
                }
                _ => {}
            },
        }
    }
    all.iter()
        .map(|(v, id)| {
            let author = match id {
                automerge::ObjId::Id(_, actor, _) => Author::from_actor_bytes(actor.to_bytes()),
                automerge::ObjId::Root => None,
            };
            (from_value(v), author)
        })
        .collect()
}

/// Lists a register's open conflict or override.
fn note(out: &mut Materialized, field: String, res: &crate::merge::Resolution) {
    let (list, values) = match (&res.conflict, &res.overridden) {
        (Some(v), _) => (&mut out.conflicts, v),
        (None, Some(v)) => (&mut out.overridden, v),
        (None, None) => return,
    };
    list.push(FieldConflict {
        field,
        shown: res.value.clone(),
        values: values.clone(),
    });
}

/// Reads a document through its merge policies.
pub fn read(doc: &Automerge, kind: EntityKind) -> Materialized {
    let mut out = Materialized::default();
    let mut strays = Vec::new();
    let sch = schema(kind);
    for key in doc.keys(ROOT) {
        if let Some(coll) = sch.collection(&key) {
            let Some(coll_id) = map_at(doc, &ROOT, &key) else {
                strays.push(Stray::Object(key.clone()));
                continue;
            };
            let mut items = Items::new();
            for item_key in doc.keys(&coll_id) {
                let Some(item_id) = map_at(doc, &coll_id, &item_key) else {
                    strays.push(Stray::Object(format!("{key}[{item_key}]")));
                    continue;
                };
                let mut item = std::collections::BTreeMap::new();
                for f in doc.keys(&item_id) {
                    if !coll.fields.contains(&f.as_str()) {
                        strays.push(Stray::UnknownKey(format!("{key}[{item_key}].{f}")));
                    }
                    let found = candidates(doc, &item_id, &f, &mut |s| {
                        strays.push(match s {
                            Stray::Object(_) => Stray::Object(format!("{key}[{item_key}].{f}")),
                            Stray::Oversized(_, n) => {
                                Stray::Oversized(format!("{key}[{item_key}].{f}"), n)
                            }
                            other => other,
                        });
                    });
                    let res = resolve(coll.policy, &found);
                    note(&mut out, format!("{key}[{item_key}].{f}"), &res);
                    item.insert(f, res.value);
                }
                items.insert(item_key, item);
            }
            out.record.collections.insert(key, items);
        } else if let Some(spec) = field_spec(kind, &key) {
            let found = candidates(doc, &ROOT, &key, &mut |s| strays.push(s));
            let res = resolve(spec.policy, &found);
            note(&mut out, key.clone(), &res);
            out.record.fields.insert(key, res.value);
        } else {
            // Left out of the reading; the server refuses a push that adds one.
            strays.push(Stray::UnknownKey(key));
        }
    }
    out.strays = strays;
    out
}

/// Loads a document, checking its integrity.
pub fn load(bytes: &[u8]) -> Result<Automerge, CrdtError> {
    Automerge::load(bytes).map_err(|e| CrdtError::CorruptDocument(e.to_string()))
}

/// Parses one change, checking its integrity.
pub fn decode_change(bytes: &[u8]) -> Result<Change, CrdtError> {
    Change::from_bytes(bytes.to_vec()).map_err(|e| CrdtError::CorruptChange(e.to_string()))
}

/// Applies changes; fails (leaving `doc` unusable for further writes, so callers work on a copy)
/// when a change's dependencies are missing.
pub fn apply(doc: &mut Automerge, changes: Vec<Change>) -> Result<(), CrdtError> {
    doc.apply_changes(changes)?;
    if let Some(h) = doc.get_missing_deps(&[]).first() {
        return Err(CrdtError::MissingDependencies {
            hash: h.to_string(),
        });
    }
    Ok(())
}

/// The policy used for a field, for display.
pub fn policy_of(kind: EntityKind, field: &str) -> Option<Policy> {
    field_spec(kind, field)
        .map(|f| f.policy)
        .or_else(|| schema(kind).collection(field).map(|c| c.policy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{DeviceId, DocId, Role};

    fn author(role: Role, n: u128) -> Author {
        Author::new(role, DeviceId(DocId::from_u128(n)))
    }

    #[test]
    fn concurrent_status_and_notes_merge_by_policy() {
        let office = author(Role::Dispatcher, 1);
        let tech = author(Role::Technician, 2);
        let mut rec = Record::default();
        rec.set("status", Scalar::str("on_site"));
        let (mut a, _) = create(EntityKind::Job, office, Millis(0), &rec).unwrap();
        let mut b = a.fork();
        write(
            &mut a,
            office,
            Millis(1),
            &[FieldChange::Set {
                field: "status".into(),
                value: Scalar::str("cancelled"),
            }],
        )
        .unwrap();
        write(
            &mut b,
            tech,
            Millis(1),
            &[
                FieldChange::Set {
                    field: "status".into(),
                    value: Scalar::str("completed"),
                },
                FieldChange::SetItem {
                    collection: "notes".into(),
                    item: "n1".into(),
                    field: "text".into(),
                    value: Scalar::str("fibre spliced"),
                },
            ],
        )
        .unwrap();
        write(
            &mut a,
            office,
            Millis(2),
            &[FieldChange::SetItem {
                collection: "notes".into(),
                item: "n0".into(),
                field: "text".into(),
                value: Scalar::str("call first"),
            }],
        )
        .unwrap();
        a.merge(&mut b.clone()).unwrap();
        b.merge(&mut a.clone()).unwrap();
        let (ma, mb) = (read(&a, EntityKind::Job), read(&b, EntityKind::Job));
        assert_eq!(ma, mb);
        assert_eq!(ma.record.get("status"), &Scalar::str("completed"));
        assert_eq!(ma.conflicts.len(), 1);
        assert_eq!(ma.conflicts[0].field, "status");
        assert_eq!(ma.record.items("notes").unwrap().len(), 2);
    }

    #[test]
    fn corrupt_bytes_are_typed_errors() {
        assert!(matches!(
            load(b"not automerge"),
            Err(CrdtError::CorruptDocument(_))
        ));
        assert!(matches!(
            decode_change(&[0x85, 0x6f, 0x4a, 0x83, 1, 2, 3]),
            Err(CrdtError::CorruptChange(_))
        ));
    }
}
