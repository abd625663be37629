//! Dispatch jobs and the job status state machine.

use chrono::{NaiveDate, NaiveTime};
use serde::{Deserialize, Serialize};

use super::{
    Entity, GeoPoint, Level, ModelError, Name, RRule, Reader, ensure_collections, json_scalar,
    put_item,
};
use crate::clock::Millis;
use crate::ids::{CustomerId, DocId, EquipmentId, JobId, LocationId, Role, TagId, TechnicianId};
use crate::record::{
    EntityKind, Policy,
    Policy::{DeviceWins, OfficeWins},
    Record, Scalar, Schema,
    Writers::*,
    c, f,
};

str_enum!(
    /// Where a job is in its life.
    JobStatus {
        Open => "open",
        Scheduled => "scheduled",
        EnRoute => "en_route",
        OnSite => "on_site",
        Completed => "completed",
        CouldNotComplete => "could_not_complete",
        Cancelled => "cancelled",
    }
);

/// A status change that the state machine does not allow for this role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {role:?} cannot move a job from {from} to {to}")]
pub struct TransitionError {
    pub from: JobStatus,
    pub to: JobStatus,
    pub role: Role,
}

impl JobStatus {
    /// Progress rank used to merge concurrent, compatible changes: the further one wins.
    pub fn rank(self) -> u8 {
        match self {
            JobStatus::Open => 0,
            JobStatus::Scheduled => 1,
            JobStatus::EnRoute => 2,
            JobStatus::OnSite => 3,
            JobStatus::Completed | JobStatus::CouldNotComplete | JobStatus::Cancelled => 4,
        }
    }
    pub fn is_terminal(self) -> bool {
        self.rank() == 4
    }
    /// Whether field progress has started (a technician is moving or on site).
    pub fn is_field_progress(self) -> bool {
        matches!(self, JobStatus::EnRoute | JobStatus::OnSite)
    }

    /// Checks one transition for a role. Technicians move jobs forward in the field; the office
    /// plans, cancels and reopens, and may also do what a technician does.
    pub fn check_transition(self, to: JobStatus, role: Role) -> Result<(), TransitionError> {
        use JobStatus::*;
        if self == to {
            return Ok(());
        }
        let field = matches!(
            (self, to),
            (Scheduled, EnRoute)
                | (Scheduled, OnSite)
                | (EnRoute, OnSite)
                | (EnRoute, Scheduled)
                | (EnRoute, CouldNotComplete)
                | (OnSite, Completed)
                | (OnSite, CouldNotComplete)
        );
        let office = matches!(
            (self, to),
            (Open, Scheduled)
                | (Open, Cancelled)
                | (Scheduled, Open)
                | (Scheduled, Cancelled)
                | (EnRoute, Cancelled)
                | (OnSite, Cancelled)
                | (CouldNotComplete, Scheduled)
                | (CouldNotComplete, Open)
                | (CouldNotComplete, Cancelled)
                | (Completed, Scheduled)
                | (Cancelled, Open)
        );
        let allowed = match role {
            Role::Technician => field,
            Role::Dispatcher | Role::Admin | Role::Server => field || office,
        };
        if allowed {
            Ok(())
        } else {
            Err(TransitionError {
                from: self,
                to,
                role,
            })
        }
    }

    /// Checks that `to` can be reached from `self` through steps this role may take, one by one.
    /// A device that was offline pushes its whole walk at once (scheduled → en route → on site →
    /// completed): the server judges the walk, not one jump.
    pub fn check_reachable(self, to: JobStatus, role: Role) -> Result<(), TransitionError> {
        let mut seen = vec![self];
        let mut i = 0;
        while i < seen.len() {
            let from = seen[i];
            if from == to {
                return Ok(());
            }
            for next in JobStatus::ALL {
                if !seen.contains(next) && from.check_transition(*next, role).is_ok() {
                    seen.push(*next);
                }
            }
            i += 1;
        }
        Err(TransitionError {
            from: self,
            to,
            role,
        })
    }
}

str_enum!(
    /// How urgent a job is.
    Priority { Low => "low", Normal => "normal", High => "high", Urgent => "urgent" }
);

/// A required skill with its minimum level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRequirement {
    pub tag: TagId,
    pub level: Level,
}

/// A note written on a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub key: String,
    pub text: String,
    pub author: Option<TechnicianId>,
    pub at: Millis,
}

/// One checklist line; its `done` flag is the only part edited after creation.
#[derive(Debug, Clone, PartialEq)]
pub struct ChecklistItem {
    pub key: String,
    pub label: String,
    pub done: bool,
}

/// Material used on the job.
#[derive(Debug, Clone, PartialEq)]
pub struct Material {
    pub key: String,
    pub item_code: String,
    pub quantity: i64,
    pub unit: String,
}

