//! What a person needs to know about a customer's box, read from its GenieACS device document:
//! identity and firmware, uptime, last inform, WAN, optical levels, Wi-Fi, mesh nodes and the
//! hosts hanging off each node. Pure: a document in, a [`DeviceSummary`] out.
//!
//! It reads the standard TR-098 (`InternetGatewayDevice.`) and TR-181 (`Device.`) paths plus the
//! vendor extensions we know of (TP-Link `X_TP_*`, Huawei `X_HW_*` and `X_GponInterafceConfig`,
//! Nokia `X_ALU_*`, ZTE, China Telecom), so a model we have never seen still gets everything
//! standard. A value a device does not report is `None` (JSON `null`): shown as "not reported",
//! never guessed.

use std::collections::HashMap;

use serde_json::Value;

pub use shared::network::{
    DataModel, DeviceSummary, Host, HostGroup, Identity, Level, Link, MeshNode, Optical,
    OpticalUnit, Radio, Ssid, Wan, WanKind, rx_level, thresholds, tx_level,
};

/// A document that is not a GenieACS device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SummaryError {
    #[error("the document has no _id")]
    NoId,
    #[error("the document has neither InternetGatewayDevice nor Device: not a TR-069 device")]
    NoDataModel,
}

/// The object (or leaf) at a dotted path below `node`.
pub fn node<'a>(node: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .filter(|s| !s.is_empty())
        .try_fold(node, |n, k| n.get(k))
}

/// A leaf's `_value`.
fn value<'a>(n: &'a Value, path: &str) -> Option<&'a Value> {
    node(n, path)?.get("_value")
}

