//! Live events for dispatchers: what changed, as it is acknowledged.
//!
//! Each event carries the log position it reflects as its id, so a dispatcher that reconnects with
//! `Last-Event-ID` gets what it missed (coalesced per document: the current state, once).

use serde::Serialize;
use shared::ids::{DocId, Role};
use shared::model::AnyEntity;
use shared::sync::server::{ServerEffect, ServerEngine};

/// One live event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    /// A job changed (any field); its current headline.
    JobChanged {
        id: u64,
        job: DocId,
        status: String,
        technician: Option<DocId>,
        date: String,
    },
    /// A technician's device pushed a change to a job (status, note, photo…): where that
    /// technician now stands on it.
    TechnicianStatus {
        id: u64,
        job: DocId,
        technician: Option<DocId>,
        status: String,
    },
    /// A document has open conflicts (or they were settled: `fields` empty).
    Conflict {
        id: u64,
        doc: DocId,
        fields: Vec<String>,
    },
    /// The stream fell behind: refetch (sync) and carry on.
    Resync { id: u64 },
}

impl LiveEvent {
    pub fn id(&self) -> u64 {
        match self {
            LiveEvent::JobChanged { id, .. }
            | LiveEvent::TechnicianStatus { id, .. }
            | LiveEvent::Conflict { id, .. }
            | LiveEvent::Resync { id } => *id,
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            LiveEvent::JobChanged { .. } => "job_changed",
            LiveEvent::TechnicianStatus { .. } => "technician_status",
            LiveEvent::Conflict { .. } => "conflict",
            LiveEvent::Resync { .. } => "resync",
        }
    }
}

fn job_changed(engine: &ServerEngine, id: u64, doc: DocId) -> Option<LiveEvent> {
    match engine.entity(doc)? {
        AnyEntity::Job(j) => Some(LiveEvent::JobChanged {
            id,
            job: doc,
            status: j.status.to_string(),
            technician: j.technician.map(|t| t.doc()),
            date: j.date.to_string(),
        }),
        _ => None,
    }
}

/// The events of one exchange's effects, read against the engine after it. `pusher` is the role
/// of the device whose push caused them.
pub fn from_effects(
    engine: &ServerEngine,
    effects: &[ServerEffect],
    pusher: Option<Role>,
) -> Vec<LiveEvent> {
    let mut latest: Vec<(u64, DocId)> = Vec::new();
    for e in effects {
        if let ServerEffect::AppendLog { seq, doc, .. } = e {
            match latest.iter_mut().find(|(_, d)| d == doc) {
                Some(x) => x.0 = x.0.max(*seq),
                None => latest.push((*seq, *doc)),
            }
        }
    }
    let top = latest.iter().map(|(s, _)| *s).max().unwrap_or(0);
    let mut out = Vec::new();
    for (seq, doc) in latest {
        if let Some(ev) = job_changed(engine, seq, doc) {
            let from_field = match (&ev, pusher) {
                (
                    LiveEvent::JobChanged {
                        technician, status, ..
                    },
                    Some(Role::Technician),
                ) => Some(LiveEvent::TechnicianStatus {
                    id: seq,
                    job: doc,
                    technician: *technician,
                    status: status.clone(),
                }),
                _ => None,
            };
            out.push(ev);
            out.extend(from_field);
        }
    }
    for e in effects {
        if let ServerEffect::Conflicts { doc, conflicts } = e {
            out.push(LiveEvent::Conflict {
                id: top,
                doc: *doc,
                fields: conflicts.iter().map(|c| c.field.clone()).collect(),
            });
        }
    }
    out.sort_by_key(LiveEvent::id);
    out
}

/// What a dispatcher missed after `after`: each changed job once, and open conflicts.
pub fn replay(engine: &ServerEngine, after: u64) -> Vec<LiveEvent> {
    let mut out = Vec::new();
    for (seq, doc) in engine.changed_since(after) {
        if let Some(ev) = job_changed(engine, seq, doc) {
            out.push(ev);
        }
        let open = engine.conflicts_of(doc);
        if !open.is_empty() {
            out.push(LiveEvent::Conflict {
                id: seq,
                doc,
                fields: open.iter().map(|c| c.field.clone()).collect(),
            });
        }
    }
    out
}
