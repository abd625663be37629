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

use crate::audit::{AuditEvent, RefusalReason};
use crate::auth::{AuthError, Session};
use crate::service::ServiceError;

mod devices;
mod hub;
mod network;

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
    /// The text carrying the link to the technician's phone (its outbox entry), when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    sms: Option<i64>,
}

#[derive(serde::Deserialize)]
struct MagicRequest {
    technician: String,
    /// Validity in hours: 24 by default, 1 to 72.
    hours: Option<i64>,
    /// Also text the link to the technician's phone.
    #[serde(default)]
    sms: bool,
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
    let (active, phone) = tokio::task::spawn_blocking(move || {
        service.read(|e| match e.entity(tech.doc()) {
            Some(shared::model::AnyEntity::Technician(t)) => {
                (t.active, t.phone.as_ref().map(|p| p.as_str().to_owned()))
            }
            _ => (false, None),
        })
    })
    .await
    .map_err(|_| ServiceError::Poisoned)??;
    if !active {
        return Err(ApiError::bad_request(
            "no active technician has this id: login links are only for active technicians",
        ));
    }
    // Checked before the link exists: nothing is issued that cannot be sent as asked.
    let sms = match (req.sms, &state.hub) {
        (false, _) => None,
        (true, Some(hub)) if hub.twilio.is_some() => Some((
            Arc::clone(hub),
            phone.ok_or_else(|| {
                ApiError::bad_request("this technician has no phone number to text the link to")
            })?,
        )),
        (true, _) => {
            return Err(ApiError {
                status: StatusCode::NOT_FOUND,
                code: "twilio_off",
                message: "texts are not configured on this server (twilio.account_sid)".into(),
            });
        }
    };
    let now = now_s();
    let token = state.keys.issue_magic(tech, now, hours * 3600)?;
    state.sync.audit(AuditEvent::LinkIssued {
        technician: tech,
        by: who.device.author.device,
    });
    let link = state.links.login_link(&token);
    let sent = match sms {
        Some((hub, phone)) => {
            let body = format!(
                "Votre lien de connexion à Terrain (valide {hours} h, une seule fois) : {link}"
            );
            let shown = body.replace(&token, "•••");
            let by = format!(
                "{}:{}",
                who.device.author.role.as_str(),
                who.device.author.device
            );
            let at = state.sync.now().0;
            let id = tokio::task::spawn_blocking(move || {
                hub.sms.queue_secret(&phone, &body, &shown, &by, at)
            })
            .await
            .map_err(|_| ServiceError::Poisoned)?
            .map_err(|e| match e {
                crate::hub::sms::SmsError::OptedOut => ApiError {
                    status: StatusCode::CONFLICT,
                    code: "opted_out",
                    message: e.to_string(),
                },
                other => {
                    tracing::error!(error = %other, "auth.link_text_not_queued");
                    ApiError {
                        status: StatusCode::SERVICE_UNAVAILABLE,
                        code: "hub_unavailable",
                        message: "the text could not be queued; try again".into(),
                    }
                }
            })?;
            Some(id)
        }
        None => None,
    };
    Ok(Json(TokenAnswer {
        token,
        expires_at: now + hours * 3600,
        link: Some(link),
        sms: sent,
    }))
}

#[derive(serde::Deserialize)]
struct ExchangeRequest {
    magic: String,
    /// The device the session is for (generated by the app on first run).
    device: String,
}

