//! The replicated entities and their validated values.
//!
//! Every value that can be wrong has a `parse` constructor and no public fields; every entity
//! converts to and from a [`Record`] (see [`crate::record`]), which is what the CRDT mapping,
//! merge policies and authorization work on.

use std::str::FromStr;

use serde::de::DeserializeOwned;

use crate::ids::DocId;
use crate::record::{EntityKind, FieldSpec, Policy, Record, Scalar, Schema, Writers, f};

/// An enum with a stable wire string per variant (used in records and ERPNext select fields).
macro_rules! str_enum {
    ($(#[$m:meta])* $name:ident { $($var:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name { $($var),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$var => $s),+ }
            }
        }
        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok($name::$var),)+
                    _ => Err(format!(
                        concat!("`{}` is not a valid ", stringify!($name), " (expected one of: {})"),
                        s,
                        [$($s),+].join(", ")
                    )),
                }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

mod assets;
mod job;
mod technician;
mod values;

pub use assets::{
    Address, Contact, Customer, CustomerKind, EquipmentStatus, EquipmentType, Language, Plan,
    ServiceEquipment, ServiceLocation, ServiceSubscription, SubscriptionStatus, Tag,
};
pub use job::{
    CheckIn, ChecklistItem, DiagnosticResult, DispatchJob, EquipmentAction, EquipmentItem,
    JobStatus, Material, Note, Photo, Priority, Signature, TagRequirement, TimeEntry,
    TransitionError,
};
pub use technician::{Absence, DatedShift, DispatchTechnician, Shift, TagLevel, WeeklySchedule};
pub use values::{
    Email, GeoPoint, Level, MacAddr, Money, Name, OltPort, Phone, PostalCode, RRule, Serial, Vlan,
};

/// A value that failed validation, naming the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ModelError {
    pub field: String,
    pub problem: String,
}

impl ModelError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Registers every entity has, whatever its kind.
pub const COMMON_FIELDS: &[FieldSpec] = &[
    // The ERPNext `name` once ERPNext has assigned one.
    // Written by the ERPNext bridge only: it acts on names it wrote or read itself.
    f("erp_name", Policy::OfficeWins, Writers::Server),
    // Soft deletion: documents are never removed from the CRDT, only marked.
    f("deleted", Policy::Deletion, Writers::Office),
];

/// An entity kind with its schema and record mapping.
pub trait Entity: Sized + Clone + std::fmt::Debug {
    const SCHEMA: Schema;
    fn doc_id(&self) -> DocId;
    fn erp_name(&self) -> Option<&str>;
    /// The entity's own registers and collections (without [`COMMON_FIELDS`]).
    fn write(&self, r: &mut Record);
    fn read(id: DocId, r: &Reader<'_>) -> Result<Self, ModelError>;

    fn to_record(&self) -> Record {
        let mut r = Record::default();
        r.set("erp_name", Scalar::opt_str(self.erp_name()));
        r.set("deleted", Scalar::Bool(false));
        self.write(&mut r);
        r
    }
    fn from_record(id: DocId, r: &Record) -> Result<Self, ModelError> {
        Self::read(id, &Reader(r))
    }
}

/// Any entity, as materialized from its document.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyEntity {
    Customer(Customer),
    Location(ServiceLocation),
    Equipment(ServiceEquipment),
    Subscription(ServiceSubscription),
    Job(Box<DispatchJob>),
    Technician(DispatchTechnician),
    Tag(Tag),
}

impl AnyEntity {
    pub fn kind(&self) -> EntityKind {
        match self {
            AnyEntity::Customer(_) => EntityKind::Customer,
            AnyEntity::Location(_) => EntityKind::Location,
            AnyEntity::Equipment(_) => EntityKind::Equipment,
            AnyEntity::Subscription(_) => EntityKind::Subscription,
            AnyEntity::Job(_) => EntityKind::Job,
            AnyEntity::Technician(_) => EntityKind::Technician,
            AnyEntity::Tag(_) => EntityKind::Tag,
        }
    }
    pub fn doc_id(&self) -> DocId {
        match self {
            AnyEntity::Customer(e) => e.doc_id(),
            AnyEntity::Location(e) => e.doc_id(),
            AnyEntity::Equipment(e) => e.doc_id(),
            AnyEntity::Subscription(e) => e.doc_id(),
            AnyEntity::Job(e) => e.doc_id(),
            AnyEntity::Technician(e) => e.doc_id(),
            AnyEntity::Tag(e) => e.doc_id(),
        }
    }
    pub fn from_record(kind: EntityKind, id: DocId, r: &Record) -> Result<Self, ModelError> {
        Ok(match kind {
            EntityKind::Customer => AnyEntity::Customer(Customer::from_record(id, r)?),
            EntityKind::Location => AnyEntity::Location(ServiceLocation::from_record(id, r)?),
            EntityKind::Equipment => AnyEntity::Equipment(ServiceEquipment::from_record(id, r)?),
            EntityKind::Subscription => {
                AnyEntity::Subscription(ServiceSubscription::from_record(id, r)?)
            }
            EntityKind::Job => AnyEntity::Job(Box::new(DispatchJob::from_record(id, r)?)),
            EntityKind::Technician => {
                AnyEntity::Technician(DispatchTechnician::from_record(id, r)?)
            }
            EntityKind::Tag => AnyEntity::Tag(Tag::from_record(id, r)?),
        })
    }
    pub fn to_record(&self) -> Record {
        match self {
            AnyEntity::Customer(e) => e.to_record(),
            AnyEntity::Location(e) => e.to_record(),
            AnyEntity::Equipment(e) => e.to_record(),
            AnyEntity::Subscription(e) => e.to_record(),
            AnyEntity::Job(e) => e.to_record(),
            AnyEntity::Technician(e) => e.to_record(),
            AnyEntity::Tag(e) => e.to_record(),
        }
    }
}

