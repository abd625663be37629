//! A Twilio double: the Messages API as Twilio documents it, and the status callbacks it sends.
//!
//! * `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP Basic auth with the account SID
//!   and auth token (401, code 20003, otherwise), a form body with `To`, `From` or
//!   `MessagingServiceSid`, `Body`, optional `StatusCallback`.
//! * Twilio's test-credential numbers behave as Twilio says they do, so one contract suite runs
//!   against this double and against Twilio with test credentials: `To` +15005550001 is invalid
//!   (21211), +15005550002 cannot be routed (21612), +15005550003 lacks international permission
//!   (21408), +15005550004 is blocked (21610), +15005550009 cannot receive SMS (21614); `From`
//!   +15005550006 is valid, +15005550001 invalid (21212), +15005550007 not owned (21606),
//!   +15005550008 has a full queue (21611). Any other `To` must be E.164 (21211).
//! * Errors are `{"code", "message", "more_info", "status"}`; 201 answers the message resource
//!   (`sid` "SM" + 32 hex, `status` "queued", RFC 2822 `date_created`…).
//! * After a 201, each status of [`TwilioDouble::set_callbacks`] (default `sent`, `delivered`) is
//!   posted to `StatusCallback`, form-encoded and signed with `X-Twilio-Signature` over that URL,
//!   as Twilio does. Callbacks to the test's public URL are delivered to the server under test.
//! * Faults for the next requests: 429 with code 20429 and `Retry-After`, a 500, or an answer
//!   that comes back only after the client gave up (the text *was* sent).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use serde_json::{Value, json};

/// A fault the next API request takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 429, code 20429, `Retry-After: 1`; nothing sent.
    RateLimit,
    /// 500, code 20500; nothing sent.
    ServerError,
    /// The text is sent (and its callbacks go out), but the answer waits this long.
    SlowAnswer(Duration),
}

/// A text the double accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub sid: String,
    pub to: String,
    pub from: String,
    pub body: String,
    pub status_callback: Option<String>,
}

#[derive(Debug, Default)]
struct Site {
    accepted: Vec<Accepted>,
    requests: usize,
    faults: VecDeque<Fault>,
    callbacks: Vec<String>,
    /// Callbacks addressed to this prefix (the public URL) go to the other (the server).
    route: Option<(String, String)>,
    next: u64,
}

#[derive(Debug)]
struct Inner {
    account_sid: String,
    auth_token: String,
    site: Mutex<Site>,
    http: reqwest::Client,
}

/// The double; clones share one account.
#[derive(Debug, Clone)]
pub struct TwilioDouble {
    inner: Arc<Inner>,
}

fn lock(m: &Mutex<Site>) -> std::sync::MutexGuard<'_, Site> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl TwilioDouble {
    pub fn new(account_sid: &str, auth_token: &str) -> Self {
        crate::tls::install_crypto();
        Self {
            inner: Arc::new(Inner {
                account_sid: account_sid.into(),
                auth_token: auth_token.into(),
                site: Mutex::new(Site {
                    callbacks: vec!["sent".into(), "delivered".into()],
                    ..Site::default()
                }),
                http: super::callback_client(),
            }),
        }
    }

    /// Binds `127.0.0.1:0` and serves on the current tokio runtime; returns the API's base URL.
    pub async fn start(&self) -> std::io::Result<String> {
        super::serve_on_loopback(
            Router::new()
                .route(
                    "/2010-04-01/Accounts/{account}/Messages.json",
                    post(messages),
                )
                .with_state(Arc::clone(&self.inner)),
        )
        .await
    }

    /// The statuses posted to each text's callback, in order (e.g. `delivered` before `sent`).
    pub fn set_callbacks(&self, statuses: &[&str]) {
        lock(&self.inner.site).callbacks = statuses.iter().map(|s| (*s).to_owned()).collect();
    }

    /// Delivers callbacks addressed under `public` to `actual` instead (signed over the URL as
    /// given, as Twilio signs what it was told).
    pub fn route_callbacks(&self, public: &str, actual: &str) {
        lock(&self.inner.site).route = Some((public.to_owned(), actual.to_owned()));
    }

    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.inner.site).faults.extend(faults);
    }

    /// Texts accepted so far.
    pub fn accepted(&self) -> Vec<Accepted> {
        lock(&self.inner.site).accepted.clone()
    }

    /// API requests received so far (accepted or not).
    pub fn requests(&self) -> usize {
        lock(&self.inner.site).requests
    }
}

fn error(status: StatusCode, code: i64, message: &str) -> Response {
    let mut resp = (
        status,
        axum::Json(json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        })),
    )
        .into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    resp
}

fn authorized(inner: &Inner, headers: &HeaderMap) -> bool {
    let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(basic.trim()) else {
        return false;
    };
    decoded == format!("{}:{}", inner.account_sid, inner.auth_token).as_bytes()
}

