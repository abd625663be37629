//! Write authorization: what a role may change in an entity.
//!
//! The server runs this on every pushed change (against the state its author saw); the replica runs
//! it before committing a local edit, so users get the refusal at once instead of a silent revert.

use std::collections::BTreeSet;

use crate::ids::{DocId, Role};
use crate::model::{JobStatus, TransitionError, field_spec, schema};
use crate::record::{EntityKind, FieldChange, Record, Scalar};

/// Why a write is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("a {role} may not create a {}", kind.as_str())]
    Create { kind: EntityKind, role: Role },
    #[error("a {role} may not change `{field}`")]
    Field { field: String, role: Role },
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("`{field}` is not a field of a {}", kind.as_str())]
    UnknownField { field: String, kind: EntityKind },
    /// A change to an item of an append-only collection that its author may not make.
    #[error("{what} `{collection}[{item}]`")]
    Item {
        collection: String,
        item: String,
        what: ItemDenial,
    },
}

/// What was refused on a collection item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemDenial {
    /// Items are never removed (a note, a photo, a material line stays, whoever wrote it).
    #[error("items are never removed:")]
    Removed,
    /// Only the collection's mutable fields change once an item exists.
    #[error("`{0}` is written once, when the item is added, and may not change in")]
    Rewritten(String),
    /// The role may not write this collection at all.
    #[error("a {0} may not write")]
    Writers(Role),
}

/// What a compensating change restores for a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// The whole document (a kind the author may not create).
    Document,
    /// One register (or a whole collection named by an unknown key).
    Field(&'a str),
    /// One item of a collection, restored as it was.
    Item { collection: &'a str, item: &'a str },
}

impl Denied {
    /// What to restore when compensating.
    pub fn target(&self) -> Target<'_> {
        match self {
            Denied::Create { .. } => Target::Document,
            Denied::Field { field, .. } | Denied::UnknownField { field, .. } => {
                Target::Field(field)
            }
            Denied::Transition(_) => Target::Field("status"),
            Denied::Item {
                collection, item, ..
            } => Target::Item { collection, item },
        }
    }
}

/// Which kinds a role may create.
pub fn may_create(kind: EntityKind, role: Role) -> bool {
    match role {
        // New equipment is scanned in the field; everything else starts in the office.
        Role::Technician => kind == EntityKind::Equipment,
        Role::Dispatcher | Role::Admin | Role::Server => true,
    }
}

/// The value a register has when nothing was written to it: what a create may leave in a field
/// its author may not write.
pub fn blank(field: &str) -> Scalar {
    if field == "deleted" {
        Scalar::Bool(false)
    } else {
        Scalar::Null
    }
}

/// Checks a write from `before` (`None`: the entity is being created) to `after`, by what it
/// does: every register and item field it sets (a create too, field by field: a field its author
/// may not write must stay blank), every item it removes or rewrites, every key outside the
/// schema. Returns every refusal; an empty list means the write is allowed.
pub fn check(kind: EntityKind, role: Role, before: Option<&Record>, after: &Record) -> Vec<Denied> {
    if before.is_none() && !may_create(kind, role) {
        return vec![Denied::Create { kind, role }];
    }
    let empty = Record::default();
    let base = before.unwrap_or(&empty);
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for change in base.diff(after) {
        match &change {
            FieldChange::Set { field, value } => {
                if before.is_none() && *value == blank(field) {
                    continue;
                }
                if !seen.insert((field.clone(), String::new())) {
                    continue;
                }
                let Some(spec) = field_spec(kind, field) else {
                    out.push(Denied::UnknownField {
                        field: field.clone(),
                        kind,
                    });
                    continue;
                };
                if !spec.writers.allows(role) {
                    out.push(Denied::Field {
                        field: field.clone(),
                        role,
                    });
                    continue;
                }
                if kind == EntityKind::Job && field == "status" {
                    let read = |r: &Record| r.get("status").as_str()?.parse::<JobStatus>().ok();
                    if let (Some(from), Some(to)) = (before.and_then(read), read(after))
                        && let Err(e) = from.check_reachable(to, role)
                    {
                        out.push(Denied::Transition(e));
                    }
                }
            }
            FieldChange::SetItem {
                collection, item, ..
            } => {
                if !seen.insert((collection.clone(), item.clone())) {
                    continue;
                }
                let Some(spec) = schema(kind).collection(collection) else {
                    if seen.insert((collection.clone(), String::new())) {
                        out.push(Denied::UnknownField {
                            field: collection.clone(),
                            kind,
                        });
                    }
                    continue;
                };
                let what = if !spec.writers.allows(role) {
                    ItemDenial::Writers(role)
                } else if let Some(old) = base.items(collection).and_then(|i| i.get(item))
                    && role != Role::Server
                    && let Some(f) = after
                        .items(collection)
                        .and_then(|i| i.get(item))
                        .into_iter()
                        .flatten()
                        .find(|(f, v)| {
                            !spec.mutable.contains(&f.as_str())
                                && old.get(*f).unwrap_or(&Scalar::Null) != *v
                        })
                        .map(|(f, _)| f)
                {
                    ItemDenial::Rewritten(f.clone())
                } else {
                    continue;
                };
                out.push(Denied::Item {
                    collection: collection.clone(),
                    item: item.clone(),
                    what,
                });
            }
        }
    }
    if role != Role::Server {
        for (collection, items) in &base.collections {
            let now = after.items(collection);
            for (item, fields) in items {
                let removed = match now.and_then(|i| i.get(item)) {
                    None => true,
                    Some(kept) => fields.keys().any(|f| !kept.contains_key(f)),
                };
                if removed && seen.insert((collection.clone(), item.clone())) {
                    out.push(Denied::Item {
                        collection: collection.clone(),
                        item: item.clone(),
                        what: ItemDenial::Removed,
                    });
                }
            }
        }
    }
    out
}

