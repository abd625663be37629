//! Reading photos with Gemini: up to three barcodes, up to five labelled pieces of equipment, or
//! a supplier's invoice, each as JSON constrained by a `responseSchema` and then read into typed
//! values.
//!
//! * The port is [`VisionModel`]; [`GeminiClient`] is `generateContent` over HTTP (the key in
//!   `x-goog-api-key`, the image inline).
//! * [`parse_answer`] and [`classify`] are the one place that reads Gemini's answers: text parts
//!   that are not thoughts are joined and parsed; a blocked prompt, a safety stop or a truncated
//!   answer is a clear failure, never a guess. 429 (waiting what its `RetryInfo` asks), 500, 503
//!   and 504 are retried with backoff within a time budget; 400, 403 and 404 are not.
//! * A per-day cap on calls (settings) is counted in the hub's database before each call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What to read from a photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Barcodes,
    Equipment,
    Invoice,
}

impl Task {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "barcodes" => Self::Barcodes,
            "equipment" => Self::Equipment,
            "invoice" => Self::Invoice,
            _ => return None,
        })
    }

    fn prompt(self) -> &'static str {
        match self {
            Self::Barcodes => {
                "Read the barcodes and QR codes in this photo. Return up to 3, each with its value exactly as encoded and its symbology. Return an empty list if none is readable."
            }
            Self::Equipment => {
                "Read the equipment labels in this photo (modems, ONTs, routers, Wi-Fi units). Return up to 5 items, each with brand, model, serial number, MAC address and GPON serial as printed, and your confidence from 0 to 1. Use null for what is not visible; never invent a value."
            }
            Self::Invoice => {
                "Read this supplier invoice. Return the supplier's name, the invoice date as YYYY-MM-DD, the currency code, the subtotal before tax, each tax line (name, rate in percent, amount) and the total. Use null for what is not visible."
            }
        }
    }

    /// The `responseSchema` (OpenAPI subset) Gemini must answer in.
    pub fn schema(self) -> Value {
        let text = json!({"type": "STRING", "nullable": true});
        let number = json!({"type": "NUMBER", "nullable": true});
        match self {
            Self::Barcodes => json!({
                "type": "OBJECT",
                "properties": {
                    "barcodes": {
                        "type": "ARRAY",
                        "maxItems": 3,
                        "items": {
                            "type": "OBJECT",
                            "properties": {
                                "value": {"type": "STRING"},
                                "symbology": {"type": "STRING", "enum":
                                    ["CODE128", "CODE39", "EAN13", "UPCA", "QR", "DATAMATRIX", "OTHER"]}
                            },
                            "required": ["value", "symbology"],
                            "propertyOrdering": ["value", "symbology"]
                        }
                    }
                },
                "required": ["barcodes"]
            }),
            Self::Equipment => json!({
                "type": "OBJECT",
                "properties": {
                    "items": {
                        "type": "ARRAY",
                        "maxItems": 5,
                        "items": {
                            "type": "OBJECT",
                            "properties": {
                                "brand": text, "model": text, "serial_number": text,
                                "mac_address": text, "gpon_sn": text,
                                "confidence": {"type": "NUMBER"}
                            },
                            "required": ["confidence"],
                            "propertyOrdering": ["brand", "model", "serial_number", "mac_address", "gpon_sn", "confidence"]
                        }
                    }
                },
                "required": ["items"]
            }),
            Self::Invoice => json!({
                "type": "OBJECT",
                "properties": {
                    "supplier": text, "date": text, "currency": text,
                    "subtotal": number, "total": number,
                    "taxes": {
                        "type": "ARRAY",
                        "items": {
                            "type": "OBJECT",
                            "properties": {"name": text, "rate": number, "amount": number},
                            "required": ["amount"]
                        }
                    }
                },
                "required": ["taxes"],
                "propertyOrdering": ["supplier", "date", "currency", "subtotal", "taxes", "total"]
            }),
        }
    }
}

/// One code read from a photo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Barcode {
    pub value: String,
    pub symbology: String,
}

