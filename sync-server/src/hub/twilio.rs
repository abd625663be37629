//! Sending texts through Twilio's Messages API: the port ([`SmsGateway`]), the real client
//! ([`TwilioClient`]) and the one place that classifies Twilio's answers ([`classify`]).
//!
//! `POST {api}/2010-04-01/Accounts/{AccountSid}/Messages.json`, a form body (`To`, `From`,
//! `Body`, `StatusCallback`), HTTP Basic auth with the account SID and auth token. Twilio has no
//! idempotency key for sending: a request whose answer was lost may or may not have sent the
//! text, so it is reported as [`SendError::Unknown`], never retried by itself.

use std::time::Duration;

use serde_json::Value;

use super::sms::{Delivery, Sms, SmsError};
use crate::settings::TwilioSettings;

/// A text Twilio accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub sid: String,
    pub status: Delivery,
}

/// Why a send did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Twilio refused it for good (an invalid or unsubscribed number, a body it will not send,
    /// our credentials): shown to the sender as it is.
    #[error("Twilio refused the text ({code:?}): {message}")]
    Final { code: Option<i64>, message: String },
    /// Twilio did not take it and asks to try later (rate limit, its own failure), or it could
    /// not be reached: sent again after a pause.
    #[error("Twilio did not take the text ({code:?}): {message}")]
    Retry {
        code: Option<i64>,
        message: String,
        after: Option<Duration>,
    },
    /// The request went out and no answer came back: it may have been sent.
    #[error("no answer from Twilio: the text may have been sent ({0})")]
    Unknown(String),
}

/// Twilio's error codes that mean "this recipient, never".
pub const INVALID_NUMBER: i64 = 21211;
pub const UNSUBSCRIBED: i64 = 21610;
pub const NOT_SMS_CAPABLE: i64 = 21614;
pub const TOO_MANY_REQUESTS: i64 = 20429;

/// What an answer other than 201 means (pure: status, body, `Retry-After`).
pub fn classify(status: u16, body: &Value, retry_after: Option<Duration>) -> SendError {
    let code = body.get("code").and_then(Value::as_i64);
    let message = body
        .get("message")
        .and_then(Value::as_str)
        .map_or_else(|| format!("HTTP {status}"), str::to_owned);
    if status == 429 || code == Some(TOO_MANY_REQUESTS) || status >= 500 {
        SendError::Retry {
            code,
            message,
            after: retry_after,
        }
    } else {
        SendError::Final { code, message }
    }
}

/// Where texts go.
pub trait SmsGateway: Send + Sync {
    /// Sends `body` to `to` (E.164); Twilio reports delivery to `status_callback`.
    fn send<'a>(
        &'a self,
        to: &'a str,
        body: &'a str,
        status_callback: Option<&'a str>,
    ) -> futures_util::future::BoxFuture<'a, Result<Sent, SendError>>;
}

/// Twilio's REST API.
pub struct TwilioClient {
    http: reqwest::Client,
    settings: TwilioSettings,
}

impl std::fmt::Debug for TwilioClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioClient")
            .field("api_url", &self.settings.api_url)
            .field("account_sid", &self.settings.account_sid)
            .finish_non_exhaustive()
    }
}

impl TwilioClient {
    pub fn new(settings: TwilioSettings, timeout: Duration) -> Result<Self, reqwest::Error> {
        crate::tls::install_crypto();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self { http, settings })
    }

    fn url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.settings.api_url.trim_end_matches('/'),
            self.settings.account_sid
        )
    }
}

impl SmsGateway for TwilioClient {
    fn send<'a>(
        &'a self,
        to: &'a str,
        body: &'a str,
        status_callback: Option<&'a str>,
    ) -> futures_util::future::BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(async move {
            let mut form = vec![
                ("To", to),
                ("From", self.settings.from.as_str()),
                ("Body", body),
            ];
            if self.settings.from.starts_with("MG") {
                form[1] = ("MessagingServiceSid", self.settings.from.as_str());
            }
            if let Some(cb) = status_callback {
                form.push(("StatusCallback", cb));
            }
            let sent = self
                .http
                .post(self.url())
                .basic_auth(
                    &self.settings.account_sid,
                    Some(self.settings.auth_token.expose()),
                )
                .form(&form)
                .send()
                .await;
            let resp = match sent {
                Ok(r) => r,
                // Not connected: nothing left this machine.
                Err(e) if e.is_connect() => {
                    return Err(SendError::Retry {
                        code: None,
                        message: format!("Twilio cannot be reached: {e}"),
                        after: None,
                    });
                }
                Err(e) => return Err(SendError::Unknown(e.to_string())),
            };
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let text = match resp.text().await {
                Ok(t) => t,
                Err(e) if status == 201 => return Err(SendError::Unknown(e.to_string())),
                Err(_) => String::new(),
            };
            let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if status == 201 || status == 200 {
                let Some(sid) = json.get("sid").and_then(Value::as_str) else {
                    return Err(SendError::Unknown(
                        "Twilio accepted the text but its answer names no message".into(),
                    ));
                };
                let status = json
                    .get("status")
                    .and_then(Value::as_str)
                    .and_then(Delivery::parse)
                    .unwrap_or(Delivery::Queued);
                return Ok(Sent {
                    sid: sid.to_owned(),
                    status,
                });
            }
            Err(classify(status, &json, retry_after))
        })
    }
}

