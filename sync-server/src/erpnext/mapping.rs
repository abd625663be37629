//! Which ERPNext field holds which register, and how values convert both ways.
//!
//! The bridge compares and merges in [`Record`] space: ERPNext's JSON is read into a record with
//! the same registers as ours ([`from_erp`]), and the registers to send are written back as JSON
//! ([`to_erp`]). Both directions are exact inverses on valid values, so a record that went to
//! ERPNext and came back compares equal and nothing echoes.
//!
//! Every mapped doctype carries `fsm_id` (unique), our document id: creates are idempotent
//! (look the id up before retrying a create) and ERPNext records are matched to documents by it.
//! Links between entities are ERPNext `Link` fields holding ERPNext names; collections are child
//! tables with one row per item: the `fsm_item` key and one typed column per item field (a note's
//! author is a `Link` to the technician, a material's quantity an `Int`, a checklist line's state
//! a `Check`), so office staff read rows in ERPNext's desk and filter lists on them. Rows written
//! by an earlier version hold the item as JSON in `fsm_data`: they are still read, and the bridge
//! rewrites their table with typed columns ([`legacy_tables`]).

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use shared::ids::DocId;
use shared::model::AnyEntity;
use shared::record::{EntityKind, FieldChange, Items, Record, Scalar};

/// The custom field every mapped doctype carries: our document id.
pub const ID_FIELD: &str = "fsm_id";
/// Child-table row: the item key; and, in rows written by an earlier version, the item's registers
/// as JSON (now one typed column per item field).
pub const ITEM_KEY_FIELD: &str = "fsm_item";
pub const ITEM_DATA_FIELD: &str = "fsm_data";

/// How one register converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conv {
    /// A short string (`Data`); empty reads as null.
    Data,
    /// A long string (`Long Text`): free text or our JSON-encoded compound values.
    Text,
    /// A boolean (`Check`, 0/1).
    Check,
    /// An integer that is never absent (`Int`). ERPNext reads an empty Int back as 0.
    Int,
    /// An optional integer, kept as decimal text (`Data`) because ERPNext reads an empty `Int` as 0.
    OptInt,
    /// A date `YYYY-MM-DD` (`Date`).
    Date,
    /// A moment (`Datetime`): Unix milliseconds on our side; in ERPNext a naive date and time
    /// in the site's time zone (`System Settings`), as office users read and filter it.
    Datetime,
    /// One of a model enum's values (`Select`); the same strings both sides.
    Select(Options),
    /// A reference to another entity (`Link` to its doctype, holding the ERPNext name).
    Link(EntityKind),
    /// `is_commercial` as ERPNext's `customer_group` (`Commercial` or `Individual`).
    CustomerGroup,
}

impl Conv {
    /// The Frappe fieldtype and options used when `erpnext setup` creates the field.
    pub fn fieldtype(self) -> (&'static str, Option<&'static str>) {
        match self {
            Conv::Data | Conv::OptInt => ("Data", None),
            Conv::Text => ("Long Text", None),
            Conv::Check => ("Check", None),
            Conv::Int => ("Int", None),
            Conv::Date => ("Date", None),
            Conv::Datetime => ("Datetime", None),
            Conv::Select(_) => ("Select", None),
            Conv::Link(k) => ("Link", Some(k.doctype())),
            Conv::CustomerGroup => ("Link", Some("Customer Group")),
        }
    }
}

/// The model enums that are `Select` fields in ERPNext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Options {
    CustomerKind,
    Language,
    EquipmentType,
    EquipmentStatus,
    Plan,
    SubscriptionStatus,
    Priority,
    JobStatus,
}

impl Options {
    /// The values, as the model writes them.
    pub fn values(self) -> Vec<&'static str> {
        use shared::model as md;
        fn all<T: Copy>(xs: &[T], f: fn(T) -> &'static str) -> Vec<&'static str> {
            xs.iter().map(|x| f(*x)).collect()
        }
        match self {
            Options::CustomerKind => all(md::CustomerKind::ALL, md::CustomerKind::as_str),
            Options::Language => all(md::Language::ALL, md::Language::as_str),
            Options::EquipmentType => all(md::EquipmentType::ALL, md::EquipmentType::as_str),
            Options::EquipmentStatus => all(md::EquipmentStatus::ALL, md::EquipmentStatus::as_str),
            Options::Plan => all(md::Plan::ALL, md::Plan::as_str),
            Options::SubscriptionStatus => {
                all(md::SubscriptionStatus::ALL, md::SubscriptionStatus::as_str)
            }
            Options::Priority => all(md::Priority::ALL, md::Priority::as_str),
            Options::JobStatus => all(md::JobStatus::ALL, md::JobStatus::as_str),
        }
    }
}

