//! Customers' boxes through the real server binary and a GenieACS double with a box behind each
//! of the demo's installed ONTs and routers: who may see and act on which box, what a reboot
//! asks and answers, and the audit log of every action.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[path = "support/demo_server.rs"]
#[allow(dead_code)] // shared by several test binaries; this one needs only the server and tokens
mod support;

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};
use shared::clock::Clock as _;
use shared::ids::{DeviceId, DocId, Role};
use shared::model::{AnyEntity, EquipmentType};
use support::{spawn_demo_with, token};
use sync_server::doubles::genieacs::{Behaviour, GenieAcsDouble, dumps};
use sync_server::{SystemClock, demo};

/// An installed box: equipment id, serial, the double's device id.
#[derive(Debug, Clone)]
struct Unit {
    equipment: DocId,
    serial: String,
    device: String,
}

/// The demo's installed ONTs on the first technician's jobs of today, and ONTs at customers
/// that technician never visits; each with a box in the double.
fn world(double: &GenieAcsDouble) -> (Vec<Unit>, Vec<Unit>) {
    let today = SystemClock.now().date();
    let data = demo::generate(demo::DEMO_SEED, demo::DEMO_SPEC, today);
    let tech = data.technicians[0];
    let mut mine_locations = HashSet::new();
    let mut visited_customers = HashSet::new();
    let mut today_locations = HashSet::new();
    for e in &data.entities {
        if let AnyEntity::Job(j) = e
            && (j.technician == Some(tech) || j.assistants.contains(&tech))
        {
            mine_locations.insert(j.location);
            visited_customers.insert(j.customer);
            if j.date == today && j.technician == Some(tech) {
                today_locations.insert(j.location);
            }
        }
    }
    let foreign_locations: HashSet<_> = data
        .entities
        .iter()
        .filter_map(|e| match e {
            AnyEntity::Location(l)
                if !visited_customers.contains(&l.customer) && !mine_locations.contains(&l.id) =>
            {
                Some(l.id)
            }
            _ => None,
        })
        .collect();
    let template = Arc::new(dumps().into_iter().find(|(n, _)| *n == "XX230v").unwrap().1);
    let (mut mine, mut foreign) = (Vec::new(), Vec::new());
    for e in &data.entities {
        let AnyEntity::Equipment(q) = e else { continue };
        let Some(loc) = q.location else { continue };
        if q.kind != EquipmentType::Ont {
            continue;
        }
        let unit = |device| Unit {
            equipment: q.id.0,
            serial: q.serial.as_str().to_owned(),
            device,
        };
        if today_locations.contains(&loc) {
            mine.push(unit(double.add_as(&template, q.serial.as_str(), None)));
        } else if foreign_locations.contains(&loc) && foreign.len() < 3 {
            foreign.push(unit(double.add_as(&template, q.serial.as_str(), None)));
        }
    }
    assert!(
        !mine.is_empty(),
        "the first technician has an ONT on today's jobs"
    );
    assert!(!foreign.is_empty());
    (mine, foreign)
}

struct Site {
    server: Option<support::Server>,
    _dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
    double: GenieAcsDouble,
    base: String,
    http: reqwest::blocking::Client,
    mine: Vec<Unit>,
    foreign: Vec<Unit>,
}

fn site() -> Site {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let double = GenieAcsDouble::new(Arc::new(SystemClock));
    let (mine, foreign) = world(&double);
    let url = rt.block_on(double.start()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = spawn_demo_with(
        dir.path(),
        None,
        &[],
        &[
            ("APP_GENIEACS__URL", url.as_str()),
            ("APP_GENIEACS__CONNECTION_REQUEST_MS", "300"),
        ],
    );
    sync_server::tls::install_crypto();
    Site {
        server: Some(server),
        _dir: dir,
        _rt: rt,
        double,
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::blocking::Client::new(),
        mine,
        foreign,
    }
}

const TECH: DeviceId = DeviceId(DocId::from_u128(0x7ec1));
const DISPATCHER: DeviceId = DeviceId(DocId::from_u128(0xd15a));
const ADMIN: DeviceId = DeviceId(DocId::from_u128(0xad31));

impl Site {
    fn get(&self, role: Role, device: DeviceId, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token(role, device))
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }

    fn post(&self, role: Role, device: DeviceId, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token(role, device));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().unwrap();
        (r.status().as_u16(), r.json().unwrap_or(Value::Null))
    }

    fn device_actions(&self) -> Vec<Value> {
        let (status, log) = self.get(Role::Admin, ADMIN, "/api/v1/audit");
        assert_eq!(status, 200, "{log}");
        let entries = log
            .get("entries")
            .unwrap_or(&log)
            .as_array()
            .unwrap()
            .clone();
        entries
            .into_iter()
            .filter(|e| e["event"] == "device_action")
            .collect()
    }
}

