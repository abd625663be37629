//! Screen view models (`shared::ipc`) built from the replica's materialized tables and records.
//!
//! Lists read the indexed tables with one query each; a job's detail reads the few records it
//! shows. Nothing here loads an Automerge document.

use std::collections::HashMap;

use chrono::{NaiveDate, NaiveTime, Timelike};
use rusqlite::params;
use shared::dispatch;
use shared::ids::{DocId, JobId, Role, TechnicianId};
use shared::ipc::{
    Board, BoardFilter, ConflictValue, ConflictView, ContactView, EquipmentView, JobDetail,
    JobSummary, LineView, SkillOption, SubscriptionView, SuggestionView, TechnicianView,
};
use shared::model::{AnyEntity, DispatchJob, DispatchTechnician, JobStatus, MacAddr};
use shared::record::Scalar;

use crate::replica::{Replica, ReplicaError, blob_id, id_blob};

const SUMMARY_COLS: &str = "j.id, j.date, j.start, j.duration, j.status, j.priority, j.title, \
     j.technician, coalesce(c.name, ''), coalesce(l.address, ''), \
     (SELECT count(*) FROM conflicts k WHERE k.doc = j.id AND k.settled = 0), \
     coalesce(l.city, '')";
const SUMMARY_JOINS: &str = "LEFT JOIN customers c ON c.id = j.customer \
     LEFT JOIN locations l ON l.id = j.location";

/// A job row (the first eight columns, as `query::job_row` reads them) with its customer, address,
/// open conflicts and town.
fn summary_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobSummary> {
    let j = crate::replica::query::job_row(r)?;
    Ok(JobSummary {
        id: j.id.to_string(),
        date: j.date,
        start: j.start,
        duration_min: j.duration_min,
        status: j.status,
        priority: j.priority,
        title: j.title,
        technician: j.technician.map(|d| d.to_string()),
        customer: r.get(8)?,
        address: r.get(9)?,
        conflicts: r.get(10)?,
        town: r.get(11)?,
    })
}

fn hhmm(t: NaiveTime) -> String {
    format!("{:02}:{:02}", t.hour(), t.minute())
}

/// Whether the board's filter keeps a job (all but the skill, which needs the job's record):
/// `matched` holds the jobs the query found, when there is a query.
pub fn board_keeps(
    j: &JobSummary,
    f: &BoardFilter,
    matched: Option<&std::collections::HashSet<String>>,
) -> bool {
    (f.statuses.is_empty() || f.statuses.contains(&j.status))
        && f.town
            .as_ref()
            .is_none_or(|t| j.town.eq_ignore_ascii_case(t))
        && f.kind.as_ref().is_none_or(|k| j.title == *k)
        && matched.is_none_or(|m| m.contains(&j.id))
}

/// Parses a `DocId` sent by the UI.
pub fn parse_id(s: &str) -> Result<DocId, ReplicaError> {
    s.parse::<DocId>().map_err(|_| {
        ReplicaError::Invalid(shared::model::ModelError::new(
            "id",
            format!("`{s}` is not an id"),
        ))
    })
}

/// Parses a `YYYY-MM-DD` date sent by the UI.
pub fn parse_date(s: &str) -> Result<NaiveDate, ReplicaError> {
    s.parse::<NaiveDate>().map_err(|_| {
        ReplicaError::Invalid(shared::model::ModelError::new(
            "date",
            format!("`{s}` is not a date (YYYY-MM-DD)"),
        ))
    })
}

