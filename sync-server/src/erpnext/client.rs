//! A Frappe REST client that classifies what ERPNext answers.
//!
//! ERPNext answers a create with 200, a delete with 202, a stale `modified` and most validation
//! failures with 417, and some bad input with 500 (see `shared/specs`' ERPNEXT notes in
//! `ARCHITECTURE.md`). [`ErpError::retryable`] is the one place that decides what is worth
//! retrying: a 417 or a deterministic 500 is not, a timeout, a refused connection or a 502–504 is.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::settings::Secret;

/// What went wrong talking to ERPNext.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ErpError {
    #[error("ERPNext refused the API token (HTTP {0}); check erpnext.token")]
    Auth(u16),
    #[error("not found in ERPNext")]
    NotFound,
    #[error("ERPNext already has this record: {0}")]
    Duplicate(String),
    #[error("ERPNext's record changed since it was read")]
    Stale,
    /// The data itself is refused: retrying the same write cannot help.
    #[error("ERPNext refused the data ({exc_type}): {message}")]
    Invalid { exc_type: String, message: String },
    /// ERPNext failed; may be temporary.
    #[error("ERPNext failed (HTTP {status} {exc_type}): {message}")]
    Server {
        status: u16,
        exc_type: String,
        message: String,
    },
    #[error("ERPNext unreachable: {0}")]
    Transport(String),
}

/// 500s that a given body always produces (bad JSON, a bad date, a missing value): not worth a
/// retry. Anything else at 5xx may be ERPNext restarting, overloaded or deadlocked.
const DETERMINISTIC_500: &[&str] = &[
    "AttributeError",
    "TypeError",
    "ValueError",
    "KeyError",
    "JSONDecodeError",
    "DataError",
    "InvalidColumnName",
];

impl ErpError {
    /// Whether the same request may succeed later.
    pub fn retryable(&self) -> bool {
        match self {
            ErpError::Transport(_) => true,
            ErpError::Server {
                status, exc_type, ..
            } => *status >= 500 && !DETERMINISTIC_500.contains(&exc_type.as_str()),
            // A bad token is fixed by an admin; retry slowly rather than park every document.
            ErpError::Auth(_) => true,
            ErpError::NotFound
            | ErpError::Duplicate(_)
            | ErpError::Stale
            | ErpError::Invalid { .. } => false,
        }
    }
}

/// The first human message of a Frappe error body: `_server_messages` is a JSON string holding a
/// list of JSON strings, each an object with `message`.
pub fn server_message(body: &Value) -> Option<String> {
    let outer = body.get("_server_messages")?.as_str()?;
    let list: Vec<String> = serde_json::from_str(outer).ok()?;
    let first = list.first()?;
    let msg = serde_json::from_str::<Value>(first)
        .ok()
        .and_then(|m| m.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| first.clone());
    Some(strip_tags(&msg))
}

fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