/// One register and its ERPNext field.
#[derive(Debug, Clone, Copy)]
pub struct FieldMap {
    pub ours: &'static str,
    pub erp: &'static str,
    pub conv: Conv,
    /// Whether ERPNext itself defines the field (standard doctype), so setup leaves it alone.
    pub standard: bool,
    /// The field an earlier version of the mapping wrote the value to, as Unix milliseconds in
    /// text: read when `erp` is still empty, and the value then written again to `erp`.
    pub legacy_ms: Option<&'static str>,
}

/// One collection and its child table.
#[derive(Debug, Clone, Copy)]
pub struct TableMap {
    pub collection: &'static str,
    /// The parent's Table field.
    pub field: &'static str,
    pub child_doctype: &'static str,
    /// One column per item field (`ours` is the item field).
    pub columns: &'static [FieldMap],
}

/// The mapping of one entity kind.
#[derive(Debug, Clone, Copy)]
pub struct DocMap {
    pub kind: EntityKind,
    pub doctype: &'static str,
    /// Created by `erpnext setup` (custom doctype) rather than ERPNext's own.
    pub custom: bool,
    /// Naming rule of a custom doctype.
    pub autoname: &'static str,
    pub fields: &'static [FieldMap],
    pub tables: &'static [TableMap],
}

const fn m(ours: &'static str, erp: &'static str, conv: Conv) -> FieldMap {
    FieldMap {
        ours,
        erp,
        conv,
        standard: false,
        legacy_ms: None,
    }
}
const fn std_field(ours: &'static str, erp: &'static str, conv: Conv) -> FieldMap {
    FieldMap {
        ours,
        erp,
        conv,
        standard: true,
        legacy_ms: None,
    }
}
/// A moment as a `Datetime` field, kept as Unix milliseconds text in `legacy_ms` by earlier
/// versions.
const fn at(ours: &'static str, erp: &'static str, legacy_ms: &'static str) -> FieldMap {
    FieldMap {
        ours,
        erp,
        conv: Conv::Datetime,
        standard: false,
        legacy_ms: Some(legacy_ms),
    }
}
const fn t(
    collection: &'static str,
    field: &'static str,
    child_doctype: &'static str,
    columns: &'static [FieldMap],
) -> TableMap {
    TableMap {
        collection,
        field,
        child_doctype,
        columns,
    }
}

use Conv::*;
use EntityKind as K;

const CUSTOMER: DocMap = DocMap {
    kind: K::Customer,
    doctype: "Customer",
    custom: false,
    autoname: "",
    fields: &[
        std_field("name", "customer_name", Data),
        std_field("kind", "customer_type", Select(Options::CustomerKind)),
        std_field("is_commercial", "customer_group", CustomerGroup),
        m("phone", "fsm_phone", Data),
        m("email", "fsm_email", Data),
        m("language", "fsm_language", Select(Options::Language)),
        m("stripe_id", "fsm_stripe_id", Data),
        m("ppa_enabled", "fsm_ppa_enabled", Check),
    ],
    tables: &[],
};

const LOCATION: DocMap = DocMap {
    kind: K::Location,
    doctype: "Service Location",
    custom: true,
    autoname: "format:LOC-{#####}",
    fields: &[
        m("customer", "customer", Link(K::Customer)),
        m("address_line1", "address_line1", Data),
        m("city", "city", Data),
        m("province", "province", Data),
        m("postal_code", "postal_code", Data),
        m("gps", "gps", Data),
        m("olt_port", "olt_port", Data),
        m("vlan", "vlan", OptInt),
        m("network_notes", "network_notes", Text),
    ],
    tables: &[t(
        "contacts",
        "fsm_contacts",
        "Service Location Contacts",
        &[
            m("name", "contact_name", Data),
            m("phone", "phone", Data),
            m("role", "contact_role", Data),
        ],
    )],
};

const EQUIPMENT: DocMap = DocMap {
    kind: K::Equipment,
    doctype: "Service Equipment",
    custom: true,
    autoname: "format:EQ-{#####}",
    fields: &[
        m("location", "location", Link(K::Location)),
        m("kind", "equipment_type", Select(Options::EquipmentType)),
        m("serial", "serial_no", Data),
        m("mac", "mac_address", Data),
        m("management_ip", "management_ip", Data),
        m("model", "model", Data),
        m("firmware", "firmware", Data),
        m("status", "status", Select(Options::EquipmentStatus)),
    ],
    tables: &[],
};

