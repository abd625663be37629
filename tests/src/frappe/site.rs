//! The site's state and its document life cycle: naming, type coercion, validation,
//! `modified` checks, versions, deletions and webhook deliveries.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::Counts;
use super::error::{ApiError, Message, server_messages};
use super::meta::{self, Field, Meta, Naming, STANDARD};

pub(crate) type Doc = Map<String, Value>;

/// A webhook request to send once the write is committed.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) url: String,
    pub(crate) method: String,
    pub(crate) body: Vec<u8>,
    pub(crate) signature: Option<String>,
}

/// The result of a successful save: the body's `data` and any `_server_messages`.
#[derive(Debug)]
pub(crate) struct Saved {
    pub(crate) doc: Value,
    pub(crate) messages: Vec<Message>,
}

impl Saved {
    /// The response body with `key` (`data` or `message`) holding the document.
    pub(crate) fn body(self, key: &str) -> Value {
        let mut m = Map::new();
        m.insert(key.into(), self.doc);
        if !self.messages.is_empty() {
            m.insert("_server_messages".into(), server_messages(&self.messages));
        }
        Value::Object(m)
    }
}

/// Everything one site holds.
#[derive(Debug)]
pub(crate) struct Site {
    pub(crate) metas: BTreeMap<String, Meta>,
    pub(crate) docs: BTreeMap<String, BTreeMap<String, Doc>>,
    counters: BTreeMap<String, u64>,
    last: NaiveDateTime,
    /// The site's local time minus UTC: Frappe stamps `modified` in the site's time zone, so a
    /// change of offset (daylight saving time ending) makes stamps go back.
    pub(crate) utc_offset: chrono::Duration,
    pub(crate) counts: Counts,
    pub(crate) outbox: Vec<Delivery>,
    /// The address links in messages point at (`http://host:port`).
    pub(crate) base_url: String,
}

#[allow(
    clippy::disallowed_methods,
    reason = "the double stands for a real server, which stamps documents with its wall clock"
)]
fn wall_clock() -> NaiveDateTime {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
    DateTime::from_timestamp(secs, since.subsec_micros() * 1000)
        .map(|t| t.naive_utc())
        .unwrap_or_default()
}

/// `YYYY-MM-DD HH:MM:SS.ffffff`, as Frappe stores `modified`.
pub(crate) fn fmt_ts(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// A Time column as MariaDB gives it back: no leading zero, fraction without trailing zeros.
fn fmt_time_stored(t: NaiveTime) -> String {
    let mut s = format!("{}:{:02}:{:02}", t.hour(), t.minute(), t.second());
    let micros = t.nanosecond() / 1000;
    if micros > 0 {
        let frac = format!("{micros:06}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s
}

fn parse_time(s: &str) -> Option<NaiveTime> {
    let s = s.trim();
    ["%H:%M:%S%.f", "%H:%M:%S", "%H:%M"]
        .iter()
        .find_map(|f| NaiveTime::parse_from_str(s, f).ok())
}

/// Parses the datetime spellings Frappe accepts in filters and Datetime fields.
pub(crate) fn parse_datetime(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim().trim_end_matches('Z');
    let s = s.split('+').next().unwrap_or(s);
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t);
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
}

fn random_name() -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..10)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// Empty in Frappe's sense: null or an empty string.
pub(crate) fn is_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    }
}

/// A value as text, the way Python's `str()` would print it.
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Number(n) => n.as_f64().filter(|_| n.is_f64()).map_or_else(
            || n.to_string(),
            |f| {
                if f.fract() == 0.0 && f.abs() < 1e15 {
                    format!("{f:.1}")
                } else {
                    f.to_string()
                }
            },
        ),
        other => other.to_string(),
    }
}

fn flag(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.trim() == "1",
        _ => false,
    }
}

fn round_to(x: f64, precision: u32) -> f64 {
    let p = 10f64.powi(i32::try_from(precision).unwrap_or(9));
    (x * p).round() / p
}