str_enum!(
    /// What happened to a piece of equipment during the job.
    EquipmentAction { Install => "install", Swap => "swap", Return => "return", Inspect => "inspect" }
);

/// Equipment handled during the job.
#[derive(Debug, Clone, PartialEq)]
pub struct EquipmentItem {
    pub key: String,
    pub equipment: EquipmentId,
    pub action: EquipmentAction,
    /// The unit taken out, for a swap.
    pub replaces: Option<EquipmentId>,
}

/// Metadata of a photo; the bytes travel separately (uploaded when online).
#[derive(Debug, Clone, PartialEq)]
pub struct Photo {
    pub key: String,
    pub file_name: String,
    pub sha256: String,
    pub taken_at: Millis,
    pub caption: Option<String>,
}

/// The customer's signature, captured on the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    pub signer: String,
    pub signed_at: Millis,
    pub image_sha256: String,
}

/// Time spent on the job.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeEntry {
    pub key: String,
    pub technician: Option<TechnicianId>,
    pub started: Millis,
    pub ended: Option<Millis>,
}

/// The result of an on-site diagnostic (kept as recorded: JSON from the probe).
#[derive(Debug, Clone, PartialEq)]
pub struct DiagnosticResult {
    pub key: String,
    pub check: String,
    pub ok: bool,
    pub summary: String,
    pub at: Millis,
}

/// Where and when the technician checked in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckIn {
    pub at: Millis,
    pub gps: Option<GeoPoint>,
}

/// A dispatch job (custom doctype `Dispatch Job`).
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchJob {
    pub id: JobId,
    pub erp_name: Option<String>,
    pub customer: CustomerId,
    pub location: LocationId,
    pub title: Name,
    pub description: String,
    pub technician: Option<TechnicianId>,
    pub assistants: Vec<TechnicianId>,
    pub required_tags: Vec<TagRequirement>,
    pub date: NaiveDate,
    pub start: Option<NaiveTime>,
    pub duration_min: u32,
    pub recurrence: Option<RRule>,
    pub priority: Priority,
    pub status: JobStatus,
    pub check_in: Option<CheckIn>,
    pub actual_start: Option<Millis>,
    pub actual_end: Option<Millis>,
    pub signature: Option<Signature>,
    pub notes: Vec<Note>,
    pub checklist: Vec<ChecklistItem>,
    pub materials: Vec<Material>,
    pub equipment_items: Vec<EquipmentItem>,
    pub photos: Vec<Photo>,
    pub time_log: Vec<TimeEntry>,
    pub diagnostics: Vec<DiagnosticResult>,
}

/// The collections of a job, in schema order.
pub(crate) const JOB_COLLECTIONS: [&str; 7] = [
    "notes",
    "checklist",
    "materials",
    "equipment_items",
    "photos",
    "time_log",
    "diagnostics",
];

impl DispatchJob {
    /// Whether this technician is on the job (lead or assistant).
    pub fn involves(&self, tech: TechnicianId) -> bool {
        self.technician == Some(tech) || self.assistants.contains(&tech)
    }
}

fn opt_millis(r: &Reader<'_>, field: &str) -> Result<Option<Millis>, ModelError> {
    Ok(r.opt_int(field)?.map(Millis))
}