/// `POST /api/v1/auth/exchange`: a device trades a login link (once) for a session: a
/// technician's link, or an office account's.
async fn exchange(
    State(state): State<AppState>,
    Json(req): Json<ExchangeRequest>,
) -> Result<Json<TokenAnswer>, ApiError> {
    let account_link = state.keys.verify_account_link(&req.magic);
    let magic = state.keys.verify_magic(&req.magic);
    let device = DeviceId(
        req.device
            .parse::<DocId>()
            .map_err(|_| ApiError::bad_request("`device` is not a device id"))?,
    );
    let (jti, exp) = match (&magic, &account_link) {
        (Ok(m), _) => (m.jti.clone(), m.exp),
        (_, Ok(a)) => (a.jti.clone(), a.exp),
        (Err(e), _) => return Err(e.clone().into()),
    };
    // An office account's link: only while the account is active, with its current role.
    let account = match &account_link {
        Ok(a) => {
            let found = load_account(&state, a.account).await?;
            match found.filter(|acc| acc.active) {
                Some(acc) => Some(acc),
                None => {
                    state.sync.audit(AuditEvent::LoginRefused {
                        device,
                        reason: RefusalReason::AccountDisabled,
                    });
                    return Err(ApiError {
                        status: StatusCode::UNAUTHORIZED,
                        code: "account_disabled",
                        message: "this account is disabled: ask an admin".into(),
                    });
                }
            }
        }
        Err(_) => None,
    };
    let service = Arc::clone(&state.sync);
    let first_use = tokio::task::spawn_blocking(move || service.revoke(&jti, exp))
        .await
        .map_err(|_| ServiceError::Poisoned)??;
    if !first_use {
        if let Ok(m) = &magic {
            state.sync.audit(AuditEvent::LinkReused {
                technician: m.technician,
                device,
            });
        } else {
            state.sync.audit(AuditEvent::LoginRefused {
                device,
                reason: RefusalReason::LinkReused,
            });
        }
        return Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "link_used",
            message: "this login link was already used".into(),
        });
    }
    let now = now_s();
    let (token, expires_at) = match (&magic, account) {
        (Ok(m), _) => {
            let now = state
                .sync
                .session_time(now, device, Some(m.technician), None);
            tracing::info!(technician = %m.technician, %device, "auth.link_redeemed");
            state.sync.audit(AuditEvent::LinkRedeemed {
                technician: m.technician,
                device,
            });
            state
                .keys
                .issue_session(device, Role::Technician, Some(m.technician), now, now)?
        }
        (_, Some(acc)) => {
            let now = state.sync.session_time(now, device, None, Some(acc.id));
            state.sync.audit(AuditEvent::AccountSignedIn {
                account: acc.id,
                device,
            });
            state.keys.issue_account_session(
                device,
                acc.role.role(),
                None,
                Some(acc.id),
                now,
                now,
            )?
        }
        _ => return Err(AuthError::Invalid.into()),
    };
    Ok(Json(TokenAnswer {
        token,
        expires_at,
        link: None,
        sms: None,
    }))
}

async fn load_account(
    state: &AppState,
    id: DocId,
) -> Result<Option<crate::accounts::Account>, ApiError> {
    let service = Arc::clone(&state.sync);
    let raw = tokio::task::spawn_blocking(move || service.meta(&crate::accounts::Account::key(id)))
        .await
        .map_err(|_| ServiceError::Poisoned)??;
    Ok(raw.and_then(|v| serde_json::from_str(&v).ok()))
}

async fn save_account(state: &AppState, a: &crate::accounts::Account) -> Result<(), ApiError> {
    let value = serde_json::to_string(a).map_err(|e| ServiceError::Engine(e.to_string()))?;
    let (service, key) = (Arc::clone(&state.sync), crate::accounts::Account::key(a.id));
    tokio::task::spawn_blocking(move || service.set_meta(&key, &value))
        .await
        .map_err(|_| ServiceError::Poisoned)??;
    Ok(())
}

fn admin(who: &Session) -> Result<(), ApiError> {
    if who.device.author.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::forbidden("only an admin manages accounts"))
    }
}

/// How long an account's login link lasts.
const ACCOUNT_LINK_S: i64 = 72 * 3600;

#[derive(Serialize)]
struct AccountAnswer {
    account: crate::accounts::Account,
    /// A one-time login link for the account (on creation, or when asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    name: String,
    role: crate::accounts::OfficeRole,
}

