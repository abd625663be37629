//! What the hub tells about a customer's box (read from the ACS), as typed values shared by the
//! server, which reads them, and the app, which shows them. A value the box does not report is
//! `None` (JSON `null`): shown as "not reported", never guessed.

use serde::{Deserialize, Serialize};

/// The root object of the device's data model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataModel {
    /// TR-098, `InternetGatewayDevice.`
    Tr098,
    /// TR-181, `Device.`
    Tr181,
}

impl DataModel {
    pub fn root(self) -> &'static str {
        match self {
            Self::Tr098 => "InternetGatewayDevice",
            Self::Tr181 => "Device",
        }
    }
}

/// Who the box is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub firmware: Option<String>,
    pub hardware: Option<String>,
    /// The OUI and product class GenieACS keys the device by.
    pub oui: Option<String>,
    pub product_class: Option<String>,
}

/// One WAN connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wan {
    /// The connection's name on the box (`4_TR069_INTERNET_R_VID_1`, `ppp0`).
    pub name: Option<String>,
    /// `ppp` or `ip`.
    pub kind: WanKind,
    /// How it is set up, as the box says (`IP_Routed`, `PPPoE`, `DHCP`).
    pub mode: Option<String>,
    /// What it carries, where the box says (`Internet,TR069`).
    pub service: Option<String>,
    /// Its IPv4 address; `None` when it has none (`0.0.0.0` or empty).
    pub ip: Option<String>,
    /// The box's own status word (`Connected`, `Up`, `Disconnected`).
    pub status: Option<String>,
    /// Whether that status means traffic can flow.
    pub up: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WanKind {
    Ip,
    Ppp,
}

/// How a level compares with the thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Ok,
    Warning,
    Critical,
    NotReported,
}

/// The units vendors report optical power in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpticalUnit {
    /// Already dBm (Huawei, Nokia).
    Dbm,
    /// Thousandths of a dBm (TR-181's standard `OpticalSignalLevel`).
    MilliDbm,
    /// Tenths of a microwatt (TP-Link `X_TP_GPON_Config`, China Telecom):
    /// `dBm = 10·log10(raw · 0.0001)`.
    TenthMicrowatt,
    /// Not documented for this vendor: a value between −50 and +10 is taken as dBm, a larger
    /// positive one as tenths of a microwatt.
    Guessed,
}

impl OpticalUnit {
    /// The raw value in dBm (two decimals); `None` when it cannot be a power.
    pub fn to_dbm(self, raw: f64) -> Option<f64> {
        let dbm = match self {
            Self::Dbm => raw,
            Self::MilliDbm => raw / 1000.0,
            Self::TenthMicrowatt => {
                if raw <= 0.0 {
                    return None;
                }
                10.0 * (raw * 0.0001).log10()
            }
            Self::Guessed => {
                if (-50.0..=10.0).contains(&raw) {
                    raw
                } else {
                    return Self::TenthMicrowatt.to_dbm(raw);
                }
            }
        };
        dbm.is_finite().then(|| (dbm * 100.0).round() / 100.0)
    }
}

/// GPON class B+ optics (ITU-T G.984.2): the ONU receives between −28 dBm (sensitivity) and
/// −8 dBm (overload) and sends between +0.5 and +5 dBm. Inside the margins below a line is
/// fine; near a limit it is a warning; past it the line drops frames or goes down.
pub mod thresholds {
    /// Receive power below this is a warning (3 dB of margin left before sensitivity).
    pub const RX_WARNING_LOW: f64 = -25.0;
    /// Below the receiver's sensitivity.
    pub const RX_CRITICAL_LOW: f64 = -28.0;
    /// Above the receiver's overload point (too strong: a missing attenuator).
    pub const RX_CRITICAL_HIGH: f64 = -8.0;
    /// Within a dB of overload.
    pub const RX_WARNING_HIGH: f64 = -9.0;
    pub const TX_LOW: f64 = 0.5;
    pub const TX_HIGH: f64 = 5.0;
    /// A laser this weak is failing.
    pub const TX_CRITICAL_LOW: f64 = -3.0;
}

/// The level of a receive power in dBm.
pub fn rx_level(dbm: Option<f64>) -> Level {
    use thresholds::*;
    match dbm {
        None => Level::NotReported,
        Some(v) if !(RX_CRITICAL_LOW..=RX_CRITICAL_HIGH).contains(&v) => Level::Critical,
        Some(v) if !(RX_WARNING_LOW..=RX_WARNING_HIGH).contains(&v) => Level::Warning,
        Some(_) => Level::Ok,
    }
}