const SUBSCRIPTION: DocMap = DocMap {
    kind: K::Subscription,
    doctype: "Service Subscription",
    custom: true,
    autoname: "format:SUB-{#####}",
    fields: &[
        m("customer", "customer", Link(K::Customer)),
        m("location", "location", Link(K::Location)),
        m("plan", "plan", Select(Options::Plan)),
        m("status", "status", Select(Options::SubscriptionStatus)),
        m("monthly_price_cents", "monthly_price_cents", Int),
        m("start_date", "start_date", Date),
    ],
    tables: &[],
};

const JOB: DocMap = DocMap {
    kind: K::Job,
    doctype: "Dispatch Job",
    custom: true,
    autoname: "format:DJ-{#####}",
    fields: &[
        m("customer", "customer", Link(K::Customer)),
        m("location", "service_location", Link(K::Location)),
        m("title", "title", Data),
        m("description", "description", Text),
        m("technician", "technician", Link(K::Technician)),
        m("assistants", "assistants", Text),
        m("required_tags", "required_tags", Text),
        m("date", "scheduled_date", Date),
        // Text, not Time: ERPNext fills an empty Time with the current time and drops the zero.
        m("start", "start_hhmm", Data),
        m("duration_min", "duration_min", Int),
        m("recurrence", "recurrence", Data),
        m("priority", "priority", Select(Options::Priority)),
        m("status", "job_status", Select(Options::JobStatus)),
        m("check_in", "check_in", Text),
        at("actual_start", "actual_start", "actual_start_ms"),
        at("actual_end", "actual_end", "actual_end_ms"),
        m("signature", "signature", Text),
    ],
    // Times are `Datetime` in the site's zone, as for the job's own actual times.
    tables: &[
        t(
            "notes",
            "fsm_notes",
            "Dispatch Job Notes",
            &[
                m("text", "note", Text),
                m("author", "author", Link(K::Technician)),
                at("at", "noted_at", "noted_at_ms"),
            ],
        ),
        t(
            "checklist",
            "fsm_checklist",
            "Dispatch Job Checklist",
            &[m("label", "label", Data), m("done", "done", Check)],
        ),
        t(
            "materials",
            "fsm_materials",
            "Dispatch Job Materials",
            &[
                m("item_code", "item_code", Data),
                m("quantity", "quantity", Int),
                m("unit", "unit", Data),
            ],
        ),
        t(
            "equipment_items",
            "fsm_equipment_items",
            "Dispatch Job Equipment",
            &[
                m("equipment", "equipment", Link(K::Equipment)),
                m("action", "action", Data),
                m("replaces", "replaces", Link(K::Equipment)),
            ],
        ),
        t(
            "photos",
            "fsm_photos",
            "Dispatch Job Photos",
            &[
                m("file_name", "file_name", Data),
                m("sha256", "sha256", Data),
                at("taken_at", "taken_at", "taken_at_ms"),
                m("caption", "caption", Text),
            ],
        ),
        t(
            "time_log",
            "fsm_time_log",
            "Dispatch Job Time Log",
            &[
                m("technician", "technician", Link(K::Technician)),
                at("started", "started", "started_ms"),
                at("ended", "ended", "ended_ms"),
            ],
        ),
        t(
            "diagnostics",
            "fsm_diagnostics",
            "Dispatch Job Diagnostics",
            &[
                m("check", "diagnostic", Data),
                m("ok", "ok", Check),
                m("summary", "summary", Text),
                at("at", "run_at", "at_ms"),
            ],
        ),
    ],
};

const TECHNICIAN: DocMap = DocMap {
    kind: K::Technician,
    doctype: "Dispatch Technician",
    custom: true,
    autoname: "format:TECH-{#####}",
    fields: &[
        m("name", "full_name", Data),
        m("phone", "phone", Data),
        m("active", "active", Check),
        m("home", "home_gps", Data),
        m("weekly", "weekly_schedule", Text),
        m("extra_shifts", "extra_shifts", Text),
        m("absences", "absences", Text),
        m("skills", "skills", Text),
    ],
    tables: &[],
};

const TAG: DocMap = DocMap {
    kind: K::Tag,
    doctype: "Dispatch Tag",
    custom: true,
    autoname: "format:TAG-{#####}",
    fields: &[m("label", "label", Data), m("category", "category", Data)],
    tables: &[],
};

/// Every mapping, in dependency order: a kind only links to kinds before it.
pub const ALL: [&DocMap; 7] = [
    &TAG,
    &TECHNICIAN,
    &CUSTOMER,
    &LOCATION,
    &EQUIPMENT,
    &SUBSCRIPTION,
    &JOB,
];

