//! The webhook inbox through the real server binary: what is acknowledged is stored before the
//! answer and processed once, across a `kill -9`; what is not verified is neither stored nor
//! processed.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[path = "support/demo_server.rs"]
#[allow(dead_code)] // shared by several test binaries; this one needs only the server and tokens
mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::ids::{DeviceId, DocId, Role};
use support::{Server, spawn_demo_with, token};
use sync_server::hub::signature;

const PUBLIC: &str = "https://sync.example.test";
const TWILIO_TOKEN: &str = "twilio auth token of the tests";
const STRIPE_SECRET: &str = "whsec_tests_secret";
const KUMA_SECRET: &str = "uptime kuma's bearer secret";

fn env(processing: bool) -> Vec<(&'static str, &'static str)> {
    vec![
        ("APP_PUBLIC_URL", PUBLIC),
        (
            "APP_TWILIO__ACCOUNT_SID",
            "AC00000000000000000000000000000000",
        ),
        ("APP_TWILIO__AUTH_TOKEN", TWILIO_TOKEN),
        ("APP_TWILIO__FROM", "+15005550006"),
        ("APP_STRIPE__WEBHOOK_SECRET", STRIPE_SECRET),
        ("APP_UPTIME_KUMA_SECRET", KUMA_SECRET),
        (
            "APP_WEBHOOK_PROCESSING",
            if processing { "true" } else { "false" },
        ),
    ]
}

fn start(dir: &std::path::Path, processing: bool) -> (Server, u16) {
    spawn_demo_with(dir, None, &[], &env(processing))
}

fn now_s() -> i64 {
    use shared::clock::Clock as _;
    sync_server::SystemClock.now().0 / 1000
}

fn http() -> reqwest::blocking::Client {
    sync_server::tls::install_crypto();
    reqwest::blocking::Client::new()
}

const SMS_PATH: &str = "/api/v1/webhooks/twilio/sms";