/// `POST /api/v1/admin/accounts`: an admin creates a dispatcher's or admin's account; the answer
/// carries its first login link.
async fn create_account(
    State(state): State<AppState>,
    Authed(who): Authed,
    Json(req): Json<NewAccount>,
) -> Result<(StatusCode, Json<AccountAnswer>), ApiError> {
    use shared::clock::Clock as _;
    admin(&who)?;
    let name = crate::accounts::Account::check_name(&req.name).map_err(ApiError::bad_request)?;
    let now = crate::SystemClock.now();
    let account = crate::accounts::Account {
        id: DocId::new_v7(now, rand::random()),
        name,
        role: req.role,
        active: true,
        created_at: now.0,
    };
    save_account(&state, &account).await?;
    let token =
        state
            .keys
            .issue_account_link(account.id, account.role.role(), now_s(), ACCOUNT_LINK_S)?;
    state.sync.audit(AuditEvent::AccountCreated {
        account: account.id,
        role: account.role,
        by: who.device.author.device,
    });
    Ok((
        StatusCode::CREATED,
        Json(AccountAnswer {
            account,
            link: Some(state.links.login_link(&token)),
        }),
    ))
}

/// `GET /api/v1/admin/accounts`: every office account.
async fn list_accounts(
    State(state): State<AppState>,
    Authed(who): Authed,
) -> Result<Json<Vec<crate::accounts::Account>>, ApiError> {
    admin(&who)?;
    let service = Arc::clone(&state.sync);
    let rows = tokio::task::spawn_blocking(move || service.meta_prefix(crate::accounts::PREFIX))
        .await
        .map_err(|_| ServiceError::Poisoned)??;
    let mut accounts: Vec<crate::accounts::Account> = rows
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_str(&v).ok())
        .collect();
    accounts.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(accounts))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountChange {
    active: Option<bool>,
    role: Option<crate::accounts::OfficeRole>,
    /// A new one-time login link (a new computer, a lost link).
    #[serde(default)]
    new_link: bool,
}

/// `POST /api/v1/admin/accounts/{id}`: disables or enables an account, changes its role, or
/// makes a new login link. Disabling or a new role ends every session the account has.
async fn change_account(
    State(state): State<AppState>,
    Authed(who): Authed,
    axum::extract::Path(id): axum::extract::Path<String>,
    Json(req): Json<AccountChange>,
) -> Result<Json<AccountAnswer>, ApiError> {
    admin(&who)?;
    let id: DocId = id
        .parse()
        .map_err(|_| ApiError::bad_request("not an account id"))?;
    let mut account = load_account(&state, id).await?.ok_or_else(|| ApiError {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: "no such account".into(),
    })?;
    let before = account.clone();
    if let Some(a) = req.active {
        account.active = a;
    }
    if let Some(r) = req.role {
        account.role = r;
    }
    if req.new_link && !account.active {
        return Err(ApiError::bad_request(
            "a disabled account gets no login link",
        ));
    }
    save_account(&state, &account).await?;
    let now = now_s();
    if (before.active && !account.active) || before.role != account.role {
        let until = now + state.keys.lifetimes().ttl_s.max(ACCOUNT_LINK_S);
        let service = Arc::clone(&state.sync);
        tokio::task::spawn_blocking(move || {
            service.revoke_sessions(now, until, |upto| crate::revocation::Revocation::Account {
                account: id,
                upto,
            })
        })
        .await
        .map_err(|_| ServiceError::Poisoned)??;
    }
    if before != account {
        state.sync.audit(AuditEvent::AccountChanged {
            account: id,
            active: account.active,
            role: account.role,
            by: who.device.author.device,
        });
    }
    let link = if req.new_link {
        let token = state
            .keys
            .issue_account_link(id, account.role.role(), now, ACCOUNT_LINK_S)?;
        Some(state.links.login_link(&token))
    } else {
        None
    };
    Ok(Json(AccountAnswer { account, link }))
}