fn classify(status: u16, body: &Value) -> ErpError {
    let exc_type = body
        .get("exc_type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let message = server_message(body)
        .or_else(|| {
            body.get("exception")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| format!("HTTP {status}"));
    match (status, exc_type.as_str()) {
        (401 | 403, _) => ErpError::Auth(status),
        (404, _) => ErpError::NotFound,
        (409, _) => ErpError::Duplicate(message),
        (417, "TimestampMismatchError") => ErpError::Stale,
        (400 | 417 | 422, _) => ErpError::Invalid { exc_type, message },
        (500, "OperationalError") if message.contains("Incorrect") => {
            ErpError::Invalid { exc_type, message }
        }
        _ => ErpError::Server {
            status,
            exc_type,
            message,
        },
    }
}

/// Where ERPNext is and how to authenticate.
#[derive(Debug, Clone)]
pub struct ErpConfig {
    pub url: String,
    /// `api_key:api_secret`.
    pub token: Secret,
    pub timeout: Duration,
    /// PEM certificates trusted besides the system's (an ERPNext behind a private CA).
    pub ca_pem: Option<Vec<u8>>,
}

/// The ERPNext REST client.
#[derive(Debug, Clone)]
pub struct ErpClient {
    http: reqwest::Client,
    base: String,
    auth: String,
}

impl ErpClient {
    pub fn new(config: &ErpConfig) -> Result<Self, ErpError> {
        crate::tls::install_crypto();
        let mut b = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(32);
        if let Some(pem) = &config.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ErpError::Transport(format!("the CA bundle is not readable: {e}")))?;
            b = b.tls_certs_merge(certs);
        }
        let http = b.build().map_err(|e| ErpError::Transport(e.to_string()))?;
        Ok(Self {
            http,
            base: config.url.trim_end_matches('/').to_owned(),
            auth: format!("token {}", config.token.expose()),
        })
    }

    fn resource(&self, doctype: &str, name: Option<&str>) -> String {
        let mut url = format!("{}/api/resource/{}", self.base, encode(doctype));
        if let Some(n) = name {
            url.push('/');
            url.push_str(&encode(n));
        }
        url
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, ErpError> {
        let resp = req
            .header("Authorization", &self.auth)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| ErpError::Transport(transport_message(&e)))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ErpError::Transport(transport_message(&e)))?;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(classify(status, &body))
        }
    }

    fn data(body: Value) -> Result<Value, ErpError> {
        match body {
            Value::Object(mut m) => m
                .remove("data")
                .ok_or_else(|| ErpError::Transport("answer without `data`".into())),
            _ => Err(ErpError::Transport("answer is not a JSON object".into())),
        }
    }

    /// `GET /api/method/ping`: reachable at all.
    pub async fn ping(&self) -> Result<(), ErpError> {
        self.send(self.http.get(format!("{}/api/method/ping", self.base)))
            .await
            .map(drop)
    }

    /// Who the token logs in as (checks the token).
    pub async fn logged_user(&self) -> Result<String, ErpError> {
        let body = self
            .send(self.http.get(format!(
                "{}/api/method/frappe.auth.get_logged_user",
                self.base
            )))
            .await?;
        Ok(body
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned())
    }

    /// One document, with its child tables.
    pub async fn get(&self, doctype: &str, name: &str) -> Result<Value, ErpError> {
        Self::data(
            self.send(self.http.get(self.resource(doctype, Some(name))))
                .await?,
        )
    }

    /// A page of a list. `filters` is a Frappe filter list; `order_by` is always sent (without it
    /// the order is by name, which no cursor can follow).
    pub async fn list(
        &self,
        doctype: &str,
        fields: &[&str],
        filters: &Value,
        order_by: &str,
        start: usize,
        page: usize,
    ) -> Result<Vec<Value>, ErpError> {
        let query = [
            ("fields", json!(fields).to_string()),
            ("filters", filters.to_string()),
            ("order_by", order_by.to_owned()),
            ("limit_start", start.to_string()),
            ("limit_page_length", page.to_string()),
        ];
        let body = self
            .send(self.http.get(self.resource(doctype, None)).query(&query))
            .await?;
        match Self::data(body)? {
            Value::Array(rows) => Ok(rows),
            _ => Err(ErpError::Transport("list answer is not an array".into())),
        }
    }

    /// The name of the record whose `field` equals `value`, if any.
    pub async fn find(
        &self,
        doctype: &str,
        field: &str,
        value: &str,
    ) -> Result<Option<String>, ErpError> {
        let rows = self
            .list(
                doctype,
                &["name"],
                &json!([[field, "=", value]]),
                "creation asc",
                0,
                2,
            )
            .await?;
        Ok(rows
            .first()
            .and_then(|r| r.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned))
    }

    /// `POST`: creates a record; ERPNext answers with the whole stored document.
    pub async fn insert(
        &self,
        doctype: &str,
        body: &Map<String, Value>,
    ) -> Result<Value, ErpError> {
        Self::data(
            self.send(self.http.post(self.resource(doctype, None)).json(body))
                .await?,
        )
    }

    /// `PUT`: a partial update. `modified` must be ERPNext's string exactly, or ERPNext answers
    /// [`ErpError::Stale`].
    pub async fn update(
        &self,
        doctype: &str,
        name: &str,
        modified: Option<&str>,
        body: &Map<String, Value>,
    ) -> Result<Value, ErpError> {
        let mut body = body.clone();
        if let Some(m) = modified {
            body.insert("modified".into(), Value::String(m.to_owned()));
        }
        Self::data(
            self.send(
                self.http
                    .put(self.resource(doctype, Some(name)))
                    .json(&body),
            )
            .await?,
        )
    }

    pub async fn delete(&self, doctype: &str, name: &str) -> Result<(), ErpError> {
        self.send(self.http.delete(self.resource(doctype, Some(name))))
            .await
            .map(drop)
    }
}

fn transport_message(e: &reqwest::Error) -> String {
    if let Some(tls) = tls_cause(e) {
        format!("ERPNext's certificate is not trusted, nothing was sent: {tls}")
    } else if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection refused or unreachable".into()
    } else {
        // Never the URL (its query may hold filters with customer data), just the kind.
        let text = e.to_string();
        match e.url() {
            Some(u) => format!("request failed: {}", text.replace(u.as_str(), "<url>")),
            None => format!("request failed: {text}"),
        }
    }
}

/// The TLS refusal behind a failed request, if that is what it was.
fn tls_cause(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(t) = c.downcast_ref::<rustls::Error>() {
            return Some(t.to_string());
        }
        if let Some(t) = c
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return Some(t.to_string());
        }
        cur = c.source();
    }
    // The connector wraps rustls' error in types of its own: read its words too.
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cur = c.source();
    }
    [
        "invalid peer certificate",
        "peer is incompatible",
        "received fatal alert",
    ]
    .iter()
    .find_map(|m| text.find(m).map(|at| text[at..].to_owned()))
}

/// Percent-encodes a path segment (doctype and record names hold spaces and more).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_as_the_recordings_show() {
        let stale = json!({"exc_type": "TimestampMismatchError"});
        assert_eq!(classify(417, &stale), ErpError::Stale);
        let msgs = json!(["{\"message\": \"Value missing for Dispatch Job: <b>Customer</b>\"}"]);
        let mandatory = json!({
            "exc_type": "MandatoryError",
            "_server_messages": msgs.to_string(),
        });
        match classify(417, &mandatory) {
            ErpError::Invalid { exc_type, message } => {
                assert_eq!(exc_type, "MandatoryError");
                assert_eq!(message, "Value missing for Dispatch Job: Customer");
            }
            other => panic!("{other:?}"),
        }
        let bad_json = json!({"exc_type": "JSONDecodeError"});
        assert!(!classify(500, &bad_json).retryable());
        let bad_date = json!({"exc_type": "OperationalError", "exception": "(1292, \"Incorrect date value: '2026-13-45'\")"});
        assert!(!classify(500, &bad_date).retryable());
        let deadlock = json!({"exc_type": "QueryDeadlockError"});
        assert!(classify(500, &deadlock).retryable());
        assert!(classify(502, &Value::Null).retryable());
        assert_eq!(classify(404, &Value::Null), ErpError::NotFound);
        assert!(!classify(409, &Value::Null).retryable());
    }

    #[test]
    fn names_are_encoded_as_one_path_segment() {
        assert_eq!(encode("Dispatch Job"), "Dispatch%20Job");
        assert_eq!(encode("A/B é"), "A%2FB%20%C3%A9");
    }
}
