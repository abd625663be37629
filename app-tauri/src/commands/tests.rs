//! The commands through Tauri's IPC with a mock runtime: real argument decoding, real core, real
//! SQLite in a temporary folder, and the structured errors the UI matches on.

use std::sync::Arc;

use base64::Engine as _;
use chrono::{NaiveDate, NaiveTime};
use serde_json::{Value, json};
use shared::ids::{CustomerId, DocId, EquipmentId, JobId, LocationId, TechnicianId};
use shared::model::{
    Address, AnyEntity, Customer, CustomerKind, DispatchJob, DispatchTechnician, EquipmentStatus,
    EquipmentType, JobStatus, Language, MacAddr, Name, PostalCode, Priority, Serial,
    ServiceEquipment, ServiceLocation, Shift, WeeklySchedule,
};
use tauri::test::{INVOKE_KEY, MockRuntime, get_ipc_response, mock_builder};
use tauri::webview::InvokeRequest;
use tauri::{App, WebviewWindow, WebviewWindowBuilder};

const CUSTOMER: CustomerId = CustomerId(DocId::from_u128(0xc1));
const LOCATION: LocationId = LocationId(DocId::from_u128(0x11));
const JOB: JobId = JobId(DocId::from_u128(0x10b));
const TECH: TechnicianId = TechnicianId(DocId::from_u128(0x7e));
const ONT: EquipmentId = EquipmentId(DocId::from_u128(0xe1));

/// A token as the server issues them; the app reads its claims and never checks the signature.
fn token(role: &str, tech: Option<TechnicianId>) -> String {
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(v).expect("json"))
    };
    let claims = json!({
        "sub": DocId::from_u128(0xd0).to_string(),
        "role": role,
        "tech": tech.map(|t| t.to_string()),
        "iat": 0, "exp": 4_000_000_000_i64, "jti": "x", "kind": "session",
    });
    format!("{}.{}.sig", b64(&json!({"alg": "HS256"})), b64(&claims))
}

/// The fixture: a customer, a location, an ONT in stock, a technician and a job on 2026-11-23,
/// assigned to `tech` when given.
fn fixture(tech: Option<TechnicianId>) -> Vec<AnyEntity> {
    let today = NaiveDate::from_ymd_opt(2026, 11, 23).expect("date");
    let shift = Shift::new(
        NaiveTime::from_hms_opt(8, 0, 0).expect("t"),
        NaiveTime::from_hms_opt(17, 0, 0).expect("t"),
    )
    .expect("shift");
    vec![
        AnyEntity::Customer(Customer {
            id: CUSTOMER,
            erp_name: None,
            name: Name::parse("Marie Tremblay").expect("name"),
            kind: CustomerKind::ALL[0],
            phone: Some(shared::model::Phone::parse("819 555-1234").expect("phone")),
            email: None,
            language: Language::ALL[0],
            stripe_id: None,
            is_commercial: false,
            ppa_enabled: false,
        }),
        AnyEntity::Location(ServiceLocation {
            id: LOCATION,
            erp_name: None,
            customer: CUSTOMER,
            address: Address {
                line1: Name::parse("12 rue des Érables").expect("line"),
                city: Name::parse("Sherbrooke").expect("city"),
                province: "QC".into(),
                postal_code: PostalCode::parse("J1H 1A1").expect("postal"),
            },
            gps: None,
            olt_port: None,
            vlan: None,
            network_notes: String::new(),
            contacts: vec![],
        }),
        AnyEntity::Equipment(ServiceEquipment {
            id: ONT,
            erp_name: None,
            location: None,
            kind: EquipmentType::Ont,
            serial: Serial::parse("ZTEG12345678").expect("serial"),
            mac: Some(MacAddr::parse("AA:BB:CC:00:11:22").expect("mac")),
            management_ip: None,
            model: None,
            firmware: None,
            status: EquipmentStatus::EnStock,
            duplicate_of: None,
        }),
        AnyEntity::Technician(DispatchTechnician {
            id: TECH,
            erp_name: None,
            name: Name::parse("Julie Gagnon").expect("name"),
            phone: None,
            active: true,
            home: None,
            weekly: WeeklySchedule([Some(shift); 7]),
            extra_shifts: vec![],
            absences: vec![],
            skills: vec![],
        }),
        AnyEntity::Job(Box::new(DispatchJob {
            id: JOB,
            erp_name: None,
            customer: CUSTOMER,
            location: LOCATION,
            title: Name::parse("Installation fibre").expect("title"),
            description: String::new(),
            technician: tech,
            assistants: vec![],
            required_tags: vec![],
            date: today,
            start: Some(NaiveTime::from_hms_opt(9, 0, 0).expect("t")),
            duration_min: 90,
            recurrence: None,
            priority: Priority::Normal,
            status: if tech.is_some() {
                JobStatus::Scheduled
            } else {
                JobStatus::Open
            },
            check_in: None,
            actual_start: None,
            actual_end: None,
            signature: None,
            notes: vec![],
            checklist: vec![],
            materials: vec![],
            equipment_items: vec![],
            photos: vec![],
            time_log: vec![],
            diagnostics: vec![],
        })),
    ]
}