/// `POST /api/v1/auth/refresh`: a new session for the same device. The old token is revoked
/// first, atomically in the store: of concurrent refreshes with one token, exactly one gets a
/// new token and the others 401, so a stolen copy refreshed in parallel cannot fork the session.
async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<TokenAnswer>, ApiError> {
    let who = state.keys.verify_session(bearer(&headers)?)?;
    let refused = |reason: RefusalReason| {
        state.sync.audit(AuditEvent::RefreshRefused {
            device: who.device.author.device,
            reason,
        });
    };
    if state.sync.is_session_revoked(&who) {
        refused(RefusalReason::Revoked);
        return Err(AuthError::Invalid.into());
    }
    if let Some(account) = who.account
        && !load_account(&state, account)
            .await?
            .is_some_and(|a| a.active)
    {
        refused(RefusalReason::AccountDisabled);
        return Err(AuthError::Invalid.into());
    }
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
        refused(RefusalReason::RefreshedAlready);
        return Err(AuthError::Invalid.into());
    }
    let (token, expires_at) = state
        .keys
        .issue_account_session(
            who.device.author.device,
            who.device.author.role,
            tech,
            who.account,
            state
                .sync
                .session_time(now_s(), who.device.author.device, tech, who.account),
            who.auth,
        )
        .inspect_err(|_| refused(RefusalReason::TooOld))?;
    Ok(Json(TokenAnswer {
        token,
        expires_at,
        link: None,
        sms: None,
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
    let service = Arc::clone(&state.sync);
    let by = who.device.author.device;
    let what = match (&req.token, &req.device, &req.technician) {
        (Some(t), None, None) => {
            let (jti, exp) = match (state.keys.verify_session(t), state.keys.verify_magic(t)) {
                (Ok(s), _) => (s.jti, s.exp),
                (_, Ok(m)) => (m.jti, m.exp),
                _ => return Err(ApiError::bad_request("not a valid token of this server")),
            };
            let what = Revocation::Token(jti);
            let w = what.clone();
            tokio::task::spawn_blocking(move || service.revoke_key(&w, exp))
                .await
                .map_err(|_| ServiceError::Poisoned)??;
            what
        }
        (None, Some(d), None) => {
            let device = DeviceId(id(d, "device")?);
            tokio::task::spawn_blocking(move || {
                service.revoke_sessions(now, until, |upto| Revocation::Device { device, upto })
            })
            .await
            .map_err(|_| ServiceError::Poisoned)??
        }
        (None, None, Some(t)) => {
            let technician = TechnicianId(id(t, "technician")?);
            tokio::task::spawn_blocking(move || {
                service.revoke_sessions(now, until, |upto| Revocation::Technician {
                    technician,
                    upto,
                })
            })
            .await
            .map_err(|_| ServiceError::Poisoned)??
        }
        _ => {
            return Err(ApiError::bad_request(
                "name exactly one of `token`, `device` or `technician`",
            ));
        }
    };
    tracing::info!(revoked = %what.key(), %by, "auth.revoked");
    state.sync.audit(AuditEvent::Revoked {
        what: what.key(),
        by,
    });
    Ok(StatusCode::NO_CONTENT)
}

#[derive(serde::Deserialize)]
struct AuditQuery {
    limit: Option<usize>,
}

/// `GET /.well-known/assetlinks.json`: the Android app that may open login links (verified by
/// Android before it lets the app claim them).
async fn assetlinks(State(state): State<AppState>) -> Result<Response, ApiError> {
    let l = &state.links;
    let (Some(package), false) = (&l.android_package, l.android_cert_sha256.is_empty()) else {
        return Err(not_configured("Android app links"));
    };
    Ok(Json(serde_json::json!([{
        "relation": ["delegate_permission/common.handle_all_urls"],
        "target": {
            "namespace": "android_app",
            "package_name": package,
            "sha256_cert_fingerprints": l.android_cert_sha256,
        }
    }]))
    .into_response())
}

/// `GET /.well-known/apple-app-site-association`: the iOS apps that may open login links.
async fn apple_association(State(state): State<AppState>) -> Result<Response, ApiError> {
    let l = &state.links;
    if l.apple_app_ids.is_empty() {
        return Err(not_configured("iOS universal links"));
    }
    Ok(Json(serde_json::json!({
        "applinks": {
            "details": [{
                "appIDs": l.apple_app_ids,
                "components": [{ "/": "/login", "comment": "login links" }],
            }]
        }
    }))
    .into_response())
}

/// `GET /login`: where a login link lands when the app is not installed (or the link was
/// opened on a computer). The token stays in the fragment, which browsers never send.
async fn login_page() -> Response {
    const PAGE: &str = "<!doctype html><html lang=\"fr\"><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>Connexion</title><body style=\"font-family:sans-serif;max-width:32em;margin:2em auto;padding:0 1em\"><h1>Lien de connexion</h1><p>Ouvrez ce lien sur le téléphone où l'application est installée : elle s'ouvre sur la connexion. Sinon, copiez le lien complet dans l'écran de connexion de l'application.</p><p lang=\"en\">Open this link on the phone where the app is installed; otherwise paste the whole link into the app's login screen.</p></body></html>";
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE,
    )
        .into_response()
}

fn not_configured(what: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "not_configured",
        message: format!("{what} are not configured on this server"),
    }
}

