//! `kill -9` of the real server binary during a burst of pushes: after a restart on the same data,
//! every change the server acknowledged is there.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[path = "support/demo_server.rs"]
mod support;

use std::process::Command;

use shared::ids::{JobId, Role};
use shared::model::AnyEntity;
use shared::record::EntityKind;
use support::{device, spawn_demo, transport};

#[test]
fn kill_9_during_a_burst_loses_no_acknowledged_change() {
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = spawn_demo(dir.path(), None, &[]);
    let (mut tech, author) = device(Role::Technician, 1);
    let mut net = transport(port, author);
    tech.sync(&mut net).unwrap();
    let job = tech
        .doc_ids()
        .unwrap()
        .into_iter()
        .find(|(_, k)| *k == EntityKind::Job)
        .map(|(d, _)| JobId(d))
        .unwrap();

    // Kill the server in the middle of the burst: the signal is sent once some notes are
    // acknowledged, and lands while the next exchanges are under way (no timing guess).
    let pid = server.0.id();
    let mut killer = None;
    let mut acked = Vec::new();
    let mut written = Vec::new();
    for i in 0..10_000 {
        if i == 40 {
            killer = Some(
                Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .spawn()
                    .unwrap(),
            );
        }
        let text = format!("note {i}");
        tech.add_note(job, &text).unwrap();
        written.push(text);
        match tech.sync(&mut net) {
            // Everything written so far was acknowledged.
            Ok(_) if tech.pending().unwrap().is_empty() => acked = written.clone(),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    killer.expect("the burst reached the kill").wait().unwrap();
    drop(server);
    assert!(
        acked.len() > 5,
        "the burst was too short to prove anything ({})",
        acked.len()
    );

    // Restart on the same data; a fresh device sees every acknowledged note.
    let (server, _) = spawn_demo(dir.path(), Some(port), &[]);
    let (mut fresh, fresh_author) = device(Role::Technician, 2);
    fresh.sync(&mut transport(port, fresh_author)).unwrap();
    let Some(AnyEntity::Job(j)) = fresh.entity(job.doc()).unwrap() else {
        panic!("job missing after restart")
    };
    let texts: Vec<&str> = j.notes.iter().map(|n| n.text.as_str()).collect();
    for t in &acked {
        assert!(
            texts.contains(&t.as_str()),
            "acknowledged {t:?} lost by the kill"
        );
    }
    // The first device pushes what was not acknowledged; then both agree.
    tech.sync(&mut net).unwrap();
    fresh.sync(&mut transport(port, fresh_author)).unwrap();
    assert_eq!(
        tech.record(job.doc()).unwrap(),
        fresh.record(job.doc()).unwrap()
    );
    let Some(AnyEntity::Job(j)) = fresh.entity(job.doc()).unwrap() else {
        panic!()
    };
    assert_eq!(
        j.notes.len(),
        written.len(),
        "every note written arrived exactly once"
    );
    drop(server);
}
