//! The ERPNext bridge end to end: a real sync server on a socket, replicas syncing over HTTP, and
//! the Frappe double (held to the real recordings by `recording.rs`) as ERPNext.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use app_tauri_core::{HttpTransport, Replica};
use serde_json::{Value, json};
use shared::clock::{Clock, FixedClock};
use shared::ids::{Author, DeviceId, DocId, JobId, Role, TechnicianId};
use shared::model::{AnyEntity, DispatchJob, JobStatus, Priority};
use shared::record::{EntityKind, FieldChange, Record, Scalar};
use sync_server::auth::Keys;
use sync_server::erpnext::mapping::{self, Names};
use sync_server::erpnext::setup::{self, WebhookTarget};
use sync_server::erpnext::{Bridge, BridgeOptions, ErpClient, ErpConfig, Outcome};
use sync_server::service::SyncService;
use sync_server::settings::Secret;
use sync_server::{AppState, ErpEdge, SystemClock};
use tests::data::Dataset;

use crate::world::seeded_service;
use tests::frappe::{Fault, FrappeDouble, webhook_signature};
use tests::harness::monday_9am;

const KEY: &str = "fsm-bridge";
const SECRET: &str = "bridge-secret-not-real";
const HOOK_SECRET: &str = "webhook secret shared with ERPNext";

pub(crate) struct ErpWorld {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) erp: FrappeDouble,
    pub(crate) client: ErpClient,
    pub(crate) service: Arc<SyncService>,
    pub(crate) bridge: Arc<Bridge>,
    pub(crate) keys: Arc<Keys>,
    pub(crate) url: String,
    pub(crate) data: Dataset,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for ErpWorld {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A server with generated data, its bridge (not running: tests drive passes) and a set-up double.
pub(crate) fn erp_world(timeout: Duration) -> ErpWorld {
    erp_world_with(timeout, |_, _| None)
}

/// [`erp_world`] with the hub `hub` makes from the service and the server's URL.
pub(crate) fn erp_world_with(
    timeout: Duration,
    hub: impl FnOnce(&Arc<SyncService>, &str) -> Option<Arc<sync_server::hub::Hub>>,
) -> ErpWorld {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let erp = FrappeDouble::new(KEY, SECRET);
    let erp_addr = rt.block_on(erp.start());
    let dir = tempfile::tempdir().unwrap();
    let (service, data) = seeded_service(dir.path());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let client = ErpClient::new(&ErpConfig {
        url: format!("http://{erp_addr}"),
        token: Secret::new(format!("{KEY}:{SECRET}")),
        timeout,
        ca_pem: None,
    })
    .unwrap();
    let report = rt
        .block_on(setup::run(
            &client,
            Some(&WebhookTarget {
                url: format!("{url}/api/v1/erpnext/webhook"),
                secret: Secret::new(HOOK_SECRET),
            }),
        ))
        .unwrap();
    assert!(report.created.iter().any(|c| c == "DocType Dispatch Job"));
    let bridge = rt
        .block_on(async {
            Bridge::new(
                Arc::clone(&service),
                client.clone(),
                BridgeOptions {
                    poll_interval: Duration::from_millis(300),
                    max_backoff: Duration::from_millis(200),
                    ..BridgeOptions::default()
                },
            )
        })
        .unwrap();
    let keys = Arc::new(Keys::from_secret(
        b"erpnext e2e secret, thirty-two bytes or more",
    ));
    let state = AppState {
        sync: Arc::clone(&service),
        keys: Arc::clone(&keys),
        erp: Some(Arc::new(ErpEdge {
            bridge: Arc::clone(&bridge),
            webhook_secret: Some(Secret::new(HOOK_SECRET)),
        })),
        photos: None,
        links: Default::default(),
        hub: rt.block_on(async { hub(&service, &url) }),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    rt.spawn(sync_server::serve(listener, state, async {
        let _ = stopped.await;
    }));
    ErpWorld {
        rt,
        erp,
        client,
        service,
        bridge,
        keys,
        url,
        data,
        _dir: dir,
        stop: Some(stop),
    }
}

impl ErpWorld {
    /// The time zone the ERPNext site keeps its `Datetime` values in.
    fn site_zone(&self) -> jiff::tz::TimeZone {
        let settings = self.erp.doc("System Settings", "System Settings").unwrap();
        jiff::tz::TimeZone::get(settings["time_zone"].as_str().unwrap()).unwrap()
    }

    /// An office user edits a Dispatch Job in ERPNext's desk; the bridge's next poll reads it.
    fn office_edit(&self, name: &str, patch: Value) {
        self.erp.edit("Dispatch Job", name, patch).unwrap();
        self.poll();
    }

    /// Writes `changes` into `doc` on our side, as the server itself (now).
    fn edit_here(&self, doc: DocId, changes: &[FieldChange]) {
        let now = self.service.now();
        self.service
            .with_engine(|e| Ok(((), e.edit(doc, changes, now)?)))
            .unwrap();
    }

    pub(crate) fn push(&self) -> Result<usize, String> {
        self.rt
            .block_on(self.bridge.push_pass())
            .map_err(|e| e.to_string())
    }
    pub(crate) fn poll(&self) -> usize {
        self.rt.block_on(self.bridge.poll_pass()).unwrap()
    }
    /// Push passes until one succeeds (transient faults are retried by the next pass).
    pub(crate) fn push_until_done(&self, max: usize) -> usize {
        for _ in 0..max {
            if self.push().is_ok() {
                return self.push().unwrap();
            }
        }
        panic!("the bridge did not get through in {max} passes");
    }
    fn replica(&self, role: Role, tech: Option<TechnicianId>, n: u128) -> (Replica, HttpTransport) {
        let device = DeviceId(DocId::from_u128(0xe000 + n));
        let now_s = SystemClock.now().0 / 1000;
        let token = self.keys.issue(device, role, tech, now_s, 3600).unwrap();
        let clock: Arc<dyn Clock> = Arc::new(FixedClock::new(monday_9am()));
        let replica =
            Replica::open_in_memory(Author::new(role, device), clock, Some(n as u64)).unwrap();
        (
            replica,
            HttpTransport::new(&self.url, &token, Duration::from_secs(10)).unwrap(),
        )
    }
    fn server_records(&self) -> BTreeMap<DocId, (EntityKind, Record)> {
        self.service
            .read(|e| {
                e.doc_ids()
                    .collect::<Vec<_>>()
                    .into_iter()
                    .map(|d| (d, (e.kind(d).unwrap(), e.record(d).unwrap().clone())))
                    .collect()
            })
            .unwrap()
    }
    fn conflicts(&self) -> Vec<(DocId, String)> {
        self.service
            .read(|e| {
                e.conflicts()
                    .into_iter()
                    .map(|(d, c)| (d, c.field))
                    .collect()
            })
            .unwrap()
    }

    /// Every live document equals its ERPNext record on every mapped field, and ERPNext has
    /// exactly one record per document.
    fn assert_erpnext_agrees(&self) {
        let records = self.server_records();
        let names = ServerNames::of(&records, self.site_zone());
        let mut per_doctype: HashMap<&str, usize> = HashMap::new();
        for (doc, (kind, r)) in &records {
            if r.get("deleted") == &Scalar::Bool(true) {
                continue;
            }
            let map = mapping::doc_map(*kind);
            let name = r
                .get("erp_name")
                .as_str()
                .unwrap_or_else(|| panic!("{kind:?} {doc} has no ERPNext name"));
            let theirs = self
                .erp
                .doc(map.doctype, name)
                .unwrap_or_else(|| panic!("{} {name} missing in ERPNext", map.doctype));
            assert_eq!(
                theirs.get("fsm_id").and_then(Value::as_str),
                Some(doc.to_string().as_str())
            );
            let ours = mapping::mapped(map, r);
            let theirs = mapping::from_erp(map, &theirs, &names, Some(&ours)).unwrap();
            assert_eq!(theirs, ours, "{kind:?} {doc} differs from ERPNext");
            *per_doctype.entry(map.doctype).or_default() += 1;
        }
        for (doctype, n) in per_doctype {
            let ids: Vec<String> = self
                .erp
                .docs(doctype)
                .iter()
                .filter_map(|d| d.get("fsm_id").and_then(Value::as_str).map(str::to_owned))
                .collect();
            let mut unique = ids.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), ids.len(), "a duplicate {doctype} in ERPNext");
            assert_eq!(ids.len(), n, "{doctype}: one ERPNext record per document");
        }
    }
}

