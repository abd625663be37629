//! `cargo xtask bench server`: the sync server under load, over real HTTP.
//!
//! The server runs in a child process (this binary, `bench-server-child`) with embedded SQLite and
//! 200 technicians' data; clients are real replicas in this process, one thread each.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use app_tauri_core::{HttpTransport, Replica};
use shared::clock::{Clock, FixedClock};
use shared::ids::{Author, DeviceId, DocId, JobId, Role};
use shared::model::{EquipmentStatus, ServiceEquipment};
use shared::record::EntityKind;
use shared::sync::server::ServerConfig;
use sync_server::auth::Keys;
use sync_server::service::SyncService;
use sync_server::store::SqliteStore;
use sync_server::{AppState, SystemClock, demo};
use tests::harness::{Hub, device, monday_9am, server_author};

use crate::bench::{SPEC, Timed, ensure_release, line, thread_cpu_ns};

const SECRET: &[u8] = b"bench secret, thirty-two bytes or more!!";
const TECHNICIANS: usize = 200;
const SEED: u64 = 77;

fn spec() -> demo::Spec {
    demo::Spec {
        technicians: TECHNICIANS,
        jobs_per_technician: 10,
        locations: 2_000,
        subscribers_per_location: 1,
        equipment_per_location: 3,
        days_back: 2,
        days_ahead: 10,
    }
}

/// The child: seeds, serves, prints `ready <port>`.
pub(crate) fn child(dir: &str, port: &str) -> Result<()> {
    // Production settings: synchronous=FULL, on the disk the temporary folder is on.
    let store = Box::new(SqliteStore::open(
        &std::path::Path::new(dir).join("sync.sqlite3"),
        true,
    )?);
    let service = Arc::new(SyncService::open(
        ServerConfig::new(server_author()),
        store,
        Box::new(SystemClock),
    )?);
    let data = demo::generate(SEED, spec(), SystemClock.now().date());
    service.seed(&data.entities, SystemClock.now())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
        println!("ready {}", data.entities.len());
        let state = AppState {
            sync: service,
            keys: Arc::new(Keys::from_secret(SECRET)),
            erp: None,
            photos: None,
            links: Default::default(),
            hub: None,
        };
        sync_server::serve(listener, state, std::future::pending()).await?;
        anyhow::Ok(())
    })
}

struct Client {
    replica: Replica,
    net: HttpTransport,
}

/// User + system CPU seconds of a process (Linux, clock ticks at 100 Hz).
pub(crate) fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Edits `n` documents of the client's scope: a note on each job, a status on equipment.
fn edit(c: &mut Client, n: usize, round: usize) -> Result<usize> {
    let ids = c.replica.doc_ids()?;
    let mut done = 0;
    for (id, kind) in ids {
        if done == n {
            break;
        }
        match kind {
            EntityKind::Job => {
                c.replica.add_note(JobId(id), &format!("Note {round}"))?;
            }
            EntityKind::Equipment => {
                c.replica.update::<ServiceEquipment>(id, |q| {
                    q.status = if round.is_multiple_of(2) {
                        EquipmentStatus::Defectueux
                    } else {
                        EquipmentStatus::Active
                    };
                    Ok(())
                })?;
            }
            _ => continue,
        }
        done += 1;
    }
    Ok(done)
}

