//! The sync invariants beyond the happy path: a real `SyncService` over a real store, restarted,
//! shared by two instances, compacted; devices that were offline through all of it come back.
//! Run them all with `cargo test --workspace invariant`.

use std::sync::Arc;
use std::time::Duration;

use app_tauri_core::{Replica, Transport, TransportError};
use shared::clock::{Clock, FixedClock};
use shared::ids::{Author, DocId, JobId, Role, TechnicianId};
use shared::model::{AnyEntity, DispatchJob, JobStatus};
use shared::protocol::{self, Message};
use shared::sync::server::{ServerConfig, Subject};
use sync_server::auth::Device;
use sync_server::service::{ServiceError, SyncService};
use sync_server::store::postgres_store::PostgresStore;
use sync_server::store::{SqliteStore, Store};
use tests::data::{Dataset, generate};
use tests::harness::{device, monday_9am, replica, server_author};

use crate::world::small_spec;

/// A [`Clock`] the test and the service share.
#[derive(Debug)]
struct Shared(Arc<FixedClock>);
impl Clock for Shared {
    fn now(&self) -> shared::clock::Millis {
        self.0.now()
    }
}

/// A transport straight into a service, as the HTTP handler calls it.
struct Into {
    svc: Arc<SyncService>,
    who: Device,
}

impl Transport for Into {
    fn exchange(&mut self, request: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        match self.svc.exchange(self.who, &request) {
            Ok(frame) => Ok(frame),
            Err(ServiceError::Refused(r)) => Ok(protocol::encode(&Message::Refused(r))),
            Err(e) => Err(TransportError::Server {
                status: 503,
                message: e.to_string(),
            }),
        }
    }
}

/// Where the server keeps its data: a SQLite file (restart = reopen it) or a PostgreSQL schema
/// (several instances at once).
enum Backing {
    /// A folder and the database file in it the server opens.
    Sqlite(tempfile::TempDir, &'static str),
    Postgres(String),
}

fn sqlite() -> Backing {
    Backing::Sqlite(tempfile::tempdir().unwrap(), "s.db")
}

fn pg_url() -> String {
    #[allow(clippy::disallowed_methods)] // test configuration
    let url = std::env::var("FSM_TEST_PG_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test".into());
    url
}

impl Backing {
    fn store(&self) -> Box<dyn Store> {
        match self {
            Self::Sqlite(dir, file) => {
                Box::new(SqliteStore::open(&dir.path().join(file), true).unwrap())
            }
            Self::Postgres(schema) => Box::new(
                PostgresStore::connect(&pg_url(), schema).unwrap_or_else(|e| {
                    panic!("PostgreSQL is required for this test (FSM_TEST_PG_URL or the local server): {e}")
                }),
            ),
        }
    }
}

impl Drop for Backing {
    fn drop(&mut self) {
        if let Self::Postgres(schema) = self {
            let _ = PostgresStore::drop_schema(&pg_url(), schema);
        }
    }
}

/// A served world: the demo's small data set behind a real service, a technician and a
/// dispatcher replica.
struct Served {
    backing: Backing,
    clock: Arc<FixedClock>,
    data: Dataset,
    svc: Arc<SyncService>,
    tech: Replica,
    office: Replica,
}

fn config() -> ServerConfig {
    let mut c = ServerConfig::new(server_author());
    // Every document is due for compaction as soon as the horizon lets it.
    c.compact_after = 1;
    c
}

const TECH: u128 = 1;
const OFFICE: u128 = 2;

impl Served {
    fn new(backing: Backing) -> Self {
        let clock = Arc::new(FixedClock::new(monday_9am()));
        let svc = Self::open(&backing, &clock);
        let data = generate(11, small_spec(), clock.now().date());
        svc.seed(&data.entities, clock.now()).unwrap();
        let tech = replica(
            Author::new(Role::Technician, device(TECH)),
            clock.clone(),
            1,
        )
        .unwrap();
        let office = replica(
            Author::new(Role::Dispatcher, device(OFFICE)),
            clock.clone(),
            2,
        )
        .unwrap();
        let mut w = Self {
            backing,
            clock,
            data,
            svc,
            tech,
            office,
        };
        // Twice each: the second sync tells the server where each device stands.
        for _ in 0..2 {
            w.sync_tech();
            w.sync_office();
        }
        w
    }

    fn open(backing: &Backing, clock: &Arc<FixedClock>) -> Arc<SyncService> {
        Arc::new(
            SyncService::open(
                config(),
                backing.store(),
                Box::new(Shared(Arc::clone(clock))),
            )
            .unwrap(),
        )
    }

    /// The server process stops and starts again on the same store.
    fn restart(&mut self) {
        self.svc = Self::open(&self.backing, &self.clock);
    }

    /// A second server instance on the same store.
    fn instance(&self) -> Arc<SyncService> {
        Self::open(&self.backing, &self.clock)
    }

    /// Another device, synced once: a technician's second device or another dispatcher's.
    fn another(&self, role: Role, n: u128) -> (Replica, Into) {
        let mut r = replica(
            Author::new(role, device(n)),
            self.clock.clone(),
            100 + n as u64,
        )
        .unwrap();
        let subject = match role {
            Role::Technician => Subject::Technician(self.technician()),
            _ => Subject::Office,
        };
        let mut net = Into {
            svc: Arc::clone(&self.svc),
            who: Device {
                author: r.author(),
                subject,
            },
        };
        r.sync(&mut net).unwrap();
        (r, net)
    }

    fn technician(&self) -> TechnicianId {
        self.data.technicians[0]
    }

    fn tech_net(&self, svc: &Arc<SyncService>) -> Into {
        Into {
            svc: Arc::clone(svc),
            who: Device {
                author: self.tech.author(),
                subject: Subject::Technician(self.technician()),
            },
        }
    }

    fn office_net(&self, svc: &Arc<SyncService>) -> Into {
        Into {
            svc: Arc::clone(svc),
            who: Device {
                author: self.office.author(),
                subject: Subject::Office,
            },
        }
    }