/// The level of a transmit power in dBm.
pub fn tx_level(dbm: Option<f64>) -> Level {
    use thresholds::*;
    match dbm {
        None => Level::NotReported,
        Some(v) if v < TX_CRITICAL_LOW => Level::Critical,
        Some(v) if !(TX_LOW..=TX_HIGH).contains(&v) => Level::Warning,
        Some(_) => Level::Ok,
    }
}

/// The fibre side of an ONT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Optical {
    pub rx_dbm: Option<f64>,
    pub tx_dbm: Option<f64>,
    pub rx_level: Level,
    pub tx_level: Level,
    /// The interface's status word (`Up`).
    pub status: Option<String>,
    /// Where the levels were read (the object's path) and in which unit.
    pub source: String,
    pub unit: OpticalUnit,
}

/// A Wi-Fi network the box broadcasts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ssid {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    /// Clients associated now, where the box counts them.
    pub clients: Option<u64>,
    /// A mesh backhaul network (hidden, between the box and its satellites).
    pub backhaul: bool,
}

/// A radio and the networks on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Radio {
    /// `2.4GHz`, `5GHz`, `6GHz`; `None` when the box does not say.
    pub band: Option<String>,
    pub channel: Option<u64>,
    pub standards: Option<String>,
    pub ssids: Vec<Ssid>,
}

/// A mesh access point (the gateway itself is the controller).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeshNode {
    pub mac: String,
    pub name: Option<String>,
    pub model: Option<String>,
    pub ip: Option<String>,
    pub controller: bool,
}

/// How a host reaches its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    Wifi,
    Ethernet,
    Unknown,
}

/// A device on the customer's network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub name: Option<String>,
    pub ip: Option<String>,
    pub mac: Option<String>,
    pub active: Option<bool>,
    pub link: Link,
    pub band: Option<String>,
    pub signal_dbm: Option<i64>,
    /// The last downlink rate, in Mbit/s.
    pub speed_mbps: Option<f64>,
}

/// The hosts hanging off one node: `node` is a mesh node's MAC, or `None` for the gateway
/// itself (and for hosts whose node the box does not say).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostGroup {
    pub node: Option<String>,
    pub node_name: Option<String>,
    pub hosts: Vec<Host>,
}

/// What the server reads off a device document (`sync_server::hub::acs::summary::summarize`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceSummary {
    pub device_id: String,
    pub data_model: DataModel,
    pub identity: Identity,
    pub uptime_s: Option<u64>,
    /// The last time the box called the ACS (RFC 3339).
    pub last_inform: Option<String>,
    /// Seconds between that call and `now`.
    pub last_inform_age_s: Option<i64>,
    /// How often the box is told to call.
    pub inform_interval_s: Option<u64>,
    /// The box called within two intervals (plus a minute): it is most likely online.
    pub recently_seen: Option<bool>,
    pub wan: Vec<Wan>,
    pub optical: Option<Optical>,
    pub radios: Vec<Radio>,
    pub mesh: Vec<MeshNode>,
    pub hosts: Vec<HostGroup>,
    pub host_count: usize,
    /// GenieACS tags.
    pub tags: Vec<String>,
}

/// A summary and when it was read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// `live` (read just now) or `snapshot` (the last one kept, GenieACS being unreachable).
    pub source: Source,
    /// When it was read (Unix milliseconds) and how long ago, in seconds.
    pub fetched_at: i64,
    pub age_s: i64,
    pub summary: DeviceSummary,
    /// Why the live reading failed, for a snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Live,
    Snapshot,
}

/// What happened to a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TaskOutcome {
    /// The box ran it just now (`200`).
    Done { task: Option<String> },
    /// The box did not answer in time: GenieACS runs it when the box next calls in (`202`).
    Queued { task: Option<String> },
    /// The box ran it and answered with a fault (`202 Task faulted`).
    Faulted {
        task: Option<String>,
        fault: Option<String>,
    },
    /// The connection request failed: the box cannot be reached now (`504`); nothing queued.
    Unreachable { message: String },
}

