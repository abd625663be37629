//! GenieACS (TR-069): the customer's box as the ACS sees it. The port ([`Acs`]), the real NBI
//! client ([`GenieAcsClient`]), the pure [`summary`] of a device document, and [`Devices`], which
//! ties a piece of service equipment to its box and keeps the last summary for when GenieACS
//! cannot be reached.
//!
//! The NBI (`http://acs:7557`, no authentication) answers `GET /devices/?query=…&projection=…`
//! with a JSON array and a `total` header counted before `skip`/`limit`. Tasks go to
//! `POST /devices/{id}/tasks?connection_request&timeout=…`: `200` when the box ran it in the
//! session the connection request started, `202` when it is queued for the box's next call
//! (the box did not answer) or faulted, and, for a bare connection request, `504` when the box
//! cannot be reached.

pub mod summary;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use shared::network::{Reading, Source, TaskOutcome};
use summary::{DataModel, DeviceSummary};

/// What GenieACS said, or why it said nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcsError {
    #[error("GenieACS cannot be reached: {0}")]
    Unreachable(String),
    #[error("GenieACS knows no device {0}")]
    NoSuchDevice(String),
    #[error("GenieACS refused the request (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    #[error("GenieACS sent an answer we cannot read: {0}")]
    BadAnswer(String),
}

/// A page of a collection: its items and how many match in all.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Value>,
    pub total: u64,
}

/// What a person can ask of a box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Re-read the connected hosts.
    RefreshHosts,
    /// Re-read the Wi-Fi radios, networks and mesh.
    RefreshWifi,
    /// Re-read the optical levels.
    RefreshOptical,
    /// Re-read everything.
    RefreshAll,
    Reboot,
}

impl Action {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "hosts" => Self::RefreshHosts,
            "wifi" => Self::RefreshWifi,
            "optical" => Self::RefreshOptical,
            "all" => Self::RefreshAll,
            "reboot" => Self::Reboot,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RefreshHosts => "refresh_hosts",
            Self::RefreshWifi => "refresh_wifi",
            Self::RefreshOptical => "refresh_optical",
            Self::RefreshAll => "refresh_all",
            Self::Reboot => "reboot",
        }
    }

    /// The task body for a box of `model`.
    pub fn task(self, model: DataModel) -> Value {
        let object = match (self, model) {
            (Self::Reboot, _) => return serde_json::json!({"name": "reboot"}),
            (Self::RefreshAll, _) => "",
            (Self::RefreshHosts, DataModel::Tr181) => "Device.Hosts.Host",
            (Self::RefreshHosts, DataModel::Tr098) => {
                "InternetGatewayDevice.LANDevice.1.Hosts.Host"
            }
            (Self::RefreshWifi, DataModel::Tr181) => "Device.WiFi",
            (Self::RefreshWifi, DataModel::Tr098) => {
                "InternetGatewayDevice.LANDevice.1.WLANConfiguration"
            }
            (Self::RefreshOptical, DataModel::Tr181) => "Device.Optical.Interface",
            (Self::RefreshOptical, DataModel::Tr098) => "InternetGatewayDevice.WANDevice.1",
        };
        serde_json::json!({"name": "refreshObject", "objectName": object})
    }
}

/// The branches a summary reads: a lookup fetches only these.
pub const SUMMARY_PROJECTION: &[&str] = &[
    "_id",
    "_deviceId",
    "_lastInform",
    "_lastBoot",
    "_registered",
    "_tags",
    "InternetGatewayDevice.DeviceInfo",
    "InternetGatewayDevice.ManagementServer.PeriodicInformInterval",
    "InternetGatewayDevice.WANDevice",
    "InternetGatewayDevice.LANDevice",
    "InternetGatewayDevice.X_ALU_OntOpticalParam",
    "Device.DeviceInfo",
    "Device.ManagementServer.PeriodicInformInterval",
    "Device.IP.Interface",
    "Device.PPP.Interface",
    "Device.DHCPv4.Client",
    "Device.Optical",
    "Device.WiFi",
    "Device.Hosts",
];

/// Parameters that hold a box's own MAC address (WAN first), for a lookup by MAC.
pub const MAC_PARAMETERS: &[&str] = &[
    "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANIPConnection.1.MACAddress",
    "InternetGatewayDevice.WANDevice.1.WANConnectionDevice.1.WANPPPConnection.1.MACAddress",
    "InternetGatewayDevice.LANDevice.1.LANHostConfigManagement.MACAddress",
    "InternetGatewayDevice.LANDevice.1.LANEthernetInterfaceConfig.1.MACAddress",
    "Device.Ethernet.Interface.1.MACAddress",
    "Device.Ethernet.Link.1.MACAddress",
];

