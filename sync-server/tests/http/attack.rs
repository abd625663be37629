//! Attacks on the sync endpoint over real HTTP. The attacker holds a real technician session and
//! speaks the protocol by hand: it writes Automerge changes no app would write, on the server's
//! own copy of a document, and pushes them. Each attack is refused (nothing stored) or
//! compensated, and the honest replicas converge on the authorized state.
//! `cargo test --workspace attack` runs them.

use app_tauri_core::Transport;
use automerge::transaction::{Transactable, Transaction};
use automerge::{Automerge, ObjType, ROOT, ReadDoc, ScalarValue};
use shared::ids::TechnicianId;
use shared::protocol::{
    self, ClientHello, Message, PushDoc, RejectReason, SyncRequest, SyncResponse,
};
use shared::record::Scalar;
use shared::sync::server::Subject;

use super::*;

/// A client speaking the protocol by hand with the first technician's session.
struct Raw {
    author: Author,
    net: HttpTransport,
}

fn raw(s: &TestServer) -> Raw {
    let device = DeviceId(DocId::from_u128(0xa77a));
    let token = s
        .keys
        .issue(
            device,
            Role::Technician,
            Some(s.data.technicians[0]),
            now_s(),
            3600,
        )
        .unwrap();
    Raw {
        author: Author::new(Role::Technician, device),
        net: HttpTransport::new(&s.url, &token, Duration::from_secs(10)).unwrap(),
    }
}

