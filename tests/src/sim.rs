//! Deterministic sync simulation: technicians and a dispatcher edit offline while the network
//! drops, duplicates and reorders messages, partitions devices and skews their clocks, the server
//! restarts (forgetting every session), a second server instance shares its store and compacts
//! under the durable horizon, and the server or a device is restored from an older backup of its
//! own; then the network heals and every invariant is checked. One seed, one run: no sockets, no
//! sleeps, no wall clock, so a failing seed replays exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use app_tauri_core::{Replica, ReplicaBackup, ReplicaError};
use chrono::{Duration, NaiveTime};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shared::clock::{Clock, FixedClock};
use shared::ids::{Author, DeviceId, DocId, EquipmentId, JobId, Role, TechnicianId};
use shared::model::{
    AnyEntity, DispatchJob, EquipmentStatus, JobStatus, ServiceEquipment, Signature,
};
use shared::protocol::{self, Message, SyncResponse};
use shared::record::{EntityKind, Record, Scalar};
use shared::sync::server::{ServerConfig, Subject};

use crate::data::{Spec, generate};
use crate::harness::{Direct, Durable, Hub, device, monday_9am, replica, server_author};

struct Node {
    replica: Replica,
    author: Author,
    subject: Subject,
    clock: Arc<FixedClock>,
    transport: Direct,
    offline: bool,
    late: Vec<SyncResponse>,
    /// The server instance this device's requests reach (a balancer with sticky sessions).
    instance: usize,
    /// The last backup of this device's replica.
    backup: Option<ReplicaBackup>,
}

/// What a run saw, for reporting.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub edits: usize,
    pub denied_locally: usize,
    pub exchanges: usize,
    pub dropped: usize,
    pub duplicated: usize,
    pub stale_ignored: usize,
    pub compactions: usize,
    pub conflicts: usize,
    pub rejections: usize,
    pub restarts: usize,
    pub second_instance: usize,
    pub server_restores: usize,
    pub device_restores: usize,
}

/// Devices not seen for this long no longer hold compaction back (the server's retention).
const RETENTION_MS: i64 = 24 * 3_600_000;

/// Knobs of a run.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub drop: f64,
    pub duplicate: f64,
    pub late: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            drop: 0.15,
            duplicate: 0.1,
            late: 0.1,
        }
    }
}

fn fail(seed: u64, what: impl std::fmt::Display) -> String {
    format!("seed {seed}: {what}")
}

fn jobs_held(r: &Replica) -> Result<Vec<DocId>, ReplicaError> {
    Ok(r.doc_ids()?
        .into_iter()
        .filter(|(_, k)| *k == EntityKind::Job)
        .map(|(d, _)| d)
        .collect())
}

fn job(r: &Replica, id: DocId) -> Result<Option<DispatchJob>, ReplicaError> {
    Ok(match r.entity(id)? {
        Some(AnyEntity::Job(j)) => Some(*j),
        _ => None,
    })
}