fn e164(n: &str) -> bool {
    n.strip_prefix('+')
        .is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Twilio's answer to a `To` or `From` of its test numbers, if it is one.
fn magic(to: &str, from: &str) -> Option<(i64, String)> {
    let to_err = match to {
        "+15005550001" => Some((
            21211,
            format!("The 'To' number {to} is not a valid phone number."),
        )),
        "+15005550002" => Some((
            21612,
            format!(
                "The 'To' phone number: {to}, is not currently reachable using the 'From' phone number: {from} via SMS."
            ),
        )),
        "+15005550003" => Some((
            21408,
            format!(
                "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}."
            ),
        )),
        "+15005550004" => Some((
            21610,
            "Attempt to send to unsubscribed recipient".to_owned(),
        )),
        "+15005550009" => Some((
            21614,
            format!("'To' number {to} is not a valid mobile number"),
        )),
        _ => None,
    };
    to_err.or(match from {
        "+15005550001" => Some((21212, format!("The 'From' number {from} is not a valid phone number, shortcode, or alphanumeric sender ID."))),
        "+15005550007" => Some((21606, format!("The From phone number {from} is not a valid, SMS-capable inbound phone number or short code for your account."))),
        "+15005550008" => Some((21611, format!("This 'From' number {from} has exceeded the maximum number of queued messages"))),
        _ => None,
    })
}

async fn messages(
    State(inner): State<Arc<Inner>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = {
        let mut site = lock(&inner.site);
        site.requests += 1;
        site.faults.pop_front()
    };
    if !authorized(&inner, &headers) || account != inner.account_sid {
        return error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    match fault {
        Some(Fault::RateLimit) => {
            return error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests");
        }
        Some(Fault::ServerError) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                20500,
                "Internal Server Error",
            );
        }
        _ => {}
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (to, body_text, cb) = (get("To"), get("Body"), get("StatusCallback"));
    let from = match get("From") {
        f if !f.is_empty() => f,
        _ => get("MessagingServiceSid"),
    };
    if to.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            21604,
            "A 'To' phone number is required.",
        );
    }
    if from.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            21603,
            "A 'From' or 'MessagingServiceSid' parameter is required to send a message",
        );
    }
    if body_text.is_empty() {
        return error(StatusCode::BAD_REQUEST, 21602, "Message body is required.");
    }
    if let Some((code, message)) = magic(&to, &from) {
        return error(StatusCode::BAD_REQUEST, code, &message);
    }
    if !e164(&to) {
        return error(
            StatusCode::BAD_REQUEST,
            21211,
            &format!("The 'To' number {to} is not a valid phone number."),
        );
    }
    let (sid, callbacks, route) = {
        let mut site = lock(&inner.site);
        site.next += 1;
        let sid = format!("SM{:032x}", 0x5eed_0000_u128 + u128::from(site.next));
        site.accepted.push(Accepted {
            sid: sid.clone(),
            to: to.clone(),
            from: from.clone(),
            body: body_text.clone(),
            status_callback: (!cb.is_empty()).then(|| cb.clone()),
        });
        (sid, site.callbacks.clone(), site.route.clone())
    };
    if !cb.is_empty() {
        let inner = Arc::clone(&inner);
        let (sid, to, from) = (sid.clone(), to.clone(), from.clone());
        tokio::spawn(async move {
            for status in callbacks {
                let params: Vec<(String, String)> = [
                    ("MessageSid", sid.as_str()),
                    ("SmsSid", sid.as_str()),
                    ("AccountSid", inner.account_sid.as_str()),
                    ("From", from.as_str()),
                    ("To", to.as_str()),
                    ("MessageStatus", status.as_str()),
                    ("SmsStatus", status.as_str()),
                    ("ApiVersion", "2010-04-01"),
                ]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
                let signature =
                    crate::hub::signature::twilio_signature(&inner.auth_token, &cb, &params);
                let target = match &route {
                    Some((public, actual)) if cb.starts_with(public.as_str()) => {
                        format!("{actual}{}", &cb[public.len()..])
                    }
                    _ => cb.clone(),
                };
                let _ = inner
                    .http
                    .post(target)
                    .header("x-twilio-signature", signature)
                    .form(&params)
                    .send()
                    .await;
            }
        });
    }
    if let Some(Fault::SlowAnswer(d)) = fault {
        tokio::time::sleep(d).await;
    }
    let answer = json!({
        "account_sid": inner.account_sid,
        "api_version": "2010-04-01",
        "body": body_text,
        "date_created": "Mon, 30 Nov 2026 14:00:00 +0000",
        "date_sent": null,
        "date_updated": "Mon, 30 Nov 2026 14:00:00 +0000",
        "direction": "outbound-api",
        "error_code": null,
        "error_message": null,
        "from": from,
        "messaging_service_sid": null,
        "num_media": "0",
        "num_segments": "1",
        "price": null,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued",
        "to": to,
        "uri": format!("/2010-04-01/Accounts/{}/Messages/{sid}.json", inner.account_sid),
    });
    (StatusCode::CREATED, axum::Json::<Value>(answer)).into_response()
}
