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
use crate::auth::AuthError;
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
            ServiceError::Refused(shared::protocol::SyncRefusal::ClientTooOld { .. }) => {
                (StatusCode::UPGRADE_REQUIRED, "client_too_old")
            }
            ServiceError::Refused(shared::protocol::SyncRefusal::TooLarge { .. }) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
            }
            ServiceError::Refused(_) => (StatusCode::FORBIDDEN, "refused"),
            ServiceError::Storage(_) | ServiceError::Poisoned => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "http.server_error");
        }
        Self {
            status,
            code,
            message: e.to_string(),
        }
    }
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
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let who = state.keys.verify(bearer(&headers)?)?;
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

    let who = state.keys.verify(bearer(&headers)?)?;
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
    let stream = replay.chain(live).map(Ok::<_, std::convert::Infallible>);
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

/// All routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/sync", post(sync))
        .route("/api/v1/events", get(events))
        // The limit counts decompressed bytes, so a small gzip bomb is refused like a large body.
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(tower_http::decompression::RequestDecompressionLayer::new().gzip(true))
        .layer(tower_http::compression::CompressionLayer::new().gzip(true))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(state)
}
