//! GenieACS: the summary of each real device document, checked value by value against the raw
//! parameters, and the contract the NBI client holds to, run against the double on every test
//! run and against a real GenieACS when `FSM_TEST_GENIEACS_URL` (and
//! `FSM_TEST_GENIEACS_SERIAL`, a box it knows) name one.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sync_server::SystemClock;
use sync_server::doubles::genieacs::{Behaviour, GenieAcsDouble, dumps};
use sync_server::hub::acs::summary::{DataModel, Level, Link, summarize};
use sync_server::hub::acs::{self, Acs, AcsError, GenieAcsClient, SUMMARY_PROJECTION, TaskOutcome};

/// A raw parameter's `_value`, read without the summary's helpers.
fn raw<'a>(doc: &'a Value, path: &str) -> &'a Value {
    let mut at = doc;
    for k in path.split('.') {
        at = &at[k];
    }
    &at["_value"]
}

fn s(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

fn dump(name: &str) -> Value {
    dumps().into_iter().find(|(n, _)| *n == name).unwrap().1
}

/// 2025-11-30T00:00:00Z, long after every dump's last inform.
const NOW_MS: i64 = 1_764_460_800_000;

fn age(doc: &Value) -> i64 {
    let t: jiff::Timestamp = doc["_lastInform"].as_str().unwrap().parse().unwrap();
    (NOW_MS - t.as_millisecond()) / 1000
}

#[test]
fn the_tp_link_xx230v_is_read_value_by_value() {
    let doc = dump("XX230v");
    let s_ = summarize(&doc, NOW_MS).unwrap();
    let d = |p: &str| raw(&doc, &format!("Device.{p}"));
    assert_eq!(s_.device_id, "1C61B4-Device2-22275A7000395");
    assert_eq!(s_.data_model, DataModel::Tr181);
    assert_eq!(s_.identity.manufacturer, s(d("DeviceInfo.Manufacturer")));
    assert_eq!(s_.identity.model, s(d("DeviceInfo.ModelName")));
    assert_eq!(s_.identity.serial, s(d("DeviceInfo.SerialNumber")));
    assert_eq!(s_.identity.firmware, s(d("DeviceInfo.SoftwareVersion")));
    assert_eq!(s_.identity.hardware, s(d("DeviceInfo.HardwareVersion")));
    assert_eq!(s_.uptime_s, d("DeviceInfo.UpTime").as_u64());
    assert_eq!(
        s_.inform_interval_s,
        d("ManagementServer.PeriodicInformInterval").as_u64()
    );
    assert_eq!(s_.last_inform.as_deref(), doc["_lastInform"].as_str());
    assert_eq!(s_.last_inform_age_s, Some(age(&doc)));
    assert_eq!(s_.recently_seen, Some(false), "seen in 2023");
    // Optical: tenths of a microwatt (5624 → −2.50 dBm, 14880 → +1.73 dBm).
    let o = s_.optical.as_ref().unwrap();
    let rx = d("Optical.Interface.1.X_TP_GPON_Config.RXPower")
        .as_f64()
        .unwrap();
    let tx = d("Optical.Interface.1.X_TP_GPON_Config.TXPower")
        .as_f64()
        .unwrap();
    assert_eq!(
        o.rx_dbm,
        Some(((10.0 * (rx * 0.0001).log10()) * 100.0).round() / 100.0)
    );
    assert_eq!(
        o.tx_dbm,
        Some(((10.0 * (tx * 0.0001).log10()) * 100.0).round() / 100.0)
    );
    assert_eq!((o.rx_dbm, o.tx_dbm), (Some(-2.5), Some(1.73)));
    assert_eq!(
        o.rx_level,
        Level::Critical,
        "−2.5 dBm overloads a class B+ receiver"
    );
    assert_eq!(o.tx_level, Level::Ok);
    assert_eq!(o.status, s(d("Optical.Interface.1.Status")));
    // WAN: the PPPoE interface (IP.Interface.6 over PPP.Interface.3) is up with its address.
    let up: Vec<_> = s_.wan.iter().filter(|w| w.up).collect();
    assert_eq!(up.len(), 1, "{:?}", s_.wan);
    assert_eq!(up[0].ip, s(d("PPP.Interface.3.IPCP.LocalIPAddress")));
    assert_eq!(up[0].mode, s(d("IP.Interface.6.X_TP_ConnType")));
    assert_eq!(up[0].status, s(d("PPP.Interface.3.ConnectionStatus")));
    assert!(
        s_.wan.iter().all(|w| w.mode.as_deref() != Some("LAN")),
        "the bridge is not a WAN"
    );
    // Wi-Fi: two radios; SSID 1 on the 2.4 GHz one, SSID 3 (one client) on the 5 GHz one.
    assert_eq!(s_.radios.len(), 2);
    assert_eq!(s_.radios[0].band.as_deref(), Some("2.4GHz"));
    assert_eq!(s_.radios[0].channel, d("WiFi.Radio.1.Channel").as_u64());
    assert_eq!(s_.radios[1].band.as_deref(), Some("5GHz"));
    let ssid3 = s_.radios[1]
        .ssids
        .iter()
        .find(|x| x.name == s(d("WiFi.SSID.3.SSID")))
        .unwrap();
    assert_eq!(
        ssid3.clients,
        d("WiFi.AccessPoint.3.AssociatedDeviceNumberOfEntries").as_u64()
    );
    assert_eq!(ssid3.enabled, d("WiFi.SSID.3.Enable").as_bool());
    let total_ssids: usize = s_.radios.iter().map(|r| r.ssids.len()).sum();
    let raw_ssids = doc["Device"]["WiFi"]["SSID"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.parse::<u32>().is_ok())
        .count();
    assert_eq!(total_ssids, raw_ssids);
    // Backhaul networks are the MultiAP APs of type Backhaul.
    let backhaul = s(raw(
        &doc,
        "Device.WiFi.MultiAP.APDevice.1.Radio.1.AP.1.SSID",
    ));
    assert!(
        s_.radios
            .iter()
            .flat_map(|r| &r.ssids)
            .any(|x| x.name == backhaul && x.backhaul)
    );
    // Mesh: the gateway is the controller.
    assert_eq!(s_.mesh.len(), 1);
    assert_eq!(
        Some(s_.mesh[0].mac.clone()),
        s(raw(&doc, "Device.WiFi.MultiAP.APDevice.1.MACAddress"))
    );
    assert!(s_.mesh[0].controller);
    // Hosts: one, on the gateway, on 5 GHz as the MultiAP association says, at 960 Mbit/s.
    assert_eq!(s_.host_count, 1);
    assert_eq!(s_.hosts[0].node, None);
    let h = &s_.hosts[0].hosts[0];
    assert_eq!(h.name, s(d("Hosts.Host.1.HostName")));
    assert_eq!(h.ip, s(d("Hosts.Host.1.IPAddress")));
    assert_eq!(h.mac, s(d("Hosts.Host.1.PhysAddress")));
    assert_eq!(h.active, d("Hosts.Host.1.Active").as_bool());
    assert_eq!(h.link, Link::Wifi);
    assert_eq!(h.band.as_deref(), Some("5GHz"));
    let rate = raw(
        &doc,
        "Device.WiFi.MultiAP.APDevice.1.Radio.2.AP.2.AssociatedDevice.1.LastDataDownlinkRate",
    );
    assert_eq!(h.speed_mbps, Some(rate.as_f64().unwrap() / 1000.0));
    // RCPI 100 → −60 dBm.
    assert_eq!(h.signal_dbm, Some(-60));
}

#[test]
fn the_tp_link_ex220_is_read_value_by_value() {
    let doc = dump("EX220");
    let s_ = summarize(&doc, NOW_MS).unwrap();
    let d = |p: &str| raw(&doc, &format!("Device.{p}"));
    assert_eq!(s_.identity.model, s(d("DeviceInfo.ModelName")));
    assert_eq!(s_.uptime_s, d("DeviceInfo.UpTime").as_u64());
    assert_eq!(s_.optical, None, "a router without optics reports none");
    // WAN: DHCP on IP.Interface.4, its address from the DHCP client that points at it.
    let up: Vec<_> = s_.wan.iter().filter(|w| w.up).collect();
    assert_eq!(up.len(), 1, "{:?}", s_.wan);
    assert_eq!(up[0].ip, s(d("DHCPv4.Client.2.IPAddress")));
    assert_eq!(up[0].mode.as_deref(), Some("DHCP"));
    assert_eq!(up[0].service.as_deref(), Some("Internet"));
    // Hosts: three; two on Wi-Fi with the signal of the access point that has them.
    assert_eq!(s_.host_count, 3);
    let hosts = &s_.hosts[0].hosts;
    let mac1 = s(d("WiFi.AccessPoint.1.AssociatedDevice.1.MACAddress"))
        .unwrap()
        .to_uppercase();
    let h1 = hosts
        .iter()
        .find(|h| h.mac.as_deref() == Some(mac1.as_str()))
        .unwrap();
    assert_eq!(h1.link, Link::Wifi);
    assert_eq!(h1.band.as_deref(), Some("2.4GHz"));
    let h3 = hosts
        .iter()
        .find(|h| h.name.is_some() && h.link == Link::Ethernet)
        .unwrap();
    assert_eq!(h3.mac, s(d("Hosts.Host.3.PhysAddress")));
    assert_eq!(h3.active, Some(false));
}

#[test]
fn the_huawei_eg8145v5_is_read_value_by_value() {
    let doc = dump("EG8145V5");
    let s_ = summarize(&doc, NOW_MS).unwrap();
    let d = |p: &str| raw(&doc, &format!("InternetGatewayDevice.{p}"));
    assert_eq!(s_.data_model, DataModel::Tr098);
    assert_eq!(s_.identity.serial, s(d("DeviceInfo.SerialNumber")));
    assert_eq!(s_.identity.firmware, s(d("DeviceInfo.SoftwareVersion")));
    assert_eq!(s_.uptime_s, d("DeviceInfo.UpTime").as_u64());
    // Optical: Huawei's misspelt object, already in dBm.
    let o = s_.optical.as_ref().unwrap();
    let base = "WANDevice.1.X_GponInterafceConfig";
    assert_eq!(o.rx_dbm, d(&format!("{base}.RXPower")).as_f64());
    assert_eq!(o.tx_dbm, d(&format!("{base}.TXPower")).as_f64());
    assert_eq!(o.status, s(d(&format!("{base}.Status"))));
    assert_eq!(o.source, format!("InternetGatewayDevice.{base}"));
    // WAN: four connections, two up, each with the address the box gives.
    assert_eq!(s_.wan.len(), 4);
    let tr069 = s_
        .wan
        .iter()
        .find(|w| w.name.as_deref() == Some("4_TR069_INTERNET_R_VID_1"))
        .unwrap();
    assert!(tr069.up);
    assert_eq!(
        tr069.ip,
        s(d(
            "WANDevice.1.WANConnectionDevice.4.WANPPPConnection.1.ExternalIPAddress"
        ))
    );
    let down = s_
        .wan
        .iter()
        .find(|w| w.name.as_deref() == Some("1_INTERNET_R_VID_1"))
        .unwrap();
    assert!(!down.up);
    assert_eq!(down.ip, None, "0.0.0.0 is no address");
    // Wi-Fi: WLANConfiguration 1 (2.4 GHz) and 5 (5 GHz).
    let bands: Vec<_> = s_.radios.iter().map(|r| r.band.clone().unwrap()).collect();
    assert_eq!(bands, ["2.4GHz", "5GHz"]);
    assert_eq!(
        s_.radios[1].ssids[0].name,
        s(d("LANDevice.1.WLANConfiguration.5.SSID"))
    );
    assert_eq!(
        s_.radios[1].channel,
        d("LANDevice.1.WLANConfiguration.5.Channel").as_u64()
    );
    assert_eq!(s_.host_count, 0);
    assert!(s_.mesh.is_empty());
}

#[test]
fn the_huawei_bm632w_is_read_value_by_value() {
    let doc = dump("BM632w");
    let s_ = summarize(&doc, NOW_MS).unwrap();
    let d = |p: &str| raw(&doc, &format!("InternetGatewayDevice.{p}"));
    // It reports "0" as its serial: GenieACS's is used.
    assert_eq!(d("DeviceInfo.SerialNumber"), "0");
    assert_eq!(
        s_.identity.serial.as_deref(),
        doc["_deviceId"]["_SerialNumber"].as_str()
    );
    assert_eq!(s_.last_inform, None, "an old export without inform times");
    assert_eq!(s_.recently_seen, None);
    assert_eq!(s_.optical, None);
    let wan = &s_.wan[0];
    assert_eq!(
        wan.ip,
        s(d(
            "WANDevice.1.WANConnectionDevice.1.WANIPConnection.1.ExternalIPAddress"
        ))
    );
    assert_eq!(wan.mode.as_deref(), Some("IP_Routed"));
    // Six hosts on WLANConfiguration 1, three of them associated now.
    assert_eq!(
        s_.host_count,
        d("LANDevice.1.Hosts.HostNumberOfEntries").as_u64().unwrap() as usize
    );
    assert_eq!(
        s_.radios[0].ssids[0].clients,
        d("LANDevice.1.WLANConfiguration.1.TotalAssociations").as_u64()
    );
    let first = &s_.hosts[0].hosts[0];
    assert_eq!(first.mac, s(d("LANDevice.1.Hosts.Host.1.MACAddress")));
    assert_eq!(first.link, Link::Wifi);
    assert_eq!(first.band.as_deref(), Some("2.4GHz"));
}

// ---- The NBI contract -------------------------------------------------------------------

/// A GenieACS to hold the client to: the double, or a real one named by the environment.
struct Peer {
    url: String,
    /// A box it knows, by serial.
    serial: String,
    double: Option<GenieAcsDouble>,
    _rt: Option<tokio::runtime::Runtime>,
}

fn double_peer() -> Peer {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let double = GenieAcsDouble::new(Arc::new(SystemClock));
    for (_, doc) in dumps() {
        double.add(doc);
    }
    let url = rt.block_on(double.start()).unwrap();
    Peer {
        url,
        serial: "22275A7000395".into(),
        double: Some(double),
        _rt: Some(rt),
    }
}

#[allow(clippy::disallowed_methods, clippy::print_stderr)] // the contract's target is named by the environment; the skip is said
fn peers() -> Vec<Peer> {
    let mut out = vec![double_peer()];
    match (
        std::env::var("FSM_TEST_GENIEACS_URL"),
        std::env::var("FSM_TEST_GENIEACS_SERIAL"),
    ) {
        (Ok(url), Ok(serial)) => out.push(Peer {
            url,
            serial,
            double: None,
            _rt: None,
        }),
        _ => eprintln!(
            "GenieACS contract: the double only (set FSM_TEST_GENIEACS_URL and FSM_TEST_GENIEACS_SERIAL to run it against a real GenieACS too)"
        ),
    }
    out
}

fn client(url: &str) -> GenieAcsClient {
    GenieAcsClient::new(url, Duration::from_secs(10), Duration::from_millis(500)).unwrap()
}

#[test]
fn the_client_holds_to_the_nbi() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for peer in peers() {
        let c = client(&peer.url);
        rt.block_on(async {
            // By serial, with only what a summary reads.
            let doc = acs::find(&c, Some(&peer.serial), None)
                .await
                .unwrap()
                .unwrap();
            let id = doc["_id"].as_str().unwrap().to_owned();
            assert!(id.ends_with(&acs::device_id_part(&peer.serial)), "{id}");
            let root = doc
                .get("Device")
                .or_else(|| doc.get("InternetGatewayDevice"))
                .unwrap();
            assert!(root.get("DeviceInfo").is_some());
            assert!(
                root.get("Ethernet").is_none() && root.get("Users").is_none(),
                "projected"
            );
            summarize(&doc, NOW_MS).unwrap();
            // Paging: `total` counts before skip and limit.
            let all = c
                .query("devices", &json!({}), &["_id"], 0, 1)
                .await
                .unwrap();
            assert_eq!(all.items.len(), 1);
            assert!(all.total >= 1);
            let rest = c
                .query("devices", &json!({}), &["_id"], 1, 0)
                .await
                .unwrap();
            assert_eq!(rest.total, all.total);
            assert_eq!(rest.items.len() as u64, all.total - 1);
            // Nothing found is an empty answer, not an error.
            assert_eq!(
                acs::find(&c, Some("NO-SUCH-SERIAL-42"), None)
                    .await
                    .unwrap(),
                None
            );
            // A box that does not exist has no tasks.
            assert_eq!(
                c.poke("000000-Nothing-0").await,
                Err(AcsError::NoSuchDevice("000000-Nothing-0".into()))
            );
        });
        // Answers GenieACS gives to a bad request, as the NBI writes them.
        let http = reqwest::blocking::Client::new();
        let bad = http
            .get(format!("{}/devices/?query=%7Bnope", peer.url))
            .send()
            .unwrap();
        assert_eq!(bad.status().as_u16(), 400);
        assert!(bad.text().unwrap().starts_with("SyntaxError"));
        let unknown = http.get(format!("{}/nothing/", peer.url)).send().unwrap();
        assert_eq!(unknown.status().as_u16(), 404);
        let post = http.post(format!("{}/devices/", peer.url)).send().unwrap();
        assert_eq!(post.status().as_u16(), 405);
        assert_eq!(post.headers()["allow"], "GET, HEAD");
        let head = http.head(format!("{}/devices/", peer.url)).send().unwrap();
        assert!(head.headers().contains_key("total"));
        assert!(head.headers().contains_key("genieacs-version"));
    }
}