/// The mapping of a kind.
pub fn doc_map(kind: EntityKind) -> &'static DocMap {
    match kind {
        K::Customer => &CUSTOMER,
        K::Location => &LOCATION,
        K::Equipment => &EQUIPMENT,
        K::Subscription => &SUBSCRIPTION,
        K::Job => &JOB,
        K::Technician => &TECHNICIAN,
        K::Tag => &TAG,
    }
}

/// The mapping of a doctype, if it is one the bridge handles.
pub fn by_doctype(doctype: &str) -> Option<&'static DocMap> {
    ALL.into_iter().find(|d| d.doctype == doctype)
}

/// Translates references between our ids and ERPNext names.
pub trait Names {
    /// The ERPNext name of a document, once it has one.
    fn erp_name(&self, doc: DocId) -> Option<String>;
    /// The document an ERPNext record of `kind` is.
    fn doc_id(&self, kind: EntityKind, erp_name: &str) -> Option<DocId>;
    /// The site's time zone, in which ERPNext keeps `Datetime` values.
    fn zone(&self) -> &jiff::tz::TimeZone;
}

/// A moment as ERPNext writes a `Datetime`: the site's wall-clock time, microseconds always.
pub fn erp_datetime(ms: i64, zone: &jiff::tz::TimeZone) -> Option<String> {
    let t = jiff::Timestamp::from_millisecond(ms).ok()?;
    let d = t.to_zoned(zone.clone()).datetime();
    Some(format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
        d.year(),
        d.month(),
        d.day(),
        d.hour(),
        d.minute(),
        d.second(),
        d.subsec_nanosecond() / 1000
    ))
}

/// An ERPNext `Datetime` (`2026-11-30 09:15:00`, with or without a fraction) as Unix
/// milliseconds. A wall-clock time the site's zone repeats (the hour daylight saving time ends)
/// is the moment `prior` holds when it is one of the two, else the earlier; one the zone skips
/// (the hour it begins) moves forward, as ERPNext's own clock would have read it.
pub fn parse_erp_datetime(s: &str, zone: &jiff::tz::TimeZone, prior: Option<i64>) -> Option<i64> {
    let civil = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| jiff::civil::DateTime::strptime(f, s.trim()).ok())?;
    let ambiguous = zone.to_ambiguous_timestamp(civil);
    if let jiff::tz::AmbiguousOffset::Fold { before, after } = ambiguous.offset() {
        let candidates = [before, after].map(|o| o.to_timestamp(civil).ok());
        if let Some(p) = prior
            && let Some(t) = candidates
                .iter()
                .flatten()
                .find(|t| t.as_millisecond() == p)
        {
            return Some(t.as_millisecond());
        }
    }
    Some(ambiguous.compatible().ok()?.as_millisecond())
}

/// A value that cannot cross the bridge (yet).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MapError {
    /// A linked document has no ERPNext name yet: push it first.
    #[error("{field} links to {kind:?} {doc}, which is not in ERPNext yet")]
    NotInErp {
        field: &'static str,
        kind: EntityKind,
        doc: DocId,
    },
    /// ERPNext links to a record the field has never seen: pull it first.
    #[error("{field} links to {doctype} {name:?}, which the server does not have yet")]
    UnknownLink {
        field: &'static str,
        kind: EntityKind,
        doctype: &'static str,
        name: String,
    },
    #[error("{field}: {problem}")]
    BadValue { field: String, problem: String },
}

fn bad(field: &str, problem: impl Into<String>) -> MapError {
    MapError::BadValue {
        field: field.to_owned(),
        problem: problem.into(),
    }
}

/// A scalar as JSON (inside `fsm_data`).
pub fn scalar_json(s: &Scalar) -> Value {
    match s {
        Scalar::Null => Value::Null,
        Scalar::Bool(b) => Value::Bool(*b),
        Scalar::Int(i) => Value::from(*i),
        Scalar::F64(x) => serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number),
        Scalar::Str(s) => Value::String(s.clone()),
    }
}

