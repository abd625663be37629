//! An Oktopus double: its REST controller as `OktopUSP/oktopus` behaves
//! (`backend/services/controller/internal/api`).
//!
//! * `PUT /api/auth/login` `{"email","password"}`: `200` with a JSON string holding an HS256 JWT
//!   (claims `username`, `email`, `exp` +24 h, `iss: "Oktopus"`), `401 "Invalid Credentials"`.
//! * Every other route needs `Authorization: <jwt>` (raw, no `Bearer`): `401` with an empty body
//!   otherwise (a missing, invalid or expired token).
//! * `GET /api/device?id=<sn>` (one box; `404 "No devices found"`), `GET
//!   /api/device?page_number=&page_size=` (at most 50: `{"devices": […], "total": N}`).
//! * `PUT /api/device/{sn}/{mtp}/get`: `mtp` one of `mqtt|ws|stomp|any` (else `400 "Invalid
//!   MTP, valid options are: mqtt, ws, stomp, any"`); a box not online `503 "Device is
//!   offline"`; else the Go-encoded GetResp of the box's parameters under each path.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::{Value, json};

use crate::hub::oktopus::UspDevice;

/// Oktopus's default signing key (`SECRET_API_KEY`).
const KEY: &[u8] = b"supersecretkey";

#[derive(Debug, Default)]
struct Site {
    devices: Vec<(UspDevice, BTreeMap<String, Value>)>,
    logins: usize,
    /// Tokens issued before this are refused (an expiry, as the tests need it).
    not_before: i64,
}

#[derive(Debug)]
struct Inner {
    email: String,
    password: String,
    site: Mutex<Site>,
    clock: Arc<dyn shared::clock::Clock>,
}

/// The double; clones share one controller.
#[derive(Debug, Clone)]
pub struct OktopusDouble {
    inner: Arc<Inner>,
}

fn lock(m: &Mutex<Site>) -> std::sync::MutexGuard<'_, Site> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Claims {
    username: String,
    email: String,
    exp: i64,
    iat: i64,
    iss: String,
}

impl OktopusDouble {
    pub fn new(email: &str, password: &str, clock: Arc<dyn shared::clock::Clock>) -> Self {
        Self {
            inner: Arc::new(Inner {
                email: email.into(),
                password: password.into(),
                site: Mutex::new(Site::default()),
                clock,
            }),
        }
    }

    /// Adds a box with its parameters (full paths → values).
    pub fn add(&self, device: UspDevice, params: BTreeMap<String, Value>) {
        lock(&self.inner.site).devices.push((device, params));
    }

    /// Sets a box's status (0 offline, 1 associating, 2 online).
    pub fn set_status(&self, sn: &str, status: u8) {
        for (d, _) in &mut lock(&self.inner.site).devices {
            if d.sn == sn {
                d.status = status;
            }
        }
    }

    /// Every token issued so far stops working (as when they expire).
    pub fn expire_tokens(&self) {
        lock(&self.inner.site).not_before = self.inner.clock.now().0 / 1000 + 1;
    }

    /// How many logins it answered.
    pub fn logins(&self) -> usize {
        lock(&self.inner.site).logins
    }

    pub async fn start(&self) -> std::io::Result<String> {
        super::serve_on_loopback(
            Router::new()
                .route("/api/auth/login", put(login))
                .route("/api/device", get(devices))
                .route("/api/device/{sn}/{mtp}/{op}", put(operate))
                .with_state(Arc::clone(&self.inner)),
        )
        .await
    }
}

fn said(status: StatusCode, text: &str) -> Response {
    (status, Json(Value::String(text.to_owned()))).into_response()
}

