//! Frappe's error envelope: `exc_type`, `exception`, a traceback in `exc` and
//! `_server_messages` (a JSON string holding a list of JSON strings).

use serde_json::{Map, Value, json};

/// One message the UI would show, as Frappe puts it in `_server_messages`.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub(crate) text: String,
    pub(crate) title: &'static str,
    pub(crate) indicator: Option<&'static str>,
    pub(crate) alert: bool,
}

impl Message {
    /// A red message raised with an exception.
    pub(crate) fn red(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            title: "Message",
            indicator: Some("red"),
            alert: false,
        }
    }

    /// A message without indicator (mandatory and unique errors look like this).
    pub(crate) fn plain(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            title: "Message",
            indicator: None,
            alert: false,
        }
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("message".into(), Value::String(self.text.clone()));
        m.insert("title".into(), Value::String(self.title.into()));
        if let Some(indicator) = self.indicator {
            m.insert("indicator".into(), Value::String(indicator.into()));
        }
        if self.alert {
            m.insert("alert".into(), json!(1));
        } else if self.indicator == Some("red") && self.title == "Message" {
            m.insert("raise_exception".into(), json!(1));
        }
        Value::Object(m)
    }
}

/// Encodes messages the way Frappe does: a JSON list of JSON-encoded objects, itself a string.
pub(crate) fn server_messages(messages: &[Message]) -> Value {
    let inner: Vec<Value> = messages
        .iter()
        .map(|m| Value::String(m.to_json().to_string()))
        .collect();
    Value::String(Value::Array(inner).to_string())
}

/// A failed request, rendered as Frappe's JSON error body.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: u16,
    pub(crate) exc_type: String,
    /// The `exception` line; `None` leaves out `exception` and `exc`, as Frappe's 404s do.
    pub(crate) exception: Option<String>,
    pub(crate) messages: Vec<Message>,
    pub(crate) extra: Vec<(&'static str, Value)>,
}

impl ApiError {
    /// An error raised with `frappe.throw`: 417 unless told otherwise, one red message.
    pub(crate) fn thrown(exc_type: &str, text: impl Into<String>) -> Self {
        let text = text.into();
        Self {
            status: 417,
            exc_type: exc_type.into(),
            exception: Some(format!("frappe.exceptions.{exc_type}: {text}")),
            messages: vec![Message::red(text)],
            extra: Vec::new(),
        }
    }

    pub(crate) fn validation(text: impl Into<String>) -> Self {
        Self::thrown("ValidationError", text)
    }

    /// 404 for a missing document (or doctype, with doctype `DocType`).
    pub(crate) fn not_found(doctype: &str, name: &str) -> Self {
        Self {
            status: 404,
            exc_type: "DoesNotExistError".into(),
            exception: None,
            messages: vec![Message::red(format!("{doctype} {name} not found"))],
            extra: Vec::new(),
        }
    }

