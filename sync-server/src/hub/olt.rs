//! GPON OLTs over SNMP v2c: the ONU table of each PON port, read with GETBULK walks.
//!
//! Pure parts first: the vendors' index encodings ([`huawei_port`], [`zte_port`]), GPON serials
//! ([`gpon_serial`]), power units and run states, and [`assemble`], which turns walked columns
//! into [`Onu`] rows; what a table means (outages, faults) is [`super::access`]'s. [`poll`] is the thin I/O around them: the `snmp` crate's blocking session,
//! at most two requests in flight per OLT (two sessions, each walking half the columns), bounded
//! timeouts and retries; an OLT that does not answer is [`PollError::Unreachable`], never a
//! table of offline ONUs.
//!
//! Huawei MA5600T/MA5608T/MA5800 (HUAWEI-XPON-MIB, base `1.3.6.1.4.1.2011.6.128.1.1.2`): index
//! `<ponIfIndex>.<ontId>` with `ponIfIndex = 125·2^25 + frame·2^19 + slot·2^13 + port·2^8`;
//! serial `.43.1.3`, description `.43.1.9`, run status `.46.1.15` (1 online, 2 offline), Tx
//! `.51.1.3` and Rx `.51.1.4` in 0.01 dBm (2147483647: none).
//! ZTE C300/C320 (base `1.3.6.1.4.1.3902.1012.3`): index `<ifIndex>.<onu>` with
//! `ifIndex = 0x10000000 | slot<<16 | port<<8`; name `.28.1.1.2`, serial `.28.1.1.5`, phase
//! `.28.2.1.4` (1 logging, 2 LOS, 3 syncMib, 4 working, 5 dying gasp, 6 auth failed, 7
//! offline), Rx `.50.12.1.1.10.<ifIndex>.<onu>.1` as `raw·0.002 − 30` dBm (65535: none).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The OLT's make: which MIB and encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Vendor {
    Huawei,
    Zte,
}

/// A PON port, as the OLT's CLI names it (`frame/slot/port`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PonPort {
    pub frame: u32,
    pub slot: u32,
    pub port: u32,
}

impl std::fmt::Display for PonPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.frame, self.slot, self.port)
    }
}

impl PonPort {
    /// A port as [`Display`](std::fmt::Display) writes it (`0/1/3`).
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('/').map(str::parse::<u32>);
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(Ok(frame)), Some(Ok(slot)), Some(Ok(port)), None) => {
                Some(Self { frame, slot, port })
            }
            _ => None,
        }
    }
}

/// Huawei's PON ifIndex: `125·2^25 + frame·2^19 + slot·2^13 + port·2^8`.
pub fn huawei_port(if_index: u64) -> Option<PonPort> {
    if if_index >> 25 != 125 || if_index & 0xff != 0 {
        return None;
    }
    Some(PonPort {
        frame: u32::try_from((if_index >> 19) & 0x3f).ok()?,
        slot: u32::try_from((if_index >> 13) & 0x3f).ok()?,
        port: u32::try_from((if_index >> 8) & 0x1f).ok()?,
    })
}

/// The ifIndex of a Huawei PON port.
pub fn huawei_if_index(p: PonPort) -> u64 {
    (125u64 << 25)
        + (u64::from(p.frame) << 19)
        + (u64::from(p.slot) << 13)
        + (u64::from(p.port) << 8)
}

/// ZTE's PON ifIndex: `0x10000000 | slot<<16 | port<<8` (rack 1).
pub fn zte_port(if_index: u64) -> Option<PonPort> {
    if if_index >> 28 != 1 || if_index & 0xff != 0 {
        return None;
    }
    Some(PonPort {
        frame: 1,
        slot: u32::try_from((if_index >> 16) & 0xff).ok()?,
        port: u32::try_from((if_index >> 8) & 0xff).ok()?,
    })
}

/// The ifIndex of a ZTE PON port.
pub fn zte_if_index(p: PonPort) -> u64 {
    0x1000_0000 | (u64::from(p.slot) << 16) | (u64::from(p.port) << 8)
}