#[test]
fn lookups_fall_back_to_the_serial_in_the_id_then_to_the_mac() {
    let peer = double_peer();
    let double = peer.double.as_ref().unwrap();
    // A box whose `_deviceId` lost its serial: found by the serial inside its id.
    let mut odd = dump("XX230v");
    odd["_id"] = json!("AABBCC-G%2D1425G%2DA-ALCL%2DFC265D6F");
    odd["_deviceId"] = json!({"_OUI": "AABBCC", "_ProductClass": "G-1425G-A"});
    double.add(odd);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = client(&peer.url);
    rt.block_on(async {
        let by_id = acs::find(&c, Some("ALCL-FC265D6F"), None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(by_id["_id"], "AABBCC-G%2D1425G%2DA-ALCL%2DFC265D6F");
        // The EG8145V5 by its WAN MAC, written in lower case.
        let by_mac = acs::find(&c, Some("UNKNOWN-SERIAL"), Some("94:25:33:3b:d1:c3"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(by_mac["_id"], "00259E-EG8145V5-48575443A94196A5");
        // The BM632w by its WAN IP connection's MAC.
        let bm = acs::find(&c, None, Some("20:2B:C1:E0:06:65"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(bm["_id"], "202BC1-BM632w-8KA8WA1151100043");
    });
    // Every lookup asked for the summary's branches only.
    let asked = double.projections();
    assert!(!asked.is_empty());
    for p in asked {
        let p = p.unwrap();
        assert_eq!(
            p,
            SUMMARY_PROJECTION
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn tasks_say_done_queued_faulted_or_unreachable() {
    let peer = double_peer();
    let double = peer.double.as_ref().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = client(&peer.url);
    let id = "1C61B4-Device2-22275A7000395";
    let refresh = acs::Action::RefreshHosts.task(DataModel::Tr181);
    assert_eq!(
        refresh,
        json!({"name": "refreshObject", "objectName": "Device.Hosts.Host"})
    );
    rt.block_on(async {
        // Online: the box runs it in the session the connection request starts.
        assert!(matches!(
            c.task(id, &refresh).await.unwrap(),
            TaskOutcome::Done { task: Some(_) }
        ));
        assert_eq!(c.poke(id).await.unwrap(), TaskOutcome::Done { task: None });
        // Slow: GenieACS keeps it for the box's next call.
        double.set_behaviour(id, Behaviour::Slow);
        let TaskOutcome::Queued { task: Some(t) } = c.task(id, &refresh).await.unwrap() else {
            panic!("not queued");
        };
        let queued = c
            .query("tasks", &json!({"device": id}), &[], 0, 0)
            .await
            .unwrap();
        assert_eq!(queued.total, 1);
        assert_eq!(queued.items[0]["_id"], t.as_str());
        assert_eq!(queued.items[0]["objectName"], "Device.Hosts.Host");
        // Faulty: the fault as GenieACS stores it.
        double.set_behaviour(id, Behaviour::Faulty);
        let TaskOutcome::Faulted { fault, .. } = c.task(id, &refresh).await.unwrap() else {
            panic!("not faulted");
        };
        assert_eq!(fault.as_deref(), Some("Internal error"));
        // Offline: a bare connection request fails with 504.
        double.set_behaviour(id, Behaviour::Offline);
        let TaskOutcome::Unreachable { message } = c.poke(id).await.unwrap() else {
            panic!("reachable?");
        };
        assert_eq!(message, "Device is offline");
    });
    // The double's reboot resets uptime, as a real box's next inform would show.
    double.set_behaviour(id, Behaviour::Online);
    rt.block_on(async {
        let devices = acs::Devices::open(
            &tempfile::tempdir().unwrap().keep().join("hub.sqlite3"),
            Arc::new(client(&peer.url)),
        )
        .unwrap();
        let before = devices
            .read("eq", Some("22275A7000395"), None, NOW_MS)
            .await
            .unwrap();
        assert_eq!(before.summary.uptime_s, Some(15687));
        let done = devices
            .act(id, DataModel::Tr181, acs::Action::Reboot)
            .await
            .unwrap();
        assert!(matches!(done, TaskOutcome::Done { .. }));
        let after = devices
            .read("eq", Some("22275A7000395"), None, NOW_MS)
            .await
            .unwrap();
        assert_eq!(after.summary.uptime_s, Some(0));
        // Offline, a reboot is not queued to fire hours later.
        double.set_behaviour(id, Behaviour::Offline);
        let refused = devices
            .act(id, DataModel::Tr181, acs::Action::Reboot)
            .await
            .unwrap();
        assert!(matches!(refused, TaskOutcome::Unreachable { .. }));
        assert!(double.queued(id).iter().all(|t| t["name"] != "reboot"));
    });
}

#[test]
fn the_last_summary_is_kept_for_when_genieacs_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let acs_rt = tokio::runtime::Runtime::new().unwrap();
    let double = GenieAcsDouble::new(Arc::new(SystemClock));
    double.add(dump("EG8145V5"));
    let url = acs_rt.block_on(double.start()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let devices =
        acs::Devices::open(&dir.path().join("hub.sqlite3"), Arc::new(client(&url))).unwrap();
    rt.block_on(async {
        // Never read and GenieACS down: said plainly.
        let live = devices
            .read("eq-1", Some("48575443A94196A5"), None, NOW_MS)
            .await
            .unwrap();
        assert_eq!(live.source, acs::Source::Live);
        acs_rt.shutdown_background();
        let later = NOW_MS + 90_000;
        let kept = devices
            .read("eq-1", Some("48575443A94196A5"), None, later)
            .await
            .unwrap();
        assert_eq!(kept.source, acs::Source::Snapshot);
        assert_eq!(kept.age_s, 90);
        assert_eq!(kept.summary.identity, live.summary.identity);
        assert_eq!(
            kept.summary.last_inform_age_s,
            live.summary.last_inform_age_s.map(|a| a + 90)
        );
        assert!(kept.error.unwrap().contains("cannot be reached"));
        let never = devices.read("eq-2", Some("X"), None, later).await;
        assert!(matches!(
            never,
            Err(acs::DeviceError::Acs(AcsError::Unreachable(_)))
        ));
    });
}

#[test]
fn the_projection_fetches_everything_a_summary_reads() {
    // Each box found through the NBI (projected) summarizes exactly as its full document does.
    let peer = double_peer();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = client(&peer.url);
    for (name, full) in dumps() {
        let serial = full["_deviceId"]["_SerialNumber"]
            .as_str()
            .unwrap()
            .to_owned();
        let projected = rt
            .block_on(acs::find(&c, Some(&serial), None))
            .unwrap()
            .unwrap();
        assert!(
            projected.to_string().len() < full.to_string().len(),
            "{name}: projected"
        );
        assert_eq!(
            summarize(&projected, NOW_MS).unwrap(),
            summarize(&full, NOW_MS).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn hosts_on_a_satellite_are_grouped_under_it() {
    // The XX230v with a second mesh node, and its one client moved onto that node.
    let mut doc = dump("XX230v");
    let mesh = &mut doc["Device"]["WiFi"]["MultiAP"]["APDevice"];
    let mut satellite = mesh["1"].clone();
    let leaf = |v: Value| json!({"_object": false, "_value": v});
    satellite["MACAddress"] = leaf(json!("1C:61:B4:00:00:01"));
    satellite["X_TP_HostName"] = leaf(json!("Deco étage"));
    satellite["X_TP_IsController"] = leaf(json!(false));
    mesh["2"] = satellite;
    // On the controller, the station is gone; it stays on the satellite's radio 2, AP 2.
    mesh["1"]["Radio"]["2"]["AP"]["2"]["AssociatedDevice"] = json!({"_object": true});
    let s_ = summarize(&doc, NOW_MS).unwrap();
    assert_eq!(s_.mesh.len(), 2);
    assert_eq!(s_.hosts.len(), 1);
    let g = &s_.hosts[0];
    assert_eq!(g.node.as_deref(), Some("1C:61:B4:00:00:01"));
    assert_eq!(g.node_name.as_deref(), Some("Deco étage"));
    assert_eq!(g.hosts[0].name.as_deref(), Some("MBP-de-Gaspare"));
    assert_eq!(g.hosts[0].band.as_deref(), Some("5GHz"));
}
