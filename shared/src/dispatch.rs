//! Dispatch scoring: which technicians can take a job, best first, with the reasons.
//!
//! Rules, in order: every required tag at the required level or better; working the whole slot
//! (weekly schedule or an extra shift, no absence, no overlapping job); then the lowest adequate
//! skill first, to keep experts free for the jobs only they can do; travel distance breaks ties.

use chrono::{NaiveDate, NaiveTime, Timelike};
use serde::{Deserialize, Serialize};

use crate::ids::TechnicianId;
use crate::model::{DispatchJob, DispatchTechnician, GeoPoint};

/// Why a technician is or is not suggested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reason {
    MissingTag {
        tag: String,
    },
    LevelTooLow {
        tag: String,
        has: u8,
        needs: u8,
    },
    NotWorking,
    Absent,
    Busy {
        with: String,
    },
    /// Sum over required tags of (level held − level needed): lower keeps experts free.
    SkillSurplus(u32),
    TravelKm(f64),
    NoSlotTime,
}

/// One technician's standing for a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    pub technician: TechnicianId,
    pub eligible: bool,
    pub surplus: u32,
    pub travel_km: Option<f64>,
    pub reasons: Vec<Reason>,
}

fn minutes(t: NaiveTime) -> u32 {
    t.hour() * 60 + t.minute()
}

fn slot(date: NaiveDate, start: NaiveTime, duration_min: u32) -> (NaiveDate, u32, u32) {
    let s = minutes(start);
    (date, s, s + duration_min)
}

/// Ranks technicians for `job`. `booked` lists jobs already assigned (any technician); `origin`
/// gives where each technician would come from (home, or the previous job's location).
pub fn suggest(
    job: &DispatchJob,
    technicians: &[DispatchTechnician],
    booked: &[DispatchJob],
    origin: impl Fn(&DispatchTechnician) -> Option<GeoPoint>,
    destination: Option<GeoPoint>,
) -> Vec<Suggestion> {
    let mut out: Vec<Suggestion> = technicians
        .iter()
        .map(|t| {
            let mut reasons = Vec::new();
            let mut surplus = 0u32;
            for req in &job.required_tags {
                match t.level(req.tag) {
                    None => reasons.push(Reason::MissingTag {
                        tag: req.tag.to_string(),
                    }),
                    Some(l) if l < req.level => reasons.push(Reason::LevelTooLow {
                        tag: req.tag.to_string(),
                        has: l.get(),
                        needs: req.level.get(),
                    }),
                    Some(l) => surplus += u32::from(l.get() - req.level.get()),
                }
            }
            match job.start {
                None => reasons.push(Reason::NoSlotTime),
                Some(start) => {
                    let (d, s, e) = slot(job.date, start, job.duration_min);
                    let end =
                        NaiveTime::from_num_seconds_from_midnight_opt(e.min(24 * 60 - 1) * 60, 0);
                    if t.is_absent(d) {
                        reasons.push(Reason::Absent);
                    } else if !end.is_some_and(|end| t.works(d, start, end)) {
                        reasons.push(Reason::NotWorking);
                    }
                    let clash = booked.iter().find(|b| {
                        b.id != job.id
                            && b.involves(t.id)
                            && b.date == d
                            && !b.status.is_terminal()
                            && b.start.is_some_and(|bs| {
                                let (_, bs, be) = slot(b.date, bs, b.duration_min);
                                bs < e && s < be
                            })
                    });
                    if let Some(b) = clash {
                        reasons.push(Reason::Busy {
                            with: b.title.to_string(),
                        });
                    }
                }
            }
            let eligible = reasons.iter().all(|r| matches!(r, Reason::NoSlotTime));
            let travel_km = origin(t).zip(destination).map(|(a, b)| a.distance_km(&b));
            reasons.push(Reason::SkillSurplus(surplus));
            if let Some(km) = travel_km {
                reasons.push(Reason::TravelKm((km * 10.0).round() / 10.0));
            }
            Suggestion {
                technician: t.id,
                eligible,
                surplus,
                travel_km,
                reasons,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.eligible
            .cmp(&a.eligible)
            .then(a.surplus.cmp(&b.surplus))
            .then(
                a.travel_km
                    .unwrap_or(f64::MAX)
                    .total_cmp(&b.travel_km.unwrap_or(f64::MAX)),
            )
            .then(a.technician.cmp(&b.technician))
    });
    out
}

#[cfg(test)]
mod tests;