/// A GPON serial as people write it: the vendor's four letters and eight hex digits
/// (`HWTCA94196A5`), from the 8 bytes an OLT reports, or from a serial typed either way
/// (`48575443A94196A5` or `HWTCA94196A5`).
pub fn gpon_serial(bytes: &[u8]) -> Option<String> {
    if bytes.len() != 8 || !bytes[..4].iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    let vendor: String = bytes[..4].iter().map(|b| char::from(*b)).collect();
    let rest: String = bytes[4..].iter().map(|b| format!("{b:02X}")).collect();
    Some(format!("{}{rest}", vendor.to_ascii_uppercase()))
}

/// A serial written either way, as [`gpon_serial`] writes it; `None` when it is not a GPON one.
pub fn normalize_serial(s: &str) -> Option<String> {
    let s = s.trim();
    if s.len() == 16 && s.chars().all(|c| c.is_ascii_hexdigit()) {
        let bytes: Vec<u8> = (0..8)
            .map(|i| u8::from_str_radix(&s[i * 2..i * 2 + 2], 16))
            .collect::<Result<_, _>>()
            .ok()?;
        return gpon_serial(&bytes);
    }
    (s.len() == 12
        && s[..4].chars().all(|c| c.is_ascii_alphanumeric())
        && s[4..].chars().all(|c| c.is_ascii_hexdigit()))
    .then(|| s.to_ascii_uppercase())
}

pub use shared::network::OnuState;

/// A Huawei run status (`1` online, `2` offline).
fn huawei_state(run_status: i64) -> OnuState {
    match run_status {
        1 => OnuState::Online,
        2 => OnuState::Offline,
        _ => OnuState::Other,
    }
}

/// A ZTE phase state (`2` LOS, `4` working, `5` dying gasp, `7` offline).
fn zte_state(phase: i64) -> OnuState {
    match phase {
        4 => OnuState::Online,
        2 => OnuState::Los,
        5 => OnuState::DyingGasp,
        7 => OnuState::Offline,
        _ => OnuState::Other,
    }
}

/// One ONU row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Onu {
    pub port: PonPort,
    pub onu: u32,
    pub serial: Option<String>,
    pub description: Option<String>,
    pub state: OnuState,
    pub rx_dbm: Option<f64>,
    pub tx_dbm: Option<f64>,
}

/// A value as walked: an integer or bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Int(i64),
    Bytes(Vec<u8>),
}

/// The columns of a vendor's ONU table: `(name, OID)`.
pub fn columns(vendor: Vendor) -> &'static [(&'static str, &'static str)] {
    match vendor {
        Vendor::Huawei => &[
            ("serial", "1.3.6.1.4.1.2011.6.128.1.1.2.43.1.3"),
            ("description", "1.3.6.1.4.1.2011.6.128.1.1.2.43.1.9"),
            ("state", "1.3.6.1.4.1.2011.6.128.1.1.2.46.1.15"),
            ("tx", "1.3.6.1.4.1.2011.6.128.1.1.2.51.1.3"),
            ("rx", "1.3.6.1.4.1.2011.6.128.1.1.2.51.1.4"),
        ],
        Vendor::Zte => &[
            ("description", "1.3.6.1.4.1.3902.1012.3.28.1.1.2"),
            ("serial", "1.3.6.1.4.1.3902.1012.3.28.1.1.5"),
            ("state", "1.3.6.1.4.1.3902.1012.3.28.2.1.4"),
            ("rx", "1.3.6.1.4.1.3902.1012.3.50.12.1.1.10"),
            ("tx", "1.3.6.1.4.1.3902.1012.3.50.12.1.1.9"),
        ],
    }
}

fn power(vendor: Vendor, raw: i64) -> Option<f64> {
    let dbm = match vendor {
        Vendor::Huawei if raw == 2_147_483_647 => return None,
        Vendor::Huawei => raw as f64 / 100.0,
        Vendor::Zte if raw == 65_535 => return None,
        Vendor::Zte => raw as f64 * 0.002 - 30.0,
    };
    Some((dbm * 100.0).round() / 100.0)
}

