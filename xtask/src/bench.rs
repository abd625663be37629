//! `cargo xtask bench core`: the replica and sync-core figures.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use app_tauri_core::{Replica, Transport, TransportError};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shared::clock::{Clock, FixedClock};
use shared::crdt;
use shared::ids::{Author, JobId, Role};
use shared::model::{AnyEntity, EquipmentStatus, JobStatus, ServiceEquipment};
use shared::record::{EntityKind, FieldChange, Scalar};
use shared::sync::server::{ServerConfig, Subject};
use tests::data::{Dataset, Spec, generate};
use tests::harness::{Direct, Hub, device, monday_9am, server_author};

/// The scope: one technician, 300 jobs, 3,000 customers (owners and the subscribers of
/// multi-dwelling buildings), 300 locations, 2,700 subscriptions and 15,000 equipment.
pub(crate) const SPEC: Spec = Spec {
    technicians: 1,
    jobs_per_technician: 300,
    locations: 300,
    subscribers_per_location: 9,
    equipment_per_location: 50,
    days_back: 7,
    days_ahead: 21,
};

pub(crate) fn line(name: &str, value: f64, unit: &str) {
    println!("{name}: {value:.3} {unit}");
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Re-runs itself as a release build when built for debugging: figures from debug builds mean nothing.
pub(crate) fn ensure_release(args: &[&str]) -> Result<bool> {
    if !cfg!(debug_assertions) {
        return Ok(false);
    }
    let status = std::process::Command::new(env!("CARGO"))
        .args(["run", "--release", "--quiet", "--package", "xtask", "--"])
        .args(args)
        .status()
        .context("starting the release build of xtask")?;
    if !status.success() {
        bail!("release benchmark run failed ({status})");
    }
    Ok(true)
}

/// A transport that records every answer, so a second process can replay the same sync.
struct Recording {
    inner: Direct,
    frames: Vec<Vec<u8>>,
}

impl Transport for Recording {
    fn exchange(&mut self, request: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        let answer = self.inner.exchange(request)?;
        self.frames.push(answer.clone());
        Ok(answer)
    }
}

/// One reconnect round: both sides edit `docs` while apart, then one sync. Returns CPU ms (both
/// sides), server CPU ms, wall ms, bytes and round trips.
fn reconnect(
    replica: &mut Replica,
    hub: &Hub,
    transport: &Direct,
    docs: &[shared::ids::DocId],
    round: u32,
) -> Result<(f64, f64, f64, f64, f64)> {
    let statuses = [
        EquipmentStatus::Defectueux,
        EquipmentStatus::Retourne,
        EquipmentStatus::Active,
    ];
    for (i, d) in docs.iter().enumerate() {
        replica.update::<ServiceEquipment>(*d, |q| {
            q.status = statuses[(i + round as usize) % statuses.len()];
            Ok(())
        })?;
        hub.engine.borrow_mut().edit(
            *d,
            &[FieldChange::Set {
                field: "firmware".into(),
                value: Scalar::str(format!("V5R23C10-{round}-{i}")),
            }],
            hub.clock.now(),
        )?;
    }
    let mut timed = Timed {
        inner: transport.clone(),
        cpu_ns: 0,
    };
    let (t, cpu) = (Instant::now(), thread_cpu_ns());
    let r = replica.sync(&mut timed)?;
    let cpu_ms = (thread_cpu_ns() - cpu) as f64 / 1e6;
    Ok((
        cpu_ms,
        timed.cpu_ns as f64 / 1e6,
        t.elapsed().as_secs_f64() * 1000.0,
        (r.bytes_sent + r.bytes_received) as f64,
        f64::from(r.round_trips),
    ))
}

/// A transport that counts the CPU time spent on the server side of each exchange.
pub(crate) struct Timed {
    pub(crate) inner: Direct,
    pub(crate) cpu_ns: u64,
}

impl Transport for Timed {
    fn exchange(&mut self, request: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        let start = thread_cpu_ns();
        let answer = self.inner.exchange(request);
        self.cpu_ns += thread_cpu_ns() - start;
        answer
    }
}

/// CPU time of the calling thread, in nanoseconds (Linux schedstat).
pub(crate) fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn tech_author() -> Author {
    Author::new(Role::Technician, device(1))
}

/// A scratch folder on the build's disk (beside the target directory), never a RAM-backed
/// `/tmp`: stores measured there pay for their fsyncs as in production.
pub(crate) fn disk_dir() -> Result<tempfile::TempDir> {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("target"));
    std::fs::create_dir_all(&base)?;
    tempfile::Builder::new()
        .prefix("bench-")
        .tempdir_in(&base)
        .with_context(|| format!("creating a scratch folder in {}", base.display()))
}