fn url_quote(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn slug(doctype: &str) -> String {
    doctype.to_lowercase().replace(' ', "-")
}

/// A new document's name, the naming counter to commit with it, and notes for the user.
type NewName = (String, Option<(String, u64)>, Vec<Message>);

/// A field value in the two forms a save produces: what the response echoes, what is stored.
struct Coerced {
    response: Value,
    stored: Value,
}

impl Site {
    pub(crate) fn new() -> Self {
        let mut site = Self {
            metas: BTreeMap::new(),
            docs: BTreeMap::new(),
            counters: BTreeMap::new(),
            last: NaiveDateTime::default(),
            utc_offset: chrono::Duration::zero(),
            counts: Counts::default(),
            outbox: Vec::new(),
            base_url: "http://127.0.0.1".into(),
        };
        for m in meta::standard() {
            site.metas.insert(m.name.clone(), m);
        }
        let ts = fmt_ts(site.now());
        site.put_raw("System Settings", meta::system_settings(&ts));
        for (doctype, own, parent, root, children) in [
            (
                "Customer Group",
                "customer_group_name",
                "parent_customer_group",
                "All Customer Groups",
                &["Commercial", "Individual", "Government", "Non Profit"][..],
            ),
            (
                "Territory",
                "territory_name",
                "parent_territory",
                "All Territories",
                &["United States", "Rest Of The World"][..],
            ),
        ] {
            let mut all = vec![(root, Value::Null, 1)];
            all.extend(children.iter().map(|c| (*c, Value::String(root.into()), 0)));
            for (name, parent_value, is_group) in all {
                let mut doc = site.standard_fields(name, &ts);
                doc.insert(own.into(), Value::String(name.into()));
                doc.insert(parent.into(), parent_value);
                doc.insert("is_group".into(), json!(is_group));
                site.put_raw(doctype, doc);
            }
        }
        let names: Vec<String> = site.metas.keys().cloned().collect();
        for name in names {
            let doc = site.doctype_doc_for(&name, &ts);
            site.put_raw("DocType", doc);
        }
        site
    }

    /// The next timestamp: the site's local wall-clock time, strictly increasing within a
    /// second (two saves never share a stamp), but going back when the clocks do.
    pub(crate) fn now(&mut self) -> NaiveDateTime {
        let mut t = wall_clock() + self.utc_offset;
        t = t.with_nanosecond(t.nanosecond() / 1000 * 1000).unwrap_or(t);
        if t <= self.last && self.last - t < chrono::Duration::seconds(1) {
            t = self.last + chrono::Duration::microseconds(1);
        }
        self.last = t;
        t
    }

    fn standard_fields(&self, name: &str, ts: &str) -> Doc {
        let mut doc = Map::new();
        doc.insert("name".into(), Value::String(name.into()));
        doc.insert("owner".into(), json!("Administrator"));
        doc.insert("creation".into(), Value::String(ts.into()));
        doc.insert("modified".into(), Value::String(ts.into()));
        doc.insert("modified_by".into(), json!("Administrator"));
        doc.insert("docstatus".into(), json!(0));
        doc.insert("idx".into(), json!(0));
        doc
    }

    fn put_raw(&mut self, doctype: &str, doc: Doc) {
        let name = doc.get("name").map(text).unwrap_or_default();
        self.docs
            .entry(doctype.into())
            .or_default()
            .insert(name, doc);
    }

    pub(crate) fn meta(&self, doctype: &str) -> Result<&Meta, ApiError> {
        self.metas
            .get(doctype)
            .ok_or_else(|| ApiError::not_found("DocType", doctype))
    }

    pub(crate) fn exists(&self, doctype: &str, name: &str) -> bool {
        if doctype == "DocType" {
            return self.metas.contains_key(name);
        }
        self.docs.get(doctype).is_some_and(|d| d.contains_key(name))
    }

    pub(crate) fn stored(&self, doctype: &str, name: &str) -> Option<&Doc> {
        self.docs.get(doctype)?.get(name)
    }

    /// A document as JSON: `doctype` added to it and to each child row; nulls dropped
    /// when `no_nulls` (what `/api/resource` answers) or kept (`frappe.client.get`).
    pub(crate) fn render(&self, doctype: &str, doc: &Doc, no_nulls: bool) -> Value {
        let mut out = Map::new();
        let tables: BTreeMap<String, String> = self
            .metas
            .get(doctype)
            .map(|m| {
                m.tables()
                    .map(|f| (f.fieldname.clone(), f.options.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for (k, v) in doc {
            if no_nulls && v.is_null() {
                continue;
            }
            if let (Some(child), Value::Array(rows)) = (tables.get(k), v) {
                let rows = rows
                    .iter()
                    .filter_map(Value::as_object)
                    .map(|r| self.render(child, r, no_nulls))
                    .collect();
                out.insert(k.clone(), Value::Array(rows));
            } else {
                out.insert(k.clone(), v.clone());
            }
        }
        out.insert("doctype".into(), Value::String(doctype.into()));
        Value::Object(out)
    }

    /// The stored document rendered as a `GET /api/resource/<doctype>/<name>` answers.
    pub(crate) fn get(&self, doctype: &str, name: &str, no_nulls: bool) -> Result<Value, ApiError> {
        self.meta(doctype)?;
        let doc = self
            .stored(doctype, name)
            .ok_or_else(|| ApiError::not_found(doctype, name))?;
        Ok(self.render(doctype, doc, no_nulls))
    }

    fn coerce(&mut self, doctype: &str, field: &Field, v: &Value) -> Result<Coerced, ApiError> {
        let same = |v: Value| Coerced {
            response: v.clone(),
            stored: v,
        };
        let number = |v: &Value| -> f64 {
            match v {
                Value::Number(n) => n.as_f64().unwrap_or(0.0),
                Value::Bool(b) => f64::from(u8::from(*b)),
                Value::String(s) => s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .unwrap_or(0.0),
                _ => 0.0,
            }
        };
        let bad = |kind: &str, v: &Value| {
            ApiError::operational(
                1292,
                &format!(
                    "Incorrect {kind} value: '{}' for column `_site`.`tab{doctype}`.`{}` at row 1",
                    text(v),
                    field.fieldname
                ),
            )
        };
        Ok(match field.fieldtype.as_str() {
            "Int" | "Check" => {
                #[allow(
                    clippy::cast_possible_truncation,
                    reason = "Frappe's cint truncates as well"
                )]
                let n = number(v).trunc() as i64;
                same(json!(n))
            }
            "Float" | "Currency" | "Percent" => {
                let x = number(v);
                Coerced {
                    response: json!(x),
                    stored: json!(round_to(x, field.precision.unwrap_or(9))),
                }
            }
            "Date" => match v {
                Value::Null => same(Value::Null),
                Value::String(s) if s.is_empty() => same(Value::Null),
                Value::String(s)
                    if NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() && s.len() == 10 =>
                {
                    same(v.clone())
                }
                other => return Err(bad("date", other)),
            },
            "Datetime" => match v {
                Value::Null => same(Value::Null),
                Value::String(s) if s.is_empty() => same(Value::Null),
                Value::String(s) if !s.contains('T') => match parse_datetime(s) {
                    Some(t) => Coerced {
                        response: v.clone(),
                        stored: Value::String(fmt_ts(t)),
                    },
                    None => return Err(bad("datetime", v)),
                },
                other => return Err(bad("datetime", other)),
            },
            "Time" => match v {
                Value::Null => same(Value::Null),
                Value::String(s) if s.is_empty() => same(Value::Null),
                Value::String(s) => match parse_time(s) {
                    Some(t) => Coerced {
                        response: v.clone(),
                        stored: Value::String(fmt_time_stored(t)),
                    },
                    None => return Err(bad("time", v)),
                },
                other => return Err(bad("time", other)),
            },
            _ => match v {
                Value::Null | Value::String(_) => same(v.clone()),
                Value::Number(_) | Value::Bool(_) => same(Value::String(text(v))),
                other => same(Value::String(other.to_string())),
            },
        })
    }

    /// The current time of day, the way an empty Time field gets filled.
    fn time_now(&mut self) -> Coerced {
        let t = self.now().time();
        Coerced {
            response: Value::String(t.format("%H:%M:%S%.6f").to_string()),
            stored: Value::String(fmt_time_stored(t)),
        }
    }

    /// Coerces the fields of `body` that `meta` knows; on insert, fills defaults.
    /// Returns (response form, stored form, first database-level error).
    fn coerce_fields(
        &mut self,
        meta: &Meta,
        body: &Doc,
        base: Option<&Doc>,
    ) -> (Doc, Doc, Option<ApiError>) {
        let mut response = base.cloned().unwrap_or_default();
        let mut stored = base.cloned().unwrap_or_default();
        let mut deferred = None;
        for field in meta.fields.iter().filter(|f| !f.is_table()) {
            let sent = body.get(&field.fieldname);
            let value = match (sent, base) {
                (Some(v), _) => v.clone(),
                (None, Some(_)) => continue,
                (None, None) => Value::Null,
            };
            let coerced = if base.is_none() && is_empty(Some(&value)) {
                match (&field.default, field.fieldtype.as_str()) {
                    (Some(d), _) => self.coerce(&meta.name, field, &Value::String(d.clone())),
                    (None, "Time") => Ok(self.time_now()),
                    _ => self.coerce(&meta.name, field, &value),
                }
            } else {
                self.coerce(&meta.name, field, &value)
            };
            match coerced {
                Ok(c) => {
                    response.insert(field.fieldname.clone(), c.response);
                    stored.insert(field.fieldname.clone(), c.stored);
                }
                Err(e) => {
                    deferred.get_or_insert(e);
                    response.insert(field.fieldname.clone(), Value::Null);
                    stored.insert(field.fieldname.clone(), Value::Null);
                }
            }
        }
        for table in meta.tables() {
            let Some(rows) = body.get(&table.fieldname) else {
                if base.is_none() {
                    response.insert(table.fieldname.clone(), json!([]));
                    stored.insert(table.fieldname.clone(), json!([]));
                }
                continue;
            };
            let Some(child) = self.metas.get(&table.options).cloned() else {
                continue;
            };
            let old_rows: Vec<Doc> = base
                .and_then(|b| b.get(&table.fieldname))
                .and_then(Value::as_array)
                .map(|rows| rows.iter().filter_map(Value::as_object).cloned().collect())
                .unwrap_or_default();
            let mut response_rows = Vec::new();
            let mut stored_rows = Vec::new();
            for row in rows
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
            {
                let old = row.get("name").and_then(Value::as_str).and_then(|n| {
                    old_rows
                        .iter()
                        .find(|r| r.get("name").and_then(Value::as_str) == Some(n))
                });
                let (mut r, mut s, e) = self.coerce_fields(&child, row, None);
                if let Some(e) = e {
                    deferred.get_or_insert(e);
                }
                match old {
                    Some(old) => {
                        for k in ["name", "creation"] {
                            r.insert(k.into(), old[k].clone());
                            s.insert(k.into(), old[k].clone());
                        }
                    }
                    None => {
                        r.insert("__unsaved".into(), json!(1));
                    }
                }
                response_rows.push(Value::Object(r));
                stored_rows.push(Value::Object(s));
            }
            response.insert(table.fieldname.clone(), Value::Array(response_rows));
            stored.insert(table.fieldname.clone(), Value::Array(stored_rows));
        }
        (response, stored, deferred)
    }

    /// Values a doctype derives on save (ERPNext's and Frappe's controllers).
    fn derive(&self, meta: &Meta, docs: [&mut Doc; 2]) {
        for doc in docs {
            if meta.name == "Contact" {
                let part = |k: &str| {
                    doc.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .trim()
                        .to_string()
                };
                let full: Vec<String> = ["first_name", "middle_name", "last_name"]
                    .iter()
                    .map(|k| part(k))
                    .filter(|s| !s.is_empty())
                    .collect();
                doc.insert("full_name".into(), Value::String(full.join(" ")));
                let primary = |table: &str, value: &str, flag_name: &str| -> String {
                    let rows: Vec<&Map<String, Value>> = doc
                        .get(table)
                        .and_then(Value::as_array)
                        .map(|r| r.iter().filter_map(Value::as_object).collect())
                        .unwrap_or_default();
                    rows.iter()
                        .find(|r| flag(r.get(flag_name)))
                        .and_then(|r| r.get(value))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                let email = primary("email_ids", "email_id", "is_primary");
                let phone = primary("phone_nos", "phone", "is_primary_phone");
                let mobile = primary("phone_nos", "phone", "is_primary_mobile_no");
                doc.insert("email_id".into(), Value::String(email));
                doc.insert("phone".into(), Value::String(phone));
                doc.insert("mobile_no".into(), Value::String(mobile));
                if is_empty(doc.get("image")) {
                    doc.insert("image".into(), json!(""));
                }
            }
            if meta.name == "Customer"
                && let Some(Value::String(s)) = doc.get_mut("customer_name")
            {
                *s = s.trim().to_string();
            }
            for table in meta.tables().filter(|t| t.options == "Dynamic Link") {
                let Some(Value::Array(rows)) = doc.get_mut(&table.fieldname) else {
                    continue;
                };
                for row in rows.iter_mut().filter_map(Value::as_object_mut) {
                    let target = row
                        .get("link_doctype")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    let name = row
                        .get("link_name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    let title = self
                        .stored(&target, &name)
                        .and_then(|d| d.get("customer_name").or_else(|| d.get("title")))
                        .and_then(Value::as_str)
                        .map_or_else(|| name.clone(), str::to_string);
                    row.insert("link_title".into(), Value::String(title));
                }
            }
        }
    }

    fn first_link_name(doc: &Doc) -> Option<String> {
        doc.get("links")?
            .as_array()?
            .first()?
            .get("link_name")?
            .as_str()
            .map(str::to_string)
    }

    fn unused(&self, doctype: &str, base: &str, sep: &str) -> String {
        if !self.exists(doctype, base) {
            return base.to_string();
        }
        (1..)
            .map(|n| format!("{base}{sep}{n}"))
            .find(|n| !self.exists(doctype, n))
            .unwrap_or_default()
    }

    /// Picks the new document's name; the counter to commit comes back with it.
    fn make_name(&self, meta: &Meta, body: &Doc, stored: &Doc) -> Result<NewName, ApiError> {
        let field_text = |k: &str| {
            stored
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim()
                .to_string()
        };
        Ok(match &meta.naming {
            Naming::Field(f) => {
                let name = field_text(f);
                if name.is_empty() {
                    let label = meta.field(f).map_or_else(|| f.clone(), |x| x.label.clone());
                    return Err(ApiError::mandatory(
                        &meta.name,
                        "New",
                        &[(f.clone(), label)],
                    ));
                }
                (name, None, Vec::new())
            }
            Naming::Format {
                prefix,
                digits,
                suffix,
            } => {
                let n = self.counters.get(prefix).copied().unwrap_or(0) + 1;
                (
                    format!("{prefix}{n:0digits$}{suffix}"),
                    Some((prefix.clone(), n)),
                    Vec::new(),
                )
            }
            Naming::Autoincrement => {
                let n = self.counters.get(&meta.name).copied().unwrap_or(0) + 1;
                (n.to_string(), Some((meta.name.clone(), n)), Vec::new())
            }
            Naming::Hash => {
                let mut name = random_name();
                while self.exists(&meta.name, &name) {
                    name = random_name();
                }
                (name, None, Vec::new())
            }
            Naming::Customer => {
                let Some(Value::String(base)) = stored.get("customer_name") else {
                    let mut e = ApiError::internal(
                        "AttributeError",
                        "AttributeError: 'NoneType' object has no attribute 'strip'",
                    );
                    e.extra.push(("_exc_source", json!("erpnext (app)")));
                    return Err(e);
                };
                let base = base.trim().to_string();
                if !self.exists("Customer", &base) {
                    return Ok((base, None, Vec::new()));
                }
                let prefix = format!("{base} - ");
                let highest = self
                    .docs
                    .get("Customer")
                    .into_iter()
                    .flat_map(BTreeMap::keys)
                    .filter_map(|n| n.strip_prefix(&prefix)?.parse::<u64>().ok())
                    .max()
                    .unwrap_or(0);
                let name = format!("{prefix}{}", highest + 1);
                let note = Message {
                    text: format!("Changed customer name to '{name}' as '{base}' already exists."),
                    title: "Note",
                    indicator: Some("yellow"),
                    alert: false,
                };
                (name, None, vec![note])
            }
            Naming::Address => {
                let mut title = field_text("address_title");
                if title.is_empty() {
                    title = Self::first_link_name(stored).unwrap_or_default();
                }
                if title.is_empty() {
                    return Err(ApiError::validation("Address Title is mandatory."));
                }
                let base = format!("{title}-{}", field_text("address_type"));
                (self.unused("Address", &base, "-"), None, Vec::new())
            }
            Naming::Contact => {
                let mut base = field_text("full_name");
                if let Some(link) = Self::first_link_name(stored) {
                    base = format!("{base}-{link}");
                }
                (self.unused("Contact", &base, "-"), None, Vec::new())
            }
            Naming::CustomField => (
                format!("{}-{}", field_text("dt"), field_text("fieldname")),
                None,
                Vec::new(),
            ),
            Naming::Prompt => {
                let name = body
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .trim()
                    .to_string();
                if name.is_empty() {
                    return Err(ApiError::validation(format!(
                        "{} name is required",
                        meta.name
                    )));
                }
                (name, None, Vec::new())
            }
        })
    }

    /// Mandatory, link, select and unique checks, in Frappe's order.
    fn validate(&self, meta: &Meta, name: &str, doc: &Doc) -> Result<(), ApiError> {
        let mut missing = Vec::new();
        for f in meta.fields.iter().filter(|f| f.reqd && !f.is_table()) {
            if is_empty(doc.get(&f.fieldname)) {
                missing.push((f.fieldname.clone(), f.label.clone()));
            }
        }
        for table in meta.tables() {
            let Some(child) = self.metas.get(&table.options) else {
                continue;
            };
            for row in doc
                .get(&table.fieldname)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for f in child.fields.iter().filter(|f| f.reqd) {
                    if is_empty(row.get(&f.fieldname)) {
                        missing.push((
                            format!("{}.{}", table.fieldname, f.fieldname),
                            f.label.clone(),
                        ));
                    }
                }
            }
        }
        if !missing.is_empty() {
            return Err(ApiError::mandatory(&meta.name, name, &missing));
        }
        self.validate_values(meta, doc)?;
        for table in meta.tables() {
            let Some(child) = self.metas.get(&table.options) else {
                continue;
            };
            for row in doc
                .get(&table.fieldname)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(row) = row.as_object() {
                    self.validate_values(child, row)?;
                }
            }
        }
        for f in meta.fields.iter().filter(|f| f.unique) {
            let Some(value) = doc.get(&f.fieldname).filter(|v| !is_empty(Some(v))) else {
                continue;
            };
            let taken = self
                .docs
                .get(&meta.name)
                .into_iter()
                .flat_map(BTreeMap::iter)
                .any(|(other, d)| other != name && d.get(&f.fieldname) == Some(value));
            if taken {
                return Err(ApiError {
                    status: 417,
                    exc_type: "UniqueValidationError".into(),
                    exception: Some(format!(
                        "frappe.exceptions.UniqueValidationError: ('{}', '{name}', IntegrityError(1062, \"Duplicate entry '{}' for key '{}'\"))",
                        meta.name,
                        text(value),
                        f.fieldname
                    )),
                    messages: vec![Message::plain(format!("{} must be unique", f.label))],
                    extra: Vec::new(),
                });
            }
        }
        Ok(())
    }

    fn validate_values(&self, meta: &Meta, doc: &Doc) -> Result<(), ApiError> {
        for f in &meta.fields {
            let Some(Value::String(value)) = doc.get(&f.fieldname) else {
                continue;
            };
            if value.is_empty() {
                continue;
            }
            match f.fieldtype.as_str() {
                "Link" if !f.options.is_empty() && !self.exists(&f.options, value) => {
                    return Err(ApiError::thrown(
                        "LinkValidationError",
                        format!("Could not find {}: {value}", f.label),
                    ));
                }
                "Dynamic Link" => {
                    let target = doc.get(&f.options).and_then(Value::as_str).unwrap_or("");
                    if !target.is_empty() && !self.exists(target, value) {
                        return Err(ApiError::thrown(
                            "LinkValidationError",
                            format!("Could not find {target}: {value}"),
                        ));
                    }
                }
                "Select" => {
                    let options: Vec<&str> = f
                        .options
                        .split('\n')
                        .map(str::trim)
                        .filter(|o| !o.is_empty())
                        .collect();
                    if !options.is_empty() && !options.contains(&value.as_str()) {
                        let quoted: Vec<String> =
                            options.iter().map(|o| format!("\"{o}\"")).collect();
                        return Err(ApiError::validation(format!(
                            " {} cannot be \"{value}\". It should be one of {}",
                            f.label,
                            quoted.join(", ")
                        )));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Sets the standard columns of `doc` and of its child rows.
    fn stamp(meta: &Meta, name: &str, doc: &mut Doc, creation: &str, modified: &str) {
        doc.insert("name".into(), Value::String(name.into()));
        doc.insert("owner".into(), json!("Administrator"));
        doc.insert("creation".into(), Value::String(creation.into()));
        doc.insert("modified".into(), Value::String(modified.into()));
        doc.insert("modified_by".into(), json!("Administrator"));
        doc.insert("docstatus".into(), json!(0));
        doc.entry("idx").or_insert(json!(0));
        for table in meta.tables() {
            let Some(Value::Array(rows)) = doc.get_mut(&table.fieldname) else {
                continue;
            };
            for (i, row) in rows.iter_mut().filter_map(Value::as_object_mut).enumerate() {
                if is_empty(row.get("name")) {
                    row.insert("name".into(), Value::String(random_name()));
                }
                row.insert("owner".into(), json!("Administrator"));
                row.entry("creation")
                    .or_insert(Value::String(creation.into()));
                row.insert("modified".into(), Value::String(modified.into()));
                row.insert("modified_by".into(), json!("Administrator"));
                row.insert("docstatus".into(), json!(0));
                row.insert("idx".into(), json!(i + 1));
                row.insert("parent".into(), Value::String(name.into()));
                row.insert("parentfield".into(), Value::String(table.fieldname.clone()));
                row.insert("parenttype".into(), Value::String(meta.name.clone()));
            }
        }
    }

    /// Copies the standard columns (and child-row names) of `stored` onto the response form.
    fn overlay(meta: &Meta, response: &mut Doc, stored: &Doc) {
        for k in STANDARD {
            if let Some(v) = stored.get(k) {
                response.insert(k.into(), v.clone());
            }
        }
        for table in meta.tables() {
            let (Some(Value::Array(rows)), Some(Value::Array(srows))) = (
                response.get_mut(&table.fieldname),
                stored.get(&table.fieldname),
            ) else {
                continue;
            };
            for (row, srow) in rows.iter_mut().zip(srows) {
                let (Some(row), Some(srow)) = (row.as_object_mut(), srow.as_object()) else {
                    continue;
                };
                for (k, v) in srow {
                    let derived = matches!(k.as_str(), "link_title");
                    if STANDARD.contains(&k.as_str())
                        || meta::CHILD_STANDARD.contains(&k.as_str())
                        || derived
                    {
                        row.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        for k in [
            "full_name",
            "email_id",
            "phone",
            "mobile_no",
            "image",
            "customer_name",
        ] {
            if (meta.name == "Contact" || (meta.name == "Customer" && k == "customer_name"))
                && let Some(v) = stored.get(k)
            {
                response.insert(k.into(), v.clone());
            }
        }
    }

    /// Creates a document (`POST /api/resource/<doctype>`, or an office user's save).
    pub(crate) fn insert(&mut self, doctype: &str, body: &Doc) -> Result<Saved, ApiError> {
        let meta = self.meta(doctype)?.clone();
        if doctype == "DocType" {
            return self.create_doctype(body);
        }
        if meta.issingle || meta.istable {
            return Err(ApiError::validation(format!(
                "Cannot create {doctype} directly"
            )));
        }
        let (mut response, mut stored, deferred) = self.coerce_fields(&meta, body, None);
        self.derive(&meta, [&mut response, &mut stored]);
        let (name, counter, messages) = self.make_name(&meta, body, &stored)?;
        self.validate(&meta, &name, &stored)?;
        if meta.name == "Custom Field" {
            self.check_custom_field(&stored)?;
        }
        if self.exists(doctype, &name) {
            return Err(ApiError::duplicate(doctype, &name));
        }
        if let Some(e) = deferred {
            return Err(e);
        }
        if let Some((key, n)) = counter {
            self.counters.insert(key, n);
        }
        let submitting =
            meta.submittable && body.get("docstatus").and_then(Value::as_i64) == Some(1);
        if submitting {
            self.on_submit(&meta.name, &stored)?;
        }
        let ts = fmt_ts(self.now());
        Self::stamp(&meta, &name, &mut stored, &ts, &ts);
        if submitting {
            stored.insert("docstatus".into(), json!(1));
        }
        Self::overlay(&meta, &mut response, &stored);
        if meta.name == "Custom Field" {
            let idx = self.add_custom_field(&stored);
            stored.insert("idx".into(), json!(idx));
            response.insert("idx".into(), json!(idx));
        }
        self.put_raw(doctype, stored.clone());
        self.fire(
            doctype,
            &["after_insert", "on_update", "on_change"],
            &stored,
        );
        Ok(Saved {
            doc: self.render(doctype, &response, true),
            messages,
        })
    }

    /// What submitting a document does besides its docstatus: a Payment Entry allocates its
    /// references against the invoices' outstanding amounts (never beyond them, as ERPNext
    /// refuses).
    fn on_submit(&mut self, doctype: &str, doc: &Doc) -> Result<(), ApiError> {
        if doctype != "Payment Entry" {
            return Ok(());
        }
        let refs: Vec<(String, f64)> = doc
            .get("references")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|r| r.get("reference_doctype").and_then(Value::as_str) == Some("Sales Invoice"))
            .map(|r| {
                (
                    r.get("reference_name").map(text).unwrap_or_default(),
                    r.get("allocated_amount")
                        .and_then(Value::as_f64)
                        .unwrap_or(0.0),
                )
            })
            .collect();
        for (name, allocated) in &refs {
            let invoice = self
                .stored("Sales Invoice", name)
                .ok_or_else(|| ApiError::not_found("Sales Invoice", name))?;
            let outstanding = invoice
                .get("outstanding_amount")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            if invoice.get("docstatus").and_then(Value::as_i64) != Some(1) {
                return Err(ApiError::validation(format!(
                    "Sales Invoice {name} must be submitted"
                )));
            }
            if *allocated > outstanding + 0.005 {
                return Err(ApiError::validation(format!(
                    "Row #1: Allocated Amount cannot be greater than outstanding amount. {name}"
                )));
            }
        }
        for (name, allocated) in refs {
            if let Some(invoice) = self
                .docs
                .get_mut("Sales Invoice")
                .and_then(|d| d.get_mut(&name))
            {
                let outstanding = invoice
                    .get("outstanding_amount")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0);
                let left = ((outstanding - allocated) * 100.0).round() / 100.0;
                invoice.insert("outstanding_amount".into(), json!(left));
                if left <= 0.0 {
                    invoice.insert("status".into(), json!("Paid"));
                }
            }
        }
        Ok(())
    }

    /// Submits a draft (docstatus 0 → 1), as an office user's Submit does.
    pub(crate) fn submit(&mut self, doctype: &str, name: &str) -> Result<Value, ApiError> {
        let ts = fmt_ts(self.now());
        if let Some(doc) = self.stored(doctype, name).cloned() {
            self.on_submit(doctype, &doc)?;
        }
        let doc = self
            .docs
            .get_mut(doctype)
            .and_then(|d| d.get_mut(name))
            .ok_or_else(|| ApiError::not_found(doctype, name))?;
        doc.insert("docstatus".into(), json!(1));
        doc.insert("modified".into(), Value::String(ts));
        Ok(Value::Object(doc.clone()))
    }

    /// Updates a document (PUT, `set_value`, or an office user's save).
    pub(crate) fn update(
        &mut self,
        doctype: &str,
        name: &str,
        body: &Doc,
    ) -> Result<Saved, ApiError> {
        let meta = self.meta(doctype)?.clone();
        let old = self
            .stored(doctype, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(doctype, name))?;
        if let Some(sent) = body.get("modified") {
            let current = old
                .get("modified")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if sent.as_str() != Some(current.as_str()) {
                let now = fmt_ts(self.now());
                return Err(ApiError::thrown(
                    "TimestampMismatchError",
                    format!(
                        "Error: Document has been modified after you have opened it ({current}, {now}). Please refresh to get the latest document."
                    ),
                ));
            }
        }
        if meta.issingle {
            let mut doc = old;
            for (k, v) in body {
                if !STANDARD.contains(&k.as_str()) && k != "doctype" {
                    doc.insert(k.clone(), v.clone());
                }
            }
            let ts = fmt_ts(self.now());
            doc.insert("modified".into(), Value::String(ts));
            self.put_raw(doctype, doc.clone());
            return Ok(Saved {
                doc: self.render(doctype, &doc, true),
                messages: Vec::new(),
            });
        }
        let (mut response, mut stored, deferred) = self.coerce_fields(&meta, body, Some(&old));
        self.derive(&meta, [&mut response, &mut stored]);
        self.validate(&meta, name, &stored)?;
        if let Some(e) = deferred {
            return Err(e);
        }
        let ts = fmt_ts(self.now());
        let creation = old
            .get("creation")
            .and_then(Value::as_str)
            .unwrap_or(&ts)
            .to_string();
        Self::stamp(&meta, name, &mut stored, &creation, &ts);
        Self::overlay(&meta, &mut response, &stored);
        if meta.track_changes {
            self.record_version(&meta, name, &old, &stored);
        }
        self.put_raw(doctype, stored.clone());
        self.fire(doctype, &["on_update", "on_change"], &stored);
        Ok(Saved {
            doc: self.render(doctype, &response, true),
            messages: Vec::new(),
        })
    }

    fn record_version(&mut self, meta: &Meta, name: &str, old: &Doc, new: &Doc) {
        let changed: Vec<Value> = meta
            .fields
            .iter()
            .filter(|f| !f.is_table() && old.get(&f.fieldname) != new.get(&f.fieldname))
            .map(|f| {
                let show = |d: &Doc| {
                    d.get(&f.fieldname).map_or(Value::Null, |v| {
                        if v.is_null() {
                            Value::Null
                        } else {
                            Value::String(text(v))
                        }
                    })
                };
                json!([f.fieldname, show(old), show(new)])
            })
            .collect();
        let row_changed: Vec<Value> = meta
            .tables()
            .filter(|t| old.get(&t.fieldname) != new.get(&t.fieldname))
            .map(|t| json!([t.fieldname]))
            .collect();
        if changed.is_empty() && row_changed.is_empty() {
            return;
        }
        let data = json!({
            "added": [], "changed": changed, "data_import": null, "removed": [],
            "row_changed": row_changed, "updater_reference": null
        });
        let mut version = Map::new();
        version.insert("ref_doctype".into(), Value::String(meta.name.clone()));
        version.insert("docname".into(), Value::String(name.into()));
        version.insert("data".into(), Value::String(data.to_string()));
        self.insert_internal("Version", &version);
    }

    /// Stores a system-written document (Version, Deleted Document) without validation.
    fn insert_internal(&mut self, doctype: &str, fields: &Doc) {
        let Some(meta) = self.metas.get(doctype).cloned() else {
            return;
        };
        let mut doc = Map::new();
        for f in meta.fields.iter().filter(|f| !f.is_table()) {
            let v = fields
                .get(&f.fieldname)
                .cloned()
                .unwrap_or(match f.fieldtype.as_str() {
                    "Check" | "Int" => json!(0),
                    _ => Value::Null,
                });
            doc.insert(f.fieldname.clone(), v);
        }
        let mut name = random_name();
        while self.exists(doctype, &name) {
            name = random_name();
        }
        let ts = fmt_ts(self.now());
        Self::stamp(&meta, &name, &mut doc, &ts, &ts);
        self.put_raw(doctype, doc);
    }

    /// Deletes a document (DELETE, or an office user's delete).
    pub(crate) fn delete(&mut self, doctype: &str, name: &str) -> Result<(), ApiError> {
        self.meta(doctype)?;
        if !self.exists(doctype, name) {
            return Err(ApiError::not_found_bare());
        }
        if let Some((dt, other)) = self.linked_from(doctype, name) {
            let link = |dt: &str, n: &str| {
                format!(
                    "<a href=\"{}/app/{}/{}\">{n}</a>",
                    self.base_url,
                    slug(dt),
                    url_quote(n)
                )
            };
            let text = format!(
                "Cannot delete or cancel because {doctype} {} is linked with {dt} {} ",
                link(doctype, name),
                link(&dt, &other)
            );
            let mut e = ApiError::thrown("LinkExistsError", text);
            if doctype == "Customer" {
                let hint = "You can disable this Customer instead of deleting it.";
                e.exception = Some(format!("frappe.exceptions.LinkExistsError: {hint}"));
                e.messages.push(Message::red(hint));
            }
            return Err(e);
        }
        self.remove(doctype, name);
        Ok(())
    }

    /// The first document (doctype, name) whose Link field points at `doctype`/`name`.
    fn linked_from(&self, doctype: &str, name: &str) -> Option<(String, String)> {
        for (dt, docs) in &self.docs {
            let Some(meta) = self.metas.get(dt) else {
                continue;
            };
            if matches!(dt.as_str(), "Version" | "Deleted Document" | "DocType") {
                continue;
            }
            let links: Vec<&Field> = meta
                .fields
                .iter()
                .filter(|f| f.fieldtype == "Link" && f.options == doctype)
                .collect();
            let child_links: Vec<(&str, Vec<&Field>)> = meta
                .tables()
                .filter_map(|t| {
                    let child = self.metas.get(&t.options)?;
                    let fields: Vec<&Field> = child
                        .fields
                        .iter()
                        .filter(|f| f.fieldtype == "Link" && f.options == doctype)
                        .collect();
                    (!fields.is_empty()).then_some((t.fieldname.as_str(), fields))
                })
                .collect();
            for (other, doc) in docs {
                if dt == doctype && other == name {
                    continue;
                }
                let hit = links
                    .iter()
                    .any(|f| doc.get(&f.fieldname).and_then(Value::as_str) == Some(name))
                    || child_links.iter().any(|(table, fields)| {
                        doc.get(*table)
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .any(|row| {
                                fields.iter().any(|f| {
                                    row.get(&f.fieldname).and_then(Value::as_str) == Some(name)
                                })
                            })
                    });
                if hit {
                    return Some((dt.clone(), other.clone()));
                }
            }
        }
        None
    }

    /// Removes a document: a Deleted Document row, dynamic links cleaned up, and for a
    /// Customer its own Addresses and Contacts deleted too (as ERPNext does).
    fn remove(&mut self, doctype: &str, name: &str) {
        let Some(doc) = self.docs.get_mut(doctype).and_then(|d| d.remove(name)) else {
            return;
        };
        let data = self.render(doctype, &doc, false);
        let mut deleted = Map::new();
        deleted.insert("deleted_name".into(), Value::String(name.into()));
        deleted.insert("deleted_doctype".into(), Value::String(doctype.into()));
        deleted.insert("data".into(), Value::String(data.to_string()));
        self.insert_internal("Deleted Document", &deleted);
        let mut cascade = Vec::new();
        for (dt, docs) in &mut self.docs {
            for (other, d) in docs.iter_mut() {
                let Some(Value::Array(links)) = d.get_mut("links") else {
                    continue;
                };
                let before = links.len();
                links.retain(|row| {
                    !(row.get("link_doctype").and_then(Value::as_str) == Some(doctype)
                        && row.get("link_name").and_then(Value::as_str) == Some(name))
                });
                if links.len() != before
                    && links.is_empty()
                    && doctype == "Customer"
                    && matches!(dt.as_str(), "Address" | "Contact")
                {
                    cascade.push((dt.clone(), other.clone()));
                }
            }
        }
        for (dt, other) in cascade {
            self.remove(&dt, &other);
        }
        self.fire(doctype, &["on_trash"], &doc);
    }

    fn check_custom_field(&self, stored: &Doc) -> Result<(), ApiError> {
        let dt = stored.get("dt").and_then(Value::as_str).unwrap_or("");
        let fieldname = stored
            .get("fieldname")
            .and_then(Value::as_str)
            .unwrap_or("");
        if fieldname.is_empty() {
            return Err(ApiError::mandatory(
                "Custom Field",
                "New",
                &[("fieldname".into(), "Fieldname".into())],
            ));
        }
        if self
            .metas
            .get(dt)
            .is_some_and(|m| m.field(fieldname).is_some())
        {
            return Err(ApiError::validation(format!(
                "Fieldname {fieldname} already exists in {dt}"
            )));
        }
        Ok(())
    }

    /// Adds a Custom Field to its doctype; returns the field's position (`idx`).
    fn add_custom_field(&mut self, stored: &Doc) -> usize {
        let dt = stored
            .get("dt")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let Some(field) = Field::from_json(stored) else {
            return 0;
        };
        let after = stored
            .get("insert_after")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let Some(meta) = self.metas.get_mut(&dt) else {
            return 0;
        };
        let at = meta
            .fields
            .iter()
            .position(|f| f.fieldname == after)
            .map_or(meta.fields.len(), |i| i + 1);
        let empty = match field.fieldtype.as_str() {
            "Int" | "Check" => json!(0),
            "Float" | "Currency" | "Percent" => json!(0.0),
            _ => field.default.clone().map_or(Value::Null, Value::String),
        };
        let fieldname = field.fieldname.clone();
        meta.fields.insert(at, field);
        for doc in self.docs.entry(dt).or_default().values_mut() {
            doc.entry(fieldname.clone()).or_insert(empty.clone());
        }
        at + 1
    }

    /// The `DocType` document describing a standard doctype.
    fn doctype_doc_for(&self, doctype: &str, ts: &str) -> Doc {
        let mut doc = self.standard_fields(doctype, ts);
        if let Value::Object(defaults) = meta::doctype_defaults() {
            doc.extend(defaults);
        }
        if let Some(m) = self.metas.get(doctype) {
            doc.insert("custom".into(), json!(0));
            doc.insert("module".into(), json!("Core"));
            doc.insert("istable".into(), json!(i32::from(m.istable)));
            doc.insert("issingle".into(), json!(i32::from(m.issingle)));
            let fields: Vec<Value> = m
                .fields
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let mut row = meta::docfield_defaults();
                    row["fieldname"] = json!(f.fieldname);
                    row["label"] = json!(f.label);
                    row["fieldtype"] = json!(f.fieldtype);
                    row["reqd"] = json!(i32::from(f.reqd));
                    row["unique"] = json!(i32::from(f.unique));
                    if !f.options.is_empty() {
                        row["options"] = json!(f.options);
                    }
                    if let Some(d) = &f.default {
                        row["default"] = json!(d);
                    }
                    row["idx"] = json!(i + 1);
                    row
                })
                .collect();
            doc.insert("fields".into(), Value::Array(fields));
        }
        doc.insert("permissions".into(), json!([]));
        doc.insert("states".into(), json!([]));
        doc.insert("actions".into(), json!([]));
        doc.insert("links".into(), json!([]));
        doc
    }

    /// `POST /api/resource/DocType`: a custom doctype, usable at once.
    fn create_doctype(&mut self, body: &Doc) -> Result<Saved, ApiError> {
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_string();
        if name.is_empty() {
            return Err(ApiError::validation("DocType name is required"));
        }
        if !flag(body.get("custom")) {
            return Err(ApiError::validation(
                "Not in Developer Mode! Set in site_config.json or make 'Custom' DocType.",
            ));
        }
        let autoname = body
            .get("autoname")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut messages = Vec::new();
        if autoname.starts_with("format:") {
            messages.push(Message {
                text: "Warning: Usage of 'format:' is discouraged.".into(),
                title: "Message",
                indicator: Some("yellow"),
                alert: true,
            });
        }
        if self.metas.contains_key(&name) {
            let mut e = ApiError::duplicate("DocType", &name);
            messages.append(&mut e.messages);
            e.messages = messages;
            return Err(e);
        }
        let mut fields = Vec::new();
        for f in body
            .get("fields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
        {
            let field =
                Field::from_json(f).ok_or_else(|| ApiError::validation("Fieldname is required"))?;
            if field.is_table() && !self.metas.get(&field.options).is_some_and(|m| m.istable) {
                return Err(ApiError::validation(format!(
                    "Options for {} must be set to a child table",
                    field.label
                )));
            }
            if matches!(field.fieldtype.as_str(), "Link")
                && !self.metas.contains_key(&field.options)
                && field.options != name
            {
                return Err(ApiError::thrown(
                    "LinkValidationError",
                    format!("Could not find DocType: {}", field.options),
                ));
            }
            fields.push(field);
        }
        let meta = Meta {
            name: name.clone(),
            fields,
            istable: flag(body.get("istable")),
            issingle: flag(body.get("issingle")),
            naming: Naming::parse(&autoname),
            track_changes: flag(body.get("track_changes")),
            submittable: flag(body.get("is_submittable")),
        };
        let ts = fmt_ts(self.now());
        let mut doc = self.standard_fields(&name, &ts);
        if let Value::Object(defaults) = meta::doctype_defaults() {
            for (k, v) in defaults {
                let sent = body.get(&k).filter(|v| !v.is_null()).cloned();
                doc.insert(k, sent.unwrap_or(v));
            }
        }
        doc.insert("naming_rule".into(), json!(Naming::rule(&autoname)));
        let row = |defaults: Value, sent: &Map<String, Value>, idx: usize, table: &str| {
            let mut r = self.standard_fields(&random_name(), &ts);
            if let Value::Object(d) = defaults {
                for (k, v) in d {
                    r.insert(
                        k.clone(),
                        sent.get(&k).filter(|v| !v.is_null()).cloned().unwrap_or(v),
                    );
                }
            }
            for k in [
                "options",
                "default",
                "description",
                "depends_on",
                "fetch_from",
            ] {
                if let Some(v) = sent.get(k).filter(|v| !v.is_null()) {
                    r.insert(k.into(), v.clone());
                }
            }
            r.insert("idx".into(), json!(idx));
            r.insert("parent".into(), Value::String(name.clone()));
            r.insert("parentfield".into(), Value::String(table.into()));
            r.insert("parenttype".into(), json!("DocType"));
            r
        };
        let rows = |table: &str, defaults: fn() -> Value| -> Vec<Value> {
            body.get(table)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
                .enumerate()
                .map(|(i, f)| Value::Object(row(defaults(), f, i + 1, table)))
                .collect()
        };
        let field_rows = rows("fields", meta::docfield_defaults);
        let perm_rows = rows("permissions", meta::docperm_defaults);
        doc.insert("fields".into(), Value::Array(field_rows));
        doc.insert("permissions".into(), Value::Array(perm_rows));
        doc.insert("states".into(), json!([]));
        doc.insert("actions".into(), json!([]));
        doc.insert("links".into(), json!([]));
        self.metas.insert(name.clone(), meta);
        self.docs.entry(name.clone()).or_default();
        self.put_raw("DocType", doc.clone());
        let mut response = self.render_doctype(&doc, true);
        for table in ["fields", "permissions"] {
            if let Some(Value::Array(rows)) = response.get_mut(table) {
                for r in rows.iter_mut().filter_map(Value::as_object_mut) {
                    r.remove("show_preview_popup");
                    r.insert("__unsaved".into(), json!(1));
                }
            }
        }
        Ok(Saved {
            doc: response,
            messages,
        })
    }

    /// A DocType document as GET answers it (fields and permissions rows typed).
    pub(crate) fn render_doctype(&self, doc: &Doc, with_preview: bool) -> Value {
        let mut out = doc.clone();
        for (table, child) in [("fields", "DocField"), ("permissions", "DocPerm")] {
            if let Some(Value::Array(rows)) = out.get_mut(table) {
                for r in rows.iter_mut().filter_map(Value::as_object_mut) {
                    r.insert("doctype".into(), json!(child));
                    if table == "fields" && with_preview {
                        r.insert("show_preview_popup".into(), json!(0));
                    }
                }
            }
        }
        out.insert("doctype".into(), json!("DocType"));
        Value::Object(out)
    }

    /// Queues the webhooks that match `doctype` and any of `events`.
    fn fire(&mut self, doctype: &str, events: &[&str], doc: &Doc) {
        let hooks: Vec<Doc> = self
            .docs
            .get("Webhook")
            .into_iter()
            .flat_map(BTreeMap::values)
            .filter(|w| {
                w.get("enabled").is_none_or(|e| flag(Some(e)))
                    && w.get("webhook_doctype").and_then(Value::as_str) == Some(doctype)
                    && w.get("webhook_docevent")
                        .and_then(Value::as_str)
                        .is_some_and(|e| events.contains(&e))
            })
            .cloned()
            .collect();
        if hooks.is_empty() {
            return;
        }
        let rendered = self.render(doctype, doc, false);
        for hook in hooks {
            let template = hook
                .get("webhook_json")
                .and_then(Value::as_str)
                .unwrap_or("");
            let body = if template.trim().is_empty() {
                rendered.to_string().into_bytes()
            } else {
                let filled = fill_template(template, &rendered);
                match serde_json::from_str::<Value>(&filled) {
                    Ok(v) => v.to_string().into_bytes(),
                    Err(_) => filled.into_bytes(),
                }
            };
            let secret = hook
                .get("webhook_secret")
                .and_then(Value::as_str)
                .unwrap_or("");
            let signature = flag(hook.get("enable_security")).then(|| sign(secret, &body));
            self.outbox.push(Delivery {
                url: hook
                    .get("request_url")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                method: hook
                    .get("request_method")
                    .and_then(Value::as_str)
                    .unwrap_or("POST")
                    .to_string(),
                body,
                signature,
            });
        }
    }

    /// Every document of `doctype`, in name order.
    pub(crate) fn all(&self, doctype: &str) -> Vec<&Doc> {
        self.docs
            .get(doctype)
            .map(|d| d.values().collect())
            .unwrap_or_default()
    }

    /// Records a successful write for [`Counts`].
    pub(crate) fn count(&mut self, kind: &str, doctype: &str) {
        let map = match kind {
            "create" => &mut self.counts.creates,
            "update" => &mut self.counts.updates,
            _ => &mut self.counts.deletes,
        };
        *map.entry(doctype.into()).or_insert(0) += 1;
    }

    /// Names of every doctype, for diagnostics.
    pub(crate) fn doctypes(&self) -> BTreeSet<String> {
        self.metas.keys().cloned().collect()
    }
}

/// `base64(HMAC-SHA256(secret, body))`, the `X-Frappe-Webhook-Signature` header.
pub fn sign(secret: &str, body: &[u8]) -> String {
    use base64::Engine as _;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Replaces `{{ doc.<field> }}` (optionally `| tojson`) with the document's values.
fn fill_template(template: &str, doc: &Value) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let expr = rest[start + 2..start + end].trim();
        let (path, tojson) = match expr.split_once('|') {
            Some((p, filter)) => (p.trim(), filter.trim() == "tojson"),
            None => (expr, false),
        };
        let value = path
            .strip_prefix("doc.")
            .map_or(Value::Null, |f| doc.get(f).cloned().unwrap_or(Value::Null));
        if tojson {
            out.push_str(&value.to_string());
        } else {
            out.push_str(&text(&value));
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}