/// A reference to another document that a field-writable register holds: a device may only write
/// one to a document of the right kind that it can see, so its own writes never widen its scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Where it is written (`location`, `equipment_items[k].equipment`).
    pub path: String,
    pub doc: DocId,
    pub kind: EntityKind,
}

/// The reference fields devices write: `(kind, collection, field, kind referred to)`.
const REFERENCES: &[(EntityKind, Option<&str>, &str, EntityKind)] = &[
    (
        EntityKind::Equipment,
        None,
        "location",
        EntityKind::Location,
    ),
    (
        EntityKind::Job,
        Some("equipment_items"),
        "equipment",
        EntityKind::Equipment,
    ),
    (
        EntityKind::Job,
        Some("equipment_items"),
        "replaces",
        EntityKind::Equipment,
    ),
];

/// The references a write from `before` to `after` sets or changes (a value that is no document
/// id is the model's to refuse).
pub fn references(kind: EntityKind, before: Option<&Record>, after: &Record) -> Vec<Reference> {
    let empty = Record::default();
    let base = before.unwrap_or(&empty);
    let mut out = Vec::new();
    for change in base.diff(after) {
        let (collection, item, field, value) = match &change {
            FieldChange::Set { field, value } => (None, "", field.as_str(), value),
            FieldChange::SetItem {
                collection,
                item,
                field,
                value,
            } => (
                Some(collection.as_str()),
                item.as_str(),
                field.as_str(),
                value,
            ),
        };
        let Some(&(_, _, _, to)) = REFERENCES
            .iter()
            .find(|(k, c, f, _)| *k == kind && *c == collection && *f == field)
        else {
            continue;
        };
        let Some(doc) = value.as_str().and_then(|s| s.parse::<DocId>().ok()) else {
            continue;
        };
        out.push(Reference {
            path: match collection {
                None => field.to_owned(),
                Some(c) => format!("{c}[{item}].{field}"),
            },
            doc,
            kind: to,
        });
    }
    out
}

/// The item fields that name who did something (a note's author, a time log's technician).
const AUTHORSHIP: &[(EntityKind, &str, &str)] = &[
    (EntityKind::Job, "notes", "author"),
    (EntityKind::Job, "time_log", "technician"),
];

/// The changes that make every item this write adds carry its authenticated author (`who`: the
/// technician behind the session, `None` for the office), whatever the device wrote there.
pub fn authorship(
    kind: EntityKind,
    before: Option<&Record>,
    after: &Record,
    who: Option<&str>,
) -> Vec<FieldChange> {
    let want = Scalar::opt_str(who);
    let mut out = Vec::new();
    for &(k, collection, field) in AUTHORSHIP {
        if k != kind {
            continue;
        }
        let old = before.and_then(|b| b.items(collection));
        for (item, fields) in after.items(collection).into_iter().flatten() {
            if old.is_some_and(|o| o.contains_key(item)) {
                continue;
            }
            if fields.get(field).unwrap_or(&Scalar::Null) != &want {
                out.push(FieldChange::SetItem {
                    collection: collection.to_owned(),
                    item: item.clone(),
                    field: field.to_owned(),
                    value: want.clone(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Scalar;

    fn job(status: &str, tech: &str) -> Record {
        let mut r = Record::default();
        r.set("status", Scalar::str(status));
        r.set("technician", Scalar::str(tech));
        r
    }

    #[test]
    fn technician_cannot_reassign_or_reschedule() {
        let d = check(
            EntityKind::Job,
            Role::Technician,
            Some(&job("scheduled", "a")),
            &job("scheduled", "b"),
        );
        assert_eq!(
            d,
            vec![Denied::Field {
                field: "technician".into(),
                role: Role::Technician
            }]
        );
        assert!(
            check(
                EntityKind::Job,
                Role::Dispatcher,
                Some(&job("scheduled", "a")),
                &job("scheduled", "b")
            )
            .is_empty()
        );
    }

    #[test]
    fn status_follows_the_state_machine_per_role() {
        assert!(
            check(
                EntityKind::Job,
                Role::Technician,
                Some(&job("scheduled", "a")),
                &job("en_route", "a")
            )
            .is_empty()
        );
        let d = check(
            EntityKind::Job,
            Role::Technician,
            Some(&job("scheduled", "a")),
            &job("cancelled", "a"),
        );
        assert!(matches!(d.as_slice(), [Denied::Transition(_)]));
    }

    #[test]
    fn creation_and_unknown_fields() {
        assert!(
            check(
                EntityKind::Equipment,
                Role::Technician,
                None,
                &Record::default()
            )
            .is_empty()
        );
        assert_eq!(
            check(EntityKind::Job, Role::Technician, None, &Record::default()).len(),
            1
        );
        let mut after = job("scheduled", "a");
        after.set("price_override", Scalar::Int(1));
        let d = check(
            EntityKind::Job,
            Role::Dispatcher,
            Some(&job("scheduled", "a")),
            &after,
        );
        assert!(matches!(d.as_slice(), [Denied::UnknownField { .. }]));
    }
}