/// A leaf as non-empty text (numbers and booleans as written).
fn text(n: &Value, path: &str) -> Option<String> {
    match value(n, path)? {
        Value::String(s) => {
            let s = s.trim();
            (!s.is_empty()).then(|| s.to_owned())
        }
        Value::Number(x) => Some(x.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A leaf as a number (numbers, or text that is one: vendors send both).
fn number(n: &Value, path: &str) -> Option<f64> {
    match value(n, path)? {
        Value::Number(x) => x.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn unsigned(n: &Value, path: &str) -> Option<u64> {
    match value(n, path)? {
        Value::Number(x) => x.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn integer(n: &Value, path: &str) -> Option<i64> {
    match value(n, path)? {
        Value::Number(x) => x.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn boolean(n: &Value, path: &str) -> Option<bool> {
    match value(n, path)? {
        Value::Bool(b) => Some(*b),
        Value::Number(x) => x.as_i64().map(|v| v != 0),
        Value::String(s) => match s.trim() {
            "true" | "1" | "True" => Some(true),
            "false" | "0" | "False" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// The numbered instances of a multi-instance object, in number order.
fn instances<'a>(n: &'a Value, path: &str) -> Vec<(u32, &'a Value)> {
    let Some(Value::Object(map)) = node(n, path) else {
        return Vec::new();
    };
    let mut out: Vec<(u32, &Value)> = map
        .iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, v)))
        .filter(|(_, v)| v.is_object())
        .collect();
    out.sort_by_key(|(i, _)| *i);
    out
}

/// A reference as TR-181 writes it (`Device.WiFi.SSID.1.`), without the trailing dot.
fn reference(s: &str) -> &str {
    s.trim().trim_end_matches('.')
}

/// A MAC address in one spelling (upper case, colons), so lists from different objects meet.
fn mac(s: &str) -> Option<String> {
    let hex: String = s.chars().filter(char::is_ascii_hexdigit).collect();
    if hex.len() != 12 || hex.chars().all(|c| c == '0') {
        return None;
    }
    let up = hex.to_ascii_uppercase();
    Some(
        up.as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// An IPv4 address worth showing (not empty, not `0.0.0.0`).
fn address(s: Option<String>) -> Option<String> {
    s.filter(|a| a != "0.0.0.0" && !a.is_empty())
}

/// A band as people say it, from what vendors write (`2.4GHz`, `5GHz`, `2.4G`).
fn band_of(raw: &str) -> Option<String> {
    let r = raw.trim().to_ascii_lowercase();
    if r.starts_with("2.4") {
        Some("2.4GHz".into())
    } else if r.starts_with('5') {
        Some("5GHz".into())
    } else if r.starts_with('6') {
        Some("6GHz".into())
    } else {
        None
    }
}

/// The band a channel number is in.
fn band_of_channel(channel: u64) -> Option<String> {
    match channel {
        1..=14 => Some("2.4GHz".into()),
        32..=177 => Some("5GHz".into()),
        _ => None,
    }
}

/// Whether a status word means the link carries traffic.
fn is_up(status: Option<&str>) -> bool {
    matches!(status, Some("Connected" | "Up"))
}

/// Summarizes a device document at `now_ms` (Unix milliseconds, for the last inform's age).
pub fn summarize(doc: &Value, now_ms: i64) -> Result<DeviceSummary, SummaryError> {
    let device_id = doc
        .get("_id")
        .and_then(Value::as_str)
        .ok_or(SummaryError::NoId)?
        .to_owned();
    let (data_model, root) = if let Some(r) = doc.get("Device").filter(|r| r.is_object()) {
        (DataModel::Tr181, r)
    } else if let Some(r) = doc.get("InternetGatewayDevice").filter(|r| r.is_object()) {
        (DataModel::Tr098, r)
    } else {
        return Err(SummaryError::NoDataModel);
    };
    let id_part = |k: &str| {
        doc.get("_deviceId")
            .and_then(|d| d.get(k))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let info = node(root, "DeviceInfo").unwrap_or(&Value::Null);
    let identity = Identity {
        manufacturer: text(info, "Manufacturer").or_else(|| id_part("_Manufacturer")),
        model: text(info, "ModelName").or_else(|| id_part("_ProductClass")),
        // Some boxes report `0` for a serial (the BM632w): GenieACS's own is then the truth.
        serial: text(info, "SerialNumber")
            .filter(|s| s != "0")
            .or_else(|| id_part("_SerialNumber")),
        firmware: text(info, "SoftwareVersion"),
        hardware: text(info, "HardwareVersion"),
        oui: id_part("_OUI"),
        product_class: id_part("_ProductClass"),
    };
    let last_inform = doc
        .get("_lastInform")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let last_inform_age_s = last_inform
        .as_deref()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| (now_ms - t.as_millisecond()).div_euclid(1000));
    let inform_interval_s = unsigned(root, "ManagementServer.PeriodicInformInterval");
    let recently_seen = match (last_inform_age_s, inform_interval_s) {
        (Some(age), Some(every)) => Some(age <= i64::try_from(every * 2 + 60).unwrap_or(i64::MAX)),
        _ => None,
    };
    let tags = doc
        .get("_tags")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let (wan, optical, radios, mesh, hosts) = match data_model {
        DataModel::Tr181 => {
            let mesh = tr181::mesh(root);
            let radios = tr181::radios(root, &mesh.backhaul);
            (
                tr181::wan(root),
                tr181::optical(root),
                radios,
                mesh.nodes.clone(),
                tr181::hosts(root, &mesh),
            )
        }
        DataModel::Tr098 => (
            tr098::wan(root),
            tr098::optical(root),
            tr098::radios(root),
            Vec::new(),
            tr098::hosts(root),
        ),
    };
    let host_count = hosts.iter().map(|g| g.hosts.len()).sum();
    Ok(DeviceSummary {
        device_id,
        data_model,
        identity,
        uptime_s: unsigned(info, "UpTime"),
        last_inform,
        last_inform_age_s,
        inform_interval_s,
        recently_seen,
        wan,
        optical,
        radios,
        mesh,
        hosts,
        host_count,
        tags,
    })
}

/// Levels read from one object, in the object's unit.
fn optical_at(obj: &Value, source: String, rx: &str, tx: &str, unit: OpticalUnit) -> Optical {
    let rx_dbm = number(obj, rx).and_then(|v| unit.to_dbm(v));
    let tx_dbm = number(obj, tx).and_then(|v| unit.to_dbm(v));
    Optical {
        rx_dbm,
        tx_dbm,
        rx_level: rx_level(rx_dbm),
        tx_level: tx_level(tx_dbm),
        status: text(obj, "Status"),
        source,
        unit,
    }
}

/// Where a Wi-Fi station was seen: the band, its signal (dBm) and last downlink rate (Mbit/s).
type Seen = (Option<String>, Option<i64>, Option<f64>);

/// The node (its MAC) a station hangs off, how, and [`Seen`].
type Attached = (String, Link, Option<String>, Option<i64>, Option<f64>);

/// Groups hosts by node, the gateway's group first, in the order nodes were listed.
fn group(
    hosts: Vec<(Option<String>, Host)>,
    names: &HashMap<String, Option<String>>,
) -> Vec<HostGroup> {
    let mut groups: Vec<HostGroup> = Vec::new();
    for (node, host) in hosts {
        if let Some(g) = groups.iter_mut().find(|g| g.node == node) {
            g.hosts.push(host);
        } else {
            groups.push(HostGroup {
                node_name: node.as_ref().and_then(|n| names.get(n).cloned().flatten()),
                node,
                hosts: vec![host],
            });
        }
    }
    groups.sort_by_key(|g| g.node.is_some());
    groups
}

mod tr181 {
    use super::*;

    /// Mesh nodes, where each station hangs, and which SSIDs are backhaul.
    pub(super) struct Mesh {
        pub(super) nodes: Vec<MeshNode>,
        /// Station MAC → (node MAC, link, band, signal dBm, downlink Mbit/s).
        pub(super) stations: HashMap<String, Attached>,
        pub(super) backhaul: Vec<String>,
    }

    /// RCPI (0–220, IEEE 802.11) as dBm; 255 and anything above 220 mean "not measured".
    fn rcpi_dbm(rcpi: u64) -> Option<i64> {
        (rcpi > 0 && rcpi <= 220).then(|| i64::try_from(rcpi).unwrap_or(0) / 2 - 110)
    }

    pub(super) fn mesh(root: &Value) -> Mesh {
        let mut out = Mesh {
            nodes: Vec::new(),
            stations: HashMap::new(),
            backhaul: Vec::new(),
        };
        for (_, ap_dev) in instances(root, "WiFi.MultiAP.APDevice") {
            let Some(node_mac) = text(ap_dev, "MACAddress").as_deref().and_then(mac) else {
                continue;
            };
            for (_, radio) in instances(ap_dev, "Radio") {
                let band = text(radio, "OperatingFrequencyBand")
                    .as_deref()
                    .and_then(band_of);
                for (_, ap) in instances(radio, "AP") {
                    if text(ap, "X_TP_Type").as_deref() == Some("Backhaul")
                        && let Some(s) = text(ap, "SSID")
                    {
                        out.backhaul.push(s);
                    }
                    for (_, sta) in instances(ap, "AssociatedDevice") {
                        let Some(m) = text(sta, "MACAddress").as_deref().and_then(mac) else {
                            continue;
                        };
                        out.stations.insert(
                            m,
                            (
                                node_mac.clone(),
                                Link::Wifi,
                                band.clone(),
                                unsigned(sta, "SignalStrength").and_then(rcpi_dbm),
                                number(sta, "LastDataDownlinkRate")
                                    .filter(|r| *r > 0.0)
                                    .map(|kbps| kbps / 1000.0),
                            ),
                        );
                    }
                }
            }
            for (_, eth) in instances(ap_dev, "X_TP_Ethernet.AssociatedDevice") {
                let Some(m) = text(eth, "MACAddress").as_deref().and_then(mac) else {
                    continue;
                };
                out.stations.entry(m).or_insert((
                    node_mac.clone(),
                    Link::Ethernet,
                    None,
                    None,
                    number(eth, "LinkSpeed").filter(|r| *r > 0.0),
                ));
            }
            out.nodes.push(MeshNode {
                name: text(ap_dev, "X_TP_HostName").or_else(|| text(ap_dev, "Manufacturer")),
                model: text(ap_dev, "X_TP_ModelName").or_else(|| text(ap_dev, "ProductClass")),
                ip: address(text(ap_dev, "X_TP_IPAddress")),
                controller: boolean(ap_dev, "X_TP_IsController").unwrap_or(false),
                mac: node_mac,
            });
        }
        out
    }

    /// The radio an SSID sits on (`Device.WiFi.Radio.1`), from its `LowerLayers`.
    fn radio_of(ssid: &Value) -> Option<u32> {
        let lower = text(ssid, "LowerLayers")?;
        reference(&lower)
            .strip_prefix("Device.WiFi.Radio.")?
            .parse()
            .ok()
    }

    pub(super) fn radios(root: &Value, backhaul: &[String]) -> Vec<Radio> {
        // Clients per SSID, from the access points that point at it.
        let mut clients: HashMap<String, u64> = HashMap::new();
        for (_, ap) in instances(root, "WiFi.AccessPoint") {
            let Some(r) = text(ap, "SSIDReference") else {
                continue;
            };
            let n = unsigned(ap, "AssociatedDeviceNumberOfEntries")
                .unwrap_or_else(|| instances(ap, "AssociatedDevice").len() as u64);
            *clients.entry(reference(&r).to_owned()).or_default() += n;
        }
        let mut radios: Vec<(Option<u32>, Radio)> = instances(root, "WiFi.Radio")
            .into_iter()
            .map(|(i, r)| {
                let channel = unsigned(r, "Channel");
                (
                    Some(i),
                    Radio {
                        band: text(r, "OperatingFrequencyBand")
                            .as_deref()
                            .and_then(band_of)
                            .or_else(|| channel.and_then(band_of_channel)),
                        channel,
                        standards: text(r, "OperatingStandards"),
                        ssids: Vec::new(),
                    },
                )
            })
            .collect();
        for (i, s) in instances(root, "WiFi.SSID") {
            let name = text(s, "SSID");
            let ssid = Ssid {
                backhaul: name.as_ref().is_some_and(|n| backhaul.contains(n)),
                name,
                enabled: boolean(s, "Enable"),
                clients: clients.get(&format!("Device.WiFi.SSID.{i}")).copied(),
            };
            let on = radio_of(s);
            if let Some((_, r)) = radios.iter_mut().find(|(k, _)| on.is_some() && *k == on) {
                r.ssids.push(ssid);
            } else if let Some((_, r)) = radios.iter_mut().find(|(k, _)| k.is_none()) {
                r.ssids.push(ssid);
            } else {
                radios.push((
                    None,
                    Radio {
                        band: None,
                        channel: None,
                        standards: None,
                        ssids: vec![ssid],
                    },
                ));
            }
        }
        radios.into_iter().map(|(_, r)| r).collect()
    }

    pub(super) fn wan(root: &Value) -> Vec<Wan> {
        let mut out = Vec::new();
        // Each DHCP client's interface (`Device.IP.Interface.4`) and address, read once.
        let dhcp: Vec<(String, Option<String>)> = instances(root, "DHCPv4.Client")
            .into_iter()
            .filter_map(|(_, c)| {
                let iface = text(c, "Interface")?;
                Some((reference(&iface).to_owned(), address(text(c, "IPAddress"))))
            })
            .collect();
        for (i, ip) in instances(root, "IP.Interface") {
            let name = text(ip, "Name");
            let lower = text(ip, "LowerLayers").unwrap_or_default();
            let conn_type = text(ip, "X_TP_ConnType");
            let lan = conn_type.as_deref() == Some("LAN")
                || name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("br") || n == "lo")
                || lower.starts_with("Device.Bridging.")
                || text(ip, "Type").as_deref() == Some("Loopback");
            if lan {
                continue;
            }
            let ppp = reference(&lower)
                .strip_prefix("Device.PPP.Interface.")
                .and_then(|n| node(root, &format!("PPP.Interface.{n}")));
            let this = format!("Device.IP.Interface.{i}");
            let dhcp_ip = dhcp
                .iter()
                .find(|(iface, _)| *iface == this)
                .and_then(|(_, a)| a.clone());
            let ip_addr = instances(ip, "IPv4Address")
                .into_iter()
                .find_map(|(_, a)| address(text(a, "IPAddress")))
                .or_else(|| ppp.and_then(|p| address(text(p, "IPCP.LocalIPAddress"))))
                .or(dhcp_ip);
            let status = ppp
                .and_then(|p| text(p, "ConnectionStatus"))
                .or_else(|| text(ip, "Status"));
            out.push(Wan {
                name: text(ip, "X_TP_ConnName").or(name),
                kind: if ppp.is_some() {
                    WanKind::Ppp
                } else {
                    WanKind::Ip
                },
                mode: conn_type,
                service: text(ip, "X_TP_ServiceType").filter(|s| s != "Unknown"),
                ip: ip_addr,
                up: is_up(status.as_deref()),
                status,
            });
        }
        out
    }

    pub(super) fn optical(root: &Value) -> Option<Optical> {
        for (i, iface) in instances(root, "Optical.Interface") {
            if node(iface, "X_TP_GPON_Config").is_some() {
                let mut o = optical_at(
                    node(iface, "X_TP_GPON_Config")?,
                    format!("Device.Optical.Interface.{i}.X_TP_GPON_Config"),
                    "RXPower",
                    "TXPower",
                    OpticalUnit::TenthMicrowatt,
                );
                o.status = text(iface, "Status");
                return Some(o);
            }
            if value(iface, "OpticalSignalLevel").is_some() {
                return Some(optical_at(
                    iface,
                    format!("Device.Optical.Interface.{i}"),
                    "OpticalSignalLevel",
                    "TransmitOpticalLevel",
                    OpticalUnit::MilliDbm,
                ));
            }
        }
        None
    }

    pub(super) fn hosts(root: &Value, mesh: &Mesh) -> Vec<HostGroup> {
        // Stations on the gateway's own access points, with the band of their SSID's radio.
        let mut local: HashMap<String, Seen> = HashMap::new();
        for (_, ap) in instances(root, "WiFi.AccessPoint") {
            let band = text(ap, "SSIDReference").and_then(|r| {
                let ssid = node(root, reference(&r).strip_prefix("Device.")?)?;
                let radio = reference(&text(ssid, "LowerLayers")?)
                    .strip_prefix("Device.")?
                    .to_owned();
                text(node(root, &radio)?, "OperatingFrequencyBand")
                    .as_deref()
                    .and_then(band_of)
            });
            for (_, sta) in instances(ap, "AssociatedDevice") {
                let Some(m) = text(sta, "MACAddress").as_deref().and_then(mac) else {
                    continue;
                };
                local.insert(
                    m,
                    (
                        band.clone(),
                        integer(sta, "SignalStrength").filter(|s| *s < 0),
                        number(sta, "LastDataDownlinkRate")
                            .filter(|r| *r > 0.0)
                            .map(|kbps| kbps / 1000.0),
                    ),
                );
            }
        }
        let controller = mesh
            .nodes
            .iter()
            .find(|n| n.controller)
            .map(|n| n.mac.clone());
        let names: HashMap<String, Option<String>> = mesh
            .nodes
            .iter()
            .map(|n| (n.mac.clone(), n.name.clone()))
            .collect();
        let hosts = instances(root, "Hosts.Host")
            .into_iter()
            .map(|(_, h)| {
                let m = text(h, "PhysAddress").as_deref().and_then(mac);
                let kind = match text(h, "InterfaceType").as_deref() {
                    Some("Wi-Fi" | "802.11") => Link::Wifi,
                    Some("Ethernet") => Link::Ethernet,
                    _ => Link::Unknown,
                };
                let mut host = Host {
                    name: text(h, "HostName"),
                    ip: address(text(h, "IPAddress")),
                    active: boolean(h, "Active"),
                    link: kind,
                    band: None,
                    signal_dbm: None,
                    speed_mbps: None,
                    mac: m.clone(),
                };
                let mut on = None;
                if let Some((node_mac, link, band, signal, speed)) =
                    m.as_ref().and_then(|m| mesh.stations.get(m))
                {
                    host.link = *link;
                    host.band.clone_from(band);
                    host.signal_dbm = *signal;
                    host.speed_mbps = *speed;
                    // The controller is the gateway: its hosts are the gateway's.
                    if controller.as_ref() != Some(node_mac) {
                        on = Some(node_mac.clone());
                    }
                }
                if let Some((band, signal, speed)) = m.as_ref().and_then(|m| local.get(m)) {
                    host.link = Link::Wifi;
                    host.band = host.band.take().or_else(|| band.clone());
                    host.signal_dbm = host.signal_dbm.or(*signal);
                    host.speed_mbps = host.speed_mbps.or(*speed);
                }
                (on, host)
            })
            .collect();
        group(hosts, &names)
    }
}

mod tr098 {
    use super::*;

    pub(super) fn wan(root: &Value) -> Vec<Wan> {
        let mut out = Vec::new();
        for (_, dev) in instances(root, "WANDevice") {
            for (_, cd) in instances(dev, "WANConnectionDevice") {
                for (kind, obj) in [
                    (WanKind::Ip, "WANIPConnection"),
                    (WanKind::Ppp, "WANPPPConnection"),
                ] {
                    for (_, c) in instances(cd, obj) {
                        let status = text(c, "ConnectionStatus");
                        out.push(Wan {
                            name: text(c, "Name"),
                            kind,
                            mode: text(c, "ConnectionType"),
                            service: text(c, "X_HW_SERVICELIST"),
                            ip: address(text(c, "ExternalIPAddress")),
                            up: is_up(status.as_deref()),
                            status,
                        });
                    }
                }
            }
        }
        out
    }

    pub(super) fn optical(root: &Value) -> Option<Optical> {
        // (object below a WANDevice, unit), in the order vendors are common.
        const PER_WAN: [(&str, OpticalUnit); 4] = [
            ("X_GponInterafceConfig", OpticalUnit::Dbm),
            ("X_GponInterfaceConfig", OpticalUnit::Dbm),
            ("X_ZTE-COM_WANPONInterfaceConfig", OpticalUnit::Guessed),
            ("X_CT-COM_GponInterfaceConfig", OpticalUnit::TenthMicrowatt),
        ];
        for (i, dev) in instances(root, "WANDevice") {
            for (obj, unit) in PER_WAN {
                if let Some(o) = node(dev, obj) {
                    return Some(optical_at(
                        o,
                        format!("InternetGatewayDevice.WANDevice.{i}.{obj}"),
                        "RXPower",
                        "TXPower",
                        unit,
                    ));
                }
            }
        }
        node(root, "X_ALU_OntOpticalParam").map(|o| {
            optical_at(
                o,
                "InternetGatewayDevice.X_ALU_OntOpticalParam".into(),
                "RXPower",
                "TXPower",
                OpticalUnit::Dbm,
            )
        })
    }

    /// The band of a `WLANConfiguration`: said by the vendor, or read off the channel.
    fn band(w: &Value) -> Option<String> {
        text(w, "X_HW_RFBand")
            .or_else(|| text(w, "OperatingFrequencyBand"))
            .as_deref()
            .and_then(band_of)
            .or_else(|| unsigned(w, "Channel").and_then(band_of_channel))
    }

    pub(super) fn radios(root: &Value) -> Vec<Radio> {
        // TR-098 has no radio object: each WLANConfiguration is a network on a band.
        let mut radios: Vec<Radio> = Vec::new();
        for (_, lan) in instances(root, "LANDevice") {
            for (_, w) in instances(lan, "WLANConfiguration") {
                let band = band(w);
                let ssid = Ssid {
                    name: text(w, "SSID"),
                    enabled: boolean(w, "Enable"),
                    clients: unsigned(w, "TotalAssociations")
                        .or_else(|| Some(instances(w, "AssociatedDevice").len() as u64)),
                    backhaul: false,
                };
                match radios
                    .iter_mut()
                    .find(|r| r.band.is_some() && r.band == band)
                {
                    Some(r) => {
                        r.ssids.push(ssid);
                        if r.channel.is_none() {
                            r.channel = unsigned(w, "Channel");
                        }
                    }
                    None => radios.push(Radio {
                        band,
                        channel: unsigned(w, "Channel"),
                        standards: text(w, "Standard"),
                        ssids: vec![ssid],
                    }),
                }
            }
        }
        radios
    }

    pub(super) fn hosts(root: &Value) -> Vec<HostGroup> {
        let mut out = Vec::new();
        for (l, lan) in instances(root, "LANDevice") {
            // Stations per WLANConfiguration, with their band and signal where given.
            let mut stations: HashMap<String, Seen> = HashMap::new();
            let mut bands: HashMap<String, Option<String>> = HashMap::new();
            for (w, conf) in instances(lan, "WLANConfiguration") {
                let b = band(conf);
                bands.insert(
                    format!("InternetGatewayDevice.LANDevice.{l}.WLANConfiguration.{w}"),
                    b.clone(),
                );
                for (_, sta) in instances(conf, "AssociatedDevice") {
                    let Some(m) = text(sta, "AssociatedDeviceMACAddress")
                        .as_deref()
                        .and_then(mac)
                    else {
                        continue;
                    };
                    let signal = integer(sta, "X_HW_RSSI")
                        .or_else(|| integer(sta, "SignalStrength"))
                        .filter(|s| *s < 0);
                    let rate = number(sta, "LastDataDownlinkRate")
                        .map(|kbps| kbps / 1000.0)
                        .or_else(|| number(sta, "X_HW_TxRate"))
                        .filter(|r| *r > 0.0);
                    stations.insert(m, (b.clone(), signal, rate));
                }
            }
            for (_, h) in instances(lan, "Hosts.Host") {
                let m = text(h, "MACAddress").as_deref().and_then(mac);
                let layer2 = text(h, "Layer2Interface").map(|r| reference(&r).to_owned());
                let wifi_band = layer2.as_ref().and_then(|r| bands.get(r));
                let link = match (wifi_band, text(h, "InterfaceType").as_deref()) {
                    (Some(_), _) | (_, Some("802.11" | "Wi-Fi")) => Link::Wifi,
                    (_, Some("Ethernet")) => Link::Ethernet,
                    _ => Link::Unknown,
                };
                let station = m.as_ref().and_then(|m| stations.get(m));
                out.push((
                    None,
                    Host {
                        name: text(h, "HostName"),
                        ip: address(text(h, "IPAddress")),
                        active: boolean(h, "Active"),
                        link: if station.is_some() { Link::Wifi } else { link },
                        band: wifi_band
                            .cloned()
                            .flatten()
                            .or_else(|| station.and_then(|s| s.0.clone())),
                        signal_dbm: station.and_then(|s| s.1),
                        speed_mbps: station.and_then(|s| s.2),
                        mac: m,
                    },
                ));
            }
        }
        group(out, &HashMap::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tp_link_units_match_the_spec_readings() {
        // The XX230v's dump: RXPower 5624 is −2.50 dBm, TXPower 14880 is +1.73 dBm.
        assert_eq!(OpticalUnit::TenthMicrowatt.to_dbm(5624.0), Some(-2.5));
        assert_eq!(OpticalUnit::TenthMicrowatt.to_dbm(14880.0), Some(1.73));
        assert_eq!(OpticalUnit::TenthMicrowatt.to_dbm(0.0), None);
        assert_eq!(OpticalUnit::MilliDbm.to_dbm(-19_500.0), Some(-19.5));
        assert_eq!(OpticalUnit::Guessed.to_dbm(-21.3), Some(-21.3));
        assert_eq!(OpticalUnit::Guessed.to_dbm(100.0), Some(-20.0));
    }

    #[test]
    fn levels_follow_class_b_plus() {
        assert_eq!(rx_level(Some(-19.0)), Level::Ok);
        assert_eq!(rx_level(Some(-26.0)), Level::Warning);
        assert_eq!(rx_level(Some(-28.5)), Level::Critical);
        assert_eq!(rx_level(Some(-8.5)), Level::Warning);
        assert_eq!(rx_level(Some(-2.5)), Level::Critical);
        assert_eq!(rx_level(None), Level::NotReported);
        assert_eq!(tx_level(Some(2.0)), Level::Ok);
        assert_eq!(tx_level(Some(0.0)), Level::Warning);
        assert_eq!(tx_level(Some(-4.0)), Level::Critical);
    }

    #[test]
    fn an_unknown_vendor_gets_everything_standard_and_nothing_invented() {
        let leaf = |v: Value| serde_json::json!({"_object": false, "_value": v});
        let doc = serde_json::json!({
            "_id": "ABCDEF-Box-SN1",
            "_deviceId": {"_OUI": "ABCDEF", "_ProductClass": "Box", "_SerialNumber": "SN1"},
            "_lastInform": "2025-11-30T10:00:00.000Z",
            "Device": {
                "DeviceInfo": {"ModelName": leaf("Box 9".into()), "SoftwareVersion": leaf("1.2".into())},
                "ManagementServer": {"PeriodicInformInterval": leaf(300.into())},
                "Optical": {"Interface": {"1": {"OpticalSignalLevel": leaf((-19_250).into()),
                    "TransmitOpticalLevel": leaf(2_100.into()), "Status": leaf("Up".into())}}},
                "WiFi": {"Radio": {"1": {"OperatingFrequencyBand": leaf("5GHz".into()), "Channel": leaf(36.into())}},
                    "SSID": {"1": {"SSID": leaf("Home".into()), "LowerLayers": leaf("Device.WiFi.Radio.1.".into())}},
                    "AccessPoint": {"1": {"SSIDReference": leaf("Device.WiFi.SSID.1.".into()),
                        "AssociatedDevice": {"1": {"MACAddress": leaf("aa:bb:cc:dd:ee:01".into()),
                            "SignalStrength": leaf((-61).into())}}}}},
                "Hosts": {"Host": {"1": {"PhysAddress": leaf("AA:BB:CC:DD:EE:01".into()),
                    "HostName": leaf("phone".into()), "Active": leaf(true.into())}}}
            }
        });
        let s = summarize(
            &doc,
            jiff::Timestamp::from_second(1_764_497_100)
                .unwrap()
                .as_millisecond(),
        )
        .unwrap();
        assert_eq!(s.identity.model.as_deref(), Some("Box 9"));
        assert_eq!(s.identity.manufacturer, None, "not reported, not invented");
        assert_eq!(s.identity.serial.as_deref(), Some("SN1"));
        assert_eq!(s.uptime_s, None);
        assert_eq!(s.last_inform_age_s, Some(300));
        assert_eq!(s.recently_seen, Some(true));
        let o = s.optical.unwrap();
        assert_eq!((o.rx_dbm, o.tx_dbm), (Some(-19.25), Some(2.1)));
        assert_eq!((o.rx_level, o.tx_level), (Level::Ok, Level::Ok));
        assert_eq!(s.radios.len(), 1);
        assert_eq!(s.radios[0].ssids[0].clients, Some(1));
        let host = &s.hosts[0].hosts[0];
        assert_eq!(host.band.as_deref(), Some("5GHz"));
        assert_eq!(host.signal_dbm, Some(-61));
        assert_eq!(host.link, Link::Wifi);
        assert!(s.wan.is_empty());
    }

    #[test]
    fn not_a_device_is_said() {
        assert_eq!(
            summarize(&serde_json::json!({"x": 1}), 0),
            Err(SummaryError::NoId)
        );
        assert_eq!(
            summarize(&serde_json::json!({"_id": "x"}), 0),
            Err(SummaryError::NoDataModel)
        );
    }
}
