//! A GenieACS double: the NBI (`:7557`) over real device documents, as GenieACS's
//! `lib/nbi.ts` behaves (real GenieACS cannot run here: it needs MongoDB).
//!
//! * `GET|HEAD /{collection}/?query=<json>&projection=a,b&skip=N&limit=N`: a JSON array written
//!   as `[\n` + items joined by `,\n` + `\n]`, a `total` header counted before `skip`/`limit`,
//!   `GenieACS-Version` on every answer. Bad JSON in `query` is a `400` whose text starts with
//!   `SyntaxError`; an unknown collection a `404`; other methods a `405` with `Allow: GET, HEAD`.
//! * Queries as GenieACS expands them: a parameter path (last segment not starting with `_`)
//!   matches its `._value`; attributes (`_id`, `_deviceId._SerialNumber`, `_tags`,
//!   `_lastInform`) match as they are; strings with `*` are wildcards, strings that are numbers
//!   or dates also match as such; `$eq $ne $lt $lte $gt $gte $in $nin $exists $regex $or $and`.
//! * A projection returns only the listed branches (and `_id`).
//! * `POST /devices/{id}/tasks[?connection_request][&timeout=ms]`: `404 No such device`; a body
//!   without `connection_request` is queued (`202`); `connection_request` alone is `200` when the
//!   box is reachable, else `504` with the error as reason and body; a body with
//!   `connection_request` is run (`200`, the task JSON) when the box answers, faulted (`202 Task
//!   faulted`, the fault in `/faults` as `<device>:task_<id>`) when it is set to fault, else
//!   queued (`202 Task queued but not processed`). A reboot run resets the uptime and the boot
//!   and inform times; a refresh moves the inform time.
//! * `GET /tasks/?query={"device":…}`, `DELETE /tasks/{id}`.
//!
//! Documents are shared templates with a few values set per box ([`GenieAcsDouble::add_as`]),
//! so the demo can put a real box's document behind each of its hundreds of units.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete};
use serde_json::{Map, Value, json};

use crate::hub::acs::device_id_part;

/// The version the double answers with.
pub const VERSION: &str = "1.2.13+double";

/// The real device documents shipped with the project (see `sync-server/data/genieacs`).
pub fn dumps() -> Vec<(&'static str, Value)> {
    let raw: [(&str, &str); 4] = [
        (
            "XX230v",
            include_str!("../../data/genieacs/XX230v.nbi.json"),
        ),
        ("EX220", include_str!("../../data/genieacs/EX220.nbi.json")),
        (
            "EG8145V5",
            include_str!("../../data/genieacs/EG8145V5.nbi.json"),
        ),
        (
            "BM632w",
            include_str!("../../data/genieacs/BM632w.nbi.json"),
        ),
    ];
    raw.into_iter()
        .filter_map(|(name, text)| {
            let v: Value = serde_json::from_str(text).ok()?;
            // The exports are `GET /devices` answers: arrays of one.
            let doc = match v {
                Value::Array(mut a) if !a.is_empty() => a.swap_remove(0),
                other => other,
            };
            Some((name, doc))
        })
        .collect()
}

/// How a box behaves when GenieACS asks it to connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers connection requests and runs tasks.
    Online,
    /// Connection requests reach it but it starts no session in time: tasks wait in line.
    Slow,
    /// Connection requests fail (`504`); tasks wait for its next call.
    Offline,
    /// Runs tasks and answers each with a CWMP fault.
    Faulty,
}

#[derive(Debug)]
struct Device {
    template: Arc<Value>,
    /// Dotted paths (to attributes or to a leaf's `_value`) set for this box.
    set: HashMap<String, Value>,
    behaviour: Behaviour,
}

