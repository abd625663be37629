//! `kill -9` of the real server binary during a burst of pushes: after a restart on the same data,
//! every change the server acknowledged is there.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use app_tauri_core::{HttpTransport, Replica};
use shared::clock::{Clock, FixedClock};
use shared::ids::{Author, DeviceId, DocId, JobId, Role};
use shared::model::AnyEntity;
use shared::record::EntityKind;
use sync_server::auth::Keys;
use sync_server::{SystemClock, demo};

const SECRET: &str = "durability test secret, long enough to sign";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(dir: &std::path::Path, port: u16) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_sync-server"))
        .args([
            "demo",
            "--data",
            dir.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("APP_JWT_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn replica(n: u128) -> (Replica, Author) {
    let author = Author::new(Role::Technician, DeviceId(DocId::from_u128(0xd000 + n)));
    let clock: Arc<dyn Clock> = Arc::new(FixedClock::new(SystemClock.now()));
    (
        Replica::open_in_memory(author, clock, Some(n as u64)).unwrap(),
        author,
    )
}

fn transport(port: u16, author: Author) -> HttpTransport {
    let tech =
        demo::generate(demo::DEMO_SEED, demo::DEMO_SPEC, SystemClock.now().date()).technicians[0];
    let token = Keys::from_secret(SECRET.as_bytes())
        .issue(
            author.device,
            Role::Technician,
            Some(tech),
            SystemClock.now().0 / 1000,
            3600,
        )
        .unwrap();
    HttpTransport::new(
        &format!("http://127.0.0.1:{port}"),
        &token,
        Duration::from_secs(5),
    )
    .unwrap()
}

#[test]
fn kill_9_during_a_burst_loses_no_acknowledged_change() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = spawn(dir.path(), port);
    let (mut tech, author) = replica(1);
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
    let pid = server.id();
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
    let _ = server.wait();
    assert!(
        acked.len() > 5,
        "the burst was too short to prove anything ({})",
        acked.len()
    );

    // Restart on the same data; a fresh device sees every acknowledged note.
    let mut server = spawn(dir.path(), port);
    let (mut fresh, fresh_author) = replica(2);
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
    server.kill().unwrap();
    let _ = server.wait();
}
