//! Webhook routes (Twilio, Stripe) and the office's views of what they brought: the inbox's
//! parked events, SMS conversations, payment state. See [`crate::hub`].

use axum::extract::Path;
use axum::http::Uri;

use super::*;
use crate::hub::Hub;
use crate::hub::inbox::{Accepted, Event, InboxError, Provider};
use crate::hub::signature::{self, SignatureError};

/// Twilio's form bodies are small; Stripe's events carry whole objects.
pub(super) const MAX_TWILIO_BODY: usize = 64 * 1024;
pub(super) const MAX_STRIPE_BODY: usize = 512 * 1024;

fn hub(state: &AppState) -> Result<&Arc<Hub>, ApiError> {
    state.hub.as_ref().ok_or(ApiError {
        status: StatusCode::NOT_FOUND,
        code: "hub_off",
        message: "this server keeps no webhook inbox (it has no data folder)".into(),
    })
}

fn off(what: &'static str, setting: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: what,
        message: format!("not configured on this server ({setting})"),
    }
}

/// A refused webhook: said plainly to the sender, logged without anything secret.
fn refused(provider: Provider, e: &SignatureError) -> ApiError {
    tracing::warn!(provider = provider.as_str(), reason = %e, "webhook.refused");
    ApiError {
        status: StatusCode::FORBIDDEN,
        code: match e {
            SignatureError::Stale { .. } => "stale_signature",
            _ => "bad_signature",
        },
        message: e.to_string(),
    }
}

fn malformed(provider: Provider, problem: String) -> ApiError {
    tracing::warn!(provider = provider.as_str(), problem, "webhook.malformed");
    ApiError::bad_request(problem)
}

/// Stores a verified event; the answer waits until it is on disk.
async fn store(hub: &Hub, event: Event) -> Result<Accepted, ApiError> {
    hub.inbox.accept(event).await.map_err(|e: InboxError| {
        tracing::error!(error = %e, "webhook.not_stored");
        // The provider retries on a 5xx: nothing is lost.
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "inbox_unavailable",
            message: "the webhook could not be stored; send it again later".into(),
        }
    })
}

