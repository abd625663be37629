//! Server settings, layered: defaults, then an optional TOML file, then `APP_`-prefixed
//! environment variables (`APP_JWT_SECRET`, `APP_POSTGRES_URL`, `APP_LISTEN`…). Parsed once in
//! `main` and passed down; library code never reads the environment.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A secret: usable, never printed.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Everything the binary is configured with.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Settings {
    /// Address to listen on.
    pub listen: String,
    /// Where the embedded store (and the demo's data) live.
    pub data_dir: PathBuf,
    /// Store in PostgreSQL instead of SQLite (the connection string may hold a password).
    pub postgres_url: Option<Secret>,
    /// The PostgreSQL schema; server instances sharing it serve clients together.
    pub postgres_schema: String,
    /// PEM certificates trusted besides the system's for PostgreSQL's TLS (`sslmode` in the
    /// connection string says how much is checked, as with libpq).
    pub postgres_ca_file: Option<PathBuf>,
    /// Signs device tokens; 32 bytes or more.
    pub jwt_secret: Option<Secret>,
    /// SQLite `synchronous=FULL`: acknowledged changes also survive a power cut (default). Off,
    /// they survive the process being killed but not the machine.
    pub sqlite_full_sync: bool,
    /// Apps older than this semantic version are told to update.
    pub min_app_version: Option<String>,
    /// The ERPNext bridge; off when absent.
    pub erpnext: Option<ErpSettings>,
    /// Compaction keeps the history a device builds on for this many days after it was last
    /// seen; a device away longer rebases its offline edits onto the compacted copy.
    pub device_retention_days: u64,
    /// Offline work on a document that left a device's scope (a job reassigned away) is
    /// accepted for the fields a technician may write this many days after it left; later
    /// it is refused (the device keeps it as a rejection). Default 30.
    pub push_grace_days: u64,
    /// Serve HTTPS with this certificate chain (PEM), reloaded when the file changes. Without
    /// it the server speaks plain HTTP, for a reverse proxy that ends TLS in front of it.
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM); required with `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// The server's public address (`https://sync.example.net`): login links are App Links
    /// and Universal Links under it (`/login#token=…`), which only the apps below can open.
    pub public_url: Option<String>,
    /// The Android app allowed to open login links, and its signing certificates' SHA-256
    /// fingerprints (comma-separated `AA:BB:…`), published in `/.well-known/assetlinks.json`.
    pub android_package: Option<String>,
    pub android_cert_sha256: Option<String>,
    /// The iOS apps allowed to open login links (`TEAMID.bundle.id`, comma-separated),
    /// published in `/.well-known/apple-app-site-association`.
    pub apple_app_ids: Option<String>,
    /// Each session token lasts this many days; apps refresh it while in use.
    pub session_days: i64,
    /// A session, refreshes included, ends this many days after its login, per role.
    pub session_max_days_technician: i64,
    pub session_max_days_dispatcher: i64,
    pub session_max_days_admin: i64,
    /// Twilio SMS; off when absent (`APP_TWILIO__ACCOUNT_SID`, `APP_TWILIO__AUTH_TOKEN`…).
    pub twilio: Option<TwilioSettings>,
    /// Stripe payments; off when absent (`APP_STRIPE__WEBHOOK_SECRET`…).
    pub stripe: Option<StripeSettings>,
    /// The bearer secret Uptime Kuma's webhook notification sends (set in its "Additional
    /// Headers" as `{"Authorization": "Bearer …"}`); its webhooks are refused without it.
    pub uptime_kuma_secret: Option<Secret>,
    /// Reading photos with Gemini; off when absent (`APP_GEMINI__API_KEY`…).
    pub gemini: Option<GeminiSettings>,
    /// The customers' boxes through GenieACS's NBI; off when absent (`APP_GENIEACS__URL`).
    pub genieacs: Option<GenieAcsSettings>,
    /// Oktopus (TR-369/USP): its REST controller (`APP_OKTOPUS__URL`, `__EMAIL`, `__PASSWORD`)
    /// and boxes' presence from its MQTT broker (`APP_OKTOPUS__MQTT_HOST`…); off when absent.
    pub oktopus: Option<OktopusSettings>,
    /// The OLTs whose ONU tables are polled over SNMP (`[[olts]]` in the settings file); none
    /// by default.
    #[serde(default)]
    pub olts: Vec<OltSettings>,
    /// ONUs of one PON port going down within this many seconds of each other are one port
    /// outage; default 180.
    #[serde(default = "default_outage_window")]
    pub outage_window_s: u64,
    /// The time zone customers' texts tell times in (an arrival window), IANA name; default
    /// `America/Toronto`.
    pub time_zone: String,
    /// Process stored webhooks (default). Off, they are still verified and stored durably but
    /// wait in the inbox: for maintenance, or to hold events while a peer is being moved.
    pub webhook_processing: bool,
}