struct ServerNames(
    HashMap<DocId, String>,
    HashMap<(EntityKind, String), DocId>,
    jiff::tz::TimeZone,
);

impl ServerNames {
    fn of(records: &BTreeMap<DocId, (EntityKind, Record)>, zone: jiff::tz::TimeZone) -> Self {
        let mut a = HashMap::new();
        let mut b = HashMap::new();
        for (d, (k, r)) in records {
            if let Some(n) = r.get("erp_name").as_str() {
                a.insert(*d, n.to_owned());
                b.insert((*k, n.to_owned()), *d);
            }
        }
        Self(a, b, zone)
    }
}

impl Names for ServerNames {
    fn zone(&self) -> &jiff::tz::TimeZone {
        &self.2
    }
    fn erp_name(&self, doc: DocId) -> Option<String> {
        self.0.get(&doc).cloned()
    }
    fn doc_id(&self, kind: EntityKind, erp_name: &str) -> Option<DocId> {
        self.1.get(&(kind, erp_name.to_owned())).copied()
    }
}

/// Waits up to 5 s for `f` to give a value.
fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Records created in ERPNext over HTTP, of the doctypes the bridge maps (not setup's).
fn record_creates(w: &ErpWorld) -> usize {
    let c = w.erp.counts().creates;
    mapping::ALL
        .iter()
        .map(|m| c.get(m.doctype).copied().unwrap_or(0))
        .sum()
}

fn job_of(r: &Replica, tech: TechnicianId) -> JobId {
    r.doc_ids()
        .unwrap()
        .into_iter()
        .find_map(|(d, k)| match r.entity(d).unwrap() {
            Some(AnyEntity::Job(j))
                if k == EntityKind::Job
                    && j.technician == Some(tech)
                    && j.status == JobStatus::Scheduled =>
            {
                Some(j.id)
            }
            _ => None,
        })
        .expect("the technician has a scheduled job")
}

fn erp_name(w: &ErpWorld, doc: DocId) -> String {
    w.server_records()[&doc]
        .1
        .get("erp_name")
        .as_str()
        .unwrap()
        .to_owned()
}

fn all_in_step(w: &ErpWorld, replicas: &mut [(&mut Replica, &mut HttpTransport)]) {
    for _ in 0..3 {
        for (r, t) in replicas.iter_mut() {
            r.sync(*t).unwrap();
        }
        w.push().unwrap();
        w.poll();
    }
    for (r, t) in replicas.iter_mut() {
        r.sync(*t).unwrap();
    }
}

#[test]
fn field_office_and_erpnext_edits_converge_everywhere_with_conflicts_listed() {
    let w = erp_world(Duration::from_secs(10));
    // First contact: every document is created in ERPNext, once.
    let created = w.push().unwrap();
    let docs = w.server_records().len();
    assert_eq!(created, docs);
    assert_eq!(record_creates(&w), docs);
    // The first poll sees ERPNext's copies of what was just sent: nothing to import or pull.
    let before = w.bridge.stats();
    assert!(w.poll() >= docs);
    let after = w.bridge.stats();
    assert_eq!(
        (after.imported, after.pulled),
        (before.imported, before.pulled)
    );
    w.assert_erpnext_agrees();

    let (t1, t2) = (w.data.technicians[0], w.data.technicians[1]);
    let (mut tech1, mut net1) = w.replica(Role::Technician, Some(t1), 1);
    let (mut tech2, mut net2) = w.replica(Role::Technician, Some(t2), 2);
    let (mut office, mut net3) = w.replica(Role::Dispatcher, None, 3);
    tech1.sync(&mut net1).unwrap();
    tech2.sync(&mut net2).unwrap();
    office.sync(&mut net3).unwrap();
    let j1 = job_of(&tech1, t1);
    let j2 = job_of(&tech2, t2);

    // Offline everywhere, and ERPNext's office edits at the same time.
    tech1.set_job_status(j1, JobStatus::EnRoute).unwrap();
    tech1
        .add_note(j1, "Porte arrière, sonner deux fois")
        .unwrap();
    tech2.add_note(j2, "Câble coupé au sous-sol").unwrap();
    office
        .update::<DispatchJob>(j1.doc(), |j| {
            j.description = "Apporter un ONT de rechange (bureau)".into();
            Ok(())
        })
        .unwrap();
    let n1 = erp_name(&w, j1.doc());
    let n2 = erp_name(&w, j2.doc());
    w.erp
        .edit(
            "Dispatch Job",
            &n1,
            json!({"description": "Client absent le matin (ERPNext)"}),
        )
        .unwrap();
    w.erp
        .edit("Dispatch Job", &n2, json!({"priority": "urgent"}))
        .unwrap();
    // ERPNext's office books a new job for technician 1, straight in ERPNext.
    let sample = w.erp.doc("Dispatch Job", &n1).unwrap();
    let mut fresh = sample.as_object().unwrap().clone();
    for k in ["name", "fsm_id", "modified", "creation", "fsm_notes"] {
        fresh.remove(k);
    }
    fresh.insert("title".into(), json!("Installation ajoutée dans ERPNext"));
    fresh.insert("job_status".into(), json!("scheduled"));
    let booked = w.erp.insert("Dispatch Job", Value::Object(fresh)).unwrap();
    let booked_name = booked["name"].as_str().unwrap().to_owned();

    all_in_step(
        &w,
        &mut [
            (&mut tech1, &mut net1),
            (&mut tech2, &mut net2),
            (&mut office, &mut net3),
        ],
    );

    // The field's edits reached ERPNext.
    let erp_j1 = w.erp.doc("Dispatch Job", &n1).unwrap();
    assert_eq!(erp_j1["job_status"], "en_route");
    let notes = erp_j1["fsm_notes"].as_array().unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n["note"].as_str().unwrap().contains("sonner deux fois"))
    );
    assert!(
        w.erp.doc("Dispatch Job", &n2).unwrap()["fsm_notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["note"].as_str().unwrap().contains("sous-sol"))
    );
    // ERPNext's edit reached the technician.
    match tech2.entity(j2.doc()).unwrap() {
        Some(AnyEntity::Job(j)) => assert_eq!(j.priority, Priority::Urgent),
        other => panic!("{other:?}"),
    }
    // The concurrent description edits are both the office's: one is shown everywhere (ERPNext
    // too) and the pair is in the inbox, on the server and on the dispatcher's replica.
    let j1_server = &w.server_records()[&j1.doc()].1;
    let shown = j1_server.get("description").as_str().unwrap().to_owned();
    assert!(
        [
            "Apporter un ONT de rechange (bureau)",
            "Client absent le matin (ERPNext)"
        ]
        .contains(&shown.as_str())
    );
    assert_eq!(erp_j1["description"], shown.as_str());
    assert!(
        w.conflicts()
            .iter()
            .any(|(d, f)| *d == j1.doc() && f == "description"),
        "{:?}",
        w.conflicts()
    );
    assert!(
        office
            .conflicts()
            .unwrap()
            .iter()
            .any(|c| c.doc == j1.doc() && c.field == "description")
    );
    // The job booked in ERPNext is now a document, on technician 1's device, and linked back.
    let booked_doc = w
        .server_records()
        .into_iter()
        .find(|(_, (_, r))| r.get("erp_name").as_str() == Some(booked_name.as_str()))
        .map(|(d, _)| d)
        .expect("imported");
    assert!(tech1.entity(booked_doc).unwrap().is_some());
    assert_eq!(
        w.erp.doc("Dispatch Job", &booked_name).unwrap()["fsm_id"],
        booked_doc.to_string()
    );
    // Everyone agrees with the server, and the server with ERPNext.
    for r in [&tech1, &tech2, &office] {
        for (d, _) in r.doc_ids().unwrap() {
            assert_eq!(
                r.record(d).unwrap().unwrap(),
                w.server_records()[&d].1,
                "replica copy of {d}"
            );
        }
    }
    w.assert_erpnext_agrees();
    // And it stays quiet: another round sends nothing.
    let writes = w.erp.counts();
    w.push().unwrap();
    w.poll();
    let again = w.erp.counts();
    assert_eq!(
        (writes.creates, writes.updates),
        (again.creates, again.updates)
    );
}

