//! A Stripe double: Checkout Sessions as Stripe documents them, and the customer paying.
//!
//! * `POST /v1/checkout/sessions`, `Authorization: Bearer sk_…` (401 otherwise), a form body with
//!   bracketed keys; a missing parameter is 400 `parameter_missing` naming it. The answer is
//!   Stripe's canonical session object (`tests/data/stripe/checkout_session.fixtures3.json`) with
//!   this session's id, page URL, amounts, metadata and URLs.
//! * `Idempotency-Key`: the same key with the same parameters answers the first answer again
//!   (`Idempotent-Replayed: true`); with other parameters, 400 `idempotency_error`.
//! * Faults for the next requests: 429 `rate_limit_error`, 500 `api_error`.
//! * [`StripeDouble::pay`] is the customer paying a page: the events Stripe sends then
//!   (`checkout.session.completed`, `payment_intent.succeeded`), signed with the endpoint's
//!   secret as `Stripe-Signature`, to the webhook endpoint, each as many times and in the order
//!   the test asks.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    RateLimit,
    ServerError,
}

#[derive(Debug, Default)]
struct Account {
    /// Each session, and the metadata its payment will carry.
    sessions: HashMap<String, (Value, Value)>,
    /// Idempotency keys: the parameters first sent and the answer given.
    keys: HashMap<String, (Vec<(String, String)>, Value)>,
    faults: VecDeque<Fault>,
    requests: usize,
    next: u64,
}

#[derive(Debug)]
struct Inner {
    secret_key: String,
    account: Mutex<Account>,
    /// Where events go, and the endpoint's signing secret.
    webhook: Mutex<Option<(String, String)>>,
    /// What "now" is for signatures and events (the system's, unless a test says otherwise).
    clock: Mutex<Arc<dyn shared::clock::Clock>>,
    http: reqwest::Client,
}

/// The double; clones share one account.
#[derive(Debug, Clone)]
pub struct StripeDouble {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn canonical_session() -> Value {
    const SESSION: &str =
        include_str!("../../../tests/data/stripe/checkout_session.fixtures3.json");
    serde_json::from_str(SESSION).unwrap_or_else(|_| unreachable!("a JSON file of the repository"))
}

impl Inner {
    fn now_s(&self) -> i64 {
        lock(&self.clock).now().0 / 1000
    }
}

impl StripeDouble {
    pub fn new(secret_key: &str) -> Self {
        crate::tls::install_crypto();
        Self {
            inner: Arc::new(Inner {
                secret_key: secret_key.into(),
                account: Mutex::new(Account::default()),
                webhook: Mutex::new(None),
                clock: Mutex::new(Arc::new(crate::SystemClock)),
                http: super::callback_client(),
            }),
        }
    }

    /// Binds `127.0.0.1:0` and serves on the current tokio runtime; returns the API's base URL.
    pub async fn start(&self) -> std::io::Result<String> {
        super::serve_on_loopback(
            Router::new()
                .route("/v1/checkout/sessions", post(create_session))
                .with_state(Arc::clone(&self.inner)),
        )
        .await
    }

    /// The webhook endpoint events go to, and its signing secret.
    pub fn set_webhook(&self, url: &str, secret: &str) {
        *lock(&self.inner.webhook) = Some((url.to_owned(), secret.to_owned()));
    }

    /// Signs and stamps events with this clock's time (a test's fixed clock).
    pub fn set_clock(&self, clock: Arc<dyn shared::clock::Clock>) {
        *lock(&self.inner.clock) = clock;
    }

    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.inner.account).faults.extend(faults);
    }

    /// Sessions created (replays not counted).
    pub fn sessions(&self) -> usize {
        lock(&self.inner.account).sessions.len()
    }

    pub fn requests(&self) -> usize {
        lock(&self.inner.account).requests
    }

    /// The events Stripe sends when the customer pays session `id`: the session completed (paid)
    /// and its payment intent succeeded. `None` for an unknown session.
    pub fn pay_events(&self, id: &str) -> Option<Vec<Value>> {
        let created = self.inner.now_s();
        let mut account = lock(&self.inner.account);
        account.next += 1;
        let n = account.next;
        let (session, intent_metadata) = account.sessions.get_mut(id)?;
        let intent_id = format!("pi_test_{n:024}");
        session["payment_status"] = json!("paid");
        session["status"] = json!("complete");
        session["payment_intent"] = json!(intent_id);
        let intent = json!({
            "id": intent_id, "object": "payment_intent",
            "amount": session["amount_total"], "amount_received": session["amount_total"],
            "currency": session["currency"], "status": "succeeded", "livemode": false,
            "metadata": intent_metadata.clone(),
        });
        let event = |kind: &str, object: Value, k: u64| {
            json!({
                "id": format!("evt_test_{n:016}_{k}"), "object": "event",
                "api_version": crate::hub::stripe::STRIPE_VERSION, "created": created,
                "data": {"object": object}, "livemode": false, "pending_webhooks": 1,
                "request": {"id": null, "idempotency_key": null}, "type": kind,
            })
        };
        Some(vec![
            event("checkout.session.completed", session.clone(), 1),
            event("payment_intent.succeeded", intent, 2),
        ])
    }

    /// Delivers one event to the webhook endpoint, signed as Stripe signs; the answer's status.
    pub async fn deliver(&self, event: &Value) -> Option<u16> {
        let (url, secret) = lock(&self.inner.webhook).clone()?;
        let body = event.to_string();
        let signature =
            crate::hub::signature::stripe_header(&secret, self.inner.now_s(), body.as_bytes());
        let resp = self
            .inner
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("stripe-signature", signature)
            .body(body)
            .send()
            .await
            .ok()?;
        Some(resp.status().as_u16())
    }

    /// The customer pays session `id`: each event is delivered once.
    pub async fn pay(&self, id: &str) -> Option<()> {
        for e in self.pay_events(id)? {
            self.deliver(&e).await?;
        }
        Some(())
    }
}