/// Runs one seed for `steps` steps and checks the invariants; `Err` names the broken one.
pub fn run(seed: u64, steps: usize, faults: Faults) -> Result<Outcome, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let server_clock = Arc::new(FixedClock::new(monday_9am()));
    let mut config = ServerConfig::new(server_author());
    config.compact_after = 2;
    config.max_snapshots = 7; // several round trips for a first sync
    let hub = Hub::new(config, server_clock.clone());
    let spec = Spec {
        technicians: 3,
        jobs_per_technician: 4,
        locations: 6,
        subscribers_per_location: 1,
        equipment_per_location: 2,
        days_back: 1,
        days_ahead: 4,
    };
    let data = generate(seed, spec, hub.today());
    hub.seed(&data).map_err(|e| fail(seed, e))?;

    let mut nodes: Vec<Node> = Vec::new();
    let mut who: Vec<(Role, Subject)> = data
        .technicians
        .iter()
        .map(|t| (Role::Technician, Subject::Technician(*t)))
        .collect();
    who.push((Role::Dispatcher, Subject::Office));
    for (i, (role, subject)) in who.into_iter().enumerate() {
        let author = Author::new(role, device(i as u128 + 1));
        let clock = Arc::new(FixedClock::new(monday_9am()));
        let transport = hub.connect(author, subject);
        let replica = replica(
            author,
            clock.clone(),
            seed.wrapping_mul(31).wrapping_add(i as u64),
        )
        .map_err(|e| fail(seed, e))?;
        nodes.push(Node {
            replica,
            author,
            subject,
            clock,
            transport,
            offline: false,
            late: Vec::new(),
            instance: 0,
            backup: None,
        });
    }

    let mut out = Outcome::default();
    let mut requests: Vec<(DeviceId, Vec<u8>)> = Vec::new();
    let mut responses: Vec<(usize, SyncResponse)> = Vec::new();
    let mut notes: Vec<(DocId, String)> = Vec::new();
    // Who wrote each note (for a device restore, which loses what only that device had).
    let mut writer: BTreeMap<String, usize> = BTreeMap::new();
    let mut server_backup: Option<Durable> = None;
    // Requests sent before the server was last restored carry what it lost: delivering one again
    // recovers data rather than repeat a message, so the idempotence check starts after it.
    let mut since_restore = 0;
    // Per device, how many requests had been sent when it was last restored from its backup:
    // the ones before may carry work the restore lost (a request dropped on the way), which a
    // late delivery rightly brings back, so the idempotence check leaves them out.
    let mut device_restored_at: BTreeMap<DeviceId, usize> = BTreeMap::new();

    for step in 0..steps {
        let n = rng.random_range(0..nodes.len());
        let roll: f64 = rng.random();
        if roll < 0.35 {
            let before = notes.len();
            edit(
                &mut nodes[n],
                &data.technicians,
                &mut rng,
                seed,
                step,
                &mut out,
                &mut notes,
            )?;
            for (_, text) in &notes[before..] {
                writer.insert(text.clone(), n);
            }
        } else if roll < 0.72 {
            if nodes[n].offline {
                continue;
            }
            exchange(
                &hub,
                &mut nodes[n],
                n,
                &mut rng,
                faults,
                &mut out,
                &mut requests,
                &mut responses,
            )
            .map_err(|e| fail(seed, e))?;
        } else if roll < 0.78 {
            let node = &mut nodes[n];
            if !node.late.is_empty() {
                let i = rng.random_range(0..node.late.len());
                let r = node.late.remove(i);
                let a = node
                    .replica
                    .apply_response(&r)
                    .map_err(|e| fail(seed, format!("late response: {e}")))?;
                out.stale_ignored += usize::from(a.stale);
            }
        } else if roll < 0.83 {
            if let Some((d, frame)) = requests.choose(&mut rng).cloned() {
                hub.exchange_on(usize::from(rng.random_bool(0.5)), d, &frame);
            }
        } else if roll < 0.89 {
            nodes[n].offline = !nodes[n].offline;
        } else if roll < 0.93 {
            let on = usize::from(rng.random_bool(0.5));
            out.compactions += hub.compact(on, RETENTION_MS).map_err(|e| fail(seed, e))?;
        } else if roll < 0.945 {
            // The server process restarts: every session it held in memory is gone.
            hub.restart(seed.wrapping_add(step as u64))
                .map_err(|e| fail(seed, e))?;
            out.restarts += 1;
        } else if roll < 0.955 {
            // A second instance starts (or restarts) on the same store; this device moves to it
            // (the other instance's next exchange with it is a full resync).
            hub.start_second().map_err(|e| fail(seed, e))?;
            nodes[n].instance = 1 - nodes[n].instance;
            out.second_instance += 1;
        } else if roll < 0.962 {
            // Backups: the server's nightly one, or a device's own.
            if rng.random_bool(0.3) {
                server_backup = Some(hub.backup());
            } else {
                nodes[n].backup = Some(nodes[n].replica.backup().map_err(|e| fail(seed, e))?);
            }
        } else if roll < 0.968 {
            if rng.random_bool(0.4) {
                if let Some(b) = server_backup.clone() {
                    // The server's disk is lost; it comes back from its last backup. What it
                    // acknowledged since lives on in the devices that hold it.
                    let held = held_texts(&nodes, seed)?;
                    let kept = texts_in(&b);
                    notes.retain(|(_, t)| kept.contains(t) || held.contains(t));
                    hub.restore(b, seed.wrapping_add(step as u64))
                        .map_err(|e| fail(seed, e))?;
                    since_restore = requests.len();
                    out.server_restores += 1;
                }
            } else if let Some(b) = nodes[n].backup.take() {
                // The device comes back from its own backup (same identity): what it wrote
                // since and the server never got is lost with the device, nothing else.
                device_restored_at.insert(nodes[n].author.device, requests.len());
                let node = &mut nodes[n];
                node.replica = Replica::restore(
                    b,
                    node.author,
                    node.clock.clone(),
                    Some(seed.wrapping_mul(97).wrapping_add(step as u64)),
                )
                .map_err(|e| fail(seed, e))?;
                node.late.clear();
                let on_server = server_texts(&hub, seed)?;
                let kept = replica_texts(&node.replica).map_err(|e| fail(seed, e))?;
                notes.retain(|(_, t)| {
                    writer.get(t) != Some(&n) || on_server.contains(t) || kept.contains(t)
                });
                out.device_restores += 1;
            }
        } else if roll < 0.98 {
            // Device clocks drift both ways.
            let skew = rng.random_range(-3 * 3_600_000..3 * 3_600_000);
            nodes[n].clock.advance(skew);
        } else {
            server_clock.advance(6 * 3_600_000);
            for node in &nodes {
                node.clock.advance(6 * 3_600_000);
            }
        }
    }

    // Heal and settle.
    for node in &mut nodes {
        node.offline = false;
    }
    settle(&mut nodes, seed)?;
    check(&hub, &nodes, &notes, seed)?;

    // Idempotence: every request ever sent, delivered again in a random order, changes nothing on
    // the server; every response delivered again changes nothing on the clients.
    let before_server = server_state(&hub);
    let mut again: Vec<(DeviceId, Vec<u8>)> = requests
        .iter()
        .enumerate()
        .skip(since_restore)
        .filter(|(i, (d, _))| device_restored_at.get(d).is_none_or(|at| i >= at))
        .map(|(_, r)| r.clone())
        .collect();
    for i in (1..again.len()).rev() {
        again.swap(i, rng.random_range(0..=i));
    }
    for (d, frame) in &again {
        hub.exchange(*d, frame);
    }
    // A request refused for missing dependencies after a server restore may apply when
    // delivered late, the dependencies having come since: it adds history, never state.
    let after_server = server_state(&hub);
    let changed = if out.server_restores > 0 {
        after_server.1 != before_server.1
    } else {
        after_server != before_server
    };
    if changed {
        return Err(fail(seed, "re-delivering requests changed the server"));
    }
    let before_clients: Vec<BTreeMap<DocId, Record>> = nodes
        .iter()
        .map(|n| records(&n.replica))
        .collect::<Result<_, _>>()
        .map_err(|e| fail(seed, e))?;
    for (i, r) in &responses {
        nodes[*i]
            .replica
            .apply_response(r)
            .map_err(|e| fail(seed, format!("re-delivered response: {e}")))?;
    }
    for (i, node) in nodes.iter().enumerate() {
        if records(&node.replica).map_err(|e| fail(seed, e))? != before_clients[i] {
            return Err(fail(
                seed,
                format!("re-delivering responses changed replica {i}"),
            ));
        }
    }
    settle(&mut nodes, seed)?;
    check(&hub, &nodes, &notes, seed)?;
    hub.catch_up().map_err(|e| fail(seed, e))?;
    out.conflicts = hub.engine.borrow().conflicts().len();
    out.rejections = nodes
        .iter()
        .map(|n| n.replica.rejections().map(|r| r.len()).unwrap_or(0))
        .sum();
    Ok(out)
}