#[test]
fn a_technician_sees_only_the_boxes_of_their_jobs_and_the_office_sees_all() {
    let s = site();
    let mine = &s.mine[0];
    let foreign = &s.foreign[0];
    let path = |u: &Unit| format!("/api/v1/equipment/{}/device", u.equipment);
    // The office: any box, live, summarized from the document GenieACS has.
    let (status, reading) = s.get(Role::Dispatcher, DISPATCHER, &path(foreign));
    assert_eq!(status, 200, "{reading}");
    assert_eq!(reading["source"], "live");
    assert_eq!(reading["summary"]["device_id"], foreign.device.as_str());
    assert_eq!(
        reading["summary"]["identity"]["serial"],
        foreign.serial.as_str()
    );
    assert_eq!(reading["summary"]["optical"]["rx_dbm"], -2.5);
    assert_eq!(reading["summary"]["recently_seen"], true);
    // The technician: the box on today's job, not one at a customer they never visit.
    let (status, reading) = s.get(Role::Technician, TECH, &path(mine));
    assert_eq!(status, 200, "{reading}");
    assert_eq!(
        reading["summary"]["identity"]["serial"],
        mine.serial.as_str()
    );
    let (status, refused) = s.get(Role::Technician, TECH, &path(foreign));
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["code"], "not_your_equipment");
    // Nor may they reboot it, confirmed or not; the attempt is in the audit log.
    let reboot = format!("{}/reboot", path(foreign));
    let (status, _) = s.post(
        Role::Technician,
        TECH,
        &reboot,
        Some(json!({"confirm": true})),
    );
    assert_eq!(status, 403);
    assert!(s.double.queued(&foreign.device).is_empty());
    let log = s.device_actions();
    assert!(
        log.iter()
            .any(|e| e["equipment"] == foreign.equipment.to_string()
                && e["outcome"] == "refused"
                && e["role"] == "Technician"),
        "{log:?}"
    );
    // Equipment that does not exist, and a box GenieACS does not know.
    let (status, body) = s.get(
        Role::Dispatcher,
        DISPATCHER,
        &format!("/api/v1/equipment/{}/device", DocId::from_u128(42)),
    );
    assert_eq!((status, body["code"].as_str()), (404, Some("no_equipment")));
}

