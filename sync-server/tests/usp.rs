//! Oktopus box presence over the real Mosquitto on `127.0.0.1:1883` (started on this machine
//! kind before each session; the tests say so and fail when it is not there): the subscriber
//! keeps every status message across a dropped broker connection, without repeating one, and
//! dispatchers follow the events live through the real server binary, resuming with
//! `Last-Event-ID`.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[path = "support/demo_server.rs"]
#[allow(dead_code)] // shared by several test binaries; this one needs only the server and tokens
mod support;

use std::io::BufRead as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, MqttOptions, QoS};
use shared::ids::{DeviceId, DocId, Role};
use sync_server::SystemClock;
use sync_server::hub::usp::{self, MqttLink, Presence, PresenceEvent};

const BROKER: (&str, u16) = ("127.0.0.1", 1883);

fn require_mosquitto() {
    if std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], BROKER.1)),
        Duration::from_secs(2),
    )
    .is_err()
    {
        panic!(
            "Mosquitto is not listening on 127.0.0.1:1883: these tests need the real broker (on this machine kind it is started before the session; elsewhere `apt install mosquitto`)"
        );
    }
}

/// A name no other run uses (the broker keeps sessions and topics between runs).
fn unique(what: &str) -> String {
    format!(
        "fsm-test-{what}-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    )
}

/// A TCP relay to the broker that the test can cut (every connection dropped) and close (new
/// connections dropped at once) and open again: a broker connection lost and found.
struct Relay {
    port: u16,
    open: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Relay {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let gate = Arc::clone(&open);
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !gate.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees its connection fail
                }
                let mut cuts = cuts.clone();
                cuts.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect((BROKER.0, BROKER.1)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Self { port, open, cut }
    }

    fn cut_and_close(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn reopen(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// A device-side publisher straight to the broker (QoS 1, as the broker's own status messages).
async fn publisher() -> AsyncClient {
    let mut opts = MqttOptions::new(unique("pub"), BROKER.0, BROKER.1);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(opts, 64);
    tokio::spawn(async move { while events.poll().await.is_ok() {} });
    client
}

async fn status(client: &AsyncClient, device: &str, online: bool) {
    client
        .publish(
            format!("oktopus/usp/v1/status/{device}"),
            QoS::AtLeastOnce,
            false,
            if online { "1" } else { "0" },
        )
        .await
        .unwrap();
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn events_of(p: &Presence, devices: &[&str]) -> Vec<(String, bool)> {
    p.after(0, 10_000)
        .unwrap()
        .into_iter()
        .filter(|e| devices.contains(&e.device.as_str()))
        .map(|e| (e.device, e.online))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_or_repeated_across_a_dropped_broker_connection() {
    require_mosquitto();
    let dir = tempfile::tempdir().unwrap();
    let presence = Presence::open(&dir.path().join("hub.sqlite3"), true).unwrap();
    let relay = Relay::start().await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let subscriber = tokio::spawn(usp::run(
        Arc::clone(&presence),
        MqttLink {
            host: "127.0.0.1".into(),
            port: relay.port,
            client_id: unique("sub"),
            credentials: None,
        },
        Arc::new(SystemClock),
        stopped,
    ));
    let (a, b, c) = (unique("a"), unique("b"), unique("c"));
    let devices = [a.as_str(), b.as_str(), c.as_str()];
    let pubs = publisher().await;
    // Once subscribed, A comes online (sent until seen: only the first is an event).
    let start = Instant::now();
    while events_of(&presence, &devices).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the subscriber never got A"
        );
        status(&pubs, &a, true).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The broker connection drops; meanwhile A goes away (its Will, twice: a redelivery), B
    // comes, C comes and goes.
    relay.cut_and_close();
    tokio::time::sleep(Duration::from_millis(300)).await;
    status(&pubs, &a, false).await;
    status(&pubs, &a, false).await;
    status(&pubs, &b, true).await;
    status(&pubs, &c, true).await;
    status(&pubs, &c, false).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        events_of(&presence, &devices).len(),
        1,
        "nothing arrives while cut"
    );
    relay.reopen();
    let expected = vec![
        (a.clone(), true),
        (a.clone(), false),
        (b.clone(), true),
        (c.clone(), true),
        (c.clone(), false),
    ];
    until("every event after the reconnect", || {
        events_of(&presence, &devices).len() >= expected.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        events_of(&presence, &devices),
        expected,
        "in order, once each"
    );
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(5), subscriber)
        .await
        .expect("the subscriber stops on shutdown")
        .unwrap();
}

#[test]
fn dispatchers_follow_presence_live_and_resume_where_they_left() {
    require_mosquitto();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client_id = unique("server");
    let (_server, port) = support::spawn_demo_with(
        dir.path(),
        None,
        &[],
        &[
            ("APP_OKTOPUS__MQTT_HOST", "127.0.0.1"),
            ("APP_OKTOPUS__MQTT_CLIENT_ID", client_id.as_str()),
        ],
    );
    let base = format!("http://127.0.0.1:{port}");
    let dispatcher = support::token(Role::Dispatcher, DeviceId(DocId::from_u128(0xd15b)));
    let technician = support::token(Role::Technician, DeviceId(DocId::from_u128(0x7ec2)));
    sync_server::tls::install_crypto();
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let (a, b) = (unique("sa"), unique("sb"));
    let pubs = rt.block_on(publisher());
    // Presence is the office's.
    let refused = http
        .get(format!("{base}/api/v1/devices/presence"))
        .bearer_auth(&technician)
        .send()
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    // A comes online: sent until the server has it.
    let start = Instant::now();
    let seen = |device: &str| -> bool {
        let v: serde_json::Value = http
            .get(format!("{base}/api/v1/devices/presence"))
            .bearer_auth(&dispatcher)
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["device"] == device)
    };
    while !seen(&a) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the server never got A"
        );
        rt.block_on(status(&pubs, &a, true));
        std::thread::sleep(Duration::from_millis(200));
    }
    // The live stream from the start: A online.
    let stream = |last: Option<&str>| {
        let mut r = http
            .get(format!("{base}/api/v1/devices/presence/events"))
            .bearer_auth(&dispatcher);
        if let Some(l) = last {
            r = r.header("Last-Event-ID", l);
        }
        std::io::BufReader::new(r.send().unwrap())
    };
    let next = |lines: &mut std::io::BufReader<reqwest::blocking::Response>,
                wanted: &str|
     -> (String, PresenceEvent) {
        let mut id = String::new();
        loop {
            let mut line = String::new();
            assert!(lines.read_line(&mut line).unwrap() > 0, "the stream ended");
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().to_owned();
            }
            if let Some(data) = line.strip_prefix("data:") {
                let ev: PresenceEvent = serde_json::from_str(data.trim()).unwrap();
                if ev.device == wanted {
                    return (id, ev);
                }
            }
        }
    };
    let mut live = stream(None);
    let (id_a, ev) = next(&mut live, &a);
    assert!(ev.online);
    assert_eq!(id_a, ev.seq.to_string());
    drop(live);
    // While the dispatcher is away: A goes, B comes.
    rt.block_on(async {
        status(&pubs, &a, false).await;
        status(&pubs, &b, true).await;
    });
    // Back with Last-Event-ID: exactly what was missed, in order, then live.
    let mut resumed = stream(Some(&id_a));
    let (_, first) = next(&mut resumed, &a);
    assert!(!first.online, "A's going, not its coming again");
    assert!(first.seq > ev.seq);
    let (_, second) = next(&mut resumed, &b);
    assert!(second.online && second.seq > first.seq);
    rt.block_on(status(&pubs, &b, false));
    let (_, third) = next(&mut resumed, &b);
    assert!(!third.online && third.seq > second.seq);
    // An admin revokes the dispatcher's session: the open stream ends at once.
    let admin = support::token(Role::Admin, DeviceId(DocId::from_u128(0xad32)));
    let revoked = http
        .post(format!("{base}/api/v1/auth/revoke"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"token": dispatcher}))
        .send()
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 204);
    let ended = Instant::now();
    let mut rest = String::new();
    loop {
        let mut line = String::new();
        if resumed.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        rest.push_str(&line);
        assert!(
            ended.elapsed() < Duration::from_secs(10),
            "still open: {rest}"
        );
    }
    assert!(ended.elapsed() < Duration::from_secs(10));
}