/// JSON (inside `fsm_data`) as a scalar; integers stay integers.
pub fn json_scalar(v: &Value) -> Scalar {
    match v {
        Value::Bool(b) => Scalar::Bool(*b),
        Value::Number(n) => n
            .as_i64()
            .map(Scalar::Int)
            .or_else(|| n.as_f64().map(Scalar::F64))
            .unwrap_or(Scalar::Null),
        Value::String(s) => Scalar::Str(s.clone()),
        Value::Null | Value::Array(_) | Value::Object(_) => Scalar::Null,
    }
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One register as its ERPNext value.
fn out_value(f: &FieldMap, v: &Scalar, names: &dyn Names) -> Result<Value, MapError> {
    Ok(match (f.conv, v) {
        (_, Scalar::Null) => match f.conv {
            Check => Value::from(0),
            Int => Value::from(0),
            _ => Value::Null,
        },
        (Data | Text | Date | Select(_), Scalar::Str(s)) => Value::String(s.clone()),
        (Check, Scalar::Bool(b)) => Value::from(i32::from(*b)),
        (Int, Scalar::Int(i)) => Value::from(*i),
        (OptInt, Scalar::Int(i)) => Value::String(i.to_string()),
        (Datetime, Scalar::Int(ms)) => Value::String(
            erp_datetime(*ms, names.zone())
                .ok_or_else(|| bad(f.ours, format!("{ms} is not a representable moment")))?,
        ),
        (CustomerGroup, Scalar::Bool(b)) => {
            Value::String(if *b { "Commercial" } else { "Individual" }.to_owned())
        }
        (Link(kind), Scalar::Str(s)) => {
            let doc: DocId = s
                .parse()
                .map_err(|_| bad(f.ours, format!("not a document id: {s:?}")))?;
            let name = names.erp_name(doc).ok_or(MapError::NotInErp {
                field: f.ours,
                kind,
                doc,
            })?;
            Value::String(name)
        }
        (_, other) => return Err(bad(f.ours, format!("unexpected value {other}"))),
    })
}

fn int_of(s: &Scalar) -> Option<i64> {
    match s {
        Scalar::Int(i) => Some(*i),
        _ => None,
    }
}

/// A field's value in an ERPNext document or row: the field itself, or, while it is still empty,
/// the Unix milliseconds an earlier version of the mapping wrote to its legacy field.
fn field_value(
    f: &FieldMap,
    doc: &Value,
    names: &dyn Names,
    prior: Option<&Scalar>,
) -> Result<Scalar, MapError> {
    if let Some(old) = legacy_value(f, doc) {
        return old.trim().parse().map(Scalar::Int).map_err(|_| {
            bad(
                f.legacy_ms.unwrap_or(f.erp),
                format!("{old:?} is not a whole number"),
            )
        });
    }
    in_value(f, doc.get(f.erp).unwrap_or(&Value::Null), names, prior)
}

/// What an earlier version wrote to the field's legacy field, when the field itself is empty.
fn legacy_value<'a>(f: &FieldMap, doc: &'a Value) -> Option<&'a str> {
    let old = f.legacy_ms?;
    let empty = doc.get(f.erp).is_none_or(|v| text_of(v).is_none());
    if !empty {
        return None;
    }
    doc.get(old).and_then(text_of_ref)
}

/// One ERPNext value as its register; `prior` is the register's value as we last knew it.
fn in_value(
    f: &FieldMap,
    v: &Value,
    names: &dyn Names,
    prior: Option<&Scalar>,
) -> Result<Scalar, MapError> {
    Ok(match f.conv {
        Datetime => match text_of(v) {
            None => Scalar::Null,
            Some(s) => Scalar::Int(
                parse_erp_datetime(&s, names.zone(), prior.and_then(int_of))
                    .ok_or_else(|| bad(f.erp, format!("{s:?} is not a date and time")))?,
            ),
        },
        Data | Text | Date => Scalar::opt_str(text_of(v)),
        Select(options) => match text_of(v) {
            None => Scalar::Null,
            Some(s) if options.values().contains(&s.as_str()) => Scalar::Str(s),
            Some(s) => {
                let allowed = options.values().join(", ");
                return Err(bad(f.erp, format!("{s:?} is not one of: {allowed}")));
            }
        },
        Check => Scalar::Bool(v.as_i64().unwrap_or(0) != 0 || v.as_bool().unwrap_or(false)),
        Int => Scalar::Int(
            v.as_i64()
                .or_else(|| v.as_f64().map(|x| x as i64))
                .unwrap_or(0),
        ),
        OptInt => match text_of(v) {
            None => Scalar::Null,
            Some(s) => Scalar::Int(
                s.trim()
                    .parse()
                    .map_err(|_| bad(f.erp, format!("{s:?} is not a whole number")))?,
            ),
        },
        CustomerGroup => Scalar::Bool(v.as_str() == Some("Commercial")),
        Link(kind) => match text_of(v) {
            None => Scalar::Null,
            Some(name) => match names.doc_id(kind, &name) {
                Some(doc) => Scalar::Str(doc.to_string()),
                None => {
                    return Err(MapError::UnknownLink {
                        field: f.erp,
                        kind,
                        doctype: kind.doctype(),
                        name,
                    });
                }
            },
        },
    })
}

