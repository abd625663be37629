//! The access network for the office: `GET /api/v1/network` (every OLT, the incidents open or
//! ended in the last day with the customers and jobs behind them, the monitors down),
//! `GET /api/v1/network/events` (the same, live, as server-sent events resumable with
//! `Last-Event-ID`), and `GET /api/v1/equipment/{id}/line` (the ONU behind a piece of equipment
//! as its OLT last saw it; a technician for the equipment of their jobs only).

use axum::extract::Path;

use super::devices::{equipment_for, session_end};
use super::*;
use crate::hub::access::{Access, NetworkEvent};
use shared::network::{Incident, LineView, NetworkPicture};

fn access(state: &AppState) -> Result<Arc<Access>, ApiError> {
    state
        .hub
        .as_ref()
        .and_then(|h| h.access.clone())
        .ok_or(ApiError {
            status: StatusCode::NOT_FOUND,
            code: "olts_off",
            message: "no OLT is configured on this server ([[olts]] in its settings)".into(),
        })
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "network.read_failed");
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "network_unavailable",
        message: "the access network's tables did not answer; try again".into(),
    }
}

/// Fills each incident's customers and jobs from the sync store: one pass over the store for
/// every incident's serials together.
fn with_affected(state: &AppState, incidents: &mut [Incident]) {
    let today = state.sync.now().date();
    let serials: Vec<String> = incidents
        .iter()
        .flat_map(|i| i.onus.iter().filter_map(|o| o.serial.clone()))
        .collect();
    if serials.is_empty() {
        return;
    }
    let Ok(found) = state.sync.read(|e| {
        let e = &*e;
        crate::hub::access::affected(
            e.doc_ids().filter_map(|d| Some((d, e.entity(d)?))),
            &serials,
            today,
        )
    }) else {
        return;
    };
    for i in incidents {
        i.affected = found
            .iter()
            .filter(|a| {
                i.onus
                    .iter()
                    .any(|o| o.serial.as_deref() == Some(a.serial.as_str()))
            })
            .cloned()
            .collect();
    }
}

/// `GET /api/v1/network`.
pub(super) async fn picture(
    State(state): State<AppState>,
    Authed(who): Authed,
) -> Result<Json<NetworkPicture>, ApiError> {
    office(&who)?;
    let access = access(&state)?;
    let monitors = state.hub.as_ref().map(|h| Arc::clone(&h.alerts));
    let now = state.sync.now().0;
    let st = state.clone();
    tokio::task::spawn_blocking(move || {
        let monitors = match monitors {
            Some(m) => m.monitors().map_err(unavailable)?,
            None => Vec::new(),
        };
        let mut p = access.picture(now, &monitors).map_err(unavailable)?;
        with_affected(&st, &mut p.incidents);
        Ok(Json(p))
    })
    .await
    .map_err(unavailable)?
}

/// `GET /api/v1/network/events`: `incident` events (an incident as it now stands, with its
/// customers and jobs) and `olt` events (an OLT's reachability or count of ONUs down moved).
pub(super) async fn events(
    State(state): State<AppState>,
    Authed(who): Authed,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures_util::StreamExt as _;
    office(&who)?;
    let access = access(&state)?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let end = session_end(&state, who);
    let stream = futures_util::stream::unfold(
        (
            access,
            state,
            after,
            std::collections::VecDeque::<NetworkEvent>::new(),
        ),
        |(access, state, mut after, mut queue)| async move {
            loop {
                if let Some(ev) = queue.pop_front() {
                    let name = match ev {
                        NetworkEvent::Incident { .. } => "incident",
                        NetworkEvent::Olt { .. } => "olt",
                    };
                    let sse = Event::default()
                        .id(ev.seq().to_string())
                        .event(name)
                        .json_data(&ev)
                        .unwrap_or_else(|_| Event::default().comment("unencodable event"));
                    return Some((
                        Ok::<_, std::convert::Infallible>(sse),
                        (access, state, after, queue),
                    ));
                }
                // Registered before the read, so an event recorded meanwhile still wakes us.
                let notified = access.changed.notified();
                let (reader, st) = (Arc::clone(&access), state.clone());
                let batch = tokio::task::spawn_blocking(move || {
                    let mut batch = reader.events_after(after, 200)?;
                    let mut incidents: Vec<Incident> = batch
                        .iter()
                        .filter_map(|e| match e {
                            NetworkEvent::Incident { incident, .. } => Some(incident.clone()),
                            NetworkEvent::Olt { .. } => None,
                        })
                        .collect();
                    with_affected(&st, &mut incidents);
                    let mut filled = incidents.into_iter();
                    for e in &mut batch {
                        if let NetworkEvent::Incident { incident, .. } = e
                            && let Some(i) = filled.next()
                        {
                            *incident = i;
                        }
                    }
                    Ok::<_, crate::hub::access::AccessError>(batch)
                })
                .await
                .ok()?
                .ok()?;
                match batch.last() {
                    Some(last) => {
                        after = last.seq();
                        queue.extend(batch);
                    }
                    None => notified.await,
                }
            }
        },
    );
    Ok(Sse::new(stream.take_until(end))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// `GET /api/v1/equipment/{id}/line`.
pub(super) async fn line(
    State(state): State<AppState>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<LineView>, ApiError> {
    let access = access(&state)?;
    let (_, serial, _) = equipment_for(&state, &who, &id).await?;
    let Some(gpon) = crate::hub::olt::normalize_serial(&serial) else {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            code: "no_line",
            message: format!("{serial} is not a GPON serial: no OLT line to show"),
        });
    };
    let found = tokio::task::spawn_blocking(move || access.line(&gpon))
        .await
        .map_err(unavailable)?
        .map_err(unavailable)?;
    found.map(Json).ok_or(ApiError {
        status: StatusCode::NOT_FOUND,
        code: "no_line",
        message: format!("no OLT has reported the ONU {serial}"),
    })
}