    /// 404 without any message, as a DELETE of a missing document answers.
    pub(crate) fn not_found_bare() -> Self {
        Self {
            status: 404,
            exc_type: "DoesNotExistError".into(),
            exception: None,
            messages: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// An unexpected server-side failure (500) with only `exception` and a traceback.
    pub(crate) fn internal(exc_type: &str, exception: impl Into<String>) -> Self {
        Self {
            status: 500,
            exc_type: exc_type.into(),
            exception: Some(exception.into()),
            messages: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// A database error, which Frappe lets through as a 500.
    pub(crate) fn operational(code: u32, text: &str) -> Self {
        Self::internal(
            "OperationalError",
            format!(
                "pymysql.err.OperationalError: ({code}, {})",
                Value::String(text.into())
            ),
        )
    }

    pub(crate) fn json_decode(err: &serde_json::Error) -> Self {
        Self::internal(
            "JSONDecodeError",
            format!(
                "json.decoder.JSONDecodeError: {err}: line {} column {}",
                err.line(),
                err.column()
            ),
        )
    }

    /// 409 for an insert whose name already exists.
    pub(crate) fn duplicate(doctype: &str, name: &str) -> Self {
        Self {
            status: 409,
            exc_type: "DuplicateEntryError".into(),
            exception: Some(format!(
                "frappe.exceptions.DuplicateEntryError: ('{doctype}', '{name}', IntegrityError(1062, \"Duplicate entry '{name}' for key 'PRIMARY'\"))"
            )),
            messages: vec![Message {
                text: format!("{doctype} <strong>{name}</strong> already exists"),
                title: "Duplicate Name",
                indicator: Some("red"),
                alert: false,
            }],
            extra: Vec::new(),
        }
    }

    /// 417 for missing mandatory values; `missing` holds (fieldname, label).
    pub(crate) fn mandatory(doctype: &str, name: &str, missing: &[(String, String)]) -> Self {
        let fields: Vec<&str> = missing.iter().map(|(f, _)| f.as_str()).collect();
        Self {
            status: 417,
            exc_type: "MandatoryError".into(),
            exception: Some(format!(
                "frappe.exceptions.MandatoryError: [{doctype}, {name}]: {}",
                fields.join(", ")
            )),
            messages: missing
                .iter()
                .map(|(_, label)| {
                    Message::plain(format!("Error: Value missing for {doctype}: {label}"))
                })
                .collect(),
            extra: Vec::new(),
        }
    }

    pub(crate) fn authentication() -> Self {
        Self {
            status: 401,
            exc_type: "AuthenticationError".into(),
            exception: Some("frappe.exceptions.AuthenticationError".into()),
            messages: Vec::new(),
            extra: Vec::new(),
        }
    }

    /// 403 for a Guest reading a doctype.
    pub(crate) fn guest_resource(doctype: &str) -> Self {
        Self {
            status: 403,
            exc_type: "PermissionError".into(),
            exception: Some("frappe.exceptions.PermissionError".into()),
            messages: vec![Message {
                text: format!(
                    "User <strong>Guest</strong> does not have doctype access via role permission for document <strong>{doctype}</strong>"
                ),
                title: "Message",
                indicator: None,
                alert: false,
            }],
            extra: vec![(
                "_error_message",
                Value::String(format!("No permission for {doctype}")),
            )],
        }
    }

    /// 403 for a Guest calling a method that needs a login.
    pub(crate) fn guest_method(method: &str) -> Self {
        let text = format!(
            "<details><summary>You are not permitted to access this resource. Login to access</summary>Function <strong>{method}</strong> is not whitelisted.</details>"
        );
        Self {
            status: 403,
            exc_type: "PermissionError".into(),
            exception: Some(format!("frappe.exceptions.PermissionError: {text}")),
            messages: vec![Message {
                text,
                title: "Method Not Allowed",
                indicator: Some("red"),
                alert: false,
            }],
            extra: Vec::new(),
        }
    }

    /// The JSON body Frappe sends for this error.
    pub(crate) fn body(&self) -> Value {
        let mut m = Map::new();
        if let Some(exception) = &self.exception {
            m.insert("exception".into(), Value::String(exception.clone()));
        }
        m.insert("exc_type".into(), Value::String(self.exc_type.clone()));
        if let Some(exception) = &self.exception {
            let trace = format!(
                "Traceback (most recent call last):\n  File \"tests/src/frappe.rs\", in handle\n    (raised by the Frappe test double)\n{exception}\n"
            );
            m.insert("exc".into(), Value::String(json!([trace]).to_string()));
        }
        if !self.messages.is_empty() {
            m.insert("_server_messages".into(), server_messages(&self.messages));
        }
        for (k, v) in &self.extra {
            m.insert((*k).into(), v.clone());
        }
        Value::Object(m)
    }

    /// A one-line summary for the office-side API (`exc_type: message`).
    pub(crate) fn summary(&self) -> String {
        let detail = self
            .messages
            .first()
            .map(|m| m.text.clone())
            .or_else(|| self.exception.clone())
            .unwrap_or_default();
        format!("{}: {detail}", self.exc_type)
    }
}