/// The ONU table from walked columns: `column name → (index suffix, value)`. Rows are keyed by
/// port and ONU id; a row without a state is left out (it is not an ONU).
pub fn assemble(vendor: Vendor, walked: &BTreeMap<&str, Vec<(Vec<u64>, Val)>>) -> Vec<Onu> {
    let mut rows: BTreeMap<(PonPort, u32), Onu> = BTreeMap::new();
    let decode = |suffix: &[u64]| -> Option<(PonPort, u32)> {
        let (&if_index, &onu) = (suffix.first()?, suffix.get(1)?);
        let port = match vendor {
            Vendor::Huawei => huawei_port(if_index)?,
            Vendor::Zte => zte_port(if_index)?,
        };
        Some((port, u32::try_from(onu).ok()?))
    };
    if let Some(states) = walked.get("state") {
        for (suffix, v) in states {
            let (Some(key), Val::Int(raw)) = (decode(suffix), v) else {
                continue;
            };
            rows.insert(
                key,
                Onu {
                    port: key.0,
                    onu: key.1,
                    serial: None,
                    description: None,
                    state: match vendor {
                        Vendor::Huawei => huawei_state(*raw),
                        Vendor::Zte => zte_state(*raw),
                    },
                    rx_dbm: None,
                    tx_dbm: None,
                },
            );
        }
    }
    for (column, values) in walked {
        for (suffix, v) in values {
            let Some(row) = decode(suffix).and_then(|k| rows.get_mut(&k)) else {
                continue;
            };
            match (*column, v) {
                ("serial", Val::Bytes(b)) => row.serial = gpon_serial(b),
                ("description", Val::Bytes(b)) => {
                    row.description = Some(String::from_utf8_lossy(b).trim().to_owned())
                        .filter(|d| !d.is_empty());
                }
                ("rx", Val::Int(raw)) => row.rx_dbm = power(vendor, *raw),
                ("tx", Val::Int(raw)) => row.tx_dbm = power(vendor, *raw),
                _ => {}
            }
        }
    }
    rows.into_values().collect()
}

/// At least this many ONUs of a port going down within the outage window make a port outage
/// (see [`super::access`]).
pub const PORT_OUTAGE_MIN_ONUS: usize = 3;

/// An OLT to poll.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub addr: std::net::SocketAddr,
    pub community: String,
    pub vendor: Vendor,
    /// One request's timeout.
    pub timeout: Duration,
    /// Tries of one request before the OLT counts as unreachable.
    pub tries: u32,
}

/// Why a poll gave no table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PollError {
    /// No answer (down, unreachable, wrong community): an "OLT unreachable" event, never an
    /// outage of its ONUs.
    #[error("the OLT {0} does not answer")]
    Unreachable(String),
    #[error("the OLT {olt} answered something we cannot read: {problem}")]
    Protocol { olt: String, problem: String },
}

fn parse_oid(s: &str) -> Vec<u32> {
    s.split('.').filter_map(|p| p.parse().ok()).collect()
}

/// How many rows one GETBULK asks for (each answer stays under a UDP datagram).
const MAX_REPETITIONS: u32 = 40;

/// Walks one column below `base`: `(index suffix, value)` in order.
fn walk(
    session: &mut snmp::SyncSession,
    target: &Target,
    base: &[u32],
) -> Result<Vec<(Vec<u64>, Val)>, PollError> {
    let mut out = Vec::new();
    let mut from = base.to_vec();
    loop {
        let mut tries = 0;
        let pdu = loop {
            tries += 1;
            match session.getbulk(&[&from], 0, MAX_REPETITIONS) {
                Ok(pdu) => break pdu,
                Err(snmp::SnmpError::ReceiveError | snmp::SnmpError::SendError)
                    if tries < target.tries.max(1) => {}
                Err(snmp::SnmpError::ReceiveError | snmp::SnmpError::SendError) => {
                    return Err(PollError::Unreachable(target.name.clone()));
                }
                Err(snmp::SnmpError::CommunityMismatch) => {
                    return Err(PollError::Protocol {
                        olt: target.name.clone(),
                        problem: "it answered for another community".into(),
                    });
                }
                Err(_) => {
                    return Err(PollError::Protocol {
                        olt: target.name.clone(),
                        problem: "an answer that does not parse as SNMP".into(),
                    });
                }
            }
        };
        let mut last = None;
        let mut done = false;
        for (name, value) in pdu.varbinds {
            let mut buf = [0u32; 128];
            let Ok(oid) = name.read_name(&mut buf) else {
                done = true;
                break;
            };
            if !oid.starts_with(base) {
                done = true;
                break;
            }
            let suffix: Vec<u64> = oid[base.len()..].iter().map(|n| u64::from(*n)).collect();
            let val = match value {
                snmp::Value::Integer(i) => Val::Int(i),
                snmp::Value::Counter32(i) | snmp::Value::Unsigned32(i) => Val::Int(i64::from(i)),
                snmp::Value::OctetString(b) => Val::Bytes(b.to_vec()),
                _ => Val::Bytes(Vec::new()),
            };
            last = Some(oid.to_vec());
            out.push((suffix, val));
        }
        // Past the column, past the MIB's end (no varbinds the session can read), or an agent
        // that does not move forward: the walk is over.
        match last {
            Some(l) if !done && l > from => from = l,
            _ => return Ok(out),
        }
    }
}

