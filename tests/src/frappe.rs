//! A Frappe/ERPNext-compatible test double: an in-process HTTP server that answers the REST
//! API the way ERPNext 15 does (`shared/specs/ERPNEXT.md`; every point there has a recording
//! in `tests/data/erpnext/`, and the `recording` e2e test replays them all against this double).
//!
//! ```no_run
//! # async fn demo() {
//! use tests::frappe::{FrappeDouble, Latency};
//! let erp = FrappeDouble::new("key", "secret");
//! erp.set_latency(Latency::recorded());
//! let addr = erp.start().await;
//! // point the bridge at http://{addr} with `Authorization: token key:secret`
//! # let _ = addr;
//! # }
//! ```
//!
//! State lives in memory behind one mutex, held only while a request is applied; injected
//! latency is slept outside the lock, so concurrent requests overlap as on a multi-worker
//! gunicorn. Faults queued with [`FrappeDouble::inject`] hit the next API requests in order.

mod error;
mod meta;
mod query;
mod site;

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use error::ApiError;
pub use site::sign as webhook_signature;
use site::{Delivery, Site};

/// Per-method delay added to every API request.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    pub get: Delay,
    pub post: Delay,
    pub put: Delay,
    pub delete: Delay,
}

/// One method's delay: fixed, or drawn per request from a log-normal distribution around a
/// median (its spread below and above the median apart, as recorded), kept within the recorded
/// extremes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Delay {
    pub median: Duration,
    /// Log-normal σ below and above the median (0: always the median).
    pub sigma_low: f64,
    pub sigma_high: f64,
    pub min: Duration,
    pub max: Duration,
}

impl Delay {
    pub fn fixed(d: Duration) -> Self {
        Self {
            median: d,
            sigma_low: 0.0,
            sigma_high: 0.0,
            min: d,
            max: d,
        }
    }

    /// A delay for a standard normal draw `z`.
    fn at(&self, z: f64) -> Duration {
        let sigma = if z < 0.0 {
            self.sigma_low
        } else {
            self.sigma_high
        };
        let d = self.median.mul_f64((sigma * z).exp());
        d.clamp(self.min, self.max.max(self.min))
    }
}

/// The loopback latencies recorded against a real ERPNext 15 (gunicorn, MariaDB).
const LATENCY_STATS: &str = include_str!("../data/erpnext/latency_stats.json");

/// z of the expected extreme of 20 draws from a normal distribution: what the smallest and
/// largest of a 20-request sample stand for.
const Z_EXTREME_OF_20: f64 = 1.87;
/// z of the 95th percentile.
const Z_P95: f64 = 1.645;

impl Latency {
    /// The distributions recorded against a real ERPNext on loopback (`latency_stats.json`):
    /// creates from 520 POSTs (median, p95, max), updates from 20 PUTs (median, min, max), reads
    /// from 20 GETs (only a median was recorded: fixed). Deletes were not recorded; they cost
    /// what a create does.
    pub fn recorded() -> Self {
        let stats: Value =
            serde_json::from_str(LATENCY_STATS).expect("the recorded latency file is JSON");
        let ms = |v: &Value| Duration::from_secs_f64(v.as_f64().expect("a number of ms") / 1e3);
        let post = &stats["seed_post_customer"];
        let (median, p95) = (ms(&post["median_ms"]), ms(&post["p95_ms"]));
        let sigma = (p95.as_secs_f64() / median.as_secs_f64()).ln() / Z_P95;
        let post = Delay {
            median,
            sigma_low: sigma,
            sigma_high: sigma,
            min: Duration::from_millis(1),
            max: ms(&post["max_ms"]),
        };
        let put = &stats["put_customer_ms"];
        let (median, min, max) = (ms(&put["median"]), ms(&put["min"]), ms(&put["max"]));
        let put = Delay {
            median,
            sigma_low: (median.as_secs_f64() / min.as_secs_f64()).ln() / Z_EXTREME_OF_20,
            sigma_high: (max.as_secs_f64() / median.as_secs_f64()).ln() / Z_EXTREME_OF_20,
            min,
            max,
        };
        Self {
            get: Delay::fixed(ms(&stats["get_customer_ms"]["median"])),
            post,
            put,
            delete: post,
        }
    }
}

