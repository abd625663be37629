//! Bad input gets a typed error and changes nothing; forbidden writes are compensated.

use std::sync::Arc;

use app_tauri_core::{ReplicaError, Transport, TransportError};
use proptest::prelude::*;
use shared::clock::Clock;
use shared::crdt;
use shared::ids::{Author, DocId, Role, TechnicianId};
use shared::model::{AnyEntity, DispatchJob};
use shared::protocol::{self, DocChanges, Message, PushDoc, RejectReason, SyncRequest};
use shared::record::{EntityKind, FieldChange, Record, Scalar};
use shared::sync::server::Subject;
use tests::harness::{device, monday_9am};

use crate::world::{my_job, server_state, state, world};

struct Canned(Vec<u8>);
impl Transport for Canned {
    fn exchange(&mut self, _: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        Ok(self.0.clone())
    }
}

#[test]
fn corrupt_change_in_a_response_is_refused_whole() {
    let mut w = world();
    let job = my_job(&w);
    w.office
        .add_note(shared::ids::JobId(job), "à rappeler")
        .unwrap();
    w.office.sync(&mut w.office_net).unwrap();
    let before = state(&w.tech);
    let mut req = w.tech.sync_request("t").unwrap();
    req.outbox_upto = 0;
    let frame = w
        .hub
        .exchange(device(1), &protocol::encode(&Message::Request(req)));
    let Ok(Message::Response(mut resp)) = protocol::decode(&frame) else {
        panic!()
    };
    assert!(!resp.changes.is_empty());
    resp.changes.push(DocChanges {
        doc: job,
        kind: EntityKind::Job,
        epoch: 0,
        changes: vec![vec![0x85, 0x6f, 0x4a, 0x83, 9, 9, 9]],
        record: Record::default(),
        conflicts: vec![],
        overridden: vec![],
        partial: false,
    });
    let err = w.tech.apply_response(&resp).unwrap_err();
    assert!(matches!(err, ReplicaError::BadSyncData(_)), "{err}");
    assert_eq!(state(&w.tech), before);
}

#[test]
fn garbage_truncated_and_future_frames_change_nothing() {
    let mut w = world();
    let before = state(&w.tech);
    let good = protocol::encode(&Message::Refused(protocol::SyncRefusal::UnknownClient));
    let mut future = good.clone();
    future[4] = 99;
    for frame in [
        b"garbage".to_vec(),
        good[..good.len() - 1].to_vec(),
        future,
        Vec::new(),
    ] {
        let err = w.tech.sync(&mut Canned(frame)).unwrap_err();
        assert!(
            matches!(err, TransportError::Decode(_) | TransportError::Refused(_)),
            "{err}"
        );
        assert_eq!(state(&w.tech), before);
    }
    let err = w.tech.sync(&mut Canned(good)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "server refused the sync: this device is not registered with the server"
    );
    // A corrupt snapshot for a new document is refused too.
    let mut req = w.tech.sync_request("t").unwrap();
    req.cursor = 0;
    req.token = 0;
    let frame = w
        .hub
        .exchange(device(1), &protocol::encode(&Message::Request(req)));
    let Ok(Message::Response(mut resp)) = protocol::decode(&frame) else {
        panic!()
    };
    resp.base_cursor = w.tech.sync_point().unwrap().cursor;
    resp.base_token = w.tech.sync_point().unwrap().token;
    resp.snapshots[0].doc = DocId::from_u128(0xbad);
    resp.snapshots[0].bytes = b"not a document".to_vec();
    let r = w.tech.apply_response(&resp);
    assert!(matches!(r, Err(ReplicaError::BadSyncData(_))), "{r:?}");
    assert_eq!(state(&w.tech), before);
}