/// The queries that find a box, in order: its serial exactly, the serial inside the device id
/// (GenieACS's `OUI-ProductClass-Serial`, escaped), then its MAC in the WAN/LAN parameters.
pub fn lookups(serial: Option<&str>, mac: Option<&str>) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(s) = serial.map(str::trim).filter(|s| !s.is_empty()) {
        out.push(serde_json::json!({"_deviceId._SerialNumber": s}));
        let in_id = format!("-{}$", regex_literal(&device_id_part(s)));
        out.push(serde_json::json!({"_id": {"$regex": in_id}}));
    }
    if let Some(m) = mac.map(str::trim).filter(|m| !m.is_empty()) {
        let spellings = [m.to_ascii_uppercase(), m.to_ascii_lowercase()];
        let any: Vec<Value> = MAC_PARAMETERS
            .iter()
            .map(|p| serde_json::json!({ *p: {"$in": spellings} }))
            .collect();
        out.push(serde_json::json!({ "$or": any }));
    }
    out
}

/// A part of a device id as GenieACS writes it: every character outside `[A-Za-z0-9_]` as
/// `%XX` of its UTF-8 bytes.
pub fn device_id_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `s` matched literally inside a regular expression.
fn regex_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A device id as one URL path segment (its `%` escaped again).
pub fn path_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len() * 3);
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The ACS.
pub trait Acs: Send + Sync {
    /// `GET /{collection}/?query=…&projection=…&skip=…&limit=…`.
    fn query<'a>(
        &'a self,
        collection: &'a str,
        query: &'a Value,
        projection: &'a [&'a str],
        skip: u64,
        limit: u64,
    ) -> BoxFuture<'a, Result<Page, AcsError>>;

    /// `POST /devices/{id}/tasks?connection_request&timeout=…` with `task`.
    fn task<'a>(
        &'a self,
        device: &'a str,
        task: &'a Value,
    ) -> BoxFuture<'a, Result<TaskOutcome, AcsError>>;

    /// A bare connection request: is the box reachable now?
    fn poke<'a>(&'a self, device: &'a str) -> BoxFuture<'a, Result<TaskOutcome, AcsError>>;
}

/// Finds a box by serial or MAC, trying each of [`lookups`] in turn; fetches the
/// [`SUMMARY_PROJECTION`] only.
pub async fn find(
    acs: &dyn Acs,
    serial: Option<&str>,
    mac: Option<&str>,
) -> Result<Option<Value>, AcsError> {
    for q in lookups(serial, mac) {
        let page = acs.query("devices", &q, SUMMARY_PROJECTION, 0, 2).await?;
        if page.total > 1 {
            tracing::warn!(total = page.total, "acs.lookup_ambiguous");
        }
        if let Some(d) = page.items.into_iter().next() {
            return Ok(Some(d));
        }
    }
    Ok(None)
}

/// GenieACS's NBI.
#[derive(Debug, Clone)]
pub struct GenieAcsClient {
    http: reqwest::Client,
    base: String,
    /// How long the NBI waits for the box to start a session after a connection request.
    connection_request_ms: u64,
}

impl GenieAcsClient {
    /// A client for `base` (`http://acs:7557`). `timeout` bounds a whole request, which for a
    /// task includes the box's session.
    pub fn new(
        base: &str,
        timeout: Duration,
        connection_request: Duration,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: super::peer_client(timeout)?,
            base: base.trim_end_matches('/').to_owned(),
            connection_request_ms: u64::try_from(connection_request.as_millis())
                .unwrap_or(u64::MAX),
        })
    }

    fn sent(e: &reqwest::Error) -> AcsError {
        AcsError::Unreachable(e.to_string())
    }

    /// Sends a request: its status and text, or why nothing came back.
    async fn exchange(req: reqwest::RequestBuilder) -> Result<(u16, String), AcsError> {
        let resp = req.send().await.map_err(|e| Self::sent(&e))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| Self::sent(&e))?;
        Ok((status, text))
    }

    /// The task JSON's `_id`.
    fn task_id(body: &str) -> Option<String> {
        serde_json::from_str::<Value>(body)
            .ok()?
            .get("_id")?
            .as_str()
            .map(str::to_owned)
    }
}

