//! Scenarios a technician and a dispatcher live through, and the edge cases of the protocol.

use app_tauri_core::ReplicaError;
use shared::crdt;
use shared::ids::{JobId, TechnicianId};
use shared::model::{AnyEntity, DispatchJob, JobStatus};
use shared::protocol::{self, Message, PushDoc, RejectReason, Rejection, SyncRequest};
use shared::record::{EntityKind, FieldChange, Scalar};
use tests::harness::{device, monday_9am};

use crate::world::{my_job, server_state, world};

#[test]
fn an_offline_walk_to_completed_is_kept_whole() {
    let mut w = world();
    let job = JobId(my_job(&w));
    for s in [JobStatus::EnRoute, JobStatus::OnSite] {
        w.tech.set_job_status(job, s).unwrap();
    }
    w.tech.add_note(job, "Fibre épissée au boîtier").unwrap();
    w.tech.set_job_status(job, JobStatus::Completed).unwrap();
    // Skipping steps locally is refused.
    assert!(matches!(
        w.tech.set_job_status(job, JobStatus::Scheduled),
        Err(ReplicaError::Denied(_))
    ));
    w.tech.sync(&mut w.tech_net).unwrap();
    w.office.sync(&mut w.office_net).unwrap();
    let Some(AnyEntity::Job(j)) = w.office.entity(job.doc()).unwrap() else {
        panic!()
    };
    assert_eq!(
        j.status,
        JobStatus::Completed,
        "the walk pushed at once was judged step by step"
    );
    assert!(j.actual_start.is_some() && j.actual_end.is_some());
    assert_eq!(j.notes.len(), 1);
    assert!(w.hub.engine.borrow().conflicts().is_empty());
}

#[test]
fn invariant_a_rejection_keeps_what_was_refused_and_the_edits_made_after_it() {
    let mut w = world();
    let job = JobId(my_job(&w));
    w.tech.add_note(job, "avant l'envoi").unwrap();
    let req = w.tech.sync_request("t").unwrap();
    // While the request is in flight, the technician writes another note.
    w.tech.add_note(job, "pendant l'envoi").unwrap();
    let frame = w
        .hub
        .exchange(device(1), &protocol::encode(&Message::Request(req)));
    let Ok(Message::Response(mut resp)) = protocol::decode(&frame) else {
        panic!()
    };
    // The server refuses the document (as it would an invalid change), sending its copy.
    let snapshot = w
        .hub
        .engine
        .borrow()
        .doc_bytes(job.doc())
        .map(|(epoch, bytes)| protocol::Snapshot {
            doc: job.doc(),
            kind: EntityKind::Job,
            epoch,
            bytes: bytes.to_vec(),
            record: w.hub.engine.borrow().record(job.doc()).unwrap().clone(),
            conflicts: vec![],
            overridden: vec![],
        });
    resp.rejected.push(Rejection {
        doc: job.doc(),
        reason: RejectReason::Invalid("test".into()),
        snapshot,
    });
    w.tech.apply_response(&resp).unwrap();
    let Some(AnyEntity::Job(j)) = w.tech.entity(job.doc()).unwrap() else {
        panic!()
    };
    let texts: Vec<&str> = j.notes.iter().map(|n| n.text.as_str()).collect();
    assert!(
        texts.contains(&"pendant l'envoi"),
        "the later note survived: {texts:?}"
    );
    assert_eq!(w.tech.pending().unwrap().len(), 1, "and is still queued");
    let rejections = w.tech.rejections().unwrap();
    assert_eq!(rejections.len(), 1, "the refusal is listed");
    assert_eq!(
        rejections[0].reason,
        Some(RejectReason::Invalid("test".into())),
        "with its typed reason"
    );
    assert!(
        rejections[0].refused.iter().any(|c| matches!(
            c,
            FieldChange::SetItem { collection, field, value, .. }
                if collection == "notes" && field == "text" && *value == Scalar::str("avant l'envoi")
        )),
        "and the refused note's text, to show and apply again: {:?}",
        rejections[0].refused
    );
    w.tech.sync(&mut w.tech_net).unwrap();
    w.office.sync(&mut w.office_net).unwrap();
    let Some(AnyEntity::Job(j)) = w.office.entity(job.doc()).unwrap() else {
        panic!()
    };
    assert!(j.notes.iter().any(|n| n.text == "pendant l'envoi"));
}

