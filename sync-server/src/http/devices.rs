//! Customers' boxes behind service equipment, through the ACS: `GET
//! /api/v1/equipment/{id}/device` (a live summary, or the last one kept when GenieACS cannot be
//! reached) and `POST /api/v1/equipment/{id}/device/{hosts|wifi|optical|all|reboot}`.
//!
//! Dispatchers and admins see and act on any box; a technician on the equipment their jobs
//! reach (their read scope, computed from office-owned fields only), and never reboots one
//! outside it. Every action is in the audit log with who asked and what came of it.

use axum::extract::Path;

use super::*;
use crate::hub::acs::{Action, DeviceError, Devices, Reading, TaskOutcome};

fn devices(state: &AppState) -> Result<&Arc<Devices>, ApiError> {
    state
        .hub
        .as_ref()
        .and_then(|h| h.devices.as_ref())
        .ok_or(ApiError {
            status: StatusCode::NOT_FOUND,
            code: "acs_off",
            message: "no ACS is configured on this server (genieacs.url)".into(),
        })
}

/// The equipment's serial and MAC, if `who` may see its box.
pub(super) async fn equipment_for(
    state: &AppState,
    who: &Session,
    id: &str,
) -> Result<(DocId, String, Option<String>), ApiError> {
    let doc: DocId = id
        .parse()
        .map_err(|_| ApiError::bad_request("not an equipment id"))?;
    let office = who.device.author.role.is_office();
    let subject = who.device.subject;
    let today = state.sync.now().date();
    let sync = Arc::clone(&state.sync);
    let found = tokio::task::spawn_blocking(move || {
        sync.read(move |e| {
            let Some(shared::model::AnyEntity::Equipment(q)) = e.entity(doc) else {
                return None;
            };
            let allowed = office || e.scope(subject, today).contains(&doc);
            Some((
                allowed,
                q.serial.as_str().to_owned(),
                q.mac.map(|m| m.to_string()),
            ))
        })
    })
    .await
    .map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "internal",
        message: format!("reading the equipment failed: {e}"),
    })??;
    match found {
        None => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            code: "no_equipment",
            message: format!("no equipment {id}"),
        }),
        Some((false, _, _)) => Err(ApiError {
            status: StatusCode::FORBIDDEN,
            code: "not_your_equipment",
            message: "this equipment is not on one of your jobs".into(),
        }),
        Some((true, serial, mac)) => Ok((doc, serial, mac)),
    }
}

fn device_error(e: &DeviceError) -> ApiError {
    use crate::hub::acs::AcsError;
    let (status, code) = match e {
        DeviceError::NotFound | DeviceError::Acs(AcsError::NoSuchDevice(_)) => {
            (StatusCode::NOT_FOUND, "no_device")
        }
        DeviceError::Acs(AcsError::Unreachable(_)) => (StatusCode::BAD_GATEWAY, "acs_unreachable"),
        DeviceError::Acs(_) | DeviceError::Summary(_) => (StatusCode::BAD_GATEWAY, "acs_error"),
        DeviceError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "hub_unavailable"),
    };
    if status.is_server_error() {
        tracing::warn!(error = %e, "acs.failed");
    }
    ApiError {
        status,
        code,
        message: e.to_string(),
    }
}

/// `GET /api/v1/equipment/{id}/device`: the box behind a piece of equipment.
pub(super) async fn device(
    State(state): State<AppState>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<Reading>, ApiError> {
    let devices = Arc::clone(devices(&state)?);
    let (doc, serial, mac) = equipment_for(&state, &who, &id).await?;
    let now = state.sync.now().0;
    devices
        .read(&doc.to_string(), Some(&serial), mac.as_deref(), now)
        .await
        .map(Json)
        .map_err(|e| device_error(&e))
}

/// What an action asks for.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct ActionBody {
    /// A reboot must say so.
    #[serde(default)]
    confirm: bool,
}