/// A dispatcher's device holding the fixture (created there, waiting to sync).
fn seed(dir: &std::path::Path) {
    let clock = Arc::new(app_tauri_core::device::SystemClock);
    let mut d = app_tauri_core::device::Device::open(dir, clock).expect("open");
    // Port 9 (discard) on loopback: nothing answers, so the device stays offline in these tests.
    d.login_with_token("http://127.0.0.1:9", &token("Dispatcher", None))
        .expect("login");
    let r = d.replica_mut().expect("replica");
    for e in &fixture(None) {
        r.create(e).expect("create");
    }
}

/// A technician's device that synced the fixture (its job assigned to `TECH`) from a server
/// engine, as it would from the sync server.
fn seed_technician(dir: &std::path::Path) {
    use shared::ids::{Author, DeviceId, Role};
    use shared::protocol::{self, Message};
    use shared::sync::server::{ServerConfig, ServerEngine, Subject};

    struct Direct<'a>(&'a mut ServerEngine, DeviceId);
    impl app_tauri_core::Transport for Direct<'_> {
        fn exchange(
            &mut self,
            request: Vec<u8>,
        ) -> Result<Vec<u8>, app_tauri_core::TransportError> {
            let Ok(Message::Request(req)) = protocol::decode(&request) else {
                panic!("the device sent an unreadable frame");
            };
            let now = shared::clock::Millis(1_795_424_400_000); // 2026-11-23 09:00 UTC
            let msg = match self.0.sync(self.1, &req, now.date(), now) {
                Ok((resp, _)) => Message::Response(resp),
                Err(refusal) => Message::Refused(refusal),
            };
            Ok(protocol::encode(&msg))
        }
    }
    let clock = Arc::new(app_tauri_core::device::SystemClock);
    let mut d = app_tauri_core::device::Device::open(dir, clock).expect("open");
    d.login_with_token("http://127.0.0.1:9", &token("Technician", Some(TECH)))
        .expect("login");
    let author = d.replica().expect("replica").author();
    let mut engine = ServerEngine::new(ServerConfig::new(Author::new(
        Role::Server,
        DeviceId(DocId::from_u128(0x5e)),
    )));
    engine
        .insert_all(
            &fixture(Some(TECH)),
            shared::clock::Millis(1_795_424_400_000),
        )
        .expect("seed the engine");
    engine.register(author.device, author, Subject::Technician(TECH));
    d.replica_mut()
        .expect("replica")
        .sync(&mut Direct(&mut engine, author.device))
        .expect("sync");
}

fn app(dir: &std::path::Path) -> (App<MockRuntime>, WebviewWindow<MockRuntime>) {
    let app = crate::create_app(mock_builder(), Some(dir.to_owned())).expect("app");
    let w = WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .expect("window");
    (app, w)
}

