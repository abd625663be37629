//! `cargo xtask demo`: the offline loop as it exists today, on its embedded default.

use std::sync::Arc;

use anyhow::{Context, Result};
use app_tauri_core::Replica;
use shared::clock::{Clock, FixedClock};
use shared::ids::{Author, Role};
use shared::model::{AnyEntity, JobStatus};
use shared::sync::server::{ServerConfig, Subject};
use tests::data::{Spec, generate};
use tests::harness::{Hub, device, monday_9am, server_author};

pub(crate) fn run() -> Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/demo");
    std::fs::create_dir_all(&dir).context("creating target/demo")?;
    for f in std::fs::read_dir(&dir)? {
        std::fs::remove_file(f?.path())?;
    }
    let clock = Arc::new(FixedClock::new(monday_9am()));
    let hub = Hub::new(ServerConfig::new(server_author()), clock.clone());
    let spec = Spec {
        technicians: 6,
        jobs_per_technician: 25,
        locations: 120,
        subscribers_per_location: 2,
        equipment_per_location: 3,
        days_back: 3,
        days_ahead: 10,
    };
    let data = generate(2026, spec, hub.today());
    hub.seed(&data)?;
    println!(
        "Sync server (in-process, embedded): {} documents seeded",
        hub.engine.borrow().stats().docs
    );

    let tech_id = data.technicians[0];
    let tech_author = Author::new(Role::Technician, device(1));
    let office_author = Author::new(Role::Dispatcher, device(2));
    let mut tech_net = hub.connect(tech_author, Subject::Technician(tech_id));
    let mut office_net = hub.connect(office_author, Subject::Office);
    let mut tech = Replica::open(
        &dir.join("technician.sqlite3"),
        tech_author,
        clock.clone() as Arc<dyn Clock>,
    )?;
    let mut office = Replica::open(
        &dir.join("dispatcher.sqlite3"),
        office_author,
        clock.clone() as Arc<dyn Clock>,
    )?;
    let r = tech.sync(&mut tech_net)?;
    println!(
        "Technician replica: {} documents in {} round trip(s), {} KB",
        tech.status()?.documents,
        r.round_trips,
        r.bytes_received / 1024
    );
    office.sync(&mut office_net)?;
    println!(
        "Dispatcher replica: {} documents",
        office.status()?.documents
    );

    let today = clock.now().date();
    let jobs = tech.jobs_of(tech_id, today)?;
    println!("\nToday's jobs ({today}):");
    for j in &jobs {
        println!(
            "  {} {:<20} {}",
            j.start.as_deref().unwrap_or("--:--"),
            j.title,
            j.status
        );
    }
    let job = jobs.first().context("the technician has a job today")?;
    println!("\nOffline: en route, on site, a note, completed.");
    let id = shared::ids::JobId(job.id);
    tech.set_job_status(id, JobStatus::EnRoute)?;
    tech.set_job_status(id, JobStatus::OnSite)?;
    tech.add_note(id, "ONT remplacé, signal -19,5 dBm")?;
    tech.set_job_status(id, JobStatus::Completed)?;
    println!(
        "Pending changes on the device: {}",
        tech.status()?.pending_changes
    );
    tech.sync(&mut tech_net)?;
    office.sync(&mut office_net)?;
    if let Some(AnyEntity::Job(j)) = office.entity(job.id)? {
        println!(
            "Dispatcher sees: {} — {} — notes: {:?}",
            j.title,
            j.status,
            j.notes.iter().map(|n| n.text.as_str()).collect::<Vec<_>>()
        );
    }
    println!("\nReplicas are in {}", dir.display());
    Ok(())
}