/// The mapped registers `fields` (all when `None`) and the child tables `tables` of a record, as
/// an ERPNext document body. A child table is always sent whole: ERPNext replaces its rows.
pub fn to_erp(
    map: &DocMap,
    record: &Record,
    fields: Option<&[&str]>,
    tables: Option<&[&str]>,
    names: &dyn Names,
) -> Result<Map<String, Value>, MapError> {
    let mut out = Map::new();
    for f in map.fields {
        if fields.is_some_and(|only| !only.contains(&f.ours)) {
            continue;
        }
        out.insert(f.erp.to_owned(), out_value(f, record.get(f.ours), names)?);
    }
    for tm in map.tables {
        if tables.is_some_and(|only| !only.contains(&tm.collection)) {
            continue;
        }
        let mut rows: Vec<Value> = Vec::new();
        for (key, item) in record.items(tm.collection).into_iter().flatten() {
            let mut row = Map::new();
            row.insert(ITEM_KEY_FIELD.to_owned(), Value::String(key.clone()));
            for col in tm.columns {
                let v = item.get(col.ours).unwrap_or(&Scalar::Null);
                row.insert(col.erp.to_owned(), out_value(col, v, names)?);
            }
            rows.push(Value::Object(row));
        }
        out.insert(tm.field.to_owned(), Value::Array(rows));
    }
    Ok(out)
}

/// An ERPNext document as a record of the mapped registers and collections. `prior` is the
/// record as we last knew ERPNext's (or as we just sent it): it settles wall-clock times the
/// site's zone repeats.
pub fn from_erp(
    map: &DocMap,
    doc: &Value,
    names: &dyn Names,
    prior: Option<&Record>,
) -> Result<Record, MapError> {
    let mut r = Record::default();
    for f in map.fields {
        let before = prior.map(|p| p.get(f.ours));
        r.set(f.ours, field_value(f, doc, names, before)?);
    }
    for tm in map.tables {
        let mut items = Items::new();
        for row in doc
            .get(tm.field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(key) = row.get(ITEM_KEY_FIELD).and_then(text_of_ref) else {
                return Err(bad(tm.field, "a row has no fsm_item key"));
            };
            let item: BTreeMap<String, Scalar> = match legacy_data(row) {
                // A row an earlier version wrote: the item as JSON.
                Some(data) => {
                    let parsed: Map<String, Value> = serde_json::from_str(data).map_err(|e| {
                        bad(tm.field, format!("row {key}: fsm_data is not JSON: {e}"))
                    })?;
                    parsed
                        .iter()
                        .map(|(k, v)| (k.clone(), json_scalar(v)))
                        .collect()
                }
                None => {
                    let known = prior
                        .and_then(|p| p.items(tm.collection))
                        .and_then(|items| items.get(key));
                    let mut item = BTreeMap::new();
                    for col in tm.columns {
                        let before = known.and_then(|k| k.get(col.ours));
                        item.insert(col.ours.to_owned(), field_value(col, row, names, before)?);
                    }
                    item
                }
            };
            items.insert(key.to_owned(), item);
        }
        r.collections.insert(tm.collection.to_owned(), items);
    }
    Ok(r)
}

/// ERPNext's changes to a document, in our canonical form: applied to the document's current
/// record, the entity must still be valid (a start typed `9h30`, an emptied priority are refused
/// here, before anything is written, and the office sees them as an ERPNext issue); the values
/// written are the entity's own spelling (`9:30` becomes `09:30`, a title loses its trailing
/// space), so no later edit in the field has to rewrite a field it never touched.
pub fn canonical_pull(
    kind: EntityKind,
    doc: DocId,
    ours: &Record,
    pulled: &[FieldChange],
) -> Result<Vec<FieldChange>, MapError> {
    let mut merged = ours.clone();
    merged.apply(pulled);
    let canonical = AnyEntity::from_record(kind, doc, &merged)
        .map_err(|e| bad(&e.field, format!("ERPNext value refused: {}", e.problem)))?
        .to_record();
    Ok(pulled
        .iter()
        .map(|c| match c {
            FieldChange::Set { field, value } => FieldChange::Set {
                field: field.clone(),
                value: canonical
                    .fields
                    .get(field)
                    .cloned()
                    .unwrap_or_else(|| value.clone()),
            },
            FieldChange::SetItem {
                collection,
                item,
                field,
                value,
            } => FieldChange::SetItem {
                collection: collection.clone(),
                item: item.clone(),
                field: field.clone(),
                value: canonical
                    .items(collection)
                    .and_then(|i| i.get(item))
                    .and_then(|i| i.get(field))
                    .cloned()
                    .unwrap_or_else(|| value.clone()),
            },
        })
        .collect())
}