/// The note texts of a set of records.
fn note_texts<'a>(records: impl Iterator<Item = &'a Record>) -> BTreeSet<String> {
    records
        .filter_map(|r| r.items("notes"))
        .flat_map(|items| items.values())
        .filter_map(|it| it.get("text").and_then(Scalar::as_str).map(str::to_owned))
        .collect()
}

fn replica_texts(r: &Replica) -> Result<BTreeSet<String>, ReplicaError> {
    Ok(note_texts(records(r)?.values()))
}

/// Every note text some device holds (written, received or waiting to be pushed).
fn held_texts(nodes: &[Node], seed: u64) -> Result<BTreeSet<String>, String> {
    let mut out = BTreeSet::new();
    for n in nodes {
        out.extend(replica_texts(&n.replica).map_err(|e| fail(seed, e))?);
    }
    Ok(out)
}

fn server_texts(hub: &Hub, seed: u64) -> Result<BTreeSet<String>, String> {
    hub.catch_up().map_err(|e| fail(seed, e))?;
    let e = hub.engine.borrow();
    Ok(note_texts(e.doc_ids().filter_map(|d| e.record(d))))
}

/// The note texts a store backup holds.
fn texts_in(backup: &Durable) -> BTreeSet<String> {
    note_texts(backup.records().iter())
}

