//! List queries: `fields`, `filters`, `or_filters`, `order_by`, paging, `as_dict`.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::error::ApiError;
use super::meta::Meta;
use super::site::{Doc, Site, is_empty, parse_datetime, text};

/// The operators Frappe accepts, in the order its error message lists them.
const OPERATORS: [&str; 21] = [
    "previous",
    "is",
    "timespan",
    ">=",
    "in",
    "like",
    "not in",
    "fiscal year",
    "descendants of",
    "descendants of (inclusive)",
    "=",
    "not descendants of",
    "!=",
    "ancestors of",
    "next",
    "not ancestors of",
    ">",
    "<=",
    "not like",
    "<",
    "between",
];

/// One condition; `child` names the child doctype for `[doctype, field, op, value]` filters.
#[derive(Debug, Clone)]
struct Cond {
    child: Option<String>,
    field: String,
    op: String,
    value: Value,
}

/// A selected column: the child doctype it comes from (if any), its field, its output key.
#[derive(Debug, Clone)]
struct Column {
    child: Option<String>,
    field: String,
    key: String,
}

/// A parameter that is JSON either directly (a POST body) or as a string (a query string).
fn json_param(v: Option<&Value>) -> Result<Option<Value>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => serde_json::from_str(s)
            .map(Some)
            .map_err(|e| ApiError::json_decode(&e)),
        Some(other) => Ok(Some(other.clone())),
    }
}