/// Twilio's account, and the number texts are sent from. Webhooks are checked against the
/// server's `public_url` (the address Twilio was given), never the request's own Host.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct TwilioSettings {
    pub account_sid: String,
    /// Signs Twilio's webhooks and authenticates our calls.
    pub auth_token: Secret,
    /// The sending number (E.164) or messaging service (`MG…`).
    pub from: String,
    #[serde(default = "default_twilio_api")]
    pub api_url: String,
}

fn default_twilio_api() -> String {
    "https://api.twilio.com".into()
}

/// Stripe's keys.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct StripeSettings {
    /// The secret API key (`sk_…`), for creating payment pages.
    pub secret_key: Option<Secret>,
    /// The webhook endpoint's signing secret (`whsec_…`).
    pub webhook_secret: Secret,
    /// The ERPNext account Stripe's payments are received into (`Stripe - FSM`): with it and
    /// the ERPNext bridge, each paid invoice gets a submitted Payment Entry.
    pub erp_account: Option<String>,
    /// The Mode of Payment those entries record (`erpnext setup` creates it).
    #[serde(default = "default_mode_of_payment")]
    pub mode_of_payment: String,
    #[serde(default = "default_stripe_api")]
    pub api_url: String,
}

fn default_mode_of_payment() -> String {
    "Stripe".into()
}

fn default_stripe_api() -> String {
    "https://api.stripe.com".into()
}

/// Oktopus: its REST controller (devices, USP Get) and its MQTT broker, where USP agents'
/// online/offline status is published. Each part is on when its settings are given.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct OktopusSettings {
    /// `http://oktopus:8000` (the controller's REST API).
    pub url: Option<String>,
    /// The controller account the server signs in with.
    pub email: Option<String>,
    pub password: Option<Secret>,
    pub mqtt_host: Option<String>,
    #[serde(default = "default_mqtt_port")]
    pub mqtt_port: u16,
    /// Ours alone, and the same across restarts: the broker keeps what happened while we were
    /// away under it. Give each server instance its own.
    #[serde(default = "default_mqtt_client_id")]
    pub mqtt_client_id: String,
    pub mqtt_username: Option<String>,
    pub mqtt_password: Option<Secret>,
}

fn default_mqtt_port() -> u16 {
    1883
}
fn default_mqtt_client_id() -> String {
    "fsm-sync-server".into()
}

/// One OLT polled over SNMP v2c.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct OltSettings {
    /// How dispatchers know it (`OLT Lévis`); unique.
    pub name: String,
    /// `10.20.0.1` or `10.20.0.1:161`.
    pub address: String,
    /// The SNMP v2c read community.
    pub community: Secret,
    pub vendor: crate::hub::olt::Vendor,
    /// Seconds between polls; default 60.
    #[serde(default = "default_olt_interval")]
    pub interval_s: u64,
    /// One request's timeout in milliseconds; default 2000.
    #[serde(default = "default_olt_timeout")]
    pub timeout_ms: u64,
    /// Tries of a request before the OLT counts as unreachable; default 3.
    #[serde(default = "default_olt_tries")]
    pub tries: u32,
}

fn default_olt_interval() -> u64 {
    60
}
fn default_olt_timeout() -> u64 {
    2000
}
fn default_olt_tries() -> u32 {
    3
}
fn default_outage_window() -> u64 {
    180
}

/// GenieACS's northbound interface (TR-069 boxes: summaries, refresh, reboot).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct GenieAcsSettings {
    /// `http://acs.example.net:7557` (the NBI has no authentication of its own: keep it on a
    /// private network or behind a proxy that adds it).
    pub url: String,
    /// One request's timeout, a task's session included.
    #[serde(default = "default_acs_timeout")]
    pub timeout_s: u64,
    /// How long GenieACS waits for a box to answer a connection request before it queues a
    /// task instead (its `cwmp.deviceOnlineThreshold` is 4000).
    #[serde(default = "default_acs_connection_request")]
    pub connection_request_ms: u64,
}

