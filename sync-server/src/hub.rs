//! The hub around the sync loop. For now its inbound side: webhooks from Twilio, Stripe and
//! ERPNext.
//!
//! Every webhook goes the same way ([`crate::http`] routes it):
//! 1. its signature is checked ([`signature`]) against the secret from settings and, for
//!    Twilio, the URL from `public_url` (never the request's Host header): unsigned, badly
//!    signed, stale or malformed requests get a 4xx and nothing is stored;
//! 2. the verified event is written to the [`inbox`] and synced to disk, deduplicated by the
//!    provider's event id, and only then answered 2xx;
//! 3. [`inbox::run`] processes it afterwards through the provider's handler: SMS conversations
//!    ([`sms`]), payment state ([`payments`]), an ERPNext record re-read by the bridge. A
//!    failure is retried with backoff, then parked for a person.

pub mod access;
pub mod acs;
pub mod alerts;
pub mod inbox;
pub mod ledger;
pub mod notify;
pub mod oktopus;
pub mod olt;
pub mod payments;
pub mod signature;
pub mod sms;
pub mod stripe;
pub mod twilio;
pub mod usp;
pub mod vision;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::settings::{StripeSettings, TwilioSettings};
use inbox::{Event, HandleError, Handler, Inbox, Provider};

impl std::fmt::Debug for HubSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSettings")
            .field("twilio", &self.twilio)
            .field("stripe", &self.stripe)
            .field("public_url", &self.public_url)
            .field("vision", &self.vision.is_some())
            .field("pages", &self.pages.is_some())
            .field("acs", &self.acs.is_some())
            .field("usp", &self.usp.is_some())
            .field("olts", &self.olts)
            .finish_non_exhaustive()
    }
}

/// The hub's stores and settings, shared by the webhook routes and the processor.
pub struct Hub {
    pub inbox: Arc<Inbox>,
    pub sms: Arc<sms::Sms>,
    pub payments: Arc<payments::Payments>,
    /// Payment Entries in ERPNext for paid payments.
    pub ledger: Arc<ledger::Ledger>,
    /// The network's monitors, as Uptime Kuma reports them.
    pub alerts: Arc<alerts::Alerts>,
    /// The bearer secret Uptime Kuma's webhook sends; its webhooks are refused without it.
    pub uptime_kuma_secret: Option<crate::settings::Secret>,
    /// Reading photos, when Gemini is configured.
    pub vision: Option<Arc<vision::Vision>>,
    /// Opening payment pages, when Stripe's secret key is configured.
    pub pages: Option<Arc<dyn stripe::PaymentPages>>,
    /// Customers' boxes, when GenieACS is configured.
    pub devices: Option<Arc<acs::Devices>>,
    /// Which USP boxes are online, from Oktopus's MQTT broker (empty until it is configured).
    pub presence: Arc<usp::Presence>,
    /// Oktopus's REST controller, when configured.
    pub usp: Option<Arc<dyn oktopus::Usp>>,
    /// The OLTs' ONU tables and the incidents read from them, when OLTs are configured.
    pub access: Option<Arc<access::Access>>,
    pub twilio: Option<TwilioSettings>,
    pub stripe: Option<StripeSettings>,
    /// The address providers call (`https://sync.example.net`), without a trailing slash.
    pub public_url: Option<String>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

/// The hub's database file, beside the sync store.
pub const HUB_FILE: &str = "hub.sqlite3";

/// A hub connection's lock. A panic mid-statement leaves no transaction open (rusqlite rolls
/// back on drop), so a poisoned lock is still usable.
pub(crate) fn lock_db(
    m: &std::sync::Mutex<rusqlite::Connection>,
) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `f` off the async threads (the hub's databases block); a failure or a panic is logged
/// as `what` and gives `None`.
pub(crate) async fn off_thread<T, E>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Option<T>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::error!(what, error = %e, "hub.store_failed");
            None
        }
        Err(e) => {
            tracing::error!(what, error = %e, "hub.store_panicked");
            None
        }
    }
}

/// An HTTP client for a peer on the operator's network (GenieACS, Oktopus): the process's TLS
/// stack, `timeout` for a whole request, 5 s to connect.
pub(crate) fn peer_client(timeout: std::time::Duration) -> reqwest::Result<reqwest::Client> {
    crate::tls::install_crypto();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(std::time::Duration::from_secs(5))
        .build()
}

/// A worker with nothing due rests until `wake` fires, `next` (Unix milliseconds, against
/// `now`) falls due, or shutdown: an hour at most, never a poll. `false` on shutdown.
pub(crate) async fn rest(
    next: Option<i64>,
    now: i64,
    wake: &tokio::sync::Notify,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    let sleep = next.map_or(std::time::Duration::from_secs(3600), |at| {
        std::time::Duration::from_millis(u64::try_from(at - now).unwrap_or(0).max(10))
    });
    tokio::select! {
        _ = shutdown.changed() => false,
        () = wake.notified() => true,
        () = tokio::time::sleep(sleep) => true,
    }
}