pub(crate) fn core() -> Result<()> {
    if ensure_release(&["bench", "core"])? {
        return Ok(());
    }
    let dir = disk_dir()?;
    let clock = Arc::new(FixedClock::new(monday_9am()));
    let hub = Hub::new(ServerConfig::new(server_author()), clock.clone());
    let data: Dataset = generate(7, SPEC, hub.today());
    hub.seed(&data)?;
    let tech = data.technicians[0];
    let transport = hub.connect(tech_author(), Subject::Technician(tech));

    // initial_sync_s: empty replica on disk to every entity materialized and queryable.
    let path = dir.path().join("replica.sqlite3");
    let mut replica = Replica::open(&path, tech_author(), clock.clone() as Arc<dyn Clock>)?;
    let mut rec = Recording {
        inner: transport.clone(),
        frames: Vec::new(),
    };
    let t = Instant::now();
    let report = replica.sync(&mut rec)?;
    let initial = t.elapsed().as_secs_f64();
    let status = replica.status()?;
    if status.documents < 18_300 {
        bail!(
            "initial sync materialized only {} documents",
            status.documents
        );
    }
    line("initial_sync_s", initial, "s");
    line("initial_sync_entities", status.documents as f64, "docs");
    line(
        "initial_sync_round_trips",
        f64::from(report.round_trips),
        "round_trips",
    );

    // edit_commit_*: one offline edit, committed (WAL, synchronous=FULL: synced to disk).
    let jobs: Vec<JobId> = data.jobs.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut times = Vec::with_capacity(1000);
    for i in 0..1000 {
        let job = jobs[rng.random_range(0..jobs.len())];
        let t = Instant::now();
        if i % 2 == 0 {
            replica.add_note(job, &format!("Note de terrain {i}"))?;
        } else {
            replica.update::<shared::model::DispatchJob>(job.doc(), |j| {
                if let Some(c) = j.checklist.first_mut() {
                    c.done = !c.done;
                }
                Ok(())
            })?;
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    line("edit_commit_p50_ms", percentile(&times, 0.5), "ms");
    line("edit_commit_p99_ms", percentile(&times, 0.99), "ms");
    replica.sync(&mut transport.clone())?;

    // reconnect_500_*: 500 documents edited on both sides while apart, then one sync. Five
    // rounds on the same documents; the median is reported.
    let equipment: Vec<_> = replica
        .doc_ids()?
        .into_iter()
        .filter(|(_, k)| *k == EntityKind::Equipment)
        .map(|(d, _)| d)
        .take(500)
        .collect();
    #[allow(clippy::disallowed_methods)] // benchmark switch, not library code
    let profiling = std::env::var("FSM_BENCH_PROFILE").is_ok_and(|v| v == "reconnect");
    let rounds = if profiling { 40 } else { 5 };
    let mut figures = Vec::new();
    for round in 0..rounds {
        figures.push(reconnect(
            &mut replica,
            &hub,
            &transport,
            &equipment,
            round,
        )?);
    }
    if profiling {
        return Ok(());
    }
    // The first round runs cold (documents not yet loaded, caches empty), as a device's first
    // sync after a day offline does.
    line("reconnect_500_cold_cpu_ms", figures[0].0, "ms");
    figures.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (cpu_ms, server_ms, wall_ms, bytes, trips) = figures[figures.len() / 2];
    // Client and server run on one thread, so its CPU time is both sides together.
    line("reconnect_500_cpu_ms", cpu_ms, "ms");
    line("reconnect_500_server_cpu_ms", server_ms, "ms");
    line("reconnect_500_wall_ms", wall_ms, "ms");
    line("reconnect_500_bytes", bytes, "bytes");
    line("reconnect_500_round_trips", trips, "round_trips");

    // history_10k_load_ms: a job document after 10,000 edits, compacted as the server does it.
    let job = data.jobs[0].doc();
    let (epoch, bytes) = hub
        .engine
        .borrow()
        .doc_bytes(job)
        .map(|(e, b)| (e, b.to_vec()))
        .context("job document")?;
    let _ = epoch;
    let mut doc = crdt::load(&bytes)?;
    let author = Author::new(Role::Technician, device(9));
    for i in 0..10_000u32 {
        let changes = if i % 500 == 0 {
            let item = format!("n{i:05}");
            vec![
                FieldChange::SetItem {
                    collection: "notes".into(),
                    item: item.clone(),
                    field: "text".into(),
                    value: Scalar::str(format!("note {i}")),
                },
                FieldChange::SetItem {
                    collection: "notes".into(),
                    item,
                    field: "at".into(),
                    value: Scalar::Int(i64::from(i)),
                },
            ]
        } else {
            vec![FieldChange::Set {
                field: "actual_start".into(),
                value: Scalar::Int(i64::from(i)),
            }]
        };
        crdt::write(&mut doc, author, clock.now(), &changes)?;
    }
    let long = doc.save();
    let load = |bytes: &[u8]| -> Result<f64> {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            let d = crdt::load(bytes)?;
            let m = crdt::read(&d, EntityKind::Job);
            AnyEntity::from_record(EntityKind::Job, job, &m.record)?;
            best = best.min(t.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(best)
    };
    let record = crdt::read(&doc, EntityKind::Job).record;
    let (compacted, _) = crdt::create(EntityKind::Job, server_author(), clock.now(), &record)?;
    let compacted = compacted.save();
    line("history_10k_uncompacted_load_ms", load(&long)?, "ms");
    line("history_10k_load_ms", load(&compacted)?, "ms");
    line("history_10k_bytes", compacted.len() as f64, "bytes");

    // query_p99_ms and replica_rss_mb in a client-only process replaying the same sync.
    let frames_path = dir.path().join("frames.bin");
    let mut f = std::fs::File::create(&frames_path)?;
    for fr in &rec.frames {
        f.write_all(&(fr.len() as u64).to_le_bytes())?;
        f.write_all(fr)?;
    }
    drop(f);
    let out = std::process::Command::new(std::env::current_exe()?)
        .args([
            "bench-client",
            frames_path.to_str().context("utf-8 temp path")?,
        ])
        .output()
        .context("running the client-only process")?;
    if !out.status.success() {
        bail!(
            "client process failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    print!("{}", String::from_utf8_lossy(&out.stdout));
    let _ = JobStatus::Completed;
    let held = replica
        .doc_ids()?
        .into_iter()
        .find(|(_, k)| *k == EntityKind::Job)
        .map(|(d, _)| d)
        .context("the technician holds a job")?;
    small_edit_on_large_doc(&hub, &mut replica, &transport, held)?;
    Ok(())
}

/// `small_edit_on_large_doc_bytes`: what reaches a device holding a job with a 1 MB note when the
/// office changes the job's priority (the answer's bytes, as the transport carries them).
fn small_edit_on_large_doc(
    hub: &Hub,
    replica: &mut Replica,
    transport: &tests::harness::Direct,
    job: shared::ids::DocId,
) -> Result<()> {
    let now = hub.clock.now();
    let big = "Relevé de fibre. ".repeat(1_000_000 / 17);
    hub.on(0, |e| {
        match e.edit(
            job,
            &[
                FieldChange::SetItem {
                    collection: "notes".into(),
                    item: "releve".into(),
                    field: "text".into(),
                    value: Scalar::str(big),
                },
                FieldChange::SetItem {
                    collection: "notes".into(),
                    item: "releve".into(),
                    field: "at".into(),
                    value: Scalar::Int(now.0),
                },
            ],
            now,
        ) {
            Ok(fx) => (Ok(()), fx),
            Err(err) => (Err(err), Vec::new()),
        }
    })??;
    replica.sync(&mut transport.clone())?;
    let priority = match hub
        .engine
        .borrow()
        .record(job)
        .map(|r| r.get("priority").clone())
    {
        Some(Scalar::Str(p)) if p == "high" => "normal",
        _ => "high",
    };
    hub.on(0, |e| {
        match e.edit(
            job,
            &[FieldChange::Set {
                field: "priority".into(),
                value: Scalar::str(priority),
            }],
            now,
        ) {
            Ok(fx) => (Ok(()), fx),
            Err(err) => (Err(err), Vec::new()),
        }
    })??;
    let report = replica.sync(&mut transport.clone())?;
    if replica.record(job)?.map(|r| r.get("priority").clone()) != Some(Scalar::str(priority)) {
        bail!("the priority change did not arrive");
    }
    line(
        "small_edit_on_large_doc_bytes",
        report.bytes_received as f64,
        "bytes",
    );
    Ok(())
}

/// Replays recorded answers into a fresh replica, runs the screen queries, reports RSS.
pub(crate) fn client_child(frames: &str) -> Result<()> {
    struct Replay(std::vec::IntoIter<Vec<u8>>);
    impl Transport for Replay {
        fn exchange(&mut self, _request: Vec<u8>) -> Result<Vec<u8>, TransportError> {
            self.0
                .next()
                .ok_or_else(|| TransportError::Unreachable("no more recorded frames".into()))
        }
    }
    let bytes = std::fs::read(frames).context("reading frames")?;
    let mut list = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let n = u64::from_le_bytes(bytes[at..at + 8].try_into()?) as usize;
        list.push(bytes[at + 8..at + 8 + n].to_vec());
        at += 8 + n;
    }
    let dir = disk_dir()?;
    let clock = Arc::new(FixedClock::new(monday_9am()));
    let mut replica = Replica::open(
        &dir.path().join("r.sqlite3"),
        tech_author(),
        clock.clone() as Arc<dyn Clock>,
    )?;
    replica.sync(&mut Replay(list.into_iter()))?;

    let today = clock.now().date();
    let tech: shared::ids::TechnicianId = {
        let techs: Vec<_> = replica
            .doc_ids()?
            .into_iter()
            .filter(|(_, k)| *k == EntityKind::Technician)
            .collect();
        shared::ids::TechnicianId(techs.first().context("technician in scope")?.0)
    };
    let mut serials = Vec::new();
    let mut macs = Vec::new();
    let mut names = Vec::new();
    for (id, kind) in replica.doc_ids()? {
        match (kind, replica.entity(id)?) {
            (EntityKind::Equipment, Some(AnyEntity::Equipment(e))) => {
                serials.push(e.serial.to_string());
                if let Some(m) = e.mac {
                    macs.push(m.compact()[..6].to_owned());
                }
            }
            (EntityKind::Customer, Some(AnyEntity::Customer(c))) => {
                names.push(
                    c.name
                        .as_str()
                        .split_whitespace()
                        .last()
                        .unwrap_or("Roy")
                        .chars()
                        .take(4)
                        .collect::<String>(),
                );
            }
            _ => {}
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut times = Vec::new();
    for i in 0..4000 {
        let t = Instant::now();
        match i % 4 {
            0 => {
                let day = today + chrono::Duration::days(rng.random_range(-3..7));
                std::hint::black_box(replica.jobs_of(tech, day)?);
            }
            1 => {
                std::hint::black_box(
                    replica.equipment_by_serial(&serials[rng.random_range(0..serials.len())])?,
                );
            }
            2 => {
                std::hint::black_box(
                    replica.equipment_by_mac_prefix(&macs[rng.random_range(0..macs.len())], 20)?,
                );
            }
            _ => {
                std::hint::black_box(replica.search(&names[rng.random_range(0..names.len())], 20)?);
            }
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    line("query_p99_ms", percentile(&times, 0.99), "ms");
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |field: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    line("replica_rss_mb", kb("VmRSS:") / 1024.0, "MB");
    // The peak over the whole process: the initial sync's, not only what remains after it.
    line("replica_peak_rss_mb", kb("VmHWM:") / 1024.0, "MB");
    let _ = Path::new(frames);
    Ok(())
}

/// The release `sync-server demo` in a child process, data in a disk folder, settings from the
/// environment; killed when dropped.
pub(crate) struct Demo {
    pub child: std::process::Child,
    pub port: u16,
    /// The dispatcher token the demo prints.
    pub token: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds the release server and starts `demo` on a port the system picks (the server prints
/// the one it got, and a dispatcher token).
pub(crate) fn release_demo(dir: &std::path::Path, env: &[(&str, String)]) -> Result<Demo> {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let status = Command::new(env!("CARGO"))
        .current_dir(tests::app_driver::workspace())
        .args(["build", "--release", "--locked", "-p", "sync-server"])
        .status()?;
    anyhow::ensure!(status.success(), "building sync-server failed");
    let bin = tests::app_driver::target_dir()
        .join("release")
        .join("sync-server");
    let child = Command::new(&bin)
        .args(["demo", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut demo = Demo {
        child,
        port: 0,
        token: String::new(),
    };
    let mut out = BufReader::new(demo.child.stdout.take().context("child stdout")?);
    let mut buf = String::new();
    while demo.port == 0 {
        buf.clear();
        anyhow::ensure!(out.read_line(&mut buf)? > 0, "the demo exited");
        if buf.starts_with("Dispatcher token:") {
            buf.clear();
            out.read_line(&mut buf)?;
            demo.token = buf.trim().to_owned();
        } else if let Some(addr) = buf.trim().strip_prefix("Listening on ") {
            demo.port = addr.parse::<std::net::SocketAddr>()?.port();
        }
    }
    anyhow::ensure!(!demo.token.is_empty(), "no dispatcher token");
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Ok(demo)
}