fn int_param(v: Option<&Value>) -> Option<usize> {
    match v? {
        Value::Number(n) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn unknown_column(field: &str) -> ApiError {
    ApiError::operational(1054, &format!("Unknown column '{field}' in 'where clause'"))
}

/// Strips backticks and a `tabX.` qualifier: returns (table doctype, field).
fn split_column(expr: &str) -> (Option<String>, String) {
    let e = expr.trim();
    if let Some((table, field)) = e.rsplit_once('.') {
        let table = table.trim().trim_matches('`');
        let table = table.strip_prefix("tab").unwrap_or(table);
        return (
            Some(table.to_string()),
            field.trim().trim_matches('`').to_string(),
        );
    }
    (None, e.trim_matches('`').to_string())
}

impl Site {
    fn parse_conds(&self, meta: &Meta, v: Option<&Value>) -> Result<Vec<Cond>, ApiError> {
        let Some(filters) = json_param(v)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut push = |child: Option<String>,
                        field: String,
                        op: &str,
                        value: Value|
         -> Result<(), ApiError> {
            let op = op.trim().to_lowercase();
            if !OPERATORS.contains(&op.as_str()) {
                return Err(ApiError::validation(format!(
                    "Operator must be one of {}",
                    OPERATORS.join(", ")
                )));
            }
            let child = child.filter(|c| *c != meta.name);
            let known = match &child {
                Some(c) => self.metas.get(c).is_some_and(|m| m.has_column(&field)),
                None => meta.has_column(&field),
            };
            if !known {
                return Err(unknown_column(&field));
            }
            out.push(Cond {
                child,
                field,
                op,
                value,
            });
            Ok(())
        };
        match filters {
            Value::Object(m) => {
                for (field, value) in m {
                    let (table, field) = split_column(&field);
                    match value {
                        Value::Array(pair) if pair.len() == 2 && pair[0].is_string() => {
                            push(
                                table,
                                field,
                                pair[0].as_str().unwrap_or("="),
                                pair[1].clone(),
                            )?;
                        }
                        other => push(table, field, "=", other)?,
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    let Value::Array(parts) = item else {
                        return Err(ApiError::validation(format!("Invalid filter: {item}")));
                    };
                    let s = |i: usize| parts.get(i).map(text).unwrap_or_default();
                    match parts.len() {
                        2 => {
                            let (table, field) = split_column(&s(0));
                            push(table, field, "=", parts[1].clone())?;
                        }
                        3 => {
                            let (table, field) = split_column(&s(0));
                            push(table, field, &s(1), parts[2].clone())?;
                        }
                        4 | 5 => push(Some(s(0)), s(1), &s(2), parts[3].clone())?,
                        _ => {
                            return Err(ApiError::validation(format!(
                                "Invalid filter: {}",
                                Value::Array(parts)
                            )));
                        }
                    }
                }
            }
            other => return Err(ApiError::validation(format!("Invalid filters: {other}"))),
        }
        Ok(out)
    }

    fn fieldtype_of(&self, doctype: &str, field: &str) -> String {
        match field {
            "creation" | "modified" => "Datetime".into(),
            _ => self
                .metas
                .get(doctype)
                .and_then(|m| m.field(field))
                .map_or_else(|| "Data".into(), |f| f.fieldtype.clone()),
        }
    }

    fn matches(&self, doctype: &str, row: &Doc, cond: &Cond) -> bool {
        let fieldtype = self.fieldtype_of(doctype, &cond.field);
        let actual = row.get(&cond.field).cloned().unwrap_or(Value::Null);
        let norm = |v: &Value, end_of_day: bool| -> Value {
            match (fieldtype.as_str(), v) {
                ("Datetime", Value::String(s)) => parse_datetime(s).map_or_else(
                    || v.clone(),
                    |t| {
                        let t = if end_of_day && s.trim().len() == 10 {
                            t + chrono::Duration::microseconds(86_400_000_000 - 1)
                        } else {
                            t
                        };
                        Value::String(super::site::fmt_ts(t))
                    },
                ),
                _ => v.clone(),
            }
        };
        let list = |v: &Value| -> Vec<Value> {
            match v {
                Value::Array(a) => a.clone(),
                Value::String(s) => s
                    .split(',')
                    .map(|x| Value::String(x.trim().to_string()))
                    .collect(),
                other => vec![other.clone()],
            }
        };
        match cond.op.as_str() {
            "=" => compare(&actual, &norm(&cond.value, false)) == Ordering::Equal,
            "!=" => compare(&actual, &norm(&cond.value, false)) != Ordering::Equal,
            ">" => {
                !actual.is_null()
                    && compare(&actual, &norm(&cond.value, false)) == Ordering::Greater
            }
            ">=" => {
                !actual.is_null() && compare(&actual, &norm(&cond.value, false)) != Ordering::Less
            }
            "<" => {
                !actual.is_null() && compare(&actual, &norm(&cond.value, true)) == Ordering::Less
            }
            "<=" => {
                !actual.is_null() && compare(&actual, &norm(&cond.value, true)) != Ordering::Greater
            }
            "like" => like(&text_or_empty(&actual), &text(&cond.value)),
            "not like" => !like(&text_or_empty(&actual), &text(&cond.value)),
            "in" => list(&cond.value)
                .iter()
                .any(|v| compare(&actual, v) == Ordering::Equal),
            "not in" => !list(&cond.value)
                .iter()
                .any(|v| compare(&actual, v) == Ordering::Equal),
            "between" => {
                let bounds = list(&cond.value);
                let (Some(lo), Some(hi)) = (bounds.first(), bounds.get(1)) else {
                    return false;
                };
                !actual.is_null()
                    && compare(&actual, &norm(lo, false)) != Ordering::Less
                    && compare(&actual, &norm(hi, true)) != Ordering::Greater
            }
            "is" => {
                let set = !is_empty(Some(&actual));
                match text(&cond.value).as_str() {
                    "set" => set,
                    _ => !set,
                }
            }
            _ => false,
        }
    }

    /// Whether a document passes all conditions (child conditions: some row passes all of its group).
    fn passes(&self, meta: &Meta, doc: &Doc, conds: &[Cond]) -> bool {
        let mut groups: Vec<(&str, Vec<&Cond>)> = Vec::new();
        for c in conds {
            match &c.child {
                None => {
                    if !self.matches(&meta.name, doc, c) {
                        return false;
                    }
                }
                Some(child) => match groups.iter_mut().find(|(n, _)| n == child) {
                    Some((_, g)) => g.push(c),
                    None => groups.push((child, vec![c])),
                },
            }
        }
        groups.iter().all(|(child, group)| {
            self.child_rows(meta, doc, child)
                .iter()
                .any(|row| group.iter().all(|c| self.matches(child, row, c)))
        })
    }

    fn passes_any(&self, meta: &Meta, doc: &Doc, conds: &[Cond]) -> bool {
        conds.is_empty()
            || conds
                .iter()
                .any(|c| self.passes(meta, doc, std::slice::from_ref(c)))
    }

    fn child_rows(&self, meta: &Meta, doc: &Doc, child: &str) -> Vec<Doc> {
        meta.tables()
            .filter(|t| t.options == child)
            .filter_map(|t| doc.get(&t.fieldname).and_then(Value::as_array))
            .flatten()
            .filter_map(Value::as_object)
            .cloned()
            .collect()
    }

    fn parse_columns(&self, meta: &Meta, v: Option<&Value>) -> Result<Vec<Column>, ApiError> {
        let fields = match json_param(v) {
            Ok(Some(Value::Array(a))) => a,
            Ok(Some(Value::String(s))) => vec![Value::String(s)],
            Ok(_) => vec![Value::String("name".into())],
            Err(_) => match v {
                Some(Value::String(s)) => s
                    .split(',')
                    .map(|x| Value::String(x.trim().into()))
                    .collect(),
                _ => vec![Value::String("name".into())],
            },
        };
        let mut out = Vec::new();
        for f in fields {
            let spec = text(&f);
            let lower = spec.to_lowercase();
            let (expr, alias) = match lower.find(" as ") {
                Some(i) => (
                    spec[..i].trim().to_string(),
                    Some(spec[i + 4..].trim().trim_matches('`').to_string()),
                ),
                None => (spec.trim().to_string(), None),
            };
            if expr == "*" {
                out.extend(meta.columns().into_iter().map(|c| Column {
                    child: None,
                    key: c.clone(),
                    field: c,
                }));
                continue;
            }
            let (table, field) = split_column(&expr);
            let child = table.filter(|t| *t != meta.name);
            let known = match &child {
                Some(c) => self.metas.get(c).is_some_and(|m| m.has_column(&field)),
                None => meta.has_column(&field),
            };
            if !known {
                return Err(ApiError::thrown(
                    "DataError",
                    format!("Field not permitted in query: {spec}"),
                ));
            }
            out.push(Column {
                child,
                key: alias.unwrap_or_else(|| field.clone()),
                field,
            });
        }
        Ok(out)
    }

    /// The sort keys. Without `order_by` the real site applies no effective order: MariaDB
    /// returns rows in the order of the index it reads, the primary key (name) unless an
    /// `=`/`in` filter on an indexed Link column makes it walk that column's index. The
    /// double does the same, so a client that forgets `order_by` sees the same surprise.
    fn parse_order(
        &self,
        meta: &Meta,
        v: Option<&Value>,
        conds: &[Cond],
    ) -> Result<Vec<(String, bool)>, ApiError> {
        let spec = v.map(text).filter(|s| !s.trim().is_empty() && s != "None");
        let Some(spec) = spec else {
            let mut keys: Vec<(String, bool)> = conds
                .iter()
                .filter(|c| c.child.is_none() && matches!(c.op.as_str(), "=" | "in"))
                .filter(|c| meta.field(&c.field).is_some_and(|f| f.fieldtype == "Link"))
                .take(1)
                .map(|c| (c.field.clone(), false))
                .collect();
            keys.push(("name".into(), false));
            return Ok(keys);
        };
        let mut out = Vec::new();
        for part in spec.split(',') {
            let mut words = part.split_whitespace();
            let Some(col) = words.next() else { continue };
            let desc = words.next().is_some_and(|w| w.eq_ignore_ascii_case("desc"));
            let (_, field) = split_column(col);
            if !meta.has_column(&field) {
                return Err(ApiError::operational(
                    1054,
                    &format!("Unknown column '{field}' in 'order clause'"),
                ));
            }
            out.push((field, desc));
        }
        Ok(out)
    }

    /// Runs a list query; `params` holds the request's parameters (strings or JSON values).
    pub(crate) fn list(
        &self,
        doctype: &str,
        params: &Map<String, Value>,
    ) -> Result<Value, ApiError> {
        let meta = self.meta(doctype)?;
        let columns = self.parse_columns(meta, params.get("fields"))?;
        let conds = self.parse_conds(meta, params.get("filters"))?;
        let or_conds = self.parse_conds(meta, params.get("or_filters"))?;
        let order = self.parse_order(meta, params.get("order_by"), &conds)?;
        let start =
            int_param(params.get("limit_start").or_else(|| params.get("start"))).unwrap_or(0);
        let page = int_param(
            params
                .get("limit_page_length")
                .or_else(|| params.get("limit"))
                .or_else(|| params.get("page_length")),
        )
        .unwrap_or(20);
        let as_dict = match params.get("as_dict") {
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_f64() != Some(0.0),
            Some(Value::String(s)) => !matches!(s.trim().to_lowercase().as_str(), "false" | "0"),
            _ => true,
        };
        let mut docs: Vec<&Doc> = self
            .all(doctype)
            .into_iter()
            .filter(|d| self.passes(meta, d, &conds) && self.passes_any(meta, d, &or_conds))
            .collect();
        docs.sort_by(|a, b| {
            order
                .iter()
                .map(|(f, desc)| {
                    let o = compare(
                        a.get(f).unwrap_or(&Value::Null),
                        b.get(f).unwrap_or(&Value::Null),
                    );
                    if *desc { o.reverse() } else { o }
                })
                .find(|o| *o != Ordering::Equal)
                .unwrap_or(Ordering::Equal)
        });
        let child_of = columns.iter().find_map(|c| c.child.clone());
        let mut rows = Vec::new();
        for doc in docs {
            let children = match &child_of {
                Some(child) => {
                    let rows = self.child_rows(meta, doc, child);
                    if rows.is_empty() {
                        vec![None]
                    } else {
                        rows.into_iter().map(Some).collect()
                    }
                }
                None => vec![None],
            };
            for child in children {
                let pick = |c: &Column| -> Value {
                    match &c.child {
                        Some(_) => child
                            .as_ref()
                            .and_then(|r| r.get(&c.field))
                            .cloned()
                            .unwrap_or(Value::Null),
                        None => doc.get(&c.field).cloned().unwrap_or(Value::Null),
                    }
                };
                if as_dict {
                    let mut m = Map::new();
                    for c in &columns {
                        m.insert(c.key.clone(), pick(c));
                    }
                    rows.push(Value::Object(m));
                } else {
                    rows.push(Value::Array(columns.iter().map(pick).collect()));
                }
            }
        }
        let rows: Vec<Value> = rows
            .into_iter()
            .skip(start)
            .take(if page == 0 { usize::MAX } else { page })
            .collect();
        Ok(Value::Array(rows))
    }

    /// `frappe.client.get_count`.
    pub(crate) fn count_matching(
        &self,
        doctype: &str,
        params: &Map<String, Value>,
    ) -> Result<usize, ApiError> {
        let meta = self.meta(doctype)?;
        let conds = self.parse_conds(meta, params.get("filters"))?;
        let or_conds = self.parse_conds(meta, params.get("or_filters"))?;
        Ok(self
            .all(doctype)
            .into_iter()
            .filter(|d| self.passes(meta, d, &conds) && self.passes_any(meta, d, &or_conds))
            .count())
    }

    /// The name of the first document matching `filters` (a name, a dict or a list).
    pub(crate) fn find_one(
        &self,
        doctype: &str,
        filters: Option<&Value>,
    ) -> Result<Option<String>, ApiError> {
        let meta = self.meta(doctype)?;
        if let Some(Value::String(s)) = filters
            && !s.trim_start().starts_with(['[', '{'])
        {
            return Ok(self.exists(doctype, s).then(|| s.clone()));
        }
        let conds = self.parse_conds(meta, filters)?;
        Ok(self
            .all(doctype)
            .into_iter()
            .find(|d| self.passes(meta, d, &conds))
            .and_then(|d| d.get("name").and_then(Value::as_str).map(str::to_string)))
    }
}

fn text_or_empty(v: &Value) -> String {
    if v.is_null() { String::new() } else { text(v) }
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Compares like MariaDB would: numerically when the column is a number, else as
/// case-insensitive text; NULL reads as the empty string.
fn compare(a: &Value, b: &Value) -> Ordering {
    if (a.is_number() || b.is_number())
        && let (Some(x), Some(y)) = (as_number(a), as_number(b))
    {
        return x.partial_cmp(&y).unwrap_or(Ordering::Equal);
    }
    let (x, y) = (text_or_empty(a), text_or_empty(b));
    x.to_lowercase().cmp(&y.to_lowercase())
}

/// SQL `LIKE` with `%` and `_`, case-insensitive.
fn like(value: &str, pattern: &str) -> bool {
    fn go(v: &[char], p: &[char]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some(('%', rest)) => (0..=v.len()).any(|i| go(&v[i..], rest)),
            Some(('_', rest)) => !v.is_empty() && go(&v[1..], rest),
            Some((c, rest)) => v.first() == Some(c) && go(&v[1..], rest),
        }
    }
    let v: Vec<char> = value.to_lowercase().chars().collect();
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    go(&v, &p)
}