/// The schema of a kind.
pub fn schema(kind: EntityKind) -> &'static Schema {
    match kind {
        EntityKind::Customer => &Customer::SCHEMA,
        EntityKind::Location => &ServiceLocation::SCHEMA,
        EntityKind::Equipment => &ServiceEquipment::SCHEMA,
        EntityKind::Subscription => &ServiceSubscription::SCHEMA,
        EntityKind::Job => &DispatchJob::SCHEMA,
        EntityKind::Technician => &DispatchTechnician::SCHEMA,
        EntityKind::Tag => &Tag::SCHEMA,
    }
}

/// Looks a register up in a kind's schema, common fields included.
pub fn field_spec(kind: EntityKind, name: &str) -> Option<&'static FieldSpec> {
    COMMON_FIELDS
        .iter()
        .find(|f| f.name == name)
        .or_else(|| schema(kind).field(name))
}

/// Typed access to a record's registers, with errors that name the field.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a>(pub &'a Record);

impl Reader<'_> {
    pub fn scalar(&self, field: &str) -> &Scalar {
        self.0.get(field)
    }
    pub fn opt_text(&self, field: &str) -> Result<Option<String>, ModelError> {
        match self.0.get(field) {
            Scalar::Null => Ok(None),
            Scalar::Str(s) if s.trim().is_empty() => Ok(None),
            Scalar::Str(s) => Ok(Some(s.clone())),
            other => Err(ModelError::new(
                field,
                format!("expected text, found {other}"),
            )),
        }
    }
    pub fn text(&self, field: &str) -> Result<String, ModelError> {
        self.opt_text(field)?
            .ok_or_else(|| ModelError::new(field, "is required"))
    }
    /// Text that may be empty (free-form notes).
    pub fn text_or_empty(&self, field: &str) -> Result<String, ModelError> {
        Ok(self.opt_text(field)?.unwrap_or_default())
    }
    pub fn opt_int(&self, field: &str) -> Result<Option<i64>, ModelError> {
        match self.0.get(field) {
            Scalar::Null => Ok(None),
            Scalar::Int(i) => Ok(Some(*i)),
            other => Err(ModelError::new(
                field,
                format!("expected a whole number, found {other}"),
            )),
        }
    }
    pub fn int(&self, field: &str) -> Result<i64, ModelError> {
        self.opt_int(field)?
            .ok_or_else(|| ModelError::new(field, "is required"))
    }
    pub fn bool(&self, field: &str) -> Result<bool, ModelError> {
        match self.0.get(field) {
            Scalar::Null => Ok(false),
            Scalar::Bool(b) => Ok(*b),
            other => Err(ModelError::new(
                field,
                format!("expected true or false, found {other}"),
            )),
        }
    }
    pub fn opt_parse<T>(&self, field: &str) -> Result<Option<T>, ModelError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.opt_text(field)?
            .map(|s| {
                s.parse::<T>()
                    .map_err(|e| ModelError::new(field, e.to_string()))
            })
            .transpose()
    }
    pub fn parse<T>(&self, field: &str) -> Result<T, ModelError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.opt_parse(field)?
            .ok_or_else(|| ModelError::new(field, "is required"))
    }
    /// A register holding a JSON-encoded value (lists and small structs kept as one register so
    /// they merge as a whole). Null reads as the default.
    pub fn json<T: DeserializeOwned + Default>(&self, field: &str) -> Result<T, ModelError> {
        match self.opt_text(field)? {
            None => Ok(T::default()),
            Some(s) => serde_json::from_str(&s).map_err(|e| ModelError::new(field, e.to_string())),
        }
    }
    /// The items of a collection decoded one by one, in key order (keys are UUIDv7: time order).
    pub fn items<T>(
        &self,
        collection: &str,
        mut decode: impl FnMut(&str, Reader<'_>) -> Result<T, ModelError>,
    ) -> Result<Vec<T>, ModelError> {
        let Some(items) = self.0.items(collection) else {
            return Ok(Vec::new());
        };
        items
            .iter()
            .map(|(key, fields)| {
                let rec = Record {
                    fields: fields.clone(),
                    collections: Default::default(),
                };
                decode(key, Reader(&rec)).map_err(|e| {
                    ModelError::new(format!("{collection}[{key}].{}", e.field), e.problem)
                })
            })
            .collect()
    }
}

/// Encodes a value as a JSON register.
pub(crate) fn json_scalar<T: serde::Serialize>(v: &T) -> Scalar {
    // Serializing our own plain data types to JSON cannot fail (no maps with non-string keys).
    Scalar::Str(serde_json::to_string(v).unwrap_or_default())
}

/// Puts one collection item into a record.
pub(crate) fn put_item(r: &mut Record, collection: &str, key: &str, fields: &[(&str, Scalar)]) {
    let item = r
        .collections
        .entry(collection.to_owned())
        .or_default()
        .entry(key.to_owned())
        .or_default();
    for (k, v) in fields {
        item.insert((*k).to_owned(), v.clone());
    }
}

/// Makes sure a collection exists in the record even when empty, so the CRDT document creates
/// its map once, at creation time (two devices creating it concurrently would lose items).
pub(crate) fn ensure_collections(r: &mut Record, names: &[&str]) {
    for n in names {
        r.collections.entry((*n).to_owned()).or_default();
    }
}