impl Acs for GenieAcsClient {
    fn query<'a>(
        &'a self,
        collection: &'a str,
        query: &'a Value,
        projection: &'a [&'a str],
        skip: u64,
        limit: u64,
    ) -> BoxFuture<'a, Result<Page, AcsError>> {
        Box::pin(async move {
            let mut params = vec![
                ("query", query.to_string()),
                ("skip", skip.to_string()),
                ("limit", limit.to_string()),
            ];
            if !projection.is_empty() {
                params.push(("projection", projection.join(",")));
            }
            let resp = self
                .http
                .get(format!("{}/{collection}/", self.base))
                .query(&params)
                .send()
                .await
                .map_err(|e| Self::sent(&e))?;
            let status = resp.status().as_u16();
            let total = resp
                .headers()
                .get("total")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let text = resp.text().await.map_err(|e| Self::sent(&e))?;
            if status != 200 {
                return Err(AcsError::Refused {
                    status,
                    message: text.trim().chars().take(300).collect(),
                });
            }
            let items: Vec<Value> =
                serde_json::from_str(&text).map_err(|e| AcsError::BadAnswer(e.to_string()))?;
            let total = total.ok_or_else(|| AcsError::BadAnswer("no total header".into()))?;
            Ok(Page { items, total })
        })
    }

    fn task<'a>(
        &'a self,
        device: &'a str,
        task: &'a Value,
    ) -> BoxFuture<'a, Result<TaskOutcome, AcsError>> {
        Box::pin(async move {
            let url = format!(
                "{}/devices/{}/tasks?connection_request&timeout={}",
                self.base,
                path_segment(device),
                self.connection_request_ms
            );
            let (status, text) = Self::exchange(self.http.post(url).json(task)).await?;
            match status {
                200 => Ok(TaskOutcome::Done {
                    task: Self::task_id(&text),
                }),
                202 => {
                    let id = Self::task_id(&text);
                    // A fault is stored as `<device>:task_<id>`; none means it waits in line.
                    if let Some(t) = &id {
                        let q = serde_json::json!({"_id": format!("{device}:task_{t}")});
                        let faults = self.query("faults", &q, &[], 0, 1).await?;
                        if let Some(f) = faults.items.first() {
                            let fault = f
                                .get("message")
                                .or_else(|| f.get("code"))
                                .and_then(Value::as_str)
                                .map(str::to_owned);
                            return Ok(TaskOutcome::Faulted { task: id, fault });
                        }
                    }
                    Ok(TaskOutcome::Queued { task: id })
                }
                404 => Err(AcsError::NoSuchDevice(device.to_owned())),
                _ => Err(AcsError::Refused {
                    status,
                    message: text.trim().chars().take(300).collect(),
                }),
            }
        })
    }

    fn poke<'a>(&'a self, device: &'a str) -> BoxFuture<'a, Result<TaskOutcome, AcsError>> {
        Box::pin(async move {
            let url = format!(
                "{}/devices/{}/tasks?connection_request",
                self.base,
                path_segment(device)
            );
            let (status, text) = Self::exchange(self.http.post(url)).await?;
            match status {
                200 => Ok(TaskOutcome::Done { task: None }),
                504 => Ok(TaskOutcome::Unreachable {
                    message: text.trim().chars().take(300).collect(),
                }),
                404 => Err(AcsError::NoSuchDevice(device.to_owned())),
                _ => Err(AcsError::Refused {
                    status,
                    message: text.trim().chars().take(300).collect(),
                }),
            }
        })
    }
}

/// Why a device could not be shown or acted on.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("GenieACS knows no box with this equipment's serial or MAC")]
    NotFound,
    #[error(transparent)]
    Acs(#[from] AcsError),
    #[error("the box's document is not a TR-069 device: {0}")]
    Summary(#[from] summary::SummaryError),
    #[error("the device snapshots: {0}")]
    Store(#[from] rusqlite::Error),
}

/// Boxes behind service equipment: live summaries, the last one kept per equipment, tasks.
pub struct Devices {
    acs: Arc<dyn Acs>,
    db: Mutex<rusqlite::Connection>,
}

impl std::fmt::Debug for Devices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devices").finish_non_exhaustive()
    }
}