/// A failure to apply to one upcoming API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer 500 without touching any data.
    Status500,
    /// Sleep this long, then answer 504 (what a proxy in front of a stuck worker says).
    Timeout(Duration),
    /// Apply the request, then close the connection without answering.
    CommitThenDrop,
    /// Answer 417 `ValidationError` with this message, without touching any data.
    Status417Validation(String),
}

/// What the double has been asked to do, for "no duplicate record" assertions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Successful creates over HTTP, per doctype.
    pub creates: BTreeMap<String, usize>,
    /// Successful updates over HTTP (PUT, `set_value`), per doctype.
    pub updates: BTreeMap<String, usize>,
    /// Successful deletes over HTTP, per doctype.
    pub deletes: BTreeMap<String, usize>,
    /// Every request received, including failed and faulted ones.
    pub requests: usize,
}

/// An in-process Frappe site. Cheap to clone; clones share the site.
#[derive(Debug, Clone)]
pub struct FrappeDouble {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    site: Mutex<Site>,
    api_key: String,
    api_secret: String,
    latency: Mutex<Latency>,
    /// Draws delays reproducibly.
    rng: Mutex<rand_chacha::ChaCha8Rng>,
    /// Like gunicorn's workers: at most this many requests are served at once.
    workers: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    faults: Mutex<VecDeque<Fault>>,
    /// With no fault queued, the share of API requests that fail anyway: half answer 500, half
    /// are applied and their answer lost ([`Fault::CommitThenDrop`]).
    flaky: Mutex<f64>,
    http: reqwest::Client,
    runtime: Mutex<Option<tokio::runtime::Handle>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FrappeDouble {
    /// A fresh site: the standard doctypes exist, no custom doctypes yet.
    pub fn new(api_key: &str, api_secret: &str) -> Self {
        sync_server::tls::install_crypto();
        Self {
            inner: Arc::new(Inner {
                site: Mutex::new(Site::new()),
                api_key: api_key.into(),
                api_secret: api_secret.into(),
                latency: Mutex::new(Latency::default()),
                rng: Mutex::new(rand::SeedableRng::seed_from_u64(0x00e7_9e47)),
                workers: Mutex::new(None),
                faults: Mutex::new(VecDeque::new()),
                flaky: Mutex::new(0.0),
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .expect("a plain HTTP client builds on every platform"),
                runtime: Mutex::new(None),
            }),
        }
    }

    /// Binds `127.0.0.1:0` and serves on the current tokio runtime.
    pub async fn start(&self) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("loopback has free ports");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        lock(&self.inner.site).base_url = format!("http://{addr}");
        *lock(&self.inner.runtime) = Some(tokio::runtime::Handle::current());
        let app = Router::new()
            .fallback(handle)
            .with_state(self.inner.clone());
        let service = app.into_make_service_with_connect_info::<Conn>();
        tokio::spawn(async move {
            let _ = axum::serve(DroppableListener(listener), service).await;
        });
        addr
    }

    /// Sets the site's time zone offset from UTC (Frappe stamps `modified` in local time):
    /// moving it back by an hour is daylight saving time ending, stamps going back.
    pub fn set_utc_offset(&self, offset: std::time::Duration, behind: bool) {
        let d = chrono::Duration::from_std(offset).unwrap_or_default();
        lock(&self.inner.site).utc_offset = if behind { -d } else { d };
    }

    pub fn set_latency(&self, l: Latency) {
        *lock(&self.inner.latency) = l;
    }

    /// Serves at most `n` API requests at once, the others waiting their turn, as a gunicorn
    /// with `n` workers does (`None`: no limit).
    pub fn set_workers(&self, n: Option<usize>) {
        *lock(&self.inner.workers) = n.map(|n| Arc::new(tokio::sync::Semaphore::new(n.max(1))));
    }

    /// Makes this share of API requests fail (drawn reproducibly), besides queued faults.
    pub fn set_flaky(&self, share: f64) {
        *lock(&self.inner.flaky) = share.clamp(0.0, 1.0);
    }

    /// Queues faults; each of the next API requests takes one, in order.
    pub fn inject(&self, faults: Vec<Fault>) {
        lock(&self.inner.faults).extend(faults);
    }

