//! Killing the app in the middle of a write loop loses no edit whose call returned.
//!
//! The test re-runs its own binary as a child that adds notes in a loop and prints `ack N` after
//! each call returns; the parent kills it (SIGKILL) at a varying point, reads every
//! acknowledgement the child wrote before it died (a lost tail cannot hide in the pipe), reopens
//! the database and checks every acknowledged note is there, with its outbox entry, and nothing
//! half-written. Each round numbers its notes from its own base, so a lost note is never written
//! again under the same number by the next round.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use app_tauri_core::Replica;
use chrono::NaiveDate;
use shared::clock::{Clock, FixedClock, Millis};
use shared::ids::{Author, CustomerId, DeviceId, DocId, JobId, LocationId, Role};
use shared::model::{AnyEntity, DispatchJob, JobStatus, Name, Priority};

const CHILD: &str = "FSM_CRASH_CHILD_DB";
const BASE: &str = "FSM_CRASH_CHILD_BASE";
const JOB: JobId = JobId(DocId::from_u128(0x10b));

fn open(path: &str) -> Replica {
    let clock: Arc<dyn Clock> = Arc::new(FixedClock::new(Millis(1_795_424_400_000)));
    Replica::open(
        path.as_ref(),
        Author::new(Role::Dispatcher, DeviceId(DocId::from_u128(1))),
        clock,
    )
    .unwrap()
}

fn job() -> DispatchJob {
    DispatchJob {
        id: JOB,
        erp_name: None,
        customer: CustomerId(DocId::from_u128(2)),
        location: LocationId(DocId::from_u128(3)),
        title: Name::parse("Installation fibre").unwrap(),
        description: String::new(),
        technician: None,
        assistants: vec![],
        required_tags: vec![],
        date: NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
        start: None,
        duration_min: 60,
        recurrence: None,
        priority: Priority::Normal,
        status: JobStatus::Open,
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
    }
}

/// The child: writes until killed. Does nothing when run as an ordinary test.
#[test]
fn crash_child_writer() {
    #[allow(clippy::disallowed_methods)] // the parent passes the database path this way
    let Ok(path) = std::env::var(CHILD) else {
        return;
    };
    #[allow(clippy::disallowed_methods)]
    let base: u64 = std::env::var(BASE).unwrap().parse().unwrap();
    let mut r = open(&path);
    for i in base.. {
        r.add_note(JOB, &format!("note {i}")).unwrap();
        println!("ack {i}");
    }
}

#[test]
fn killing_the_process_mid_write_loses_no_acknowledged_edit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replica.sqlite3");
    let path = path.to_str().unwrap().to_owned();
    open(&path)
        .create(&AnyEntity::Job(Box::new(job())))
        .unwrap();
    let mut acked: Vec<u64> = Vec::new();
    for round in 0..25u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, &path)
            .env(BASE, (round * 1_000_000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let wanted = 3 + (round * 37) % 60;
        let mut seen = 0;
        for line in out.by_ref() {
            if let Some(n) = line.unwrap().strip_prefix("ack ") {
                acked.push(n.parse().unwrap());
                seen += 1;
                if seen >= wanted {
                    break;
                }
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // Every acknowledgement written before the kill, still in the pipe.
        for line in out {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("ack ") {
                acked.push(n.parse().unwrap());
            }
        }

        let r = open(&path);
        let Some(AnyEntity::Job(j)) = r.entity(JOB.doc()).unwrap() else {
            panic!("job lost in round {round}")
        };
        let texts: Vec<&str> = j.notes.iter().map(|n| n.text.as_str()).collect();
        for i in &acked {
            assert!(
                texts.contains(&format!("note {i}").as_str()),
                "round {round}: acknowledged note {i} lost"
            );
        }
        // Every note in the document has its outbox entry (plus the creation): nothing half-done.
        assert_eq!(
            r.pending().unwrap().len(),
            j.notes.len() + 1,
            "round {round}"
        );
    }
    assert!(
        acked.len() > 100,
        "the child wrote too little to prove anything ({})",
        acked.len()
    );
}
