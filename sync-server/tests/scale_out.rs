//! Two server processes on one PostgreSQL serve clients together: a change pushed through one
//! reaches a dispatcher listening on the other within a second, and syncs through either.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use app_tauri_core::{HttpTransport, Replica};
use shared::clock::{Clock, FixedClock};
use shared::ids::{Author, DeviceId, DocId, JobId, Role};
use shared::model::{AnyEntity, DispatchJob, JobStatus};
use shared::record::EntityKind;
use sync_server::auth::Keys;
use sync_server::store::postgres_store::PostgresStore;
use sync_server::{SystemClock, demo};

const SECRET: &str = "scale-out test secret, long enough to sign";

fn pg_url() -> String {
    #[allow(clippy::disallowed_methods)] // test configuration
    let url = std::env::var("FSM_TEST_PG_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test".into());
    url
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(schema: &str, port: u16, dir: &std::path::Path) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_sync-server"))
        .args([
            "demo",
            "--data",
            dir.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--postgres", &pg_url(), "--postgres-schema", schema])
        .env("APP_JWT_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "server on {port} did not start (is PostgreSQL up at {}?)",
            pg_url()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server(child)
}

fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn token(role: Role, device: DeviceId) -> String {
    let tech = (role == Role::Technician).then(|| {
        demo::generate(demo::DEMO_SEED, demo::DEMO_SPEC, SystemClock.now().date()).technicians[0]
    });
    Keys::from_secret(SECRET.as_bytes())
        .issue(device, role, tech, SystemClock.now().0 / 1000, 3600)
        .unwrap()
}

fn device(role: Role, n: u128) -> (Replica, Author) {
    let author = Author::new(role, DeviceId(DocId::from_u128(0xd000 + n)));
    let clock: Arc<dyn Clock> = Arc::new(FixedClock::new(SystemClock.now()));
    (
        Replica::open_in_memory(author, clock, Some(n as u64)).unwrap(),
        author,
    )
}

#[test]
fn two_instances_on_one_postgres_serve_clients_together() {
    let schema = format!("fsm_scale_{}", std::process::id());
    PostgresStore::drop_schema(&pg_url(), &schema).unwrap();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (p1, p2) = (port(), port());
    let s1 = spawn(&schema, p1, d1.path());
    let s2 = spawn(&schema, p2, d2.path());
    let url = |p: u16| format!("http://127.0.0.1:{p}");

    // A technician syncs with instance 1, a dispatcher with instance 2.
    let (mut tech, ta) = device(Role::Technician, 1);
    let mut tech_net = HttpTransport::new(
        &url(p1),
        &token(Role::Technician, ta.device),
        Duration::from_secs(10),
    )
    .unwrap();
    tech.sync(&mut tech_net).unwrap();
    let (mut office, oa) = device(Role::Dispatcher, 2);
    let office_token = token(Role::Dispatcher, oa.device);
    let mut office_net =
        HttpTransport::new(&url(p2), &office_token, Duration::from_secs(10)).unwrap();
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