/// `GET /api/v1/audit?limit=N`: sign-ins and revocations, newest first (the office).
async fn audit_log(
    State(state): State<AppState>,
    Authed(who): Authed,
    axum::extract::Query(q): axum::extract::Query<AuditQuery>,
) -> Result<Json<Vec<crate::audit::AuditEntry>>, ApiError> {
    office(&who)?;
    let limit = q.limit.unwrap_or(200).clamp(1, 5000);
    let service = Arc::clone(&state.sync);
    let entries = tokio::task::spawn_blocking(move || service.audit_log(limit))
        .await
        .map_err(|_| ServiceError::Poisoned)??;
    Ok(Json(entries))
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
    // Counted as open for as long as the stream lives.
    let counted = state.sync.metrics().stream_opened();
    let stream = replay.chain(live).take_until(end).map(move |ev| {
        let _open = &counted;
        Ok::<_, std::convert::Infallible>(ev)
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
        .into_response())
}

async fn health() -> &'static str {
    "ok"
}

/// The Prometheus scrape (an office token: the figures describe the whole fleet). Prometheus
/// sends it with `authorization: { credentials: … }` in its scrape settings.
async fn metrics(State(state): State<AppState>, Authed(who): Authed) -> Result<Response, ApiError> {
    office(&who)?;
    let sync = Arc::clone(&state.sync);
    let mut levels = tokio::task::spawn_blocking(move || sync.levels())
        .await
        .map_err(|_| ServiceError::Poisoned)??;
    if let Some(erp) = &state.erp {
        let s = erp.bridge.stats();
        levels.bridge_backlog = Some(levels.head.saturating_sub(s.cursor));
        levels.bridge_parked = s.parked;
        levels.bridge_failures = s.transient_failures;
    }
    if let Some(hub) = &state.hub {
        let hub = Arc::clone(hub);
        if let Ok(Ok(d)) = tokio::task::spawn_blocking(move || hub.inbox.depth()).await {
            levels.webhooks_waiting = d.new;
            levels.webhooks_parked = d.failed;
        }
    }
    let body = state.sync.metrics().render(levels);
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
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
        Err(ApiError::forbidden("only the office sees this"))
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
    let raw: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("webhook body: {e}")))?;
    let hook: WebhookBody = serde_json::from_value(raw.clone())
        .map_err(|e| ApiError::bad_request(format!("webhook body: {e}")))?;
    if crate::erpnext::mapping::by_doctype(&hook.doctype).is_none() {
        // Verified, but not a doctype the bridge maps: nothing to do.
        return Ok(StatusCode::NO_CONTENT);
    }
    // Stored in the inbox, then processed; a server without one re-reads the record at once.
    if !hub::erpnext(&state, &hook.doctype, &hook.name, &raw).await? {
        edge.bridge.refresh(&hook.doctype, &hook.name);
    }
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
        "outcome": outcome,
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