/// A connection to the hub's database: WAL (readers never wait for the writer), `FULL` to
/// survive a power cut, and waiting for the other connections' short transactions.
pub(crate) fn open_db(path: &Path, full_sync: bool) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        if full_sync { "FULL" } else { "NORMAL" },
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Inbox(#[from] inbox::InboxError),
    #[error(transparent)]
    Sms(#[from] sms::SmsError),
    #[error(transparent)]
    Payments(#[from] payments::PaymentError),
    /// The vision, alerts or device-snapshot tables.
    #[error("the hub's database: {0}")]
    Database(#[from] rusqlite::Error),
    #[error(transparent)]
    Access(#[from] access::AccessError),
}

/// What the hub is configured with.
#[derive(Clone, Default)]
pub struct HubSettings {
    pub twilio: Option<TwilioSettings>,
    pub stripe: Option<StripeSettings>,
    pub public_url: Option<String>,
    /// `synchronous=FULL`: an acknowledged webhook survives a power cut too.
    pub full_sync: bool,
    /// The model photos are read with (Gemini's client, or a double), its daily cap and
    /// retry budget.
    pub vision: Option<(Arc<dyn vision::VisionModel>, u32, std::time::Duration)>,
    /// Where payment pages are opened (Stripe's client, or a double).
    pub pages: Option<Arc<dyn stripe::PaymentPages>>,
    pub uptime_kuma_secret: Option<crate::settings::Secret>,
    /// The ACS customers' boxes are read through (GenieACS's client, or a double).
    pub acs: Option<Arc<dyn acs::Acs>>,
    /// The USP controller (Oktopus's client, or a double).
    pub usp: Option<Arc<dyn oktopus::Usp>>,
    /// The OLTs polled, by name and host (none: the access network's tables stay closed).
    pub olts: Vec<(String, String)>,
}

impl Hub {
    /// Opens the hub's database in `dir`.
    pub fn open(
        dir: &Path,
        settings: HubSettings,
        customers: sms::CustomerLookup,
    ) -> Result<Arc<Self>, HubError> {
        let file = dir.join(HUB_FILE);
        let payments = payments::Payments::open(&file)?;
        Ok(Arc::new(Self {
            inbox: Inbox::open(&file, settings.full_sync)?,
            sms: sms::Sms::open(&file, settings.full_sync, customers)?,
            payments: Arc::clone(&payments),
            ledger: ledger::Ledger::open(&file, payments.entries_waker())?,
            alerts: alerts::Alerts::open(&file)?,
            uptime_kuma_secret: settings.uptime_kuma_secret,
            vision: settings
                .vision
                .map(|(model, cap, budget)| {
                    vision::Vision::open(&file, settings.full_sync, model, cap, budget)
                })
                .transpose()?,
            pages: settings.pages,
            presence: usp::Presence::open(&file, settings.full_sync)?,
            usp: settings.usp,
            access: if settings.olts.is_empty() {
                None
            } else {
                Some(access::Access::open(
                    &file,
                    settings.full_sync,
                    settings.olts,
                )?)
            },
            devices: settings
                .acs
                .map(|a| acs::Devices::open(&file, a))
                .transpose()?,
            twilio: settings.twilio,
            stripe: settings.stripe,
            public_url: settings
                .public_url
                .map(|u| u.trim_end_matches('/').to_owned()),
        }))
    }

    /// The processor's handlers; ERPNext's only with the bridge.
    pub fn handlers(
        &self,
        bridge: Option<Arc<crate::erpnext::Bridge>>,
    ) -> HashMap<Provider, Arc<dyn Handler>> {
        let mut h: HashMap<Provider, Arc<dyn Handler>> = HashMap::new();
        h.insert(Provider::Twilio, Arc::clone(&self.sms) as Arc<dyn Handler>);
        h.insert(
            Provider::Stripe,
            Arc::clone(&self.payments) as Arc<dyn Handler>,
        );
        h.insert(
            Provider::UptimeKuma,
            Arc::clone(&self.alerts) as Arc<dyn Handler>,
        );
        if let Some(b) = bridge {
            h.insert(Provider::Erpnext, Arc::new(ErpRefresh(b)));
        }
        h
    }
}

/// A customer's document by phone number (E.164), read from the sync service.
pub fn customers_by_phone(sync: Arc<crate::service::SyncService>) -> sms::CustomerLookup {
    Arc::new(move |phone: &str| {
        sync.read(|e| {
            e.doc_ids().find(|d| {
                matches!(
                    e.entity(*d),
                    Some(shared::model::AnyEntity::Customer(c))
                        if c.phone.as_ref().is_some_and(|p| p.as_str() == phone)
                )
            })
        })
        .ok()
        .flatten()
    })
}

/// ERPNext's webhooks: the record is re-read by the bridge (which polls as a safety net too).
struct ErpRefresh(Arc<crate::erpnext::Bridge>);

impl Handler for ErpRefresh {
    fn handle<'a>(
        &'a self,
        event: &'a Event,
    ) -> futures_util::future::BoxFuture<'a, Result<(), HandleError>> {
        Box::pin(async move {
            let text = |k: &str| event.payload.get(k).and_then(serde_json::Value::as_str);
            let (Some(doctype), Some(name)) = (text("doctype"), text("name")) else {
                return Err(HandleError::Final("no doctype or name".into()));
            };
            self.0.refresh(doctype, name);
            Ok(())
        })
    }
}
