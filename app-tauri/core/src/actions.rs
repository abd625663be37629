//! The edits screens make, each one checked and committed by [`Replica::update`] (one
//! transaction: nothing half-written, nothing acknowledged lost).

use chrono::NaiveTime;
use rusqlite::params;
use shared::ids::{DocId, EquipmentId, JobId, LocationId, TechnicianId};
use shared::ipc::{AssignArgs, JobDraft};
use shared::model::{
    AnyEntity, CheckIn, DispatchJob, EquipmentAction, EquipmentItem, GeoPoint, JobStatus, Material,
    ModelError, Name, Priority, Signature,
};
use shared::record::Scalar;

use crate::replica::{Replica, ReplicaError, id_blob};
use crate::views::{parse_date, parse_id};

fn invalid(field: &str, problem: impl Into<String>) -> ReplicaError {
    ReplicaError::Invalid(ModelError::new(field, problem))
}

fn parse_time(s: Option<&str>) -> Result<Option<NaiveTime>, ReplicaError> {
    match s.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(t) => NaiveTime::parse_from_str(t, "%H:%M")
            .map(Some)
            .map_err(|_| invalid("start", format!("`{t}` is not a time (HH:MM)"))),
    }
}

impl Replica {
    /// Ticks or unticks a checklist line.
    pub fn toggle_check(&mut self, job: JobId, key: &str) -> Result<DispatchJob, ReplicaError> {
        self.update::<DispatchJob>(job.doc(), |j| {
            let item = j
                .checklist
                .iter_mut()
                .find(|c| c.key == key)
                .ok_or_else(|| invalid("checklist", "no such checklist line"))?;
            item.done = !item.done;
            Ok(())
        })
    }

    /// Records material used.
    pub fn add_material(
        &mut self,
        job: JobId,
        item_code: &str,
        quantity: i64,
        unit: &str,
    ) -> Result<DispatchJob, ReplicaError> {
        let item_code = item_code.trim();
        if item_code.is_empty() {
            return Err(invalid("item_code", "must not be empty"));
        }
        if !(1..=100_000).contains(&quantity) {
            return Err(invalid("quantity", "must be between 1 and 100000"));
        }
        let unit = if unit.trim().is_empty() {
            "u"
        } else {
            unit.trim()
        };
        let key = self.new_id().to_string();
        self.update::<DispatchJob>(job.doc(), |j| {
            j.materials.push(Material {
                key,
                item_code: item_code.to_owned(),
                quantity,
                unit: unit.to_owned(),
            });
            Ok(())
        })
    }

    /// Installs, swaps (with `replaces`), returns or inspects a piece of equipment on the job.
    pub fn move_equipment(
        &mut self,
        job: JobId,
        equipment: &str,
        action: &str,
        replaces: Option<&str>,
    ) -> Result<DispatchJob, ReplicaError> {
        let action: EquipmentAction = action.parse().map_err(|e: String| invalid("action", e))?;
        let equipment = EquipmentId(parse_id(equipment)?);
        let replaces = replaces
            .filter(|r| !r.is_empty())
            .map(|r| parse_id(r).map(EquipmentId))
            .transpose()?;
        if action == EquipmentAction::Swap && replaces.is_none() {
            return Err(invalid("replaces", "a swap names the unit taken out"));
        }
        for id in std::iter::once(equipment).chain(replaces) {
            if !matches!(self.entity(id.doc())?, Some(AnyEntity::Equipment(_))) {
                return Err(invalid("equipment", "is not equipment on this device"));
            }
        }
        let key = self.new_id().to_string();
        self.update::<DispatchJob>(job.doc(), |j| {
            j.equipment_items.push(EquipmentItem {
                key,
                equipment,
                action,
                replaces,
            });
            Ok(())
        })
    }

    /// Checks in on site, with a position when the OS gave one or it was typed.
    pub fn check_in(
        &mut self,
        job: JobId,
        position: Option<(f64, f64)>,
    ) -> Result<DispatchJob, ReplicaError> {
        let gps = position
            .map(|(lat, lon)| GeoPoint::new(lat, lon).map_err(|e| invalid("gps", e)))
            .transpose()?;
        let at = self.clock.now();
        self.update::<DispatchJob>(job.doc(), |j| {
            j.check_in = Some(CheckIn { at, gps });
            Ok(())
        })
    }

    /// Records the customer's signature (its image is stored like a photo, by hash).
    pub fn sign(
        &mut self,
        job: JobId,
        signer: &str,
        image_sha256: &str,
    ) -> Result<DispatchJob, ReplicaError> {
        let signer = signer.trim();
        if signer.is_empty() {
            return Err(invalid("signer", "the signer's name is needed"));
        }
        let at = self.clock.now();
        self.update::<DispatchJob>(job.doc(), |j| {
            j.signature = Some(Signature {
                signer: signer.to_owned(),
                signed_at: at,
                image_sha256: image_sha256.to_owned(),
            });
            Ok(())
        })
    }