#[test]
fn change_from_an_unknown_actor_is_rejected_and_the_server_is_unchanged() {
    let mut w = world();
    let job = my_job(&w);
    let (_, bytes) = w
        .hub
        .engine
        .borrow()
        .doc_bytes(job)
        .map(|(e, b)| (e, b.to_vec()))
        .unwrap();
    let mut doc = crdt::load(&bytes).unwrap();
    let intruder = Author::new(Role::Dispatcher, device(66));
    let change = crdt::write(
        &mut doc,
        intruder,
        monday_9am(),
        &[FieldChange::Set {
            field: "title".into(),
            value: Scalar::str("Piraté"),
        }],
    )
    .unwrap()
    .unwrap();
    let before = server_state(&w.hub);
    let mut req: SyncRequest = w.tech.sync_request("t").unwrap();
    req.push = vec![PushDoc {
        doc: job,
        kind: EntityKind::Job,
        epoch: 0,
        changes: vec![change],
    }];
    let frame = w
        .hub
        .exchange(device(1), &protocol::encode(&Message::Request(req)));
    let Ok(Message::Response(resp)) = protocol::decode(&frame) else {
        panic!()
    };
    assert_eq!(resp.rejected.len(), 1);
    assert_eq!(resp.rejected[0].reason, RejectReason::UnknownActor);
    assert_eq!(server_state(&w.hub).1, before.1);
    let _ = w.tech.sync(&mut w.tech_net);
}

#[test]
fn forbidden_reassignment_is_compensated_and_everyone_converges() {
    let mut w = world();
    let job = my_job(&w);
    let original = w
        .hub
        .engine
        .borrow()
        .record(job)
        .unwrap()
        .get("technician")
        .clone();
    // Bypass the replica's own check, as a modified client would.
    let (_, bytes) = w
        .hub
        .engine
        .borrow()
        .doc_bytes(job)
        .map(|(e, b)| (e, b.to_vec()))
        .unwrap();
    let mut doc = crdt::load(&bytes).unwrap();
    let other: TechnicianId = w.data.technicians[1];
    // A second device of the same technician, running a modified client.
    let rogue = Author::new(Role::Technician, device(3));
    w.hub
        .connect(rogue, Subject::Technician(w.data.technicians[0]));
    let change = crdt::write(
        &mut doc,
        rogue,
        monday_9am(),
        &[
            FieldChange::Set {
                field: "technician".into(),
                value: Scalar::str(other.to_string()),
            },
            FieldChange::Set {
                field: "status".into(),
                value: Scalar::str("en_route"),
            },
        ],
    )
    .unwrap()
    .unwrap();
    let hello = protocol::ClientHello {
        author: rogue,
        app_version: "modified".into(),
    };
    let req = SyncRequest {
        hello,
        cursor: 0,
        token: 0,
        outbox_upto: 1,
        push: vec![PushDoc {
            doc: job,
            kind: EntityKind::Job,
            epoch: 0,
            changes: vec![change],
        }],
    };
    w.hub
        .exchange(device(3), &protocol::encode(&Message::Request(req)));
    let server = w.hub.engine.borrow().record(job).unwrap().clone();
    assert_eq!(
        server.get("technician"),
        &original,
        "the reassignment was undone"
    );
    assert_eq!(
        server.get("status"),
        &Scalar::str("en_route"),
        "the allowed part stayed"
    );
    w.office.sync(&mut w.office_net).unwrap();
    w.tech.sync(&mut w.tech_net).unwrap();
    assert_eq!(w.office.record(job).unwrap().unwrap(), server);
    let Some(AnyEntity::Job(j)) = w.tech.entity(job).unwrap() else {
        panic!()
    };
    assert_eq!(
        j.technician
            .map(|t| Scalar::str(t.to_string()))
            .unwrap_or(Scalar::Null),
        original
    );
    // The replica refuses the same edit locally, before writing anything.
    let err = w.tech.update::<DispatchJob>(job, |j| {
        j.technician = Some(other);
        Ok(())
    });
    assert!(matches!(err, Err(ReplicaError::Denied(_))));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]
    #[test]
    fn random_bytes_never_change_server_or_replica(bytes in proptest::collection::vec(any::<u8>(), 0..300), framed in any::<bool>()) {
        let mut w = world();
        let mut frame = if framed { b"FSMS\x01\x00\x01\x00".to_vec() } else { Vec::new() };
        frame.extend_from_slice(&bytes);
        let before_server = server_state(&w.hub);
        let answer = w.hub.exchange(device(1), &frame);
        prop_assert_eq!(server_state(&w.hub), before_server);
        prop_assert!(matches!(protocol::decode(&answer), Ok(Message::Refused(_))));
        let before = state(&w.tech);
        prop_assert!(w.tech.sync(&mut Canned(frame)).is_err());
        prop_assert_eq!(state(&w.tech), before);
        let _ = &w.office;
        let _: Option<Arc<dyn Clock>> = None;
    }
}