    fn sync_tech(&mut self) {
        let mut net = self.tech_net(&self.svc);
        self.tech.sync(&mut net).unwrap();
    }

    /// Rounds of the technician then the office syncing.
    fn sync_both(&mut self, rounds: usize) {
        for _ in 0..rounds {
            self.sync_tech();
            self.sync_office();
        }
    }

    fn sync_office(&mut self) {
        let mut net = self.office_net(&self.svc);
        self.office.sync(&mut net).unwrap();
    }

    /// A scheduled job of the technician's.
    fn my_job(&self) -> JobId {
        self.tech
            .doc_ids()
            .unwrap()
            .into_iter()
            .find(|(d, _)| {
                matches!(self.tech.entity(*d).unwrap(), Some(AnyEntity::Job(j)) if j.status == JobStatus::Scheduled)
            })
            .map(|(d, _)| JobId(d))
            .unwrap()
    }

    fn compact(&self, svc: &SyncService, retention: Duration) -> usize {
        svc.compact(retention).unwrap()
    }

    fn server_job(&self, job: JobId) -> DispatchJob {
        match self.svc.read(|e| e.entity(job.doc()).cloned()).unwrap() {
            Some(AnyEntity::Job(j)) => *j,
            other => panic!("job {job:?} on the server: {other:?}"),
        }
    }