/// The JSON item of a row written before child tables had typed columns.
fn legacy_data(row: &Value) -> Option<&str> {
    row.get(ITEM_DATA_FIELD)
        .and_then(Value::as_str)
        .filter(|d| !d.trim().is_empty())
}

/// The child tables of an ERPNext document that still hold rows as an earlier version wrote them
/// (the item as JSON, or a time as Unix milliseconds only): the bridge sends them again, typed.
pub fn legacy_tables(map: &DocMap, doc: &Value) -> Vec<&'static str> {
    map.tables
        .iter()
        .filter(|tm| {
            doc.get(tm.field)
                .and_then(Value::as_array)
                .is_some_and(|rows| {
                    rows.iter().any(|r| {
                        legacy_data(r).is_some()
                            || tm.columns.iter().any(|c| legacy_value(c, r).is_some())
                    })
                })
        })
        .map(|tm| tm.collection)
        .collect()
}

/// The registers of an ERPNext document whose value is still only in the field an earlier
/// version wrote (Unix milliseconds): the bridge writes them again to their `Datetime` field.
pub fn legacy_fields(map: &DocMap, doc: &Value) -> Vec<&'static str> {
    map.fields
        .iter()
        .filter(|f| legacy_value(f, doc).is_some())
        .map(|f| f.ours)
        .collect()
}

fn text_of_ref(v: &Value) -> Option<&str> {
    v.as_str().filter(|s| !s.is_empty())
}

