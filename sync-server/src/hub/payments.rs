//! Payment state per invoice, from Stripe's events. Events come in any order and any number of
//! times; the state only moves forward (`open` → `failed` → `paid` → `refunded`), so a late
//! `payment_failed` never hides a payment that went through.
//!
//! Payments we ask for carry the ERPNext Sales Invoice's name in their metadata (`invoice`);
//! events about anything else on the Stripe account are acknowledged and ignored.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension as _, params};
use serde::Serialize;
use serde_json::Value;

use super::inbox::{Event, HandleError, Handler};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    Open,
    Expired,
    Failed,
    Paid,
    Refunded,
}

impl PaymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Expired => "expired",
            Self::Failed => "failed",
            Self::Paid => "paid",
            Self::Refunded => "refunded",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "open" => Self::Open,
            "expired" => Self::Expired,
            "failed" => Self::Failed,
            "paid" => Self::Paid,
            "refunded" => Self::Refunded,
            _ => return None,
        })
    }
    fn rank(self) -> i64 {
        match self {
            Self::Open => 0,
            Self::Expired | Self::Failed => 1,
            Self::Paid => 2,
            Self::Refunded => 3,
        }
    }
}

/// What an event says about an invoice's payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub invoice: String,
    pub state: PaymentState,
    pub intent: Option<String>,
    /// In the currency's smallest unit.
    pub amount: Option<i64>,
    pub currency: Option<String>,
}

/// Reads a Stripe event: `Ok(None)` when it is not about one of our invoices or not a kind we
/// follow; an error when it is ours but unreadable.
pub fn transition(kind: &str, event: &Value) -> Result<Option<Transition>, String> {
    let object = event
        .pointer("/data/object")
        .ok_or("the event has no data.object")?;
    let text = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_owned);
    let Some(invoice) = text(object, "/metadata/invoice")
        .or_else(|| text(object, "/client_reference_id"))
        .filter(|i| !i.is_empty())
    else {
        return Ok(None);
    };
    let (state, intent, amount) = match kind {
        "checkout.session.completed" => {
            let paid = text(object, "/payment_status").as_deref() == Some("paid");
            (
                if paid {
                    PaymentState::Paid
                } else {
                    PaymentState::Open
                },
                text(object, "/payment_intent"),
                object.get("amount_total").and_then(Value::as_i64),
            )
        }
        "checkout.session.async_payment_succeeded" => (
            PaymentState::Paid,
            text(object, "/payment_intent"),
            object.get("amount_total").and_then(Value::as_i64),
        ),
        "checkout.session.async_payment_failed" => {
            (PaymentState::Failed, text(object, "/payment_intent"), None)
        }
        "checkout.session.expired" => (PaymentState::Expired, None, None),
        "payment_intent.succeeded" => (
            PaymentState::Paid,
            text(object, "/id"),
            object.get("amount_received").and_then(Value::as_i64),
        ),
        "payment_intent.payment_failed" => (PaymentState::Failed, text(object, "/id"), None),
        "charge.refunded" => (
            PaymentState::Refunded,
            text(object, "/payment_intent"),
            object.get("amount_refunded").and_then(Value::as_i64),
        ),
        _ => return Ok(None),
    };
    Ok(Some(Transition {
        invoice,
        state,
        intent,
        amount,
        currency: text(object, "/currency"),
    }))
}

/// An invoice's payment as known from Stripe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Payment {
    pub invoice: String,
    pub state: PaymentState,
    pub intent: Option<String>,
    pub amount: Option<i64>,
    pub currency: Option<String>,
    pub updated_at: i64,
    /// The payment page asked for, while it is the way to pay.
    pub session: Option<String>,
    pub url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("payments database: {0}")]
    Db(#[from] rusqlite::Error),
}

pub struct Payments {
    conn: Mutex<Connection>,
    /// Wakes the Payment Entry poster when a paid payment is queued.
    entries: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Payments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payments").finish_non_exhaustive()
    }
}

