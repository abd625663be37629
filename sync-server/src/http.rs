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
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(state)
}
