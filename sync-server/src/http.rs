//! The HTTP edge: routes, extractors and the one place that picks status codes.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use crate::AppState;
use shared::ids::{DeviceId, DocId, Role, TechnicianId};
use shared::sync::server::Subject;

use crate::auth::{AuthError, Session};
use crate::service::ServiceError;

/// Largest accepted sync request body.
pub const MAX_BODY: usize = 32 * 1024 * 1024;

/// An error as the client sees it: a stable code and a message, never internals.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(Body {
                code: self.code,
                message: &self.message,
            }),
        )
            .into_response()
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: e.to_string(),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let (status, code) = match &e {
            ServiceError::BadFrame(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ServiceError::WrongAuthor => (StatusCode::FORBIDDEN, "wrong_author"),
            ServiceError::DeviceBound => (StatusCode::FORBIDDEN, "device_bound"),
            ServiceError::Refused(
                shared::protocol::SyncRefusal::ClientTooOld { .. }
                | shared::protocol::SyncRefusal::AppTooOld { .. },
            ) => (StatusCode::UPGRADE_REQUIRED, "client_too_old"),
            ServiceError::Refused(shared::protocol::SyncRefusal::TooLarge { .. }) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
            }
            ServiceError::Refused(_) => (StatusCode::FORBIDDEN, "refused"),
            ServiceError::Engine(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ServiceError::Storage(_) | ServiceError::Poisoned => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
        };
        // Server-side failures are logged in full and answered with a fixed message.
        let message = if status.is_server_error() {
            tracing::error!(error = %e, "http.server_error");
            "the server cannot take changes right now; they stay on the device and sync later"
                .to_owned()
        } else {
            e.to_string()
        };
        Self {
            status,
            code,
            message,
        }
    }
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
        }
    }
    fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: message.into(),
        }
    }
}

/// A valid, unrevoked session token.
fn session(state: &AppState, headers: &HeaderMap) -> Result<Session, ApiError> {
    let s = state.keys.verify_session(bearer(headers)?)?;
    if state.sync.is_session_revoked(&s) {
        return Err(AuthError::Invalid.into());
    }
    Ok(s)
}

/// Token times are wall-clock Unix seconds: JWT expiry is checked against the system clock.
fn now_s() -> i64 {
    use shared::clock::Clock;
    crate::SystemClock.now().0 / 1000
}

#[derive(Serialize)]
struct TokenAnswer {
    token: String,
    expires_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<String>,
}

#[derive(serde::Deserialize)]
struct MagicRequest {
    technician: String,
    /// Validity in hours: 24 by default, 1 to 72.
    hours: Option<i64>,
}

/// A valid, unrevoked session, checked from the headers before any body is read (so an
/// unauthenticated client cannot make the server buffer a large body).
struct Authed(Session);

impl axum::extract::FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        session(state, &parts.headers).map(Authed)
    }
}

/// Bodies of the auth routes are small JSON documents.
const MAX_AUTH_BODY: usize = 16 * 1024;

/// `POST /api/v1/auth/magic`: the office makes a one-time login link for a technician.
async fn magic(
    State(state): State<AppState>,
    Authed(who): Authed,
    Json(req): Json<MagicRequest>,
) -> Result<Json<TokenAnswer>, ApiError> {
    if !who.device.author.role.is_office() {
        return Err(ApiError::forbidden("only the office makes login links"));
    }
    let tech: TechnicianId = req
        .technician
        .parse()
        .map_err(|_| ApiError::bad_request("`technician` is not a technician id"))?;
    let hours = req.hours.unwrap_or(24);
    if !(1..=72).contains(&hours) {
        return Err(ApiError::bad_request("`hours` must be between 1 and 72"));
    }
    // Only for a technician who exists and is active: a link for anyone else would let its
    // holder sync as no one, or as someone who has left.
    let service = Arc::clone(&state.sync);
    let active = tokio::task::spawn_blocking(move || {
        service.read(|e| match e.entity(tech.doc()) {
            Some(shared::model::AnyEntity::Technician(t)) => t.active,
            _ => false,
        })
    })
    .await
    .map_err(|_| ServiceError::Poisoned)??;
    if !active {
        return Err(ApiError::bad_request(
            "no active technician has this id: login links are only for active technicians",
        ));
    }
    let now = now_s();
    let token = state.keys.issue_magic(tech, now, hours * 3600)?;
    let link = Some(format!("fsm://login?token={token}"));
    Ok(Json(TokenAnswer {
        token,
        expires_at: now + hours * 3600,
        link,
    }))
}

