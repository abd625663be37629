//! The hub's SMS side end to end: the Twilio client held to one contract suite (run against the
//! double here, and against Twilio itself with test credentials when `FSM_TEST_TWILIO_*` name
//! them), and the outbox through the server: sent once, delivery shown from Twilio's signed
//! callbacks, a lost answer never sent twice by itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use shared::ids::{DeviceId, DocId, Role};
use shared::model::AnyEntity;
use sync_server::AppState;
use sync_server::auth::Keys;
use sync_server::doubles::twilio::{Fault, TwilioDouble};
use sync_server::hub::twilio::{SendError, SmsGateway, TwilioClient};
use sync_server::hub::{Hub, HubSettings};
use sync_server::settings::{Secret, TwilioSettings};

use crate::world::seeded_service;

const SID: &str = "AC00000000000000000000000000000000";
const TOKEN: &str = "twilio double's auth token";
const PUBLIC: &str = "https://sync.example.test";
/// Twilio's test-credential sender number.
const FROM: &str = "+15005550006";

fn settings(api_url: &str, sid: &str, token: &str, from: &str) -> TwilioSettings {
    TwilioSettings {
        account_sid: sid.into(),
        auth_token: Secret::new(token),
        from: from.into(),
        api_url: api_url.into(),
    }
}

/// What every Twilio account (the double, or Twilio with test credentials) answers alike.
fn contract(rt: &tokio::runtime::Runtime, good: &TwilioClient, bad_auth: &TwilioClient) {
    let sent = rt
        .block_on(good.send("+15145550100", "Votre technicien arrive vers 10 h.", None))
        .expect("a valid number is sent");
    assert!(
        sent.sid.starts_with("SM") && sent.sid.len() == 34,
        "a message sid: {}",
        sent.sid
    );
    for (to, code) in [
        ("+15005550001", 21211),
        ("+15005550004", 21610),
        ("+15005550009", 21614),
    ] {
        match rt.block_on(good.send(to, "test", None)) {
            Err(SendError::Final { code: c, message }) => {
                assert_eq!(c, Some(code), "{to}: {message}");
                assert!(!message.is_empty());
            }
            other => panic!("{to}: expected a final refusal {code}, got {other:?}"),
        }
    }
    match rt.block_on(bad_auth.send("+15145550100", "test", None)) {
        Err(SendError::Final { code, .. }) => assert_eq!(code, Some(20003)),
        other => panic!("wrong credentials: {other:?}"),
    }
}

/// A one-hour token for test device `n` as `role`.
fn token_for(keys: &Keys, n: u128, role: Role, tech: Option<shared::ids::TechnicianId>) -> String {
    use shared::clock::Clock as _;
    let now_s = sync_server::SystemClock.now().0 / 1000;
    keys.issue(DeviceId(DocId::from_u128(n)), role, tech, now_s, 3600)
        .unwrap()
}