impl Device {
    fn id(&self) -> String {
        self.get("_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }

    /// The value at a dotted path, as set for this box or in its template.
    fn get(&self, path: &str) -> Option<&Value> {
        if let Some(v) = self.set.get(path) {
            return Some(v);
        }
        crate::hub::acs::summary::node(&self.template, path)
    }

    /// The document (or the projected branches of it) as GenieACS would send it.
    fn render(&self, projection: Option<&[String]>) -> Value {
        let mut out = match projection {
            None => (*self.template).clone(),
            Some(paths) => {
                let mut o = Value::Object(Map::new());
                for p in paths {
                    if let Some(v) = crate::hub::acs::summary::node(&self.template, p) {
                        put(&mut o, p, v.clone());
                    }
                }
                o
            }
        };
        for (path, v) in &self.set {
            let shown = projection.is_none_or(|ps| {
                ps.iter()
                    .any(|p| path == p || path.starts_with(&format!("{p}.")))
            });
            if shown {
                put(&mut out, path, v.clone());
            }
        }
        if let Value::Object(m) = &mut out {
            m.insert("_id".into(), Value::String(self.id()));
        }
        out
    }
}

/// Sets `v` at a dotted path, making the objects on the way.
fn put(root: &mut Value, path: &str, v: Value) {
    let mut at = root;
    let mut parts = path.split('.').peekable();
    while let Some(k) = parts.next() {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        let Value::Object(m) = at else { return };
        if parts.peek().is_none() {
            m.insert(k.to_owned(), v);
            return;
        }
        at = m
            .entry(k.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

#[derive(Debug, Default)]
struct Site {
    devices: Vec<Device>,
    tasks: Vec<Value>,
    faults: Vec<Value>,
    next_task: u64,
    /// The projections asked for, most recent last (for the tests).
    projections: Vec<Option<Vec<String>>>,
}

#[derive(Debug)]
struct Inner {
    site: Mutex<Site>,
    clock: Arc<dyn shared::clock::Clock>,
}

/// The double; clones share one ACS.
#[derive(Debug, Clone)]
pub struct GenieAcsDouble {
    inner: Arc<Inner>,
}

fn lock(m: &Mutex<Site>) -> std::sync::MutexGuard<'_, Site> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn iso(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

impl GenieAcsDouble {
    pub fn new(clock: Arc<dyn shared::clock::Clock>) -> Self {
        Self {
            inner: Arc::new(Inner {
                site: Mutex::new(Site::default()),
                clock,
            }),
        }
    }

    /// Adds a device document as it is.
    pub fn add(&self, doc: Value) {
        lock(&self.inner.site).devices.push(Device {
            template: Arc::new(doc),
            set: HashMap::new(),
            behaviour: Behaviour::Online,
        });
    }

    /// Adds a box made from `template` with its own serial and MAC, and a last inform of now:
    /// its device id is rebuilt from the template's OUI and product class.
    pub fn add_as(&self, template: &Arc<Value>, serial: &str, mac: Option<&str>) -> String {
        let part = |k: &str| {
            template
                .get("_deviceId")
                .and_then(|d| d.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let (oui, class) = (part("_OUI"), part("_ProductClass"));
        let id = if class.is_empty() {
            format!("{}-{}", device_id_part(&oui), device_id_part(serial))
        } else {
            format!(
                "{}-{}-{}",
                device_id_part(&oui),
                device_id_part(&class),
                device_id_part(serial)
            )
        };
        let root = if template.get("Device").is_some() {
            "Device"
        } else {
            "InternetGatewayDevice"
        };
        let now = iso(self.inner.clock.now().0);
        let mut set = HashMap::new();
        set.insert("_id".to_owned(), json!(id));
        set.insert("_deviceId._SerialNumber".to_owned(), json!(serial));
        set.insert("_lastInform".to_owned(), json!(now));
        set.insert(
            format!("{root}.DeviceInfo.SerialNumber._value"),
            json!(serial),
        );
        if let Some(m) = mac {
            for p in crate::hub::acs::MAC_PARAMETERS {
                if crate::hub::acs::summary::node(template, p).is_some() {
                    set.insert(format!("{p}._value"), json!(m.to_ascii_uppercase()));
                }
            }
        }
        lock(&self.inner.site).devices.push(Device {
            template: Arc::clone(template),
            set,
            behaviour: Behaviour::Online,
        });
        id
    }

    /// How the box `id` answers from now on.
    pub fn set_behaviour(&self, id: &str, behaviour: Behaviour) {
        for d in &mut lock(&self.inner.site).devices {
            if d.id() == id {
                d.behaviour = behaviour;
            }
        }
    }

    /// How many boxes it serves.
    pub fn len(&self) -> usize {
        lock(&self.inner.site).devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tasks waiting for a box's next call.
    pub fn queued(&self, id: &str) -> Vec<Value> {
        lock(&self.inner.site)
            .tasks
            .iter()
            .filter(|t| t.get("device").and_then(Value::as_str) == Some(id))
            .cloned()
            .collect()
    }

    /// The projections the NBI was asked for, oldest first.
    pub fn projections(&self) -> Vec<Option<Vec<String>>> {
        lock(&self.inner.site).projections.clone()
    }

    /// Binds `127.0.0.1:0` and serves on the current tokio runtime; returns the NBI's base URL.
    pub async fn start(&self) -> std::io::Result<String> {
        super::serve_on_loopback(self.router()).await
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/devices/{id}/tasks", any(tasks))
            .route("/tasks/{id}", delete(delete_task))
            .route("/{collection}/", any(collection))
            .route("/{collection}", any(collection))
            .with_state(Arc::clone(&self.inner))
    }
}

fn text(status: StatusCode, reason: Option<&'static str>, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert("GenieACS-Version", HeaderValue::from_static(VERSION));
    if let Some(reason) = reason {
        r.extensions_mut()
            .insert(hyper::ext::ReasonPhrase::from_static(reason.as_bytes()));
    }
    r
}

/// `405`, with the methods that are.
fn not_allowed(allow: &'static str) -> Response {
    let mut r = text(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        "405 Method Not Allowed".into(),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

fn json_answer(status: StatusCode, reason: Option<&'static str>, v: &Value) -> Response {
    let mut r = text(status, reason, v.to_string());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn params(raw: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

const COLLECTIONS: &[&str] = &[
    "devices",
    "tasks",
    "faults",
    "presets",
    "objects",
    "files",
    "provisions",
    "virtual_parameters",
];

async fn collection(
    State(inner): State<Arc<Inner>>,
    method: Method,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    if !COLLECTIONS.contains(&name.as_str()) {
        return text(StatusCode::NOT_FOUND, None, "404 Not Found".into());
    }
    if method != Method::GET && method != Method::HEAD {
        return not_allowed("GET, HEAD");
    }
    let p = params(raw.as_deref());
    let query: Value = match p.get("query").map(|q| serde_json::from_str(q)) {
        None => json!({}),
        Some(Ok(q)) => q,
        Some(Err(e)) => {
            return text(StatusCode::BAD_REQUEST, None, format!("SyntaxError: {e}"));
        }
    };
    let projection: Option<Vec<String>> = p.get("projection").map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    });
    let skip: usize = p.get("skip").and_then(|s| s.parse().ok()).unwrap_or(0);
    let limit: Option<usize> = p
        .get("limit")
        .and_then(|s| s.parse().ok())
        .filter(|l| *l > 0);
    let mut site = lock(&inner.site);
    let matched: Vec<Value> = match name.as_str() {
        "devices" => {
            site.projections.push(projection.clone());
            site.devices
                .iter()
                .filter(|d| matches(&query, true, &|path: &str| d.get(path).cloned()))
                .map(|d| d.render(projection.as_deref()))
                .collect()
        }
        "tasks" | "faults" => {
            let items = if name == "tasks" {
                &site.tasks
            } else {
                &site.faults
            };
            items
                .iter()
                .filter(|t| {
                    matches(&query, false, &|path: &str| {
                        crate::hub::acs::summary::node(t, path).cloned()
                    })
                })
                .cloned()
                .collect()
        }
        _ => Vec::new(),
    };
    drop(site);
    let total = matched.len();
    let page: Vec<String> = matched
        .into_iter()
        .skip(skip)
        .take(limit.unwrap_or(usize::MAX))
        .map(|v| v.to_string())
        .collect();
    let body = if method == Method::HEAD {
        String::new()
    } else {
        format!("[\n{}\n]", page.join(",\n"))
    };
    let mut r = text(StatusCode::OK, None, body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&total.to_string()) {
        r.headers_mut().insert("total", v);
    }
    r
}

/// Whether a document (read through `get`, by dotted path) matches a GenieACS query.
/// `expand`: GenieACS's parameter expansion, which only the devices collection has.
fn matches(query: &Value, expand: bool, get: &dyn Fn(&str) -> Option<Value>) -> bool {
    let Value::Object(m) = query else {
        return false;
    };
    m.iter().all(|(k, cond)| match k.as_str() {
        "$or" => cond
            .as_array()
            .is_some_and(|a| a.iter().any(|q| matches(q, expand, get))),
        "$and" => cond
            .as_array()
            .is_some_and(|a| a.iter().all(|q| matches(q, expand, get))),
        path => {
            let last = path.rsplit('.').next().unwrap_or(path);
            // Parameters match on their value; attributes as they are.
            let actual = if !expand || last.starts_with('_') {
                get(path)
            } else {
                get(&format!("{path}._value"))
            };
            condition(actual.as_ref(), cond)
        }
    })
}

fn condition(actual: Option<&Value>, cond: &Value) -> bool {
    if let Value::Object(ops) = cond
        && ops.keys().all(|k| k.starts_with('$'))
        && !ops.is_empty()
    {
        return ops.iter().all(|(op, arg)| match op.as_str() {
            "$eq" => equals(actual, arg),
            "$ne" => !equals(actual, arg),
            "$in" => arg
                .as_array()
                .is_some_and(|a| a.iter().any(|x| equals(actual, x))),
            "$nin" => arg
                .as_array()
                .is_some_and(|a| !a.iter().any(|x| equals(actual, x))),
            "$exists" => arg.as_bool() == Some(actual.is_some()),
            "$lt" => order(actual, arg).is_some_and(std::cmp::Ordering::is_lt),
            "$lte" => order(actual, arg).is_some_and(std::cmp::Ordering::is_le),
            "$gt" => order(actual, arg).is_some_and(std::cmp::Ordering::is_gt),
            "$gte" => order(actual, arg).is_some_and(std::cmp::Ordering::is_ge),
            "$regex" => {
                let (Some(Value::String(s)), Some(re)) = (actual, arg.as_str()) else {
                    return false;
                };
                regex::Regex::new(re).is_ok_and(|r| r.is_match(s))
            }
            _ => false,
        });
    }
    equals(actual, cond)
}

/// Equality as GenieACS expands it: arrays contain, strings also as numbers, dates and
/// `*`-wildcards.
fn equals(actual: Option<&Value>, expected: &Value) -> bool {
    let Some(actual) = actual else {
        return expected.is_null();
    };
    if let Value::Array(items) = actual {
        return items.iter().any(|i| equals(Some(i), expected));
    }
    if actual == expected {
        return true;
    }
    match (actual, expected) {
        (Value::Number(a), Value::String(e)) => e.trim().parse::<f64>().ok() == a.as_f64(),
        (Value::String(a), Value::String(e)) => {
            if e.contains('*') {
                let pattern = format!(
                    "^{}$",
                    e.split('*')
                        .map(regex::escape)
                        .collect::<Vec<_>>()
                        .join(".*")
                );
                return regex::Regex::new(&pattern).is_ok_and(|r| r.is_match(a));
            }
            matches!((date(a), date(e)), (Some(x), Some(y)) if x == y)
        }
        _ => false,
    }
}

fn date(s: &str) -> Option<jiff::Timestamp> {
    s.parse::<jiff::Timestamp>()
        .ok()
        .or_else(|| jiff::Timestamp::strptime("%Y-%m-%d %H:%M:%S %z", s).ok())
}

fn order(actual: Option<&Value>, bound: &Value) -> Option<std::cmp::Ordering> {
    match (actual?, bound) {
        (Value::Number(a), b) => {
            let b = b.as_f64().or_else(|| b.as_str()?.trim().parse().ok())?;
            a.as_f64()?.partial_cmp(&b)
        }
        (Value::String(a), Value::String(b)) => match (date(a), date(b)) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => Some(a.as_str().cmp(b.as_str())),
        },
        _ => None,
    }
}

async fn tasks(
    State(inner): State<Arc<Inner>>,
    method: Method,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    if method != Method::POST {
        return not_allowed("POST");
    }
    let p = params(raw.as_deref());
    let connection_request = p.contains_key("connection_request");
    let now = inner.clock.now().0;
    let mut site = lock(&inner.site);
    let Some(at) = site.devices.iter().position(|d| d.id() == id) else {
        return text(StatusCode::NOT_FOUND, None, "No such device".into());
    };
    let behaviour = site.devices[at].behaviour;
    if body.iter().all(u8::is_ascii_whitespace) {
        if !connection_request {
            return text(StatusCode::BAD_REQUEST, None, "Empty body".into());
        }
        return match behaviour {
            Behaviour::Offline => text(
                StatusCode::GATEWAY_TIMEOUT,
                Some("Device is offline"),
                "Device is offline\n".into(),
            ),
            _ => text(StatusCode::OK, None, String::new()),
        };
    }
    let mut task: Value = match serde_json::from_slice(&body) {
        Ok(t @ Value::Object(_)) => t,
        Ok(_) => {
            return text(
                StatusCode::BAD_REQUEST,
                None,
                "SyntaxError: not an object".into(),
            );
        }
        Err(e) => return text(StatusCode::BAD_REQUEST, None, format!("SyntaxError: {e}")),
    };
    site.next_task += 1;
    let task_id = format!("{:016x}{:08x}", now, site.next_task);
    if let Value::Object(m) = &mut task {
        m.insert("_id".into(), json!(task_id));
        m.insert("device".into(), json!(id));
        m.insert("timestamp".into(), json!(iso(now)));
    }
    if !connection_request {
        site.tasks.push(task.clone());
        return json_answer(StatusCode::ACCEPTED, None, &task);
    }
    match behaviour {
        Behaviour::Online => {
            let dev = &mut site.devices[at];
            let root = if dev.template.get("Device").is_some() {
                "Device"
            } else {
                "InternetGatewayDevice"
            };
            dev.set.insert("_lastInform".into(), json!(iso(now)));
            if task.get("name").and_then(Value::as_str) == Some("reboot") {
                dev.set.insert("_lastBoot".into(), json!(iso(now)));
                dev.set
                    .insert(format!("{root}.DeviceInfo.UpTime._value"), json!(0));
            }
            json_answer(StatusCode::OK, None, &task)
        }
        Behaviour::Faulty => {
            site.faults.push(json!({
                "_id": format!("{id}:task_{task_id}"),
                "device": id,
                "channel": format!("task_{task_id}"),
                "code": "cwmp.9002",
                "message": "Internal error",
                "detail": {"faultCode": "9002", "faultString": "Internal error"},
                "retries": 0,
                "timestamp": iso(now),
            }));
            site.tasks.push(task.clone());
            json_answer(StatusCode::ACCEPTED, Some("Task faulted"), &task)
        }
        Behaviour::Slow | Behaviour::Offline => {
            site.tasks.push(task.clone());
            json_answer(
                StatusCode::ACCEPTED,
                Some("Task queued but not processed"),
                &task,
            )
        }
    }
}

async fn delete_task(State(inner): State<Arc<Inner>>, Path(id): Path<String>) -> Response {
    let mut site = lock(&inner.site);
    let before = site.tasks.len();
    site.tasks
        .retain(|t| t.get("_id").and_then(Value::as_str) != Some(id.as_str()));
    if site.tasks.len() == before {
        text(StatusCode::NOT_FOUND, None, "Task not found".into())
    } else {
        text(StatusCode::OK, None, String::new())
    }
}