#[derive(serde::Deserialize)]
struct ExchangeRequest {
    magic: String,
    /// The device the session is for (generated by the app on first run).
    device: String,
}

/// `POST /api/v1/auth/exchange`: a technician's device trades a login link (once) for a session.
async fn exchange(
    State(state): State<AppState>,
    Json(req): Json<ExchangeRequest>,
) -> Result<Json<TokenAnswer>, ApiError> {
    let m = state.keys.verify_magic(&req.magic)?;
    let device = DeviceId(
        req.device
            .parse::<DocId>()
            .map_err(|_| ApiError::bad_request("`device` is not a device id"))?,
    );
    let service = Arc::clone(&state.sync);
    let (jti, exp) = (m.jti.clone(), m.exp);
    let first_use = tokio::task::spawn_blocking(move || service.revoke(&jti, exp))
        .await
        .map_err(|_| ServiceError::Poisoned)??;
    if !first_use {
        return Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "link_used",
            message: "this login link was already used".into(),
        });
    }
    let now = now_s();
    let (token, expires_at) =
        state
            .keys
            .issue_session(device, Role::Technician, Some(m.technician), now, now)?;
    tracing::info!(technician = %m.technician, %device, "auth.link_redeemed");
    Ok(Json(TokenAnswer {
        token,
        expires_at,
        link: None,
    }))
}