fn error(
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    message: &str,
    param: Option<&str>,
) -> Response {
    let mut e = json!({"type": kind, "message": message});
    if let Some(c) = code {
        e["code"] = json!(c);
        e["doc_url"] = json!(format!("https://stripe.com/docs/error-codes/{c}"));
    }
    if let Some(p) = param {
        e["param"] = json!(p);
    }
    let mut resp = (status, axum::Json(json!({ "error": e }))).into_response();
    resp.headers_mut()
        .insert("request-id", header::HeaderValue::from_static("req_double"));
    resp
}

async fn create_session(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = {
        let mut a = lock(&inner.account);
        a.requests += 1;
        a.faults.pop_front()
    };
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if key != Some(inner.secret_key.as_str()) {
        let shown = key.map_or_else(String::new, |k| {
            format!("{}***", k.chars().take(8).collect::<String>())
        });
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            &format!("Invalid API Key provided: {shown}"),
            None,
        );
    }
    match fault {
        Some(Fault::RateLimit) => {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                Some("rate_limit"),
                "Request rate limit exceeded.",
                None,
            );
        }
        Some(Fault::ServerError) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                None,
                "An unknown error occurred",
                None,
            );
        }
        None => {}
    }
    let mut params: Vec<(String, String)> = form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    params.sort();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let idem = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(k) = &idem
        && let Some((first, answer)) = lock(&inner.account).keys.get(k).cloned()
    {
        if first != params {
            return error(
                StatusCode::BAD_REQUEST,
                "idempotency_error",
                None,
                &format!(
                    "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{k}' if you meant to execute a different request."
                ),
                None,
            );
        }
        let mut resp = axum::Json(answer).into_response();
        resp.headers_mut().insert(
            "idempotent-replayed",
            header::HeaderValue::from_static("true"),
        );
        return resp;
    }
    for required in [
        "mode",
        "success_url",
        "line_items[0][price_data][currency]",
        "line_items[0][price_data][unit_amount]",
        "line_items[0][price_data][product_data][name]",
        "line_items[0][quantity]",
    ] {
        if get(required).is_none_or(|v| v.is_empty()) {
            let param = required
                .replace("][", ".")
                .replace(['[', ']'], ".")
                .replace("..", ".")
                .trim_end_matches('.')
                .to_owned();
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("parameter_missing"),
                &format!("Missing required param: {param}."),
                Some(&param),
            );
        }
    }
    let amount = get("line_items[0][price_data][unit_amount]")
        .and_then(|a| a.parse::<i64>().ok())
        .filter(|a| *a > 0);
    let Some(amount) = amount else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_invalid_integer"),
            "Invalid integer: line_items[0][price_data][unit_amount]",
            Some("line_items[0][price_data][unit_amount]"),
        );
    };
    let metadata: serde_json::Map<String, Value> = params
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k.to_owned(), json!(v)))
        })
        .collect();
    let intent_metadata: serde_json::Map<String, Value> = params
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("payment_intent_data[metadata][")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k.to_owned(), json!(v)))
        })
        .collect();
    let mut a = lock(&inner.account);
    a.next += 1;
    let id = format!("cs_test_a1{:058}", a.next);
    let created = inner.now_s();
    let mut session = canonical_session();
    for (k, v) in [
        ("id", json!(id)),
        (
            "url",
            json!(format!("https://checkout.stripe.com/c/pay/{id}")),
        ),
        ("amount_subtotal", json!(amount)),
        ("amount_total", json!(amount)),
        (
            "currency",
            json!(get("line_items[0][price_data][currency]")),
        ),
        ("client_reference_id", json!(get("client_reference_id"))),
        ("metadata", Value::Object(metadata)),
        ("success_url", json!(get("success_url"))),
        ("cancel_url", json!(get("cancel_url"))),
        ("payment_status", json!("unpaid")),
        ("status", json!("open")),
        ("payment_intent", Value::Null),
        ("created", json!(created)),
        ("expires_at", json!(created + 86_400)),
        ("livemode", json!(false)),
    ] {
        session[k] = v;
    }
    a.sessions
        .insert(id, (session.clone(), Value::Object(intent_metadata)));
    if let Some(k) = idem {
        a.keys.insert(k, (params, session.clone()));
    }
    axum::Json(session).into_response()
}