    fn server_conflicts(&self, doc: DocId) -> Vec<String> {
        self.svc
            .read(|e| {
                e.conflicts_of(doc)
                    .iter()
                    .map(|c| c.field.clone())
                    .collect()
            })
            .unwrap()
    }
}

/// The office gives `job` to the second technician and syncs; returns who has it now.
fn reassign_away(w: &mut Served, job: JobId) -> TechnicianId {
    let other = w.data.technicians[1];
    w.office
        .update::<DispatchJob>(job.doc(), |j| {
            j.technician = Some(other);
            Ok(())
        })
        .unwrap();
    w.sync_office();
    other
}

const MONTH: Duration = Duration::from_secs(30 * 86_400);

/// The technician completes a job offline while the office cancels it.
fn complete_offline_while_cancelled(w: &mut Served) -> JobId {
    let job = w.my_job();
    for s in [JobStatus::EnRoute, JobStatus::OnSite, JobStatus::Completed] {
        w.tech.set_job_status(job, s).unwrap();
    }
    w.office.set_job_status(job, JobStatus::Cancelled).unwrap();
    w.sync_office();
    job
}

fn assert_status_conflict_listed(w: &mut Served, job: JobId) {
    w.sync_tech();
    w.sync_office();
    assert!(
        w.tech.rejections().unwrap().is_empty(),
        "nothing refused: {:?}",
        w.tech.rejections().unwrap()
    );
    assert!(
        w.server_conflicts(job.doc()).iter().any(|f| f == "status"),
        "the completed-versus-cancelled clash is a listed conflict, not a silent win (server job: {:?})",
        w.server_job(job).status
    );
    assert!(
        w.office
            .conflicts()
            .unwrap()
            .iter()
            .any(|c| c.doc == job.doc() && c.field == "status"),
        "the dispatcher's inbox lists it"
    );
}

#[test]
fn invariant_compaction_after_a_restart_keeps_the_history_an_offline_device_builds_on() {
    let mut w = Served::new(sqlite());
    let job = complete_offline_while_cancelled(&mut w);
    w.restart();
    let compacted = w.compact(&w.svc, MONTH);
    assert!(
        compacted > 0,
        "documents every device has synced past are still compacted"
    );
    assert_status_conflict_listed(&mut w, job);
}

#[test]
fn invariant_an_instance_never_compacts_past_a_device_connected_to_another() {
    let schema = format!("fsm_inv_{}", std::process::id());
    let _ = PostgresStore::drop_schema(&pg_url(), &schema);
    let mut w = Served::new(Backing::Postgres(schema));
    // The technician syncs with the first instance; the office works through a second one,
    // which compacts.
    let job = w.my_job();
    for s in [JobStatus::EnRoute, JobStatus::OnSite, JobStatus::Completed] {
        w.tech.set_job_status(job, s).unwrap();
    }
    let second = w.instance();
    w.office.set_job_status(job, JobStatus::Cancelled).unwrap();
    let mut office_net = w.office_net(&second);
    w.office.sync(&mut office_net).unwrap();
    // Where the office stands reaches the second instance with its next request.
    w.office.sync(&mut office_net).unwrap();
    let compacted = w.compact(&second, MONTH);
    assert!(compacted > 0, "the second instance compacts what it may");
    assert_status_conflict_listed(&mut w, job);
}

#[test]
fn invariant_offline_notes_on_a_job_reassigned_away_survive_a_restart_and_compaction() {
    let mut w = Served::new(sqlite());
    let job = w.my_job();
    w.tech
        .add_note(job, "Boîtier remplacé, client absent")
        .unwrap();
    let other = reassign_away(&mut w, job);
    w.restart();
    w.compact(&w.svc, MONTH);
    w.sync_tech();
    w.sync_tech();
    assert!(
        w.tech.rejections().unwrap().is_empty(),
        "{:?}",
        w.tech.rejections().unwrap()
    );
    let j = w.server_job(job);
    assert_eq!(j.technician, Some(other));
    assert!(
        j.notes
            .iter()
            .any(|n| n.text == "Boîtier remplacé, client absent"),
        "the offline note arrived"
    );
    assert!(
        w.tech.entity(job.doc()).unwrap().is_none(),
        "and the job then left the device"
    );
}

#[test]
fn invariant_a_device_away_longer_than_retention_still_pushes_its_work() {
    let mut w = Served::new(sqlite());
    let job = w.my_job();
    w.tech.set_job_status(job, JobStatus::EnRoute).unwrap();
    w.tech.add_note(job, "Parti chercher une échelle").unwrap();
    // The office edits the same job; the device stays away past the retention, the server
    // restarts and compacts the job.
    w.office
        .update::<DispatchJob>(job.doc(), |j| {
            j.description = "Code de porte 4521".into();
            Ok(())
        })
        .unwrap();
    w.sync_office();
    w.clock.advance(2 * 3_600_000);
    w.sync_office();
    w.restart();
    let retention = Duration::from_secs(3_600);
    w.compact(&w.svc, retention);
    let epoch = w.svc.read(|e| e.doc_bytes(job.doc()).map(|d| d.0)).unwrap();
    assert_eq!(epoch, Some(1), "the job was compacted past the device");
    w.sync_tech();
    w.sync_office();
    assert!(
        w.tech.rejections().unwrap().is_empty(),
        "{:?}",
        w.tech.rejections().unwrap()
    );
    let j = w.server_job(job);
    assert_eq!(j.status, JobStatus::EnRoute);
    assert_eq!(j.description, "Code de porte 4521");
    assert!(
        j.notes
            .iter()
            .any(|n| n.text == "Parti chercher une échelle")
    );
    assert_eq!(
        w.tech.record(job.doc()).unwrap(),
        w.office.record(job.doc()).unwrap(),
        "both replicas converge"
    );
}

fn checklist(r: &Replica, job: JobId) -> Vec<(String, bool)> {
    match r.entity(job.doc()).unwrap() {
        Some(AnyEntity::Job(j)) => j.checklist.into_iter().map(|c| (c.key, c.done)).collect(),
        other => panic!("job {job:?}: {other:?}"),
    }
}

#[test]
fn invariant_a_rebase_reapplies_only_the_devices_own_edits() {
    let mut w = Served::new(sqlite());
    let job = w.my_job();
    // The technician's tablet, beside the phone (`w.tech`).
    let (mut tablet, mut tablet_net) = w.another(Role::Technician, 3);
    let lines: Vec<String> = checklist(&w.tech, job).into_iter().map(|c| c.0).collect();
    let (a, b) = (&lines[0], &lines[1]);

    // The tablet ticks line A.
    tablet.toggle_check(job, a).unwrap();
    tablet.sync(&mut tablet_net).unwrap();
    // The phone ticks line B and, while that sync is in flight, writes a note; the answer brings
    // the tablet's tick.
    w.tech.toggle_check(job, b).unwrap();
    let step = w.tech.sync_frame().unwrap();
    w.tech
        .add_note(job, "Prise optique posée au salon")
        .unwrap();
    let mut net = w.tech_net(&w.svc);
    let answer = net.exchange(step.frame.clone()).unwrap();
    let mut report = app_tauri_core::SyncReport::default();
    w.tech.sync_apply(&step, &answer, &mut report).unwrap();
    assert_eq!(w.tech.pending().unwrap().len(), 1, "the note waits");
    assert!(checklist(&w.tech, job).iter().any(|c| &c.0 == a && c.1));
    // The tablet unticks A again. The phone stays away past the retention; the server restarts
    // and compacts the job.
    tablet.toggle_check(job, a).unwrap();
    tablet.sync(&mut tablet_net).unwrap();
    w.clock.advance(2 * 3_600_000);
    tablet.sync(&mut tablet_net).unwrap();
    // The server learns where a device stands from its next request: twice each.
    w.sync_office();
    w.sync_office();
    w.restart();
    w.compact(&w.svc, Duration::from_secs(3_600));
    let epoch = w.svc.read(|e| e.doc_bytes(job.doc()).map(|d| d.0)).unwrap();
    assert_eq!(epoch, Some(1), "the job was compacted past the phone");
    w.sync_tech();
    assert_eq!(w.tech.pending().unwrap().len(), 0);
    let j = w.server_job(job);
    let done = |k: &str| j.checklist.iter().find(|c| c.key == k).unwrap().done;
    assert!(
        !done(a),
        "the tablet's newer untick stands: the phone only re-applied its own note"
    );
    assert!(done(b));
    assert!(
        j.notes
            .iter()
            .any(|n| n.text == "Prise optique posée au salon")
    );
}

#[test]
fn invariant_a_conflict_decision_syncs_and_opposite_decisions_are_a_conflict_again() {
    let mut w = Served::new(sqlite());
    let job = complete_offline_while_cancelled(&mut w);
    assert_status_conflict_listed(&mut w, job);
    let (mut second, mut second_net) = w.another(Role::Dispatcher, 4);
    assert!(
        second
            .conflicts()
            .unwrap()
            .iter()
            .any(|c| c.doc == job.doc())
    );
    // Offline, the first dispatcher keeps the value on screen; the second picks the other one.
    let shown = w
        .office
        .conflicts()
        .unwrap()
        .into_iter()
        .find(|c| c.doc == job.doc() && c.field == "status")
        .unwrap();
    let other = shown
        .values
        .iter()
        .map(|v| v.0.clone())
        .find(|v| *v != shown.shown)
        .unwrap();
    w.office
        .resolve_with(&job.doc().to_string(), "status", &shown.shown)
        .unwrap();
    assert_eq!(
        w.office.pending().unwrap().len(),
        1,
        "keeping the shown value is a decision that syncs"
    );
    second
        .resolve_with(&job.doc().to_string(), "status", &other)
        .unwrap();
    w.sync_office();
    second.sync(&mut second_net).unwrap();
    w.sync_office();
    assert!(
        w.server_conflicts(job.doc()).iter().any(|f| f == "status"),
        "two opposite decisions are themselves a visible conflict (kept {:?}, other {other:?}, server {:?})",
        shown.shown,
        w.server_job(job).status
    );
}

#[test]
fn invariant_a_device_restored_from_its_own_older_backup_continues_under_a_fresh_actor() {
    let mut w = Served::new(sqlite());
    let job = w.my_job();
    let dir = tempfile::tempdir().unwrap();
    let (path, backup) = (dir.path().join("replica.db"), dir.path().join("backup.db"));
    let author = w.tech.author();
    let open =
        |w: &Served| Replica::open(&path, author, Arc::clone(&w.clock) as Arc<dyn Clock>).unwrap();
    // The phone's replica lives in a file; it syncs, and a backup of it is taken.
    w.tech = open(&w);
    w.sync_tech();
    w.sync_tech();
    w.tech = replica(
        Author::new(Role::Dispatcher, device(99)),
        w.clock.clone(),
        9,
    )
    .unwrap();
    std::fs::copy(&path, &backup).unwrap();
    w.tech = open(&w);
    // Work acknowledged by the server after the backup.
    w.tech
        .add_note(job, "Note envoyée après la sauvegarde")
        .unwrap();
    w.sync_tech();
    assert_eq!(w.tech.pending().unwrap().len(), 0);
    // The phone is restored from the backup (same device id) and works offline at once.
    w.tech = replica(
        Author::new(Role::Dispatcher, device(99)),
        w.clock.clone(),
        9,
    )
    .unwrap();
    for f in ["replica.db-wal", "replica.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    std::fs::copy(&backup, &path).unwrap();
    w.tech = open(&w);
    w.tech
        .add_note(job, "Note écrite après la restauration")
        .unwrap();
    w.sync_tech();
    w.sync_tech();
    assert_eq!(
        w.tech.pending().unwrap().len(),
        0,
        "everything went through"
    );
    let j = w.server_job(job);
    let texts: Vec<&str> = j.notes.iter().map(|n| n.text.as_str()).collect();
    assert!(
        texts.contains(&"Note envoyée après la sauvegarde")
            && texts.contains(&"Note écrite après la restauration"),
        "nothing lost on either side of the restore: {texts:?}"
    );
    w.sync_office();
    assert_eq!(
        w.tech.record(job.doc()).unwrap(),
        w.office.record(job.doc()).unwrap(),
        "and the replicas converge"
    );
}

#[test]
fn invariant_a_server_restored_from_an_older_backup_gets_acknowledged_work_back() {
    let mut w = Served::new(sqlite());
    let job = w.my_job();
    // The nightly backup (SQLite's online copy, taken while serving).
    let Backing::Sqlite(dir, _) = &w.backing else {
        unreachable!()
    };
    let backup = dir.path().join("backup.db");
    rusqlite::Connection::open(dir.path().join("s.db"))
        .unwrap()
        .execute("VACUUM INTO ?1", [backup.to_str().unwrap()])
        .unwrap();
    // Acknowledged work after the backup, from the field and from the office.
    w.tech
        .add_note(job, "Câble tiré jusqu'au sous-sol")
        .unwrap();
    w.tech.set_job_status(job, JobStatus::EnRoute).unwrap();
    w.sync_tech();
    w.office
        .update::<DispatchJob>(job.doc(), |j| {
            j.description = "Chien dans la cour".into();
            Ok(())
        })
        .unwrap();
    w.sync_office();
    assert_eq!(
        w.tech.pending().unwrap().len() + w.office.pending().unwrap().len(),
        0
    );
    // The server's disk dies; it is restored from the backup.
    let Backing::Sqlite(_, file) = &mut w.backing else {
        unreachable!()
    };
    *file = "backup.db";
    w.restart();
    assert!(
        w.server_job(job).notes.is_empty(),
        "the restored server lacks the work"
    );
    // Both devices notice the server is behind what it acknowledged, and send it again.
    w.sync_both(2);
    let j = w.server_job(job);
    assert!(
        j.notes
            .iter()
            .any(|n| n.text == "Câble tiré jusqu'au sous-sol")
    );
    assert_eq!(j.status, JobStatus::EnRoute);
    assert_eq!(j.description, "Chien dans la cour");
    assert!(w.tech.rejections().unwrap().is_empty() && w.office.rejections().unwrap().is_empty());
    // Later edits on both sides go through, and everyone converges.
    w.tech.add_note(job, "Après la restauration").unwrap();
    w.office
        .update::<DispatchJob>(job.doc(), |j| {
            j.title = shared::model::Name::parse("Installation — restauré").unwrap();
            Ok(())
        })
        .unwrap();
    w.sync_both(2);
    assert!(w.tech.rejections().unwrap().is_empty() && w.office.rejections().unwrap().is_empty());
    let server = w.svc.read(|e| e.record(job.doc()).cloned()).unwrap();
    assert_eq!(w.tech.record(job.doc()).unwrap(), server);
    assert_eq!(w.office.record(job.doc()).unwrap(), server);
    assert!(
        w.server_job(job)
            .notes
            .iter()
            .any(|n| n.text == "Après la restauration")
    );
}

#[test]
fn attack_a_technician_writes_to_a_job_lost_a_month_ago() {
    let mut w = Served::new(sqlite());
    let job = w.my_job();
    // The job goes to another technician; the device syncs and lets it go.
    reassign_away(&mut w, job);
    w.sync_tech();
    w.sync_tech();
    assert!(w.tech.entity(job.doc()).unwrap().is_none());
    // A month later, the device pushes a change built on the job's history (which it knows
    // from its old copy): knowing a document's history is not a permission.
    w.clock.advance(31 * 86_400_000);
    let (epoch, bytes) = w
        .svc
        .read(|e| e.doc_bytes(job.doc()).map(|(ep, b)| (ep, b.to_vec())))
        .unwrap()
        .unwrap();
    let mut doc = shared::crdt::load(&bytes).unwrap();
    let change = shared::crdt::write(
        &mut doc,
        w.tech.author(),
        w.clock.now(),
        &[
            shared::record::FieldChange::SetItem {
                collection: "notes".into(),
                item: "intrus".into(),
                field: "text".into(),
                value: shared::record::Scalar::str("écrit un mois plus tard"),
            },
            shared::record::FieldChange::SetItem {
                collection: "notes".into(),
                item: "intrus".into(),
                field: "at".into(),
                value: shared::record::Scalar::Int(w.clock.now().0),
            },
        ],
    )
    .unwrap()
    .unwrap();
    let at = w.tech.sync_point().unwrap();
    let req = shared::protocol::SyncRequest {
        hello: shared::protocol::ClientHello {
            author: w.tech.author(),
            app_version: "0.1.0".into(),
        },
        cursor: at.cursor,
        token: at.token,
        outbox_upto: 1,
        push: vec![shared::protocol::PushDoc {
            doc: job.doc(),
            kind: shared::record::EntityKind::Job,
            epoch,
            changes: vec![change],
        }],
    };
    let mut net = w.tech_net(&w.svc);
    let answer = net
        .exchange(protocol::encode(&Message::Request(req)))
        .unwrap();
    let Ok(Message::Response(resp)) = protocol::decode(&answer) else {
        panic!("no answer")
    };
    assert!(
        resp.rejected.iter().any(|r| r.doc == job.doc()
            && r.reason == shared::protocol::RejectReason::OutOfScope
            && r.snapshot.is_none()),
        "refused, without a copy of the job: {:?}",
        resp.rejected
    );
    assert!(
        !w.server_job(job)
            .notes
            .iter()
            .any(|n| n.text == "écrit un mois plus tard"),
        "nothing was written"
    );
}

#[test]
fn invariant_a_value_settled_against_someone_is_shown_to_them_until_acknowledged() {
    let mut w = Served::new(sqlite());
    let job = w.my_job();
    w.tech.add_material(job, "FIBRE-SC", 2, "m").unwrap();
    w.sync_tech();
    w.sync_office();
    let key = match w.office.entity(job.doc()).unwrap() {
        Some(AnyEntity::Job(j)) => j.materials[0].key.clone(),
        other => panic!("{other:?}"),
    };
    let field = format!("materials[{key}].quantity");
    // Offline from each other: the technician counts 3, the office corrects it to 1. A
    // material's quantity is the technician's reading (device wins), so 3 stands.
    let set = |r: &mut Replica, q: i64| {
        r.update::<DispatchJob>(job.doc(), |j| {
            j.materials[0].quantity = q;
            Ok(())
        })
        .unwrap();
    };
    set(&mut w.tech, 3);
    set(&mut w.office, 1);
    w.sync_office();
    w.sync_tech();
    w.sync_office();
    assert_eq!(w.server_job(job).materials[0].quantity, 3);
    assert!(
        w.server_conflicts(job.doc()).is_empty(),
        "no decision is needed"
    );
    // The office's 1 is not silently gone: every replica lists it as overridden, typed.
    let listed = |r: &Replica| {
        r.conflicts()
            .unwrap()
            .into_iter()
            .filter(|c| c.doc == job.doc() && c.field == field)
            .collect::<Vec<_>>()
    };
    for (who, r) in [("office", &w.office), ("technician", &w.tech)] {
        let rows = listed(r);
        assert_eq!(
            rows.len(),
            1,
            "{who} lists the overridden quantity: {rows:?}"
        );
        assert!(rows[0].settled, "{who}: settled, not an open conflict");
        assert_eq!(rows[0].shown, shared::record::Scalar::Int(3));
        let lost = rows[0]
            .values
            .iter()
            .find(|(v, _)| *v == shared::record::Scalar::Int(1))
            .unwrap_or_else(|| panic!("{who} sees the office's value: {rows:?}"));
        assert_eq!(lost.1.map(|a| a.role), Some(Role::Dispatcher));
    }
    assert_eq!(
        w.office.status().unwrap().conflicts,
        0,
        "not counted as a decision"
    );
    let detail = w.tech.job_detail(job, Role::Technician).unwrap();
    assert_eq!(detail.overridden.len(), 1, "the job screen shows it");
    // It stays until someone acknowledges it, and compaction does not forget it meanwhile.
    w.restart();
    w.compact(&w.svc, Duration::ZERO);
    w.sync_office();
    assert_eq!(
        listed(&w.office).len(),
        1,
        "kept across a restart and a compaction"
    );
    // Acknowledging keeps the value shown: an edit that syncs, and the entry ends everywhere.
    w.office
        .resolve_with(
            &job.doc().to_string(),
            &field,
            &shared::record::Scalar::Int(3),
        )
        .unwrap();
    w.sync_office();
    w.sync_tech();
    assert!(listed(&w.office).is_empty() && listed(&w.tech).is_empty());
    assert_eq!(w.server_job(job).materials[0].quantity, 3);
    assert!(w.svc.read(|e| e.overridden()).unwrap().is_empty());
}

/// Takes the nightly backup of the SQLite store; `restore_backup` puts it back.
fn take_backup(w: &Served) {
    let Backing::Sqlite(dir, _) = &w.backing else {
        unreachable!()
    };
    let backup = dir.path().join("backup.db");
    let _ = std::fs::remove_file(&backup);
    rusqlite::Connection::open(dir.path().join("s.db"))
        .unwrap()
        .execute("VACUUM INTO ?1", [backup.to_str().unwrap()])
        .unwrap();
}

fn restore_backup(w: &mut Served) {
    let Backing::Sqlite(_, file) = &mut w.backing else {
        unreachable!()
    };
    *file = "backup.db";
    w.restart();
    // The operator's `sync-server restored`.
    w.svc.mark_restored().unwrap();
}

#[test]
fn invariant_a_server_restored_to_before_a_compaction_gets_the_compacted_work_back() {
    let mut w = Served::new(sqlite());
    let job = w.my_job();
    take_backup(&w);
    // Acknowledged work, then a compaction folds it into the server's own snapshot, which both
    // devices take.
    w.tech.add_note(job, "Boîtier posé au mur nord").unwrap();
    w.tech.set_job_status(job, JobStatus::EnRoute).unwrap();
    w.sync_tech();
    w.sync_office();
    w.sync_tech();
    assert!(w.compact(&w.svc, Duration::ZERO) > 0);
    w.sync_tech();
    w.sync_office();
    // The server's disk dies; the backup predates the work and the compaction.
    restore_backup(&mut w);
    assert!(w.server_job(job).notes.is_empty());
    w.sync_both(2);
    let j = w.server_job(job);
    assert!(
        j.notes.iter().any(|n| n.text == "Boîtier posé au mur nord"),
        "the compacted note came back: {:?}",
        j.notes
    );
    assert_eq!(j.status, JobStatus::EnRoute);
    let server = w.svc.read(|e| e.record(job.doc()).cloned()).unwrap();
    assert_eq!(w.tech.record(job.doc()).unwrap(), server);
    assert_eq!(w.office.record(job.doc()).unwrap(), server);
}

#[test]
fn invariant_work_on_a_job_reassigned_after_the_backup_survives_the_restore() {
    let mut w = Served::new(sqlite());
    let job = w.my_job();
    // The backup is taken while the job belongs to someone else.
    let mine = w.technician();
    let other = reassign_away(&mut w, job);
    take_backup(&w);
    w.office
        .update::<DispatchJob>(job.doc(), |j| {
            j.technician = Some(mine);
            Ok(())
        })
        .unwrap();
    w.sync_office();
    w.sync_tech();
    // Given back to this technician, who works on it; the server acknowledges.
    w.tech.add_note(job, "Prise installée au salon").unwrap();
    w.sync_tech();
    assert_eq!(w.tech.pending().unwrap().len(), 0);
    // The office's device is away: only the technician holds the note when the server comes
    // back from the backup, where the job is the other technician's.
    restore_backup(&mut w);
    assert_eq!(w.server_job(job).technician, Some(other));
    for _ in 0..3 {
        w.sync_tech();
    }
    let on_server = w
        .server_job(job)
        .notes
        .iter()
        .any(|n| n.text == "Prise installée au salon");
    let kept = w.tech.rejections().unwrap().iter().any(|r| {
        r.refused.iter().any(|c| {
            matches!(c, shared::record::FieldChange::SetItem { field, value, .. }
                if field == "text" && value.as_str() == Some("Prise installée au salon"))
        })
    });
    assert!(
        on_server || kept,
        "the note is back on the server or kept as a rejection the technician sees"
    );
}

#[test]
fn invariant_a_conflict_resolution_keeps_every_value_exactly_as_typed() {
    use shared::ipc::{ConflictView, ResolveArgs};
    use shared::record::Scalar;
    // Across the app's IPC (JSON), every kind of value keeps its kind and text.
    for v in [
        Scalar::Null,
        Scalar::Bool(true),
        Scalar::Int(1),
        Scalar::F64(1.0),
        Scalar::F64(-0.5),
        Scalar::str("Réparer « fibre » — été, 9 h 30"),
    ] {
        let args = ResolveArgs {
            doc: "d".into(),
            field: "f".into(),
            value: v.clone(),
        };
        let back: ResolveArgs =
            serde_json::from_str(&serde_json::to_string(&args).unwrap()).unwrap();
        assert_eq!(back.value, v, "{v:?} crosses the IPC unchanged");
    }
    // Two dispatchers, offline from each other, set the title, the duration and the start.
    let mut w = Served::new(sqlite());
    let job = w.my_job();
    let (mut second, mut second_net) = w.another(Role::Dispatcher, 5);
    let title = "Réparer « fibre » — été";
    w.office
        .update::<DispatchJob>(job.doc(), |j| {
            j.title = shared::model::Name::parse(title).unwrap();
            j.duration_min = 45;
            j.start = None;
            Ok(())
        })
        .unwrap();
    second
        .update::<DispatchJob>(job.doc(), |j| {
            j.title = shared::model::Name::parse("Autre titre").unwrap();
            j.duration_min = 90;
            j.start = chrono::NaiveTime::from_hms_opt(13, 0, 0);
            Ok(())
        })
        .unwrap();
    w.sync_office();
    second.sync(&mut second_net).unwrap();
    w.sync_office();
    // The inbox, as the UI receives it, and each choice sent back as the UI sends it.
    let views: Vec<ConflictView> =
        serde_json::from_str(&serde_json::to_string(&w.office.conflict_views().unwrap()).unwrap())
            .unwrap();
    let pick = |field: &str, want: &Scalar| -> ResolveArgs {
        let v = views
            .iter()
            .find(|c| c.doc == job.doc().to_string() && c.field == field)
            .unwrap_or_else(|| panic!("{field} is a listed conflict: {views:?}"));
        let value = v
            .values
            .iter()
            .map(|x| x.value.clone())
            .find(|x| x == want)
            .unwrap_or_else(|| panic!("{want:?} among {:?}", v.values));
        serde_json::from_str(
            &serde_json::to_string(&ResolveArgs {
                doc: v.doc.clone(),
                field: field.into(),
                value,
            })
            .unwrap(),
        )
        .unwrap()
    };
    for (field, want) in [
        ("title", Scalar::str(title)),
        ("duration_min", Scalar::Int(45)),
        ("start", Scalar::Null),
    ] {
        let a = pick(field, &want);
        w.office.resolve_with(&a.doc, &a.field, &a.value).unwrap();
    }
    w.sync_office();
    second.sync(&mut second_net).unwrap();
    let j = w.server_job(job);
    assert_eq!(j.title.as_str(), title);
    assert_eq!(j.duration_min, 45);
    assert_eq!(j.start, None);
    assert!(w.server_conflicts(job.doc()).is_empty());
    assert_eq!(
        second.record(job.doc()).unwrap(),
        w.office.record(job.doc()).unwrap()
    );
}

#[test]
fn invariant_a_server_restored_from_a_backup_compacts_nothing_a_device_still_has_to_send() {
    let mut w = Served::new(sqlite());
    let job = w.my_job();
    take_backup(&w);
    w.tech.add_note(job, "Fusion refaite au boîtier").unwrap();
    w.tech.set_job_status(job, JobStatus::EnRoute).unwrap();
    w.sync_tech();
    assert_eq!(w.tech.pending().unwrap().len(), 0);
    // Restored, then the periodic compaction runs before the technician is back: the
    // positions recorded in the backup say nothing of what devices hold since.
    restore_backup(&mut w);
    assert_eq!(
        w.compact(&w.svc, MONTH),
        0,
        "nothing is compacted within the retention after a restore"
    );
    w.sync_both(2);
    let j = w.server_job(job);
    assert!(
        j.notes
            .iter()
            .any(|n| n.text == "Fusion refaite au boîtier")
    );
    assert_eq!(j.status, JobStatus::EnRoute, "a register comes back too");
    // After the retention, compaction goes on.
    w.clock.advance(MONTH.as_millis() as i64 + 86_400_000);
    w.sync_both(2);
    assert!(w.compact(&w.svc, MONTH) > 0);
}

/// A real store behind a slow disk that counts its commits and can be made to fail them: what a
/// group commit is seen through.
struct Counted {
    inner: Box<dyn Store>,
    /// Commits that wrote something.
    commits: Arc<std::sync::atomic::AtomicUsize>,
    /// Commits fail while this is set, as a full disk would.
    failing: Arc<std::sync::atomic::AtomicBool>,
    /// How long a commit takes (an fsync on a slow disk).
    delay: Duration,
    /// Whether a group's commit is split from its sync, as the production SQLite store does
    /// ([`Store::persist_deferred`]): then the sync is what is slow, counted and failing.
    deferred: bool,
    /// Syncs made (deferred commits only).
    flushes: Arc<std::sync::atomic::AtomicUsize>,
}

impl Store for Counted {
    fn persist_deferred(
        &mut self,
        effects: &[shared::sync::server::ServerEffect],
    ) -> Result<(), sync_server::store::StoreError> {
        if !self.deferred {
            return self.persist(effects);
        }
        if effects.is_empty() {
            return Ok(());
        }
        self.inner.persist_deferred(effects)?;
        self.commits
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
    fn flusher(&self) -> Option<sync_server::store::Flusher> {
        if !self.deferred {
            return None;
        }
        let inner = self.inner.flusher();
        let (failing, flushes, delay) = (
            Arc::clone(&self.failing),
            Arc::clone(&self.flushes),
            self.delay,
        );
        Some(Arc::new(move || {
            std::thread::sleep(delay);
            if failing.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(sync_server::store::StoreError::Io(
                    "input/output error".into(),
                ));
            }
            if let Some(flush) = &inner {
                flush()?;
            }
            flushes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }))
    }
    fn persist(
        &mut self,
        effects: &[shared::sync::server::ServerEffect],
    ) -> Result<(), sync_server::store::StoreError> {
        if effects.is_empty() {
            return Ok(());
        }
        std::thread::sleep(self.delay);
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(sync_server::store::StoreError::Corrupt(
                "no space left on device".into(),
            ));
        }
        self.inner.persist(effects)?;
        self.commits
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
    fn load(&mut self) -> Result<sync_server::store::Stored, sync_server::store::StoreError> {
        self.inner.load()
    }
    fn is_empty(&mut self) -> Result<bool, sync_server::store::StoreError> {
        self.inner.is_empty()
    }
    fn meta(&mut self, key: &str) -> Result<Option<String>, sync_server::store::StoreError> {
        self.inner.meta(key)
    }
    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), sync_server::store::StoreError> {
        self.inner.set_meta(key, value)
    }
    fn delete_meta(&mut self, key: &str) -> Result<(), sync_server::store::StoreError> {
        self.inner.delete_meta(key)
    }
    fn meta_prefix(
        &mut self,
        prefix: &str,
    ) -> Result<Vec<(String, String)>, sync_server::store::StoreError> {
        self.inner.meta_prefix(prefix)
    }
    fn revoke(&mut self, jti: &str, exp: i64) -> Result<bool, sync_server::store::StoreError> {
        self.inner.revoke(jti, exp)
    }
    fn revoked(&mut self, now: i64) -> Result<Vec<String>, sync_server::store::StoreError> {
        self.inner.revoked(now)
    }
    fn horizon(
        &mut self,
        seen_since: shared::clock::Millis,
    ) -> Result<Option<u64>, sync_server::store::StoreError> {
        self.inner.horizon(seen_since)
    }
    fn held(
        &mut self,
        device: shared::ids::DeviceId,
        docs: &[DocId],
        since: shared::clock::Millis,
    ) -> Result<Vec<DocId>, sync_server::store::StoreError> {
        self.inner.held(device, docs, since)
    }
    fn begin_exchange(
        &mut self,
        head: u64,
    ) -> Result<Option<sync_server::store::Stored>, sync_server::store::StoreError> {
        self.inner.begin_exchange(head)
    }
    fn end_exchange(&mut self) -> Result<(), sync_server::store::StoreError> {
        self.inner.end_exchange()
    }
    fn reconnect(&mut self) -> Result<(), sync_server::store::StoreError> {
        self.inner.reconnect()
    }
}

/// What a test sees of the disk behind [`Counted`].
struct Disk {
    commits: Arc<std::sync::atomic::AtomicUsize>,
    failing: Arc<std::sync::atomic::AtomicBool>,
    flushes: Arc<std::sync::atomic::AtomicUsize>,
}

impl Disk {
    fn commits(&self) -> usize {
        self.commits.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn flushes(&self) -> usize {
        self.flushes.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn fail(&self, failing: bool) {
        self.failing
            .store(failing, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The served world's service, restarted over its store seen through [`Counted`].
fn counted(w: &mut Served, deferred: bool) -> Disk {
    let disk = Disk {
        commits: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        failing: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        flushes: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
    };
    let store = Counted {
        inner: w.backing.store(),
        commits: Arc::clone(&disk.commits),
        failing: Arc::clone(&disk.failing),
        delay: Duration::from_millis(20),
        deferred,
        flushes: Arc::clone(&disk.flushes),
    };
    w.svc = Arc::new(
        SyncService::open(
            config(),
            Box::new(store),
            Box::new(Shared(Arc::clone(&w.clock))),
        )
        .unwrap(),
    );
    disk
}

/// A device after [`concurrent_notes`]: each note it wrote and whether its sync was acknowledged.
type Noted = (Replica, Into, Vec<(String, bool)>);

/// Each device adds one note per round and syncs, all devices at once; returns, per device,
/// whether each round's sync was acknowledged.
fn concurrent_notes(devices: Vec<(Replica, Into)>, job: JobId, rounds: usize) -> Vec<Noted> {
    let start = Arc::new(std::sync::Barrier::new(devices.len()));
    let threads: Vec<_> = devices
        .into_iter()
        .enumerate()
        .map(|(n, (mut r, mut net))| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                let mut outcome = Vec::new();
                for round in 0..rounds {
                    let text = format!("device {n}, round {round}");
                    r.add_note(job, &text).unwrap();
                    let acked = r.sync(&mut net).is_ok() && r.pending().unwrap().is_empty();
                    outcome.push((text, acked));
                }
                (r, net, outcome)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn server_notes(svc: &SyncService, job: JobId) -> Vec<String> {
    match svc.read(|e| e.entity(job.doc()).cloned()).unwrap() {
        Some(AnyEntity::Job(j)) => j.notes.into_iter().map(|n| n.text).collect(),
        other => panic!("job {job:?} on the server: {other:?}"),
    }
}

#[test]
fn invariant_concurrent_exchanges_share_one_commit_and_each_acknowledged_one_is_stored() {
    concurrent_exchanges_share_commits(false);
}

#[test]
fn invariant_concurrent_exchanges_share_one_sync_and_each_acknowledged_one_is_stored() {
    concurrent_exchanges_share_commits(true);
}

/// `deferred`: each group commits, then syncs outside the engine lock while the next merges.
fn concurrent_exchanges_share_commits(deferred: bool) {
    let mut w = Served::new(sqlite());
    let job = w.my_job();
    let disk = counted(&mut w, deferred);
    let devices: Vec<_> = (0..12)
        .map(|n| w.another(Role::Technician, 10 + n))
        .collect();
    let (before, flushes_before) = (disk.commits(), disk.flushes());
    let rounds = 5;
    let done = concurrent_notes(devices, job, rounds);
    let exchanges = 12 * rounds;
    for (_, _, outcome) in &done {
        assert!(
            outcome.iter().all(|(_, acked)| *acked),
            "every exchange is acknowledged: {outcome:?}"
        );
    }
    let made = disk.commits() - before;
    assert!(
        made < exchanges,
        "exchanges waiting on a slow disk are committed together: {made} commits for {exchanges} exchanges"
    );
    let synced = disk.flushes() - flushes_before;
    if deferred {
        assert!(
            (1..=made).contains(&synced),
            "each sync covers one group commit or more: {synced} syncs for {made} commits"
        );
    } else {
        assert_eq!(synced, 0, "a store that commits durably needs no sync");
    }
    // What a restarted server reads back holds every acknowledged note.
    w.restart();
    let stored = server_notes(&w.svc, job);
    for (_, _, outcome) in &done {
        for (text, _) in outcome {
            assert!(
                stored.contains(text),
                "{text:?} was acknowledged, so stored"
            );
        }
    }
}

#[test]
fn invariant_a_failed_group_commit_acknowledges_none_of_its_exchanges() {
    let mut w = Served::new(sqlite());
    let job = w.my_job();
    let disk = counted(&mut w, false);
    let devices: Vec<_> = (0..6)
        .map(|n| w.another(Role::Technician, 10 + n))
        .collect();
    disk.fail(true);
    let done = concurrent_notes(devices, job, 1);
    for (r, _, outcome) in &done {
        assert!(
            outcome.iter().all(|(_, acked)| !acked),
            "nothing of a failed commit is acknowledged: {outcome:?}"
        );
        assert!(
            !r.pending().unwrap().is_empty(),
            "the device keeps its note to send again"
        );
    }
    // After the disk recovers: none of the failed group was stored, and every note arrives with
    // the devices' next sync.
    disk.fail(false);
    assert!(w.svc.recover().unwrap(), "the failure poisoned the service");
    let texts: Vec<String> = done
        .iter()
        .flat_map(|(_, _, o)| o.iter().map(|(t, _)| t.clone()))
        .collect();
    let stored = server_notes(&w.svc, job);
    assert!(
        texts.iter().all(|t| !stored.contains(t)),
        "the engine was rebuilt from the store: nothing unacknowledged is served"
    );
    for (mut r, mut net, _) in done {
        r.sync(&mut net).unwrap();
        assert!(r.pending().unwrap().is_empty());
    }
    let stored = server_notes(&w.svc, job);
    for t in &texts {
        assert!(
            stored.contains(t),
            "{t:?} arrives once the store works again"
        );
    }
}

#[test]
fn invariant_a_failed_sync_acknowledges_and_publishes_none_of_its_groups() {
    let mut w = Served::new(sqlite());
    let job = w.my_job();
    let disk = counted(&mut w, true);
    let (_, mut live) = w.svc.subscribe(None);
    let devices: Vec<_> = (0..6)
        .map(|n| w.another(Role::Technician, 10 + n))
        .collect();
    disk.fail(true);
    let done = concurrent_notes(devices, job, 1);
    for (r, _, outcome) in &done {
        assert!(
            outcome.iter().all(|(_, acked)| !acked),
            "nothing committed but not synced is acknowledged: {outcome:?}"
        );
        assert!(
            !r.pending().unwrap().is_empty(),
            "the device keeps its note to send again"
        );
    }
    assert!(
        disk.commits() > 0,
        "the groups were committed, then their sync failed"
    );
    assert!(
        matches!(
            live.try_recv(),
            Err(tokio::sync::broadcast::error::TryRecvError::Empty)
        ),
        "no dispatcher is told of a change that is not on disk"
    );
    // The sync works again: the service recovers (syncing first) and every note arrives, once.
    disk.fail(false);
    assert!(
        w.svc.recover().unwrap(),
        "the failed sync poisoned the service"
    );
    for (mut r, mut net, _) in done {
        r.sync(&mut net).unwrap();
        assert!(r.pending().unwrap().is_empty());
    }
    let stored = server_notes(&w.svc, job);
    for n in 0..6 {
        let text = format!("device {n}, round 0");
        assert_eq!(
            stored.iter().filter(|t| **t == text).count(),
            1,
            "{text:?} is stored once: {stored:?}"
        );
    }
}