/// `POST /api/v1/auth/refresh`: a new session for the same device. The old token is revoked
/// first, atomically in the store: of concurrent refreshes with one token, exactly one gets a
/// new token and the others 401, so a stolen copy refreshed in parallel cannot fork the session.
async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<TokenAnswer>, ApiError> {
    let who = session(&state, &headers)?;
    let tech = match who.device.subject {
        Subject::Technician(t) => Some(t),
        Subject::Office => None,
    };
    let service = Arc::clone(&state.sync);
    let (jti, exp) = (who.jti.clone(), who.exp);
    let first_use = tokio::task::spawn_blocking(move || service.revoke(&jti, exp))
        .await
        .map_err(|_| ServiceError::Poisoned)??;
    if !first_use {
        return Err(AuthError::Invalid.into());
    }
    let (token, expires_at) = state.keys.issue_session(
        who.device.author.device,
        who.device.author.role,
        tech,
        now_s(),
        who.auth,
    )?;
    Ok(Json(TokenAnswer {
        token,
        expires_at,
        link: None,
    }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    /// One token (a session or a login link).
    token: Option<String>,
    /// Every session of this device so far (a lost phone).
    device: Option<String>,
    /// Every session of this technician so far, on every device (someone who left).
    technician: Option<String>,
}

/// `POST /api/v1/auth/revoke`: an admin revokes one token, every session of a device, or every
/// session of a technician. Revoked sessions get 401 at once, and their live streams end.
async fn revoke(
    State(state): State<AppState>,
    Authed(who): Authed,
    Json(req): Json<RevokeRequest>,
) -> Result<StatusCode, ApiError> {
    use crate::revocation::Revocation;
    if who.device.author.role != Role::Admin {
        return Err(ApiError::forbidden("only an admin revokes tokens"));
    }
    let now = now_s();
    // Kept until nothing it covers can still be valid.
    let until = now + state.keys.lifetimes().ttl_s.max(72 * 3600);
    let id = |s: &str, what: &str| {
        s.parse::<DocId>()
            .map_err(|_| ApiError::bad_request(format!("`{what}` is not an id")))
    };
    let (what, exp) = match (&req.token, &req.device, &req.technician) {
        (Some(t), None, None) => match (state.keys.verify_session(t), state.keys.verify_magic(t)) {
            (Ok(s), _) => (Revocation::Token(s.jti), s.exp),
            (_, Ok(m)) => (Revocation::Token(m.jti), m.exp),
            _ => return Err(ApiError::bad_request("not a valid token of this server")),
        },
        (None, Some(d), None) => (
            Revocation::Device {
                device: DeviceId(id(d, "device")?),
                upto: now,
            },
            until,
        ),
        (None, None, Some(t)) => (
            Revocation::Technician {
                technician: TechnicianId(id(t, "technician")?),
                upto: now,
            },
            until,
        ),
        _ => {
            return Err(ApiError::bad_request(
                "name exactly one of `token`, `device` or `technician`",
            ));
        }
    };
    tracing::info!(revoked = %what.key(), by = %who.device.author.device, "auth.revoked");
    let service = Arc::clone(&state.sync);
    tokio::task::spawn_blocking(move || service.revoke_key(&what, exp))
        .await
        .map_err(|_| ServiceError::Poisoned)??;
    Ok(StatusCode::NO_CONTENT)
}

fn bearer(headers: &HeaderMap) -> Result<&str, AuthError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(AuthError::Missing)
}

async fn sync(
    State(state): State<AppState>,
    Authed(who): Authed,
    body: Bytes,
) -> Result<Response, ApiError> {
    let who = who.device;
    let service = Arc::clone(&state.sync);
    let answer = tokio::task::spawn_blocking(move || service.exchange(who, &body))
        .await
        .map_err(|_| ServiceError::Poisoned)??;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], answer).into_response())
}

/// `GET /api/v1/events`: live events for dispatchers (SSE), resumable with `Last-Event-ID`.
async fn events(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures_util::StreamExt;
    use tokio_stream::wrappers::BroadcastStream;
    use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

    let authed = session(&state, &headers)?;
    let expires_in = u64::try_from(authed.exp - now_s()).unwrap_or(0);
    let who = authed.device;
    // The stream also ends as soon as its session is revoked.
    let revoked = {
        let (service, mut changes) = (Arc::clone(&state.sync), state.sync.revocations());
        async move {
            while changes.changed().await.is_ok() {
                if service.is_session_revoked(&authed) {
                    return;
                }
            }
            std::future::pending::<()>().await;
        }
    };
    if !who.author.role.is_office() {
        return Err(ApiError {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: "live events are for dispatchers".into(),
        });
    }
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let service = Arc::clone(&state.sync);
    let (missed, rx) = tokio::task::spawn_blocking(move || service.subscribe(after))
        .await
        .map_err(|_| ServiceError::Poisoned)?;
    let last_replayed = missed.last().map(crate::events::LiveEvent::id).unwrap_or(0);
    let to_sse = |ev: &crate::events::LiveEvent| {
        Event::default()
            .id(ev.id().to_string())
            .event(ev.name())
            .json_data(ev)
            .unwrap_or_else(|_| Event::default().comment("unencodable event"))
    };
    let replay = futures_util::stream::iter(missed.iter().map(to_sse).collect::<Vec<_>>());
    let live = BroadcastStream::new(rx).filter_map(move |r| {
        let ev = match r {
            Ok(ev) if ev.id() > last_replayed || last_replayed == 0 => Some(to_sse(&ev)),
            Ok(_) => None,
            // Fell behind: tell the dispatcher's app to sync, then go on.
            Err(BroadcastStreamRecvError::Lagged(_)) => {
                Some(to_sse(&crate::events::LiveEvent::Resync {
                    id: last_replayed,
                }))
            }
        };
        std::future::ready(ev)
    });
    // The stream ends when the token expires (the app refreshes and reconnects with
    // Last-Event-ID) or is revoked.
    let until_expiry = tokio::time::sleep(std::time::Duration::from_secs(expires_in));
    let end = futures_util::future::select(Box::pin(until_expiry), Box::pin(revoked));
    let stream = replay
        .chain(live)
        .take_until(end)
        .map(Ok::<_, std::convert::Infallible>);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
        .into_response())
}