#[test]
fn erpnext_failures_lose_nothing_duplicate_nothing_and_park_refused_data() {
    let w = erp_world(Duration::from_millis(500));
    let docs = w.server_records().len();
    let setup_requests = w.erp.counts().requests;
    // A burst of failures: 500s, a stuck worker, creates committed whose answers were lost, and
    // one record ERPNext refuses.
    w.erp.inject(vec![
        Fault::Status500,
        Fault::CommitThenDrop,
        Fault::Timeout(Duration::from_secs(2)),
        Fault::CommitThenDrop,
        Fault::Status500,
        Fault::Status500,
        Fault::Status417Validation("Serial number already used on another site".into()),
    ]);
    w.push_until_done(30);
    let counts = w.erp.counts();
    let issues = w.bridge.issues().unwrap();
    assert!(
        w.bridge.stats().parked >= 1,
        "the 417 was parked, not retried"
    );
    let records = w.server_records();
    for i in &issues {
        assert_eq!(i.exc_type, "ValidationError");
        assert!(i.message.contains("Serial number"), "{i:?}");
        assert_eq!(records[&i.doc].1.get("erp_name"), &Scalar::Null);
    }
    // Every document exactly once in ERPNext, or parked (a parked link target may have been
    // created since by a dependent's detour, which clears its issue).
    assert_eq!(record_creates(&w) + issues.len(), docs);
    // Retries are bounded: a handful of failed passes, not a request storm.
    let requests = counts.requests - setup_requests;
    assert!(
        requests < 2 * docs,
        "{requests} requests for {docs} documents"
    );
    // Fixed in ERPNext (the fault is gone): a retry clears the issue and creates it once.
    for i in issues {
        let outcome = w.rt.block_on(w.bridge.retry(i.doc)).unwrap();
        assert_eq!(outcome, Outcome::Created);
    }
    assert!(w.bridge.issues().unwrap().is_empty());
    assert_eq!(record_creates(&w), docs);
    w.assert_erpnext_agrees();
}