/// Attempts before a text Twilio keeps refusing for now (rate limit, its own failures) is
/// marked failed for a person to look at.
pub const MAX_SEND_ATTEMPTS: u32 = 10;

/// The pause before the `attempt`-th new try: 2 s doubling to 5 min, or Twilio's `Retry-After`
/// if longer.
pub fn send_delay(attempt: u32, asked: Option<Duration>) -> Duration {
    let ours = Duration::from_secs(2u64 << attempt.min(8)).min(Duration::from_secs(300));
    asked.map_or(ours, |a| a.max(ours))
}

/// An update of the outbox, off the async threads (a failure is logged there).
async fn update(
    sms: &std::sync::Arc<Sms>,
    what: &'static str,
    f: impl FnOnce(&Sms) -> Result<(), SmsError> + Send + 'static,
) {
    let sms = std::sync::Arc::clone(sms);
    super::off_thread(what, move || f(&sms)).await;
}

/// Sends the outbox until `shutdown`: one text at a time, in order; sleeps until a text is
/// queued or a retry falls due. `callback` is the status callback URL (the server's public URL);
/// each text's carries its outbox entry.
pub async fn run_sender(
    sms: std::sync::Arc<super::sms::Sms>,
    gateway: std::sync::Arc<dyn SmsGateway>,
    callback: Option<String>,
    clock: std::sync::Arc<dyn shared::clock::Clock>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use std::sync::Arc;
    let wake = sms.outbox_waker();
    if let Some(n) = {
        let sms = Arc::clone(&sms);
        super::off_thread("sms.recover_sending", move || sms.recover_sending()).await
    } && n > 0
    {
        tracing::warn!(texts = n, "sms.delivery_unknown_after_restart");
    }
    loop {
        let now = clock.now().0;
        let next = {
            let sms = Arc::clone(&sms);
            tokio::task::spawn_blocking(move || sms.next_send(now)).await
        };
        let out = match next {
            Ok(Ok(Some(o))) => o,
            Ok(Ok(None)) => {
                let due = {
                    let sms = Arc::clone(&sms);
                    super::off_thread("sms.next_due", move || sms.next_due())
                        .await
                        .flatten()
                };
                if !super::rest(due, clock.now().0, &wake, &mut shutdown).await {
                    return;
                }
                continue;
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "sms.outbox_read_failed");
                tokio::select! {
                    _ = shutdown.changed() => return,
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
                continue;
            }
            Err(_) => continue,
        };
        let cb = callback.as_ref().map(|u| {
            format!(
                "{u}/api/v1/webhooks/twilio/status?{}={}",
                super::sms::OUTBOX_PARAM,
                out.id
            )
        });
        let result = gateway.send(&out.phone, &out.body, cb.as_deref()).await;
        let id = out.id;
        match result {
            Ok(sent) => {
                update(&sms, "sms.sent", move |s| {
                    s.sent(id, &sent.sid, sent.status)
                })
                .await;
            }
            Err(SendError::Final { code, message }) => {
                tracing::warn!(outbox = id, code, "sms.refused");
                update(&sms, "sms.send_failed", move |s| {
                    s.send_failed(id, code, &message)
                })
                .await;
            }
            Err(SendError::Retry {
                code,
                message,
                after,
            }) => {
                if out.attempts + 1 >= MAX_SEND_ATTEMPTS {
                    let why = format!("gave up after {MAX_SEND_ATTEMPTS} attempts: {message}");
                    update(&sms, "sms.send_failed", move |s| {
                        s.send_failed(id, code, &why)
                    })
                    .await;
                } else {
                    let at = clock.now().0.saturating_add(
                        i64::try_from(send_delay(out.attempts, after).as_millis())
                            .unwrap_or(i64::MAX),
                    );
                    tracing::info!(outbox = id, code, "sms.retry_later");
                    update(&sms, "sms.retry_later", move |s| {
                        s.retry_later(id, at, &message)
                    })
                    .await;
                }
            }
            Err(SendError::Unknown(e)) => {
                tracing::warn!(outbox = id, error = %e, "sms.delivery_unknown");
                update(&sms, "sms.unknown", move |s| s.unknown(id, &e)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn twilio_answers_are_classified_by_status_and_code() {
        let invalid = json!({"code": 21211, "message": "The 'To' number +1555 is not a valid phone number.",
            "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400});
        assert_eq!(
            classify(400, &invalid, None),
            SendError::Final {
                code: Some(INVALID_NUMBER),
                message: "The 'To' number +1555 is not a valid phone number.".into()
            }
        );
        assert!(matches!(
            classify(
                400,
                &json!({"code": 21610, "message": "Attempt to send to unsubscribed recipient"}),
                None
            ),
            SendError::Final {
                code: Some(UNSUBSCRIBED),
                ..
            }
        ));
        assert!(matches!(
            classify(429, &json!({"code": 20429, "message": "Too Many Requests"}), Some(Duration::from_secs(2))),
            SendError::Retry { code: Some(TOO_MANY_REQUESTS), after: Some(d), .. } if d == Duration::from_secs(2)
        ));
        assert!(matches!(
            classify(503, &Value::Null, None),
            SendError::Retry { code: None, .. }
        ));
        assert!(matches!(
            classify(
                401,
                &json!({"code": 20003, "message": "Authenticate"}),
                None
            ),
            SendError::Final {
                code: Some(20003),
                ..
            }
        ));
    }
}
