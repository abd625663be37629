//! Dispatch technicians: schedules, absences and skills.

use chrono::{Datelike, NaiveDate, NaiveTime};
use serde::{Deserialize, Serialize};

use super::{Entity, GeoPoint, Level, ModelError, Name, Phone, Reader, json_scalar};
use crate::ids::{DocId, TagId, TechnicianId};
use crate::record::{EntityKind, Policy::*, Record, Scalar, Schema, Writers::*, f};

/// A working period within one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shift {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl Shift {
    pub fn new(start: NaiveTime, end: NaiveTime) -> Result<Self, String> {
        if end <= start {
            Err(format!("shift ends ({end}) before it starts ({start})"))
        } else {
            Ok(Self { start, end })
        }
    }
    pub fn covers(&self, start: NaiveTime, end: NaiveTime) -> bool {
        self.start <= start && end <= self.end
    }
}

/// The usual week, Monday first; `None` is a day off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WeeklySchedule(pub [Option<Shift>; 7]);

impl WeeklySchedule {
    pub fn on(&self, date: NaiveDate) -> Option<Shift> {
        self.0[date.weekday().num_days_from_monday() as usize]
    }
}

/// An extra shift on a given day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatedShift {
    pub date: NaiveDate,
    pub shift: Shift,
}

/// Days away, inclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Absence {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub reason: String,
}

/// A skill and its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagLevel {
    pub tag: TagId,
    pub level: Level,
}

/// A dispatch technician (custom doctype `Dispatch Technician`).
#[derive(Debug, Clone, PartialEq)]
pub struct DispatchTechnician {
    pub id: TechnicianId,
    pub erp_name: Option<String>,
    pub name: Name,
    pub phone: Option<Phone>,
    pub active: bool,
    /// Where the day starts, for travel distance.
    pub home: Option<GeoPoint>,
    pub weekly: WeeklySchedule,
    pub extra_shifts: Vec<DatedShift>,
    pub absences: Vec<Absence>,
    pub skills: Vec<TagLevel>,
}

impl DispatchTechnician {
    pub fn level(&self, tag: TagId) -> Option<Level> {
        self.skills.iter().find(|s| s.tag == tag).map(|s| s.level)
    }
    pub fn is_absent(&self, date: NaiveDate) -> bool {
        self.absences.iter().any(|a| a.from <= date && date <= a.to)
    }
    /// Whether the technician works the whole of `[start, end)` on `date`.
    pub fn works(&self, date: NaiveDate, start: NaiveTime, end: NaiveTime) -> bool {
        if !self.active || self.is_absent(date) {
            return false;
        }
        self.weekly.on(date).is_some_and(|s| s.covers(start, end))
            || self
                .extra_shifts
                .iter()
                .any(|x| x.date == date && x.shift.covers(start, end))
    }
}

impl Entity for DispatchTechnician {
    const SCHEMA: Schema = Schema {
        kind: EntityKind::Technician,
        fields: &[
            f("name", OfficeWins, Office),
            f("phone", OfficeWins, Office),
            f("active", OfficeWins, Office),
            f("home", OfficeWins, Office),
            f("weekly", OfficeWins, Office),
            f("extra_shifts", OfficeWins, Office),
            f("absences", OfficeWins, Office),
            f("skills", OfficeWins, Office),
        ],
        collections: &[],
    };
    fn doc_id(&self) -> DocId {
        self.id.0
    }
    fn erp_name(&self) -> Option<&str> {
        self.erp_name.as_deref()
    }
    fn write(&self, r: &mut Record) {
        r.set("name", Scalar::str(self.name.as_str()));
        r.set(
            "phone",
            Scalar::opt_str(self.phone.as_ref().map(Phone::as_str)),
        );
        r.set("active", Scalar::Bool(self.active));
        r.set("home", Scalar::opt_str(self.home.map(|g| g.to_string())));
        r.set("weekly", json_scalar(&self.weekly));
        r.set("extra_shifts", json_scalar(&self.extra_shifts));
        r.set("absences", json_scalar(&self.absences));
        r.set("skills", json_scalar(&self.skills));
    }
    fn read(id: DocId, r: &Reader<'_>) -> Result<Self, ModelError> {
        let weekly: WeeklySchedule = r.json("weekly")?;
        for s in weekly.0.iter().flatten() {
            Shift::new(s.start, s.end).map_err(|e| ModelError::new("weekly", e))?;
        }
        let absences: Vec<Absence> = r.json("absences")?;
        if let Some(a) = absences.iter().find(|a| a.to < a.from) {
            return Err(ModelError::new(
                "absences",
                format!("absence ends {} before it starts {}", a.to, a.from),
            ));
        }
        Ok(Self {
            id: TechnicianId(id),
            erp_name: r.opt_text("erp_name")?,
            name: r.parse("name")?,
            phone: r.opt_parse("phone")?,
            active: r.bool("active")?,
            home: r.opt_parse("home")?,
            weekly,
            extra_shifts: r.json("extra_shifts")?,
            absences,
            skills: r.json("skills")?,
        })
    }
}