fn records(r: &Replica) -> Result<BTreeMap<DocId, Record>, ReplicaError> {
    let mut m = BTreeMap::new();
    for (id, _) in r.doc_ids()? {
        if let Some(rec) = r.record(id)? {
            m.insert(id, rec);
        }
    }
    Ok(m)
}

fn server_state(hub: &Hub) -> (u64, BTreeMap<DocId, Record>) {
    let _ = hub.catch_up();
    let e = hub.engine.borrow();
    let docs = e
        .doc_ids()
        .filter_map(|d| e.record(d).map(|r| (d, r.clone())))
        .collect();
    (e.stats().head_seq, docs)
}

fn settle(nodes: &mut [Node], seed: u64) -> Result<(), String> {
    for _round in 0..40 {
        let mut quiet = true;
        for node in nodes.iter_mut() {
            let mut t = node.transport.clone();
            let rep = node
                .replica
                .sync(&mut t)
                .map_err(|e| fail(seed, format!("settling: {e}")))?;
            if rep.pushed + rep.snapshots + rep.changes + rep.evicted + rep.rejected > 0 {
                quiet = false;
            }
        }
        let pending: usize = nodes
            .iter()
            .map(|n| n.replica.pending().map(|p| p.len()).unwrap_or(1))
            .sum();
        if quiet && pending == 0 {
            return Ok(());
        }
    }
    Err(fail(seed, "replicas did not settle within 40 rounds"))
}