impl Payments {
    /// Payment state is kept from the inbox's events, after them: not synced on its own (a
    /// power cut loses at most the last states together with the inbox marks after them, and
    /// those events are processed again).
    pub fn open(path: &Path) -> Result<Arc<Self>, PaymentError> {
        let conn = super::open_db(path, false)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS payments (
                 invoice TEXT PRIMARY KEY,
                 state TEXT NOT NULL,
                 rank INTEGER NOT NULL,
                 intent TEXT,
                 amount INTEGER,
                 currency TEXT,
                 updated_at INTEGER NOT NULL,
                 session TEXT,
                 url TEXT
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS payment_entries (
                 intent TEXT PRIMARY KEY,
                 invoice TEXT NOT NULL,
                 amount INTEGER NOT NULL,
                 currency TEXT,
                 state TEXT NOT NULL DEFAULT 'queued',
                 attempts INTEGER NOT NULL DEFAULT 0,
                 next_at INTEGER NOT NULL DEFAULT 0,
                 erp_name TEXT,
                 error TEXT,
                 paid_at INTEGER NOT NULL
             ) WITHOUT ROWID;",
        )?;
        Ok(Arc::new(Self {
            conn: Mutex::new(conn),
            entries: Arc::new(tokio::sync::Notify::new()),
        }))
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        super::lock_db(&self.conn)
    }

    /// Applies a transition if it moves the payment forward; returns whether it did. A payment
    /// reported paid (with its intent and amount) is queued for its Payment Entry in ERPNext in
    /// the same transaction, once per intent ([`super::ledger`]).
    pub fn apply(&self, t: &Transition, at: i64) -> Result<bool, PaymentError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut queued = 0;
        if t.state == PaymentState::Paid
            && let (Some(intent), Some(amount)) = (&t.intent, t.amount)
        {
            queued = tx.execute(
                "INSERT INTO payment_entries (intent, invoice, amount, currency, paid_at)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (intent) DO NOTHING",
                params![intent, t.invoice, amount, t.currency, at],
            )?;
        }
        let n = tx.execute(
            "INSERT INTO payments (invoice, state, rank, intent, amount, currency, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (invoice) DO UPDATE SET state = excluded.state, rank = excluded.rank,
                 intent = COALESCE(excluded.intent, payments.intent),
                 amount = COALESCE(excluded.amount, payments.amount),
                 currency = COALESCE(excluded.currency, payments.currency),
                 updated_at = excluded.updated_at
             WHERE excluded.rank > payments.rank",
            params![
                t.invoice,
                t.state.as_str(),
                t.state.rank(),
                t.intent,
                t.amount,
                t.currency,
                at
            ],
        )?;
        tx.commit()?;
        if queued > 0 {
            self.entries.notify_one();
        }
        Ok(n == 1)
    }

    /// What wakes the Payment Entry poster ([`super::ledger::Ledger::open`] takes it).
    pub fn entries_waker(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.entries)
    }

    /// Records the payment page opened for an invoice not paid yet; the state as it stands
    /// after (a page opened for an invoice Stripe already reported paid changes nothing).
    pub fn opened(
        &self,
        invoice: &str,
        page: &super::stripe::Checkout,
        amount: i64,
        currency: &str,
        at: i64,
    ) -> Result<Option<Payment>, PaymentError> {
        self.conn().execute(
            "INSERT INTO payments (invoice, state, rank, amount, currency, updated_at, session, url)
             VALUES (?1, 'open', 0, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (invoice) DO UPDATE SET session = excluded.session, url = excluded.url,
                 amount = excluded.amount, currency = excluded.currency,
                 updated_at = excluded.updated_at
             WHERE payments.rank < 2",
            params![invoice, amount, currency, at, page.id, page.url],
        )?;
        self.get(invoice)
    }

    pub fn get(&self, invoice: &str) -> Result<Option<Payment>, PaymentError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT invoice, state, intent, amount, currency, updated_at, session, url
                 FROM payments WHERE invoice = ?1",
                [invoice],
                |r| {
                    let state: String = r.get(1)?;
                    Ok(Payment {
                        invoice: r.get(0)?,
                        state: PaymentState::parse(&state).unwrap_or(PaymentState::Open),
                        intent: r.get(2)?,
                        amount: r.get(3)?,
                        currency: r.get(4)?,
                        updated_at: r.get(5)?,
                        session: r.get(6)?,
                        url: r.get(7)?,
                    })
                },
            )
            .optional()?)
    }
}