fn call(w: &WebviewWindow<MockRuntime>, cmd: &str, args: Value) -> Result<Value, Value> {
    get_ipc_response(
        w,
        InvokeRequest {
            cmd: cmd.into(),
            callback: tauri::ipc::CallbackFn(0),
            error: tauri::ipc::CallbackFn(1),
            url: "tauri://localhost".parse().expect("url"),
            body: tauri::ipc::InvokeBody::Json(json!({ "args": args })),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.to_string(),
        },
    )
    .map(|b| b.deserialize::<Value>().expect("json answer"))
}

fn kind(e: Result<Value, Value>) -> String {
    e.expect_err("an error")["kind"]
        .as_str()
        .expect("kind")
        .to_owned()
}

#[test]
fn without_a_login_every_data_command_says_not_logged_in() {
    let dir = tempfile::tempdir().expect("tmp");
    let (_app, w) = app(dir.path());
    assert_eq!(call(&w, "session_get", Value::Null), Ok(Value::Null));
    let range = json!({"from": "2026-11-23", "to": "2026-11-23"});
    assert_eq!(kind(call(&w, "job_list", range.clone())), "not_logged_in");
    assert_eq!(kind(call(&w, "board_get", range)), "not_logged_in");
    // A pasted credential that is not a link or token, and a bad address, are refused clearly.
    let e = call(
        &w,
        "session_login",
        json!({"server": "http://127.0.0.1:9", "credential": "hello"}),
    );
    assert_eq!(kind(e), "invalid");
    let e = call(
        &w,
        "session_login",
        json!({"server": "ftp://x", "credential": token("Dispatcher", None)}),
    );
    assert_eq!(kind(e), "invalid");
    assert_eq!(
        call(&w, "session_get", Value::Null),
        Ok(Value::Null),
        "nothing was saved"
    );
}

#[test]
fn the_link_that_opened_the_app_is_handed_to_the_login_screen_once() {
    use tauri::Manager as _;
    let dir = tempfile::tempdir().expect("tmp");
    let (app, w) = app(dir.path());
    assert_eq!(call(&w, "login_link_take", Value::Null), Ok(Value::Null));
    let link = "fsm://login?token=abc";
    *app.state::<crate::AppState>()
        .pending_link
        .lock()
        .expect("lock") = Some(link.into());
    assert_eq!(call(&w, "login_link_take", Value::Null), Ok(json!(link)));
    assert_eq!(
        call(&w, "login_link_take", Value::Null),
        Ok(Value::Null),
        "taken once"
    );
}