impl TaskOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Done { .. } => "done",
            Self::Queued { .. } => "queued",
            Self::Faulted { .. } => "faulted",
            Self::Unreachable { .. } => "unreachable",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The access network: OLTs, the ONUs on their PON ports, and the incidents read from them.

/// Where an ONU is in its life, as its OLT sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnuState {
    Online,
    /// Loss of signal: the fibre is cut or dirty.
    Los,
    /// The ONU said it was losing power.
    DyingGasp,
    Offline,
    /// Registering, authenticating: neither up nor down yet.
    Other,
}

impl OnuState {
    /// Whether the customer behind it has no service.
    pub fn is_down(self) -> bool {
        matches!(self, Self::Los | Self::DyingGasp | Self::Offline)
    }
}

/// What an incident is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// Several ONUs of one PON port went down together: the port, the splitter or the feeder
    /// fibre, not the customers' side.
    PortOutage,
    /// One ONU down on a port whose others are fine: the customer's side (power, fibre drop).
    CustomerFault,
    /// The OLT does not answer its poll: nothing is known of its ONUs (not an outage of them).
    OltUnreachable,
}

/// An ONU an incident is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnuRef {
    /// Its id on the PON port.
    pub onu: u32,
    /// Its GPON serial (`HWTCA94196A5`), when the OLT reports it.
    pub serial: Option<String>,
    pub state: OnuState,
}

/// A job of an affected customer, open or upcoming.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AffectedJob {
    pub id: crate::ids::DocId,
    pub title: String,
    pub date: chrono::NaiveDate,
    pub status: crate::model::JobStatus,
    pub technician: Option<crate::ids::DocId>,
}

/// A customer an incident touches, found through the ONU's serial on their service equipment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Affected {
    pub serial: String,
    pub equipment: crate::ids::DocId,
    pub customer: Option<crate::ids::DocId>,
    pub customer_name: Option<String>,
    pub location: Option<crate::ids::DocId>,
    /// The service address, on one line.
    pub address: Option<String>,
    /// Their open and upcoming jobs.
    pub jobs: Vec<AffectedJob>,
}

/// One incident of the access network, open (`ended` empty) or over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: i64,
    /// The OLT's name, as configured.
    pub olt: String,
    pub kind: IncidentKind,
    /// The PON port (`frame/slot/port`), for a port outage or a customer fault.
    pub port: Option<String>,
    /// The ONUs down.
    pub onus: Vec<OnuRef>,
    /// How many ONUs the port has in all (a port outage).
    pub of: Option<u32>,
    /// Unix milliseconds.
    pub started: i64,
    pub ended: Option<i64>,
    /// The customers behind the ONUs, with their jobs; filled for the office when read.
    #[serde(default)]
    pub affected: Vec<Affected>,
}

/// An Uptime Kuma monitor that is down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorDown {
    pub name: String,
    pub target: Option<String>,
    /// Since when, as Uptime Kuma wrote it.
    pub since: String,
    pub message: Option<String>,
}

/// One OLT as last polled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OltStatus {
    pub name: String,
    /// `None` before its first poll.
    pub reachable: Option<bool>,
    /// Since when it is (un)reachable, Unix milliseconds.
    pub since: Option<i64>,
    pub last_poll: Option<i64>,
    /// Why the last poll failed.
    pub last_error: Option<String>,
    pub onus: u32,
    pub onus_down: u32,
    /// The Uptime Kuma monitor watching the same host, when it is down.
    pub monitor: Option<MonitorDown>,
}

/// What dispatchers see of the access network: every OLT, the open incidents (and those over
/// in the last day), and the monitors down that belong to no OLT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkPicture {
    pub olts: Vec<OltStatus>,
    pub incidents: Vec<Incident>,
    pub monitors_down: Vec<MonitorDown>,
}

/// The line behind a piece of equipment, as its OLT last saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineView {
    pub olt: String,
    /// `frame/slot/port`.
    pub port: String,
    pub onu: u32,
    pub serial: String,
    pub state: OnuState,
    /// Since when it is in that state, Unix milliseconds (`None`: it already was when its OLT
    /// was first polled).
    pub since: Option<i64>,
    pub rx_dbm: Option<f64>,
    pub tx_dbm: Option<f64>,
    /// When its OLT was last polled.
    pub polled_at: Option<i64>,
    /// Whether that OLT answered its last poll (the state may be old otherwise).
    pub olt_reachable: bool,
    /// The open incident the line is part of.
    pub incident: Option<Incident>,
}
