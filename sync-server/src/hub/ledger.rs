//! Paid invoices into ERPNext: exactly one submitted Payment Entry per Stripe payment.
//!
//! A payment Stripe reports paid is queued in `payment_entries` (by its payment intent, in the
//! same transaction as the payment state: [`super::payments::Payments::apply`]); [`run`] posts
//! each one to ERPNext, one at a time:
//!
//! 1. ERPNext is asked first whether a Payment Entry with this intent as its reference already
//!    exists (a crash after ERPNext saved it, before it was marked here): then it is only marked.
//! 2. Otherwise the Sales Invoice is read (customer, company, receivable account) and the
//!    Payment Entry created submitted (`docstatus` 1), its reference the intent, allocated to the
//!    invoice.
//!
//! ERPNext unreachable or failing is retried with backoff for as long as it lasts; a refusal
//! (an invoice paid another way, a missing account) is kept with ERPNext's words for the office
//! and tried again when asked. Redeliveries, restarts and retries therefore never make a second
//! entry: the queue is keyed by intent and every attempt looks before it writes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension as _, params};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::erpnext::{ErpClient, ErpError};

/// Where Stripe's money lands in ERPNext's books.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounts {
    /// The account paid to (Stripe's clearing or bank account, e.g. `Stripe - FSM`).
    pub paid_to: String,
    /// The Mode of Payment recorded (`erpnext setup` creates it).
    pub mode_of_payment: String,
}

/// A paid payment waiting for, or holding, its Payment Entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub intent: String,
    pub invoice: String,
    /// Cents.
    pub amount: i64,
    pub currency: Option<String>,
    /// `queued`, `done` or `refused`.
    pub state: String,
    pub attempts: u32,
    /// ERPNext's name of the Payment Entry, once made.
    pub erp_name: Option<String>,
    pub error: Option<String>,
}

pub struct Ledger {
    conn: Mutex<Connection>,
    wake: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").finish_non_exhaustive()
    }
}

const COLUMNS: &str = "intent, invoice, amount, currency, state, attempts, erp_name, error";

fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        intent: r.get(0)?,
        invoice: r.get(1)?,
        amount: r.get(2)?,
        currency: r.get(3)?,
        state: r.get(4)?,
        attempts: r.get(5)?,
        erp_name: r.get(6)?,
        error: r.get(7)?,
    })
}

impl Ledger {
    /// Opens the queue in the hub's database (its table is made with the payments', which
    /// wake the poster through `wake`).
    pub fn open(
        path: &std::path::Path,
        wake: Arc<tokio::sync::Notify>,
    ) -> Result<Arc<Self>, rusqlite::Error> {
        // Not synced on its own: a lost `done` mark is found again in ERPNext by the next look.
        let conn = super::open_db(path, false)?;
        Ok(Arc::new(Self {
            conn: Mutex::new(conn),
            wake,
        }))
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        super::lock_db(&self.conn)
    }

    /// Wakes the poster (a payment was queued, or a refused one put back).
    pub fn waker(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.wake)
    }

    pub fn due(&self, now: i64) -> Result<Option<Entry>, rusqlite::Error> {
        self.conn()
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM payment_entries WHERE state = 'queued' AND next_at <= ?1
                     ORDER BY paid_at, intent LIMIT 1"
                ),
                [now],
                entry,
            )
            .optional()
    }

    pub fn next_due(&self) -> Result<Option<i64>, rusqlite::Error> {
        self.conn().query_row(
            "SELECT MIN(next_at) FROM payment_entries WHERE state = 'queued'",
            [],
            |r| r.get(0),
        )
    }

    fn done(&self, intent: &str, erp_name: &str) -> Result<(), rusqlite::Error> {
        self.conn().execute(
            "UPDATE payment_entries SET state = 'done', erp_name = ?2, error = NULL,
                 attempts = attempts + 1 WHERE intent = ?1",
            params![intent, erp_name],
        )?;
        Ok(())
    }

    fn later(&self, intent: &str, at: i64, error: &str) -> Result<(), rusqlite::Error> {
        self.conn().execute(
            "UPDATE payment_entries SET next_at = ?2, error = ?3, attempts = attempts + 1
             WHERE intent = ?1",
            params![intent, at, error],
        )?;
        Ok(())
    }

    fn refused(&self, intent: &str, error: &str) -> Result<(), rusqlite::Error> {
        self.conn().execute(
            "UPDATE payment_entries SET state = 'refused', error = ?2, attempts = attempts + 1
             WHERE intent = ?1",
            params![intent, error],
        )?;
        Ok(())
    }

    /// Puts a refused entry back in line (after the office fixed what ERPNext objected to).
    pub fn retry(&self, intent: &str) -> Result<bool, rusqlite::Error> {
        let n = self.conn().execute(
            "UPDATE payment_entries SET state = 'queued', next_at = 0 WHERE intent = ?1 AND state = 'refused'",
            [intent],
        )?;
        if n > 0 {
            self.wake.notify_one();
        }
        Ok(n > 0)
    }

    /// The entries of an invoice.
    pub fn of_invoice(&self, invoice: &str) -> Result<Vec<Entry>, rusqlite::Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM payment_entries WHERE invoice = ?1 ORDER BY paid_at"
        ))?;
        let rows = stmt.query_map([invoice], entry)?;
        rows.collect()
    }

    /// Entries not made yet or refused, oldest first (for the office and the metrics).
    pub fn pending(&self, limit: usize) -> Result<Vec<Entry>, rusqlite::Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM payment_entries WHERE state != 'done' ORDER BY paid_at LIMIT ?1"
        ))?;
        let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], entry)?;
        rows.collect()
    }
}