#[test]
fn commands_read_and_edit_the_replica_and_refuse_bad_input() {
    let dir = tempfile::tempdir().expect("tmp");
    seed(dir.path());
    let (_app, w) = app(dir.path());
    let session = call(&w, "session_get", Value::Null).expect("session");
    assert_eq!(session["role"], "dispatcher");
    assert_eq!(session["mobile"], false);

    let board = call(
        &w,
        "board_get",
        json!({"from": "2026-11-23", "to": "2026-11-23"}),
    )
    .expect("board");
    assert_eq!(board["technicians"][0]["name"], "Julie Gagnon");
    assert_eq!(board["technicians"][0]["shift"], "08:00–17:00");
    assert_eq!(board["unassigned"][0]["title"], "Installation fibre");
    assert_eq!(
        board["unassigned"][0]["address"],
        "12 rue des Érables, Sherbrooke QC J1H 1A1"
    );
    assert_eq!(board["towns"], json!(["Sherbrooke"]));
    assert_eq!(board["kinds"], json!(["Installation fibre"]));
    assert_eq!(board["hidden"], 0);
    // The board's search and filters: customer name, address, phone (either way it is
    // written), town, type and status; what they hide is counted.
    let filtered = |filter: Value| {
        let b = call(
            &w,
            "board_get",
            json!({"from": "2026-11-23", "to": "2026-11-23", "filter": filter}),
        )
        .expect("board");
        (
            b["unassigned"].as_array().map_or(0, Vec::len),
            b["hidden"].as_u64().unwrap_or(99),
        )
    };
    for kept in [
        json!({"query": "tremb"}),
        json!({"query": "erables"}),
        json!({"query": "(819) 555-1234"}),
        json!({"query": "819555"}),
        json!({"query": "fibre"}),
        json!({"town": "sherbrooke", "kind": "Installation fibre", "statuses": ["open", "scheduled"]}),
    ] {
        assert_eq!(filtered(kept.clone()), (1, 0), "{kept} keeps the job");
    }
    for hidden in [
        json!({"query": "gagnon"}),
        json!({"query": "514 555"}),
        json!({"town": "Gatineau"}),
        json!({"kind": "Réparation"}),
        json!({"statuses": ["en_route", "on_site"]}),
        json!({"skill": DocId::from_u128(0x7a9).to_string()}),
    ] {
        assert_eq!(filtered(hidden.clone()), (0, 1), "{hidden} hides the job");
    }

    // Auto-dispatch: the technician works 08–17 and is free, so she is eligible, with reasons.
    let s = call(&w, "job_suggest", json!({"id": JOB.to_string()})).expect("suggest");
    assert_eq!(s[0]["eligible"], true);
    assert!(s[0]["reasons"].as_array().is_some_and(|r| !r.is_empty()));

    let job = call(
        &w,
        "job_assign",
        json!({"id": JOB.to_string(), "technician": TECH.to_string(), "date": "2026-11-23", "start": "10:00"}),
    )
    .expect("assign");
    assert_eq!(job["summary"]["status"], "scheduled");
    assert_eq!(job["summary"]["start"], "10:00");
    assert_eq!(job["technician_name"], "Julie Gagnon");

    let found = call(&w, "equipment_search", json!({"query": "zteg12"})).expect("search");
    assert_eq!(found[0]["serial"], "ZTEG12345678");
    let found = call(&w, "equipment_search", json!({"query": "aa:bb:cc:00"})).expect("mac");
    assert_eq!(found[0]["id"], ONT.to_string());
    let job = call(
        &w,
        "job_equipment",
        json!({"id": JOB.to_string(), "equipment": ONT.to_string(), "action": "install", "replaces": null}),
    )
    .expect("install");
    assert_eq!(job["equipment_moves"][0]["text"], "install ZTEG12345678");

    let job = call(
        &w,
        "job_add_note",
        json!({"id": JOB.to_string(), "text": "Client absent, rappeler"}),
    )
    .expect("note");
    assert_eq!(job["notes"][0]["text"], "Client absent, rappeler");
    let pending = call(&w, "status_get", Value::Null).expect("status")["pending_changes"]
        .as_u64()
        .expect("count");
    assert!(
        pending >= 8,
        "creations and edits wait for the server: {pending}"
    );

    // Bad input: a clear, typed error, and nothing changes.
    assert_eq!(kind(call(&w, "job_get", json!({"id": "nope"}))), "invalid");
    assert_eq!(
        kind(call(
            &w,
            "job_get",
            json!({"id": DocId::from_u128(0x999).to_string()})
        )),
        "not_found"
    );
    assert_eq!(
        kind(call(
            &w,
            "job_set_status",
            json!({"id": JOB.to_string(), "status": "flying"})
        )),
        "invalid"
    );
    assert_eq!(
        kind(call(
            &w,
            "job_add_note",
            json!({"id": JOB.to_string(), "text": "  "})
        )),
        "invalid"
    );
    assert_eq!(
        kind(call(
            &w,
            "job_add_photo",
            json!({"id": JOB.to_string(), "base64": "@@@", "caption": null})
        )),
        "invalid"
    );
    assert!(call(&w, "job_list", json!({"from": "23/11/2026", "to": "x"})).is_err());
    // A malformed argument object is refused by the IPC layer before any command runs.
    assert!(call(&w, "job_get", json!({"identifier": 1})).is_err());
    let after = call(&w, "status_get", Value::Null).expect("status")["pending_changes"]
        .as_u64()
        .expect("count");
    assert_eq!(after, pending, "refused input queued nothing");

    // A photo taken offline is kept on the device and shown as waiting for upload.
    let png = base64::engine::general_purpose::STANDARD.encode(b"\x89PNG fake image bytes");
    let job = call(
        &w,
        "job_add_photo",
        json!({"id": JOB.to_string(), "base64": png, "caption": "ONT"}),
    )
    .expect("photo");
    assert_eq!(job["photos"][0]["text"], "ONT");
    assert_eq!(job["photos"][0]["done"], false);
    assert_eq!(
        call(&w, "status_get", Value::Null).expect("status")["photos_waiting"],
        1
    );
}