/// `POST /api/v1/equipment/{id}/device/{hosts|wifi|optical|all|reboot}`: refresh part of the
/// box's data, or reboot it (`{"confirm": true}`). The answer says plainly what happened: done,
/// queued for the box's next call (it did not answer), faulted, or unreachable.
pub(super) async fn act(
    State(state): State<AppState>,
    Authed(who): Authed,
    Path((id, what)): Path<(String, String)>,
    body: Option<Json<ActionBody>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let action = Action::parse(&what).ok_or_else(|| ApiError {
        status: StatusCode::NOT_FOUND,
        code: "no_such_action",
        message: format!("no action {what:?}: hosts, wifi, optical, all or reboot"),
    })?;
    let devices = Arc::clone(devices(&state)?);
    let audit = |doc: DocId, device: Option<String>, outcome: &str| {
        state.sync.audit(AuditEvent::DeviceAction {
            equipment: doc,
            device,
            action,
            outcome: outcome.to_owned(),
            by: who.device.author.device,
            role: who.device.author.role,
        });
    };
    let (doc, serial, mac) = match equipment_for(&state, &who, &id).await {
        Ok(found) => found,
        Err(e) => {
            if e.code == "not_your_equipment"
                && let Ok(doc) = id.parse()
            {
                audit(doc, None, "refused");
            }
            return Err(e);
        }
    };
    if action == Action::Reboot && !body.is_some_and(|Json(b)| b.confirm) {
        return Err(ApiError {
            status: StatusCode::PRECONDITION_REQUIRED,
            code: "confirm_required",
            message: "a reboot cuts the customer's connection for a few minutes: send {\"confirm\": true}".into(),
        });
    }
    let now = state.sync.now().0;
    // The box as it is now: its id and data model decide the task.
    let before = match devices
        .read(&doc.to_string(), Some(&serial), mac.as_deref(), now)
        .await
    {
        Ok(r) if r.source == crate::hub::acs::Source::Live => r.summary,
        Ok(r) => {
            audit(doc, Some(r.summary.device_id), "failed");
            return Err(ApiError {
                status: StatusCode::BAD_GATEWAY,
                code: "acs_unreachable",
                message: r
                    .error
                    .unwrap_or_else(|| "GenieACS cannot be reached".into()),
            });
        }
        Err(e) => {
            audit(doc, None, "failed");
            return Err(device_error(&e));
        }
    };
    let outcome = match devices
        .act(&before.device_id, before.data_model, action)
        .await
    {
        Ok(o) => o,
        Err(e) => {
            audit(doc, Some(before.device_id), "failed");
            return Err(device_error(&e.into()));
        }
    };
    audit(doc, Some(before.device_id.clone()), outcome.as_str());
    let message = match &outcome {
        TaskOutcome::Done { .. } => match action {
            Action::Reboot => "the box is restarting".to_owned(),
            _ => "read from the box just now".to_owned(),
        },
        TaskOutcome::Queued { .. } => format!(
            "the box did not answer in time: it will be done when the box next calls in{}",
            before
                .inform_interval_s
                .map(|s| format!(" (every {} min)", s.div_ceil(60)))
                .unwrap_or_default()
        ),
        TaskOutcome::Faulted { fault, .. } => format!(
            "the box refused: {}",
            fault.as_deref().unwrap_or("it reported a fault")
        ),
        TaskOutcome::Unreachable { message } => {
            format!("the box cannot be reached now ({message}); nothing was sent")
        }
    };
    // After a refresh that ran, the fresh reading.
    let reading = if matches!(outcome, TaskOutcome::Done { .. }) && action != Action::Reboot {
        devices
            .read(
                &doc.to_string(),
                Some(&serial),
                mac.as_deref(),
                state.sync.now().0,
            )
            .await
            .ok()
    } else {
        None
    };
    Ok(Json(serde_json::json!({
        "action": action,
        "outcome": outcome,
        "message": message,
        "device": reading,
    })))
}

fn presence_store(state: &AppState) -> Result<Arc<crate::hub::usp::Presence>, ApiError> {
    state
        .hub
        .as_ref()
        .map(|h| Arc::clone(&h.presence))
        .ok_or(ApiError {
            status: StatusCode::NOT_FOUND,
            code: "hub_off",
            message: "this server keeps no hub database (it has no data folder)".into(),
        })
}

fn presence_failed(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "usp.read_failed");
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "hub_unavailable",
        message: "the hub's database did not answer; try again".into(),
    }
}

/// `GET /api/v1/devices/presence`: each USP box we know of, online or not and since when, and
/// the last event's sequence number (to follow the live stream from).
pub(super) async fn presence(
    State(state): State<AppState>,
    Authed(who): Authed,
) -> Result<Json<serde_json::Value>, ApiError> {
    office(&who)?;
    let p = presence_store(&state)?;
    let (all, last) =
        tokio::task::spawn_blocking(move || Ok::<_, rusqlite::Error>((p.all()?, p.last_seq()?)))
            .await
            .map_err(presence_failed)?
            .map_err(presence_failed)?;
    Ok(Json(serde_json::json!({
        "devices": all.into_iter().map(|(device, online, since)| serde_json::json!({
            "device": device, "online": online, "since": since,
        })).collect::<Vec<_>>(),
        "last": last,
    })))
}