impl Replica {
    /// Jobs between two dates (inclusive) by date and start time: a technician's own (lead or
    /// assistant) when `tech` is given, else all.
    pub fn job_summaries(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        tech: Option<TechnicianId>,
    ) -> Result<Vec<JobSummary>, ReplicaError> {
        let rows = if let Some(t) = tech {
            let mut st = self.conn.prepare_cached(&format!(
                "SELECT {SUMMARY_COLS} FROM job_people p JOIN jobs j ON j.id = p.job {SUMMARY_JOINS}
                 WHERE p.technician = ?1 AND p.date BETWEEN ?2 AND ?3
                 ORDER BY j.date, j.start IS NULL, j.start, j.title"
            ))?;
            st.query_map(
                params![id_blob(t.doc()), from.to_string(), to.to_string()],
                summary_row,
            )?
            .collect::<Result<Vec<_>, _>>()?
        } else {
            let mut st = self.conn.prepare_cached(&format!(
                "SELECT {SUMMARY_COLS} FROM jobs j {SUMMARY_JOINS} WHERE j.date BETWEEN ?1 AND ?2
                 ORDER BY j.date, j.start IS NULL, j.start, j.title"
            ))?;
            st.query_map(params![from.to_string(), to.to_string()], summary_row)?
                .collect::<Result<Vec<_>, _>>()?
        };
        Ok(rows)
    }

