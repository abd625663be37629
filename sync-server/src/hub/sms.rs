//! SMS conversations: what Twilio's webhooks tell us (inbound messages, delivery status), kept
//! per customer phone number, and the opt-outs customers asked for.
//!
//! Delivery status only moves forward (`queued` → `sending` → `sent` → `delivered`, or a final
//! failure), so callbacks arriving out of order (delivered before sent) leave the right state.
//!
//! Texts sent from here go through a durable outbox: queued in one transaction with the message
//! the conversation shows, marked `sending` on disk before Twilio is called, then sent (Twilio's
//! message id), failed (Twilio's reason), queued again for later (rate limit, Twilio down) or
//! `unknown` when the answer was lost: then nothing is sent again unless a person asks
//! ([`Sms::resend`]). Each text's status callback URL names its outbox entry, so Twilio's
//! callbacks settle an unknown one.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension as _, params};
use serde::Serialize;
use shared::ids::DocId;

use super::inbox::{Event, HandleError, Handler};

/// A message's delivery state, ordered: a later callback never moves it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    Queued,
    Sending,
    Sent,
    Delivered,
    Undelivered,
    Failed,
    Received,
    /// Twilio's answer to the send was lost: it may or may not have gone out.
    Unknown,
}

impl Delivery {
    /// Twilio's `MessageStatus` / `SmsStatus` words.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "accepted" | "scheduled" | "queued" => Self::Queued,
            "sending" => Self::Sending,
            "sent" => Self::Sent,
            "delivered" | "read" => Self::Delivered,
            "undelivered" => Self::Undelivered,
            "failed" | "canceled" => Self::Failed,
            "received" | "receiving" => Self::Received,
            "unknown" => Self::Unknown,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Undelivered => "undelivered",
            Self::Failed => "failed",
            Self::Received => "received",
            Self::Unknown => "unknown",
        }
    }
    /// How far along it is; the final states share a rank (the first to arrive stays).
    fn rank(self) -> i64 {
        match self {
            Self::Queued => 1,
            Self::Sending => 2,
            // Past sending (the call went out), before anything Twilio reports.
            Self::Unknown => 3,
            Self::Sent => 4,
            Self::Delivered | Self::Undelivered | Self::Failed | Self::Received => 5,
        }
    }
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// Twilio's message id (`SM…`), or `out:N` while a text sent from here has none yet.
    pub sid: String,
    pub inbound: bool,
    pub body: Option<String>,
    pub status: Delivery,
    pub error_code: Option<i64>,
    /// Twilio's words for a failure, or ours.
    pub error: Option<String>,
    /// Unix milliseconds.
    pub at: i64,
    /// A text sent from here: its outbox entry (what `resend` takes).
    pub outbox: Option<i64>,
    /// Who sent it from here (an office account's name or a device).
    pub author: Option<String>,
}

/// A conversation with one phone number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Thread {
    /// The customer's number (E.164).
    pub phone: String,
    /// The customer it belongs to; `None`: an unknown number (an unmatched thread).
    pub customer: Option<DocId>,
    pub last_at: i64,
    pub last_body: Option<String>,
    pub messages: u64,
    /// The customer asked not to be texted (STOP).
    pub opted_out: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    #[error("SMS database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("this number asked not to be texted (STOP); it can text START to allow it again")]
    OptedOut,
    #[error("no text {0} can be sent again: only one whose delivery is unknown or failed")]
    NotResendable(i64),
}

/// A text waiting in the outbox, as the sender takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub id: i64,
    pub phone: String,
    pub body: String,
    /// Attempts before this one.
    pub attempts: u32,
}

/// Words that stop and restart texts, as carriers and Twilio honour them (French included).
const STOP: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "ARRET",
    "ARRÊT",
];
const START: &[&str] = &["START", "YES", "UNSTOP", "DEBUT", "DÉBUT"];

/// What a keyword asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    Stop,
    Start,
}

/// The keyword a message body is, if it is one (the whole body, any case, spaces around).
pub fn keyword(body: &str) -> Option<Keyword> {
    let word = body.trim().to_uppercase();
    if STOP.contains(&word.as_str()) {
        Some(Keyword::Stop)
    } else if START.contains(&word.as_str()) {
        Some(Keyword::Start)
    } else {
        None
    }
}