/// A shadow (ERPNext's record as last reconciled) that cannot be read back must stop its
/// document as an issue. Read as "no shadow", it would make the bridge push the field's values
/// over the office's edit in ERPNext.
#[test]
fn an_unreadable_shadow_stops_its_document_and_never_overwrites_erpnext() {
    let w = erp_world(Duration::from_secs(10));
    w.push().unwrap();
    let (doc, name, title) = w
        .server_records()
        .into_iter()
        .find(|(_, (k, _))| *k == EntityKind::Job)
        .map(|(d, (_, r))| {
            (
                d,
                r.get("erp_name").as_str().unwrap().to_owned(),
                r.get("title").as_str().unwrap().to_owned(),
            )
        })
        .unwrap();
    w.erp
        .edit(
            "Dispatch Job",
            &name,
            json!({"title": "Office: call before coming"}),
        )
        .unwrap();
    w.service
        .set_meta(&format!("erp:shadow:{doc}"), "{\"name\": \"DJ-")
        .unwrap();

    w.poll();
    let issues = w.bridge.issues().unwrap();
    let issue = issues
        .iter()
        .find(|i| i.doc == doc)
        .unwrap_or_else(|| panic!("the document is parked: {issues:?}"));
    assert_eq!(issue.exc_type, "CorruptState");
    assert!(issue.message.contains("shadow"), "{issue:?}");
    let theirs = w.erp.doc("Dispatch Job", &name).unwrap();
    assert_eq!(
        theirs["title"], "Office: call before coming",
        "ERPNext kept"
    );
    assert_eq!(
        w.server_records()[&doc].1.get("title"),
        &Scalar::str(&title)
    );

    // Pushing again leaves it parked and ERPNext untouched.
    w.push().unwrap();
    let theirs = w.erp.doc("Dispatch Job", &name).unwrap();
    assert_eq!(theirs["title"], "Office: call before coming");
}

/// Collections are child tables with typed columns: office staff read a job's materials and
/// notes as rows in ERPNext's desk and filter the job list on them. Rows an earlier version wrote
/// as JSON are still read, and rewritten with typed columns, nothing lost.
#[test]
fn collections_are_typed_child_rows_office_users_can_filter_on() {
    let w = erp_world(Duration::from_secs(10));
    let doc = w
        .server_records()
        .into_iter()
        .find(|(_, (k, _))| *k == EntityKind::Job)
        .map(|(d, _)| d)
        .expect("a job");
    let item = |collection: &str, key: &str, field: &str, value: Scalar| FieldChange::SetItem {
        collection: collection.into(),
        item: key.into(),
        field: field.into(),
        value,
    };
    let now = w.service.now();
    let author = w.data.technicians[0].doc().to_string();
    w.edit_here(
        doc,
        &[
            item(
                "materials",
                "m-fibre",
                "item_code",
                Scalar::str("DROP-FIBRE-30M"),
            ),
            item("materials", "m-fibre", "quantity", Scalar::Int(2)),
            item("materials", "m-fibre", "unit", Scalar::str("u")),
            item("notes", "n-1", "text", Scalar::str("Chien dans la cour")),
            item("notes", "n-1", "author", Scalar::str(&author)),
            item("notes", "n-1", "at", Scalar::Int(now.0)),
        ],
    );
    w.push().unwrap();
    let name = erp_name(&w, doc);
    let theirs = w.erp.doc("Dispatch Job", &name).unwrap();
    let material = &theirs["fsm_materials"].as_array().unwrap()[0];
    assert_eq!(material["item_code"], "DROP-FIBRE-30M");
    assert_eq!(material["quantity"], 2);
    assert_eq!(material["unit"], "u");
    assert!(
        material.get("fsm_data").is_none_or(Value::is_null),
        "{material}"
    );
    let note = &theirs["fsm_notes"].as_array().unwrap()[0];
    assert_eq!(note["note"], "Chien dans la cour");
    // The author is a link to the technician's ERPNext record.
    let tech_name = erp_name(&w, w.data.technicians[0].doc());
    assert_eq!(note["author"], tech_name.as_str());
    let job = w.server_records()[&doc].1.clone();

    // The job list filtered on a child column, as an office user filters in the desk.
    let found =
        w.rt.block_on(w.client.list(
            "Dispatch Job",
            &["name"],
            &json!([["Dispatch Job Materials", "item_code", "=", "DROP-FIBRE-30M"]]),
            "modified desc",
            0,
            20,
        ))
        .unwrap();
    let names: Vec<&str> = found.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, vec![name.as_str()]);

    // A table as an earlier version wrote it: the item as JSON in `fsm_data`.
    let legacy: Vec<Value> = job
        .items("notes")
        .unwrap()
        .iter()
        .map(|(key, fields)| {
            let data: serde_json::Map<String, Value> = fields
                .iter()
                .map(|(k, v)| (k.clone(), mapping::scalar_json(v)))
                .collect();
            json!({"fsm_item": key, "fsm_data": Value::Object(data).to_string()})
        })
        .collect();
    w.office_edit(&name, json!({ "fsm_notes": legacy }));
    let rows = w.erp.doc("Dispatch Job", &name).unwrap()["fsm_notes"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(rows.len(), job.items("notes").unwrap().len());
    for row in &rows {
        assert!(
            row["note"].as_str().is_some_and(|t| !t.is_empty()),
            "rewritten typed: {row}"
        );
        assert!(
            row.get("fsm_data")
                .is_none_or(|d| d.as_str().is_none_or(str::is_empty)),
            "{row}"
        );
    }
    assert_eq!(
        w.server_records()[&doc].1.items("notes"),
        job.items("notes"),
        "nothing lost or changed on our side"
    );
    w.assert_erpnext_agrees();
}