#[test]
fn a_reboot_is_confirmed_and_every_action_says_what_happened() {
    let s = site();
    let unit = &s.mine[0];
    let at = |what: &str| format!("/api/v1/equipment/{}/device/{what}", unit.equipment);
    // Unconfirmed: nothing sent.
    let (status, body) = s.post(Role::Technician, TECH, &at("reboot"), None);
    assert_eq!(status, 428, "{body}");
    assert_eq!(body["code"], "confirm_required");
    let (status, body) = s.post(
        Role::Technician,
        TECH,
        &at("reboot"),
        Some(json!({"confirm": false})),
    );
    assert_eq!(status, 428, "{body}");
    // Confirmed, the box answering: done, and its uptime starts again.
    let (status, body) = s.post(
        Role::Technician,
        TECH,
        &at("reboot"),
        Some(json!({"confirm": true})),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"]["outcome"], "done");
    let (_, reading) = s.get(
        Role::Technician,
        TECH,
        &format!("/api/v1/equipment/{}/device", unit.equipment),
    );
    assert_eq!(reading["summary"]["uptime_s"], 0);
    // A refresh that runs comes back with the fresh reading.
    let (status, body) = s.post(Role::Dispatcher, DISPATCHER, &at("hosts"), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"]["outcome"], "done");
    assert_eq!(body["device"]["source"], "live");
    // The box slow to answer: the refresh waits for its next call, and says when that is.
    s.double.set_behaviour(&unit.device, Behaviour::Slow);
    let (_, body) = s.post(Role::Dispatcher, DISPATCHER, &at("wifi"), None);
    assert_eq!(body["outcome"]["outcome"], "queued", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("every 1 min"),
        "{body}"
    );
    let queued = s.double.queued(&unit.device);
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0]["objectName"], "Device.WiFi");
    // Unreachable: a reboot is not queued to fire later.
    s.double.set_behaviour(&unit.device, Behaviour::Offline);
    let (_, body) = s.post(
        Role::Dispatcher,
        DISPATCHER,
        &at("reboot"),
        Some(json!({"confirm": true})),
    );
    assert_eq!(body["outcome"]["outcome"], "unreachable", "{body}");
    assert!(
        s.double
            .queued(&unit.device)
            .iter()
            .all(|t| t["name"] != "reboot")
    );
    // Faulted: the box's fault, in words.
    s.double.set_behaviour(&unit.device, Behaviour::Faulty);
    let (_, body) = s.post(Role::Dispatcher, DISPATCHER, &at("optical"), None);
    assert_eq!(body["outcome"]["outcome"], "faulted", "{body}");
    assert!(body["message"].as_str().unwrap().contains("Internal error"));
    // An unknown action is refused before anything is asked.
    let (status, body) = s.post(Role::Dispatcher, DISPATCHER, &at("factory-reset"), None);
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("no_such_action"))
    );
    // Every action, with who asked and what came of it.
    let outcomes: Vec<(String, String, String)> = s
        .device_actions()
        .iter()
        .filter(|e| e["equipment"] == unit.equipment.to_string())
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
                e["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("reboot", "done", "Technician"),
        ("refresh_hosts", "done", "Dispatcher"),
        ("refresh_wifi", "queued", "Dispatcher"),
        ("reboot", "unreachable", "Dispatcher"),
        ("refresh_optical", "faulted", "Dispatcher"),
    ] {
        let e = (
            expected.0.to_owned(),
            expected.1.to_owned(),
            expected.2.to_owned(),
        );
        assert!(
            outcomes.contains(&e),
            "{expected:?} missing from {outcomes:?}"
        );
    }
    assert_eq!(
        outcomes.len(),
        5,
        "unconfirmed reboots are not actions: {outcomes:?}"
    );
}

#[test]
fn the_app_shows_the_box_live_then_the_last_reading_when_offline() {
    use app_tauri_core::device::{self, Device};
    use std::time::Duration;
    let mut s = site();
    let dir = tempfile::tempdir().unwrap();
    let app = std::sync::Mutex::new(
        Device::open(&dir.path().join("app"), Arc::new(SystemClock)).unwrap(),
    );
    device::login(
        &app,
        &s.base,
        &token(Role::Technician, TECH),
        Duration::from_secs(30),
    )
    .unwrap();
    let unit = s.mine[0].equipment.to_string();
    let t = Duration::from_secs(10);
    // Online: read through the server, and kept on the device.
    let live = device::network_get(&app, &unit, t).unwrap();
    assert!(!live.offline);
    let reading = live.reading.unwrap();
    assert_eq!(reading.source, shared::network::Source::Live);
    assert_eq!(
        reading.summary.identity.serial.as_deref(),
        Some(s.mine[0].serial.as_str())
    );
    // Not theirs: said by code, nothing kept.
    let foreign = device::network_get(&app, &s.foreign[0].equipment.to_string(), t).unwrap();
    assert_eq!(
        (foreign.reading, foreign.code.as_deref()),
        (None, Some("not_your_equipment"))
    );
    // A refresh through the app comes back with the fresh reading.
    let done = device::network_act(
        &app,
        &shared::ipc::NetworkActArgs {
            equipment: unit.clone(),
            action: "hosts".into(),
            confirm: false,
        },
        t,
    )
    .unwrap();
    assert_eq!(done.outcome, "done");
    assert!(done.view.reading.is_some());
    // The server gone (a basement): the last reading, marked offline.
    drop(s.server.take());
    let offline = device::network_get(&app, &unit, t).unwrap();
    assert!(offline.offline);
    let kept = offline.reading.unwrap();
    assert_eq!(kept.summary.device_id, reading.summary.device_id);
    assert!(kept.fetched_at >= reading.fetched_at);
    let never = device::network_get(&app, &s.mine.last().unwrap().equipment.to_string(), t);
    if s.mine.len() > 1 {
        let never = never.unwrap();
        assert!(
            never.offline && never.reading.is_none(),
            "nothing kept for a box never read"
        );
    }
}