async fn health() -> &'static str {
    "ok"
}

async fn ready(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    if state.sync.is_ready() {
        Ok("ready")
    } else {
        Err(ServiceError::Poisoned.into())
    }
}

/// ERPNext webhook bodies name a record; they are small.
const MAX_WEBHOOK_BODY: usize = 64 * 1024;

fn erp_edge(state: &AppState) -> Result<&Arc<crate::ErpEdge>, ApiError> {
    state.erp.as_ref().ok_or(ApiError {
        status: StatusCode::NOT_FOUND,
        code: "erpnext_off",
        message: "the ERPNext bridge is not configured on this server".into(),
    })
}

fn office(who: &Session) -> Result<(), ApiError> {
    if who.device.author.role.is_office() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only the office sees the ERPNext inbox",
        ))
    }
}

#[derive(serde::Deserialize)]
struct WebhookBody {
    doctype: String,
    name: String,
}

/// `POST /api/v1/erpnext/webhook`: ERPNext says a record changed. Verified (HMAC-SHA256 of the
/// body, `X-Frappe-Webhook-Signature`) before anything else; then the record is re-read in the
/// background (polling remains the safety net, so an accepted webhook loses nothing if we stop).
async fn erp_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let edge = erp_edge(&state)?;
    let Some(secret) = &edge.webhook_secret else {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            code: "webhooks_off",
            message: "ERPNext webhooks are not configured (erpnext.webhook_secret)".into(),
        });
    };
    let signature = headers
        .get("x-frappe-webhook-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !crate::erpnext::verify_webhook(secret.expose().as_bytes(), &body, signature) {
        return Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "bad_signature",
            message: "the webhook signature does not match".into(),
        });
    }
    let hook: WebhookBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("webhook body: {e}")))?;
    if crate::erpnext::mapping::by_doctype(&hook.doctype).is_none() {
        // Verified, but not a doctype the bridge maps: nothing to do.
        return Ok(StatusCode::NO_CONTENT);
    }
    edge.bridge.refresh(&hook.doctype, &hook.name);
    Ok(StatusCode::ACCEPTED)
}

/// `GET /api/v1/erpnext/issues`: records ERPNext refused, for the dispatchers' inbox.
async fn erp_issues(
    State(state): State<AppState>,
    Authed(who): Authed,
) -> Result<Json<Vec<crate::erpnext::Issue>>, ApiError> {
    office(&who)?;
    let edge = erp_edge(&state)?;
    Ok(Json(edge.bridge.issues().map_err(bridge_error)?))
}

/// `POST /api/v1/erpnext/issues/{doc}/retry`: after fixing the data, send it again.
async fn erp_retry(
    State(state): State<AppState>,
    Authed(who): Authed,
    axum::extract::Path(doc): axum::extract::Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    office(&who)?;
    let edge = erp_edge(&state)?;
    let doc: DocId = doc
        .parse()
        .map_err(|_| ApiError::bad_request("not a document id"))?;
    let outcome = edge.bridge.retry(doc).await.map_err(bridge_error)?;
    let open = edge
        .bridge
        .issues()
        .map_err(bridge_error)?
        .into_iter()
        .find(|i| i.doc == doc);
    Ok(Json(serde_json::json!({
        "outcome": format!("{outcome:?}"),
        "issue": open,
    })))
}