/// Finds the customer a phone number belongs to (E.164).
pub type CustomerLookup = Arc<dyn Fn(&str) -> Option<DocId> + Send + Sync>;

/// Conversations in the hub database.
pub struct Sms {
    conn: Mutex<Connection>,
    customers: CustomerLookup,
    /// Wakes the outbox's sender.
    outbox_wake: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Sms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sms").finish_non_exhaustive()
    }
}

impl Sms {
    pub fn open(
        path: &Path,
        full_sync: bool,
        customers: CustomerLookup,
    ) -> Result<Arc<Self>, SmsError> {
        let conn = super::open_db(path, full_sync)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS sms_messages (
                 sid TEXT PRIMARY KEY,
                 inbound INTEGER NOT NULL,
                 phone TEXT NOT NULL,
                 body TEXT,
                 status TEXT NOT NULL,
                 status_rank INTEGER NOT NULL,
                 error_code INTEGER,
                 error TEXT,
                 at INTEGER NOT NULL,
                 customer BLOB,
                 outbox INTEGER UNIQUE,
                 author TEXT
             );
             CREATE INDEX IF NOT EXISTS sms_by_phone ON sms_messages(phone, at);
             CREATE TABLE IF NOT EXISTS sms_opt_out (phone TEXT PRIMARY KEY, since INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS sms_outbox (
                 id INTEGER PRIMARY KEY,
                 phone TEXT NOT NULL,
                 body TEXT NOT NULL,
                 state TEXT NOT NULL DEFAULT 'queued',
                 attempts INTEGER NOT NULL DEFAULT 0,
                 next_at INTEGER NOT NULL DEFAULT 0,
                 secret INTEGER NOT NULL DEFAULT 0
             );
             CREATE INDEX IF NOT EXISTS sms_outbox_due ON sms_outbox(state, next_at);
             CREATE TABLE IF NOT EXISTS sms_notified (
                 job BLOB NOT NULL, kind TEXT NOT NULL, written INTEGER NOT NULL,
                 PRIMARY KEY (job, kind, written)
             ) WITHOUT ROWID;",
        )?;
        Ok(Arc::new(Self {
            conn: Mutex::new(conn),
            customers,
            outbox_wake: Arc::new(tokio::sync::Notify::new()),
        }))
    }

    /// Records that the customer of `job` was told of `kind` written at `written`; `false` when
    /// they already were (a replayed event, another sync of the same job).
    pub fn mark_notified(&self, job: DocId, kind: &str, written: i64) -> Result<bool, SmsError> {
        let n = self.conn().execute(
            "INSERT INTO sms_notified (job, kind, written) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
            params![job.as_bytes().to_vec(), kind, written],
        )?;
        Ok(n == 1)
    }