/// The Payment Entry for `e` against invoice `inv` (as ERPNext returned it), submitted on create.
pub fn payment_entry(
    e: &Entry,
    inv: &Value,
    accounts: &Accounts,
    today: &str,
) -> Map<String, Value> {
    let text = |k: &str| inv.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    // ERPNext keeps two decimals.
    let amount = e.amount as f64 / 100.0;
    let body = json!({
        "payment_type": "Receive",
        "party_type": "Customer",
        "party": text("customer"),
        "company": text("company"),
        "posting_date": today,
        "mode_of_payment": accounts.mode_of_payment,
        "paid_from": text("debit_to"),
        "paid_to": accounts.paid_to,
        "paid_amount": amount,
        "received_amount": amount,
        "reference_no": e.intent,
        "reference_date": today,
        "references": [{
            "reference_doctype": "Sales Invoice",
            "reference_name": e.invoice,
            "allocated_amount": amount,
        }],
        "docstatus": 1,
    });
    match body {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// One attempt at `e`'s Payment Entry: its ERPNext name, or why not.
async fn post(
    erp: &ErpClient,
    e: &Entry,
    accounts: &Accounts,
    today: &str,
) -> Result<String, ErpError> {
    let existing = erp
        .list(
            "Payment Entry",
            &["name"],
            &json!([["reference_no", "=", e.intent], ["docstatus", "!=", 2]]),
            "creation asc",
            0,
            1,
        )
        .await?;
    if let Some(name) = existing
        .first()
        .and_then(|r| r.get("name"))
        .and_then(Value::as_str)
    {
        return Ok(name.to_owned());
    }
    let invoice = erp.get("Sales Invoice", &e.invoice).await?;
    let made = erp
        .insert(
            "Payment Entry",
            &payment_entry(e, &invoice, accounts, today),
        )
        .await?;
    made.get("name")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ErpError::Invalid {
            exc_type: "UnexpectedAnswer".into(),
            message: "ERPNext's answer names no Payment Entry".into(),
        })
}

/// The longest pause between two tries while ERPNext fails.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(600);

/// The pause before the `attempt`-th new try while ERPNext fails: 2 s doubling to `cap`.
pub fn retry_delay(attempt: u32, cap: Duration) -> Duration {
    Duration::from_secs(2u64 << attempt.min(9)).min(cap)
}

/// An update of the queue, off the async threads (a failure is logged there).
async fn update(
    ledger: &Arc<Ledger>,
    what: &'static str,
    f: impl FnOnce(&Ledger) -> Result<(), rusqlite::Error> + Send + 'static,
) {
    let ledger = Arc::clone(ledger);
    super::off_thread(what, move || f(&ledger)).await;
}

/// Posts queued Payment Entries until `shutdown`; sleeps until one is queued or a retry is due.
pub async fn run(
    ledger: Arc<Ledger>,
    erp: ErpClient,
    accounts: Accounts,
    clock: Arc<dyn shared::clock::Clock>,
    retry_cap: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let wake = ledger.waker();
    loop {
        let now = clock.now();
        let due = {
            let ledger = Arc::clone(&ledger);
            super::off_thread("ledger.due", move || ledger.due(now.0)).await
        };
        let Some(Some(e)) = due else {
            let next = {
                let ledger = Arc::clone(&ledger);
                super::off_thread("ledger.next_due", move || ledger.next_due())
                    .await
                    .flatten()
            };
            if !super::rest(next, clock.now().0, &wake, &mut shutdown).await {
                return;
            }
            continue;
        };
        let today = now.date().to_string();
        let intent = e.intent.clone();
        match post(&erp, &e, &accounts, &today).await {
            Ok(name) => {
                tracing::info!(intent, erp_name = name, "ledger.payment_entry");
                update(&ledger, "ledger.done", move |l| l.done(&intent, &name)).await;
            }
            Err(err) if err.retryable() => {
                let at = clock.now().0.saturating_add(
                    i64::try_from(retry_delay(e.attempts, retry_cap).as_millis())
                        .unwrap_or(i64::MAX),
                );
                tracing::warn!(intent, error = %err, "ledger.retry");
                let msg = err.to_string();
                update(&ledger, "ledger.later", move |l| l.later(&intent, at, &msg)).await;
            }
            Err(err) => {
                tracing::error!(intent, error = %err, "ledger.refused");
                let msg = err.to_string();
                update(&ledger, "ledger.refused", move |l| l.refused(&intent, &msg)).await;
            }
        }
    }
}
