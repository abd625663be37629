//! The small world most scenarios start from: a server with generated data, one technician
//! and one dispatcher replica, both synced.

use std::collections::BTreeMap;
use std::sync::Arc;

use app_tauri_core::Replica;
use shared::clock::FixedClock;
use shared::ids::{Author, DocId, Role};
use shared::record::{EntityKind, Record, Scalar};
use shared::sync::server::{ServerConfig, Subject};
use tests::data::{Dataset, Spec, generate};
use tests::harness::{Direct, Hub, device, monday_9am, replica, server_author};

pub(crate) struct World {
    pub(crate) hub: Hub,
    pub(crate) data: Dataset,
    pub(crate) tech: Replica,
    pub(crate) tech_net: Direct,
    pub(crate) office: Replica,
    pub(crate) office_net: Direct,
}

/// A real sync service on a SQLite file in `dir`, seeded with the small world's data, its clock
/// at Monday 9:00 (the HTTP scenarios serve it on a socket).
pub(crate) fn seeded_service(
    dir: &std::path::Path,
) -> (Arc<sync_server::service::SyncService>, Dataset) {
    let store = sync_server::store::SqliteStore::open(&dir.join("sync.sqlite3"), false).unwrap();
    let service = Arc::new(
        sync_server::service::SyncService::open(
            ServerConfig::new(server_author()),
            Box::new(store),
            Box::new(FixedClock::new(monday_9am())),
        )
        .unwrap(),
    );
    let data = generate(21, small_spec(), monday_9am().date());
    service.seed(&data.entities, monday_9am()).unwrap();
    (service, data)
}

/// Two technicians, a few jobs each, over a few days: small enough to read a failure.
pub(crate) fn small_spec() -> Spec {
    Spec {
        technicians: 2,
        jobs_per_technician: 3,
        locations: 4,
        subscribers_per_location: 1,
        equipment_per_location: 2,
        days_back: 1,
        days_ahead: 3,
    }
}

pub(crate) fn world() -> World {
    let clock = Arc::new(FixedClock::new(monday_9am()));
    let hub = Hub::new(ServerConfig::new(server_author()), clock.clone());
    let data = generate(11, small_spec(), hub.today());
    hub.seed(&data).unwrap();
    let ta = Author::new(Role::Technician, device(1));
    let oa = Author::new(Role::Dispatcher, device(2));
    let mut tech_net = hub.connect(ta, Subject::Technician(data.technicians[0]));
    let mut office_net = hub.connect(oa, Subject::Office);
    let mut tech = replica(ta, clock.clone(), 1).unwrap();
    let mut office = replica(oa, clock, 2).unwrap();
    tech.sync(&mut tech_net).unwrap();
    office.sync(&mut office_net).unwrap();
    World {
        hub,
        data,
        tech,
        tech_net,
        office,
        office_net,
    }
}

/// Everything observable about a replica.
pub(crate) fn state(r: &Replica) -> (BTreeMap<DocId, Record>, u64, usize) {
    let mut m = BTreeMap::new();
    for (id, _) in r.doc_ids().unwrap() {
        m.insert(id, r.record(id).unwrap().unwrap());
    }
    (
        m,
        r.sync_point().unwrap().cursor,
        r.pending().unwrap().len(),
    )
}

pub(crate) fn server_state(hub: &Hub) -> (u64, BTreeMap<DocId, Record>) {
    let e = hub.engine.borrow();
    (
        e.stats().head_seq,
        e.doc_ids()
            .map(|d| (d, e.record(d).unwrap().clone()))
            .collect(),
    )
}

pub(crate) fn my_job(w: &World) -> DocId {
    let held: Vec<DocId> = w
        .tech
        .doc_ids()
        .unwrap()
        .into_iter()
        .filter(|(d, k)| {
            *k == EntityKind::Job
                && w.tech.record(*d).unwrap().unwrap().get("status") == &Scalar::str("scheduled")
        })
        .map(|(d, _)| d)
        .collect();
    held[0]
}