fn default_acs_timeout() -> u64 {
    30
}
fn default_acs_connection_request() -> u64 {
    4000
}

/// Gemini, for barcodes, equipment labels and supplier invoices in photos.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct GeminiSettings {
    pub api_key: Secret,
    #[serde(default = "default_gemini_model")]
    pub model: String,
    #[serde(default = "default_gemini_api")]
    pub api_url: String,
    /// Calls a day at most (each retry counts), so a loop or a leak cannot run up a bill.
    #[serde(default = "default_gemini_cap")]
    pub daily_cap: u32,
    /// One call's timeout.
    #[serde(default = "default_gemini_timeout")]
    pub timeout_s: u64,
    /// How long a reading may take with its retries.
    #[serde(default = "default_gemini_budget")]
    pub budget_s: u64,
}

fn default_gemini_model() -> String {
    "gemini-2.5-flash".into()
}
fn default_gemini_api() -> String {
    "https://generativelanguage.googleapis.com".into()
}
fn default_gemini_cap() -> u32 {
    500
}
fn default_gemini_timeout() -> u64 {
    60
}
fn default_gemini_budget() -> u64 {
    90
}

/// Where ERPNext is (`APP_ERPNEXT__URL`, `APP_ERPNEXT__TOKEN`…).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ErpSettings {
    pub url: String,
    /// `api_key:api_secret` of an ERPNext API user. Never regenerate the keys of a user other
    /// systems use: that breaks them.
    pub token: Secret,
    /// The secret ERPNext signs its webhooks with; webhooks are refused without it.
    pub webhook_secret: Option<Secret>,
    /// The URL ERPNext should call (`erpnext setup` registers it), e.g.
    /// `https://sync.example.com/api/v1/erpnext/webhook`.
    pub webhook_url: Option<String>,
    #[serde(default = "default_poll_s")]
    pub poll_interval_s: u64,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
    /// PEM certificates trusted besides the system's, for an ERPNext behind a private CA.
    pub ca_file: Option<PathBuf>,
    /// The company whose books Stripe's payments go into (`erpnext setup` ties the Mode of
    /// Payment to `stripe.erp_account` for it).
    pub company: Option<String>,
}

fn default_poll_s() -> u64 {
    30
}
fn default_concurrency() -> usize {
    8
}
fn default_timeout_s() -> u64 {
    30
}

