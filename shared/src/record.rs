//! The flat, CRDT-ready form of every entity.
//!
//! Each entity converts to a [`Record`]: named scalar registers plus append-only collections of
//! items (notes, photos, materials…), each item a small map of registers. Everything that works
//! field by field — the Automerge mapping, merge policies, write authorization, compensating
//! changes, rebasing after compaction and (later) the ERPNext three-way merge — works on records,
//! so it is written once for all entity kinds.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::Role;

/// One register value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    F64(f64),
    Str(String),
}

impl Scalar {
    pub fn str(s: impl Into<String>) -> Self {
        Scalar::Str(s.into())
    }
    pub fn opt_str(s: Option<impl Into<String>>) -> Self {
        s.map_or(Scalar::Null, |s| Scalar::Str(s.into()))
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Null => f.write_str("∅"),
            Scalar::Bool(b) => b.fmt(f),
            Scalar::Int(i) => i.fmt(f),
            Scalar::F64(x) => x.fmt(f),
            Scalar::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// The kinds of replicated entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EntityKind {
    Customer,
    Location,
    Equipment,
    Subscription,
    Job,
    Technician,
    Tag,
}

impl EntityKind {
    pub const ALL: [EntityKind; 7] = [
        EntityKind::Customer,
        EntityKind::Location,
        EntityKind::Equipment,
        EntityKind::Subscription,
        EntityKind::Job,
        EntityKind::Technician,
        EntityKind::Tag,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Customer => "customer",
            EntityKind::Location => "location",
            EntityKind::Equipment => "equipment",
            EntityKind::Subscription => "subscription",
            EntityKind::Job => "job",
            EntityKind::Technician => "technician",
            EntityKind::Tag => "tag",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
    /// The ERPNext doctype this kind maps to.
    pub fn doctype(self) -> &'static str {
        match self {
            EntityKind::Customer => "Customer",
            EntityKind::Location => "Service Location",
            EntityKind::Equipment => "Service Equipment",
            EntityKind::Subscription => "Service Subscription",
            EntityKind::Job => "Dispatch Job",
            EntityKind::Technician => "Dispatch Technician",
            EntityKind::Tag => "Dispatch Tag",
        }
    }
}

/// How concurrent writes to one field are settled. Declared per field, shown to dispatchers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Policy {
    /// What the technician's device recorded wins (signature, actual times, readings).
    DeviceWins,
    /// The office wins (assignment, schedule, prices, customer data).
    OfficeWins,
    /// The job status state machine: compatible progress merges, impossible pairs are conflicts.
    JobStatus,
    /// A document's deletion: ranked like [`Policy::OfficeWins`]; while a deletion is undecided
    /// (field work arrived on a deleted document) the document stays visible, so the office
    /// can decide and the technician sees what happened.
    Deletion,
}

impl Policy {
    pub fn describe(self) -> &'static str {
        match self {
            Policy::DeviceWins => "device wins",
            Policy::OfficeWins => "dispatcher wins",
            Policy::JobStatus => "state machine",
            Policy::Deletion => "dispatcher decides",
        }
    }
}

/// Who may write a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writers {
    /// The server only: values it wrote or read from ERPNext itself, never a device's.
    Server,
    /// Office roles and the server only.
    Office,
    /// Technicians too.
    Field,
}

impl Writers {
    pub fn allows(self, role: Role) -> bool {
        match self {
            Writers::Server => role == Role::Server,
            Writers::Office => role != Role::Technician,
            Writers::Field => true,
        }
    }
}

/// One register of an entity.
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    pub name: &'static str,
    pub policy: Policy,
    pub writers: Writers,
}

/// One append-only collection of an entity. Items are never removed by a merge, so concurrent
/// appends from several devices are all kept; an item's own registers merge by `policy`.
#[derive(Debug, Clone, Copy)]
pub struct CollectionSpec {
    pub name: &'static str,
    pub policy: Policy,
    pub writers: Writers,
    /// Every field an item has: anything else in an item is data no reading shows.
    pub fields: &'static [&'static str],
    /// The item fields a device may change once the item exists (a checklist line's `done`);
    /// every other field is written once, when the item is added. The server (ERPNext's office)
    /// may correct any of them.
    pub mutable: &'static [&'static str],
}

/// The schema of one entity kind.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    pub kind: EntityKind,
    pub fields: &'static [FieldSpec],
    pub collections: &'static [CollectionSpec],
}

impl Schema {
    pub fn field(&self, name: &str) -> Option<&'static FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }
    pub fn collection(&self, name: &str) -> Option<&'static CollectionSpec> {
        self.collections.iter().find(|c| c.name == name)
    }
}

/// Shorthand used by the entity schemas.
pub(crate) const fn f(name: &'static str, policy: Policy, writers: Writers) -> FieldSpec {
    FieldSpec {
        name,
        policy,
        writers,
    }
}
pub(crate) const fn c(
    name: &'static str,
    policy: Policy,
    writers: Writers,
    fields: &'static [&'static str],
    mutable: &'static [&'static str],
) -> CollectionSpec {
    CollectionSpec {
        name,
        policy,
        writers,
        fields,
        mutable,
    }
}

/// The items of one collection, by item key.
pub type Items = BTreeMap<String, BTreeMap<String, Scalar>>;

/// An entity as named registers and collections.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Record {
    pub fields: BTreeMap<String, Scalar>,
    pub collections: BTreeMap<String, Items>,
}