/// One labelled piece of equipment read from a photo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelItem {
    pub brand: Option<String>,
    pub model: Option<String>,
    pub serial_number: Option<String>,
    pub mac_address: Option<String>,
    pub gpon_sn: Option<String>,
    pub confidence: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaxLine {
    pub name: Option<String>,
    pub rate: Option<f64>,
    pub amount: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvoiceRead {
    pub supplier: Option<String>,
    pub date: Option<String>,
    pub currency: Option<String>,
    pub subtotal: Option<f64>,
    pub taxes: Vec<TaxLine>,
    pub total: Option<f64>,
}

/// What a photo held, typed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum Reading {
    Barcodes { barcodes: Vec<Barcode> },
    Equipment { items: Vec<LabelItem> },
    Invoice(InvoiceRead),
}

/// Reads the model's JSON into the task's typed answer (lists held to their bounds).
pub fn reading(task: Task, answer: Value) -> Result<Reading, VisionError> {
    let malformed =
        |e: serde_json::Error| VisionError::Malformed(format!("the answer does not fit: {e}"));
    Ok(match task {
        Task::Barcodes => {
            #[derive(Deserialize)]
            struct A {
                barcodes: Vec<Barcode>,
            }
            let mut a: A = serde_json::from_value(answer).map_err(malformed)?;
            a.barcodes.retain(|b| !b.value.trim().is_empty());
            a.barcodes.truncate(3);
            Reading::Barcodes {
                barcodes: a.barcodes,
            }
        }
        Task::Equipment => {
            #[derive(Deserialize)]
            struct A {
                items: Vec<LabelItem>,
            }
            let mut a: A = serde_json::from_value(answer).map_err(malformed)?;
            a.items.truncate(5);
            for i in &mut a.items {
                i.confidence = i.confidence.clamp(0.0, 1.0);
            }
            Reading::Equipment { items: a.items }
        }
        Task::Invoice => Reading::Invoice(serde_json::from_value(answer).map_err(malformed)?),
    })
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VisionError {
    #[error("the model refused to read this photo ({0})")]
    Blocked(String),
    #[error("the model's answer was cut short; try a closer photo")]
    Truncated,
    #[error("the model's answer is not usable: {0}")]
    Malformed(String),
    #[error("Gemini refused the request ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("Gemini is unavailable: {0}")]
    Unavailable(String),
    #[error("today's {cap} photo readings are used up; try again tomorrow")]
    CapReached { cap: u32 },
    #[error("the photo is not usable: {0}")]
    BadImage(String),
}

/// One call's failure: final, or worth another try (after what Gemini asked, if it did).
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    Final(VisionError),
    Retry {
        after: Option<Duration>,
        message: String,
    },
}

/// Reads a `generateContent` answer: the JSON the model wrote, or why there is none.
pub fn parse_answer(body: &Value) -> Result<Value, VisionError> {
    let Some(candidate) = body
        .get("candidates")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
    else {
        let reason = body
            .pointer("/promptFeedback/blockReason")
            .and_then(Value::as_str)
            .unwrap_or("no answer");
        return Err(VisionError::Blocked(reason.to_owned()));
    };
    match candidate.get("finishReason").and_then(Value::as_str) {
        Some("STOP") | None => {}
        Some("MAX_TOKENS") => return Err(VisionError::Truncated),
        Some(other) => return Err(VisionError::Blocked(other.to_owned())),
    }
    let text: String = candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect();
    serde_json::from_str(&text).map_err(|e| VisionError::Malformed(format!("not JSON: {e}")))
}

/// Gemini's error answers: what is retried, and after how long if it says.
pub fn classify(status: u16, body: &Value) -> Attempt {
    let message = body
        .pointer("/error/message")
        .and_then(Value::as_str)
        .map_or_else(|| format!("HTTP {status}"), str::to_owned);
    match status {
        429 | 500 | 503 | 504 => Attempt::Retry {
            after: retry_info(body),
            message,
        },
        _ => Attempt::Final(VisionError::Refused { status, message }),
    }
}