/// Polls an OLT's ONU table: two sessions (two requests in flight at most), each walking half
/// the columns. Blocking: run it off the async threads.
pub fn poll(target: &Target) -> Result<Vec<Onu>, PollError> {
    let cols = columns(target.vendor);
    let (first, second) = cols.split_at(cols.len().div_ceil(2));
    let run = |part: &'static [(&'static str, &'static str)], req_id: i32| {
        let mut session = snmp::SyncSession::new(
            target.addr,
            target.community.as_bytes(),
            Some(target.timeout),
            req_id,
        )
        .map_err(|_| PollError::Unreachable(target.name.clone()))?;
        part.iter()
            .map(|(name, oid)| Ok((*name, walk(&mut session, target, &parse_oid(oid))?)))
            .collect::<Result<Vec<_>, PollError>>()
    };
    let (a, b) = std::thread::scope(|s| {
        let other = s.spawn(|| run(second, 1_000_000));
        let mine = run(first, 1);
        (mine, other.join())
    });
    let b = b.map_err(|_| PollError::Protocol {
        olt: target.name.clone(),
        problem: "the poll thread failed".into(),
    })?;
    let walked: BTreeMap<&str, Vec<(Vec<u64>, Val)>> = a?.into_iter().chain(b?).collect();
    Ok(assemble(target.vendor, &walked))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_indexes_decode_both_ways() {
        let p = huawei_port(4_194_312_192).unwrap();
        assert_eq!((p.frame, p.slot, p.port), (0, 1, 0));
        assert_eq!(huawei_port(4_194_304_000).unwrap().to_string(), "0/0/0");
        assert_eq!(huawei_port(4_194_312_960).unwrap().to_string(), "0/1/3");
        assert_eq!(huawei_if_index(p), 4_194_312_192);
        assert_eq!(zte_port(268_501_248).unwrap().to_string(), "1/1/1");
        assert_eq!(zte_port(268_566_784).unwrap().to_string(), "1/2/1");
        assert_eq!(zte_if_index(zte_port(268_566_784).unwrap()), 268_566_784);
        assert_eq!(huawei_port(42), None);
        assert_eq!(zte_port(4_194_312_192), None);
    }

    #[test]
    fn gpon_serials_read_one_way_whatever_way_they_come() {
        let bytes = [0x48, 0x57, 0x54, 0x43, 0xA9, 0x41, 0x96, 0xA5];
        assert_eq!(gpon_serial(&bytes).as_deref(), Some("HWTCA94196A5"));
        assert_eq!(
            normalize_serial("48575443A94196A5").as_deref(),
            Some("HWTCA94196A5")
        );
        assert_eq!(
            normalize_serial("hwtca94196a5").as_deref(),
            Some("HWTCA94196A5")
        );
        assert_eq!(normalize_serial("not a serial"), None);
    }

    #[test]
    fn powers_and_their_none_markers() {
        assert_eq!(power(Vendor::Huawei, -1950), Some(-19.5));
        assert_eq!(power(Vendor::Huawei, 2_147_483_647), None);
        assert_eq!(power(Vendor::Zte, 5550), Some(-18.9));
        assert_eq!(power(Vendor::Zte, 65_535), None);
    }
}