impl Raw {
    /// Writes one change on the server's copy of `doc` (a new document when it has none) and
    /// pushes it.
    fn push(
        &mut self,
        s: &TestServer,
        doc: DocId,
        kind: EntityKind,
        edit: impl FnOnce(&mut Transaction<'_>),
    ) -> SyncResponse {
        let (epoch, mut am) = match server_bytes(s, doc) {
            Some((epoch, bytes)) => (epoch, shared::crdt::load(&bytes).unwrap()),
            None => (0, Automerge::new()),
        };
        am.set_actor(shared::crdt::actor_id(self.author));
        let mut tx = am.transaction();
        edit(&mut tx);
        tx.commit();
        let change = am.get_last_local_change().unwrap().raw_bytes().to_vec();
        let req = SyncRequest {
            hello: ClientHello {
                author: self.author,
                app_version: "0.1.0".into(),
            },
            cursor: 0,
            token: 0,
            outbox_upto: 1,
            push: vec![PushDoc {
                doc,
                kind,
                epoch,
                changes: vec![change],
            }],
        };
        let answer = self
            .net
            .exchange(protocol::encode(&Message::Request(req)))
            .unwrap();
        match protocol::decode(&answer).unwrap() {
            Message::Response(r) => r,
            other => panic!("no answer: {other:?}"),
        }
    }
}

fn server_bytes(s: &TestServer, doc: DocId) -> Option<(u32, Vec<u8>)> {
    s.svc
        .read(|e| e.doc_bytes(doc).map(|(ep, b)| (ep, b.to_vec())))
        .unwrap()
}

fn server_record(s: &TestServer, doc: DocId) -> shared::record::Record {
    s.svc.read(|e| e.record(doc).cloned()).unwrap().unwrap()
}

fn me(s: &TestServer) -> TechnicianId {
    s.data.technicians[0]
}

fn scope(s: &TestServer) -> std::collections::HashSet<DocId> {
    s.svc
        .read(|e| e.scope(Subject::Technician(me(s)), MONDAY_9AM.date()))
        .unwrap()
        .into_iter()
        .collect()
}

/// A job of the attacker's, and a document of `kind` outside its scope.
fn my_job_and_foreign(s: &TestServer, kind: EntityKind) -> (JobId, DocId) {
    let scope = scope(s);
    let docs: Vec<(DocId, EntityKind)> = s
        .svc
        .read(|e| {
            e.doc_ids()
                .filter_map(|d| e.kind(d).map(|k| (d, k)))
                .collect()
        })
        .unwrap();
    let job = docs
        .iter()
        .find(|(d, k)| *k == EntityKind::Job && scope.contains(d))
        .map(|(d, _)| JobId(*d))
        .unwrap();
    let foreign = docs
        .iter()
        .find(|(d, k)| *k == kind && !scope.contains(d))
        .map(|(d, _)| *d)
        .unwrap();
    (job, foreign)
}

fn refused(resp: &SyncResponse, doc: DocId, says: &str) {
    assert!(
        resp.rejected
            .iter()
            .any(|r| r.doc == doc
                && matches!(&r.reason, RejectReason::Invalid(m) if m.contains(says))),
        "expected a refusal naming `{says}`, got {:?}",
        resp.rejected
    );
}

fn item(tx: &mut Transaction<'_>, collection: &str, key: &str, fields: &[(&str, ScalarValue)]) {
    let Some((automerge::Value::Object(ObjType::Map), coll)) = tx.get(ROOT, collection).unwrap()
    else {
        panic!("no collection `{collection}`")
    };
    let obj = tx.put_object(&coll, key, ObjType::Map).unwrap();
    for (f, v) in fields {
        tx.put(&obj, *f, v.clone()).unwrap();
    }
}

/// An honest technician device and the office, synced: what they hold must match the server.
fn assert_honest_replicas_converge(s: &TestServer, docs: &[DocId]) -> Replica {
    let (mut tech, mut tech_net) = client(s, Role::Technician, 1);
    let (mut office, mut office_net) = client(s, Role::Dispatcher, 2);
    tech.sync(&mut tech_net).unwrap();
    office.sync(&mut office_net).unwrap();
    for d in docs {
        let server = server_record(s, *d);
        for r in [&tech, &office] {
            if let Some(rec) = r.record(*d).unwrap() {
                assert_eq!(rec, server, "a replica differs from the server");
            }
        }
    }
    tech
}

#[test]
fn attack_a_technician_pulls_foreign_equipment_into_scope() {
    let s = start();
    let (job, foreign) = my_job_and_foreign(&s, EntityKind::Equipment);
    let mut raw = raw(&s);
    // An equipment line on the attacker's own job naming equipment at someone else's customer.
    let resp = raw.push(&s, job.doc(), EntityKind::Job, |tx| {
        item(
            tx,
            "equipment_items",
            "x",
            &[
                ("equipment", foreign.to_string().as_str().into()),
                ("action", "install".into()),
                ("replaces", ScalarValue::Null),
            ],
        );
    });
    refused(&resp, job.doc(), "equipment_items[x].equipment");
    assert!(
        !server_record(&s, job.doc())
            .items("equipment_items")
            .is_some_and(|i| i.contains_key("x")),
        "nothing stored"
    );
    assert!(!scope(&s).contains(&foreign), "the scope did not widen");

    // Equipment the attacker can see, moved to a location it cannot: the same refusal.
    let (_, foreign_location) = my_job_and_foreign(&s, EntityKind::Location);
    let mine = scope(&s)
        .into_iter()
        .find(|d| s.svc.read(|e| e.kind(*d)).unwrap() == Some(EntityKind::Equipment))
        .unwrap();
    let resp = raw.push(&s, mine, EntityKind::Equipment, |tx| {
        tx.put(ROOT, "location", foreign_location.to_string())
            .unwrap();
    });
    refused(&resp, mine, "location");
    let tech = assert_honest_replicas_converge(&s, &[job.doc(), mine]);
    assert!(tech.record(foreign).unwrap().is_none());
}

#[test]
fn attack_a_technician_pulls_a_foreign_customer_or_job_into_scope() {
    let s = start();
    let (job, foreign_customer) = my_job_and_foreign(&s, EntityKind::Customer);
    let own_customer = server_record(&s, job.doc()).get("customer").clone();
    let mut raw = raw(&s);
    // An office-owned reference on the attacker's own job: undone by the server.
    let resp = raw.push(&s, job.doc(), EntityKind::Job, |tx| {
        tx.put(ROOT, "customer", foreign_customer.to_string())
            .unwrap();
    });
    assert!(resp.rejected.is_empty(), "{:?}", resp.rejected);
    assert_eq!(server_record(&s, job.doc()).get("customer"), &own_customer);
    assert!(!scope(&s).contains(&foreign_customer));

    // Someone else's job, assigned to the attacker by the attacker: refused outright.
    let (_, foreign_job) = my_job_and_foreign(&s, EntityKind::Job);
    let before = server_record(&s, foreign_job);
    let resp = raw.push(&s, foreign_job, EntityKind::Job, |tx| {
        tx.put(ROOT, "technician", me(&s).to_string()).unwrap();
    });
    assert!(
        resp.rejected
            .iter()
            .any(|r| r.doc == foreign_job && r.reason == RejectReason::OutOfScope)
    );
    assert_eq!(server_record(&s, foreign_job), before);
    assert!(!scope(&s).contains(&foreign_job));
    let tech = assert_honest_replicas_converge(&s, &[job.doc()]);
    assert!(tech.record(foreign_customer).unwrap().is_none());
    assert!(tech.record(foreign_job).unwrap().is_none());
}

#[test]
fn attack_a_technician_sets_office_only_fields_on_a_create() {
    let s = start();
    let (job, _) = my_job_and_foreign(&s, EntityKind::Job);
    let location = server_record(&s, job.doc()).get("location").clone();
    let mut raw = raw(&s);
    // New equipment, as a scan creates it, plus the ERPNext name of an existing record (the
    // bridge would update that record) and a management address.
    let new = DocId::from_u128(0x0199_0000_0000_7000_8000_0000_0000_0001);
    let resp = raw.push(&s, new, EntityKind::Equipment, |tx| {
        for (k, v) in [
            ("location", location.as_str().unwrap()),
            ("kind", "ONT"),
            ("serial", "ZTEG-ATTACK-1"),
            ("status", "Active"),
            ("erp_name", "EQ-00001"),
            ("management_ip", "10.20.30.40"),
        ] {
            tx.put(ROOT, k, v).unwrap();
        }
        tx.put(ROOT, "deleted", false).unwrap();
    });
    assert!(resp.rejected.is_empty(), "{:?}", resp.rejected);
    let stored = server_record(&s, new);
    assert_eq!(stored.get("serial"), &Scalar::str("ZTEG-ATTACK-1"), "kept");
    assert_eq!(stored.get("erp_name"), &Scalar::Null, "cleared");
    assert_eq!(stored.get("management_ip"), &Scalar::Null, "cleared");

    // A kind a technician may not create at all: nothing is stored.
    let job_id = DocId::from_u128(0x0199_0000_0000_7000_8000_0000_0000_0002);
    let resp = raw.push(&s, job_id, EntityKind::Job, |tx| {
        tx.put(ROOT, "title", "Travail inventé").unwrap();
    });
    assert!(resp.rejected.iter().any(|r| r.doc == job_id));
    assert!(server_bytes(&s, job_id).is_none(), "nothing stored");
    assert_honest_replicas_converge(&s, &[new]);
}

#[test]
fn attack_a_technician_deletes_or_rewrites_an_office_note() {
    let s = start();
    let (job, _) = my_job_and_foreign(&s, EntityKind::Job);
    let (mut office, mut office_net) = client(&s, Role::Dispatcher, 2);
    office.sync(&mut office_net).unwrap();
    office
        .add_note(job, "Client litigieux : ne rien facturer sans accord")
        .unwrap();
    office.sync(&mut office_net).unwrap();
    let note = server_record(&s, job.doc())
        .items("notes")
        .and_then(|n| n.keys().next().cloned())
        .unwrap();
    let mut raw = raw(&s);
    // Deleted outright.
    let resp = raw.push(&s, job.doc(), EntityKind::Job, |tx| {
        let Some((_, notes)) = tx.get(ROOT, "notes").unwrap() else {
            panic!()
        };
        tx.delete(&notes, note.as_str()).unwrap();
    });
    assert!(resp.rejected.is_empty(), "{:?}", resp.rejected);
    let text = |s: &TestServer| {
        server_record(s, job.doc())
            .items("notes")
            .and_then(|n| n.get(&note))
            .map(|n| n.get("text").cloned())
    };
    assert_eq!(
        text(&s),
        Some(Some(Scalar::str(
            "Client litigieux : ne rien facturer sans accord"
        ))),
        "the note is back"
    );
    // Rewritten in place.
    let resp = raw.push(&s, job.doc(), EntityKind::Job, |tx| {
        let Some((_, notes)) = tx.get(ROOT, "notes").unwrap() else {
            panic!()
        };
        let Some((_, n)) = tx.get(&notes, note.as_str()).unwrap() else {
            panic!()
        };
        tx.put(&n, "text", "Tout facturer").unwrap();
    });
    assert!(resp.rejected.is_empty(), "{:?}", resp.rejected);
    assert_eq!(
        text(&s),
        Some(Some(Scalar::str(
            "Client litigieux : ne rien facturer sans accord"
        )))
    );
    let tech = assert_honest_replicas_converge(&s, &[job.doc()]);
    let Some(AnyEntity::Job(j)) = tech.entity(job.doc()).unwrap() else {
        panic!()
    };
    assert!(
        j.notes
            .iter()
            .any(|n| n.text == "Client litigieux : ne rien facturer sans accord")
    );
}

#[test]
fn attack_a_technician_stores_megabytes_under_an_unknown_key() {
    let s = start();
    let (job, _) = my_job_and_foreign(&s, EntityKind::Job);
    let mut raw = raw(&s);
    let blob = "x".repeat(3 << 20);
    let size = |s: &TestServer| server_bytes(s, job.doc()).unwrap().1.len();
    let before = size(&s);
    // A key outside the schema, at the root.
    let resp = raw.push(&s, job.doc(), EntityKind::Job, |tx| {
        tx.put(ROOT, "cache", blob.as_str()).unwrap();
    });
    refused(&resp, job.doc(), "`cache` is not part of the schema");
    // A field no note has.
    let resp = raw.push(&s, job.doc(), EntityKind::Job, |tx| {
        item(
            tx,
            "notes",
            "n",
            &[
                ("text", "ok".into()),
                ("at", ScalarValue::Int(1)),
                ("blob", blob.as_str().into()),
            ],
        );
    });
    refused(&resp, job.doc(), "notes[n].blob");
    // Raw bytes, and an object, under fields a technician may write (both read as nothing).
    let resp = raw.push(&s, job.doc(), EntityKind::Job, |tx| {
        tx.put(ROOT, "signature", ScalarValue::Bytes(vec![7; 1 << 20]))
            .unwrap();
    });
    refused(&resp, job.doc(), "`signature` holds an object or raw bytes");
    let resp = raw.push(&s, job.doc(), EntityKind::Job, |tx| {
        let o = tx.put_object(ROOT, "check_in", ObjType::Map).unwrap();
        tx.put(&o, "hidden", blob.as_str()).unwrap();
    });
    refused(&resp, job.doc(), "`check_in` holds an object");
    // A known field, over the size cap.
    let resp = raw.push(&s, job.doc(), EntityKind::Job, |tx| {
        item(
            tx,
            "notes",
            "big",
            &[("text", blob.as_str().into()), ("at", ScalarValue::Int(1))],
        );
    });
    refused(&resp, job.doc(), "bytes, at most");
    assert_eq!(size(&s), before, "nothing stored");
    let doc = shared::crdt::load(&server_bytes(&s, job.doc()).unwrap().1).unwrap();
    assert!(doc.get(ROOT, "cache").unwrap().is_none());
    assert_honest_replicas_converge(&s, &[job.doc()]);
}

#[test]
fn attack_a_technician_signs_a_note_as_another_technician() {
    let s = start();
    let (job, _) = my_job_and_foreign(&s, EntityKind::Job);
    let other = s.data.technicians[1];
    let mut raw = raw(&s);
    let resp = raw.push(&s, job.doc(), EntityKind::Job, |tx| {
        item(
            tx,
            "notes",
            "signed",
            &[
                ("text", "Travail fait par un collègue".into()),
                ("author", other.to_string().as_str().into()),
                ("at", ScalarValue::Int(1)),
            ],
        );
    });
    assert!(resp.rejected.is_empty(), "{:?}", resp.rejected);
    let author = server_record(&s, job.doc())
        .items("notes")
        .and_then(|n| n.get("signed"))
        .and_then(|n| n.get("author").cloned());
    assert_eq!(
        author,
        Some(Scalar::str(me(&s).to_string())),
        "the session's technician"
    );
    assert_honest_replicas_converge(&s, &[job.doc()]);
}

#[test]
fn attack_one_session_refreshed_many_times_at_once_yields_one_session() {
    let s = start();
    let token = s
        .keys
        .issue(
            DeviceId(DocId::from_u128(0xa7f0)),
            Role::Technician,
            Some(me(&s)),
            now_s(),
            3600,
        )
        .unwrap();
    let url = format!("{}/api/v1/auth/refresh", s.url);
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let codes: Vec<u16> = (0..8)
        .map(|_| {
            let (url, token, barrier) = (url.clone(), token.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                post_json(&url, Some(&token), &serde_json::json!({})).0
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert_eq!(
        codes.iter().filter(|c| **c == 200).count(),
        1,
        "exactly one new session: {codes:?}"
    );
    assert!(codes.iter().all(|c| *c == 200 || *c == 401), "{codes:?}");
}

#[test]
fn attack_a_login_link_for_someone_who_is_not_an_active_technician() {
    let s = start();
    let office = session_token(&s, 0xa7f1, Role::Dispatcher, None);
    let url = format!("{}/api/v1/auth/magic", s.url);
    let ask = |tech: String| {
        post_json(
            &url,
            Some(&office),
            &serde_json::json!({ "technician": tech }),
        )
    };
    // Someone who does not exist.
    let (status, body) = ask(DocId::from_u128(0xdead).to_string());
    assert_eq!(status, 400, "{body}");
    // Someone who has left.
    let gone = s.data.technicians[1];
    s.svc
        .with_engine(|e| {
            let effects = e.edit(
                gone.doc(),
                &[shared::record::FieldChange::Set {
                    field: "active".into(),
                    value: Scalar::Bool(false),
                }],
                MONDAY_9AM,
            )?;
            Ok(((), effects))
        })
        .unwrap();
    let (status, body) = ask(gone.to_string());
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("active"));
    // An active technician gets a link.
    assert_eq!(ask(me(&s).to_string()).0, 200);
}

#[test]
fn attack_a_revoked_device_or_technician_is_locked_out_and_its_live_stream_ends() {
    let s = start();
    let token = |n: u128, role: Role, tech: Option<TechnicianId>| {
        s.keys
            .issue(DeviceId(DocId::from_u128(n)), role, tech, now_s() - 1, 3600)
            .unwrap()
    };
    let admin = token(0xad, Role::Admin, None);
    let phone = token(0xb1, Role::Technician, Some(me(&s)));
    let tablet = token(0xb2, Role::Technician, Some(me(&s)));
    let colleague = token(0xb3, Role::Technician, Some(s.data.technicians[1]));
    let dispatcher = token(0xb4, Role::Dispatcher, None);
    let refresh = |t: &str| {
        post_json(
            &format!("{}/api/v1/auth/refresh", s.url),
            Some(t),
            &serde_json::json!({}),
        )
        .0
    };
    let revoke = |by: &str, body: serde_json::Value| {
        post_json(&format!("{}/api/v1/auth/revoke", s.url), Some(by), &body).0
    };
    // Only an admin revokes, and names exactly one thing.
    assert_eq!(
        revoke(
            &dispatcher,
            serde_json::json!({ "device": DocId::from_u128(0xb1).to_string() })
        ),
        403
    );
    assert_eq!(revoke(&admin, serde_json::json!({})), 400);
    assert_eq!(
        revoke(&admin, serde_json::json!({ "device": "not-an-id" })),
        400
    );

    // A lost phone: its sessions end, the technician's other device goes on.
    let events = listen(&s.url, &dispatcher, None);
    assert_eq!(
        revoke(
            &admin,
            serde_json::json!({ "device": DocId::from_u128(0xb1).to_string() })
        ),
        204
    );
    assert_eq!(refresh(&phone), 401);
    // Someone who left: every session on every device.
    assert_eq!(
        revoke(
            &admin,
            serde_json::json!({ "technician": me(&s).to_string() })
        ),
        204
    );
    assert_eq!(refresh(&tablet), 401);
    let mut net = HttpTransport::new(&s.url, &tablet, Duration::from_secs(5)).unwrap();
    let (mut r, _) = client(&s, Role::Technician, 9);
    assert!(matches!(
        r.sync(&mut net),
        Err(app_tauri_core::TransportError::Server { status: 401, .. })
    ));
    assert_eq!(refresh(&colleague), 200, "another technician is untouched");

    // A dispatcher's session revoked: its open live stream ends at once.
    assert_eq!(
        revoke(
            &admin,
            serde_json::json!({ "device": DocId::from_u128(0xb4).to_string() })
        ),
        204
    );
    assert_stream_ends(
        &events,
        Duration::from_secs(5),
        "the live stream outlived its revoked session",
    );
}

#[test]
fn attack_a_session_kept_alive_by_refreshes_past_its_maximum_age() {
    let s = start();
    // A token from a login long ago, refreshed ever since.
    let old = s
        .keys
        .issue_session(
            DeviceId(DocId::from_u128(0xa7f2)),
            Role::Admin,
            None,
            now_s(),
            now_s() - s.keys.lifetimes().admin_max_s + 5,
        )
        .unwrap();
    assert!(
        old.1 <= now_s() + 5,
        "a token never outlives its session's maximum age"
    );
    let (status, body) = post_json(
        &format!("{}/api/v1/auth/refresh", s.url),
        Some(&old.0),
        &serde_json::json!({}),
    );
    assert_eq!(status, 200, "{body}");
    let again = body["token"].as_str().unwrap().to_owned();
    assert!(body["expires_at"].as_i64().unwrap() <= now_s() + 5);
    // Once the maximum age is reached, refreshing is refused: log in again. (A token claiming
    // an old login, signed with the server's key, as a long-lived session would carry.)
    let claims = sync_server::auth::Claims {
        sub: DocId::from_u128(0xa7f3).to_string(),
        role: Role::Admin,
        tech: None,
        iat: now_s(),
        exp: now_s() + 3600,
        jti: "0123456789abcdef".into(),
        kind: sync_server::auth::TokenKind::Session,
        auth: Some(now_s() - s.keys.lifetimes().admin_max_s - 1),
        acct: None,
    };
    let past = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let (status, body) = post_json(
        &format!("{}/api/v1/auth/refresh", s.url),
        Some(&past),
        &serde_json::json!({}),
    );
    assert_eq!(status, 401, "{body}");
    assert!(body["message"].as_str().unwrap().contains("maximum age"));
    assert_eq!(
        post_json(
            &format!("{}/api/v1/auth/refresh", s.url),
            Some(&again),
            &serde_json::json!({})
        )
        .0,
        200,
        "the session within its age goes on"
    );
}

#[test]
fn a_panic_in_one_request_fails_that_request_only() {
    let s = start();
    let (mut tech, mut net) = client(&s, Role::Technician, 1);
    tech.sync(&mut net).unwrap();
    let before = s.svc.read(|e| e.stats().docs).unwrap();
    let r: anyhow::Result<()> = s
        .svc
        .with_engine(|_| panic!("a bug reached by one request"));
    assert!(r.is_err());
    assert!(s.svc.is_ready(), "the service goes on");
    assert_eq!(s.svc.read(|e| e.stats().docs).unwrap(), before);
    let job = tech
        .doc_ids()
        .unwrap()
        .into_iter()
        .find(|(_, k)| *k == EntityKind::Job)
        .map(|(d, _)| JobId(d))
        .unwrap();
    tech.add_note(job, "Après l'incident").unwrap();
    tech.sync(&mut net).unwrap();
    assert!(tech.rejections().unwrap().is_empty());
    let note_there = server_record(&s, job.doc())
        .items("notes")
        .is_some_and(|n| {
            n.values()
                .any(|i| i.get("text") == Some(&Scalar::str("Après l'incident")))
        });
    assert!(note_there);
}

#[test]
fn attack_one_device_floods_the_server_and_is_told_to_wait() {
    let s = start();
    let token = |n: u128| session_token(&s, n, Role::Dispatcher, None);
    let (flood, calm) = (token(0xf1), token(0xf2));
    let http = reqwest::blocking::Client::new();
    let get = |t: &str| {
        http.get(format!("{}/api/v1/photos/{}", s.url, "0".repeat(64)))
            .bearer_auth(t)
            .send()
            .unwrap()
    };
    let mut limited = None;
    for _ in 0..400 {
        let r = get(&flood);
        if r.status().as_u16() == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("a flood is rate limited");
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&wait), "Retry-After {wait}");
    assert_eq!(
        get(&calm).status().as_u16(),
        404,
        "another device is served as usual"
    );
}

#[test]
fn attack_a_silent_client_is_dropped() {
    use std::io::{Read, Write};
    let s = start();
    let addr = s.url.trim_start_matches("http://").to_owned();
    // Opens a connection, sends half a request line, then nothing.
    let mut c = std::net::TcpStream::connect(&addr).unwrap();
    c.write_all(b"GET /health HT").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "closed by the server after its header deadline, not kept open"
    );
    // The server still serves others.
    assert_eq!(
        reqwest::blocking::get(format!("{}/health", s.url))
            .unwrap()
            .status()
            .as_u16(),
        200
    );
}