/// The span every request's log lines carry: the matched route, never the raw path (ids and
/// hashes in paths would make every line unique), and no query string or header that could hold
/// a token.
fn request_span<B>(req: &axum::http::Request<B>) -> tracing::Span {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", axum::extract::MatchedPath::as_str);
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!("http", method = %req.method(), route, request_id = id)
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
        .route("/api/v1/audit", get(audit_log))
        .route(
            "/api/v1/admin/accounts",
            get(list_accounts)
                .post(create_account)
                .layer(DefaultBodyLimit::max(MAX_AUTH_BODY)),
        )
        .route(
            "/api/v1/admin/accounts/{id}",
            post(change_account).layer(DefaultBodyLimit::max(MAX_AUTH_BODY)),
        )
        .route("/.well-known/assetlinks.json", get(assetlinks))
        .route(
            "/.well-known/apple-app-site-association",
            get(apple_association),
        )
        .route("/login", get(login_page))
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
        .route(
            "/api/v1/webhooks/twilio/sms",
            post(hub::twilio_sms).layer(DefaultBodyLimit::max(hub::MAX_TWILIO_BODY)),
        )
        .route(
            "/api/v1/webhooks/twilio/status",
            post(hub::twilio_status).layer(DefaultBodyLimit::max(hub::MAX_TWILIO_BODY)),
        )
        .route(
            "/api/v1/webhooks/stripe",
            post(hub::stripe).layer(DefaultBodyLimit::max(hub::MAX_STRIPE_BODY)),
        )
        .route(
            "/api/v1/webhooks/uptime-kuma",
            post(hub::uptime_kuma).layer(DefaultBodyLimit::max(hub::MAX_TWILIO_BODY)),
        )
        .route("/api/v1/alerts", get(hub::alerts))
        .route("/api/v1/usp/devices", get(devices::usp_devices))
        .route("/api/v1/usp/devices/{sn}", get(devices::usp_device))
        .route("/api/v1/devices/presence", get(devices::presence))
        .route(
            "/api/v1/devices/presence/events",
            get(devices::presence_events),
        )
        .route("/api/v1/network", get(network::picture))
        .route("/api/v1/network/events", get(network::events))
        .route("/api/v1/equipment/{id}/line", get(network::line))
        .route("/api/v1/equipment/{id}/device", get(devices::device))
        .route("/api/v1/equipment/{id}/device/{action}", post(devices::act))
        .route("/api/v1/webhooks", get(hub::inbox_view))
        .route("/api/v1/webhooks/{seq}/retry", post(hub::inbox_retry))
        .route("/api/v1/sms/threads", get(hub::sms_threads))
        .route(
            "/api/v1/sms/threads/{phone}",
            get(hub::sms_thread)
                .post(hub::sms_send)
                .layer(DefaultBodyLimit::max(MAX_AUTH_BODY)),
        )
        .route("/api/v1/sms/messages/{id}/resend", post(hub::sms_resend))
        .route("/api/v1/payments/entries", get(hub::entries))
        .route(
            "/api/v1/payments/entries/{intent}/retry",
            post(hub::entry_retry),
        )
        .route("/api/v1/payments/{invoice}", get(hub::payment))
        .route("/api/v1/payments/{invoice}/checkout", post(hub::checkout))
        .route(
            "/api/v1/vision/{task}",
            post(hub::vision).layer(DefaultBodyLimit::max(crate::hub::vision::MAX_IMAGE)),
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
        .route("/metrics", get(metrics))
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
        // One line per request, at the edge: method, matched route, status, latency, request id
        // (the caller's `x-request-id`, or a new one, echoed in the answer).
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(
                    tower_http::trace::DefaultOnResponse::new()
                        .level(tracing::Level::INFO)
                        .latency_unit(tower_http::LatencyUnit::Micros),
                ),
        )
        .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
        .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
            tower_http::request_id::MakeRequestUuid,
        ))
        .with_state(state)
}
