//! `kill -9` of the real server binary during a burst of pushes: after a restart on the same data,
//! every change the server acknowledged is there.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[path = "support/demo_server.rs"]
mod support;

use std::process::Command;
use std::time::Duration;

use shared::ids::{JobId, Role};
use shared::model::AnyEntity;
use shared::record::EntityKind;
use support::{device, free_port, spawn_demo, transport};

#[test]
fn kill_9_during_a_burst_loses_no_acknowledged_change() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = spawn_demo(dir.path(), port, &[]);
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

    // Kill the server at some point while the technician pushes note after note.
    let pid = server.0.id();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
    });
    let mut acked = Vec::new();
    let mut written = Vec::new();
    for i in 0..10_000 {
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
    killer.join().unwrap();
    drop(server);
    assert!(
        acked.len() > 5,
        "the burst was too short to prove anything ({})",
        acked.len()
    );

    // Restart on the same data; a fresh device sees every acknowledged note.
    let server = spawn_demo(dir.path(), port, &[]);
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
