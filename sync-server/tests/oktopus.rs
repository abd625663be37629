//! Oktopus's REST controller: the client's contract, run against the double on every test run
//! and against a real Oktopus when `FSM_TEST_OKTOPUS_URL`, `FSM_TEST_OKTOPUS_EMAIL`,
//! `FSM_TEST_OKTOPUS_PASSWORD` and `FSM_TEST_OKTOPUS_SN` (an online box it knows) are set.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[path = "support/demo_server.rs"]
#[allow(dead_code)] // shared by several test binaries; this one needs only the server and tokens
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sync_server::SystemClock;
use sync_server::doubles::oktopus::OktopusDouble;
use sync_server::hub::oktopus::{OktopusClient, Usp, UspDevice, UspError};
use sync_server::settings::Secret;

const EMAIL: &str = "admin@example.test";
const PASSWORD: &str = "secret of the tests";

fn agent(sn: &str, status: u8) -> UspDevice {
    UspDevice {
        sn: sn.into(),
        model: String::new(),
        vendor: "OB-USP-AGENT".into(),
        version: "9.0.0".into(),
        product_class: "USP Agent".into(),
        alias: String::new(),
        status,
    }
}

fn params() -> BTreeMap<String, serde_json::Value> {
    [
        ("Device.DeviceInfo.Manufacturer", json!("OB-USP-AGENT")),
        ("Device.DeviceInfo.SoftwareVersion", json!("9.0.0")),
        ("Device.DeviceInfo.SerialNumber", json!("0-mqtt")),
        ("Device.WiFi.SSID.1.SSID", json!("Maison")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

struct Peer {
    url: String,
    email: String,
    password: String,
    online: String,
    double: Option<OktopusDouble>,
}

fn double(rt: &tokio::runtime::Runtime) -> Peer {
    let d = OktopusDouble::new(EMAIL, PASSWORD, Arc::new(SystemClock));
    d.add(agent("oktopus-0-mqtt", 2), params());
    d.add(agent("oktopus-1-ws", 0), params());
    for n in 2..60 {
        d.add(agent(&format!("oktopus-{n}-mqtt"), 1), BTreeMap::new());
    }
    Peer {
        url: rt.block_on(d.start()).unwrap(),
        email: EMAIL.into(),
        password: PASSWORD.into(),
        online: "oktopus-0-mqtt".into(),
        double: Some(d),
    }
}

#[allow(clippy::disallowed_methods, clippy::print_stderr)] // named by the environment; the skip is said
fn peers(rt: &tokio::runtime::Runtime) -> Vec<Peer> {
    let mut out = vec![double(rt)];
    let var = |k: &str| std::env::var(k).ok();
    match (
        var("FSM_TEST_OKTOPUS_URL"),
        var("FSM_TEST_OKTOPUS_EMAIL"),
        var("FSM_TEST_OKTOPUS_PASSWORD"),
        var("FSM_TEST_OKTOPUS_SN"),
    ) {
        (Some(url), Some(email), Some(password), Some(online)) => out.push(Peer {
            url,
            email,
            password,
            online,
            double: None,
        }),
        _ => eprintln!(
            "Oktopus contract: the double only (set FSM_TEST_OKTOPUS_URL, _EMAIL, _PASSWORD and _SN to run it against a real Oktopus too)"
        ),
    }
    out
}

fn client(url: &str, email: &str, password: &str) -> OktopusClient {
    OktopusClient::new(url, email, Secret::new(password), Duration::from_secs(10)).unwrap()
}

#[test]
fn the_client_holds_to_oktopus() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for peer in peers(&rt) {
        let c = client(&peer.url, &peer.email, &peer.password);
        rt.block_on(async {
            // One box, then pages of at most 50 with the total.
            let one = c.device(&peer.online).await.unwrap().unwrap();
            assert_eq!(one.sn, peer.online);
            assert_eq!(one.state(), "online");
            assert_eq!(c.device("no-such-box-42").await.unwrap(), None);
            let (page, total) = c.devices(0, 200).await.unwrap();
            assert!(page.len() <= 50 && page.len() as u64 <= total);
            // A USP Get, flattened to full paths.
            let got = c.get(&peer.online, &["Device.DeviceInfo."]).await.unwrap();
            assert!(got.contains_key("Device.DeviceInfo.SoftwareVersion"), "{got:?}");
            assert!(got.keys().all(|k| k.starts_with("Device.DeviceInfo.")));
            // Wrong credentials are said as such.
            let wrong = client(&peer.url, &peer.email, "not the password");
            assert!(matches!(wrong.devices(0, 1).await, Err(UspError::Credentials(m)) if m == "Invalid Credentials"));
        });
    }
}

#[test]
fn an_offline_box_and_an_expired_token_are_handled() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let peer = double(&rt);
    let d = peer.double.as_ref().unwrap();
    let c = client(&peer.url, EMAIL, PASSWORD);
    rt.block_on(async {
        assert_eq!(
            c.get("oktopus-1-ws", &["Device.DeviceInfo."]).await,
            Err(UspError::Offline("Device is offline".into()))
        );
        let (first, total) = c.devices(0, 50).await.unwrap();
        assert_eq!((first.len(), total), (50, 60));
        let (second, _) = c.devices(1, 50).await.unwrap();
        assert_eq!(second.len(), 10);
        assert_eq!(d.logins(), 1, "one login for every call");
        // The token expires: the next call signs in again by itself.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        d.expire_tokens();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(c.device("oktopus-0-mqtt").await.unwrap().is_some());
        assert_eq!(d.logins(), 2);
        // Comes online: read.
        d.set_status("oktopus-1-ws", 2);
        let got = c
            .get("oktopus-1-ws", &["Device.WiFi.SSID.1.SSID"])
            .await
            .unwrap();
        assert_eq!(got["Device.WiFi.SSID.1.SSID"], "Maison");
    });
}

#[test]
fn the_office_reads_usp_boxes_through_the_server_and_offline_is_said() {
    use shared::ids::{DeviceId, DocId, Role};
    // The demo runs its Oktopus double: oktopus-0-mqtt online, oktopus-1-ws offline.
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = support::spawn_demo(dir.path(), None, &[]);
    let base = format!("http://127.0.0.1:{port}");
    sync_server::tls::install_crypto();
    let http = reqwest::blocking::Client::new();
    let get = |role: Role, path: &str| {
        let r = http
            .get(format!("{base}{path}"))
            .bearer_auth(support::token(role, DeviceId(DocId::from_u128(0x0c70))))
            .send()
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().unwrap_or_default(),
        )
    };
    let (status, list) = get(Role::Dispatcher, "/api/v1/usp/devices");
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 3);
    let (status, online) = get(Role::Dispatcher, "/api/v1/usp/devices/oktopus-0-mqtt");
    assert_eq!(status, 200, "{online}");
    assert_eq!(online["state"], "online");
    assert_eq!(online["live"]["Device.DeviceInfo.SoftwareVersion"], "9.0.0");
    let (status, offline) = get(Role::Dispatcher, "/api/v1/usp/devices/oktopus-1-ws");
    assert_eq!(status, 200, "{offline}");
    assert_eq!(
        (offline["live"].clone(), offline["offline"].clone()),
        (serde_json::Value::Null, json!("Device is offline"))
    );
    let (status, _) = get(Role::Dispatcher, "/api/v1/usp/devices/nobody");
    assert_eq!(status, 404);
    let (status, _) = get(Role::Technician, "/api/v1/usp/devices");
    assert_eq!(status, 403);
}