/// `GET /api/v1/erpnext/status`: the bridge's counters and last error.
async fn erp_status(
    State(state): State<AppState>,
    Authed(who): Authed,
) -> Result<Json<crate::erpnext::BridgeStats>, ApiError> {
    office(&who)?;
    Ok(Json(erp_edge(&state)?.bridge.stats()))
}

#[allow(
    clippy::needless_pass_by_value,
    reason = "used as `map_err(bridge_error)`"
)]
fn bridge_error(e: crate::erpnext::bridge::BridgeError) -> ApiError {
    tracing::warn!(error = %e, "erpnext.request_failed");
    ApiError {
        status: StatusCode::BAD_GATEWAY,
        code: "erpnext_unavailable",
        message: format!("ERPNext could not be reached or refused: {e}"),
    }
}

fn photo_store(state: &AppState) -> Result<Arc<crate::photos::PhotoStore>, ApiError> {
    state.photos.clone().ok_or(ApiError {
        status: StatusCode::NOT_FOUND,
        code: "photos_off",
        message: "this server keeps no photos (no data folder)".into(),
    })
}

fn photo_error(e: crate::photos::PhotoError) -> ApiError {
    use crate::photos::PhotoError;
    match e {
        PhotoError::Io(e) => {
            tracing::error!(error = %e, "photos.io_failed");
            ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "unavailable",
                message: "the server cannot store photos right now; they stay on the device".into(),
            }
        }
        e => ApiError::bad_request(e.to_string()),
    }
}

/// `PUT /api/v1/photos/{sha256}`: a photo or signature from a device, checked against its name.
/// `201` when stored, `200` when it was already there (a retried upload).
async fn put_photo(
    State(state): State<AppState>,
    Authed(who): Authed,
    axum::extract::Path(sha): axum::extract::Path<String>,
    request: axum::extract::Request,
) -> Result<StatusCode, ApiError> {
    let store = photo_store(&state)?;
    store.check_name(&sha).map_err(photo_error)?;
    // Before the body is read: only a photo a job of this device's names, and within its
    // daily allowance.
    let service = Arc::clone(&state.sync);
    let (device, wanted) = (who.device, sha.clone());
    let wanted = tokio::task::spawn_blocking(move || service.wants_photo(device, &wanted))
        .await
        .map_err(|_| ServiceError::Poisoned)??;
    if !wanted {
        return Err(ApiError::forbidden(
            "no job of this device names this photo: sync first, then upload",
        ));
    }
    let body = axum::body::to_bytes(request.into_body(), crate::photos::MAX_PHOTO)
        .await
        .map_err(|e| ApiError::bad_request(format!("the photo could not be read: {e}")))?;
    if !store.allow(who.device.author.device, body.len(), now_s()) {
        return Err(ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "upload_quota",
            message:
                "this device uploaded its daily allowance of photos; the rest waits until tomorrow"
                    .into(),
        });
    }
    let stored = tokio::task::spawn_blocking(move || store.put(&sha, &body))
        .await
        .map_err(|_| photo_error(std::io::Error::other("photo task stopped").into()))?
        .map_err(photo_error)?;
    Ok(match stored {
        crate::photos::Stored::New => StatusCode::CREATED,
        crate::photos::Stored::AlreadyThere => StatusCode::OK,
    })
}

/// `GET /api/v1/photos/{sha256}`: a stored photo, for the office.
async fn get_photo(
    State(state): State<AppState>,
    Authed(who): Authed,
    axum::extract::Path(sha): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    office(&who)?;
    let store = photo_store(&state)?;
    let bytes = tokio::task::spawn_blocking(move || store.get(&sha))
        .await
        .map_err(|_| photo_error(std::io::Error::other("photo task stopped").into()))?
        .map_err(photo_error)?;
    match bytes {
        Some(b) => Ok(([(header::CONTENT_TYPE, "application/octet-stream")], b).into_response()),
        None => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: "no such photo".into(),
        }),
    }
}