impl Handler for Payments {
    fn handle<'a>(
        &'a self,
        event: &'a Event,
    ) -> futures_util::future::BoxFuture<'a, Result<(), HandleError>> {
        Box::pin(async move {
            match transition(&event.kind, &event.payload).map_err(HandleError::Final)? {
                Some(t) => self
                    .apply(&t, event.received_at)
                    .map(|_| ())
                    .map_err(|e| HandleError::Retry(e.to_string())),
                None => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[allow(clippy::needless_pass_by_value)] // built inline at each call
    fn event(kind: &str, object: Value) -> (String, Value) {
        (
            kind.to_owned(),
            json!({"id": "evt_1", "object": "event", "type": kind, "data": {"object": object}}),
        )
    }

    #[test]
    fn any_order_gives_the_furthest_state() {
        let dir = tempfile::tempdir().unwrap();
        let p = Payments::open(&dir.path().join("hub.sqlite3")).unwrap();
        let meta = json!({"invoice": "ACC-SINV-2026-00042"});
        let events = [
            event(
                "payment_intent.succeeded",
                json!({"id": "pi_1", "amount_received": 8330, "currency": "cad", "metadata": meta}),
            ),
            event(
                "payment_intent.payment_failed",
                json!({"id": "pi_1", "metadata": meta}),
            ),
            event(
                "checkout.session.completed",
                json!({"id": "cs_1", "payment_intent": "pi_1", "payment_status": "paid",
                       "amount_total": 8330, "currency": "cad", "metadata": meta}),
            ),
        ];
        // Every order of the three, each delivered twice, ends paid.
        for order in [[0, 1, 2], [1, 0, 2], [2, 1, 0], [1, 2, 0]] {
            let file = format!("o{}{}{}.sqlite3", order[0], order[1], order[2]);
            let p2 = Payments::open(&dir.path().join(file)).unwrap();
            for i in order.iter().chain(order.iter()) {
                let (kind, ev) = &events[*i];
                if let Some(t) = transition(kind, ev).unwrap() {
                    p2.apply(&t, 1).unwrap();
                }
            }
            let got = p2.get("ACC-SINV-2026-00042").unwrap().unwrap();
            assert_eq!(
                (got.state, got.intent.as_deref(), got.amount),
                (PaymentState::Paid, Some("pi_1"), Some(8330)),
                "order {order:?}"
            );
        }
        // A refund moves it on; a late success does not move it back.
        let (k, ev) = event(
            "charge.refunded",
            json!({"id": "ch_1", "payment_intent": "pi_1", "amount_refunded": 8330, "metadata": meta}),
        );
        let (k0, ev0) = &events[0];
        p.apply(&transition(k0, ev0).unwrap().unwrap(), 1).unwrap();
        assert!(p.apply(&transition(&k, &ev).unwrap().unwrap(), 2).unwrap());
        assert!(!p.apply(&transition(k0, ev0).unwrap().unwrap(), 3).unwrap());
        assert_eq!(
            p.get("ACC-SINV-2026-00042").unwrap().unwrap().state,
            PaymentState::Refunded
        );
    }

    #[test]
    fn events_about_other_payments_or_kinds_are_ignored() {
        let (k, ev) = event(
            "payment_intent.succeeded",
            json!({"id": "pi_9", "metadata": {}}),
        );
        assert_eq!(transition(&k, &ev), Ok(None));
        let (k, ev) = event(
            "customer.created",
            json!({"id": "cus_1", "metadata": {"invoice": "X"}}),
        );
        assert_eq!(transition(&k, &ev), Ok(None));
        assert!(transition("payment_intent.succeeded", &json!({"id": "evt"})).is_err());
    }
}