/// `GET /api/v1/devices/presence/events` (SSE, office): each box coming online or going
/// offline, in order, each with its sequence number as the event id; a reconnect with
/// `Last-Event-ID` gets what it missed, once. Ends when the session's token expires or is
/// revoked.
pub(super) async fn presence_events(
    State(state): State<AppState>,
    Authed(who): Authed,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures_util::StreamExt as _;
    office(&who)?;
    let p = presence_store(&state)?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let stream = futures_util::stream::unfold(
        (
            p,
            after,
            std::collections::VecDeque::<crate::hub::usp::PresenceEvent>::new(),
        ),
        |(p, mut after, mut queue)| async move {
            loop {
                if let Some(ev) = queue.pop_front() {
                    let sse = Event::default()
                        .id(ev.seq.to_string())
                        .event("presence")
                        .json_data(&ev)
                        .unwrap_or_else(|_| Event::default().comment("unencodable event"));
                    return Some((Ok::<_, std::convert::Infallible>(sse), (p, after, queue)));
                }
                // Registered before the read, so an event recorded meanwhile still wakes us.
                let notified = p.changed.notified();
                let reader = Arc::clone(&p);
                let batch = tokio::task::spawn_blocking(move || reader.after(after, 500))
                    .await
                    .ok()?
                    .ok()?;
                match batch.last() {
                    Some(last) => {
                        after = last.seq;
                        queue.extend(batch);
                    }
                    None => notified.await,
                }
            }
        },
    );
    Ok(Sse::new(stream.take_until(session_end(&state, who)))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// When a live stream for `who` ends: its token expires, or its session is revoked.
pub(super) fn session_end(
    state: &AppState,
    who: Session,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let expires_in = u64::try_from(who.exp - state.sync.now().0 / 1000).unwrap_or(0);
    let until = tokio::time::sleep(std::time::Duration::from_secs(expires_in));
    let revoked = {
        let (service, mut changes) = (Arc::clone(&state.sync), state.sync.revocations());
        async move {
            while changes.changed().await.is_ok() {
                if service.is_session_revoked(&who) {
                    return;
                }
            }
            std::future::pending::<()>().await;
        }
    };
    async move {
        futures_util::future::select(Box::pin(until), Box::pin(revoked)).await;
    }
}

fn usp(state: &AppState) -> Result<Arc<dyn crate::hub::oktopus::Usp>, ApiError> {
    state
        .hub
        .as_ref()
        .and_then(|h| h.usp.clone())
        .ok_or(ApiError {
            status: StatusCode::NOT_FOUND,
            code: "usp_off",
            message: "no USP controller is configured on this server (oktopus.url)".into(),
        })
}

fn usp_error(e: &crate::hub::oktopus::UspError) -> ApiError {
    use crate::hub::oktopus::UspError;
    let (status, code) = match e {
        UspError::Offline(_) => (StatusCode::SERVICE_UNAVAILABLE, "device_offline"),
        UspError::Unreachable(_) => (StatusCode::BAD_GATEWAY, "usp_unreachable"),
        UspError::Credentials(_) => (StatusCode::BAD_GATEWAY, "usp_credentials"),
        UspError::Refused { .. } | UspError::BadAnswer(_) => (StatusCode::BAD_GATEWAY, "usp_error"),
    };
    if !matches!(e, UspError::Offline(_)) {
        tracing::warn!(error = %e, "usp.failed");
    }
    ApiError {
        status,
        code,
        message: e.to_string(),
    }
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct PageQuery {
    #[serde(default)]
    page: u32,
    #[serde(default = "default_page_size")]
    size: u32,
}

fn default_page_size() -> u32 {
    20
}

/// `GET /api/v1/usp/devices?page=&size=` (office): the boxes Oktopus knows, a page at a time.
pub(super) async fn usp_devices(
    State(state): State<AppState>,
    Authed(who): Authed,
    axum::extract::Query(q): axum::extract::Query<PageQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    office(&who)?;
    let usp = usp(&state)?;
    let (devices, total) = usp
        .devices(q.page, q.size)
        .await
        .map_err(|e| usp_error(&e))?;
    Ok(Json(serde_json::json!({
        "devices": devices.iter().map(|d| serde_json::json!({"device": d, "state": d.state()})).collect::<Vec<_>>(),
        "total": total,
    })))
}

/// `GET /api/v1/usp/devices/{sn}` (office): the box and, when it is online, its DeviceInfo read
/// now over USP; offline, said so (`"live": null`, `"offline": "…"`).
pub(super) async fn usp_device(
    State(state): State<AppState>,
    Authed(who): Authed,
    Path(sn): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    use crate::hub::oktopus::UspError;
    office(&who)?;
    let usp = usp(&state)?;
    let device = usp
        .device(&sn)
        .await
        .map_err(|e| usp_error(&e))?
        .ok_or_else(|| ApiError {
            status: StatusCode::NOT_FOUND,
            code: "no_device",
            message: format!("Oktopus knows no box {sn}"),
        })?;
    let (live, offline) = match usp.get(&sn, &["Device.DeviceInfo."]).await {
        Ok(params) => (Some(params), None),
        Err(UspError::Offline(m)) => (None, Some(m)),
        Err(e) => return Err(usp_error(&e)),
    };
    Ok(Json(serde_json::json!({
        "device": device,
        "state": device.state(),
        "live": live,
        "offline": offline,
    })))
}