    /// The stored document as `GET /api/resource/<doctype>/<name>` returns it.
    pub fn doc(&self, doctype: &str, name: &str) -> Option<Value> {
        lock(&self.inner.site).get(doctype, name, true).ok()
    }

    /// Every document of `doctype`, in name order.
    pub fn docs(&self, doctype: &str) -> Vec<Value> {
        let site = lock(&self.inner.site);
        site.all(doctype)
            .into_iter()
            .map(|d| site.render(doctype, d, true))
            .collect()
    }

    /// An office user's save: same validation and `modified` bump as a PUT; fires webhooks.
    pub fn edit(&self, doctype: &str, name: &str, patch: Value) -> Result<Value, String> {
        let patch = object(patch)?;
        self.office(|site| site.update(doctype, name, &patch).map(|s| s.doc))
    }

    /// An office user's create; fires webhooks.
    pub fn insert(&self, doctype: &str, doc: Value) -> Result<Value, String> {
        let doc = object(doc)?;
        self.office(|site| site.insert(doctype, &doc).map(|s| s.doc))
    }

    /// An office user's submit of a draft (an invoice becomes payable).
    pub fn submit(&self, doctype: &str, name: &str) -> Result<Value, String> {
        self.office(|site| site.submit(doctype, name))
    }

    /// An office user's delete: a Deleted Document row, cascades, webhooks.
    pub fn delete(&self, doctype: &str, name: &str) -> Result<(), String> {
        self.office(|site| site.delete(doctype, name))
    }

    pub fn counts(&self) -> Counts {
        lock(&self.inner.site).counts.clone()
    }

    /// Names of the doctypes the site knows.
    pub fn doctypes(&self) -> Vec<String> {
        lock(&self.inner.site).doctypes().into_iter().collect()
    }

    fn office<T>(&self, f: impl FnOnce(&mut Site) -> Result<T, ApiError>) -> Result<T, String> {
        let (result, outbox) = {
            let mut site = lock(&self.inner.site);
            let result = f(&mut site);
            (result, std::mem::take(&mut site.outbox))
        };
        self.inner.deliver(outbox);
        result.map_err(|e| e.summary())
    }
}

fn object(v: Value) -> Result<Map<String, Value>, String> {
    match v {
        Value::Object(m) => Ok(m),
        other => Err(format!("expected a JSON object, got {other}")),
    }
}

impl Inner {
    /// Sends webhook requests in the background; failures are ignored, as Frappe's
    /// background job would only log them.
    fn deliver(&self, outbox: Vec<Delivery>) {
        if outbox.is_empty() {
            return;
        }
        let handle = lock(&self.runtime)
            .clone()
            .or_else(|| tokio::runtime::Handle::try_current().ok());
        let Some(handle) = handle else { return };
        for d in outbox {
            let method =
                reqwest::Method::from_bytes(d.method.as_bytes()).unwrap_or(reqwest::Method::POST);
            let mut request = self
                .http
                .request(method, &d.url)
                .header(header::CONTENT_TYPE, "application/json")
                .body(d.body);
            if let Some(sig) = d.signature {
                request = request.header("X-Frappe-Webhook-Signature", sig);
            }
            handle.spawn(async move {
                let _ = request.send().await;
            });
        }
    }
}

/// A listener whose connections can be cut from a handler (for [`Fault::CommitThenDrop`]).
struct DroppableListener(TcpListener);

impl Listener for DroppableListener {
    type Io = DroppableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Ok((stream, addr)) = self.0.accept().await {
                return (
                    DroppableStream {
                        stream,
                        cut: Arc::new(AtomicBool::new(false)),
                    },
                    addr,
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A TCP stream that fails every read and write once `cut` is set.
struct DroppableStream {
    stream: TcpStream,
    cut: Arc<AtomicBool>,
}

impl DroppableStream {
    fn check(&self) -> io::Result<()> {
        if self.cut.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection dropped by fault injection",
            ));
        }
        Ok(())
    }
}

impl AsyncRead for DroppableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for DroppableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Per-connection data handed to the handler: the switch that cuts the connection.
#[derive(Debug, Clone)]
struct Conn {
    cut: Arc<AtomicBool>,
}

