//! Payment pages with Stripe Checkout: the port ([`PaymentPages`]), the real client
//! ([`StripeClient`]) and the one place that classifies Stripe's answers ([`classify`]).
//!
//! `POST {api}/v1/checkout/sessions`, a form body with bracketed keys, `Authorization: Bearer
//! sk_…`, and an `Idempotency-Key`: the same invoice and amount always send the same key, so a
//! retry after a lost answer gets the same page back instead of a second one. The invoice's
//! name travels in the session's and the payment's metadata (`invoice`), which is how Stripe's
//! events are matched back ([`super::payments`]).

use std::time::Duration;

use serde_json::Value;

/// A payment page to open for an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRequest {
    /// ERPNext's Sales Invoice name.
    pub invoice: String,
    /// In the currency's smallest unit (cents).
    pub amount: i64,
    /// ISO code, lower case (`cad`).
    pub currency: String,
    /// What the customer sees on the page.
    pub description: String,
    pub success_url: String,
    pub cancel_url: String,
}

impl CheckoutRequest {
    /// The key Stripe deduplicates on: one page per invoice and amount.
    pub fn idempotency_key(&self) -> String {
        format!(
            "fsm-checkout-{}-{}-{}",
            self.invoice, self.amount, self.currency
        )
    }
}

/// A page Stripe opened.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Checkout {
    pub id: String,
    pub url: String,
    /// Unix seconds.
    pub expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StripeError {
    /// Stripe refused the request as it is (bad parameters, keys, an idempotency clash).
    #[error("Stripe refused the request ({kind}): {message}")]
    Final { kind: String, message: String },
    /// Rate limited, Stripe failing, or not reached: worth another try with the same key.
    #[error("Stripe did not answer usefully ({kind}): {message}")]
    Retry { kind: String, message: String },
}

/// Stripe's error answers (pure: status and body).
pub fn classify(status: u16, body: &Value) -> StripeError {
    let e = body.get("error").unwrap_or(&Value::Null);
    let kind = e
        .get("code")
        .or_else(|| e.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned();
    let message = e
        .get("message")
        .and_then(Value::as_str)
        .map_or_else(|| format!("HTTP {status}"), str::to_owned);
    if status == 429 || status >= 500 {
        StripeError::Retry { kind, message }
    } else {
        StripeError::Final { kind, message }
    }
}

/// The form a Checkout Session is created with.
pub fn form(req: &CheckoutRequest) -> Vec<(String, String)> {
    [
        ("mode", "payment".to_owned()),
        ("line_items[0][quantity]", "1".to_owned()),
        (
            "line_items[0][price_data][currency]",
            req.currency.to_lowercase(),
        ),
        (
            "line_items[0][price_data][unit_amount]",
            req.amount.to_string(),
        ),
        (
            "line_items[0][price_data][product_data][name]",
            req.description.clone(),
        ),
        ("success_url", req.success_url.clone()),
        ("cancel_url", req.cancel_url.clone()),
        ("client_reference_id", req.invoice.clone()),
        ("metadata[invoice]", req.invoice.clone()),
        (
            "payment_intent_data[metadata][invoice]",
            req.invoice.clone(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Where payment pages are opened.
pub trait PaymentPages: Send + Sync {
    fn create<'a>(
        &'a self,
        req: &'a CheckoutRequest,
    ) -> futures_util::future::BoxFuture<'a, Result<Checkout, StripeError>>;
}

/// Stripe's API.
pub struct StripeClient {
    http: reqwest::Client,
    api: String,
    key: crate::settings::Secret,
}

impl std::fmt::Debug for StripeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeClient")
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

/// The API version the requests and the event shapes we read are written for.
pub const STRIPE_VERSION: &str = "2024-06-20";

impl StripeClient {
    pub fn new(api: &str, key: crate::settings::Secret) -> Result<Self, reqwest::Error> {
        crate::tls::install_crypto();
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .connect_timeout(Duration::from_secs(10))
                .build()?,
            api: api.trim_end_matches('/').to_owned(),
            key,
        })
    }
}

impl PaymentPages for StripeClient {
    fn create<'a>(
        &'a self,
        req: &'a CheckoutRequest,
    ) -> futures_util::future::BoxFuture<'a, Result<Checkout, StripeError>> {
        Box::pin(async move {
            let resp = self
                .http
                .post(format!("{}/v1/checkout/sessions", self.api))
                .bearer_auth(self.key.expose())
                .header("Idempotency-Key", req.idempotency_key())
                .header("Stripe-Version", STRIPE_VERSION)
                .form(&form(req))
                .send()
                .await
                .map_err(|e| StripeError::Retry {
                    kind: "transport".into(),
                    message: e.to_string(),
                })?;
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if status != 200 {
                return Err(classify(status, &body));
            }
            let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
            match (text("id"), text("url")) {
                (Some(id), Some(url)) => Ok(Checkout {
                    id,
                    url,
                    expires_at: body.get("expires_at").and_then(Value::as_i64).unwrap_or(0),
                }),
                _ => Err(StripeError::Final {
                    kind: "unexpected_answer".into(),
                    message: "Stripe's answer names no session or page".into(),
                }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stripe_errors_are_classified_by_status() {
        let missing = json!({"error": {"type": "invalid_request_error", "code": "parameter_missing",
            "message": "Missing required param: line_items.", "param": "line_items"}});
        assert_eq!(
            classify(400, &missing),
            StripeError::Final {
                kind: "parameter_missing".into(),
                message: "Missing required param: line_items.".into()
            }
        );
        assert!(matches!(
            classify(
                429,
                &json!({"error": {"type": "rate_limit_error", "message": "Too many requests"}})
            ),
            StripeError::Retry { .. }
        ));
        assert!(matches!(
            classify(502, &Value::Null),
            StripeError::Retry { .. }
        ));
        assert!(matches!(
            classify(
                401,
                &json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_***"}})
            ),
            StripeError::Final { .. }
        ));
    }

    #[test]
    fn one_key_per_invoice_and_amount() {
        let r = CheckoutRequest {
            invoice: "ACC-SINV-2026-00042".into(),
            amount: 8330,
            currency: "cad".into(),
            description: "Facture ACC-SINV-2026-00042".into(),
            success_url: "https://x/ok".into(),
            cancel_url: "https://x/no".into(),
        };
        let mut other = r.clone();
        other.amount = 8331;
        assert_ne!(r.idempotency_key(), other.idempotency_key());
        assert_eq!(
            r.idempotency_key(),
            "fsm-checkout-ACC-SINV-2026-00042-8330-cad"
        );
        let f = form(&r);
        assert!(f.contains(&("metadata[invoice]".into(), "ACC-SINV-2026-00042".into())));
        assert!(f.contains(&(
            "payment_intent_data[metadata][invoice]".into(),
            "ACC-SINV-2026-00042".into()
        )));
    }
}
