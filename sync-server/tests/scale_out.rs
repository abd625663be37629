//! Two server processes on one PostgreSQL serve clients together: a change pushed through one
//! reaches a dispatcher listening on the other within a second, and syncs through either.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[path = "support/demo_server.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use shared::ids::{JobId, Role};
use shared::model::{AnyEntity, DispatchJob, JobStatus};
use shared::record::EntityKind;
use support::{device, spawn_demo, token, transport};
use sync_server::store::postgres_store::PostgresStore;

fn pg_url() -> String {
    #[allow(clippy::disallowed_methods)] // test configuration
    let url = std::env::var("FSM_TEST_PG_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test".into());
    url
}

#[test]
fn two_instances_on_one_postgres_serve_clients_together() {
    sync_server::tls::install_crypto();
    let schema = format!("fsm_scale_{}", std::process::id());
    PostgresStore::drop_schema(&pg_url(), &schema).unwrap();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pg = pg_url();
    let on_schema = [
        "--postgres",
        pg.as_str(),
        "--postgres-schema",
        schema.as_str(),
    ];
    let (s1, p1) = spawn_demo(d1.path(), None, &on_schema);
    let (s2, p2) = spawn_demo(d2.path(), None, &on_schema);
    let url = |p: u16| format!("http://127.0.0.1:{p}");

    // A technician syncs with instance 1, a dispatcher with instance 2.
    let (mut tech, ta) = device(Role::Technician, 1);
    let mut tech_net = transport(p1, ta);
    tech.sync(&mut tech_net).unwrap();
    let (mut office, oa) = device(Role::Dispatcher, 2);
    let office_token = token(Role::Dispatcher, oa.device);
    let mut office_net = transport(p2, oa);
    office.sync(&mut office_net).unwrap();

    // The dispatcher listens to instance 2.
    let resp = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .unwrap()
        .get(format!("{}/api/v1/events", url(p2)))
        .bearer_auth(&office_token)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(resp).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });

    let job = tech
        .doc_ids()
        .unwrap()
        .into_iter()
        .find(|(d, k)| *k == EntityKind::Job && matches!(tech.entity(*d).unwrap(), Some(AnyEntity::Job(j)) if j.status == JobStatus::Scheduled))
        .map(|(d, _)| JobId(d))
        .unwrap();
    tech.set_job_status(job, JobStatus::EnRoute).unwrap();
    let pushed = Instant::now();
    tech.sync(&mut tech_net).unwrap();
    let needle = job.doc().to_string();
    loop {
        let left = Duration::from_secs(1).saturating_sub(pushed.elapsed());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("instance 2 did not announce the change within a second"));
        if line.starts_with("data: ") && line.contains(&needle) && line.contains("en_route") {
            break;
        }
    }

    // And it syncs through the other instance, both ways.
    office.sync(&mut office_net).unwrap();
    let Some(AnyEntity::Job(j)) = office.entity(job.doc()).unwrap() else {
        panic!()
    };
    assert_eq!(j.status, JobStatus::EnRoute);
    office
        .update::<DispatchJob>(job.doc(), |j| {
            j.description = "Code de porte 4521".into();
            Ok(())
        })
        .unwrap();
    office.sync(&mut office_net).unwrap();
    tech.sync(&mut tech_net).unwrap();
    let Some(AnyEntity::Job(j)) = tech.entity(job.doc()).unwrap() else {
        panic!()
    };
    assert_eq!(j.description, "Code de porte 4521");
    assert_eq!(
        tech.record(job.doc()).unwrap(),
        office.record(job.doc()).unwrap()
    );

    drop((s1, s2));
    PostgresStore::drop_schema(&pg_url(), &schema).unwrap();
}