/// `RetryInfo.retryDelay` (`"42s"`, `"1.5s"`) from an error's details.
fn retry_info(body: &Value) -> Option<Duration> {
    body.pointer("/error/details")?
        .as_array()?
        .iter()
        .filter(|d| {
            d.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
        })
        .find_map(|d| d.get("retryDelay").and_then(Value::as_str))
        .and_then(|s| s.strip_suffix('s'))
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// Where photos are read.
pub trait VisionModel: Send + Sync {
    fn generate<'a>(
        &'a self,
        image: &'a [u8],
        mime: &'a str,
        prompt: &'a str,
        schema: Value,
    ) -> futures_util::future::BoxFuture<'a, Result<Value, Attempt>>;
}

/// Gemini's `generateContent`.
pub struct GeminiClient {
    http: reqwest::Client,
    url: String,
    key: crate::settings::Secret,
}

impl std::fmt::Debug for GeminiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiClient")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl GeminiClient {
    pub fn new(settings: &crate::settings::GeminiSettings) -> Result<Self, reqwest::Error> {
        crate::tls::install_crypto();
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(settings.timeout_s.max(1)))
                .connect_timeout(Duration::from_secs(10))
                .build()?,
            url: format!(
                "{}/v1beta/models/{}:generateContent",
                settings.api_url.trim_end_matches('/'),
                settings.model
            ),
            key: settings.api_key.clone(),
        })
    }
}

impl VisionModel for GeminiClient {
    fn generate<'a>(
        &'a self,
        image: &'a [u8],
        mime: &'a str,
        prompt: &'a str,
        schema: Value,
    ) -> futures_util::future::BoxFuture<'a, Result<Value, Attempt>> {
        use base64::Engine as _;
        Box::pin(async move {
            let body = json!({
                "contents": [{"role": "user", "parts": [
                    {"inline_data": {"mime_type": mime,
                        "data": base64::engine::general_purpose::STANDARD.encode(image)}},
                    {"text": prompt}
                ]}],
                "generationConfig": {
                    "responseMimeType": "application/json",
                    "temperature": 0,
                    "responseSchema": schema
                }
            });
            let resp = self
                .http
                .post(&self.url)
                .header("x-goog-api-key", self.key.expose())
                .json(&body)
                .send()
                .await
                .map_err(|e| Attempt::Retry {
                    after: None,
                    message: format!("Gemini cannot be reached: {e}"),
                })?;
            let status = resp.status().as_u16();
            let answer: Value = resp.json().await.unwrap_or(Value::Null);
            if status == 200 {
                parse_answer(&answer).map_err(Attempt::Final)
            } else {
                Err(classify(status, &answer))
            }
        })
    }
}

/// Images Gemini takes inline (under its request limit, with room for base64).
pub const MAX_IMAGE: usize = 14 * 1024 * 1024;

/// Reads photos through a model, within a daily cap and a retry budget.
pub struct Vision {
    model: Arc<dyn VisionModel>,
    conn: Mutex<Connection>,
    daily_cap: u32,
    /// How long retries may take in all (waits included) before giving up.
    budget: Duration,
}

impl std::fmt::Debug for Vision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vision")
            .field("daily_cap", &self.daily_cap)
            .finish_non_exhaustive()
    }
}