fn sms_form(sid: &str, from: &str, body: &str) -> Vec<(String, String)> {
    [
        ("MessageSid", sid),
        ("SmsSid", sid),
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("From", from),
        ("To", "+15005550006"),
        ("Body", body),
        ("NumMedia", "0"),
        ("ApiVersion", "2010-04-01"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

/// Posts a Twilio form as Twilio would, signed over `signed_url`.
fn post_twilio(
    port: u16,
    path: &str,
    params: &[(String, String)],
    signed_url: &str,
) -> reqwest::blocking::Response {
    let sig = signature::twilio_signature(TWILIO_TOKEN, signed_url, params);
    http()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("x-twilio-signature", sig)
        .form(params)
        .send()
        .unwrap()
}

fn stripe_event(id: &str, kind: &str, invoice: &str) -> Vec<u8> {
    json!({
        "id": id, "object": "event", "type": kind, "created": now_s(), "livemode": false,
        "data": {"object": {"id": "pi_test_1", "object": "payment_intent",
            "amount_received": 8330, "currency": "cad", "metadata": {"invoice": invoice}}}
    })
    .to_string()
    .into_bytes()
}

fn post_stripe(port: u16, body: &[u8], header: Option<&str>) -> reqwest::blocking::Response {
    let mut req = http()
        .post(format!("http://127.0.0.1:{port}/api/v1/webhooks/stripe"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(h) = header {
        req = req.header("stripe-signature", h);
    }
    req.send().unwrap()
}

fn office(port: u16, path: &str) -> reqwest::blocking::Response {
    let device = DeviceId(DocId::from_u128(0xd15));
    http()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(token(Role::Dispatcher, device))
        .send()
        .unwrap()
}

fn depth(port: u16) -> Value {
    let v: Value = office(port, "/api/v1/webhooks").json().unwrap();
    v["depth"].clone()
}

/// Waits (bounded) until `f` holds, reading the server's state each time.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_acknowledged_webhook_survives_kill_9_and_is_processed_once() {
    let dir = tempfile::tempdir().unwrap();
    // Processing held back: the server acknowledges and stores, then dies before processing.
    let (server, port) = start(dir.path(), false);
    let sms = sms_form(
        "SM0123456789abcdef0123456789abcdef",
        "+14155551234",
        "Pas d'internet depuis hier",
    );
    let r = post_twilio(port, SMS_PATH, &sms, &format!("{PUBLIC}{SMS_PATH}"));
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/xml");
    assert_eq!(
        r.text().unwrap(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>",
        "valid empty TwiML: no automatic reply"
    );
    let paid = stripe_event(
        "evt_test_paid_1",
        "payment_intent.succeeded",
        "ACC-SINV-2026-00042",
    );
    let r = post_stripe(
        port,
        &paid,
        Some(&signature::stripe_header(STRIPE_SECRET, now_s(), &paid)),
    );
    assert_eq!(r.status(), 200);
    assert_eq!(depth(port)["new"], 2, "both stored, neither processed");
    // kill -9: no shutdown code runs.
    drop(server);

    let (_server, port) = start(dir.path(), true);
    eventually("the stored events to be processed", || {
        depth(port)["done"] == 2
    });
    let threads: Value = office(port, "/api/v1/sms/threads").json().unwrap();
    assert_eq!(threads.as_array().unwrap().len(), 1, "{threads}");
    assert_eq!(threads[0]["phone"], "+14155551234");
    assert_eq!(
        threads[0]["customer"],
        Value::Null,
        "an unknown number: unmatched thread"
    );
    assert_eq!(threads[0]["last_body"], "Pas d'internet depuis hier");
    let payment: Value = office(port, "/api/v1/payments/ACC-SINV-2026-00042")
        .json()
        .unwrap();
    assert_eq!(payment["state"], "paid");
    assert_eq!(payment["amount"], 8330);

    // Redelivered, each twice: acknowledged, and nothing changes.
    for _ in 0..2 {
        let r = post_twilio(port, SMS_PATH, &sms, &format!("{PUBLIC}{SMS_PATH}"));
        assert_eq!(r.status(), 200);
        let r = post_stripe(
            port,
            &paid,
            Some(&signature::stripe_header(STRIPE_SECRET, now_s(), &paid)),
        );
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        depth(port),
        json!({"new": 0, "failed": 0, "done": 2}),
        "a redelivery is not stored again"
    );
    let messages: Value = office(port, "/api/v1/sms/threads/+14155551234")
        .json()
        .unwrap();
    assert_eq!(messages.as_array().unwrap().len(), 1, "{messages}");

    // Delivery callbacks of a message we sent, out of order: the furthest state stays.
    for status in ["delivered", "sent", "queued"] {
        let form: Vec<(String, String)> = [
            ("MessageSid", "SMout0000000000000000000000000001"),
            ("MessageStatus", status),
            ("To", "+14155551234"),
            ("From", "+15005550006"),
            ("AccountSid", "AC00000000000000000000000000000000"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let path = "/api/v1/webhooks/twilio/status";
        let r = post_twilio(port, path, &form, &format!("{PUBLIC}{path}"));
        assert_eq!(r.status(), 204);
    }
    eventually("the callbacks to be processed", || depth(port)["done"] == 5);
    let messages: Value = office(port, "/api/v1/sms/threads/+14155551234")
        .json()
        .unwrap();
    let out = messages
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["sid"] == "SMout0000000000000000000000000001")
        .unwrap();
    assert_eq!(out["status"], "delivered", "{messages}");
}

#[test]
fn unverified_stale_oversized_or_malformed_webhooks_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = start(dir.path(), true);
    let sms = sms_form("SM1", "+14155551234", "Bonjour");
    let url = format!("{PUBLIC}{SMS_PATH}");

    // Twilio: unsigned, signed with another token, tampered, and signed over the address the
    // request itself came to (a forged Host) rather than the configured public URL.
    let r = http()
        .post(format!("http://127.0.0.1:{port}{SMS_PATH}"))
        .form(&sms)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let wrong = signature::twilio_signature("another token", &url, &sms);
    let r = http()
        .post(format!("http://127.0.0.1:{port}{SMS_PATH}"))
        .header("x-twilio-signature", wrong)
        .form(&sms)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let good = signature::twilio_signature(TWILIO_TOKEN, &url, &sms);
    let mut tampered = sms.clone();
    tampered[5].1 = "Bonjour, voici mon NIP".into();
    let r = http()
        .post(format!("http://127.0.0.1:{port}{SMS_PATH}"))
        .header("x-twilio-signature", &good)
        .form(&tampered)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let host_url = format!("http://127.0.0.1:{port}{SMS_PATH}");
    let r = post_twilio(port, SMS_PATH, &sms, &host_url);
    assert_eq!(r.status(), 403, "the Host header is not what is signed");
    // Signed, but not an SMS.
    let no_sid: Vec<_> = sms
        .iter()
        .filter(|(k, _)| !k.ends_with("Sid"))
        .cloned()
        .collect();
    let r = post_twilio(port, SMS_PATH, &no_sid, &url);
    assert_eq!(r.status(), 400);

    // Stripe: unsigned, forged, stale, from the future, re-stamped, oversized, not JSON.
    let ev = stripe_event("evt_1", "payment_intent.succeeded", "ACC-SINV-2026-00001");
    let t = now_s();
    let r = post_stripe(port, &ev, None);
    assert_eq!(r.status(), 403);
    let r = post_stripe(
        port,
        &ev,
        Some(&signature::stripe_header("whsec_forged", t, &ev)),
    );
    assert_eq!(r.status(), 403);
    let body = r.text().unwrap();
    assert!(
        !body.contains(STRIPE_SECRET) && !body.contains("whsec"),
        "{body}"
    );
    for stale in [t - 301, t + 301] {
        let r = post_stripe(
            port,
            &ev,
            Some(&signature::stripe_header(STRIPE_SECRET, stale, &ev)),
        );
        assert_eq!(r.status(), 403);
        let v: Value = r.json().unwrap();
        assert_eq!(v["code"], "stale_signature");
    }
    let old = signature::stripe_header(STRIPE_SECRET, t - 1000, &ev);
    let restamped = old.replace(&format!("t={}", t - 1000), &format!("t={t}"));
    assert_eq!(post_stripe(port, &ev, Some(&restamped)).status(), 403);
    let big = vec![b' '; 600 * 1024];
    let r = post_stripe(
        port,
        &big,
        Some(&signature::stripe_header(STRIPE_SECRET, t, &big)),
    );
    assert_eq!(r.status(), 413);
    let not_json = b"id=evt_2&type=payment_intent.succeeded".to_vec();
    let r = post_stripe(
        port,
        &not_json,
        Some(&signature::stripe_header(STRIPE_SECRET, t, &not_json)),
    );
    assert_eq!(r.status(), 400);

    assert_eq!(
        depth(port),
        json!({"new": 0, "failed": 0, "done": 0}),
        "nothing refused was stored"
    );
    let threads: Value = office(port, "/api/v1/sms/threads").json().unwrap();
    assert_eq!(threads, json!([]));
    assert_eq!(
        office(port, "/api/v1/payments/ACC-SINV-2026-00001").status(),
        404,
        "nothing refused was processed"
    );
}

#[test]
fn webhooks_of_a_provider_not_configured_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // `serve` turns on nothing by itself (`demo` would run its doubles).
    let (_server, port) = support::spawn_command(("serve", dir.path()), None, &[], &[]);
    let sms = sms_form("SM1", "+14155551234", "Bonjour");
    let r = post_twilio(port, SMS_PATH, &sms, &format!("{PUBLIC}{SMS_PATH}"));
    assert_eq!(r.status(), 404);
    let v: Value = r.json().unwrap();
    assert_eq!(v["code"], "twilio_off");
    let ev = stripe_event("evt_1", "payment_intent.succeeded", "X");
    let r = post_stripe(
        port,
        &ev,
        Some(&signature::stripe_header(STRIPE_SECRET, now_s(), &ev)),
    );
    assert_eq!(r.status(), 404);
    assert_eq!(depth(port), json!({"new": 0, "failed": 0, "done": 0}));
}

fn kuma(port: u16, secret: Option<&str>, status: i64, time: &str) -> reqwest::blocking::Response {
    let body = json!({
        "heartbeat": {"monitorID": 7, "status": status, "time": time, "msg": "timeout", "important": true},
        "monitor": {"id": 7, "name": "OLT Lévis", "url": "https://", "hostname": "10.20.0.1", "type": "ping"},
        "msg": "[OLT Lévis] [Down] timeout"
    });
    let mut req = http()
        .post(format!(
            "http://127.0.0.1:{port}/api/v1/webhooks/uptime-kuma"
        ))
        .json(&body);
    if let Some(s) = secret {
        req = req.bearer_auth(s);
    }
    req.send().unwrap()
}

#[test]
fn an_outage_from_uptime_kuma_is_stored_once_and_shown_to_dispatchers() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = start(dir.path(), true);
    assert_eq!(kuma(port, None, 0, "2026-11-30 14:03:00.000").status(), 403);
    assert_eq!(
        kuma(port, Some("guess"), 0, "2026-11-30 14:03:00.000").status(),
        403
    );
    assert_eq!(depth(port)["new"], 0, "nothing unverified is stored");
    for _ in 0..3 {
        assert_eq!(
            kuma(port, Some(KUMA_SECRET), 0, "2026-11-30 14:03:00.000").status(),
            204
        );
    }
    // Uptime Kuma's "Test" button: acknowledged, nothing stored.
    let test = http()
        .post(format!(
            "http://127.0.0.1:{port}/api/v1/webhooks/uptime-kuma"
        ))
        .bearer_auth(KUMA_SECRET)
        .json(&json!({"heartbeat": null, "monitor": null, "msg": "Uptime Kuma Testing"}))
        .send()
        .unwrap();
    assert_eq!(test.status(), 204);
    eventually("the outage to be processed", || depth(port)["done"] == 1);
    let monitors: Value = office(port, "/api/v1/alerts").json().unwrap();
    assert_eq!(monitors[0]["name"], "OLT Lévis");
    assert_eq!(monitors[0]["up"], false);
    assert_eq!(monitors[0]["target"], "10.20.0.1");
    // Back up.
    assert_eq!(
        kuma(port, Some(KUMA_SECRET), 1, "2026-11-30 14:20:00.000").status(),
        204
    );
    eventually("the recovery to be processed", || depth(port)["done"] == 2);
    let monitors: Value = office(port, "/api/v1/alerts").json().unwrap();
    assert_eq!(monitors[0]["up"], true);
}