impl Devices {
    pub fn open(file: &Path, acs: Arc<dyn Acs>) -> Result<Arc<Self>, rusqlite::Error> {
        // Snapshots are a cache: losing the last one to a power cut loses nothing acknowledged.
        let conn = super::open_db(file, false)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS acs_snapshots (
                 equipment TEXT PRIMARY KEY,
                 device_id TEXT NOT NULL,
                 summary TEXT NOT NULL,
                 fetched_at INTEGER NOT NULL
             );",
        )?;
        Ok(Arc::new(Self {
            acs,
            db: Mutex::new(conn),
        }))
    }

    pub fn acs(&self) -> &Arc<dyn Acs> {
        &self.acs
    }

    fn keep(&self, equipment: &str, s: &DeviceSummary, at: i64) -> Result<(), DeviceError> {
        let json = serde_json::to_string(s)
            .map_err(|e| DeviceError::Acs(AcsError::BadAnswer(e.to_string())))?;
        super::lock_db(&self.db).execute(
            "INSERT INTO acs_snapshots (equipment, device_id, summary, fetched_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(equipment) DO UPDATE SET device_id = ?2, summary = ?3, fetched_at = ?4",
            rusqlite::params![equipment, s.device_id, json, at],
        )?;
        Ok(())
    }

    /// The last summary kept for `equipment`, and when it was read.
    pub fn snapshot(&self, equipment: &str) -> Result<Option<(DeviceSummary, i64)>, DeviceError> {
        let row: Option<(String, i64)> = super::lock_db(&self.db)
            .query_row(
                "SELECT summary, fetched_at FROM acs_snapshots WHERE equipment = ?1",
                [equipment],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        Ok(row.and_then(|(json, at)| Some((serde_json::from_str(&json).ok()?, at))))
    }

    /// The box behind `equipment` (its serial and MAC), read now; when GenieACS cannot be
    /// reached, the last summary kept, marked as such.
    pub async fn read(
        &self,
        equipment: &str,
        serial: Option<&str>,
        mac: Option<&str>,
        now_ms: i64,
    ) -> Result<Reading, DeviceError> {
        match find(self.acs.as_ref(), serial, mac).await {
            Ok(Some(doc)) => {
                let s = summary::summarize(&doc, now_ms)?;
                self.keep(equipment, &s, now_ms)?;
                Ok(Reading {
                    source: Source::Live,
                    fetched_at: now_ms,
                    age_s: 0,
                    summary: s,
                    error: None,
                })
            }
            Ok(None) => Err(DeviceError::NotFound),
            Err(e @ AcsError::Unreachable(_)) => match self.snapshot(equipment)? {
                Some((mut s, at)) => {
                    // Ages move on while the snapshot waits.
                    s.last_inform_age_s = s
                        .last_inform_age_s
                        .map(|a| a + (now_ms - at).div_euclid(1000));
                    Ok(Reading {
                        source: Source::Snapshot,
                        fetched_at: at,
                        age_s: (now_ms - at).div_euclid(1000),
                        summary: s,
                        error: Some(e.to_string()),
                    })
                }
                None => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Runs `action` on the box `device_id` of data model `model`. A reboot first checks the
    /// box answers a connection request: a reboot must not wait in line and fire hours later.
    pub async fn act(
        &self,
        device_id: &str,
        model: DataModel,
        action: Action,
    ) -> Result<TaskOutcome, AcsError> {
        if action == Action::Reboot {
            let reach = self.acs.poke(device_id).await?;
            if matches!(reach, TaskOutcome::Unreachable { .. }) {
                return Ok(reach);
            }
        }
        self.acs.task(device_id, &action.task(model)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_parts_are_escaped_as_genieacs_does() {
        assert_eq!(device_id_part("G-1425G-A"), "G%2D1425G%2DA");
        assert_eq!(device_id_part("ZXHN H199A"), "ZXHN%20H199A");
        assert_eq!(
            path_segment("9075BC-G%2D1425G%2DA-ALCLFC265D6F"),
            "9075BC-G%252D1425G%252DA-ALCLFC265D6F"
        );
    }

    #[test]
    fn lookups_go_serial_then_id_then_mac() {
        let q = lookups(Some("22275A7000395"), Some("1c:61:b4:fb:2a:c8"));
        assert_eq!(q.len(), 3);
        assert_eq!(
            q[0],
            serde_json::json!({"_deviceId._SerialNumber": "22275A7000395"})
        );
        assert_eq!(
            q[1],
            serde_json::json!({"_id": {"$regex": "-22275A7000395$"}})
        );
        let first = &q[2]["$or"][0];
        assert_eq!(
            first[MAC_PARAMETERS[0]]["$in"],
            serde_json::json!(["1C:61:B4:FB:2A:C8", "1c:61:b4:fb:2a:c8"])
        );
        assert!(lookups(None, Some("  ")).is_empty());
    }
}