/// The image types accepted, by their first bytes.
pub fn sniff(image: &[u8]) -> Option<&'static str> {
    if image.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if image.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if image.len() > 12 && &image[0..4] == b"RIFF" && &image[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

impl Vision {
    pub fn open(
        db: &std::path::Path,
        full_sync: bool,
        model: Arc<dyn VisionModel>,
        daily_cap: u32,
        budget: Duration,
    ) -> Result<Arc<Self>, rusqlite::Error> {
        let conn = super::open_db(db, full_sync)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS vision_calls (day TEXT PRIMARY KEY, calls INTEGER NOT NULL) WITHOUT ROWID;",
        )?;
        Ok(Arc::new(Self {
            model,
            conn: Mutex::new(conn),
            daily_cap,
            budget,
        }))
    }

    /// Counts a call against `day`'s cap; `false` once it is reached.
    fn take_call(&self, day: &str) -> Result<bool, rusqlite::Error> {
        let conn = super::lock_db(&self.conn);
        let n = conn.execute(
            "INSERT INTO vision_calls (day, calls) VALUES (?1, 1)
             ON CONFLICT (day) DO UPDATE SET calls = calls + 1 WHERE calls < ?2",
            params![day, self.daily_cap],
        )?;
        Ok(n == 1)
    }

    /// Reads `image` for `task`; `day` (the server's date) is what the cap counts by.
    pub async fn read(&self, task: Task, image: &[u8], day: &str) -> Result<Reading, VisionError> {
        let mime = sniff(image)
            .ok_or_else(|| VisionError::BadImage("not a JPEG, PNG or WebP image".into()))?;
        if image.len() > MAX_IMAGE {
            return Err(VisionError::BadImage(format!(
                "larger than {} MiB",
                MAX_IMAGE / 1024 / 1024
            )));
        }
        let started = tokio::time::Instant::now();
        let mut attempt = 0u32;
        loop {
            let allowed = self
                .take_call(day)
                .map_err(|e| VisionError::Unavailable(format!("the call counter: {e}")))?;
            if !allowed {
                return Err(VisionError::CapReached {
                    cap: self.daily_cap,
                });
            }
            match self
                .model
                .generate(image, mime, task.prompt(), task.schema())
                .await
            {
                Ok(answer) => return reading(task, answer),
                Err(Attempt::Final(e)) => return Err(e),
                Err(Attempt::Retry { after, message }) => {
                    let ours = Duration::from_millis(500u64 << attempt.min(6));
                    let wait = after.map_or(ours, |a| a.max(ours));
                    if started.elapsed() + wait > self.budget {
                        return Err(VisionError::Unavailable(message));
                    }
                    tracing::info!(attempt, wait_ms = wait.as_millis(), "vision.retry");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Value {
        let file = format!(
            "{}/../tests/data/gemini/generate_content_examples.json",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
    }

    #[test]
    fn answers_are_read_or_refused_plainly() {
        let f = fixture();
        let answer = parse_answer(&f["response_200"]).unwrap();
        assert_eq!(answer["serial_number"], "22275A7000395");
        let Reading::Barcodes { barcodes } = reading(Task::Barcodes, answer).unwrap() else {
            panic!("barcodes")
        };
        assert_eq!(barcodes.len(), 2);
        assert_eq!(barcodes[1].value, "1C61B4FB2AC8");
        assert_eq!(
            parse_answer(&f["response_blocked_prompt"]),
            Err(VisionError::Blocked("SAFETY".into()))
        );
        assert_eq!(
            parse_answer(&f["response_max_tokens"]),
            Err(VisionError::Truncated)
        );
        // Thought parts are not the answer; text split over parts is joined.
        let split = json!({"candidates": [{"finishReason": "STOP", "content": {"parts": [
            {"text": "thinking…", "thought": true},
            {"text": "{\"barcodes\": [{\"value\": \"A1\","},
            {"text": " \"symbology\": \"QR\"}]}"}
        ]}}]});
        assert_eq!(
            parse_answer(&split).unwrap(),
            json!({"barcodes": [{"value": "A1", "symbology": "QR"}]})
        );
        assert!(matches!(
            reading(Task::Equipment, json!({"barcodes": []})),
            Err(VisionError::Malformed(_))
        ));
    }

    #[test]
    fn errors_are_classified_and_retry_info_honoured() {
        let e = &fixture()["errors"];
        assert_eq!(
            classify(429, &e["429"]),
            Attempt::Retry {
                after: Some(Duration::from_secs(42)),
                message: e["429"]["error"]["message"].as_str().unwrap().to_owned()
            }
        );
        for s in ["500", "503", "504"] {
            assert!(
                matches!(
                    classify(s.parse().unwrap(), &e[s]),
                    Attempt::Retry { after: None, .. }
                ),
                "{s}"
            );
        }
        assert!(matches!(
            classify(400, &e["400"]),
            Attempt::Final(VisionError::Refused { status: 400, .. })
        ));
        assert!(matches!(
            classify(400, &e["400_schema"]),
            Attempt::Final(VisionError::Refused { status: 400, .. })
        ));
    }

    #[test]
    fn images_are_recognised_by_their_bytes() {
        assert_eq!(sniff(&[0xff, 0xd8, 0xff, 0xe0]), Some("image/jpeg"));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"%PDF-1.7"), None);
    }
}