fn check(hub: &Hub, nodes: &[Node], notes: &[(DocId, String)], seed: u64) -> Result<(), String> {
    hub.catch_up().map_err(|e| fail(seed, e))?;
    let engine = hub.engine.borrow();
    for (i, node) in nodes.iter().enumerate() {
        let held: BTreeSet<DocId> = node
            .replica
            .doc_ids()
            .map_err(|e| fail(seed, e))?
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        let scope: BTreeSet<DocId> = engine
            .scope(node.subject, hub.today())
            .into_iter()
            .collect();
        if held != scope {
            let extra: Vec<_> = held.difference(&scope).take(3).collect();
            let missing: Vec<_> = scope.difference(&held).take(3).collect();
            return Err(fail(
                seed,
                format!(
                    "replica {i} holds {} docs, scope has {} (extra {extra:?}, missing {missing:?})",
                    held.len(),
                    scope.len()
                ),
            ));
        }
        for d in &held {
            // The stored bytes really read as the stored record (the fast path trusts the server).
            node.replica
                .verify(*d)
                .map_err(|e| fail(seed, format!("replica {i}: {e}")))?;
            let mine = node.replica.record(*d).map_err(|e| fail(seed, e))?;
            if mine.as_ref() != engine.record(*d) {
                return Err(fail(
                    seed,
                    format!(
                        "replica {i} disagrees with the server on {d}:\n  replica {mine:?}\n  server  {:?}",
                        engine.record(*d)
                    ),
                ));
            }
        }
        // The conflict inbox agrees with the server for what the replica holds: open conflicts
        // and values settled against someone alike.
        let mine: BTreeSet<(bool, DocId, String)> = node
            .replica
            .conflicts()
            .map_err(|e| fail(seed, e))?
            .into_iter()
            .map(|c| (c.settled, c.doc, c.field))
            .collect();
        let open = engine.conflicts().into_iter().map(|c| (false, c));
        let settled = engine.overridden().into_iter().map(|c| (true, c));
        let theirs: BTreeSet<(bool, DocId, String)> = open
            .chain(settled)
            .filter(|(_, (d, _))| held.contains(d))
            .map(|(s, (d, c))| (s, d, c.field))
            .collect();
        if mine != theirs {
            return Err(fail(
                seed,
                format!("replica {i} lists conflicts {mine:?}, server {theirs:?}"),
            ));
        }
        let _ = node.author;
    }
    // No lost edit: every note a user saw saved is on the server, or listed as a rejection
    // that keeps its text for the user to see and apply again.
    let mut refused = BTreeSet::new();
    for node in nodes {
        for r in node.replica.rejections().map_err(|e| fail(seed, e))? {
            for c in r.refused {
                if let shared::record::FieldChange::SetItem { field, value, .. } = c
                    && field == "text"
                    && let Some(t) = value.as_str()
                {
                    refused.insert(t.to_owned());
                }
            }
        }
    }
    for (job, text) in notes {
        if refused.contains(text) {
            continue;
        }
        let found = engine
            .record(*job)
            .and_then(|r| r.items("notes"))
            .is_some_and(|items| {
                items
                    .values()
                    .any(|it| it.get("text") == Some(&Scalar::str(text.clone())))
            });
        if !found {
            return Err(fail(seed, format!("note {text:?} on job {job} was lost")));
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn exchange(
    hub: &Hub,
    node: &mut Node,
    n: usize,
    rng: &mut ChaCha8Rng,
    faults: Faults,
    out: &mut Outcome,
    requests: &mut Vec<(DeviceId, Vec<u8>)>,
    responses: &mut Vec<(usize, SyncResponse)>,
) -> Result<(), String> {
    out.exchanges += 1;
    let req = node
        .replica
        .sync_request("sim")
        .map_err(|e| e.to_string())?;
    let frame = protocol::encode(&Message::Request(req));
    requests.push((node.author.device, frame.clone()));
    if rng.random_bool(faults.drop) {
        out.dropped += 1;
        return Ok(());
    }
    // The device's instance answers; a duplicate may reach the other one.
    let mut answer = hub.exchange_on(node.instance, node.author.device, &frame);
    if rng.random_bool(faults.duplicate) {
        out.duplicated += 1;
        let other = if rng.random_bool(0.5) {
            1 - node.instance
        } else {
            node.instance
        };
        let second = hub.exchange_on(other, node.author.device, &frame);
        if rng.random_bool(0.5) {
            answer = second;
        }
    }
    let resp = match protocol::decode(&answer).map_err(|e| e.to_string())? {
        Message::Response(r) => r,
        other => return Err(format!("unexpected answer {other:?}")),
    };
    responses.push((n, resp.clone()));
    if rng.random_bool(faults.drop) {
        out.dropped += 1;
        if rng.random_bool(faults.late / faults.drop.max(f64::EPSILON)) {
            node.late.push(resp);
        }
        return Ok(());
    }
    let a = node
        .replica
        .apply_response(&resp)
        .map_err(|e| format!("applying a response: {e}"))?;
    out.stale_ignored += usize::from(a.stale);
    // Like the app, a device asks for the next page at once, unless it goes quiet meanwhile.
    if resp.more && rng.random_bool(0.85) {
        return exchange(hub, node, n, rng, faults, out, requests, responses);
    }
    Ok(())
}

fn edit(
    node: &mut Node,
    techs: &[TechnicianId],
    rng: &mut ChaCha8Rng,
    seed: u64,
    step: usize,
    out: &mut Outcome,
    notes: &mut Vec<(DocId, String)>,
) -> Result<(), String> {
    let jobs = jobs_held(&node.replica).map_err(|e| fail(seed, e))?;
    let Some(&jid) = jobs.choose(rng) else {
        return Ok(());
    };
    let Some(current) = job(&node.replica, jid).map_err(|e| fail(seed, e))? else {
        return Ok(());
    };
    let r = &mut node.replica;
    let result: Result<(), ReplicaError> = match (node.author.role, rng.random_range(0..6)) {
        (_, 0) => {
            let text = format!("note {seed}/{step}");
            r.add_note(JobId(jid), &text)
                .map(|_| notes.push((jid, text)))
        }
        (_, 1) => {
            let to = *JobStatus::ALL.choose(rng).unwrap_or(&JobStatus::EnRoute);
            r.set_job_status(JobId(jid), to).map(|_| ())
        }
        (Role::Technician, 2) => {
            let n = current.checklist.len();
            let i = if n == 0 { 0 } else { rng.random_range(0..n) };
            r.update::<DispatchJob>(jid, |j| {
                if let Some(item) = j.checklist.get_mut(i) {
                    item.done = !item.done;
                }
                Ok(())
            })
            .map(|_| ())
        }
        (Role::Technician, 3) => {
            let at = node.clock.now();
            r.update::<DispatchJob>(jid, |j| {
                j.signature = Some(Signature {
                    signer: "Client".into(),
                    signed_at: at,
                    image_sha256: format!("{:x}", at.0),
                });
                Ok(())
            })
            .map(|_| ())
        }
        (Role::Technician, 4) => {
            // Forbidden: the replica must refuse before anything is written.
            let other = *techs.choose(rng).unwrap_or(&techs[0]);
            match r.update::<DispatchJob>(jid, |j| {
                j.technician = Some(other);
                Ok(())
            }) {
                Err(ReplicaError::Denied(_)) => {
                    out.denied_locally += 1;
                    return Ok(());
                }
                Ok(j) if j.technician == current.technician => Ok(()),
                Ok(_) => return Err(fail(seed, "a technician reassigned a job")),
                Err(e) => Err(e),
            }
        }
        (Role::Technician, _) => {
            let eq: Vec<DocId> = r
                .doc_ids()
                .map_err(|e| fail(seed, e))?
                .into_iter()
                .filter(|(_, k)| *k == EntityKind::Equipment)
                .map(|(d, _)| d)
                .collect();
            match eq.choose(rng) {
                Some(&e) => r
                    .update::<ServiceEquipment>(EquipmentId(e).doc(), |q| {
                        q.status = *[
                            EquipmentStatus::Active,
                            EquipmentStatus::Defectueux,
                            EquipmentStatus::Retourne,
                        ]
                        .choose(rng)
                        .unwrap_or(&EquipmentStatus::Active);
                        Ok(())
                    })
                    .map(|_| ()),
                None => Ok(()),
            }
        }
        (_, 2) => {
            let other = *techs.choose(rng).unwrap_or(&techs[0]);
            r.update::<DispatchJob>(jid, |j| {
                j.technician = Some(other);
                if j.status == JobStatus::Open {
                    j.status = JobStatus::Scheduled;
                }
                Ok(())
            })
            .map(|_| ())
        }
        (_, 3) => {
            let days = rng.random_range(-1..=3);
            let hour = rng.random_range(8..16);
            r.update::<DispatchJob>(jid, |j| {
                j.date += Duration::days(days);
                j.start = NaiveTime::from_hms_opt(hour, 30, 0);
                Ok(())
            })
            .map(|_| ())
        }
        _ => r
            .set_job_status(JobId(jid), JobStatus::Cancelled)
            .map(|_| ()),
    };
    match result {
        Ok(()) => out.edits += 1,
        Err(ReplicaError::Denied(_)) => out.denied_locally += 1,
        Err(e) => return Err(fail(seed, format!("edit failed: {e}"))),
    }
    Ok(())
}