impl Entity for DispatchJob {
    const SCHEMA: Schema = Schema {
        kind: EntityKind::Job,
        fields: &[
            f("customer", OfficeWins, Office),
            f("location", OfficeWins, Office),
            f("title", OfficeWins, Office),
            f("description", OfficeWins, Office),
            f("technician", OfficeWins, Office),
            f("assistants", OfficeWins, Office),
            f("required_tags", OfficeWins, Office),
            f("date", OfficeWins, Office),
            f("start", OfficeWins, Office),
            f("duration_min", OfficeWins, Office),
            f("recurrence", OfficeWins, Office),
            f("priority", OfficeWins, Office),
            f("status", Policy::JobStatus, Field),
            f("check_in", DeviceWins, Field),
            f("actual_start", DeviceWins, Field),
            f("actual_end", DeviceWins, Field),
            f("signature", DeviceWins, Field),
        ],
        collections: &[
            c("notes", DeviceWins, Field, &["text", "author", "at"], &[]),
            c(
                "checklist",
                DeviceWins,
                Field,
                &["label", "done"],
                &["done"],
            ),
            c(
                "materials",
                DeviceWins,
                Field,
                &["item_code", "quantity", "unit"],
                &["quantity"],
            ),
            c(
                "equipment_items",
                DeviceWins,
                Field,
                &["equipment", "action", "replaces"],
                &[],
            ),
            c(
                "photos",
                DeviceWins,
                Field,
                &["file_name", "sha256", "taken_at", "caption"],
                &["caption"],
            ),
            c(
                "time_log",
                DeviceWins,
                Field,
                &["technician", "started", "ended"],
                &["ended"],
            ),
            c(
                "diagnostics",
                DeviceWins,
                Field,
                &["check", "ok", "summary", "at"],
                &[],
            ),
        ],
    };
    fn doc_id(&self) -> DocId {
        self.id.0
    }
    fn erp_name(&self) -> Option<&str> {
        self.erp_name.as_deref()
    }
    fn write(&self, r: &mut Record) {
        r.set("customer", Scalar::str(self.customer.to_string()));
        r.set("location", Scalar::str(self.location.to_string()));
        r.set("title", Scalar::str(self.title.as_str()));
        r.set("description", Scalar::str(&self.description));
        r.set(
            "technician",
            Scalar::opt_str(self.technician.map(|t| t.to_string())),
        );
        r.set("assistants", json_scalar(&self.assistants));
        r.set("required_tags", json_scalar(&self.required_tags));
        r.set("date", Scalar::str(self.date.to_string()));
        r.set(
            "start",
            Scalar::opt_str(self.start.map(|t| t.format("%H:%M").to_string())),
        );
        r.set("duration_min", Scalar::Int(self.duration_min.into()));
        r.set(
            "recurrence",
            Scalar::opt_str(self.recurrence.as_ref().map(RRule::as_str)),
        );
        r.set("priority", Scalar::str(self.priority.as_str()));
        r.set("status", Scalar::str(self.status.as_str()));
        r.set(
            "check_in",
            self.check_in.as_ref().map_or(Scalar::Null, json_scalar),
        );
        r.set(
            "actual_start",
            self.actual_start.map_or(Scalar::Null, |m| Scalar::Int(m.0)),
        );
        r.set(
            "actual_end",
            self.actual_end.map_or(Scalar::Null, |m| Scalar::Int(m.0)),
        );
        r.set(
            "signature",
            self.signature.as_ref().map_or(Scalar::Null, json_scalar),
        );
        ensure_collections(r, &JOB_COLLECTIONS);
        for n in &self.notes {
            put_item(
                r,
                "notes",
                &n.key,
                &[
                    ("text", Scalar::str(&n.text)),
                    ("author", Scalar::opt_str(n.author.map(|t| t.to_string()))),
                    ("at", Scalar::Int(n.at.0)),
                ],
            );
        }
        for i in &self.checklist {
            put_item(
                r,
                "checklist",
                &i.key,
                &[
                    ("label", Scalar::str(&i.label)),
                    ("done", Scalar::Bool(i.done)),
                ],
            );
        }
        for m in &self.materials {
            put_item(
                r,
                "materials",
                &m.key,
                &[
                    ("item_code", Scalar::str(&m.item_code)),
                    ("quantity", Scalar::Int(m.quantity)),
                    ("unit", Scalar::str(&m.unit)),
                ],
            );
        }
        for e in &self.equipment_items {
            put_item(
                r,
                "equipment_items",
                &e.key,
                &[
                    ("equipment", Scalar::str(e.equipment.to_string())),
                    ("action", Scalar::str(e.action.as_str())),
                    (
                        "replaces",
                        Scalar::opt_str(e.replaces.map(|x| x.to_string())),
                    ),
                ],
            );
        }
        for p in &self.photos {
            put_item(
                r,
                "photos",
                &p.key,
                &[
                    ("file_name", Scalar::str(&p.file_name)),
                    ("sha256", Scalar::str(&p.sha256)),
                    ("taken_at", Scalar::Int(p.taken_at.0)),
                    ("caption", Scalar::opt_str(p.caption.clone())),
                ],
            );
        }
        for t in &self.time_log {
            put_item(
                r,
                "time_log",
                &t.key,
                &[
                    (
                        "technician",
                        Scalar::opt_str(t.technician.map(|x| x.to_string())),
                    ),
                    ("started", Scalar::Int(t.started.0)),
                    ("ended", t.ended.map_or(Scalar::Null, |m| Scalar::Int(m.0))),
                ],
            );
        }
        for d in &self.diagnostics {
            put_item(
                r,
                "diagnostics",
                &d.key,
                &[
                    ("check", Scalar::str(&d.check)),
                    ("ok", Scalar::Bool(d.ok)),
                    ("summary", Scalar::str(&d.summary)),
                    ("at", Scalar::Int(d.at.0)),
                ],
            );
        }
    }
    fn read(id: DocId, r: &Reader<'_>) -> Result<Self, ModelError> {
        let duration = r.int("duration_min")?;
        let duration_min = u32::try_from(duration)
            .ok()
            .filter(|d| (1..=24 * 60).contains(d))
            .ok_or_else(|| {
                ModelError::new(
                    "duration_min",
                    format!("{duration} minutes is not between 1 and 1440"),
                )
            })?;
        let start = r
            .opt_text("start")?
            .map(|s| {
                NaiveTime::parse_from_str(&s, "%H:%M")
                    .map_err(|_| ModelError::new("start", format!("`{s}` is not a time (HH:MM)")))
            })
            .transpose()?;
        let positive = |field: &str, v: i64| {
            if v > 0 {
                Ok(v)
            } else {
                Err(ModelError::new(field, "must be at least 1"))
            }
        };
        Ok(Self {
            id: JobId(id),
            erp_name: r.opt_text("erp_name")?,
            customer: r.parse("customer")?,
            location: r.parse("location")?,
            title: r.parse("title")?,
            description: r.text_or_empty("description")?,
            technician: r.opt_parse("technician")?,
            assistants: r.json("assistants")?,
            required_tags: r.json("required_tags")?,
            date: r.parse("date")?,
            start,
            duration_min,
            recurrence: r.opt_parse("recurrence")?,
            priority: r.opt_parse("priority")?.unwrap_or(Priority::Normal),
            status: r.parse("status")?,
            check_in: r.json::<Option<CheckIn>>("check_in")?,
            actual_start: opt_millis(r, "actual_start")?,
            actual_end: opt_millis(r, "actual_end")?,
            signature: r.json::<Option<Signature>>("signature")?,
            notes: r.items("notes", |key, it| {
                Ok(Note {
                    key: key.to_owned(),
                    text: it.text("text")?,
                    author: it.opt_parse("author")?,
                    at: Millis(it.int("at")?),
                })
            })?,
            checklist: r.items("checklist", |key, it| {
                Ok(ChecklistItem {
                    key: key.to_owned(),
                    label: it.text("label")?,
                    done: it.bool("done")?,
                })
            })?,
            materials: r.items("materials", |key, it| {
                Ok(Material {
                    key: key.to_owned(),
                    item_code: it.text("item_code")?,
                    quantity: positive("quantity", it.int("quantity")?)?,
                    unit: it.text("unit")?,
                })
            })?,
            equipment_items: r.items("equipment_items", |key, it| {
                Ok(EquipmentItem {
                    key: key.to_owned(),
                    equipment: it.parse("equipment")?,
                    action: it.parse("action")?,
                    replaces: it.opt_parse("replaces")?,
                })
            })?,
            photos: r.items("photos", |key, it| {
                Ok(Photo {
                    key: key.to_owned(),
                    file_name: it.text("file_name")?,
                    sha256: it.text("sha256")?,
                    taken_at: Millis(it.int("taken_at")?),
                    caption: it.opt_text("caption")?,
                })
            })?,
            time_log: r.items("time_log", |key, it| {
                Ok(TimeEntry {
                    key: key.to_owned(),
                    technician: it.opt_parse("technician")?,
                    started: Millis(it.int("started")?),
                    ended: opt_millis(&it, "ended")?,
                })
            })?,
            diagnostics: r.items("diagnostics", |key, it| {
                Ok(DiagnosticResult {
                    key: key.to_owned(),
                    check: it.text("check")?,
                    ok: it.bool("ok")?,
                    summary: it.text_or_empty("summary")?,
                    at: Millis(it.int("at")?),
                })
            })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::JobStatus::*;
    use super::*;

    #[test]
    fn technician_moves_forward_only() {
        let t = Role::Technician;
        assert!(Scheduled.check_transition(EnRoute, t).is_ok());
        assert!(EnRoute.check_transition(OnSite, t).is_ok());
        assert!(OnSite.check_transition(Completed, t).is_ok());
        assert!(OnSite.check_transition(CouldNotComplete, t).is_ok());
        let e = Scheduled.check_transition(Cancelled, t).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a Technician cannot move a job from scheduled to cancelled"
        );
        assert!(Completed.check_transition(OnSite, t).is_err());
        assert!(Open.check_transition(EnRoute, t).is_err());
        // An offline walk pushed at once is judged step by step.
        assert!(Scheduled.check_transition(Completed, t).is_err());
        assert!(Scheduled.check_reachable(Completed, t).is_ok());
        assert!(Scheduled.check_reachable(Cancelled, t).is_err());
        assert!(Completed.check_reachable(Scheduled, t).is_err());
        assert!(
            Completed
                .check_reachable(Scheduled, Role::Dispatcher)
                .is_ok()
        );
    }

    #[test]
    fn office_plans_cancels_and_reopens() {
        let d = Role::Dispatcher;
        assert!(Open.check_transition(Scheduled, d).is_ok());
        assert!(OnSite.check_transition(Cancelled, d).is_ok());
        assert!(Cancelled.check_transition(Open, d).is_ok());
        assert!(Completed.check_transition(Scheduled, d).is_ok());
        assert!(Open.check_transition(Completed, d).is_err());
        assert!(
            "done"
                .parse::<JobStatus>()
                .unwrap_err()
                .contains("expected one of")
        );
    }
}