impl Connected<IncomingStream<'_, DroppableListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, DroppableListener>) -> Self {
        Self {
            cut: stream.io().cut.clone(),
        }
    }
}

/// One request, decoded.
struct Req {
    method: String,
    /// Path segments after the API prefix, percent-decoded.
    segments: Vec<String>,
    kind: Kind,
    query: Map<String, Value>,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Resource,
    Method,
    V2,
    Other,
}

fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_form(s: &str) -> Map<String, Value> {
    let mut m = Map::new();
    for pair in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        m.insert(
            percent_decode(k, true),
            Value::String(percent_decode(v, true)),
        );
    }
    m
}

fn respond(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let (kind, rest) = if let Some(r) = path.strip_prefix("/api/resource/") {
        (Kind::Resource, r)
    } else if let Some(r) = path.strip_prefix("/api/method/") {
        (Kind::Method, r)
    } else if let Some(r) = path.strip_prefix("/api/v2/document/") {
        (Kind::V2, r)
    } else {
        (Kind::Other, path.as_str())
    };
    let req = Req {
        method: parts.method.as_str().to_uppercase(),
        segments: rest
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_decode(s, false))
            .collect(),
        kind,
        query: parts.uri.query().map(parse_form).unwrap_or_default(),
        headers: parts.headers,
        body,
    };
    lock(&inner.site).counts.requests += 1;
    let is_ping = kind == Kind::Method && req.segments.first().is_some_and(|m| m == "ping");
    if is_ping {
        return respond(200, &json!({"message": "pong"}));
    }
    let fault = if matches!(kind, Kind::Resource | Kind::Method) {
        lock(&inner.faults).pop_front().or_else(|| {
            use rand::Rng as _;
            let share = *lock(&inner.flaky);
            let mut rng = lock(&inner.rng);
            (share > 0.0 && rng.random::<f64>() < share).then(|| {
                if rng.random::<bool>() {
                    Fault::Status500
                } else {
                    Fault::CommitThenDrop
                }
            })
        })
    } else {
        None
    };
    let workers = lock(&inner.workers).clone();
    // Held until the answer is ready, as a worker is.
    let _worker = match workers {
        Some(w) => Some(w.acquire_owned().await),
        None => None,
    };
    let latency = *lock(&inner.latency);
    let delay = match req.method.as_str() {
        "GET" | "HEAD" => latency.get,
        "PUT" | "PATCH" => latency.put,
        "DELETE" => latency.delete,
        _ => latency.post,
    };
    let delay = delay.at(standard_normal(&mut lock(&inner.rng)));
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match &fault {
        Some(Fault::Status500) => {
            return respond(
                500,
                &ApiError::internal("Exception", "Exception: injected server error").body(),
            );
        }
        Some(Fault::Timeout(d)) => {
            tokio::time::sleep(*d).await;
            return (StatusCode::GATEWAY_TIMEOUT, "upstream timed out").into_response();
        }
        Some(Fault::Status417Validation(msg)) => {
            return respond(417, &ApiError::validation(msg.clone()).body());
        }
        Some(Fault::CommitThenDrop) | None => {}
    }
    let (status, body, outbox) = {
        let mut site = lock(&inner.site);
        let (status, body) = match inner.authenticate(&req) {
            Ok(()) => match dispatch(&mut site, &req) {
                Ok((status, body)) => (status, body),
                Err(e) => (e.status, e.body()),
            },
            Err(e) => (e.status, e.body()),
        };
        (status, body, std::mem::take(&mut site.outbox))
    };
    inner.deliver(outbox);
    if fault == Some(Fault::CommitThenDrop) {
        conn.cut.store(true, Ordering::SeqCst);
    }
    respond(status, &body)
}

impl Inner {
    /// Token or Basic auth; no header at all is the Guest user.
    fn authenticate(&self, req: &Req) -> Result<(), ApiError> {
        let Some(value) = req
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            let target = req.segments.first().cloned().unwrap_or_default();
            return Err(match req.kind {
                Kind::Method => ApiError::guest_method(&target),
                _ => ApiError::guest_resource(&target),
            });
        };
        let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
        let pair = match scheme.to_lowercase().as_str() {
            "token" => credentials.trim().to_string(),
            "basic" => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(credentials.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .unwrap_or_default()
            }
            _ => String::new(),
        };
        match pair.split_once(':') {
            Some((key, secret)) if key == self.api_key && secret == self.api_secret => Ok(()),
            _ => Err(ApiError::authentication()),
        }
    }
}