    /// Creates (no id) or edits a job (office).
    pub fn save_job(&mut self, draft: &JobDraft) -> Result<JobId, ReplicaError> {
        let title = Name::parse(&draft.title).map_err(|e| invalid("title", e))?;
        let date = parse_date(&draft.date)?;
        let start = parse_time(draft.start.as_deref())?;
        let priority: Priority = draft
            .priority
            .parse()
            .map_err(|e: String| invalid("priority", e))?;
        if !(5..=24 * 60).contains(&draft.duration_min) {
            return Err(invalid(
                "duration_min",
                "must be between 5 and 1440 minutes",
            ));
        }
        match &draft.id {
            Some(id) => {
                let id = JobId(parse_id(id)?);
                self.update::<DispatchJob>(id.doc(), |j| {
                    j.title = title;
                    j.description = draft.description.trim().to_owned();
                    j.date = date;
                    j.start = start;
                    j.duration_min = draft.duration_min;
                    j.priority = priority;
                    Ok(())
                })?;
                Ok(id)
            }
            None => {
                let location =
                    LocationId(parse_id(draft.location.as_deref().ok_or_else(|| {
                        invalid("location", "a new job needs a service location")
                    })?)?);
                let Some(AnyEntity::Location(loc)) = self.entity(location.doc())? else {
                    return Err(invalid(
                        "location",
                        "is not a service location on this device",
                    ));
                };
                let id = JobId(self.new_id());
                let job = DispatchJob {
                    id,
                    erp_name: None,
                    customer: loc.customer,
                    location,
                    title,
                    description: draft.description.trim().to_owned(),
                    technician: None,
                    assistants: Vec::new(),
                    required_tags: Vec::new(),
                    date,
                    start,
                    duration_min: draft.duration_min,
                    recurrence: None,
                    priority,
                    status: JobStatus::Open,
                    check_in: None,
                    actual_start: None,
                    actual_end: None,
                    signature: None,
                    notes: Vec::new(),
                    checklist: Vec::new(),
                    materials: Vec::new(),
                    equipment_items: Vec::new(),
                    photos: Vec::new(),
                    time_log: Vec::new(),
                    diagnostics: Vec::new(),
                };
                self.create(&AnyEntity::Job(Box::new(job)))?;
                Ok(id)
            }
        }
    }

    /// Assigns and schedules a job (office); no technician returns it to the queue.
    pub fn assign(&mut self, args: &AssignArgs) -> Result<DispatchJob, ReplicaError> {
        let id = JobId(parse_id(&args.id)?);
        let technician = args
            .technician
            .as_deref()
            .map(|t| parse_id(t).map(TechnicianId))
            .transpose()?;
        if let Some(t) = technician
            && !matches!(self.entity(t.doc())?, Some(AnyEntity::Technician(_)))
        {
            return Err(invalid("technician", "is not a technician on this device"));
        }
        let date = parse_date(&args.date)?;
        let start = parse_time(args.start.as_deref())?;
        self.update::<DispatchJob>(id.doc(), |j| {
            j.technician = technician;
            j.date = date;
            if start.is_some() {
                j.start = start;
            }
            match (technician.is_some(), j.status) {
                (true, JobStatus::Open) => j.status = JobStatus::Scheduled,
                (false, JobStatus::Scheduled) => j.status = JobStatus::Open,
                _ => {}
            }
            Ok(())
        })
    }

    /// Settles a conflict with one of its values (or acknowledges an overridden value by keeping
    /// the one shown), the document named as the inbox names it.
    pub fn resolve_with(
        &mut self,
        doc: &str,
        field: &str,
        value: &Scalar,
    ) -> Result<(), ReplicaError> {
        let id: DocId = parse_id(doc)?;
        self.resolve_conflict(id, field, value)
    }

    /// Remembers a photo stored on the device, to upload.
    pub fn track_photo(&self, job: JobId, sha256: &str, file: &str) -> Result<(), ReplicaError> {
        self.conn
            .prepare_cached(
                "INSERT INTO photo_uploads (sha256, job, file) VALUES (?1, ?2, ?3)
                 ON CONFLICT(sha256) DO NOTHING",
            )?
            .execute(params![sha256, id_blob(job.doc()), file])?;
        Ok(())
    }

    /// Photos not yet on the server: hash and file name.
    pub fn photos_waiting(&self) -> Result<Vec<(String, String)>, ReplicaError> {
        let mut st = self.conn.prepare_cached(
            "SELECT sha256, file FROM photo_uploads WHERE uploaded = 0 ORDER BY rowid",
        )?;
        Ok(st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// Keeps the last reading of a box, for when the server cannot be reached.
    pub fn network_keep(
        &self,
        equipment: &str,
        reading: &shared::network::Reading,
    ) -> Result<(), ReplicaError> {
        let json = serde_json::to_string(reading)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        self.conn
            .prepare_cached(
                "INSERT INTO network_readings (equipment, reading) VALUES (?1, ?2)
                 ON CONFLICT(equipment) DO UPDATE SET reading = ?2",
            )?
            .execute([equipment, json.as_str()])?;
        Ok(())
    }

    /// The last reading kept for a box.
    pub fn network_kept(
        &self,
        equipment: &str,
    ) -> Result<Option<shared::network::Reading>, ReplicaError> {
        let json: Option<String> = self
            .conn
            .prepare_cached("SELECT reading FROM network_readings WHERE equipment = ?1")?
            .query_row([equipment], |r| r.get(0))
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        // A reading written by an older app that no longer parses is as good as none.
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// Marks a photo as on the server.
    pub fn photo_uploaded(&self, sha256: &str) -> Result<(), ReplicaError> {
        self.conn
            .prepare_cached("UPDATE photo_uploads SET uploaded = 1 WHERE sha256 = ?1")?
            .execute([sha256])?;
        Ok(())
    }
}