/// ERPNext stamps `modified` in the site's local time. When daylight saving time ends (a site in
/// America/Toronto, every November), stamps go back an hour: an office edit made in the repeated
/// hour still reaches the field by the poll.
#[test]
fn an_office_edit_in_the_hour_daylight_saving_repeats_still_arrives() {
    let hour = Duration::from_secs(3600);
    let w = erp_world(Duration::from_secs(10));
    w.erp.set_utc_offset(4 * hour, true); // EDT
    w.push().unwrap();
    w.poll();
    let jobs: Vec<(DocId, String)> = w
        .server_records()
        .into_iter()
        .filter(|(_, (k, _))| *k == EntityKind::Job)
        .map(|(d, (_, r))| (d, r.get("erp_name").as_str().unwrap().to_owned()))
        .take(2)
        .collect();
    let title = |doc: DocId| w.server_records()[&doc].1.get("title").clone();

    w.office_edit(&jobs[0].1, json!({"title": "Rappeler avant 9 h"}));
    assert_eq!(title(jobs[0].0), Scalar::str("Rappeler avant 9 h"));

    // 2:00 EDT becomes 1:00 EST: the next stamps are an hour behind the poll's cursor.
    w.erp.set_utc_offset(5 * hour, true);
    w.office_edit(&jobs[1].1, json!({"title": "Client absent, repasser"}));
    assert_eq!(title(jobs[1].0), Scalar::str("Client absent, repasser"));
    w.assert_erpnext_agrees();
}

/// ERPNext keeps a `Datetime` as the site's wall-clock time. On a site in America/Toronto the
/// office reads a technician's times in its own hours (child rows too), a correction typed in
/// the desk arrives here as the right moment, and a time an earlier version wrote as Unix
/// milliseconds is written again as a date and time, with nothing changed here.
#[test]
fn times_read_as_the_sites_own_hours_whatever_its_zone() {
    let w = erp_world(Duration::from_secs(10));
    w.erp
        .edit(
            "System Settings",
            "System Settings",
            json!({"time_zone": "America/Toronto"}),
        )
        .unwrap();
    let utc = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_millisecond();
    let doc = w
        .server_records()
        .into_iter()
        .find(|(_, (k, _))| *k == EntityKind::Job)
        .map(|(d, _)| d)
        .expect("a job");
    let started = utc("2026-11-30T14:15:00Z");
    let item = |field: &str, value: Scalar| FieldChange::SetItem {
        collection: "time_log".into(),
        item: "t-1".into(),
        field: field.into(),
        value,
    };
    let technician = w.data.technicians[0].doc();
    w.edit_here(
        doc,
        &[
            FieldChange::Set {
                field: "actual_start".into(),
                value: Scalar::Int(started),
            },
            item("technician", Scalar::str(technician.to_string())),
            item("started", Scalar::Int(started)),
            item("ended", Scalar::Int(utc("2026-11-30T15:00:00Z"))),
        ],
    );
    w.push().unwrap();
    let name = erp_name(&w, doc);
    let theirs = w.erp.doc("Dispatch Job", &name).unwrap();
    assert_eq!(theirs["actual_start"], "2026-11-30 09:15:00.000000");
    let row = &theirs["fsm_time_log"].as_array().unwrap()[0];
    assert_eq!(row["started"], "2026-11-30 09:15:00.000000");
    assert_eq!(row["ended"], "2026-11-30 10:00:00.000000");

    // The office corrects the end in the desk, in its own hours.
    w.office_edit(&name, json!({"actual_end": "2026-11-30 11:30:00"}));
    let ours = w.server_records()[&doc].1.clone();
    assert_eq!(
        ours.get("actual_end"),
        &Scalar::Int(utc("2026-11-30T16:30:00Z"))
    );
    assert_eq!(ours.get("actual_start"), &Scalar::Int(started), "unchanged");

    // As an earlier version left it: the time in milliseconds only.
    w.office_edit(
        &name,
        json!({"actual_start": null, "actual_start_ms": started.to_string()}),
    );
    let theirs = w.erp.doc("Dispatch Job", &name).unwrap();
    assert_eq!(
        theirs["actual_start"], "2026-11-30 09:15:00.000000",
        "written again as a date and time"
    );
    assert_eq!(
        w.server_records()[&doc].1.get("actual_start"),
        &Scalar::Int(started),
        "nothing changed here"
    );
    assert!(w.conflicts().is_empty(), "{:?}", w.conflicts());
    w.assert_erpnext_agrees();
}

/// A job deleted on our side is deleted in ERPNext too (our own doctypes); ERPNext's own
/// Customer records stay for the office. Restored later, the job is created again.
#[test]
fn a_deletion_here_deletes_the_erpnext_record_and_a_restore_creates_it_again() {
    let w = erp_world(Duration::from_secs(10));
    w.push().unwrap();
    w.poll();
    let records = w.server_records();
    let job = records
        .iter()
        .find(|(_, (k, _))| *k == EntityKind::Job)
        .map(|(d, _)| *d)
        .unwrap();
    let customer = records
        .iter()
        .find(|(_, (k, _))| *k == EntityKind::Customer)
        .map(|(d, _)| *d)
        .unwrap();
    let (job_name, customer_name) = (erp_name(&w, job), erp_name(&w, customer));
    let mark = |doc: DocId, deleted: bool| {
        w.edit_here(
            doc,
            &[FieldChange::Set {
                field: "deleted".into(),
                value: Scalar::Bool(deleted),
            }],
        );
    };
    mark(job, true);
    mark(customer, true);
    let deletes = w.erp.counts().deletes.values().sum::<usize>();
    w.push().unwrap();
    assert!(
        w.erp.doc("Dispatch Job", &job_name).is_none(),
        "deleted in ERPNext"
    );
    assert!(
        w.erp.doc("Customer", &customer_name).is_some(),
        "ERPNext's Customer stays"
    );
    assert_eq!(w.erp.counts().deletes.values().sum::<usize>(), deletes + 1);
    assert_eq!(w.bridge.stats().removed, 1);
    // ERPNext's deletion feed lists it now; nothing loops or comes back.
    w.poll();
    w.push().unwrap();
    assert_eq!(
        w.server_records()[&job].1.get("deleted"),
        &Scalar::Bool(true)
    );
    assert_eq!(w.server_records()[&job].1.get("erp_name"), &Scalar::Null);

    // The office restores the job: ERPNext gets it again, under a new name.
    let creates = record_creates(&w);
    mark(job, false);
    w.push().unwrap();
    assert_eq!(record_creates(&w), creates + 1);
    let again = erp_name(&w, job);
    assert_ne!(again, job_name);
    assert!(w.erp.doc("Dispatch Job", &again).is_some());
}