impl Settings {
    /// Where login links point and which apps may open them.
    pub fn links(&self) -> crate::LinkSettings {
        let list = |s: &Option<String>| -> Vec<String> {
            s.iter()
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect()
        };
        crate::LinkSettings {
            public_url: self
                .public_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_owned()),
            android_package: self.android_package.clone(),
            android_cert_sha256: list(&self.android_cert_sha256),
            apple_app_ids: list(&self.apple_app_ids),
        }
    }

    /// The session lifetimes, in seconds.
    pub fn lifetimes(&self) -> crate::auth::Lifetimes {
        const DAY: i64 = 86_400;
        crate::auth::Lifetimes {
            ttl_s: self.session_days * DAY,
            technician_max_s: self.session_max_days_technician * DAY,
            dispatcher_max_s: self.session_max_days_dispatcher * DAY,
            admin_max_s: self.session_max_days_admin * DAY,
        }
    }

    /// Loads the layers; `env` is the process environment (passed in, so tests can set it).
    pub fn load(
        file: Option<&Path>,
        env: HashMap<String, String>,
    ) -> Result<Self, config::ConfigError> {
        let mut b = config::Config::builder()
            .set_default("listen", "127.0.0.1:8480")?
            .set_default("data_dir", "sync-server-data")?
            .set_default("postgres_schema", "fsm")?
            .set_default("sqlite_full_sync", true)?
            .set_default("device_retention_days", 30)?
            .set_default("push_grace_days", 30)?
            .set_default("session_days", 30)?
            .set_default("session_max_days_technician", 180)?
            .set_default("session_max_days_dispatcher", 90)?
            .set_default("session_max_days_admin", 14)?
            .set_default("webhook_processing", true)?
            .set_default("time_zone", "America/Toronto")?;
        if let Some(f) = file {
            b = b.add_source(config::File::from(f).required(true));
        }
        let settings: Settings = b
            .add_source(
                config::Environment::with_prefix("APP")
                    .prefix_separator("_")
                    .separator("__")
                    .source(Some(env)),
            )
            .build()?
            .try_deserialize()?;
        if let Some(s) = &settings.jwt_secret
            && s.expose().len() < 32
        {
            return Err(config::ConfigError::Message(
                "jwt_secret must be at least 32 bytes".into(),
            ));
        }
        if jiff::tz::TimeZone::get(&settings.time_zone).is_err() {
            return Err(config::ConfigError::Message(format!(
                "time_zone {:?} is not a time zone this build knows (an IANA name such as America/Toronto)",
                settings.time_zone
            )));
        }
        if settings.twilio.is_some() && settings.public_url.is_none() {
            return Err(config::ConfigError::Message(
                "twilio needs public_url: its webhooks are signed over the address Twilio calls"
                    .into(),
            ));
        }
        if let Some(e) = &settings.erpnext
            && !e.token.expose().contains(':')
        {
            return Err(config::ConfigError::Message(
                "erpnext.token must be `api_key:api_secret`".into(),
            ));
        }
        if [
            settings.session_days,
            settings.session_max_days_technician,
            settings.session_max_days_dispatcher,
            settings.session_max_days_admin,
        ]
        .iter()
        .any(|d| !(1..=3650).contains(d))
        {
            return Err(config::ConfigError::Message(
                "session lifetimes are between 1 and 3650 days".into(),
            ));
        }
        if let Some(u) = &settings.public_url
            && !u.starts_with("https://")
        {
            return Err(config::ConfigError::Message(
                "public_url must be an https:// address (login links are App Links)".into(),
            ));
        }
        if settings.tls_cert.is_some() != settings.tls_key.is_some() {
            return Err(config::ConfigError::Message(
                "tls_cert and tls_key go together".into(),
            ));
        }
        if let Some(v) = &settings.min_app_version {
            semver::Version::parse(v)
                .map_err(|e| config::ConfigError::Message(format!("min_app_version `{v}`: {e}")))?;
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_then_file_then_environment() {
        let s = Settings::load(None, HashMap::new()).unwrap();
        assert_eq!(s.listen, "127.0.0.1:8480");
        assert_eq!(s.jwt_secret, None);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:9000\"\nmin_app_version = \"1.2.0\"\njwt_secret = \"from the file, thirty-two bytes long!\"\n").unwrap();
        let env = HashMap::from([("APP_LISTEN".to_owned(), "127.0.0.1:9001".to_owned())]);
        let s = Settings::load(Some(&file), env).unwrap();
        assert_eq!(
            s.listen, "127.0.0.1:9001",
            "the environment wins over the file"
        );
        assert_eq!(s.min_app_version.as_deref(), Some("1.2.0"));
        assert_eq!(
            s.jwt_secret.as_ref().unwrap().expose(),
            "from the file, thirty-two bytes long!"
        );
        assert!(
            !format!("{s:?}").contains("thirty-two"),
            "secrets are not printed"
        );

        let short = HashMap::from([("APP_JWT_SECRET".to_owned(), "short".to_owned())]);
        assert!(
            Settings::load(None, short)
                .unwrap_err()
                .to_string()
                .contains("32 bytes")
        );
        let bad = HashMap::from([("APP_MIN_APP_VERSION".to_owned(), "one".to_owned())]);
        assert!(Settings::load(None, bad).is_err());

        let erp = HashMap::from([
            ("APP_ERPNEXT__URL".to_owned(), "http://erp.local".to_owned()),
            (
                "APP_ERPNEXT__TOKEN".to_owned(),
                "key:very-secret".to_owned(),
            ),
        ]);
        let s = Settings::load(None, erp).unwrap();
        let e = s.erpnext.as_ref().unwrap();
        assert_eq!(
            (e.url.as_str(), e.poll_interval_s),
            ("http://erp.local", 30)
        );
        assert!(!format!("{s:?}").contains("very-secret"));
        let no_colon = HashMap::from([
            ("APP_ERPNEXT__URL".to_owned(), "http://erp.local".to_owned()),
            ("APP_ERPNEXT__TOKEN".to_owned(), "nocolon".to_owned()),
        ]);
        assert!(Settings::load(None, no_colon).is_err());
    }
}