    /// Wakes the outbox's sender when a text is queued.
    pub fn outbox_waker(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.outbox_wake)
    }

    /// Queues a text to `phone` (E.164); the conversation shows it at once as queued. Refused
    /// for a number that texted STOP.
    pub fn queue(&self, phone: &str, body: &str, author: &str, at: i64) -> Result<i64, SmsError> {
        self.queue_text(phone, (body, None), author, at)
    }

    /// Queues a text that carries a secret (a login link): the conversation shows `shown`, and
    /// once the send is over (sent, refused or unknown) the outbox forgets the real text; it is
    /// never sent again (a new link is made instead).
    pub fn queue_secret(
        &self,
        phone: &str,
        body: &str,
        shown: &str,
        author: &str,
        at: i64,
    ) -> Result<i64, SmsError> {
        self.queue_text(phone, (body, Some(shown)), author, at)
    }

    fn queue_text(
        &self,
        phone: &str,
        (body, shown): (&str, Option<&str>),
        author: &str,
        at: i64,
    ) -> Result<i64, SmsError> {
        let customer = (self.customers)(phone);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let opted_out: i64 = tx.query_row(
            "SELECT COUNT(*) FROM sms_opt_out WHERE phone = ?1",
            [phone],
            |r| r.get(0),
        )?;
        if opted_out > 0 {
            return Err(SmsError::OptedOut);
        }
        tx.execute(
            "INSERT INTO sms_outbox (phone, body, secret) VALUES (?1, ?2, ?3)",
            params![phone, body, shown.is_some()],
        )?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO sms_messages (sid, inbound, phone, body, status, status_rank, at, customer, outbox, author)
             VALUES (?1, 0, ?2, ?3, 'queued', 1, ?4, ?5, ?6, ?7)",
            params![
                format!("out:{id}"),
                phone,
                shown.unwrap_or(body),
                at,
                customer.map(|c| c.as_bytes().to_vec()),
                id,
                author
            ],
        )?;
        tx.commit()?;
        drop(conn);
        self.outbox_wake.notify_one();
        Ok(id)
    }

    /// The next text due at `now`, marked `sending` on disk before it is handed out: if the
    /// process dies during the call, [`Self::recover_sending`] says its delivery is unknown.
    pub fn next_send(&self, now: i64) -> Result<Option<Outgoing>, SmsError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let row = tx
            .query_row(
                "SELECT id, phone, body, attempts FROM sms_outbox
                 WHERE state = 'queued' AND next_at <= ?1 ORDER BY id LIMIT 1",
                [now],
                |r| {
                    Ok(Outgoing {
                        id: r.get(0)?,
                        phone: r.get(1)?,
                        body: r.get(2)?,
                        attempts: r.get(3)?,
                    })
                },
            )
            .optional()?;
        if let Some(o) = &row {
            tx.execute(
                "UPDATE sms_outbox SET state = 'sending', attempts = attempts + 1 WHERE id = ?1",
                [o.id],
            )?;
            Self::move_message(&tx, o.id, Delivery::Sending, None, None)?;
        }
        tx.commit()?;
        Ok(row)
    }

    /// When the next queued text falls due, if one waits.
    pub fn next_due(&self) -> Result<Option<i64>, SmsError> {
        Ok(self.conn().query_row(
            "SELECT MIN(next_at) FROM sms_outbox WHERE state = 'queued'",
            [],
            |r| r.get(0),
        )?)
    }

    /// Texts left `sending` by a process that stopped mid-call: their delivery is unknown.
    pub fn recover_sending(&self) -> Result<usize, SmsError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let ids: Vec<i64> = tx
            .prepare("SELECT id FROM sms_outbox WHERE state = 'sending'")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for id in &ids {
            tx.execute(
                "UPDATE sms_outbox SET state = 'unknown' WHERE id = ?1",
                [id],
            )?;
            Self::forget_secret(&tx, *id)?;
            Self::move_message(
                &tx,
                *id,
                Delivery::Unknown,
                None,
                Some("the server stopped while sending it"),
            )?;
        }
        tx.commit()?;
        Ok(ids.len())
    }

    /// Twilio took the text.
    pub fn sent(&self, id: i64, sid: &str, status: Delivery) -> Result<(), SmsError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("UPDATE sms_outbox SET state = 'sent' WHERE id = ?1", [id])?;
        Self::forget_secret(&tx, id)?;
        Self::attach_sid(&tx, id, sid)?;
        Self::move_message(&tx, id, status, None, None)?;
        tx.commit()?;
        Ok(())
    }

    /// Twilio refused the text for good, or the sender gave up on it.
    pub fn send_failed(&self, id: i64, code: Option<i64>, error: &str) -> Result<(), SmsError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("UPDATE sms_outbox SET state = 'failed' WHERE id = ?1", [id])?;
        Self::forget_secret(&tx, id)?;
        Self::move_message(&tx, id, Delivery::Failed, code, Some(error))?;
        tx.commit()?;
        Ok(())
    }

    /// Twilio did not take it: try again at `at`.
    pub fn retry_later(&self, id: i64, at: i64, error: &str) -> Result<(), SmsError> {
        let conn = self.conn();
        conn.execute(
            "UPDATE sms_outbox SET state = 'queued', next_at = ?2 WHERE id = ?1",
            params![id, at],
        )?;
        conn.execute(
            "UPDATE sms_messages SET status = 'queued', status_rank = 1, error = ?2
             WHERE outbox = ?1 AND status = 'sending'",
            params![id, error],
        )?;
        Ok(())
    }

    /// The call went out and no answer came back.
    pub fn unknown(&self, id: i64, error: &str) -> Result<(), SmsError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE sms_outbox SET state = 'unknown' WHERE id = ?1",
            [id],
        )?;
        Self::forget_secret(&tx, id)?;
        Self::move_message(&tx, id, Delivery::Unknown, None, Some(error))?;
        tx.commit()?;
        Ok(())
    }

    /// Sends a text whose delivery is unknown or failed again, as a new text (a person decided).
    pub fn resend(&self, id: i64, author: &str, at: i64) -> Result<i64, SmsError> {
        let found = self
            .conn()
            .query_row(
                "SELECT o.phone, o.body FROM sms_outbox o JOIN sms_messages m ON m.outbox = o.id
                 WHERE o.id = ?1 AND o.secret = 0
                   AND m.status IN ('unknown', 'failed', 'undelivered')",
                [id],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()?;
        let (phone, body) = found.ok_or(SmsError::NotResendable(id))?;
        self.queue(&phone, &body, author, at)
    }

    /// Once a secret text's send is over, the outbox keeps only what the conversation shows.
    fn forget_secret(tx: &rusqlite::Transaction<'_>, id: i64) -> Result<(), SmsError> {
        tx.execute(
            "UPDATE sms_outbox SET body = COALESCE(
                 (SELECT body FROM sms_messages WHERE outbox = sms_outbox.id), '')
             WHERE id = ?1 AND secret = 1",
            [id],
        )?;
        Ok(())
    }

    /// Names the message of outbox entry `id` with Twilio's `sid` (a callback may have made a
    /// row for that sid already: the two become one).
    fn attach_sid(tx: &rusqlite::Transaction<'_>, id: i64, sid: &str) -> Result<(), SmsError> {
        let placeholder = format!("out:{id}");
        let other: Option<(i64, String)> = tx
            .query_row(
                "SELECT status_rank, status FROM sms_messages WHERE sid = ?1 AND outbox IS NULL",
                [sid],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((rank, status)) = other {
            tx.execute("DELETE FROM sms_messages WHERE sid = ?1", [sid])?;
            tx.execute(
                "UPDATE sms_messages SET sid = ?2 WHERE sid = ?1",
                params![placeholder, sid],
            )?;
            tx.execute(
                "UPDATE sms_messages SET status = ?2, status_rank = ?3
                 WHERE sid = ?1 AND status_rank < ?3",
                params![sid, status, rank],
            )?;
        } else {
            tx.execute(
                "UPDATE sms_messages SET sid = ?2 WHERE sid = ?1",
                params![placeholder, sid],
            )?;
        }
        Ok(())
    }

    /// Moves outbox entry `id`'s message to `status` if that is forward.
    fn move_message(
        tx: &rusqlite::Transaction<'_>,
        id: i64,
        status: Delivery,
        code: Option<i64>,
        error: Option<&str>,
    ) -> Result<(), SmsError> {
        tx.execute(
            "UPDATE sms_messages SET status = ?2, status_rank = ?3,
                 error_code = COALESCE(?4, error_code), error = COALESCE(?5, error)
             WHERE outbox = ?1 AND status_rank < ?3",
            params![id, status.as_str(), status.rank(), code, error],
        )?;
        Ok(())
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        super::lock_db(&self.conn)
    }

    /// Records an inbound message (once per `sid`) and the keyword it may be.
    pub fn inbound(&self, sid: &str, from: &str, body: &str, at: i64) -> Result<(), SmsError> {
        let customer = (self.customers)(from);
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let new = tx.execute(
            "INSERT INTO sms_messages (sid, inbound, phone, body, status, status_rank, at, customer)
             VALUES (?1, 1, ?2, ?3, 'received', 5, ?4, ?5) ON CONFLICT (sid) DO NOTHING",
            params![sid, from, body, at, customer.map(|c| c.as_bytes().to_vec())],
        )?;
        if new == 1 {
            match keyword(body) {
                Some(Keyword::Stop) => {
                    tx.execute(
                        "INSERT INTO sms_opt_out (phone, since) VALUES (?1, ?2)
                         ON CONFLICT (phone) DO NOTHING",
                        params![from, at],
                    )?;
                }
                Some(Keyword::Start) => {
                    tx.execute("DELETE FROM sms_opt_out WHERE phone = ?1", [from])?;
                }
                None => {}
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// A delivery callback: moves the message forward, never back. A callback for a message
    /// not known yet (its send is still being recorded) creates it.
    pub fn status(
        &self,
        sid: &str,
        to: &str,
        status: Delivery,
        error_code: Option<i64>,
        at: i64,
        outbox: Option<i64>,
    ) -> Result<(), SmsError> {
        if let Some(id) = outbox {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            let ours: i64 = tx.query_row(
                "SELECT COUNT(*) FROM sms_messages WHERE outbox = ?1",
                [id],
                |r| r.get(0),
            )?;
            if ours > 0 {
                // Twilio took it, whatever the answer we may have lost said.
                tx.execute(
                    "UPDATE sms_outbox SET state = 'sent' WHERE id = ?1 AND state IN ('sending', 'unknown')",
                    [id],
                )?;
                Self::attach_sid(&tx, id, sid)?;
                Self::move_message(&tx, id, status, error_code, None)?;
                tx.commit()?;
                return Ok(());
            }
        }
        self.conn().execute(
            "INSERT INTO sms_messages (sid, inbound, phone, body, status, status_rank, error_code, at)
             VALUES (?1, 0, ?2, NULL, ?3, ?4, ?5, ?6)
             ON CONFLICT (sid) DO UPDATE SET status = excluded.status,
                 status_rank = excluded.status_rank,
                 error_code = COALESCE(excluded.error_code, sms_messages.error_code)
             WHERE excluded.status_rank > sms_messages.status_rank",
            params![sid, to, status.as_str(), status.rank(), error_code, at],
        )?;
        Ok(())
    }

    pub fn opted_out(&self, phone: &str) -> Result<bool, SmsError> {
        Ok(self.conn().query_row(
            "SELECT COUNT(*) FROM sms_opt_out WHERE phone = ?1",
            [phone],
            |r| r.get::<_, i64>(0),
        )? > 0)
    }

    /// Conversations, most recent first.
    pub fn threads(&self, limit: usize) -> Result<Vec<Thread>, SmsError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT m.phone, MAX(m.at), COUNT(*),
                    (SELECT body FROM sms_messages l WHERE l.phone = m.phone ORDER BY at DESC, rowid DESC LIMIT 1),
                    (SELECT customer FROM sms_messages c WHERE c.phone = m.phone AND c.customer IS NOT NULL LIMIT 1),
                    EXISTS (SELECT 1 FROM sms_opt_out o WHERE o.phone = m.phone)
             FROM sms_messages m GROUP BY m.phone ORDER BY MAX(m.at) DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            let customer: Option<Vec<u8>> = r.get(4)?;
            Ok(Thread {
                phone: r.get(0)?,
                last_at: r.get(1)?,
                messages: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                last_body: r.get(3)?,
                customer: customer
                    .and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok())
                    .map(DocId::from_bytes),
                opted_out: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One conversation's messages, oldest first.
    pub fn messages(&self, phone: &str) -> Result<Vec<Message>, SmsError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT sid, inbound, body, status, error_code, error, at, outbox, author
             FROM sms_messages WHERE phone = ?1 ORDER BY at, rowid",
        )?;
        let rows = stmt.query_map([phone], |r| {
            let status: String = r.get(3)?;
            Ok(Message {
                sid: r.get(0)?,
                inbound: r.get(1)?,
                body: r.get(2)?,
                status: Delivery::parse(&status).unwrap_or(Delivery::Queued),
                error_code: r.get(4)?,
                error: r.get(5)?,
                at: r.get(6)?,
                outbox: r.get(7)?,
                author: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn field<'a>(payload: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    payload.get(name).and_then(serde_json::Value::as_str)
}

/// The inbox handler for Twilio's webhooks (payload: the form parameters as a JSON object).
impl Handler for Sms {
    fn handle<'a>(
        &'a self,
        event: &'a Event,
    ) -> futures_util::future::BoxFuture<'a, Result<(), HandleError>> {
        Box::pin(async move {
            let p = &event.payload;
            let sid = field(p, "MessageSid")
                .or_else(|| field(p, "SmsSid"))
                .ok_or_else(|| HandleError::Final("no MessageSid".into()))?;
            let done = match event.kind.as_str() {
                KIND_INBOUND => {
                    let from = field(p, "From")
                        .ok_or_else(|| HandleError::Final("an inbound SMS without From".into()))?;
                    self.inbound(sid, from, field(p, "Body").unwrap_or(""), event.received_at)
                }
                KIND_STATUS => {
                    let word = field(p, "MessageStatus")
                        .or_else(|| field(p, "SmsStatus"))
                        .unwrap_or("");
                    let status = Delivery::parse(word).ok_or_else(|| {
                        HandleError::Final(format!("unknown message status {word:?}"))
                    })?;
                    let code = field(p, "ErrorCode").and_then(|c| c.parse().ok());
                    let outbox = field(p, OUTBOX_PARAM).and_then(|c| c.parse().ok());
                    self.status(
                        sid,
                        field(p, "To").unwrap_or(""),
                        status,
                        code,
                        event.received_at,
                        outbox,
                    )
                }
                other => return Err(HandleError::Final(format!("unknown Twilio event {other}"))),
            };
            // The database is local: a failure is worth retrying (busy, disk full for a while).
            done.map_err(|e| HandleError::Retry(e.to_string()))
        })
    }
}

/// The status callback URL's query parameter naming the outbox entry (kept in the event).
pub const OUTBOX_PARAM: &str = "outbox";

/// Inbox kinds of Twilio's webhooks.
pub const KIND_INBOUND: &str = "sms.inbound";
pub const KIND_STATUS: &str = "sms.status";

#[cfg(test)]
mod tests {
    use super::*;

    fn sms() -> (tempfile::TempDir, Arc<Sms>) {
        let dir = tempfile::tempdir().unwrap();
        let known = DocId::from_bytes([7; 16]);
        let s = Sms::open(
            &dir.path().join("hub.sqlite3"),
            false,
            Arc::new(move |phone| (phone == "+15145550100").then_some(known)),
        )
        .unwrap();
        (dir, s)
    }

    #[test]
    fn delivery_never_moves_back_whatever_the_order_of_callbacks() {
        let (_d, s) = sms();
        s.status("SM1", "+15145550100", Delivery::Delivered, None, 3, None)
            .unwrap();
        s.status("SM1", "+15145550100", Delivery::Sent, None, 4, None)
            .unwrap();
        s.status("SM1", "+15145550100", Delivery::Queued, None, 5, None)
            .unwrap();
        let m = s.messages("+15145550100").unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].status, Delivery::Delivered);
        // A final failure after another final state does not replace it either.
        s.status(
            "SM1",
            "+15145550100",
            Delivery::Failed,
            Some(30003),
            6,
            None,
        )
        .unwrap();
        assert_eq!(
            s.messages("+15145550100").unwrap()[0].status,
            Delivery::Delivered
        );
        s.status("SM2", "+15145550100", Delivery::Sent, None, 7, None)
            .unwrap();
        s.status(
            "SM2",
            "+15145550100",
            Delivery::Undelivered,
            Some(30005),
            8,
            None,
        )
        .unwrap();
        let m = s.messages("+15145550100").unwrap();
        assert_eq!(
            (m[1].status, m[1].error_code),
            (Delivery::Undelivered, Some(30005))
        );
    }

    #[test]
    fn stop_and_start_keywords_in_english_and_french() {
        let (_d, s) = sms();
        assert_eq!(keyword(" arrêt "), Some(Keyword::Stop));
        assert_eq!(
            keyword("Stop please"),
            None,
            "only the whole body is a keyword"
        );
        s.inbound("SM1", "+15145550100", "ARRET", 1).unwrap();
        assert!(s.opted_out("+15145550100").unwrap());
        // A redelivered STOP after START does not opt out again: the sid was seen.
        s.inbound("SM2", "+15145550100", "start", 2).unwrap();
        s.inbound("SM1", "+15145550100", "ARRET", 1).unwrap();
        assert!(!s.opted_out("+15145550100").unwrap());
    }

    #[test]
    fn threads_match_known_customers_and_keep_unknown_numbers_apart() {
        let (_d, s) = sms();
        s.inbound("SM1", "+15145550100", "Bonjour", 1).unwrap();
        s.inbound("SM2", "+14155551234", "Hola", 2).unwrap();
        s.inbound("SM1", "+15145550100", "Bonjour", 1).unwrap();
        let t = s.threads(10).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].phone, "+14155551234");
        assert_eq!(
            t[0].customer, None,
            "an unknown number is an unmatched thread"
        );
        assert_eq!(t[1].customer, Some(DocId::from_bytes([7; 16])));
        assert_eq!(t[1].messages, 1, "a redelivery is not a second message");
    }
}