async fn login(State(inner): State<Arc<Inner>>, Json(body): Json<Value>) -> Response {
    let field = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
    if field("email") != inner.email || field("password") != inner.password {
        return said(StatusCode::UNAUTHORIZED, "Invalid Credentials");
    }
    let now = inner.clock.now().0 / 1000;
    let claims = Claims {
        username: inner.email.clone(),
        email: inner.email.clone(),
        exp: now + 24 * 3600,
        iat: now,
        iss: "Oktopus".into(),
    };
    lock(&inner.site).logins += 1;
    match jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(KEY),
    ) {
        Ok(t) => (StatusCode::OK, Json(Value::String(t))).into_response(),
        Err(e) => said(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// The raw token is valid, not expired, not revoked by [`OktopusDouble::expire_tokens`].
fn authorized(inner: &Inner, headers: &HeaderMap) -> bool {
    let Some(token) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.set_issuer(&["Oktopus"]);
    v.validate_exp = false;
    let Ok(data) =
        jsonwebtoken::decode::<Claims>(token, &jsonwebtoken::DecodingKey::from_secret(KEY), &v)
    else {
        return false;
    };
    let now = inner.clock.now().0 / 1000;
    data.claims.exp > now && data.claims.iat >= lock(&inner.site).not_before
}

async fn devices(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if !authorized(&inner, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let site = lock(&inner.site);
    if let Some(id) = q.get("id") {
        return match site.devices.iter().find(|(d, _)| &d.sn == id) {
            Some((d, _)) => Json(d.clone()).into_response(),
            None => said(StatusCode::NOT_FOUND, "No devices found"),
        };
    }
    if site.devices.is_empty() {
        return said(StatusCode::NOT_FOUND, "No devices found");
    }
    let page: usize = q
        .get("page_number")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let size: usize = q
        .get("page_size")
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .clamp(1, 50);
    let devices: Vec<&UspDevice> = site
        .devices
        .iter()
        .map(|(d, _)| d)
        .skip(page * size)
        .take(size)
        .collect();
    Json(json!({"devices": devices, "total": site.devices.len()})).into_response()
}

async fn operate(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Path((sn, mtp, op)): Path<(String, String, String)>,
    Json(body): Json<Value>,
) -> Response {
    if !authorized(&inner, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if !["mqtt", "ws", "stomp", "any"].contains(&mtp.as_str()) {
        return said(
            StatusCode::BAD_REQUEST,
            "Invalid MTP, valid options are: mqtt, ws, stomp, any",
        );
    }
    let site = lock(&inner.site);
    let Some((device, params)) = site.devices.iter().find(|(d, _)| d.sn == sn) else {
        return said(StatusCode::NOT_FOUND, "No devices found");
    };
    if device.status != 2 {
        return said(StatusCode::SERVICE_UNAVAILABLE, "Device is offline");
    }
    if op != "get" {
        return said(StatusCode::BAD_REQUEST, "the double answers get only");
    }
    let paths: Vec<&str> = body
        .get("param_paths")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let results: Vec<Value> = paths
        .iter()
        .map(|path| {
            // An object path (ending in `.`) resolves to itself with its leaves below.
            let matched: BTreeMap<&str, &Value> = params
                .iter()
                .filter(|(k, _)| k.starts_with(path))
                .map(|(k, v)| (k.as_str(), v))
                .collect();
            if matched.is_empty() {
                return json!({"requested_path": path, "err_code": 7026,
                    "err_msg": "Invalid path", "resolved_path_results": []});
            }
            let base = if path.ends_with('.') {
                (*path).to_owned()
            } else {
                path.rsplit_once('.')
                    .map_or(String::new(), |(b, _)| format!("{b}."))
            };
            let result_params: serde_json::Map<String, Value> = matched
                .into_iter()
                .map(|(k, v)| (k.trim_start_matches(&base).to_owned(), v.clone()))
                .collect();
            json!({"requested_path": path, "err_code": 0, "resolved_path_results": [
                {"resolved_path": base, "result_params": result_params}]})
        })
        .collect();
    Json(json!({"req_path_results": results})).into_response()
}