pub(crate) fn run() -> Result<()> {
    if ensure_release(&["bench", "server"])? {
        return Ok(());
    }
    initial_sync_cpu()?;
    crate::bench_erp::run()?;
    crate::bench_erp::idle()?;

    let dir = crate::bench::disk_dir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut server = Command::new(std::env::current_exe()?)
        .args([
            "bench-server-child",
            dir.path().to_str().context("utf-8 path")?,
            &port.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the server")?;
    let mut out = BufReader::new(server.stdout.take().context("child stdout")?);
    let mut ready = String::new();
    out.read_line(&mut ready)?;
    if !ready.starts_with("ready") {
        bail!("server did not start: {ready}");
    }
    let result = load(port, server.id());
    let _ = server.kill();
    let _ = server.wait();
    result
}

fn load(port: u16, server_pid: u32) -> Result<()> {
    let data = demo::generate(SEED, spec(), SystemClock.now().date());
    let keys = Keys::from_secret(SECRET);
    sync_server::tls::install_crypto();
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(256)
        .build()?;
    let base = format!("http://127.0.0.1:{port}");
    let clock: Arc<dyn Clock> = Arc::new(FixedClock::new(SystemClock.now()));
    let mut clients: Vec<Client> = Vec::new();
    // initial_sync_server_cpu_ms: the server process's CPU (token check, store read, gzip of the
    // answer, HTTP) per technician's whole initial replica, over the 200 first syncs in turn.
    let initial_cpu = cpu_s(server_pid);
    for (i, tech) in data.technicians.iter().enumerate() {
        let dev = DeviceId(DocId::from_u128(0xbe00_0000 + i as u128));
        let token = keys
            .issue(
                dev,
                Role::Technician,
                Some(*tech),
                SystemClock.now().0 / 1000,
                86_400,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut c = Client {
            replica: Replica::open_in_memory(
                Author::new(Role::Technician, dev),
                clock.clone(),
                Some(i as u64),
            )?,
            net: HttpTransport::with_client(http.clone(), &base, &token),
        };
        c.replica.sync(&mut c.net)?;
        clients.push(c);
    }
    line(
        "initial_sync_server_cpu_ms",
        (cpu_s(server_pid) - initial_cpu) * 1e3 / clients.len() as f64,
        "ms",
    );

    // server_merge_docs_per_s: 50 clients, each 10 rounds of (edit 20 documents, sync), at once.
    let rounds = 10;
    let mut busy: Vec<Client> = clients.drain(..50).collect();
    let barrier = Arc::new(Barrier::new(busy.len() + 1));
    let handles: Vec<_> = busy
        .drain(..)
        .map(|mut c| {
            let b = barrier.clone();
            std::thread::spawn(move || -> Result<(Client, usize)> {
                b.wait();
                let mut merged = 0;
                for r in 0..rounds {
                    merged += edit(&mut c, 20, r)?;
                    c.replica.sync(&mut c.net)?;
                }
                Ok((c, merged))
            })
        })
        .collect();
    barrier.wait();
    let t = Instant::now();
    let cpu = cpu_s(server_pid);
    let clients_cpu = cpu_s(std::process::id());
    let mut merged = 0;
    for h in handles {
        let (c, m) = h
            .join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
        if !c.replica.pending()?.is_empty() {
            bail!("a client still has unacknowledged changes");
        }
        merged += m;
        clients.push(c);
    }
    let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_s(server_pid) - cpu);
    let clients_cpu = cpu_s(std::process::id()) - clients_cpu;
    // The 50 clients share this machine's 2 cores with the server: the first figure is what they
    // got; the second is the server's own rate per CPU second.
    line("server_merge_docs_per_s", merged as f64 / wall, "docs/s");
    line(
        "server_merge_docs_per_cpu_s",
        merged as f64 / cpu.max(0.01),
        "docs/cpu_s",
    );
    // What the 50 client replicas (this process) and the server used of the machine meanwhile.
    line("server_merge_clients_cores", clients_cpu / wall, "cores");
    line("server_merge_server_cores", cpu / wall, "cores");

    // reconnect_storm_200_s: 200 technicians edit 20 documents offline, then all sync at once.
    for (i, c) in clients.iter_mut().enumerate() {
        edit(c, 20, 100 + i)?;
    }
    let barrier = Arc::new(Barrier::new(clients.len() + 1));
    let handles: Vec<_> = clients
        .drain(..)
        .map(|mut c| {
            let b = barrier.clone();
            std::thread::spawn(move || -> Result<Client> {
                b.wait();
                c.replica.sync(&mut c.net)?;
                Ok(c)
            })
        })
        .collect();
    barrier.wait();
    let t = Instant::now();
    for h in handles {
        let c = h
            .join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
        if !c.replica.pending()?.is_empty() {
            bail!("a client still has unacknowledged changes after the storm");
        }
    }
    line("reconnect_storm_200_s", t.elapsed().as_secs_f64(), "s");
    line("server_rss_mb", rss_mb(server_pid), "MB");
    Ok(())
}

/// initial_sync_engine_cpu_ms: the engine's CPU to serve one technician's whole initial replica
/// (the core benchmark's scope), measured on the server side of an in-process exchange (the
/// figure over HTTP, in the server process, is `initial_sync_server_cpu_ms`).
fn initial_sync_cpu() -> Result<()> {
    let clock = Arc::new(FixedClock::new(monday_9am()));
    let hub = Hub::new(ServerConfig::new(server_author()), clock.clone());
    let data = demo::generate(7, SPEC, hub.today());
    hub.seed(&data)?;
    let author = Author::new(Role::Technician, device(1));
    let transport = hub.connect(
        author,
        shared::sync::server::Subject::Technician(data.technicians[0]),
    );
    let mut replica = Replica::open_in_memory(author, clock as Arc<dyn Clock>, Some(1))?;
    let mut timed = Timed {
        inner: transport,
        cpu_ns: 0,
    };
    let total = thread_cpu_ns();
    replica.sync(&mut timed)?;
    let _ = thread_cpu_ns() - total;
    line(
        "initial_sync_engine_cpu_ms",
        timed.cpu_ns as f64 / 1e6,
        "ms",
    );
    Ok(())
}