/// Serves `svc` with `hub` on a port the system picks; the keys its tokens are signed with.
fn serve_hub(
    rt: &tokio::runtime::Runtime,
    svc: &Arc<sync_server::service::SyncService>,
    hub: &Arc<Hub>,
) -> (u16, Arc<Keys>) {
    let keys = Arc::new(Keys::from_secret(
        b"hub test secret, thirty-two bytes or more",
    ));
    let state = AppState {
        sync: Arc::clone(svc),
        keys: Arc::clone(&keys),
        erp: None,
        photos: None,
        links: Default::default(),
        hub: Some(Arc::clone(hub)),
    };
    let port = rt.block_on(async {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        tokio::spawn(sync_server::serve(tcp, state, std::future::pending()));
        port
    });
    (port, keys)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn hub_twilio_contract_against_the_double() {
    let rt = runtime();
    let double = TwilioDouble::new(SID, TOKEN);
    let api = rt.block_on(double.start()).unwrap();
    let good = TwilioClient::new(settings(&api, SID, TOKEN, FROM), Duration::from_secs(5)).unwrap();
    let bad =
        TwilioClient::new(settings(&api, SID, "wrong", FROM), Duration::from_secs(5)).unwrap();
    contract(&rt, &good, &bad);
    assert_eq!(double.accepted().len(), 1, "only the valid text was sent");
    // What only the double can be made to do: rate limits and failures, retried by the caller.
    double.inject([Fault::RateLimit, Fault::ServerError]);
    match rt.block_on(good.send("+15145550100", "x", None)) {
        Err(SendError::Retry {
            code: Some(20429),
            after: Some(d),
            ..
        }) => assert_eq!(d, Duration::from_secs(1)),
        other => panic!("rate limited: {other:?}"),
    }
    assert!(matches!(
        rt.block_on(good.send("+15145550100", "x", None)),
        Err(SendError::Retry {
            code: Some(20500),
            ..
        })
    ));
    // An answer that comes after the client gave up: the text may have gone, and it did.
    let impatient =
        TwilioClient::new(settings(&api, SID, TOKEN, FROM), Duration::from_millis(300)).unwrap();
    double.inject([Fault::SlowAnswer(Duration::from_secs(2))]);
    assert!(matches!(
        rt.block_on(impatient.send("+15145550100", "x", None)),
        Err(SendError::Unknown(_))
    ));
    assert_eq!(double.accepted().len(), 2);
}

#[test]
fn hub_twilio_contract_against_twilio() {
    #[allow(clippy::disallowed_methods)] // test configuration
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (Some(sid), Some(token)) = (
        env("FSM_TEST_TWILIO_ACCOUNT_SID"),
        env("FSM_TEST_TWILIO_AUTH_TOKEN"),
    ) else {
        eprintln!(
            "skipped: set FSM_TEST_TWILIO_ACCOUNT_SID and FSM_TEST_TWILIO_AUTH_TOKEN (Twilio's test credentials) to run the Twilio contract suite against Twilio"
        );
        return;
    };
    let api = env("FSM_TEST_TWILIO_API_URL").unwrap_or_else(|| "https://api.twilio.com".into());
    let rt = runtime();
    let good =
        TwilioClient::new(settings(&api, &sid, &token, FROM), Duration::from_secs(20)).unwrap();
    let bad = TwilioClient::new(
        settings(&api, &sid, "not-the-token", FROM),
        Duration::from_secs(20),
    )
    .unwrap();
    contract(&rt, &good, &bad);
}

/// A server with the hub on, its outbox sending through the double, and the double's
/// callbacks routed back to it.
struct Hubbed {
    rt: tokio::runtime::Runtime,
    port: u16,
    double: TwilioDouble,
    token: String,
    hub: Arc<Hub>,
    customer_phone: String,
    svc: Arc<sync_server::service::SyncService>,
    keys: Arc<Keys>,
    data: tests::data::Dataset,
    stopped: tokio::sync::watch::Receiver<bool>,
    _stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

fn hubbed(client_timeout: Duration) -> Hubbed {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (svc, data) = seeded_service(dir.path());
    let customer_phone = data
        .entities
        .iter()
        .find_map(|e| match e {
            AnyEntity::Customer(c) => c.phone.as_ref().map(|p| p.as_str().to_owned()),
            _ => None,
        })
        .expect("the data set has a customer with a phone");
    let double = TwilioDouble::new(SID, TOKEN);
    let api = rt.block_on(double.start()).unwrap();
    let twilio = settings(&api, SID, TOKEN, FROM);
    let hub = Hub::open(
        dir.path(),
        HubSettings {
            twilio: Some(twilio.clone()),
            stripe: None,
            public_url: Some(PUBLIC.into()),
            full_sync: false,
            vision: None,
            pages: None,
            uptime_kuma_secret: None,
            acs: None,
            usp: None,
            olts: Vec::new(),
        },
        sync_server::hub::customers_by_phone(Arc::clone(&svc)),
    )
    .unwrap();
    let (port, keys) = serve_hub(&rt, &svc, &hub);
    let token = token_for(&keys, 0xd1, Role::Dispatcher, None);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let clock: Arc<dyn shared::clock::Clock> = Arc::new(sync_server::SystemClock);
    rt.spawn(sync_server::hub::inbox::run(
        Arc::clone(&hub.inbox),
        hub.handlers(None),
        Arc::clone(&clock),
        stopped.clone(),
    ));
    rt.spawn(sync_server::hub::twilio::run_sender(
        Arc::clone(&hub.sms),
        Arc::new(TwilioClient::new(twilio, client_timeout).unwrap()),
        Some(PUBLIC.into()),
        clock,
        stopped.clone(),
    ));
    double.route_callbacks(PUBLIC, &format!("http://127.0.0.1:{port}"));
    Hubbed {
        rt,
        port,
        double,
        token,
        hub,
        customer_phone,
        svc,
        keys,
        data,
        stopped,
        _stop: stop,
        _dir: dir,
    }
}

impl Hubbed {
    fn client(&self) -> reqwest::blocking::Client {
        sync_server::tls::install_crypto();
        reqwest::blocking::Client::new()
    }
    fn send(&self, phone: &str, body: &str) -> reqwest::blocking::Response {
        self.client()
            .post(format!(
                "http://127.0.0.1:{}/api/v1/sms/threads/{phone}",
                self.port
            ))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({ "body": body }))
            .send()
            .unwrap()
    }
    fn thread(&self, phone: &str) -> Vec<Value> {
        let v: Value = self
            .client()
            .get(format!(
                "http://127.0.0.1:{}/api/v1/sms/threads/{phone}",
                self.port
            ))
            .bearer_auth(&self.token)
            .send()
            .unwrap()
            .json()
            .unwrap();
        v.as_array().unwrap().clone()
    }
    fn resend(&self, outbox: i64) -> reqwest::blocking::Response {
        self.client()
            .post(format!(
                "http://127.0.0.1:{}/api/v1/sms/messages/{outbox}/resend",
                self.port
            ))
            .bearer_auth(&self.token)
            .send()
            .unwrap()
    }
    /// Waits (bounded) until the thread's message for outbox `id` has `status`.
    fn status_becomes(&self, phone: &str, id: i64, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self
                .thread(phone)
                .into_iter()
                .find(|m| m["outbox"] == id)
                .unwrap_or(Value::Null);
            if found["status"] == status {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "outbox {id} never became {status}: {found}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn hub_a_dispatcher_texts_a_customer_and_sees_it_delivered() {
    let h = hubbed(Duration::from_secs(10));
    let phone = h.customer_phone.clone();
    let r = h.send(
        &phone,
        "Bonjour, votre technicien arrive entre 10 h et 11 h.",
    );
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().unwrap()["id"].as_i64().unwrap();
    let m = h.status_becomes(&phone, id, "delivered");
    assert!(m["sid"].as_str().unwrap().starts_with("SM"), "{m}");
    assert_eq!(
        m["body"],
        "Bonjour, votre technicien arrive entre 10 h et 11 h."
    );
    assert!(
        m["author"].as_str().unwrap().starts_with("dispatcher:"),
        "{m}"
    );
    let sent = h.double.accepted();
    assert_eq!(sent.len(), 1, "sent once");
    assert_eq!(sent[0].to, phone);
    assert_eq!(sent[0].from, FROM);
    // The conversation is the customer's.
    let threads: Value = h
        .client()
        .get(format!("http://127.0.0.1:{}/api/v1/sms/threads", h.port))
        .bearer_auth(&h.token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(threads[0]["phone"], phone.as_str());
    assert!(threads[0]["customer"].is_string(), "matched: {threads}");
    drop(h.rt);
}

#[test]
fn hub_a_lost_answer_is_never_sent_twice_by_itself() {
    let h = hubbed(Duration::from_millis(400));
    let phone = h.customer_phone.clone();
    // Twilio sends the text but its answer comes too late, and no callback will come.
    h.double.set_callbacks(&[]);
    h.double.inject([Fault::SlowAnswer(Duration::from_secs(2))]);
    let id = h.send(&phone, "Texte 1").json::<Value>().unwrap()["id"]
        .as_i64()
        .unwrap();
    let m = h.status_becomes(&phone, id, "unknown");
    assert!(m["error"].is_string(), "the sender is told why: {m}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(h.double.accepted().len(), 1, "nothing sent again by itself");
    // A person decides to send it again: a second text, once.
    let r = h.resend(id);
    assert_eq!(r.status(), 202);
    let again = r.json::<Value>().unwrap()["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.double.accepted().len() < 2 {
        assert!(Instant::now() < deadline, "the resend never went out");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(h.double.accepted().len(), 2);
    // A delivered text cannot be resent.
    assert_eq!(h.resend(again).status(), 409);

    // With callbacks, an unknown text settles by itself: Twilio says it went.
    h.double.set_callbacks(&["sent", "delivered"]);
    h.double.inject([Fault::SlowAnswer(Duration::from_secs(2))]);
    let id = h.send(&phone, "Texte 2").json::<Value>().unwrap()["id"]
        .as_i64()
        .unwrap();
    let m = h.status_becomes(&phone, id, "delivered");
    assert!(m["sid"].as_str().unwrap().starts_with("SM"), "{m}");
    assert_eq!(h.double.accepted().len(), 3, "each text once");
    drop(h.rt);
}

#[test]
fn hub_refused_rate_limited_and_opted_out_texts() {
    let h = hubbed(Duration::from_secs(10));
    // An invalid number: refused by Twilio for good, shown with its code, not retried.
    let id = h.send("+15005550001", "x").json::<Value>().unwrap()["id"]
        .as_i64()
        .unwrap();
    let m = h.status_becomes("+15005550001", id, "failed");
    assert_eq!(m["error_code"], 21211, "{m}");
    assert_eq!(h.double.requests(), 1);
    // Rate limited twice, then sent: one text.
    h.double.inject([Fault::RateLimit, Fault::RateLimit]);
    let phone = h.customer_phone.clone();
    let id = h.send(&phone, "y").json::<Value>().unwrap()["id"]
        .as_i64()
        .unwrap();
    h.status_becomes(&phone, id, "delivered");
    assert_eq!(h.double.requests(), 4);
    assert_eq!(h.double.accepted().len(), 1);
    // A customer who texted ARRET is not texted, and is told how to undo it.
    h.hub.sms.inbound("SMin1", &phone, "ARRET", 1).unwrap();
    let r = h.send(&phone, "z");
    assert_eq!(r.status(), 409);
    let v: Value = r.json().unwrap();
    assert_eq!(v["code"], "opted_out");
    assert!(v["message"].as_str().unwrap().contains("START"));
    // Empty or invalid input changes nothing.
    assert_eq!(h.send(&phone, "   ").status(), 400);
    assert_eq!(h.send("not-a-number", "x").status(), 400);
    assert_eq!(h.double.accepted().len(), 1);
    drop(h.rt);
}

/// A server reading photos through the Gemini double.
struct Reader {
    rt: tokio::runtime::Runtime,
    port: u16,
    gemini: sync_server::doubles::gemini::GeminiDouble,
    token: String,
    data: tests::data::Dataset,
    svc: Arc<sync_server::service::SyncService>,
    _dir: tempfile::TempDir,
}

const GEMINI_KEY: &str = "gemini double's key";
/// A JPEG's first bytes are all the server looks at before sending it on.
const JPEG: &[u8] = &[
    0xff, 0xd8, 0xff, 0xe0, 0, 16, b'J', b'F', b'I', b'F', 0, 1, 1, 0,
];

fn reader(daily_cap: u32) -> Reader {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (svc, data) = seeded_service(dir.path());
    let gemini = sync_server::doubles::gemini::GeminiDouble::new(GEMINI_KEY);
    let api = rt.block_on(gemini.start()).unwrap();
    let client =
        sync_server::hub::vision::GeminiClient::new(&sync_server::settings::GeminiSettings {
            api_key: Secret::new(GEMINI_KEY),
            model: "gemini-2.5-flash".into(),
            api_url: api,
            daily_cap,
            timeout_s: 10,
            budget_s: 5,
        })
        .unwrap();
    let hub = Hub::open(
        dir.path(),
        HubSettings {
            vision: Some((Arc::new(client), daily_cap, Duration::from_secs(5))),
            ..HubSettings::default()
        },
        sync_server::hub::customers_by_phone(Arc::clone(&svc)),
    )
    .unwrap();
    let (port, keys) = serve_hub(&rt, &svc, &hub);
    let token = token_for(&keys, 0xd2, Role::Technician, Some(data.technicians[0]));
    Reader {
        rt,
        port,
        gemini,
        token,
        data,
        svc,
        _dir: dir,
    }
}

impl Reader {
    fn read(&self, task: &str, image: &[u8]) -> reqwest::blocking::Response {
        sync_server::tls::install_crypto();
        reqwest::blocking::Client::new()
            .post(format!(
                "http://127.0.0.1:{}/api/v1/vision/{task}",
                self.port
            ))
            .bearer_auth(&self.token)
            .header("content-type", "image/jpeg")
            .body(image.to_vec())
            .send()
            .unwrap()
    }
}

#[test]
fn hub_vision_reads_labels_and_matches_them_against_the_equipment_records() {
    use shared::model::EquipmentStatus;
    let r = reader(100);
    let equipment: Vec<_> = r
        .data
        .entities
        .iter()
        .filter_map(|e| match e {
            AnyEntity::Equipment(e) => Some(e.clone()),
            _ => None,
        })
        .collect();
    let installed = equipment
        .iter()
        .find(|e| e.status == EquipmentStatus::Active)
        .expect("the data set has installed equipment");
    // A unit received into stock.
    let mut in_stock = installed.clone();
    in_stock.id = shared::ids::EquipmentId(DocId::from_u128(0x57_0c));
    in_stock.serial = shared::model::Serial::parse("TPLG22275A70").unwrap();
    in_stock.mac = None;
    in_stock.location = None;
    in_stock.erp_name = None;
    in_stock.status = EquipmentStatus::EnStock;
    r.svc
        .seed(
            &[AnyEntity::Equipment(in_stock.clone())],
            tests::harness::monday_9am(),
        )
        .unwrap();
    let in_stock = &in_stock;
    r.gemini.script([sync_server::doubles::gemini::Answer::Json(serde_json::json!({"items": [
        {"brand": "TP-Link", "model": "XX230v", "serial_number": in_stock.serial.as_str(),
         "mac_address": null, "gpon_sn": null, "confidence": 0.93},
        {"brand": "ZTE", "model": "F670L", "serial_number": installed.serial.as_str().to_lowercase(),
         "mac_address": null, "gpon_sn": null, "confidence": 0.8},
        {"brand": "Nokia", "model": "G-240W", "serial_number": "ALCLB0000NEW1",
         "mac_address": "00:11:22:33:44:55", "gpon_sn": null, "confidence": 1.7}
    ]}))]);
    let resp = r.read("equipment", JPEG);
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().unwrap();
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{v}");
    assert_eq!(items[0]["known"], "in_stock");
    assert_eq!(items[0]["equipment"], in_stock.id.doc().to_string(), "{v}");
    assert_eq!(
        items[1]["known"], "elsewhere",
        "a serial matches whatever its case"
    );
    assert_eq!(
        items[1]["equipment"],
        Value::Null,
        "where it is is not shown"
    );
    assert_eq!(items[2]["known"], "unknown");
    assert_eq!(items[2]["confidence"], 1.0, "confidence held to 0..1");
    // What Gemini was asked: the image inline, JSON constrained by a schema.
    let req = &r.gemini.requests()[0];
    assert_eq!(
        req["contents"][0]["parts"][0]["inline_data"]["mime_type"],
        "image/jpeg"
    );
    assert_eq!(
        req["generationConfig"]["responseMimeType"],
        "application/json"
    );
    assert_eq!(
        req["generationConfig"]["responseSchema"]["properties"]["items"]["maxItems"],
        5
    );

    // Barcodes, from Gemini's own example answer: at most three.
    let example = sync_server::doubles::gemini::examples();
    let text = example["response_200"]["candidates"][0]["content"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    r.gemini.script([sync_server::doubles::gemini::Answer::Json(
        serde_json::from_str(text).unwrap(),
    )]);
    let v: Value = r.read("barcodes", JPEG).json().unwrap();
    assert_eq!(v["barcodes"][0]["value"], "22275A7000395", "{v}");
    drop(r.rt);
}

#[test]
fn hub_vision_retries_what_gemini_asks_and_fails_plainly_otherwise() {
    use sync_server::doubles::gemini::Answer;
    let r = reader(100);
    let ex = sync_server::doubles::gemini::examples();
    let mut quota = ex["errors"]["429"].clone();
    quota["error"]["details"][2]["retryDelay"] = serde_json::json!("1s");
    r.gemini.script([
        Answer::Raw(429, quota),
        Answer::Raw(503, ex["errors"]["503"].clone()),
        Answer::Json(serde_json::json!({"barcodes": [{"value": "A1", "symbology": "QR"}]})),
    ]);
    let started = Instant::now();
    let resp = r.read("barcodes", JPEG);
    assert_eq!(resp.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the 1 s Gemini asked for was waited"
    );
    assert_eq!(r.gemini.requests().len(), 3);

    // Overloaded beyond the budget: a clear failure, not a hang.
    r.gemini
        .script((0..20).map(|_| Answer::Raw(503, ex["errors"]["503"].clone())));
    let resp = r.read("barcodes", JPEG);
    assert_eq!(resp.status(), 502);
    let v: Value = resp.json().unwrap();
    assert_eq!(v["code"], "vision_unavailable");
    assert!(v["message"].as_str().unwrap().contains("overloaded"), "{v}");
    let calls = r.gemini.requests().len() - 3;
    assert!(
        (2..=5).contains(&calls),
        "retried with backoff within the 5 s budget: {calls} calls"
    );

    // Blocked, truncated, unreadable: said as such, nothing made up.
    let r = reader(100);
    r.gemini.script([
        Answer::Raw(200, ex["response_blocked_prompt"].clone()),
        Answer::Raw(200, ex["response_max_tokens"].clone()),
        Answer::Raw(400, ex["errors"]["400"].clone()),
    ]);
    for expected in ["unreadable", "unreadable", "vision_unavailable"] {
        let resp = r.read("barcodes", JPEG);
        let v: Value = resp.json().unwrap();
        assert_eq!(v["code"], expected, "{v}");
    }
    // Not an image: refused before any call.
    let before = r.gemini.requests().len();
    let resp = r.read("barcodes", b"%PDF-1.7 not an image");
    assert_eq!(resp.status(), 415);
    assert_eq!(r.gemini.requests().len(), before);
    assert_eq!(r.read("horoscope", JPEG).status(), 404);
    drop(r.rt);
}

#[test]
fn hub_vision_stops_at_the_daily_cap() {
    let r = reader(2);
    r.gemini
        .by_default(serde_json::json!({"barcodes": [{"value": "A1", "symbology": "QR"}]}));
    assert_eq!(r.read("barcodes", JPEG).status(), 200);
    assert_eq!(r.read("barcodes", JPEG).status(), 200);
    let resp = r.read("barcodes", JPEG);
    assert_eq!(resp.status(), 429);
    let v: Value = resp.json().unwrap();
    assert_eq!(v["code"], "vision_cap_reached");
    assert_eq!(r.gemini.requests().len(), 2, "no call beyond the cap");
    drop(r.rt);
}

#[test]
fn hub_gemini_contract_against_gemini() {
    #[allow(clippy::disallowed_methods)] // test configuration
    let Some(key) = std::env::var("FSM_TEST_GEMINI_API_KEY")
        .ok()
        .filter(|k| !k.is_empty())
    else {
        eprintln!("skipped: set FSM_TEST_GEMINI_API_KEY to read a test label with Gemini itself");
        return;
    };
    use sync_server::hub::vision::{GeminiClient, Reading, Task, Vision};
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let client = GeminiClient::new(&sync_server::settings::GeminiSettings {
        api_key: Secret::new(key),
        model: "gemini-2.5-flash".into(),
        api_url: "https://generativelanguage.googleapis.com".into(),
        daily_cap: 5,
        timeout_s: 60,
        budget_s: 60,
    })
    .unwrap();
    let vision = Vision::open(
        &dir.path().join("hub.sqlite3"),
        false,
        Arc::new(client),
        5,
        Duration::from_secs(60),
    )
    .unwrap();
    // A 1x1 PNG: no code on it, and the answer must still fit the schema.
    let png: &[u8] = &[
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52, 0,
        0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89, 0, 0, 0, 0x0d, 0x49, 0x44,
        0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xff, 0xff, 0x3f, 0, 5, 0xfe, 2, 0xfe, 0xa7, 0x35,
        0x81, 0x84, 0, 0, 0, 0, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ];
    match rt.block_on(vision.read(Task::Barcodes, png, "2026-11-30")) {
        Ok(Reading::Barcodes { barcodes }) => assert!(barcodes.len() <= 3),
        other => panic!("Gemini's answer: {other:?}"),
    }
}

const STRIPE_KEY: &str = "sk_test_double_key";
const STRIPE_HOOK: &str = "whsec_double_endpoint";
/// The account Stripe's payments are received into, in ERPNext's books.
const STRIPE_ACCOUNT: &str = "Stripe - FSM";

/// The hub the world was made with, and the Stripe double's address.
type Made = (Arc<Hub>, String);

/// A server with the ERPNext bridge (against the Frappe double) and payments through the
/// Stripe double, its inbox processing and its Payment Entry poster; the customers exported to
/// ERPNext.
fn paying() -> (
    crate::erpnext::ErpWorld,
    sync_server::doubles::stripe::StripeDouble,
    String,
) {
    let made: Arc<std::sync::Mutex<Option<Made>>> = Arc::default();
    let keep = Arc::clone(&made);
    let stripe = sync_server::doubles::stripe::StripeDouble::new(STRIPE_KEY);
    stripe.set_clock(Arc::new(shared::clock::FixedClock::new(
        tests::harness::monday_9am(),
    )));
    let s = stripe.clone();
    let w = crate::erpnext::erp_world_with(Duration::from_secs(10), move |svc, url| {
        let dir = tempfile::tempdir().unwrap().keep();
        let api = futures_block(s.start());
        s.set_webhook(&format!("{url}/api/v1/webhooks/stripe"), STRIPE_HOOK);
        let hub = Hub::open(
            &dir,
            HubSettings {
                stripe: Some(sync_server::settings::StripeSettings {
                    secret_key: Some(Secret::new(STRIPE_KEY)),
                    webhook_secret: Secret::new(STRIPE_HOOK),
                    api_url: api.clone(),
                    erp_account: Some(STRIPE_ACCOUNT.into()),
                    mode_of_payment: "Stripe".into(),
                }),
                pages: Some(Arc::new(
                    sync_server::hub::stripe::StripeClient::new(&api, Secret::new(STRIPE_KEY))
                        .unwrap(),
                )),
                ..HubSettings::default()
            },
            sync_server::hub::customers_by_phone(Arc::clone(svc)),
        )
        .unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        std::mem::forget(stop);
        tokio::spawn(sync_server::hub::inbox::run(
            Arc::clone(&hub.inbox),
            hub.handlers(None),
            Arc::new(sync_server::SystemClock),
            stopped,
        ));
        *keep.lock().unwrap() = Some((Arc::clone(&hub), api));
        Some(hub)
    });
    let (hub, api) = made.lock().unwrap().clone().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    std::mem::forget(stop);
    w.rt.spawn(sync_server::hub::ledger::run(
        Arc::clone(&hub.ledger),
        w.client.clone(),
        sync_server::hub::ledger::Accounts {
            paid_to: STRIPE_ACCOUNT.into(),
            mode_of_payment: "Stripe".into(),
        },
        // Retries fall due as time passes; a short cap keeps the test short.
        Arc::new(sync_server::SystemClock),
        Duration::from_secs(1),
        stopped,
    ));
    w.push_until_done(20);
    (w, stripe, api)
}

/// Submitted Payment Entries in the Frappe double whose reference is `intent`.
fn entries_for(w: &crate::erpnext::ErpWorld, intent: &str) -> Vec<Value> {
    w.rt.block_on(w.client.list(
        "Payment Entry",
        &["name", "party", "paid_amount", "reference_no", "docstatus"],
        &serde_json::json!([["reference_no", "=", intent]]),
        "creation asc",
        0,
        100,
    ))
    .unwrap()
}

/// Runs a future to completion from inside the runtime's `block_on` (the double's listener
/// binds at once; nothing else is awaited).
fn futures_block<F: std::future::Future<Output = std::io::Result<String>>>(f: F) -> String {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f)).unwrap()
}

/// A submitted Sales Invoice in the Frappe double for `customer` (its ERPNext name).
fn invoice(w: &crate::erpnext::ErpWorld, customer: &str, amount: f64) -> String {
    let doc = w
        .erp
        .insert(
            "Sales Invoice",
            serde_json::json!({"customer": customer, "customer_name": customer,
                "company": "FSM", "debit_to": "Débiteurs - FSM",
                "currency": "CAD", "posting_date": "2026-11-30",
                "grand_total": amount, "outstanding_amount": amount, "status": "Unpaid"}),
        )
        .unwrap();
    let name = doc["name"].as_str().unwrap().to_owned();
    w.erp.submit("Sales Invoice", &name).unwrap();
    name
}

fn call(w: &crate::erpnext::ErpWorld, token: &str, method: &str, path: &str) -> (u16, Value) {
    sync_server::tls::install_crypto();
    let c = reqwest::blocking::Client::new();
    let url = format!("{}{path}", w.url);
    let req = if method == "POST" {
        c.post(url)
    } else {
        c.get(url)
    };
    let resp = req.bearer_auth(token).send().unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

/// The ERPNext name of a customer of technician `t`'s jobs, and of one outside them.
fn customers(w: &crate::erpnext::ErpWorld, t: shared::ids::TechnicianId) -> (String, String) {
    use shared::model::AnyEntity as E;
    let today = w.service.now().date();
    w.service
        .read(|e| {
            let scope = e.scope(shared::sync::server::Subject::Technician(t), today);
            let names: Vec<(bool, String)> = e
                .doc_ids()
                .filter_map(|d| match e.entity(d) {
                    Some(E::Customer(c)) => c.erp_name.clone().map(|n| (scope.contains(&d), n)),
                    _ => None,
                })
                .collect();
            let mine = names.iter().find(|(s, _)| *s).unwrap().1.clone();
            let other = names.iter().find(|(s, _)| !*s).unwrap().1.clone();
            (mine, other)
        })
        .unwrap()
}

#[test]
fn hub_a_technician_asks_for_payment_and_the_paid_invoice_shows_paid_once() {
    let (w, stripe, _) = paying();
    let tech = w.data.technicians[0];
    let token = token_for(&w.keys, 0xd3, Role::Technician, Some(tech));
    let office = token_for(&w.keys, 0xd4, Role::Dispatcher, None);
    let (mine, other) = customers(&w, tech);
    let inv = invoice(&w, &mine, 83.30);

    let (status, page) = call(
        &w,
        &token,
        "POST",
        &format!("/api/v1/payments/{inv}/checkout"),
    );
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["amount"], 8330, "the amount is ERPNext's, in cents");
    assert_eq!(page["currency"], "cad");
    assert!(
        page["url"]
            .as_str()
            .unwrap()
            .starts_with("https://checkout.stripe.com/")
    );
    // Asked again (a retry, a second tap): the same page, one session at Stripe.
    let (_, again) = call(
        &w,
        &token,
        "POST",
        &format!("/api/v1/payments/{inv}/checkout"),
    );
    assert_eq!(again["session"], page["session"]);
    assert_eq!(stripe.sessions(), 1);
    // Not this technician's customer; a draft; an unknown invoice.
    let theirs = invoice(&w, &other, 10.0);
    let (status, _) = call(
        &w,
        &token,
        "POST",
        &format!("/api/v1/payments/{theirs}/checkout"),
    );
    assert_eq!(status, 403);
    let draft = w
        .erp
        .insert(
            "Sales Invoice",
            serde_json::json!({"customer": mine, "currency": "CAD", "outstanding_amount": 5.0}),
        )
        .unwrap();
    let (status, v) = call(
        &w,
        &office,
        "POST",
        &format!(
            "/api/v1/payments/{}/checkout",
            draft["name"].as_str().unwrap()
        ),
    );
    assert_eq!((status, v["code"].as_str()), (404, Some("no_invoice")));
    assert_eq!(stripe.sessions(), 1, "nothing opened for refused requests");

    // The customer pays; Stripe's events arrive each up to three times, in any order.
    let events = stripe
        .pay_events(page["session"].as_str().unwrap())
        .unwrap();
    let deliveries = vec![&events[1], &events[0], &events[1], &events[0], &events[0]];
    for e in deliveries {
        assert_eq!(w.rt.block_on(stripe.deliver(e)), Some(200));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let paid = loop {
        let (status, v) = call(&w, &office, "GET", &format!("/api/v1/payments/{inv}"));
        if status == 200 && v["state"] == "paid" {
            break v;
        }
        assert!(Instant::now() < deadline, "never paid: {v}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(paid["amount"], 8330);
    let intent = paid["intent"].as_str().unwrap().to_owned();
    assert!(intent.starts_with("pi_test_"));
    // ERPNext gets one submitted Payment Entry for it, and the invoice has nothing left to pay.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = call(&w, &office, "GET", &format!("/api/v1/payments/{inv}"));
        if v["entries"][0]["state"] == "done" {
            assert!(
                v["entries"][0]["erp_name"]
                    .as_str()
                    .unwrap()
                    .starts_with("ACC-PAY-")
            );
            break;
        }
        assert!(Instant::now() < deadline, "no Payment Entry: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let made = entries_for(&w, &intent);
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0]["docstatus"], 1);
    assert_eq!(made[0]["party"], mine.as_str());
    assert_eq!(made[0]["paid_amount"], 83.3);
    let after = w.erp.doc("Sales Invoice", &inv).unwrap();
    assert_eq!(after["outstanding_amount"], 0.0);
    let (_, inbox) = call(&w, &office, "GET", "/api/v1/webhooks");
    assert_eq!(
        inbox["depth"]["done"], 2,
        "two events, five deliveries: {inbox}"
    );
    // Paid: no new page.
    let (status, v) = call(
        &w,
        &token,
        "POST",
        &format!("/api/v1/payments/{inv}/checkout"),
    );
    assert_eq!((status, v["code"].as_str()), (409, Some("already_paid")));
}

#[test]
fn hub_stripe_storm_gives_one_payment_entry_per_paid_invoice() {
    use rand::seq::SliceRandom as _;
    use rand::{Rng as _, SeedableRng as _};
    use sync_server::hub::stripe::{CheckoutRequest, PaymentPages, StripeClient};
    const PAYMENTS: usize = 1_000;
    let (w, stripe, api) = paying();
    let (mine, _) = customers(&w, w.data.technicians[0]);
    // Invoices and their pages.
    let client = StripeClient::new(&api, Secret::new(STRIPE_KEY)).unwrap();
    let mut sessions = Vec::new();
    for n in 0..PAYMENTS {
        let amount = 10.0 + n as f64;
        let inv = invoice(&w, &mine, amount);
        let page =
            w.rt.block_on(client.create(&CheckoutRequest {
                invoice: inv.clone(),
                amount: (amount * 100.0).round() as i64,
                currency: "cad".into(),
                description: inv.clone(),
                success_url: "https://example.com/ok".into(),
                cancel_url: "https://example.com/no".into(),
            }))
            .unwrap();
        sessions.push(page.id);
    }
    // Every payment's events, each delivered one to three times, all in random order, while
    // ERPNext fails a tenth of its calls (half of those after saving, the answer lost).
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5701);
    let mut deliveries = Vec::new();
    for id in &sessions {
        for e in stripe.pay_events(id).unwrap() {
            for _ in 0..rng.random_range(1..=3) {
                deliveries.push(e.clone());
            }
        }
    }
    deliveries.shuffle(&mut rng);
    w.erp.set_flaky(0.10);
    let sent = deliveries.len();
    w.rt.block_on(async {
        use futures_util::StreamExt as _;
        futures_util::stream::iter(deliveries.iter().map(|e| stripe.deliver(e)))
            .buffer_unordered(16)
            .for_each(|status| async move { assert_eq!(status, Some(200)) })
            .await;
    });
    // Every invoice ends paid in ERPNext by exactly one submitted Payment Entry.
    let unpaid = || {
        w.rt.block_on(w.client.list(
            "Sales Invoice",
            &["name"],
            &serde_json::json!([["outstanding_amount", ">", 0], ["docstatus", "=", 1]]),
            "creation asc",
            0,
            10_000,
        ))
        .map(|rows| rows.len())
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        // The double fails some of these reads too.
        if unpaid().is_ok_and(|n| n == 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "invoices still unpaid in ERPNext: {:?}",
            unpaid()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    w.erp.set_flaky(0.0);
    let made =
        w.rt.block_on(w.client.list(
            "Payment Entry",
            &["name", "reference_no"],
            &serde_json::json!([["docstatus", "=", 1]]),
            "creation asc",
            0,
            100_000,
        ))
        .unwrap();
    let mut by_intent = std::collections::BTreeMap::<String, usize>::new();
    for e in &made {
        *by_intent
            .entry(e["reference_no"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        by_intent.len(),
        PAYMENTS,
        "one payment per invoice ({sent} deliveries)"
    );
    let twice: Vec<_> = by_intent.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "two Payment Entries for one payment: {twice:?}"
    );
    assert_eq!(made.len(), PAYMENTS);
    // And none was refused on the way (a second attempt after a lost answer finds the first
    // entry instead of having ERPNext refuse a second one).
    let office = token_for(&w.keys, 0xd5, Role::Dispatcher, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, pending) = call(&w, &office, "GET", "/api/v1/payments/entries");
        if pending == serde_json::json!([]) {
            break;
        }
        let refused: Vec<_> = pending
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["state"] == "refused")
            .collect();
        assert!(
            refused.is_empty(),
            "{} refused by ERPNext, the first: {:?}",
            refused.len(),
            refused.first()
        );
        assert!(Instant::now() < deadline, "still waiting: {pending}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What every Stripe account (the double, or Stripe in test mode) answers alike.
fn stripe_contract(
    rt: &tokio::runtime::Runtime,
    client: &sync_server::hub::stripe::StripeClient,
    bad: &sync_server::hub::stripe::StripeClient,
) {
    use sync_server::hub::stripe::{CheckoutRequest, PaymentPages, StripeError};
    let req = CheckoutRequest {
        invoice: format!("ACC-SINV-TEST-{}", rand::random::<u32>()),
        amount: 8330,
        currency: "cad".into(),
        description: "Contract test".into(),
        success_url: "https://example.com/paid".into(),
        cancel_url: "https://example.com/cancelled".into(),
    };
    let page = rt.block_on(client.create(&req)).expect("a page opens");
    assert!(page.id.starts_with("cs_test_"), "{}", page.id);
    assert!(page.url.starts_with("https://"), "{}", page.url);
    assert!(page.expires_at > 0);
    let again = rt.block_on(client.create(&req)).unwrap();
    assert_eq!(
        again.id, page.id,
        "the same idempotency key gives the same page"
    );
    match rt.block_on(bad.create(&req)) {
        Err(StripeError::Final { .. }) => {}
        other => panic!("a wrong key: {other:?}"),
    }
}

#[test]
fn hub_stripe_contract_against_the_double() {
    use sync_server::hub::stripe::{PaymentPages, StripeClient, StripeError};
    let rt = runtime();
    let double = sync_server::doubles::stripe::StripeDouble::new(STRIPE_KEY);
    let api = rt.block_on(double.start()).unwrap();
    let client = StripeClient::new(&api, Secret::new(STRIPE_KEY)).unwrap();
    let bad = StripeClient::new(&api, Secret::new("sk_test_wrong")).unwrap();
    stripe_contract(&rt, &client, &bad);
    assert_eq!(double.sessions(), 1);
    double.inject([sync_server::doubles::stripe::Fault::RateLimit]);
    let req = sync_server::hub::stripe::CheckoutRequest {
        invoice: "X".into(),
        amount: 1,
        currency: "cad".into(),
        description: "x".into(),
        success_url: "https://example.com".into(),
        cancel_url: "https://example.com".into(),
    };
    assert!(matches!(
        rt.block_on(client.create(&req)),
        Err(StripeError::Retry { .. })
    ));
}

#[test]
fn hub_stripe_contract_against_stripe() {
    #[allow(clippy::disallowed_methods)] // test configuration
    let Some(key) = std::env::var("FSM_TEST_STRIPE_SECRET_KEY")
        .ok()
        .filter(|k| k.starts_with("sk_test_"))
    else {
        eprintln!(
            "skipped: set FSM_TEST_STRIPE_SECRET_KEY to a test-mode key (sk_test_…) to open a Checkout page at Stripe"
        );
        return;
    };
    use sync_server::hub::stripe::StripeClient;
    let rt = runtime();
    let client = StripeClient::new("https://api.stripe.com", Secret::new(key)).unwrap();
    let bad =
        StripeClient::new("https://api.stripe.com", Secret::new("sk_test_not_a_key")).unwrap();
    stripe_contract(&rt, &client, &bad);
}

#[test]
fn hub_en_route_texts_go_out_only_while_true() {
    use app_tauri_core::{HttpTransport, Replica};
    use shared::clock::FixedClock;
    use shared::ids::Author;
    use shared::model::JobStatus;
    let h = hubbed(Duration::from_secs(10));
    h.rt.spawn(sync_server::hub::notify::run(
        Arc::clone(&h.svc),
        Arc::clone(&h.hub.sms),
        jiff::tz::TimeZone::get("America/Toronto").unwrap(),
        h.stopped.clone(),
    ));
    // The technician's jobs whose customers have a phone.
    let tech = h.data.technicians[0];
    let jobs: Vec<(shared::ids::JobId, String)> = h
        .svc
        .read(|e| {
            e.doc_ids()
                .filter_map(|d| match e.entity(d) {
                    Some(AnyEntity::Job(j))
                        if j.technician == Some(tech) && j.status == JobStatus::Scheduled =>
                    {
                        match e.entity(j.customer.doc()) {
                            Some(AnyEntity::Customer(c)) => {
                                c.phone.as_ref().map(|p| (j.id, p.as_str().to_owned()))
                            }
                            _ => None,
                        }
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap();
    assert!(
        jobs.len() >= 2,
        "two scheduled jobs with a phone: {}",
        jobs.len()
    );
    let device = |n: u128, at: shared::clock::Millis| {
        let author = Author::new(Role::Technician, DeviceId(DocId::from_u128(0xe100 + n)));
        let token = token_for(&h.keys, 0xe100 + n, Role::Technician, Some(tech));
        let replica =
            Replica::open_in_memory(author, Arc::new(FixedClock::new(at)), Some(n as u64)).unwrap();
        let net = HttpTransport::new(
            &format!("http://127.0.0.1:{}", h.port),
            &token,
            Duration::from_secs(10),
        )
        .unwrap();
        (replica, net)
    };
    let now = h.svc.now();
    // Set en route now, synced at once: the customer is told, with a window.
    let (mut fresh, mut net) = device(1, now);
    fresh.sync(&mut net).unwrap();
    fresh.set_job_status(jobs[0].0, JobStatus::EnRoute).unwrap();
    fresh.sync(&mut net).unwrap();
    drop(net);
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.double.accepted().is_empty() {
        assert!(Instant::now() < deadline, "no en-route text");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = h.double.accepted();
    assert_eq!(sent[0].to, jobs[0].1);
    assert!(
        sent[0].body.contains("en route") || sent[0].body.contains("on the way"),
        "{}",
        sent[0].body
    );
    assert!(
        sent[0].body.contains("entre") || sent[0].body.contains("between"),
        "{}",
        sent[0].body
    );
    // Set en route three hours ago on a phone that was offline, synced now: nothing is sent.
    let (mut late, mut net) = device(2, shared::clock::Millis(now.0 - 3 * 3_600_000));
    late.sync(&mut net).unwrap();
    late.set_job_status(jobs[1].0, JobStatus::EnRoute).unwrap();
    late.sync(&mut net).unwrap();
    // The fresh device syncs again (a note): its job is still en route, nothing new is sent.
    let (_, mut net) = device(1, now);
    fresh.add_note(jobs[0].0, "Client prévenu").unwrap();
    fresh.sync(&mut net).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        h.double.accepted().len(),
        1,
        "one text, and none for the late status"
    );
    drop(h.rt);
}

#[test]
fn hub_a_login_link_is_texted_and_the_conversation_never_shows_it() {
    let h = hubbed(Duration::from_secs(10));
    let (tech, phone) = h
        .svc
        .read(|e| {
            e.doc_ids().find_map(|d| match e.entity(d) {
                Some(AnyEntity::Technician(t)) if t.active => {
                    t.phone.as_ref().map(|p| (t.id, p.as_str().to_owned()))
                }
                _ => None,
            })
        })
        .unwrap()
        .expect("an active technician with a phone");
    let answer: Value = h
        .client()
        .post(format!("http://127.0.0.1:{}/api/v1/auth/magic", h.port))
        .bearer_auth(&h.token)
        .json(&serde_json::json!({"technician": tech.doc().to_string(), "sms": true}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let token = answer["token"].as_str().unwrap().to_owned();
    let id = answer["sms"].as_i64().expect("the text's outbox entry");
    let m = h.status_becomes(&phone, id, "delivered");
    let sent = h.double.accepted();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, phone);
    assert!(
        sent[0].body.contains(&token),
        "the technician gets the link"
    );
    let shown = m["body"].as_str().unwrap();
    assert!(
        !shown.contains(&token),
        "the conversation never shows it: {shown}"
    );
    assert!(shown.contains("•••"), "{shown}");
    // A login link is never sent again: the office makes a new one.
    assert_eq!(h.resend(id).status(), 409);
    drop(h.rt);
}