#[test]
fn documents_outside_the_scope_can_be_neither_read_nor_written() {
    let w = world();
    // A job of the other technician.
    let other: TechnicianId = w.data.technicians[1];
    let foreign = w
        .data
        .entities
        .iter()
        .find_map(|e| match e {
            AnyEntity::Job(j) if j.technician == Some(other) => Some(j.id.doc()),
            _ => None,
        })
        .unwrap();
    assert!(
        w.tech.entity(foreign).unwrap().is_none(),
        "not replicated to this technician"
    );
    // The device never held the job, so it cannot build on its history (change hashes are not
    // guessable): its change starts from nothing.
    let mut doc = automerge::Automerge::new();
    let change = crdt::write(
        &mut doc,
        w.tech.author(),
        monday_9am(),
        &[FieldChange::Set {
            field: "status".into(),
            value: Scalar::str("en_route"),
        }],
    )
    .unwrap()
    .unwrap();
    let before = server_state(&w.hub);
    let mut req: SyncRequest = w.tech.sync_request("t").unwrap();
    req.push = vec![
        PushDoc {
            doc: foreign,
            kind: EntityKind::Job,
            epoch: 0,
            changes: vec![change],
        },
        // A wrong kind with no change must not leak the document either.
        PushDoc {
            doc: foreign,
            kind: EntityKind::Tag,
            epoch: 0,
            changes: vec![],
        },
    ];
    let frame = w
        .hub
        .exchange(device(1), &protocol::encode(&Message::Request(req)));
    let Ok(Message::Response(resp)) = protocol::decode(&frame) else {
        panic!()
    };
    assert_eq!(resp.rejected.len(), 2);
    assert!(
        resp.rejected
            .iter()
            .all(|r| r.reason == RejectReason::OutOfScope && r.snapshot.is_none())
    );
    assert!(resp.snapshots.iter().all(|s| s.doc != foreign));
    assert_eq!(server_state(&w.hub).1, before.1);
}

#[test]
fn a_reassigned_job_leaves_the_device_but_its_offline_notes_arrive() {
    let mut w = world();
    let job = JobId(my_job(&w));
    // The technician is offline and writes a note; meanwhile the dispatcher reassigns the job.
    w.tech
        .add_note(job, "travail fait avant la réaffectation")
        .unwrap();
    let other = w.data.technicians[1];
    w.office
        .update::<DispatchJob>(job.doc(), |j| {
            j.technician = Some(other);
            Ok(())
        })
        .unwrap();
    w.office.sync(&mut w.office_net).unwrap();
    w.tech.sync(&mut w.tech_net).unwrap();
    w.tech.sync(&mut w.tech_net).unwrap();
    assert!(
        w.tech.entity(job.doc()).unwrap().is_none(),
        "evicted once its note was acknowledged"
    );
    assert_eq!(w.tech.pending().unwrap().len(), 0);
    w.office.sync(&mut w.office_net).unwrap();
    let Some(AnyEntity::Job(j)) = w.office.entity(job.doc()).unwrap() else {
        panic!()
    };
    assert_eq!(j.technician, Some(other));
    assert!(
        j.notes
            .iter()
            .any(|n| n.text == "travail fait avant la réaffectation")
    );
}

#[test]
fn offline_notes_on_a_reassigned_job_survive_a_server_that_forgot_the_device() {
    let mut w = world();
    let job = JobId(my_job(&w));
    w.tech.add_note(job, "noté hors ligne").unwrap();
    let other = w.data.technicians[1];
    w.office
        .update::<DispatchJob>(job.doc(), |j| {
            j.technician = Some(other);
            Ok(())
        })
        .unwrap();
    w.office.sync(&mut w.office_net).unwrap();
    // The server restarts (or the device reaches another instance): it no longer knows what
    // the device holds, and the job is out of its scope. The store recorded that the device
    // held the job (`Held`), so the note is still accepted.
    let author = w.tech.author();
    w.tech_net = w.hub.connect(
        author,
        shared::sync::server::Subject::Technician(w.data.technicians[0]),
    );
    w.tech.sync(&mut w.tech_net).unwrap();
    assert!(
        w.tech.rejections().unwrap().is_empty(),
        "{:?}",
        w.tech.rejections().unwrap()
    );
    w.office.sync(&mut w.office_net).unwrap();
    let Some(AnyEntity::Job(j)) = w.office.entity(job.doc()).unwrap() else {
        panic!()
    };
    assert!(j.notes.iter().any(|n| n.text == "noté hors ligne"));
}

/// A replica made before board cards showed the town has no town column: opened by this version,
/// it gains one, filled from the stored records, and every job's town shows without a resync.
#[test]
fn a_replica_from_before_towns_were_shown_fills_them_in_on_open() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("office.db");
    let author = shared::ids::Author::new(shared::ids::Role::Dispatcher, device(7));
    let clock = || -> std::sync::Arc<dyn shared::clock::Clock> {
        std::sync::Arc::new(shared::clock::FixedClock::new(monday_9am()))
    };
    let mut office = app_tauri_core::Replica::open(&path, author, clock()).unwrap();
    let mut net = w.hub.connect(author, shared::sync::server::Subject::Office);
    office.sync(&mut net).unwrap();
    let today = w.hub.today();
    let towns = |r: &app_tauri_core::Replica| -> Vec<String> {
        r.job_summaries(today, today + chrono::Days::new(3), None)
            .unwrap()
            .into_iter()
            .map(|j| j.town)
            .collect()
    };
    let before = towns(&office);
    assert!(!before.is_empty() && before.iter().all(|t| !t.is_empty()));
    drop(office);
    // As an earlier version left the file.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("ALTER TABLE locations DROP COLUMN city")
        .unwrap();
    drop(conn);
    let office = app_tauri_core::Replica::open(&path, author, clock()).unwrap();
    assert_eq!(towns(&office), before, "filled in from the stored records");
    assert!(
        office.sync_point().unwrap().cursor > 0,
        "the device keeps its position: no resync"
    );
}