/// The most one value may hold (a note, a description): 1 MiB. Larger values are refused where
/// they are written, on the device and on the server.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// A field-level difference between two records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FieldChange {
    Set {
        field: String,
        value: Scalar,
    },
    SetItem {
        collection: String,
        item: String,
        field: String,
        value: Scalar,
    },
}

/// The first change writing a value longer than [`MAX_VALUE_BYTES`]: its field (`field` or
/// `collection.field`) and the value's length.
pub fn oversized(changes: &[FieldChange]) -> Option<(String, usize)> {
    changes.iter().find_map(|c| {
        let (name, value) = match c {
            FieldChange::Set { field, value } => (field.clone(), value),
            FieldChange::SetItem {
                collection,
                field,
                value,
                ..
            } => (format!("{collection}.{field}"), value),
        };
        match value {
            Scalar::Str(s) if s.len() > MAX_VALUE_BYTES => Some((name, s.len())),
            _ => None,
        }
    })
}

impl FieldChange {
    /// The change writing `value` at a field named as conflicts name it: `status`, or
    /// `materials[<item>].quantity` for a collection item's field.
    pub fn at_path(path: &str, value: Scalar) -> Self {
        if let Some((collection, rest)) = path.split_once('[')
            && let Some((item, field)) = rest.rsplit_once("].")
        {
            return FieldChange::SetItem {
                collection: collection.to_owned(),
                item: item.to_owned(),
                field: field.to_owned(),
                value,
            };
        }
        FieldChange::Set {
            field: path.to_owned(),
            value,
        }
    }

    /// The register this change writes: a root field (`None`, field) or a collection item's
    /// field (`Some((collection, item))`, field). Two changes to one register: the later wins.
    pub fn register(&self) -> (Option<(&str, &str)>, &str) {
        match self {
            FieldChange::Set { field, .. } => (None, field),
            FieldChange::SetItem {
                collection,
                item,
                field,
                ..
            } => (Some((collection, item)), field),
        }
    }

    /// The register or collection this change touches.
    pub fn target(&self) -> &str {
        match self {
            FieldChange::Set { field, .. } => field,
            FieldChange::SetItem { collection, .. } => collection,
        }
    }
}

impl Record {
    pub fn get(&self, field: &str) -> &Scalar {
        self.fields.get(field).unwrap_or(&Scalar::Null)
    }
    pub fn set(&mut self, field: &str, v: Scalar) {
        self.fields.insert(field.to_owned(), v);
    }
    pub fn items(&self, collection: &str) -> Option<&Items> {
        self.collections.get(collection)
    }

    /// The part of this record at `paths` (registers by name, collection items' fields by
    /// `(collection, item)` and name), as [`Record::overlay`] takes it.
    pub fn only<'a>(
        &self,
        paths: impl IntoIterator<Item = &'a (Option<(String, String)>, String)>,
    ) -> Record {
        let mut out = Record::default();
        for (at, field) in paths {
            // A path this record does not have stays absent (keys are never removed).
            match at {
                None => {
                    if let Some(v) = self.fields.get(field) {
                        out.set(field, v.clone());
                    }
                }
                Some((collection, item)) => {
                    let Some(value) = self
                        .items(collection)
                        .and_then(|i| i.get(item))
                        .and_then(|i| i.get(field))
                        .cloned()
                    else {
                        continue;
                    };
                    out.collections
                        .entry(collection.clone())
                        .or_default()
                        .entry(item.clone())
                        .or_default()
                        .insert(field.clone(), value);
                }
            }
        }
        out
    }

    /// Writes every register and item field of `part` over this record.
    pub fn overlay(&mut self, part: &Record) {
        for (k, v) in &part.fields {
            self.fields.insert(k.clone(), v.clone());
        }
        for (name, items) in &part.collections {
            let mine = self.collections.entry(name.clone()).or_default();
            for (key, item) in items {
                let into = mine.entry(key.clone()).or_default();
                for (f, v) in item {
                    into.insert(f.clone(), v.clone());
                }
            }
        }
    }

    /// Applies field changes (the inverse of [`Record::diff`]).
    pub fn apply(&mut self, changes: &[FieldChange]) {
        for c in changes {
            match c {
                FieldChange::Set { field, value } => self.set(field, value.clone()),
                FieldChange::SetItem {
                    collection,
                    item,
                    field,
                    value,
                } => {
                    self.collections
                        .entry(collection.clone())
                        .or_default()
                        .entry(item.clone())
                        .or_default()
                        .insert(field.clone(), value.clone());
                }
            }
        }
    }

    /// What `self` must change to become `to`. Items missing from `to` are not deletions
    /// (collections are append-only), so they produce no change.
    pub fn diff(&self, to: &Record) -> Vec<FieldChange> {
        let mut out = Vec::new();
        for (k, v) in &to.fields {
            if self.fields.get(k).unwrap_or(&Scalar::Null) != v {
                out.push(FieldChange::Set {
                    field: k.clone(),
                    value: v.clone(),
                });
            }
        }
        for k in self.fields.keys() {
            if !to.fields.contains_key(k) && self.get(k) != &Scalar::Null {
                out.push(FieldChange::Set {
                    field: k.clone(),
                    value: Scalar::Null,
                });
            }
        }
        let empty = Items::new();
        for (name, items) in &to.collections {
            let before = self.collections.get(name).unwrap_or(&empty);
            for (key, item) in items {
                let old = before.get(key);
                for (field, value) in item {
                    if old.and_then(|o| o.get(field)) != Some(value) {
                        out.push(FieldChange::SetItem {
                            collection: name.clone(),
                            item: key.clone(),
                            field: field.clone(),
                            value: value.clone(),
                        });
                    }
                }
            }
        }
        out
    }
}