#[test]
fn erpnext_deletions_mark_documents_deleted_and_are_not_recreated() {
    let w = erp_world(Duration::from_secs(10));
    w.push().unwrap();
    let (doc, name) = w
        .server_records()
        .into_iter()
        .find(|(_, (k, _))| *k == EntityKind::Subscription)
        .map(|(d, (_, r))| (d, r.get("erp_name").as_str().unwrap().to_owned()))
        .unwrap();
    w.erp.delete("Service Subscription", &name).unwrap();
    w.poll();
    assert_eq!(
        w.server_records()[&doc].1.get("deleted"),
        &Scalar::Bool(true)
    );
    let creates = w.erp.counts().creates;
    w.push().unwrap();
    w.poll();
    assert_eq!(w.erp.counts().creates, creates, "not recreated");
    assert!(w.erp.doc("Service Subscription", &name).is_none());
}

#[test]
fn erpnext_webhooks_are_verified_and_bring_edits_in_live() {
    let w = erp_world(Duration::from_secs(10));
    w.push().unwrap();
    let job = w.data.jobs[0];
    let name = erp_name(&w, job.doc());
    let http = reqwest::blocking::Client::new();
    let hook = format!("{}/api/v1/erpnext/webhook", w.url);
    let body = json!({"doctype": "Dispatch Job", "name": name}).to_string();
    // ERPNext's own webhooks for the creates just made arrive first (one each, on_update).
    let hooks = wait_for(|| {
        let n = w.bridge.stats().webhooks;
        (n as usize == record_creates(&w)).then_some(n)
    });
    // Unsigned and wrongly signed: refused before anything is queued or read.
    let before = w.erp.counts().requests;
    let unsigned = http.post(&hook).body(body.clone()).send().unwrap();
    assert_eq!(unsigned.status(), 401);
    let forged = http
        .post(&hook)
        .header(
            "X-Frappe-Webhook-Signature",
            webhook_signature("guess", body.as_bytes()),
        )
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(forged.status(), 401);
    let tampered = http
        .post(&hook)
        .header(
            "X-Frappe-Webhook-Signature",
            webhook_signature(HOOK_SECRET, body.as_bytes()),
        )
        .body(body.replace("Dispatch Job", "Customer"))
        .send()
        .unwrap();
    assert_eq!(tampered.status(), 401);
    assert_eq!(
        w.bridge.stats().webhooks,
        hooks,
        "refused hooks queue nothing"
    );
    assert_eq!(w.erp.counts().requests, before, "no side effect");
    let signed = http
        .post(&hook)
        .header(
            "X-Frappe-Webhook-Signature",
            webhook_signature(HOOK_SECRET, body.as_bytes()),
        )
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(signed.status(), 202);
    assert_eq!(w.bridge.stats().webhooks, hooks + 1);

    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    w.rt.spawn(Arc::clone(&w.bridge).run(stop_rx));
    // An office edit in ERPNext: ERPNext's own webhook (registered by setup) brings it in.
    w.erp
        .edit(
            "Dispatch Job",
            &name,
            json!({"title": "Titre corrigé dans ERPNext"}),
        )
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let title = w.server_records()[&job.doc()].1.get("title").clone();
        if title == Scalar::str("Titre corrigé dans ERPNext") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {title}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bridge_contract_holds_against_the_double() {
    let w = erp_world(Duration::from_secs(10));
    w.rt.block_on(contract(&w.client)).unwrap();
}

/// What the bridge relies on from ERPNext; run against the double here and against a real
/// ERPNext by `bridge_contract_holds_against_real_erpnext`. Creates its own records with
/// unique names and deletes them.
pub(crate) async fn contract(erp: &ErpClient) -> anyhow::Result<()> {
    setup::run(erp, None).await?;
    let unique = format!("{:x}", rand::random::<u64>());
    let tag_id = DocId::from_u128(rand::random::<u128>()).to_string();
    let mut body = serde_json::Map::new();
    body.insert("fsm_id".into(), json!(tag_id));
    body.insert("label".into(), json!(format!("Contrat {unique}")));
    let created = erp.insert("Dispatch Tag", &body).await?;
    let name = created["name"].as_str().unwrap_or_default().to_owned();
    let result = async {
        // Lookup by external id: what makes creates idempotent.
        anyhow::ensure!(erp.find("Dispatch Tag", "fsm_id", &tag_id).await? == Some(name.clone()));
        // A second create with the same external id is refused, not duplicated.
        match erp.insert("Dispatch Tag", &body).await {
            Err(sync_server::erpnext::ErpError::Invalid { exc_type, .. }) => {
                anyhow::ensure!(exc_type == "UniqueValidationError", "{exc_type}");
            }
            other => anyhow::bail!("duplicate external id accepted: {other:?}"),
        }
        // `modified` echoed exactly works; anything else is stale.
        let modified = created["modified"].as_str().unwrap_or_default().to_owned();
        let mut patch = serde_json::Map::new();
        patch.insert("category".into(), json!("contrat"));
        let updated = erp
            .update("Dispatch Tag", &name, Some(&modified), &patch)
            .await?;
        anyhow::ensure!(updated["category"] == "contrat");
        match erp
            .update("Dispatch Tag", &name, Some(&modified), &patch)
            .await
        {
            Err(sync_server::erpnext::ErpError::Stale) => {}
            other => anyhow::bail!("stale modified accepted: {other:?}"),
        }
        // The incremental list sees it at its own timestamp with `>=`.
        let rows = erp
            .list(
                "Dispatch Tag",
                &["name", "modified"],
                &json!([["modified", ">=", updated["modified"]]]),
                "modified asc, name asc",
                0,
                500,
            )
            .await?;
        anyhow::ensure!(rows.iter().any(|r| r["name"] == name.as_str()));
        anyhow::Ok(())
    }
    .await;
    // Clean up whatever happened, then check the deletion feed.
    erp.delete("Dispatch Tag", &name).await?;
    let deleted = erp
        .list(
            "Deleted Document",
            &["deleted_name", "deleted_doctype"],
            &json!([
                ["deleted_doctype", "=", "Dispatch Tag"],
                ["deleted_name", "=", name]
            ]),
            "creation asc",
            0,
            5,
        )
        .await?;
    anyhow::ensure!(deleted.len() == 1, "no Deleted Document row for {name}");
    result
}

#[test]
#[allow(
    clippy::disallowed_methods,
    reason = "the test's switch: which ERPNext to run against comes from the environment"
)]
fn bridge_contract_holds_against_real_erpnext() {
    let (Ok(url), Ok(token)) = (
        std::env::var("FSM_TEST_ERPNEXT_URL"),
        std::env::var("FSM_TEST_ERPNEXT_TOKEN"),
    ) else {
        eprintln!(
            "skipped: set FSM_TEST_ERPNEXT_URL and FSM_TEST_ERPNEXT_TOKEN (key:secret) to run the \
             bridge contract against a real ERPNext; it ran against the double above"
        );
        return;
    };
    let client = ErpClient::new(&ErpConfig {
        url,
        token: Secret::new(token),
        timeout: Duration::from_secs(30),
        ca_pem: None,
    })
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(contract(&client)).unwrap();
}