    /// Open jobs without a technician, oldest first.
    pub fn unassigned_jobs(&self) -> Result<Vec<JobSummary>, ReplicaError> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {SUMMARY_COLS} FROM jobs j {SUMMARY_JOINS}
             WHERE j.technician IS NULL AND j.status NOT IN ('completed', 'could_not_complete', 'cancelled')
             ORDER BY j.date, j.start IS NULL, j.start, j.title"
        ))?;
        Ok(st
            .query_map([], summary_row)?
            .collect::<Result<Vec<_>, _>>()?)
    }

    fn summary(&self, id: DocId) -> Result<Option<JobSummary>, ReplicaError> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {SUMMARY_COLS} FROM jobs j {SUMMARY_JOINS} WHERE j.id = ?1"
        ))?;
        let mut rows = st.query_map([id_blob(id)], summary_row)?;
        Ok(rows.next().transpose()?)
    }

    fn technician_name(&self, id: DocId) -> Result<Option<String>, ReplicaError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT name FROM technicians WHERE id = ?1")?;
        let mut rows = st.query_map([id_blob(id)], |r| r.get::<_, String>(0))?;
        Ok(rows.next().transpose()?)
    }

    /// The job screen. `role` decides which next statuses are offered.
    pub fn job_detail(&self, job: JobId, role: Role) -> Result<JobDetail, ReplicaError> {
        let not_found = || ReplicaError::NotFound {
            kind: shared::record::EntityKind::Job,
            id: job.doc(),
        };
        let Some(AnyEntity::Job(j)) = self.entity(job.doc())? else {
            return Err(not_found());
        };
        let summary = self.summary(job.doc())?.ok_or_else(not_found)?;
        let customer = match self.entity(j.customer.doc())? {
            Some(AnyEntity::Customer(c)) => Some(c),
            _ => None,
        };
        let location = match self.entity(j.location.doc())? {
            Some(AnyEntity::Location(l)) => Some(l),
            _ => None,
        };
        let mut contacts = Vec::new();
        if let Some(c) = &customer {
            contacts.push(ContactView {
                name: c.name.to_string(),
                phone: c.phone.as_ref().map(|p| p.as_str().to_owned()),
                role: None,
            });
        }
        if let Some(l) = &location {
            contacts.extend(l.contacts.iter().map(|c| ContactView {
                name: c.name.to_string(),
                phone: c.phone.as_ref().map(|p| p.as_str().to_owned()),
                role: c.role.clone(),
            }));
        }
        let equipment = self.equipment_at(j.location.doc())?;
        let subscriptions = self.subscriptions_at(j.location.doc())?;
        let history = self.history_at(j.location.doc(), job.doc())?;
        let serial_of = |id: DocId| -> Result<String, ReplicaError> {
            Ok(match self.entity(id)? {
                Some(AnyEntity::Equipment(e)) => e.serial.to_string(),
                _ => id.to_string(),
            })
        };
        let mut equipment_moves = Vec::new();
        for m in &j.equipment_items {
            equipment_moves.push(LineView {
                key: m.key.clone(),
                text: format!("{} {}", m.action, serial_of(m.equipment.doc())?),
                detail: m
                    .replaces
                    .map(|r| serial_of(r.doc()))
                    .transpose()?
                    .map(|s| format!("⇄ {s}")),
                done: true,
            });
        }
        let uploaded = self.uploaded_photos()?;
        let overridden = self
            .conflicts_of(job.doc())?
            .into_iter()
            .filter(|c| c.settled)
            .map(|c| conflict_view(c, j.title.to_string(), |_| None))
            .collect();
        let next_statuses = JobStatus::ALL
            .iter()
            .filter(|s| **s != j.status && j.status.check_transition(**s, role).is_ok())
            .map(|s| s.as_str().to_owned())
            .collect();
        let time_on_site_min = j.actual_start.map(|s| {
            let end = j.actual_end.unwrap_or_else(|| self.clock.now());
            (end.0 - s.0).max(0) / 60_000
        });
        Ok(JobDetail {
            description: j.description.clone(),
            technician_name: j
                .technician
                .map(|t| self.technician_name(t.doc()))
                .transpose()?
                .flatten(),
            customer_phone: customer
                .as_ref()
                .and_then(|c| c.phone.as_ref().map(|p| p.as_str().to_owned())),
            customer_email: customer
                .as_ref()
                .and_then(|c| c.email.as_ref().map(|p| p.as_str().to_owned())),
            gps: location
                .as_ref()
                .and_then(|l| l.gps)
                .map(|g| (format!("{:.6}", g.lat()), format!("{:.6}", g.lon()))),
            olt_port: location
                .as_ref()
                .and_then(|l| l.olt_port.as_ref().map(|p| p.as_str().to_owned())),
            vlan: location.as_ref().and_then(|l| l.vlan.map(|v| v.get())),
            network_notes: location
                .as_ref()
                .map(|l| l.network_notes.clone())
                .unwrap_or_default(),
            contacts,
            equipment,
            subscriptions,
            history,
            notes: j
                .notes
                .iter()
                .rev()
                .map(|n| LineView {
                    key: n.key.clone(),
                    text: n.text.clone(),
                    detail: Some(n.at.0.to_string()),
                    done: true,
                })
                .collect(),
            checklist: j
                .checklist
                .iter()
                .map(|c| LineView {
                    key: c.key.clone(),
                    text: c.label.clone(),
                    detail: None,
                    done: c.done,
                })
                .collect(),
            materials: j
                .materials
                .iter()
                .map(|m| LineView {
                    key: m.key.clone(),
                    text: m.item_code.clone(),
                    detail: Some(format!("{} {}", m.quantity, m.unit)),
                    done: true,
                })
                .collect(),
            equipment_moves,
            photos: j
                .photos
                .iter()
                .map(|p| LineView {
                    key: p.key.clone(),
                    text: p.caption.clone().unwrap_or_else(|| p.file_name.clone()),
                    detail: Some(p.sha256.clone()),
                    done: uploaded.contains(&p.sha256),
                })
                .collect(),
            signature: j.signature.as_ref().map(|s| s.signer.clone()),
            checked_in: j.check_in.as_ref().map(|c| {
                c.gps.map_or_else(
                    || "✓".to_owned(),
                    |g| format!("{:.5}, {:.5}", g.lat(), g.lon()),
                )
            }),
            time_on_site_min,
            next_statuses,
            overridden,
            summary,
        })
    }

    fn equipment_at(&self, location: DocId) -> Result<Vec<EquipmentView>, ReplicaError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id FROM equipment WHERE location = ?1 ORDER BY kind, serial")?;
        let ids = st
            .query_map([id_blob(location)], |r| r.get::<_, Vec<u8>>(0))?
            .map(|r| r.map_err(ReplicaError::from).and_then(|b| Ok(blob_id(&b)?)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(AnyEntity::Equipment(e)) = self.entity(id)? {
                out.push(EquipmentView {
                    id: id.to_string(),
                    serial: e.serial.to_string(),
                    mac: e.mac.map(|m| m.to_string()),
                    kind: e.kind.as_str().to_owned(),
                    status: e.status.as_str().to_owned(),
                    model: e.model.clone(),
                    location: None,
                });
            }
        }
        Ok(out)
    }

    fn subscriptions_at(&self, location: DocId) -> Result<Vec<SubscriptionView>, ReplicaError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id FROM subscriptions WHERE location = ?1 ORDER BY plan")?;
        let ids = st
            .query_map([id_blob(location)], |r| r.get::<_, Vec<u8>>(0))?
            .map(|r| r.map_err(ReplicaError::from).and_then(|b| Ok(blob_id(&b)?)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::new();
        for id in ids {
            if let Some(AnyEntity::Subscription(s)) = self.entity(id)? {
                out.push(SubscriptionView {
                    plan: s.plan.as_str().to_owned(),
                    status: s.status.as_str().to_owned(),
                    monthly_price: format!(
                        "{}.{:02} $",
                        s.monthly_price.cents() / 100,
                        s.monthly_price.cents() % 100
                    ),
                });
            }
        }
        Ok(out)
    }

    fn history_at(&self, location: DocId, except: DocId) -> Result<Vec<JobSummary>, ReplicaError> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT {SUMMARY_COLS} FROM jobs j {SUMMARY_JOINS} WHERE j.location = ?1 AND j.id <> ?2
             ORDER BY j.date DESC LIMIT 20"
        ))?;
        Ok(st
            .query_map(params![id_blob(location), id_blob(except)], summary_row)?
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// Equipment whose serial or MAC starts with `query` (scanned or typed), best matches first.
    pub fn equipment_search(
        &self,
        query: &str,
        limit: u32,
    ) -> Result<Vec<EquipmentView>, ReplicaError> {
        let q = query.trim().to_ascii_uppercase();
        if q.len() < 2 {
            return Ok(Vec::new());
        }
        let mut st = self.conn.prepare_cached(
            "SELECT e.id, e.serial, e.mac, e.kind, e.status, l.address FROM equipment e
             LEFT JOIN locations l ON l.id = e.location
             WHERE e.serial >= ?1 AND e.serial < ?1 || char(1114111) ORDER BY e.serial LIMIT ?2",
        )?;
        let row = |r: &rusqlite::Row<'_>| -> rusqlite::Result<EquipmentView> {
            Ok(EquipmentView {
                id: blob_id(&r.get::<_, Vec<u8>>(0)?)?.to_string(),
                serial: r.get(1)?,
                mac: r
                    .get::<_, Option<String>>(2)?
                    .map(|m| MacAddr::parse(&m).map_or(m, |m| m.to_string())),
                kind: r.get(3)?,
                status: r.get(4)?,
                model: None,
                location: r.get(5)?,
            })
        };
        let mut out = st
            .query_map(params![q, limit], row)?
            .collect::<Result<Vec<_>, _>>()?;
        if out.len() < limit as usize {
            for e in self.equipment_by_mac_prefix(&q, limit)? {
                let id = e.id.to_string();
                if out.iter().all(|o| o.id != id) {
                    out.push(EquipmentView {
                        id,
                        serial: e.serial,
                        mac: e
                            .mac
                            .map(|m| MacAddr::parse(&m).map_or(m, |m| m.to_string())),
                        kind: e.kind,
                        status: e.status,
                        model: None,
                        location: None,
                    });
                }
            }
        }
        out.truncate(limit as usize);
        Ok(out)
    }

    fn technicians(&self) -> Result<Vec<DispatchTechnician>, ReplicaError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id FROM technicians ORDER BY name")?;
        let ids = st
            .query_map([], |r| r.get::<_, Vec<u8>>(0))?
            .map(|r| r.map_err(ReplicaError::from).and_then(|b| Ok(blob_id(&b)?)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(AnyEntity::Technician(t)) = self.entity(id)? {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// The dispatcher's board: active technicians, their jobs in the range and the unassigned
    /// queue, as `filter` keeps them, with what the filter can pick from.
    pub fn board(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        filter: &BoardFilter,
    ) -> Result<Board, ReplicaError> {
        let technicians = self
            .technicians()?
            .into_iter()
            .filter(|t| t.active)
            .map(|t| TechnicianView {
                id: t.id.to_string(),
                name: t.name.to_string(),
                shift: (!t.is_absent(from))
                    .then(|| t.weekly.on(from))
                    .flatten()
                    .map(|s| format!("{}–{}", hhmm(s.start), hhmm(s.end))),
            })
            .collect();
        let jobs: Vec<JobSummary> = self
            .job_summaries(from, to, None)?
            .into_iter()
            .filter(|j| j.technician.is_some())
            .collect();
        let unassigned = self.unassigned_jobs()?;
        let all = || jobs.iter().chain(&unassigned);
        let towns: Vec<String> = all()
            .map(|j| j.town.clone())
            .filter(|t| !t.is_empty())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let kinds: Vec<String> = all()
            .map(|j| j.title.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let skills = self
            .conn
            .prepare_cached("SELECT id, label FROM tags ORDER BY label")?
            .query_map([], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
            })?
            .map(|r| {
                let (id, label) = r?;
                Ok(SkillOption {
                    id: blob_id(&id)?.to_string(),
                    label,
                })
            })
            .collect::<Result<Vec<_>, ReplicaError>>()?;
        let before = jobs.len() + unassigned.len();
        let matched = match filter.query.trim() {
            "" => None,
            q => Some(self.jobs_matching(q)?),
        };
        let skill = filter.skill.as_deref().map(parse_id).transpose()?;
        let keep = |j: &JobSummary| -> Result<bool, ReplicaError> {
            if !board_keeps(j, filter, matched.as_ref()) {
                return Ok(false);
            }
            let Some(tag) = skill else {
                return Ok(true);
            };
            Ok(match self.entity(parse_id(&j.id)?)? {
                Some(AnyEntity::Job(job)) => job.required_tags.iter().any(|r| r.tag.doc() == tag),
                _ => false,
            })
        };
        let shown = |list: Vec<JobSummary>| -> Result<Vec<JobSummary>, ReplicaError> {
            let mut out = Vec::with_capacity(list.len());
            for j in list {
                if keep(&j)? {
                    out.push(j);
                }
            }
            Ok(out)
        };
        let (jobs, unassigned) = (shown(jobs)?, shown(unassigned)?);
        Ok(Board {
            from: from.to_string(),
            to: to.to_string(),
            technicians,
            hidden: u32::try_from(before - jobs.len() - unassigned.len()).unwrap_or(u32::MAX),
            jobs,
            unassigned,
            towns,
            kinds,
            skills,
            filter: filter.clone(),
        })
    }

    /// The ids of jobs whose customer or place matches `query` (words of a name or an address,
    /// accents ignored, each a prefix; or a phone number, with or without its country code) or
    /// whose title holds it.
    fn jobs_matching(
        &self,
        query: &str,
    ) -> Result<std::collections::HashSet<String>, ReplicaError> {
        let digits: String = query.chars().filter(char::is_ascii_digit).collect();
        let phone_like = digits.len() >= 3
            && query
                .chars()
                .all(|c| c.is_ascii_digit() || " +-.()".contains(c));
        let fts = if phone_like {
            Some(format!("\"{digits}\"* OR \"1{digits}\"*"))
        } else {
            crate::replica::query::fts_terms(query)
        };
        let mut out = std::collections::HashSet::new();
        if let Some(m) = fts {
            let mut st = self.conn.prepare_cached(
                "SELECT j.id FROM jobs j WHERE j.customer IN (SELECT id FROM search WHERE search MATCH ?1)
                    OR j.location IN (SELECT id FROM search WHERE search MATCH ?1)",
            )?;
            for id in st.query_map([m], |r| r.get::<_, Vec<u8>>(0))? {
                out.insert(blob_id(&id?)?.to_string());
            }
        }
        let needle = query.trim().to_lowercase();
        let mut st = self.conn.prepare_cached("SELECT id, title FROM jobs")?;
        for row in st.query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
        })? {
            let (id, title) = row?;
            if title.to_lowercase().contains(&needle) {
                out.insert(blob_id(&id)?.to_string());
            }
        }
        Ok(out)
    }

    /// Auto-dispatch: every active technician ranked for `job` by the shared scoring, with reasons.
    pub fn suggestions(&self, job: JobId) -> Result<Vec<SuggestionView>, ReplicaError> {
        let Some(AnyEntity::Job(j)) = self.entity(job.doc())? else {
            return Err(ReplicaError::NotFound {
                kind: shared::record::EntityKind::Job,
                id: job.doc(),
            });
        };
        let techs: Vec<DispatchTechnician> = self
            .technicians()?
            .into_iter()
            .filter(|t| t.active)
            .collect();
        let mut booked: Vec<DispatchJob> = Vec::new();
        for row in self.jobs_on(j.date)? {
            if let Some(AnyEntity::Job(b)) = self.entity(row.id)? {
                booked.push(*b);
            }
        }
        let destination = match self.entity(j.location.doc())? {
            Some(AnyEntity::Location(l)) => l.gps,
            _ => None,
        };
        let names: HashMap<TechnicianId, String> =
            techs.iter().map(|t| (t.id, t.name.to_string())).collect();
        Ok(
            dispatch::suggest(&j, &techs, &booked, |t| t.home, destination)
                .into_iter()
                .map(|s| SuggestionView {
                    technician: s.technician.to_string(),
                    name: names.get(&s.technician).cloned().unwrap_or_default(),
                    eligible: s.eligible,
                    reasons: s.reasons,
                })
                .collect(),
        )
    }

    /// The conflict inbox with a label for each document: open conflicts first, then values
    /// settled against someone.
    pub fn conflict_views(&self) -> Result<Vec<ConflictView>, ReplicaError> {
        let mut out = Vec::new();
        for c in self.conflicts()? {
            let label = match self.entity(c.doc)? {
                Some(AnyEntity::Job(j)) => j.title.to_string(),
                Some(AnyEntity::Customer(x)) => x.name.to_string(),
                Some(AnyEntity::Location(l)) => l.address.one_line(),
                Some(AnyEntity::Equipment(e)) => e.serial.to_string(),
                Some(AnyEntity::Technician(t)) => t.name.to_string(),
                Some(other) => other.kind().as_str().to_owned(),
                None => c.doc.to_string(),
            };
            let is_reference = c.field == "duplicate_of";
            out.push(conflict_view(c, label, |v| {
                is_reference.then(|| self.reference_label(v)).flatten()
            }));
        }
        Ok(out)
    }

    /// What a reference names, when the document is on the device: equipment by its serial and
    /// where it is installed.
    fn reference_label(&self, v: &Scalar) -> Option<String> {
        let id: DocId = v.as_str()?.parse().ok()?;
        match self.entity(id).ok()?? {
            AnyEntity::Equipment(e) => {
                let place = e.location.and_then(|l| match self.entity(l.doc()).ok()?? {
                    AnyEntity::Location(l) => Some(l.address.one_line()),
                    _ => None,
                });
                Some(match place {
                    Some(p) => format!("{} · {p}", e.serial),
                    None => e.serial.to_string(),
                })
            }
            other => Some(other.kind().as_str().to_owned()),
        }
    }

    /// Photos whose bytes the server has (by SHA-256).
    pub fn uploaded_photos(&self) -> Result<Vec<String>, ReplicaError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT sha256 FROM photo_uploads WHERE uploaded = 1")?;
        Ok(st
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?)
    }
}

fn conflict_view(
    c: crate::replica::ConflictRow,
    label: String,
    name: impl Fn(&Scalar) -> Option<String>,
) -> ConflictView {
    ConflictView {
        doc: c.doc.to_string(),
        label,
        field: c.field,
        settled: c.settled,
        shown: c.shown,
        values: c
            .values
            .into_iter()
            .map(|(value, author)| ConflictValue {
                label: name(&value),
                value,
                author,
            })
            .collect(),
    }
}