/// The request body as a JSON object (Frappe also accepts `data=<json>` in a form).
fn body_object(req: &Req) -> Result<Map<String, Value>, ApiError> {
    if req.body.is_empty() {
        return Ok(Map::new());
    }
    let text = String::from_utf8_lossy(&req.body);
    let is_form = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        let form = parse_form(&text);
        return match form.get("data").and_then(Value::as_str) {
            Some(data) => parse_object(data),
            None => Ok(form),
        };
    }
    parse_object(&text)
}

fn parse_object(text: &str) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_str::<Value>(text).map_err(|e| ApiError::json_decode(&e))? {
        Value::Object(m) => Ok(m),
        other => Err(ApiError::validation(format!(
            "Expected a JSON object, got {other}"
        ))),
    }
}

fn wrap(key: &str, v: Value) -> Value {
    let mut m = Map::new();
    m.insert(key.into(), v);
    Value::Object(m)
}

/// Applies one authenticated request to the site.
fn dispatch(site: &mut Site, req: &Req) -> Result<(u16, Value), ApiError> {
    match req.kind {
        Kind::Resource | Kind::V2 => resource(site, req),
        Kind::Method => method(site, req),
        Kind::Other => Ok((404, json!({"exc_type": "DoesNotExistError"}))),
    }
}

fn resource(site: &mut Site, req: &Req) -> Result<(u16, Value), ApiError> {
    let Some(doctype) = req.segments.first().cloned() else {
        return Err(ApiError::not_found("DocType", ""));
    };
    let name = (req.segments.len() > 1).then(|| req.segments[1..].join("/"));
    site.meta(&doctype)?;
    match (req.method.as_str(), name) {
        ("GET", None) => {
            let mut params = req.query.clone();
            if req.kind == Kind::V2
                && let Some(start) = params.remove("start")
            {
                params.insert("limit_start".into(), start);
            }
            Ok((200, wrap("data", site.list(&doctype, &params)?)))
        }
        ("GET", Some(name)) => {
            if doctype == "DocType" {
                let doc = site
                    .stored("DocType", &name)
                    .ok_or_else(|| ApiError::not_found("DocType", &name))?;
                return Ok((200, wrap("data", site.render_doctype(doc, true))));
            }
            Ok((200, wrap("data", site.get(&doctype, &name, true)?)))
        }
        ("POST", None) => {
            let body = body_object(req)?;
            let saved = site.insert(&doctype, &body)?;
            site.count("create", &doctype);
            Ok((200, saved.body("data")))
        }
        ("PUT" | "PATCH", Some(name)) => {
            let body = body_object(req)?;
            let saved = site.update(&doctype, &name, &body)?;
            site.count("update", &doctype);
            Ok((200, saved.body("data")))
        }
        ("DELETE", Some(name)) => {
            site.delete(&doctype, &name)?;
            site.count("delete", &doctype);
            Ok((202, json!({"data": "ok"})))
        }
        (m, _) => Err(ApiError::validation(format!("Method {m} not allowed here"))),
    }
}