#[test]
fn an_idle_bridge_sleeps_until_there_is_work() {
    let w = erp_world(Duration::from_secs(10));
    w.push().unwrap();
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    w.rt.spawn(Arc::clone(&w.bridge).run(stop_rx));
    // Settled: the first pass and poll are done.
    wait_for(|| (w.bridge.stats().wakeups >= 2).then_some(()));
    let before = w.bridge.stats().wakeups;
    let window = Duration::from_millis(1_500);
    std::thread::sleep(window);
    let woke = w.bridge.stats().wakeups - before;
    // Polling every 300 ms: about five wake-ups in the window, never a spin.
    assert!(
        woke <= 8,
        "an idle bridge woke {woke} times in {window:?} (poll every 300 ms)"
    );
    // Work still wakes it at once.
    let job = w.data.jobs[0];
    w.service
        .with_engine(|e| {
            Ok((
                (),
                e.edit(
                    job.doc(),
                    &[FieldChange::Set {
                        field: "title".into(),
                        value: Scalar::str("Réveil du pont"),
                    }],
                    monday_9am(),
                )?,
            ))
        })
        .unwrap();
    let name = erp_name(&w, job.doc());
    wait_for(|| {
        let v = w.rt.block_on(w.client.get("Dispatch Job", &name)).ok()?;
        (v.get("title").and_then(|t| t.as_str()) == Some("Réveil du pont")).then_some(())
    });
}

#[test]
fn invariant_office_data_typed_by_hand_never_blocks_or_evicts_field_work() {
    let w = erp_world(Duration::from_secs(10));
    w.push().unwrap();
    let tech_id = w.data.technicians[0];
    let (mut tech, mut tech_net) = w.replica(Role::Technician, Some(tech_id), 1);
    tech.sync(&mut tech_net).unwrap();
    let job = job_of(&tech, tech_id);
    let name = erp_name(&w, job.doc());

    // Office staff type in ERPNext's desk: an emptied description, a title with a trailing
    // space, a start typed `9:30`.
    w.office_edit(
        &name,
        json!({"description": "", "title": "Raccordement fibre ", "start_hhmm": "9:30"}),
    );
    w.push().unwrap();
    tech.sync(&mut tech_net).unwrap();
    let server = w.server_records()[&job.doc()].1.clone();
    assert_eq!(
        server.get("start"),
        &Scalar::str("09:30"),
        "pulled in canonical form"
    );
    assert_eq!(server.get("title"), &Scalar::str("Raccordement fibre"));
    // Every technician edit still goes through, and writes only what it changes.
    tech.add_note(job, "Arrivé, client présent").unwrap();
    tech.set_job_status(job, JobStatus::EnRoute).unwrap();
    tech.sync(&mut tech_net).unwrap();
    assert!(
        tech.rejections().unwrap().is_empty(),
        "{:?}",
        tech.rejections().unwrap()
    );
    let Some(AnyEntity::Job(j)) = w.service.read(|e| e.entity(job.doc()).cloned()).unwrap() else {
        panic!()
    };
    assert_eq!(j.status, JobStatus::EnRoute);
    assert!(j.notes.iter().any(|n| n.text == "Arrivé, client présent"));

    // A start typed `9h30` is not a time: refused and parked for the office, while the
    // technician's offline work (a note, a status) keeps its job on the device and arrives.
    tech.add_note(job, "Fibre épissée").unwrap();
    tech.set_job_status(job, JobStatus::OnSite).unwrap();
    w.office_edit(&name, json!({"start_hhmm": "9h30"}));
    let _ = w.push();
    let issues = w.bridge.issues().unwrap();
    assert!(
        issues
            .iter()
            .any(|i| i.doc == job.doc() && i.message.contains("start")),
        "parked as an ERPNext issue naming the field: {issues:?}"
    );
    assert_eq!(
        w.server_records()[&job.doc()].1.get("start"),
        &Scalar::str("09:30"),
        "nothing invalid was written"
    );
    tech.sync(&mut tech_net).unwrap();
    tech.sync(&mut tech_net).unwrap();
    assert!(tech.rejections().unwrap().is_empty());
    assert!(
        tech.entity(job.doc()).unwrap().is_some(),
        "the job stays on the device"
    );
    let Some(AnyEntity::Job(j)) = w.service.read(|e| e.entity(job.doc()).cloned()).unwrap() else {
        panic!()
    };
    assert_eq!(j.status, JobStatus::OnSite);
    assert!(j.notes.iter().any(|n| n.text == "Fibre épissée"));
}