/// The mapped part of a record: what the bridge compares with ERPNext. An empty text is null,
/// as ERPNext cannot tell them apart.
pub fn mapped(map: &DocMap, record: &Record) -> Record {
    let mut r = Record::default();
    for f in map.fields {
        let v = match (f.conv, record.get(f.ours)) {
            (Data | Text | Date, Scalar::Str(s)) if s.is_empty() => Scalar::Null,
            (_, v) => v.clone(),
        };
        r.set(f.ours, v);
    }
    for tm in map.tables {
        let mut items = record.items(tm.collection).cloned().unwrap_or_default();
        for item in items.values_mut() {
            for col in tm.columns {
                if let (Data | Text, Some(Scalar::Str(s))) = (col.conv, item.get(col.ours))
                    && s.is_empty()
                {
                    item.insert(col.ours.to_owned(), Scalar::Null);
                }
            }
        }
        r.collections.insert(tm.collection.to_owned(), items);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::ids::DocId;

    struct Fixed(Vec<(DocId, EntityKind, String)>);
    impl Names for Fixed {
        fn zone(&self) -> &jiff::tz::TimeZone {
            toronto()
        }
        fn erp_name(&self, doc: DocId) -> Option<String> {
            self.0.iter().find(|x| x.0 == doc).map(|x| x.2.clone())
        }
        fn doc_id(&self, kind: EntityKind, erp_name: &str) -> Option<DocId> {
            self.0
                .iter()
                .find(|x| x.1 == kind && x.2 == erp_name)
                .map(|x| x.0)
        }
    }

    fn id(n: u8) -> DocId {
        DocId::from_bytes([n; 16])
    }

    #[test]
    fn every_kind_round_trips_through_its_erpnext_form() {
        let data = sync_server_demo_entities();
        let names = Fixed(
            data.iter()
                .map(|e| (e.doc_id(), e.kind(), format!("ERP-{}", e.doc_id())))
                .collect(),
        );
        let mut seen = std::collections::BTreeSet::new();
        for e in &data {
            let map = doc_map(e.kind());
            let ours = mapped(map, &e.to_record());
            let body = to_erp(map, &ours, None, None, &names).expect("maps out");
            let back = from_erp(map, &Value::Object(body), &names, None).expect("maps in");
            assert_eq!(back, ours, "{:?} {}", e.kind(), e.doc_id());
            seen.insert(e.kind());
        }
        assert_eq!(seen.len(), 7, "the demo data covers every kind");
    }

    #[test]
    fn links_need_the_other_side_to_know_the_target() {
        let map = doc_map(EntityKind::Subscription);
        let mut r = Record::default();
        r.set("customer", Scalar::str(id(1).to_string()));
        let err = to_erp(map, &r, Some(&["customer"]), Some(&[]), &Fixed(vec![]))
            .expect_err("no ERPNext name yet");
        assert!(matches!(err, MapError::NotInErp { doc, .. } if doc == id(1)));
        let doc = serde_json::json!({"customer": "Dupont Inc", "status": "active", "plan": "IPTV"});
        let err = from_erp(map, &doc, &Fixed(vec![]), None).expect_err("unknown link");
        assert!(matches!(err, MapError::UnknownLink { ref name, .. } if name == "Dupont Inc"));
        let bad = serde_json::json!({"job_status": "Open"});
        assert!(matches!(
            from_erp(doc_map(EntityKind::Job), &bad, &Fixed(vec![]), None),
            Err(MapError::BadValue { .. })
        ));
    }

    fn toronto() -> &'static jiff::tz::TimeZone {
        static ZONE: std::sync::OnceLock<jiff::tz::TimeZone> = std::sync::OnceLock::new();
        ZONE.get_or_init(|| jiff::tz::TimeZone::get("America/Toronto").expect("bundled zone"))
    }

    /// Unix milliseconds of a UTC time.
    fn utc(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>()
            .expect("a UTC time")
            .as_millisecond()
    }

    #[test]
    fn moments_are_the_sites_wall_clock_time_in_erpnext() {
        let zone = toronto();
        // (UTC moment, what the office reads in Toronto)
        let cases = [
            ("2026-11-30T14:15:00.250Z", "2026-11-30 09:15:00.250000"), // EST, UTC-5
            ("2026-07-01T13:00:00Z", "2026-07-01 09:00:00.000000"),     // EDT, UTC-4
            ("2026-11-01T05:30:00Z", "2026-11-01 01:30:00.000000"), // the repeated hour, 1st time
            ("2026-11-01T06:30:00Z", "2026-11-01 01:30:00.000000"), // and the 2nd
        ];
        for (moment, wall) in cases {
            let ms = utc(moment);
            assert_eq!(erp_datetime(ms, zone).as_deref(), Some(wall), "{moment}");
            // Read back knowing what we wrote: the same moment, in the repeated hour too.
            assert_eq!(
                parse_erp_datetime(wall, zone, Some(ms)),
                Some(ms),
                "{moment}"
            );
        }
        // Without a prior, the repeated hour reads as its first occurrence; ERPNext also answers
        // without the fraction when it is zero.
        assert_eq!(
            parse_erp_datetime("2026-11-01 01:30:00", zone, None),
            Some(utc("2026-11-01T05:30:00Z"))
        );
        // The hour the clocks skip reads forward, as a wall clock would have shown it.
        assert_eq!(
            parse_erp_datetime("2026-03-08 02:30:00", zone, None),
            Some(utc("2026-03-08T07:30:00Z"))
        );
        assert_eq!(parse_erp_datetime("30/11/2026 9:15", zone, None), None);
    }

    #[test]
    fn a_time_an_earlier_version_kept_as_milliseconds_is_read_and_written_again() {
        let map = doc_map(EntityKind::Job);
        let started = utc("2026-11-30T14:15:00Z");
        let doc = serde_json::json!({
            "job_status": "on_site",
            "actual_start_ms": started.to_string(),
            "fsm_time_log": [
                {"fsm_item": "t1", "started_ms": started.to_string(), "ended": "2026-11-30 10:00:00"}
            ],
        });
        let r = from_erp(map, &doc, &Fixed(vec![]), None).expect("maps in");
        assert_eq!(r.get("actual_start"), &Scalar::Int(started));
        let row = &r.items("time_log").expect("the time log")["t1"];
        assert_eq!(row["started"], Scalar::Int(started));
        assert_eq!(row["ended"], Scalar::Int(utc("2026-11-30T15:00:00Z")));
        assert_eq!(legacy_fields(map, &doc), vec!["actual_start"]);
        assert_eq!(legacy_tables(map, &doc), vec!["time_log"]);
        // Once the Datetime field holds a value, the legacy one is ignored.
        let rewritten = serde_json::json!({
            "job_status": "on_site",
            "actual_start": "2026-11-30 09:15:00",
            "actual_start_ms": "1",
        });
        let r = from_erp(map, &rewritten, &Fixed(vec![]), None).expect("maps in");
        assert_eq!(r.get("actual_start"), &Scalar::Int(started));
        assert!(legacy_fields(map, &rewritten).is_empty());
    }

    fn sync_server_demo_entities() -> Vec<shared::model::AnyEntity> {
        let spec = crate::demo::Spec {
            technicians: 3,
            locations: 12,
            ..crate::demo::DEMO_SPEC
        };
        crate::demo::generate(crate::demo::DEMO_SEED, spec, chrono_today()).entities
    }

    fn chrono_today() -> chrono::NaiveDate {
        chrono::NaiveDate::from_ymd_opt(2026, 11, 23).expect("valid date")
    }
}