fn method(site: &mut Site, req: &Req) -> Result<(u16, Value), ApiError> {
    let name = req.segments.join("/");
    let mut params = req.query.clone();
    if req.method != "GET" {
        params.extend(body_object(req)?);
    }
    let text_param = |k: &str| {
        params
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let doctype = text_param("doctype");
    let message = match name.as_str() {
        "frappe.auth.get_logged_user" => json!("Administrator"),
        "frappe.utils.change_log.get_versions" => json!({
            "frappe": {"title": "Frappe Framework", "description": "Full stack web framework with Python, Javascript, MariaDB, Redis, Node", "branch": "", "version": "15.101.1"},
            "erpnext": {"title": "ERPNext", "description": "ERP made simple", "branch": "", "version": "15.99.1"}
        }),
        "frappe.client.get_list" => site.list(&doctype, &params)?,
        "frappe.client.get_count" => json!(site.count_matching(&doctype, &params)?),
        "frappe.client.get" => {
            let name = match params.get("name").and_then(Value::as_str) {
                Some(n) => n.to_string(),
                None => site
                    .find_one(&doctype, params.get("filters"))?
                    .ok_or_else(|| ApiError::not_found(&doctype, ""))?,
            };
            site.get(&doctype, &name, false)?
        }
        "frappe.client.get_value" => {
            let filters = params.get("filters").or_else(|| params.get("name"));
            match site.find_one(&doctype, filters)? {
                None => json!({}),
                Some(name) => {
                    let doc = site.get(&doctype, &name, false)?;
                    let fields = match params.get("fieldname") {
                        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                            Ok(Value::Array(a)) => a,
                            _ => vec![Value::String(s.clone())],
                        },
                        Some(Value::Array(a)) => a.clone(),
                        _ => vec![json!("name")],
                    };
                    let mut out = Map::new();
                    for f in fields.iter().filter_map(Value::as_str) {
                        out.insert(f.into(), doc.get(f).cloned().unwrap_or(Value::Null));
                    }
                    Value::Object(out)
                }
            }
        }
        "frappe.client.set_value" => {
            let name = text_param("name");
            let mut patch = Map::new();
            match params.get("fieldname") {
                Some(Value::Object(m)) => patch.extend(m.clone()),
                Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                    Ok(Value::Object(m)) => patch.extend(m),
                    _ => {
                        patch.insert(
                            s.clone(),
                            params.get("value").cloned().unwrap_or(Value::Null),
                        );
                    }
                },
                _ => return Err(ApiError::validation("fieldname is required")),
            }
            site.update(&doctype, &name, &patch)?;
            site.count("update", &doctype);
            site.get(&doctype, &name, false)?
        }
        "frappe.client.insert" => {
            let doc = match params.get("doc") {
                Some(Value::String(s)) => parse_object(s)?,
                Some(Value::Object(m)) => m.clone(),
                _ => return Err(ApiError::validation("doc is required")),
            };
            let doctype = doc
                .get("doctype")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let saved = site.insert(&doctype, &doc)?;
            site.count("create", &doctype);
            saved.doc
        }
        "frappe.client.delete" => {
            let name = text_param("name");
            site.delete(&doctype, &name)?;
            site.count("delete", &doctype);
            Value::Null
        }
        other => {
            let mut e = ApiError::validation(format!("Failed to get method for command {other}"));
            e.status = 404;
            return Err(e);
        }
    };
    Ok((200, wrap("message", message)))
}

/// A standard normal draw (Box–Muller).
fn standard_normal(rng: &mut impl rand::Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod latency_tests {
    use super::*;
    use rand::SeedableRng;

    fn draws(d: &Delay, n: usize) -> Vec<Duration> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut v: Vec<Duration> = (0..n).map(|_| d.at(standard_normal(&mut rng))).collect();
        v.sort_unstable();
        v
    }

    fn near(got: Duration, want_ms: f64, tolerance: f64) -> bool {
        (got.as_secs_f64() * 1e3 - want_ms).abs() <= want_ms * tolerance
    }

    #[test]
    fn recorded_delays_keep_the_recorded_medians_spreads_and_extremes() {
        let l = Latency::recorded();
        let put = draws(&l.put, 4001);
        assert!(near(put[2000], 84.9, 0.05), "PUT median {:?}", put[2000]);
        assert!(put[0] >= Duration::from_secs_f64(0.0413), "{:?}", put[0]);
        assert!(
            put[4000] <= Duration::from_secs_f64(0.1194),
            "{:?}",
            put[4000]
        );
        assert!(put[0] < put[4000], "drawn, not fixed");
        let post = draws(&l.post, 4001);
        assert!(
            near(post[2000], 44.65, 0.05),
            "POST median {:?}",
            post[2000]
        );
        assert!(near(post[3800], 78.4, 0.10), "POST p95 {:?}", post[3800]);
        assert!(post[4000] <= Duration::from_secs_f64(0.1328));
        let get = draws(&l.get, 11);
        assert!(get.iter().all(|g| near(*g, 20.2, 0.001)), "{get:?}");
    }
}