/// All routes.
/// Requests one device may make: a burst (a sync after a day offline, then its photos), then a
/// steady rate. Past it: 429 with `Retry-After`.
const RATE_BURST: u32 = 120;
const RATE_PER_S: u32 = 20;
/// A request body that stops arriving for this long is dropped.
const BODY_IDLE: std::time::Duration = std::time::Duration::from_secs(30);
/// No request (but the live stream) takes longer than this.
const REQUEST_MAX: std::time::Duration = std::time::Duration::from_secs(300);

type Limiter = governor::DefaultKeyedRateLimiter<DeviceId>;

#[derive(Clone)]
struct RateLimit {
    keys: Arc<crate::auth::Keys>,
    per_device: Arc<Limiter>,
}

/// Per-device rate limits, for requests with a valid session (others are refused or verified
/// by their handler before any work).
async fn rate_limit(
    State(limit): State<RateLimit>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use governor::clock::Clock as _;
    let device = bearer(req.headers())
        .ok()
        .and_then(|t| limit.keys.verify_session(t).ok())
        .map(|s| s.device.author.device);
    if let Some(device) = device
        && let Err(not_until) = limit.per_device.check_key(&device)
    {
        if limit.per_device.len() > 100_000 {
            limit.per_device.retain_recent();
        }
        let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
        let secs = wait.as_secs() + 1;
        let mut resp = ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "rate_limited",
            message: format!("too many requests from this device: retry in {secs} s"),
        }
        .into_response();
        if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }
    next.run(req).await
}

pub fn router(state: AppState) -> Router {
    let quota =
        governor::Quota::per_second(std::num::NonZeroU32::MIN.saturating_add(RATE_PER_S - 1))
            .allow_burst(std::num::NonZeroU32::MIN.saturating_add(RATE_BURST - 1));
    let limit = RateLimit {
        keys: Arc::clone(&state.keys),
        per_device: Arc::new(governor::RateLimiter::keyed(quota)),
    };
    let requests = Router::new()
        .route("/api/v1/sync", post(sync))
        .route(
            "/api/v1/auth/magic",
            post(magic).layer(DefaultBodyLimit::max(MAX_AUTH_BODY)),
        )
        .route(
            "/api/v1/auth/exchange",
            post(exchange).layer(DefaultBodyLimit::max(MAX_AUTH_BODY)),
        )
        .route("/api/v1/auth/refresh", post(refresh))
        .route(
            "/api/v1/auth/revoke",
            post(revoke).layer(DefaultBodyLimit::max(MAX_AUTH_BODY)),
        )
        // The limit counts decompressed bytes, so a small gzip bomb is refused like a large body.
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(tower_http::decompression::RequestDecompressionLayer::new().gzip(true))
        .layer(tower_http::compression::CompressionLayer::new().gzip(true))
        .route(
            "/api/v1/erpnext/webhook",
            post(erp_webhook).layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY)),
        )
        .route("/api/v1/erpnext/issues", get(erp_issues))
        .route("/api/v1/erpnext/issues/{doc}/retry", post(erp_retry))
        .route("/api/v1/erpnext/status", get(erp_status))
        .route(
            "/api/v1/photos/{sha}",
            get(get_photo)
                .put(put_photo)
                .layer(DefaultBodyLimit::max(crate::photos::MAX_PHOTO)),
        )
        .route("/health", get(health))
        .route("/ready", get(ready))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_MAX,
        ));
    // The live stream lasts as long as its session.
    let stream = Router::new()
        .route("/api/v1/events", get(events))
        .layer(tower_http::compression::CompressionLayer::new().gzip(true));
    requests
        .merge(stream)
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(BODY_IDLE))
        .layer(axum::middleware::from_fn_with_state(limit, rate_limit))
        .with_state(state)
}