/// Reads a live stream until `needle` shows up, or `within` passes.
fn stream_until(s: &Site, path: &str, needle: &str, within: std::time::Duration) -> String {
    use std::io::Read as _;
    let mut r = s
        .http
        .get(format!("{}{path}", s.base))
        .bearer_auth(token(Role::Dispatcher, DISPATCHER))
        .timeout(within)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains(needle) {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    seen
}

#[test]
fn the_office_sees_the_outage_with_its_jobs_and_a_technician_only_the_lines_of_their_jobs() {
    use std::time::{Duration, Instant};
    let s = site();
    // The demo's OLT (SNMP, polled every 5 s) cuts one PON port's feeder after its first poll.
    let deadline = Instant::now() + Duration::from_secs(40);
    let picture = loop {
        let (status, p) = s.get(Role::Dispatcher, DISPATCHER, "/api/v1/network");
        assert_eq!(status, 200, "{p}");
        let found = p["incidents"]
            .as_array()
            .is_some_and(|i| i.iter().any(|x| x["kind"] == "port_outage"));
        if found {
            break p;
        }
        assert!(Instant::now() < deadline, "no port outage yet: {p}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(picture["olts"][0]["name"], "OLT Démo");
    assert_eq!(picture["olts"][0]["reachable"], true);
    let incidents = picture["incidents"].as_array().unwrap();
    let outage = incidents
        .iter()
        .find(|i| i["kind"] == "port_outage")
        .unwrap();
    assert_eq!(outage["onus"].as_array().unwrap().len(), 5, "{outage}");
    assert_eq!(outage["of"], 64);
    let affected = outage["affected"].as_array().unwrap();
    assert_eq!(affected.len(), 5, "each ONU is a customer's: {outage}");
    assert!(
        affected.iter().all(|a| a["customer_name"].is_string()
            && a["address"].is_string()
            && a["serial"].is_string()),
        "{outage}"
    );
    let today = SystemClock.now().date().to_string();
    assert!(
        affected
            .iter()
            .flat_map(|a| a["jobs"].as_array().unwrap())
            .any(|j| j["date"] == today.as_str()),
        "the day's first job is behind the cut port: {outage}"
    );
    assert!(
        incidents.iter().any(|i| i["kind"] == "customer_fault"),
        "one customer's box alone on another port: {picture}"
    );
    // The office's picture is refused to a technician; the line of their job's ONT is not.
    let (status, refused) = s.get(Role::Technician, TECH, "/api/v1/network");
    assert_eq!(status, 403, "{refused}");
    let line = |u: &Unit| format!("/api/v1/equipment/{}/line", u.equipment);
    let (status, mine) = s.get(Role::Technician, TECH, &line(&s.mine[0]));
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["serial"], s.mine[0].serial.as_str());
    assert_eq!(mine["olt"], "OLT Démo");
    assert!(
        mine["state"].is_string() && mine["olt_reachable"] == true,
        "{mine}"
    );
    let (status, refused) = s.get(Role::Technician, TECH, &line(&s.foreign[0]));
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["code"], "not_your_equipment");
    // Live: the stream replays from the start, each incident with the jobs behind it.
    let seen = stream_until(
        &s,
        "/api/v1/network/events",
        "\"port_outage\"",
        Duration::from_secs(10),
    );
    assert!(seen.contains("event: incident"), "{seen}");
    assert!(seen.contains("\"affected\":[{"), "{seen}");
}
