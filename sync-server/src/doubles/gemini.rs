//! A Gemini double: `POST /v1beta/models/{model}:generateContent` as the API reference
//! describes it (the key in `x-goog-api-key`, an inline image, a `responseSchema`), answering
//! what the test scripts in Gemini's own shapes (`tests/data/gemini/`): a structured answer, a
//! blocked prompt, a truncated answer, or an error body (400 `API_KEY_INVALID`, 429 with
//! `RetryInfo`, 500, 503, 504). Every request is kept for the test to look at.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// What the double answers to the next call.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The model wrote this JSON (finishReason STOP).
    Json(Value),
    /// An HTTP status and body, as Gemini sends them.
    Raw(u16, Value),
}

#[derive(Debug, Default)]
struct State_ {
    script: VecDeque<Answer>,
    /// Answered when the script is empty.
    default: Option<Value>,
    requests: Vec<Value>,
    latency: Duration,
}

#[derive(Debug)]
struct Inner {
    key: String,
    state: Mutex<State_>,
}

/// The double; clones share it.
#[derive(Debug, Clone)]
pub struct GeminiDouble {
    inner: Arc<Inner>,
}

fn lock(m: &Mutex<State_>) -> std::sync::MutexGuard<'_, State_> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Gemini's documented shapes (`tests/data/gemini/generate_content_examples.json`, built in).
pub fn examples() -> Value {
    const EXAMPLES: &str =
        include_str!("../../../tests/data/gemini/generate_content_examples.json");
    serde_json::from_str(EXAMPLES).unwrap_or_else(|_| unreachable!("a JSON file of the repository"))
}

impl GeminiDouble {
    pub fn new(key: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                key: key.into(),
                state: Mutex::new(State_::default()),
            }),
        }
    }

    /// Binds `127.0.0.1:0` and serves on the current tokio runtime; returns the base URL.
    pub async fn start(&self) -> std::io::Result<String> {
        super::serve_on_loopback(
            Router::new()
                .route("/v1beta/models/{call}", post(generate))
                .with_state(Arc::clone(&self.inner)),
        )
        .await
    }

    /// Answers for the next calls, in order.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        lock(&self.inner.state).script.extend(answers);
    }

    /// The model's JSON once the script is used up.
    pub fn by_default(&self, answer: Value) {
        lock(&self.inner.state).default = Some(answer);
    }

    /// How long each answer takes.
    pub fn set_latency(&self, d: Duration) {
        lock(&self.inner.state).latency = d;
    }

    /// The request bodies received, in order.
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.inner.state).requests.clone()
    }
}

fn error(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response()
}

fn invalid(message: &str) -> Response {
    error(
        400,
        json!({"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}),
    )
}

/// The first part holding inline data, in either spelling the API accepts.
fn inline_image(body: &Value) -> Option<&Value> {
    body.pointer("/contents/0/parts")?
        .as_array()?
        .iter()
        .find_map(|p| p.get("inline_data").or_else(|| p.get("inlineData")))
}

async fn generate(
    State(inner): State<Arc<Inner>>,
    Path(call): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some((model, "generateContent")) = call.split_once(':') else {
        return error(
            404,
            json!({"error": {"code": 404, "message": format!("models/{call} is not found"), "status": "NOT_FOUND"}}),
        );
    };
    if headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) != Some(inner.key.as_str()) {
        return error(400, examples()["errors"]["400"].clone());
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return invalid("Invalid JSON payload received.");
    };
    let Some(image) = inline_image(&request) else {
        return invalid("* GenerateContentRequest.contents: contents is not specified\n");
    };
    let data = image.get("data").and_then(Value::as_str).unwrap_or("");
    let mime = image
        .get("mime_type")
        .or_else(|| image.get("mimeType"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if data.is_empty() || !mime.starts_with("image/") {
        return invalid(
            "Unable to process input image. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
        );
    }
    let config = request
        .get("generationConfig")
        .or_else(|| request.get("generation_config"));
    let schema = config.and_then(|c| c.get("responseSchema").or_else(|| c.get("response_schema")));
    if schema.and_then(|s| s.get("type")).is_none() {
        return invalid(
            "* GenerateContentRequest.generation_config.response_schema.type: must be specified\n",
        );
    }
    let (answer, latency) = {
        let mut s = lock(&inner.state);
        s.requests.push(request.clone());
        let answer = s
            .script
            .pop_front()
            .or_else(|| s.default.clone().map(Answer::Json))
            .unwrap_or_else(|| Answer::Json(sample(schema)));
        (answer, s.latency)
    };
    tokio::time::sleep(latency).await;
    match answer {
        Answer::Raw(status, body) => error(status, body),
        Answer::Json(v) => {
            let mut ok = examples()["response_200"].clone();
            ok["candidates"][0]["content"]["parts"] = json!([{"text": v.to_string()}]);
            ok["modelVersion"] = json!(model);
            axum::Json(ok).into_response()
        }
    }
}

/// Without a scripted answer: a sample fitting the schema asked for (the label of Gemini's
/// documented example, or a small supplier invoice), whatever the photo.
fn sample(schema: Option<&Value>) -> Value {
    let has = |p: &str| {
        schema
            .and_then(|s| s.pointer(&format!("/properties/{p}")))
            .is_some()
    };
    let label = examples()["response_200"]["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
        .unwrap_or_default();
    if has("items") {
        json!({"items": [{
            "brand": label["brand"], "model": label["model"],
            "serial_number": label["serial_number"], "mac_address": label["mac_address"],
            "gpon_sn": label["gpon_sn"], "confidence": 0.9
        }]})
    } else if has("taxes") {
        json!({"supplier": "Distribution Fibre Québec inc.", "date": "2026-11-27", "currency": "CAD",
            "subtotal": 200.0, "taxes": [
                {"name": "TPS", "rate": 5.0, "amount": 10.0},
                {"name": "TVQ", "rate": 9.975, "amount": 19.95}],
            "total": 229.95})
    } else {
        label
    }
}