/// A Twilio form POST, verified: its parameters.
fn twilio_verified(
    hub: &Hub,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<(String, String)>, ApiError> {
    let twilio = hub
        .twilio
        .as_ref()
        .ok_or_else(|| off("twilio_off", "twilio.account_sid"))?;
    let public = hub
        .public_url
        .as_deref()
        .ok_or_else(|| off("twilio_off", "public_url"))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{public}{path}");
    let params: Vec<(String, String)> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let sig = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok());
    signature::twilio_form(twilio.auth_token.expose(), &url, &params, sig)
        .map_err(|e| refused(Provider::Twilio, &e))?;
    Ok(params)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn as_json(params: &[(String, String)]) -> serde_json::Value {
    serde_json::Value::Object(
        params
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    )
}

/// TwiML that sends no reply.
const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

/// `POST /api/v1/webhooks/twilio/sms`: a customer texted us.
pub(super) async fn twilio_sms(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let hub = hub(&state)?;
    let params = twilio_verified(hub, &uri, &headers, &body)?;
    let sid = param(&params, "MessageSid")
        .or_else(|| param(&params, "SmsSid"))
        .ok_or_else(|| malformed(Provider::Twilio, "no MessageSid".into()))?;
    if param(&params, "From").is_none() {
        return Err(malformed(Provider::Twilio, "no From".into()));
    }
    store(
        hub,
        Event {
            provider: Provider::Twilio,
            id: sid.to_owned(),
            kind: crate::hub::sms::KIND_INBOUND.into(),
            payload: as_json(&params),
            received_at: state.sync.now().0,
        },
    )
    .await?;
    Ok(([(header::CONTENT_TYPE, "text/xml")], EMPTY_TWIML).into_response())
}

/// `POST /api/v1/webhooks/twilio/status`: a sent message's delivery moved.
pub(super) async fn twilio_status(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let hub = hub(&state)?;
    let params = twilio_verified(hub, &uri, &headers, &body)?;
    let sid = param(&params, "MessageSid")
        .or_else(|| param(&params, "SmsSid"))
        .ok_or_else(|| malformed(Provider::Twilio, "no MessageSid".into()))?;
    let status = param(&params, "MessageStatus")
        .or_else(|| param(&params, "SmsStatus"))
        .ok_or_else(|| malformed(Provider::Twilio, "no MessageStatus".into()))?;
    if crate::hub::sms::Delivery::parse(status).is_none() {
        return Err(malformed(
            Provider::Twilio,
            format!("unknown MessageStatus {status:?}"),
        ));
    }
    let mut payload = as_json(&params);
    // The outbox entry the text was sent from, named by the (signed) callback URL.
    if let Some(outbox) = uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == crate::hub::sms::OUTBOX_PARAM)
            .map(|(_, v)| v.into_owned())
    }) && let Some(map) = payload.as_object_mut()
    {
        map.insert(
            crate::hub::sms::OUTBOX_PARAM.into(),
            serde_json::Value::String(outbox),
        );
    }
    store(
        hub,
        Event {
            provider: Provider::Twilio,
            // One event per status a message reaches: a repeated callback is a redelivery.
            id: format!("{sid}:{status}"),
            kind: crate::hub::sms::KIND_STATUS.into(),
            payload,
            received_at: state.sync.now().0,
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/webhooks/stripe`: a payment moved.
pub(super) async fn stripe(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let hub = hub(&state)?;
    let stripe = hub
        .stripe
        .as_ref()
        .ok_or_else(|| off("stripe_off", "stripe.webhook_secret"))?;
    let sig = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    signature::stripe(
        stripe.webhook_secret.expose(),
        sig,
        &body,
        state.sync.now().0 / 1000,
        signature::STRIPE_TOLERANCE_S,
    )
    .map_err(|e| refused(Provider::Stripe, &e))?;
    let event: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| malformed(Provider::Stripe, format!("the event is not JSON: {e}")))?;
    let text = |k: &str| {
        event
            .get(k)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let (Some(id), Some(kind)) = (text("id"), text("type")) else {
        return Err(malformed(
            Provider::Stripe,
            "the event has no id or type".into(),
        ));
    };
    store(
        hub,
        Event {
            provider: Provider::Stripe,
            id,
            kind,
            payload: event,
            received_at: state.sync.now().0,
        },
    )
    .await?;
    Ok(Json(serde_json::json!({ "received": true })))
}

/// ERPNext's verified webhook, through the inbox: `Ok(true)` if stored.
pub(super) async fn erpnext(
    state: &AppState,
    doctype: &str,
    name: &str,
    body: &serde_json::Value,
) -> Result<bool, ApiError> {
    let Some(hub) = state.hub.as_ref() else {
        return Ok(false);
    };
    let modified = body
        .get("modified")
        .and_then(serde_json::Value::as_str)
        .filter(|m| !m.is_empty());
    let received_at = state.sync.now().0;
    // A save is one event (the same save delivered twice is one); webhooks registered before
    // they carried `modified` are each their own.
    let id = match modified {
        Some(m) => format!("{doctype}/{name}/{m}"),
        None => format!("{doctype}/{name}/@{received_at}"),
    };
    store(
        hub,
        Event {
            provider: Provider::Erpnext,
            id,
            kind: "doc.changed".into(),
            payload: body.clone(),
            received_at,
        },
    )
    .await?;
    Ok(true)
}

#[derive(Serialize)]
pub(super) struct InboxView {
    depth: crate::hub::inbox::Depth,
    parked: Vec<crate::hub::inbox::Parked>,
}

fn blocking_err(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "hub.read_failed");
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "hub_unavailable",
        message: "the hub's database did not answer; try again".into(),
    }
}

async fn on_hub<T: Send + 'static>(
    hub: &Arc<Hub>,
    f: impl FnOnce(&Hub) -> Result<T, String> + Send + 'static,
) -> Result<T, ApiError> {
    let hub = Arc::clone(hub);
    tokio::task::spawn_blocking(move || f(&hub))
        .await
        .map_err(blocking_err)?
        .map_err(blocking_err)
}

/// `GET /api/v1/webhooks`: the inbox's depth and the events parked for a person.
pub(super) async fn inbox_view(
    State(state): State<AppState>,
    Authed(who): Authed,
) -> Result<Json<InboxView>, ApiError> {
    office(&who)?;
    let hub = hub(&state)?;
    on_hub(hub, |h| {
        Ok(InboxView {
            depth: h.inbox.depth().map_err(|e| e.to_string())?,
            parked: h.inbox.parked(100).map_err(|e| e.to_string())?,
        })
    })
    .await
    .map(Json)
}

/// `POST /api/v1/webhooks/{seq}/retry`: a parked event goes back in line.
pub(super) async fn inbox_retry(
    State(state): State<AppState>,
    Authed(who): Authed,
    Path(seq): Path<i64>,
) -> Result<StatusCode, ApiError> {
    office(&who)?;
    let hub = hub(&state)?;
    if on_hub(hub, move |h| h.inbox.retry(seq).map_err(|e| e.to_string())).await? {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_parked",
            message: format!("no parked event {seq}"),
        })
    }
}

/// `GET /api/v1/sms/threads`: conversations, most recent first.
pub(super) async fn sms_threads(
    State(state): State<AppState>,
    Authed(who): Authed,
) -> Result<Json<Vec<crate::hub::sms::Thread>>, ApiError> {
    office(&who)?;
    let hub = hub(&state)?;
    on_hub(hub, |h| h.sms.threads(200).map_err(|e| e.to_string()))
        .await
        .map(Json)
}

/// `GET /api/v1/sms/threads/{phone}`: one conversation.
pub(super) async fn sms_thread(
    State(state): State<AppState>,
    Authed(who): Authed,
    Path(phone): Path<String>,
) -> Result<Json<Vec<crate::hub::sms::Message>>, ApiError> {
    office(&who)?;
    let hub = hub(&state)?;
    let phone = shared::model::Phone::parse(&phone)
        .map_err(ApiError::bad_request)?
        .as_str()
        .to_owned();
    on_hub(hub, move |h| {
        h.sms.messages(&phone).map_err(|e| e.to_string())
    })
    .await
    .map(Json)
}

#[derive(Serialize)]
pub(super) struct PaymentView {
    #[serde(flatten)]
    payment: crate::hub::payments::Payment,
    /// Its Payment Entries in ERPNext: made, waiting, or refused with ERPNext's words.
    entries: Vec<crate::hub::ledger::Entry>,
}

/// `GET /api/v1/payments/{invoice}`: an invoice's payment as Stripe reported it, and its
/// Payment Entries in ERPNext.
pub(super) async fn payment(
    State(state): State<AppState>,
    Authed(who): Authed,
    Path(invoice): Path<String>,
) -> Result<Json<PaymentView>, ApiError> {
    office(&who)?;
    let hub = hub(&state)?;
    let found = on_hub(hub, {
        let invoice = invoice.clone();
        move |h| {
            let Some(payment) = h.payments.get(&invoice).map_err(|e| e.to_string())? else {
                return Ok(None);
            };
            let entries = h.ledger.of_invoice(&invoice).map_err(|e| e.to_string())?;
            Ok(Some(PaymentView { payment, entries }))
        }
    })
    .await?;
    found.map(Json).ok_or(ApiError {
        status: StatusCode::NOT_FOUND,
        code: "no_payment",
        message: format!("no payment known for {invoice}"),
    })
}

/// `GET /api/v1/payments/entries`: Payment Entries not made yet or refused by ERPNext.
pub(super) async fn entries(
    State(state): State<AppState>,
    Authed(who): Authed,
) -> Result<Json<Vec<crate::hub::ledger::Entry>>, ApiError> {
    office(&who)?;
    let hub = hub(&state)?;
    on_hub(hub, |h| h.ledger.pending(500).map_err(|e| e.to_string()))
        .await
        .map(Json)
}

/// `POST /api/v1/payments/entries/{intent}/retry`: a refused Payment Entry goes back in line.
pub(super) async fn entry_retry(
    State(state): State<AppState>,
    Authed(who): Authed,
    Path(intent): Path<String>,
) -> Result<StatusCode, ApiError> {
    office(&who)?;
    let hub = hub(&state)?;
    let shown = intent.clone();
    if on_hub(hub, move |h| {
        h.ledger.retry(&intent).map_err(|e| e.to_string())
    })
    .await?
    {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_refused",
            message: format!("no refused Payment Entry for {shown}"),
        })
    }
}

/// The longest text Twilio sends (it splits it into segments).
const MAX_SMS_CHARS: usize = 1600;

#[derive(serde::Deserialize)]
pub(super) struct Compose {
    body: String,
}

fn sms_error(e: crate::hub::sms::SmsError) -> ApiError {
    use crate::hub::sms::SmsError;
    match e {
        SmsError::OptedOut => ApiError {
            status: StatusCode::CONFLICT,
            code: "opted_out",
            message: e.to_string(),
        },
        SmsError::NotResendable(_) => ApiError {
            status: StatusCode::CONFLICT,
            code: "not_resendable",
            message: e.to_string(),
        },
        SmsError::Db(_) => blocking_err(e),
    }
}

/// Who an office action is logged as.
fn author(who: &Session) -> String {
    format!(
        "{}:{}",
        who.device.author.role.as_str(),
        who.device.author.device
    )
}

/// `POST /api/v1/sms/threads/{phone}` `{"body": …}`: texts a customer (queued, sent by the
/// outbox); answers the outbox entry.
pub(super) async fn sms_send(
    State(state): State<AppState>,
    Authed(who): Authed,
    Path(phone): Path<String>,
    Json(compose): Json<Compose>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    office(&who)?;
    let hub = hub(&state)?;
    if hub.twilio.is_none() {
        return Err(off("twilio_off", "twilio.account_sid"));
    }
    let phone = shared::model::Phone::parse(&phone)
        .map_err(ApiError::bad_request)?
        .as_str()
        .to_owned();
    let body = compose.body.trim().to_owned();
    if body.is_empty() {
        return Err(ApiError::bad_request("the text is empty"));
    }
    if body.chars().count() > MAX_SMS_CHARS {
        return Err(ApiError::bad_request(format!(
            "the text is longer than {MAX_SMS_CHARS} characters"
        )));
    }
    let at = state.sync.now().0;
    let by = author(&who);
    let hub = Arc::clone(hub);
    let id = tokio::task::spawn_blocking(move || hub.sms.queue(&phone, &body, &by, at))
        .await
        .map_err(blocking_err)?
        .map_err(sms_error)?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id }))))
}

/// `POST /api/v1/sms/messages/{id}/resend`: sends again a text whose delivery is unknown or
/// failed (a person decided: Twilio may have sent the first one).
pub(super) async fn sms_resend(
    State(state): State<AppState>,
    Authed(who): Authed,
    Path(id): Path<i64>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    office(&who)?;
    let hub = hub(&state)?;
    let at = state.sync.now().0;
    let by = author(&who);
    let hub = Arc::clone(hub);
    let id = tokio::task::spawn_blocking(move || hub.sms.resend(id, &by, at))
        .await
        .map_err(blocking_err)?
        .map_err(sms_error)?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id }))))
}

/// How a piece of equipment read from a label stands against Service Equipment.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum Known {
    /// A record in stock: the technician can install it (its id).
    InStock,
    /// A record installed or held elsewhere (not shown: it may be outside the reader's scope).
    Elsewhere,
    /// No record with that serial, GPON serial or MAC.
    Unknown,
}

#[derive(Serialize)]
struct Suggestion {
    #[serde(flatten)]
    item: crate::hub::vision::LabelItem,
    known: Known,
    /// The record in stock, when there is one.
    equipment: Option<DocId>,
}

/// Matches label items against the equipment records by serial, GPON serial or MAC.
fn suggestions(
    engine: &shared::sync::server::ServerEngine,
    items: Vec<crate::hub::vision::LabelItem>,
) -> Vec<Suggestion> {
    use shared::model::{AnyEntity, EquipmentStatus, MacAddr, Serial};
    items
        .into_iter()
        .map(|item| {
            let serials: Vec<Serial> = [&item.serial_number, &item.gpon_sn]
                .into_iter()
                .flatten()
                .filter_map(|s| Serial::parse(s).ok())
                .collect();
            let mac = item
                .mac_address
                .as_deref()
                .and_then(|m| MacAddr::parse(m).ok());
            let found = engine.doc_ids().find_map(|d| match engine.entity(d) {
                Some(AnyEntity::Equipment(e))
                    if serials.contains(&e.serial) || (mac.is_some() && e.mac == mac) =>
                {
                    Some((d, e.status, e.location.is_none()))
                }
                _ => None,
            });
            let (known, equipment) = match found {
                Some((d, EquipmentStatus::EnStock, _)) => (Known::InStock, Some(d)),
                Some(_) => (Known::Elsewhere, None),
                None => (Known::Unknown, None),
            };
            Suggestion {
                item,
                known,
                equipment,
            }
        })
        .collect()
}

fn vision_error(e: &crate::hub::vision::VisionError) -> ApiError {
    use crate::hub::vision::VisionError as V;
    let (status, code) = match e {
        V::BadImage(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "bad_image"),
        V::Blocked(_) | V::Truncated | V::Malformed(_) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "unreadable")
        }
        V::CapReached { .. } => (StatusCode::TOO_MANY_REQUESTS, "vision_cap_reached"),
        V::Refused { .. } | V::Unavailable(_) => (StatusCode::BAD_GATEWAY, "vision_unavailable"),
    };
    tracing::warn!(error = %e, "vision.failed");
    ApiError {
        status,
        code,
        message: e.to_string(),
    }
}

/// `POST /api/v1/vision/{barcodes|equipment|invoice}` with a photo (JPEG, PNG or WebP) as the
/// body: what it shows, typed; equipment comes with how each item matches the records.
pub(super) async fn vision(
    State(state): State<AppState>,
    Authed(_who): Authed,
    Path(task): Path<String>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    use crate::hub::vision::{Reading, Task};
    let task = Task::parse(&task).ok_or(ApiError {
        status: StatusCode::NOT_FOUND,
        code: "no_such_reading",
        message: format!("no reading {task:?}: barcodes, equipment or invoice"),
    })?;
    let vision = hub(&state)?
        .vision
        .as_ref()
        .ok_or_else(|| off("vision_off", "gemini.api_key"))?;
    let day = state.sync.now().date().to_string();
    let reading = vision
        .read(task, &body, &day)
        .await
        .map_err(|e| vision_error(&e))?;
    let value = match reading {
        Reading::Equipment { items } => {
            let sync = Arc::clone(&state.sync);
            let matched =
                tokio::task::spawn_blocking(move || sync.read(move |e| suggestions(e, items)))
                    .await
                    .map_err(blocking_err)??;
            serde_json::json!({ "task": "equipment", "items": matched })
        }
        other => serde_json::to_value(other).map_err(blocking_err)?,
    };
    Ok(Json(value))
}

/// A technician may ask payment of the customers their jobs are for; the office of anyone.
fn may_ask_payment(
    state: &AppState,
    who: &Session,
    erp_customer: &str,
) -> Result<bool, ServiceError> {
    if who.device.author.role.is_office() {
        return Ok(true);
    }
    let subject = who.device.subject;
    let today = state.sync.now().date();
    let erp_customer = erp_customer.to_owned();
    state.sync.read(move |e| {
        let customer = e.doc_ids().find(|d| {
            matches!(e.entity(*d), Some(shared::model::AnyEntity::Customer(c))
                if c.erp_name.as_deref() == Some(erp_customer.as_str()))
        });
        customer.is_some_and(|c| e.scope(subject, today).contains(&c))
    })
}

/// `POST /api/v1/payments/{invoice}/checkout`: a payment page for an ERPNext Sales Invoice's
/// outstanding amount (read from ERPNext, never from the caller), to show as a QR code or text
/// to the customer. Asked twice, the same page comes back.
pub(super) async fn checkout(
    State(state): State<AppState>,
    Authed(who): Authed,
    Path(invoice): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    use crate::hub::stripe::{CheckoutRequest, StripeError};
    let hub = hub(&state)?;
    let pages = hub
        .pages
        .as_ref()
        .ok_or_else(|| off("stripe_off", "stripe.secret_key"))?;
    let erp = state.erp.as_ref().ok_or_else(|| {
        off(
            "erpnext_off",
            "erpnext.url: an invoice's amount comes from ERPNext",
        )
    })?;
    let no_invoice = || ApiError {
        status: StatusCode::NOT_FOUND,
        code: "no_invoice",
        message: format!("no submitted Sales Invoice {invoice} in ERPNext"),
    };
    let doc = match erp.bridge.erp().get("Sales Invoice", &invoice).await {
        Ok(doc) => doc,
        Err(crate::erpnext::ErpError::NotFound) => return Err(no_invoice()),
        Err(e) => return Err(bridge_error(e.into())),
    };
    let text = |k: &str| doc.get(k).and_then(serde_json::Value::as_str).unwrap_or("");
    if doc.get("docstatus").and_then(serde_json::Value::as_i64) != Some(1) {
        return Err(no_invoice());
    }
    let customer = text("customer").to_owned();
    let allowed = {
        let (state, who, customer) = (state.clone(), who.clone(), customer.clone());
        tokio::task::spawn_blocking(move || may_ask_payment(&state, &who, &customer))
            .await
            .map_err(blocking_err)??
    };
    if !allowed {
        return Err(ApiError::forbidden(
            "this invoice is for a customer outside your jobs",
        ));
    }
    let outstanding = doc
        .get("outstanding_amount")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0);
    // Currencies with cents (CAD, USD, EUR…): ERPNext keeps two decimals.
    let amount = (outstanding * 100.0).round() as i64;
    if amount <= 0 {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            code: "already_paid",
            message: format!("{invoice} has nothing left to pay"),
        });
    }
    let currency = text("currency").to_lowercase();
    let back = hub
        .public_url
        .clone()
        .unwrap_or_else(|| "https://checkout.stripe.com".into());
    let req = CheckoutRequest {
        invoice: invoice.clone(),
        amount,
        currency: currency.clone(),
        description: format!("{} — {invoice}", text("customer_name")),
        success_url: format!("{back}/paid?invoice={invoice}"),
        cancel_url: format!("{back}/paid?invoice={invoice}&cancelled=1"),
    };
    // A retry sends the same idempotency key: the same page, never a second one.
    let mut page = pages.create(&req).await;
    for wait in [250u64, 1000] {
        if !matches!(page, Err(StripeError::Retry { .. })) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        page = pages.create(&req).await;
    }
    let page = page.map_err(|e| {
        tracing::warn!(invoice, error = %e, "stripe.checkout_failed");
        ApiError {
            status: StatusCode::BAD_GATEWAY,
            code: "stripe_failed",
            message: e.to_string(),
        }
    })?;
    let at = state.sync.now().0;
    let recorded = {
        let (hub, invoice, page, currency) = (
            Arc::clone(hub),
            invoice.clone(),
            page.clone(),
            currency.clone(),
        );
        tokio::task::spawn_blocking(move || {
            hub.payments
                .opened(&invoice, &page, amount, &currency, at)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(blocking_err)?
        .map_err(blocking_err)?
    };
    if let Some(p) = recorded.filter(|p| p.state >= crate::hub::payments::PaymentState::Paid) {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            code: "already_paid",
            message: format!("{invoice} is {}", p.state.as_str()),
        });
    }
    Ok(Json(serde_json::json!({
        "invoice": invoice,
        "session": page.id,
        "url": page.url,
        "expires_at": page.expires_at,
        "amount": amount,
        "currency": currency,
    })))
}

/// `POST /api/v1/webhooks/uptime-kuma`: a monitor went down or came back. Uptime Kuma signs
/// nothing: the request must carry the configured bearer secret (compared in constant time).
pub(super) async fn uptime_kuma(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let hub = hub(&state)?;
    let secret = hub
        .uptime_kuma_secret
        .as_ref()
        .ok_or_else(|| off("uptime_kuma_off", "uptime_kuma_secret"))?;
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let same = {
        use sha2::Digest as _;
        // Equal-length digests compared byte by byte without an early exit.
        let (a, b) = (
            sha2::Sha256::digest(sent),
            sha2::Sha256::digest(secret.expose()),
        );
        a.iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    };
    if !same {
        let e = if sent.is_empty() {
            SignatureError::Missing
        } else {
            SignatureError::Mismatch
        };
        return Err(refused(Provider::UptimeKuma, &e));
    }
    let payload: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| malformed(Provider::UptimeKuma, format!("not JSON: {e}")))?;
    let Some((_, id)) =
        crate::hub::alerts::heartbeat(&payload).map_err(|e| malformed(Provider::UptimeKuma, e))?
    else {
        // Uptime Kuma's "Test" button: acknowledged, nothing to keep.
        return Ok(StatusCode::NO_CONTENT);
    };
    store(
        hub,
        Event {
            provider: Provider::UptimeKuma,
            id,
            kind: "monitor.heartbeat".into(),
            payload,
            received_at: state.sync.now().0,
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/alerts`: the network's monitors, those down first.
pub(super) async fn alerts(
    State(state): State<AppState>,
    Authed(who): Authed,
) -> Result<Json<Vec<crate::hub::alerts::Monitor>>, ApiError> {
    office(&who)?;
    let hub = hub(&state)?;
    on_hub(hub, |h| h.alerts.monitors().map_err(|e| e.to_string()))
        .await
        .map(Json)
}