#[test]
fn the_capability_grants_exactly_the_app_commands() {
    let cap: Value =
        serde_json::from_str(include_str!("../../capabilities/default.json")).expect("json");
    let mut granted: Vec<String> = cap["permissions"]
        .as_array()
        .expect("permissions")
        .iter()
        .filter_map(|p| p.as_str())
        .filter_map(|p| p.strip_prefix("allow-"))
        .map(|p| p.replace('-', "_"))
        .collect();
    let mut commands: Vec<String> = include_str!("../../build.rs")
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix('"')?
                .strip_suffix("\",")
                .map(str::to_owned)
        })
        .collect();
    granted.sort();
    commands.sort();
    assert_eq!(granted, commands);
    // No plugin or core permission beyond listening to events.
    let others: Vec<&str> = cap["permissions"]
        .as_array()
        .expect("permissions")
        .iter()
        .filter_map(|p| p.as_str())
        .filter(|p| !p.starts_with("allow-"))
        .collect();
    assert_eq!(
        others,
        ["core:event:allow-listen", "core:event:allow-unlisten"]
    );
}

#[test]
fn a_technician_lists_own_jobs_and_follows_the_state_machine() {
    let dir = tempfile::tempdir().expect("tmp");
    seed_technician(dir.path());
    let (_app, w) = app(dir.path());
    let session = call(&w, "session_get", Value::Null).expect("session");
    assert_eq!(session["role"], "technician");
    let list = call(
        &w,
        "job_list",
        json!({"from": "2026-11-23", "to": "2026-12-06"}),
    )
    .expect("list");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["id"], JOB.to_string());
    assert_eq!(list[0]["customer"], "Marie Tremblay");
    assert_eq!(list[0]["start"], "09:00");
    let empty = call(
        &w,
        "job_list",
        json!({"from": "2026-11-24", "to": "2026-11-30"}),
    )
    .expect("list");
    assert_eq!(empty, json!([]));

    let detail = call(&w, "job_get", json!({"id": JOB.to_string()})).expect("detail");
    assert_eq!(
        detail["next_statuses"],
        json!(["en_route", "on_site"]),
        "{detail}"
    );
    // The office's transitions are refused to a technician, with a kind the UI can show.
    let e = call(
        &w,
        "job_set_status",
        json!({"id": JOB.to_string(), "status": "cancelled"}),
    );
    assert_eq!(kind(e), "denied");
    let d = call(
        &w,
        "job_set_status",
        json!({"id": JOB.to_string(), "status": "en_route"}),
    )
    .expect("en route");
    assert_eq!(d["summary"]["status"], "en_route");
    // The office's screens are refused.
    assert_eq!(
        kind(call(
            &w,
            "board_get",
            json!({"from": "2026-11-23", "to": "2026-11-23"})
        )),
        "denied"
    );
    assert_eq!(
        kind(call(&w, "job_suggest", json!({"id": JOB.to_string()}))),
        "denied"
    );
    assert_eq!(
        kind(call(&w, "location_search", json!({"query": "Érables"}))),
        "denied"
    );
}
