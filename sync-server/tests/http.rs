//! The server over real HTTP on 127.0.0.1:0, driven by real replicas (`app-tauri-core`).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use app_tauri_core::{HttpTransport, Replica, TransportError};
use shared::clock::{Clock, FixedClock, Millis};
use shared::ids::{Author, DeviceId, DocId, JobId, Role};
use shared::model::{AnyEntity, DispatchJob, JobStatus};
use shared::record::EntityKind;
use shared::sync::server::ServerConfig;
use sync_server::auth::Keys;
use sync_server::service::SyncService;
use sync_server::store::SqliteStore;
use sync_server::{AppState, SystemClock, demo};

const MONDAY_9AM: Millis = Millis(1_795_424_400_000);
const SECRET: &[u8] = b"http test secret, thirty-two bytes or more";

#[path = "http/attack.rs"]
mod attack;

struct TestServer {
    url: String,
    /// The service behind the endpoint, to look at what it holds (attacks go over HTTP).
    svc: Arc<SyncService>,
    keys: Arc<Keys>,
    data: demo::Dataset,
    // Keeps the server running for the test's duration.
    _rt: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn start() -> TestServer {
    start_with(None)
}

fn start_with(min_app_version: Option<&str>) -> TestServer {
    start_full(min_app_version, sync_server::LinkSettings::default())
}

fn start_full(min_app_version: Option<&str>, links: sync_server::LinkSettings) -> TestServer {
    sync_server::tls::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = SqliteStore::open(&dir.path().join("sync.sqlite3"), false).unwrap();
    let author = Author::new(Role::Server, DeviceId(DocId::from_u128(0x5e)));
    let mut service = SyncService::open(
        ServerConfig::new(author),
        Box::new(store),
        Box::new(FixedClock::new(MONDAY_9AM)),
    )
    .unwrap();
    if let Some(v) = min_app_version {
        service = service.with_min_app_version(semver::Version::parse(v).unwrap());
    }
    let service = Arc::new(service);
    let spec = demo::Spec {
        technicians: 2,
        jobs_per_technician: 4,
        locations: 6,
        subscribers_per_location: 1,
        equipment_per_location: 2,
        days_back: 1,
        days_ahead: 3,
    };
    let data = demo::generate(5, spec, MONDAY_9AM.date());
    service.seed(&data.entities, MONDAY_9AM).unwrap();
    let keys = Arc::new(Keys::from_secret(SECRET));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = AppState {
        sync: service.clone(),
        keys: keys.clone(),
        erp: None,
        photos: Some(Arc::new(
            sync_server::photos::PhotoStore::open(&dir.path().join("photos")).unwrap(),
        )),
        links: Arc::new(links),
        hub: None,
    };
    rt.spawn(sync_server::serve(listener, state, async {
        let _ = stopped.await;
    }));
    TestServer {
        url,
        svc: service,
        keys,
        data,
        _rt: rt,
        stop: Some(stop),
        _dir: dir,
    }
}

/// A session token for device `n` (its id is `n`), valid for an hour.
fn session_token(
    s: &TestServer,
    n: u128,
    role: Role,
    tech: Option<shared::ids::TechnicianId>,
) -> String {
    s.keys
        .issue(DeviceId(DocId::from_u128(n)), role, tech, now_s(), 3600)
        .unwrap()
}

fn now_s() -> i64 {
    SystemClock.now().0 / 1000
}

fn client(s: &TestServer, role: Role, n: u128) -> (Replica, HttpTransport) {
    let device = DeviceId(DocId::from_u128(0xd000 + n));
    let tech = (role == Role::Technician).then(|| s.data.technicians[0]);
    let token = s.keys.issue(device, role, tech, now_s(), 3600).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(FixedClock::new(MONDAY_9AM));
    let replica =
        Replica::open_in_memory(Author::new(role, device), clock, Some(n as u64)).unwrap();
    (
        replica,
        HttpTransport::new(&s.url, &token, Duration::from_secs(10)).unwrap(),
    )
}

#[test]
fn technician_and_dispatcher_converge_over_http() {
    let s = start();
    let (mut tech, mut tech_net) = client(&s, Role::Technician, 1);
    let (mut office, mut office_net) = client(&s, Role::Dispatcher, 2);
    tech.sync(&mut tech_net).unwrap();
    office.sync(&mut office_net).unwrap();
    let job = tech
        .doc_ids()
        .unwrap()
        .into_iter()
        .find(|(d, k)| *k == EntityKind::Job && matches!(tech.entity(*d).unwrap(), Some(AnyEntity::Job(j)) if j.status == JobStatus::Scheduled))
        .map(|(d, _)| JobId(d))
        .unwrap();
    // Offline on both sides.
    tech.set_job_status(job, JobStatus::EnRoute).unwrap();
    tech.add_note(job, "Client rappelé").unwrap();
    office
        .update::<DispatchJob>(job.doc(), |j| {
            j.description = "Apporter un ONT de rechange".into();
            Ok(())
        })
        .unwrap();
    tech.sync(&mut tech_net).unwrap();
    office.sync(&mut office_net).unwrap();
    tech.sync(&mut tech_net).unwrap();
    for r in [&tech, &office] {
        let Some(AnyEntity::Job(j)) = r.entity(job.doc()).unwrap() else {
            panic!()
        };
        assert_eq!(j.status, JobStatus::EnRoute);
        assert_eq!(j.description, "Apporter un ONT de rechange");
        assert_eq!(j.notes.len(), 1);
    }
    assert_eq!(
        tech.record(job.doc()).unwrap(),
        office.record(job.doc()).unwrap()
    );
}

#[test]
fn bad_tokens_and_bad_bodies_get_4xx_and_change_nothing() {
    let s = start();
    let (mut tech, _) = client(&s, Role::Technician, 1);
    let other = Keys::from_secret(b"some other secret that signs nothing valid");
    let forged = other
        .issue(
            DeviceId(DocId::from_u128(9)),
            Role::Dispatcher,
            None,
            now_s(),
            3600,
        )
        .unwrap();
    let expired = s
        .keys
        .issue(
            DeviceId(DocId::from_u128(9)),
            Role::Dispatcher,
            None,
            now_s() - 7200,
            3600,
        )
        .unwrap();
    for token in [forged.as_str(), expired.as_str(), "not-a-jwt", ""] {
        let mut net = HttpTransport::new(&s.url, token, Duration::from_secs(10)).unwrap();
        match tech.sync(&mut net) {
            Err(TransportError::Server { status: 401, .. }) => {}
            other => panic!("expected 401, got {other:?}"),
        }
    }
    assert_eq!(tech.status().unwrap().documents, 0);
    // A valid token but a garbage body.
    let http = reqwest::blocking::Client::new();
    let token = session_token(&s, 0xd001, Role::Technician, Some(s.data.technicians[0]));
    let r = http
        .post(format!("{}/api/v1/sync", s.url))
        .bearer_auth(&token)
        .body(b"garbage".to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["code"], "bad_request");
    // A request signed for another device than the token's.
    let (mut office, _) = client(&s, Role::Dispatcher, 3);
    let mut wrong = HttpTransport::new(&s.url, &token, Duration::from_secs(10)).unwrap();
    match office.sync(&mut wrong) {
        Err(TransportError::Server { status: 403, .. }) => {}
        other => panic!("expected 403, got {other:?}"),
    }
    assert_eq!(
        http.get(format!("{}/health", s.url))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        http.get(format!("{}/ready", s.url))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}

/// Reads an SSE stream on a thread, handing over `(event, id, data)` triples.
fn listen(
    url: &str,
    token: &str,
    last_id: Option<u64>,
) -> std::sync::mpsc::Receiver<(String, String, String)> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    let client = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .unwrap();
    let mut req = client
        .get(format!("{url}/api/v1/events"))
        .bearer_auth(token);
    if let Some(id) = last_id {
        req = req.header("Last-Event-ID", id.to_string());
    }
    let resp = req.send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    std::thread::spawn(move || {
        let (mut event, mut id, mut data) = (String::new(), String::new(), String::new());
        for line in std::io::BufReader::new(resp).lines() {
            let Ok(line) = line else { return };
            if let Some(v) = line.strip_prefix("event: ") {
                event = v.to_owned();
            } else if let Some(v) = line.strip_prefix("id: ") {
                id = v.to_owned();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = v.to_owned();
            } else if line.is_empty() && !event.is_empty() {
                let ev = (
                    std::mem::take(&mut event),
                    std::mem::take(&mut id),
                    std::mem::take(&mut data),
                );
                if tx.send(ev).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Waits for a live stream to end; fails with `why` if it is still open after `within`.
fn assert_stream_ends(
    events: &std::sync::mpsc::Receiver<(String, String, String)>,
    within: Duration,
    why: &str,
) {
    let deadline = std::time::Instant::now() + within;
    loop {
        match events.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            Ok(_) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{why}"),
        }
    }
}

fn wait_for(
    rx: &std::sync::mpsc::Receiver<(String, String, String)>,
    name: &str,
    needle: &str,
) -> (String, String, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ev = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no `{name}` event mentioning {needle} within 10 s"));
        if ev.0 == name && ev.2.contains(needle) {
            return ev;
        }
    }
}

#[test]
fn dispatchers_get_live_events_and_resume_after_a_reconnect() {
    let s = start();
    let (mut tech, mut tech_net) = client(&s, Role::Technician, 1);
    tech.sync(&mut tech_net).unwrap();
    let office_token = session_token(&s, 0xd0ff, Role::Dispatcher, None);
    // Technicians may not listen.
    let tech_token = session_token(&s, 0xd0fe, Role::Technician, Some(s.data.technicians[0]));
    let r = reqwest::blocking::Client::new()
        .get(format!("{}/api/v1/events", s.url))
        .bearer_auth(&tech_token)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    let events = listen(&s.url, &office_token, None);
    let jobs: Vec<JobId> = tech
        .doc_ids()
        .unwrap()
        .into_iter()
        .filter(|(d, k)| *k == EntityKind::Job && matches!(tech.entity(*d).unwrap(), Some(AnyEntity::Job(j)) if j.status == JobStatus::Scheduled))
        .map(|(d, _)| JobId(d))
        .collect();
    tech.set_job_status(jobs[0], JobStatus::EnRoute).unwrap();
    tech.sync(&mut tech_net).unwrap();
    let job0 = jobs[0].doc().to_string();
    let (_, id, data) = wait_for(&events, "job_changed", &job0);
    assert!(data.contains("en_route"), "{data}");
    wait_for(&events, "technician_status", &job0);
    drop(events);

    // While the dispatcher is away, another job changes; on reconnect it is replayed.
    tech.set_job_status(jobs[1], JobStatus::EnRoute).unwrap();
    tech.sync(&mut tech_net).unwrap();
    let again = listen(&s.url, &office_token, Some(id.parse().unwrap()));
    let (_, _, data) = wait_for(&again, "job_changed", &jobs[1].doc().to_string());
    assert!(data.contains("en_route"), "{data}");
}

#[test]
fn large_bodies_travel_gzipped_both_ways() {
    let s = start();
    let (mut office, mut net) = client(&s, Role::Dispatcher, 4);
    office.sync(&mut net).unwrap();
    // A day of office edits: well past the 16 KB above which requests are gzipped.
    let jobs: Vec<DocId> = office
        .doc_ids()
        .unwrap()
        .into_iter()
        .filter(|(_, k)| *k == EntityKind::Job)
        .map(|(d, _)| d)
        .collect();
    for (i, j) in jobs.iter().enumerate() {
        office
            .update::<DispatchJob>(*j, |job| {
                job.description = format!(
                    "Consignes détaillées n° {i} : {}",
                    "apporter l'échelle, ".repeat(150)
                );
                Ok(())
            })
            .unwrap();
    }
    let report = office.sync(&mut net).unwrap();
    assert!(
        report.bytes_sent > 16 * 1024,
        "the push was large ({} bytes)",
        report.bytes_sent
    );
    assert!(office.pending().unwrap().is_empty(), "and acknowledged");
    let (mut other, mut other_net) = client(&s, Role::Dispatcher, 5);
    other.sync(&mut other_net).unwrap();
    assert_eq!(
        other.record(jobs[0]).unwrap(),
        office.record(jobs[0]).unwrap()
    );
    // The server answers gzipped when asked to.
    let raw = reqwest::blocking::Client::builder()
        .no_gzip()
        .build()
        .unwrap();
    let token = session_token(&s, 0xd0aa, Role::Dispatcher, None);
    let (fresh, _) = client(&s, Role::Dispatcher, 0xaa);
    let frame = shared::protocol::encode(&shared::protocol::Message::Request(
        fresh.sync_request("t").unwrap(),
    ));
    let r = raw
        .post(format!("{}/api/v1/sync", s.url))
        .bearer_auth(&token)
        .header("accept-encoding", "gzip")
        .body(frame)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip")
    );
}

fn post_json(url: &str, token: Option<&str>, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let c = reqwest::blocking::Client::new();
    let mut r = c.post(url).json(body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(serde_json::Value::Null))
}

#[test]
fn magic_link_once_then_refresh_and_revoke() {
    let s = start();
    let office = session_token(&s, 0xd0f1, Role::Dispatcher, None);
    let admin = session_token(&s, 0xd0f2, Role::Admin, None);
    let tech_id = s.data.technicians[0].to_string();

    // A technician cannot make links; the office can.
    let tech_token = session_token(&s, 0xd0f3, Role::Technician, Some(s.data.technicians[0]));
    let (st, _) = post_json(
        &format!("{}/api/v1/auth/magic", s.url),
        Some(&tech_token),
        &serde_json::json!({"technician": tech_id}),
    );
    assert_eq!(st, 403);
    let (st, body) = post_json(
        &format!("{}/api/v1/auth/magic", s.url),
        Some(&office),
        &serde_json::json!({"technician": "nope"}),
    );
    assert_eq!((st, body["code"].as_str()), (400, Some("bad_request")));
    let (st, body) = post_json(
        &format!("{}/api/v1/auth/magic", s.url),
        Some(&office),
        &serde_json::json!({"technician": tech_id}),
    );
    assert_eq!(st, 200);
    let magic = body["token"].as_str().unwrap().to_owned();
    assert!(
        body["link"]
            .as_str()
            .unwrap()
            .starts_with("fsm://login?token=")
    );
    // A link is not a session.
    let (mut r, _) = client(&s, Role::Technician, 50);
    assert!(matches!(
        r.sync(&mut HttpTransport::new(&s.url, &magic, Duration::from_secs(5)).unwrap()),
        Err(TransportError::Server { status: 401, .. })
    ));

    // Exchanged once for a session on the technician's device, which then syncs.
    let device = DeviceId(DocId::from_u128(0xd0f4));
    let (st, body) = post_json(
        &format!("{}/api/v1/auth/exchange", s.url),
        None,
        &serde_json::json!({"magic": magic, "device": device.to_string()}),
    );
    assert_eq!(st, 200);
    let session = body["token"].as_str().unwrap().to_owned();
    let (st, body) = post_json(
        &format!("{}/api/v1/auth/exchange", s.url),
        None,
        &serde_json::json!({"magic": magic, "device": device.to_string()}),
    );
    assert_eq!((st, body["code"].as_str()), (401, Some("link_used")));
    let clock: Arc<dyn Clock> = Arc::new(FixedClock::new(MONDAY_9AM));
    let mut phone =
        Replica::open_in_memory(Author::new(Role::Technician, device), clock, Some(9)).unwrap();
    phone
        .sync(&mut HttpTransport::new(&s.url, &session, Duration::from_secs(5)).unwrap())
        .unwrap();
    assert!(phone.status().unwrap().jobs > 0);

    // Another technician's link cannot take over this device id.
    let (st, body) = post_json(
        &format!("{}/api/v1/auth/magic", s.url),
        Some(&office),
        &serde_json::json!({"technician": s.data.technicians[1].to_string()}),
    );
    assert_eq!(st, 200);
    let (st, body) = post_json(
        &format!("{}/api/v1/auth/exchange", s.url),
        None,
        &serde_json::json!({"magic": body["token"], "device": device.to_string()}),
    );
    assert_eq!(st, 200, "{body}");
    let hijack = body["token"].as_str().unwrap().to_owned();
    let clock: Arc<dyn Clock> = Arc::new(FixedClock::new(MONDAY_9AM));
    let mut other =
        Replica::open_in_memory(Author::new(Role::Technician, device), clock, Some(10)).unwrap();
    match other.sync(&mut HttpTransport::new(&s.url, &hijack, Duration::from_secs(5)).unwrap()) {
        Err(TransportError::Server {
            status: 403,
            message,
        }) => assert!(message.contains("another account"), "{message}"),
        r => panic!("expected 403, got {r:?}"),
    }

    // Refresh: a new token works, the old one no longer does.
    let (st, body) = post_json(
        &format!("{}/api/v1/auth/refresh", s.url),
        Some(&session),
        &serde_json::json!({}),
    );
    assert_eq!(st, 200);
    let renewed = body["token"].as_str().unwrap().to_owned();
    assert!(matches!(
        phone.sync(&mut HttpTransport::new(&s.url, &session, Duration::from_secs(5)).unwrap()),
        Err(TransportError::Server { status: 401, .. })
    ));
    phone
        .sync(&mut HttpTransport::new(&s.url, &renewed, Duration::from_secs(5)).unwrap())
        .unwrap();

    // Only an admin revokes; then the device is out.
    let (st, _) = post_json(
        &format!("{}/api/v1/auth/revoke", s.url),
        Some(&office),
        &serde_json::json!({"token": renewed}),
    );
    assert_eq!(st, 403);
    let (st, _) = post_json(
        &format!("{}/api/v1/auth/revoke", s.url),
        Some(&admin),
        &serde_json::json!({"token": renewed}),
    );
    assert_eq!(st, 204);
    assert!(matches!(
        phone.sync(&mut HttpTransport::new(&s.url, &renewed, Duration::from_secs(5)).unwrap()),
        Err(TransportError::Server { status: 401, .. })
    ));
}

#[test]
fn photos_upload_by_their_hash_once_and_only_with_a_token() {
    use sha2::Digest as _;
    let s = start();
    let device = DeviceId(DocId::from_u128(0xd0f0));
    let tech = s
        .keys
        .issue(
            device,
            Role::Technician,
            Some(s.data.technicians[0]),
            now_s(),
            3600,
        )
        .unwrap();
    let office = s
        .keys
        .issue(device, Role::Dispatcher, None, now_s(), 3600)
        .unwrap();
    let bytes = b"\xff\xd8\xff\xe0 photo of the ONT".to_vec();
    let sha: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let url = format!("{}/api/v1/photos/{sha}", s.url);
    let http = reqwest::blocking::Client::new();
    let put = |token: Option<&str>, body: &[u8], url: &str| {
        let mut r = http.put(url).body(body.to_vec());
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().unwrap().status().as_u16()
    };
    assert_eq!(put(None, &bytes, &url), 401, "no token, no upload");
    let get = |token: &str| {
        let r = http.get(&url).bearer_auth(token).send().unwrap();
        (r.status().as_u16(), r.bytes().unwrap().to_vec())
    };
    assert_eq!(get(&office).0, 404);
    assert_eq!(
        put(Some(&tech), &bytes, &url),
        403,
        "a photo no job of the device's names"
    );
    // The job names it once the device's edit has synced.
    let job = s
        .svc
        .read(|e| {
            e.scope(
                shared::sync::server::Subject::Technician(s.data.technicians[0]),
                MONDAY_9AM.date(),
            )
            .into_iter()
            .find(|d| e.kind(*d) == Some(EntityKind::Job))
        })
        .unwrap()
        .unwrap();
    let item = |field: &str, value: shared::record::Scalar| shared::record::FieldChange::SetItem {
        collection: "photos".into(),
        item: "p1".into(),
        field: field.into(),
        value,
    };
    s.svc
        .with_engine(|e| {
            let effects = e.edit(
                job,
                &[
                    item("file_name", shared::record::Scalar::str("ont.jpg")),
                    item("sha256", shared::record::Scalar::str(&sha)),
                    item("taken_at", shared::record::Scalar::Int(MONDAY_9AM.0)),
                    item("caption", shared::record::Scalar::Null),
                ],
                MONDAY_9AM,
            )?;
            Ok(((), effects))
        })
        .unwrap();
    // Bytes that do not hash to the name (a corrupted upload) are refused and not kept.
    assert_eq!(put(Some(&tech), b"truncated", &url), 400);
    assert_eq!(get(&office).0, 404);
    assert_eq!(put(Some(&tech), &bytes, &url), 201);
    assert_eq!(
        put(Some(&tech), &bytes, &url),
        200,
        "a retried upload is harmless"
    );
    assert_eq!(get(&office), (200, bytes));
    assert_eq!(get(&tech).0, 403, "photos are read by the office");
    let bad = format!("{}/api/v1/photos/not-a-hash", s.url);
    assert_eq!(put(Some(&tech), b"x", &bad), 400);
}

#[test]
fn a_photo_taken_offline_waits_on_the_device_then_uploads_on_the_next_sync() {
    use app_tauri_core::device::{self, Device, SystemClock as DeviceClock};
    use sha2::Digest as _;
    let s = start();
    let dir = tempfile::tempdir().unwrap();
    let tech = s.data.technicians[0];
    let token = session_token(&s, 0xd0f1, Role::Technician, Some(tech));
    let mut d = Device::open(dir.path(), Arc::new(DeviceClock)).unwrap();
    d.login_with_token(&s.url, &token).unwrap();
    let d = std::sync::Mutex::new(d);
    device::sync_over_http(&d, Duration::from_secs(10)).unwrap();
    let job = d
        .lock()
        .unwrap()
        .replica()
        .unwrap()
        .doc_ids()
        .unwrap()
        .into_iter()
        .find(|(_, k)| *k == EntityKind::Job)
        .map(|(id, _)| id.to_string())
        .unwrap();
    let photo = b"\xff\xd8\xff\xe0 the ONT after the repair".to_vec();
    d.lock()
        .unwrap()
        .add_photo(&job, &photo, Some("ONT".into()))
        .unwrap();
    assert_eq!(d.lock().unwrap().status().unwrap().photos_waiting, 1);
    let detail = d.lock().unwrap().job_detail(&job).unwrap();
    assert_eq!(detail.photos.len(), 1);
    assert!(
        !detail.photos[0].done,
        "shown as waiting while not uploaded"
    );

    device::sync_over_http(&d, Duration::from_secs(10)).unwrap();
    assert_eq!(d.lock().unwrap().status().unwrap().photos_waiting, 0);
    assert!(d.lock().unwrap().job_detail(&job).unwrap().photos[0].done);
    // The server has the bytes, under their hash.
    let sha: String = sha2::Sha256::digest(&photo)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let office = session_token(&s, 0xd0f2, Role::Dispatcher, None);
    let r = reqwest::blocking::Client::new()
        .get(format!("{}/api/v1/photos/{sha}", s.url))
        .bearer_auth(&office)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().unwrap().to_vec(), photo);
}

#[test]
fn apps_below_the_minimum_version_are_told_to_update() {
    let s = start_with(Some("99.0.0"));
    let (mut tech, mut net) = client(&s, Role::Technician, 1);
    match tech.sync(&mut net) {
        Err(TransportError::Server {
            status: 426,
            message,
        }) => assert!(message.contains("update the app"), "{message}"),
        other => panic!("expected 426, got {other:?}"),
    }
    assert_eq!(tech.status().unwrap().documents, 0);
}

#[test]
fn a_live_stream_ends_when_its_token_expires() {
    let s = start();
    let short = s
        .keys
        .issue(
            DeviceId(DocId::from_u128(0xd0e1)),
            Role::Dispatcher,
            None,
            now_s(),
            2,
        )
        .unwrap();
    let events = listen(&s.url, &short, None);
    assert_stream_ends(
        &events,
        Duration::from_secs(8),
        "the stream outlived its token",
    );
}

#[test]
fn login_links_are_app_links_and_every_sign_in_is_audited() {
    let links = sync_server::LinkSettings {
        public_url: Some("https://sync.example.net".into()),
        android_package: Some("ca.fibre.fsm".into()),
        android_cert_sha256: vec!["AB:CD:EF".into()],
        apple_app_ids: vec!["TEAM123456.ca.fibre.fsm".into()],
    };
    let s = start_full(None, links);
    let office = session_token(&s, 0xd0a1, Role::Dispatcher, None);
    let tech = s.data.technicians[0];
    let (status, body) = post_json(
        &format!("{}/api/v1/auth/magic", s.url),
        Some(&office),
        &serde_json::json!({ "technician": tech.to_string() }),
    );
    assert_eq!(status, 200, "{body}");
    let link = body["link"].as_str().unwrap();
    assert!(
        link.starts_with("https://sync.example.net/login#token="),
        "an App Link, the token in the fragment: {link}"
    );
    // What Android and iOS check before they let the app open such links.
    let http = reqwest::blocking::Client::new();
    let get = |path: &str| {
        let r = http.get(format!("{}{path}", s.url)).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let (status, android) = get("/.well-known/assetlinks.json");
    assert_eq!(status, 200);
    let android: serde_json::Value = serde_json::from_str(&android).unwrap();
    assert_eq!(android[0]["target"]["package_name"], "ca.fibre.fsm");
    assert_eq!(
        android[0]["target"]["sha256_cert_fingerprints"][0],
        "AB:CD:EF"
    );
    let (status, apple) = get("/.well-known/apple-app-site-association");
    assert_eq!(status, 200);
    assert!(apple.contains("TEAM123456.ca.fibre.fsm"));
    let (status, page) = get("/login");
    assert_eq!(status, 200);
    assert!(page.contains("application"));

    // The device that redeems the link is recorded; a second use is refused and recorded too.
    let device = DocId::from_u128(0xd0a2).to_string();
    let token = link.split_once("token=").unwrap().1;
    let exchange = || {
        post_json(
            &format!("{}/api/v1/auth/exchange", s.url),
            None,
            &serde_json::json!({ "magic": token, "device": device }),
        )
    };
    assert_eq!(exchange().0, 200);
    let (status, body) = exchange();
    assert_eq!((status, body["code"].as_str()), (401, Some("link_used")));
    let audit = |t: &str| {
        let r = http
            .get(format!("{}/api/v1/audit", s.url))
            .bearer_auth(t)
            .send()
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().unwrap_or_default(),
        )
    };
    let (status, entries) = audit(&office);
    assert_eq!(status, 200);
    let events: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["link_reused", "link_redeemed", "link_issued"],
        "newest first"
    );
    assert_eq!(entries[1]["device"], device);
    assert_eq!(entries[1]["technician"], tech.to_string());
    let tech_token = session_token(&s, 0xd0a3, Role::Technician, Some(tech));
    assert_eq!(audit(&tech_token).0, 403, "the office reads the audit log");
    // A server without them configured publishes no association files.
    let plain = start();
    let r = http
        .get(format!("{}/.well-known/assetlinks.json", plain.url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

#[test]
fn office_accounts_sign_in_by_link_and_lose_their_sessions_when_disabled() {
    let s = start();
    let admin = session_token(&s, 0xd0b1, Role::Admin, None);
    let url = |p: &str| format!("{}{p}", s.url);
    let http = reqwest::blocking::Client::new();
    let get = |t: &str, p: &str| {
        http.get(url(p))
            .bearer_auth(t)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let (status, created) = post_json(
        &url("/api/v1/admin/accounts"),
        Some(&admin),
        &serde_json::json!({ "name": "Julie Tremblay", "role": "dispatcher" }),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["account"]["id"].as_str().unwrap().to_owned();
    let first_link = created["link"].as_str().unwrap().to_owned();
    let redeem = |link: &str| {
        let token = link.split_once("token=").unwrap().1;
        post_json(
            &url("/api/v1/auth/exchange"),
            None,
            &serde_json::json!({ "magic": token, "device": DocId::from_u128(0xd0b2).to_string() }),
        )
    };
    let (status, body) = redeem(&first_link);
    assert_eq!(status, 200, "{body}");
    let julie = body["token"].as_str().unwrap().to_owned();
    assert_eq!(get(&julie, "/api/v1/audit"), 200, "a dispatcher's session");
    assert_eq!(get(&julie, "/api/v1/admin/accounts"), 403, "not an admin");
    // Promoted: the dispatcher's sessions end; a new link signs in as an admin.
    let change = |body: serde_json::Value| {
        post_json(
            &url(&format!("/api/v1/admin/accounts/{id}")),
            Some(&admin),
            &body,
        )
    };
    let (status, body) = change(serde_json::json!({ "role": "admin", "new_link": true }));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        get(&julie, "/api/v1/audit"),
        401,
        "the old role's session ended"
    );
    let (status, body) = redeem(body["link"].as_str().unwrap());
    assert_eq!(status, 200, "{body}");
    let julie_admin = body["token"].as_str().unwrap().to_owned();
    assert_eq!(get(&julie_admin, "/api/v1/admin/accounts"), 200);
    // An unused link made before she was disabled does not sign in afterwards.
    let (_, body) = change(serde_json::json!({ "new_link": true }));
    let spare = body["link"].as_str().unwrap().to_owned();
    let (status, _) = change(serde_json::json!({ "active": false }));
    assert_eq!(status, 200);
    assert_eq!(get(&julie_admin, "/api/v1/admin/accounts"), 401);
    let (status, body) = redeem(&spare);
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("account_disabled"))
    );
    assert_eq!(change(serde_json::json!({ "new_link": true })).0, 400);
    assert!(
        change(serde_json::json!({ "password": "x" })).0 >= 400,
        "unknown fields"
    );
    let (status, list) = {
        let r = http
            .get(url("/api/v1/admin/accounts"))
            .bearer_auth(&admin)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json::<serde_json::Value>().unwrap())
    };
    assert_eq!(status, 200);
    assert_eq!(list[0]["active"], false);
    assert_eq!(list[0]["role"], "admin");
}

#[test]
fn an_operator_scrapes_metrics_with_an_office_token() {
    let s = start();
    let get = |token: Option<&str>| {
        let mut r = reqwest::blocking::Client::new().get(format!("{}/metrics", s.url));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    assert_eq!(get(None).0, 401, "no token, no figures");
    let tech_token = session_token(&s, 0xd0fe, Role::Technician, Some(s.data.technicians[0]));
    assert_eq!(get(Some(&tech_token)).0, 403, "not for technicians");
    let (mut tech, mut tech_net) = client(&s, Role::Technician, 1);
    tech.sync(&mut tech_net).unwrap();
    let office_token = session_token(&s, 0xd0ff, Role::Dispatcher, None);
    let events = listen(&s.url, &office_token, None);
    let (status, text) = get(Some(&office_token));
    assert_eq!(status, 200);
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in:\n{text}"))
    };
    assert!(value("fsm_sync_exchanges_total{outcome=\"ok\"}") >= 1.0);
    assert!(value("fsm_sync_exchange_seconds_count") >= 1.0);
    assert!(value("fsm_store_commit_seconds_count") >= 1.0);
    assert_eq!(value("fsm_live_streams"), 1.0, "the open live stream");
    assert!(value("fsm_documents") > 10.0, "the demo's documents");
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with EOF");
    drop(events);
    // Every answer carries a request id: the caller's, or a new one.
    let r = reqwest::blocking::Client::new()
        .get(format!("{}/health", s.url))
        .header("x-request-id", "scrape-42")
        .send()
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "scrape-42");
    let r = reqwest::blocking::get(format!("{}/health", s.url)).unwrap();
    assert_eq!(r.headers()["x-request-id"].len(), 36, "a fresh UUID");
}