#[test]
fn invariant_a_job_deleted_in_erpnext_while_completed_offline_comes_back_as_a_decision() {
    let w = erp_world(Duration::from_secs(10));
    let tech = w.data.technicians[0];
    let (mut t, mut tn) = w.replica(Role::Technician, Some(tech), 1);
    let (mut office, mut on) = w.replica(Role::Dispatcher, None, 2);
    t.sync(&mut tn).unwrap();
    office.sync(&mut on).unwrap();
    w.push().unwrap();
    let job = job_of(&t, tech);
    let name = erp_name(&w, job.doc());
    // Offline in a basement: the technician completes the job and writes what was done.
    for s in [JobStatus::EnRoute, JobStatus::OnSite, JobStatus::Completed] {
        t.set_job_status(job, s).unwrap();
    }
    t.add_note(job, "ONT posé, signal -18,2 dBm").unwrap();
    // Meanwhile the office deletes the job in ERPNext, and the bridge sees it.
    w.erp.delete("Dispatch Job", &name).unwrap();
    w.poll();
    assert_eq!(
        w.server_records()[&job.doc()].1.get("deleted"),
        &Scalar::Bool(true)
    );
    // The technician comes back: the work is kept, the job stays visible, and the dispatcher
    // has a decision to make.
    t.sync(&mut tn).unwrap();
    t.sync(&mut tn).unwrap();
    assert!(t.rejections().unwrap().is_empty());
    assert!(
        w.conflicts().contains(&(job.doc(), "deleted".to_owned())),
        "the deletion is a decision for the office: {:?}",
        w.conflicts()
    );
    office.sync(&mut on).unwrap();
    let Some(AnyEntity::Job(seen)) = office.entity(job.doc()).unwrap() else {
        panic!("the dispatcher sees the job")
    };
    assert_eq!(seen.status, JobStatus::Completed);
    assert!(seen.notes.iter().any(|n| n.text.contains("-18,2 dBm")));
    // The technician is told, on the job itself.
    let Some(AnyEntity::Job(mine)) = t.entity(job.doc()).unwrap() else {
        panic!("the technician still has the job")
    };
    assert!(
        mine.notes.iter().any(|n| n.text.contains("ERPNext")),
        "a note tells the technician: {:?}",
        mine.notes
    );
    // Nothing goes back to ERPNext until the dispatcher decides.
    let creates = w.erp.counts().creates;
    w.push().unwrap();
    assert_eq!(w.erp.counts().creates, creates);
    // The dispatcher restores it: ERPNext gets the job back, with the field work.
    office
        .resolve_conflict(job.doc(), "deleted", &Scalar::Bool(false))
        .unwrap();
    office.sync(&mut on).unwrap();
    assert!(!w.conflicts().contains(&(job.doc(), "deleted".to_owned())));
    w.push_until_done(5);
    let restored = erp_name(&w, job.doc());
    let theirs = w
        .erp
        .doc("Dispatch Job", &restored)
        .expect("recreated in ERPNext");
    assert_eq!(
        theirs.get("fsm_id").and_then(Value::as_str),
        Some(job.doc().to_string().as_str())
    );
    w.assert_erpnext_agrees();
    t.sync(&mut tn).unwrap();
    assert_eq!(
        t.record(job.doc()).unwrap(),
        Some(w.server_records()[&job.doc()].1.clone())
    );
}

#[test]
fn invariant_one_unit_registered_twice_offline_is_a_decision_not_two_records() {
    use shared::ids::EquipmentId;
    use shared::model::{EquipmentStatus, EquipmentType, Serial, ServiceEquipment};
    let w = erp_world(Duration::from_secs(10));
    let (a, b) = (w.data.technicians[0], w.data.technicians[1]);
    let (mut ta, mut na) = w.replica(Role::Technician, Some(a), 1);
    let (mut tb, mut nb) = w.replica(Role::Technician, Some(b), 2);
    let (mut office, mut on) = w.replica(Role::Dispatcher, None, 3);
    ta.sync(&mut na).unwrap();
    tb.sync(&mut nb).unwrap();
    office.sync(&mut on).unwrap();
    w.push().unwrap();
    // Offline, each technician scans the same new ONT in and installs it at their own job.
    let new_unit = |r: &mut Replica, job: JobId| -> DocId {
        let Some(AnyEntity::Job(j)) = r.entity(job.doc()).unwrap() else {
            panic!("the job is on the device")
        };
        let id = r.new_id();
        r.create(&AnyEntity::Equipment(ServiceEquipment {
            id: EquipmentId(id),
            erp_name: None,
            location: Some(j.location),
            kind: EquipmentType::Ont,
            serial: Serial::parse("ZTEGD0UBLE01").unwrap(),
            mac: None,
            management_ip: None,
            model: None,
            firmware: None,
            status: EquipmentStatus::Active,
            duplicate_of: None,
        }))
        .unwrap();
        r.move_equipment(job, &id.to_string(), "install", None)
            .unwrap();
        id
    };
    let (job_a, job_b) = (job_of(&ta, a), job_of(&tb, b));
    let first = new_unit(&mut ta, job_a);
    let second = new_unit(&mut tb, job_b);
    ta.sync(&mut na).unwrap();
    tb.sync(&mut nb).unwrap();
    assert!(
        w.conflicts().contains(&(second, "duplicate_of".to_owned())),
        "the second record is a decision for the office: {:?}",
        w.conflicts()
    );
    let in_erpnext = || {
        w.erp
            .docs("Service Equipment")
            .iter()
            .filter(|d| d.get("serial_no").and_then(Value::as_str) == Some("ZTEGD0UBLE01"))
            .count()
    };
    w.push_until_done(5);
    assert_eq!(in_erpnext(), 1, "one record for the unit while undecided");
    // The office: it is the same unit.
    office.sync(&mut on).unwrap();
    office
        .resolve_conflict(second, "duplicate_of", &Scalar::str(first.to_string()))
        .unwrap();
    office.sync(&mut on).unwrap();
    assert!(!w.conflicts().contains(&(second, "duplicate_of".to_owned())));
    w.push_until_done(5);
    assert_eq!(
        in_erpnext(),
        1,
        "a confirmed duplicate never reaches ERPNext"
    );
    // Merged: the job's equipment line names the one record, the duplicate is gone from every
    // list (kept deleted on the server, with its history).
    let names = |r: &Replica, job: JobId| -> Vec<DocId> {
        let Some(AnyEntity::Job(j)) = r.entity(job.doc()).unwrap() else {
            panic!("the job is on the device")
        };
        j.equipment_items
            .iter()
            .map(|i| i.equipment.doc())
            .collect()
    };
    tb.sync(&mut nb).unwrap();
    tb.sync(&mut nb).unwrap();
    assert_eq!(names(&tb, job_b), vec![first], "the line names the twin");
    assert!(
        tb.entity(second).unwrap().is_none(),
        "the duplicate left the technician's device"
    );
    assert!(
        matches!(tb.entity(first).unwrap(), Some(AnyEntity::Equipment(_))),
        "and the unit the line names is on it"
    );
    let server = w.server_records();
    assert_eq!(server[&second].1.get("deleted"), &Scalar::Bool(true));
    assert_eq!(
        server[&second].1.get("duplicate_of"),
        &Scalar::str(first.to_string()),
        "the record says what it was merged into"
    );
    w.push_until_done(5);
    assert_eq!(in_erpnext(), 1, "still one record of the unit in ERPNext");
    w.assert_erpnext_agrees();
}
