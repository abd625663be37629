use chrono::{NaiveDate, NaiveTime};

use super::*;
use crate::clock::Millis;
use crate::ids::{CustomerId, DocId, JobId, LocationId, TagId};
use crate::model::{
    Absence, JobStatus, Level, Name, Priority, Shift, TagLevel, TagRequirement, WeeklySchedule,
};

fn t(h: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, 0, 0).unwrap()
}
const FIBRE: TagId = TagId(DocId::from_u128(100));
const MONDAY: &str = "2026-11-23";

fn tech(n: u128, level: u8, home_km_east: f64) -> DispatchTechnician {
    let day = Some(Shift::new(t(8), t(17)).unwrap());
    DispatchTechnician {
        id: TechnicianId(DocId::from_u128(n)),
        erp_name: None,
        name: Name::parse(&format!("Tech {n}")).unwrap(),
        phone: None,
        active: true,
        home: Some(GeoPoint::new(45.5, -73.6 + home_km_east / 78.0).unwrap()),
        weekly: WeeklySchedule([day, day, day, day, day, None, None]),
        extra_shifts: vec![],
        absences: vec![],
        skills: vec![TagLevel {
            tag: FIBRE,
            level: Level::new(level).unwrap(),
        }],
    }
}

fn job(n: u128, hour: u32, needs: u8) -> DispatchJob {
    DispatchJob {
        id: JobId(DocId::from_u128(n)),
        erp_name: None,
        customer: CustomerId(DocId::from_u128(1)),
        location: LocationId(DocId::from_u128(2)),
        title: Name::parse("Installation fibre").unwrap(),
        description: String::new(),
        technician: None,
        assistants: vec![],
        required_tags: vec![TagRequirement {
            tag: FIBRE,
            level: Level::new(needs).unwrap(),
        }],
        date: MONDAY.parse::<NaiveDate>().unwrap(),
        start: Some(t(hour)),
        duration_min: 120,
        recurrence: None,
        priority: Priority::Normal,
        status: JobStatus::Open,
        check_in: None,
        actual_start: None,
        actual_end: None,
        signature: None,
        notes: vec![],
        checklist: vec![],
        materials: vec![],
        equipment_items: vec![],
        photos: vec![],
        time_log: vec![],
        diagnostics: vec![],
    }
}

fn rank(
    job: &DispatchJob,
    techs: &[DispatchTechnician],
    booked: &[DispatchJob],
) -> Vec<(u128, bool)> {
    let dest = GeoPoint::new(45.5, -73.6).ok();
    suggest(job, techs, booked, |t| t.home, dest)
        .into_iter()
        .map(|s| (s.technician.0.as_uuid().as_u128(), s.eligible))
        .collect()
}

#[test]
fn lowest_adequate_skill_first_then_distance() {
    let techs = [
        tech(1, 5, 1.0),
        tech(2, 3, 20.0),
        tech(3, 3, 5.0),
        tech(4, 2, 0.0),
    ];
    assert_eq!(
        rank(&job(9, 9, 3), &techs, &[]),
        vec![(3, true), (2, true), (1, true), (4, false)]
    );
}

#[test]
fn schedule_absence_and_overlap_exclude() {
    let mut away = tech(1, 3, 0.0);
    away.absences.push(Absence {
        from: MONDAY.parse().unwrap(),
        to: MONDAY.parse().unwrap(),
        reason: "congé".into(),
    });
    let late = job(9, 16, 1); // 16:00–18:00 runs past the 17:00 end of shift
    assert_eq!(rank(&late, &[tech(2, 3, 0.0)], &[]), vec![(2, false)]);
    let mut busy_job = job(8, 10, 1);
    busy_job.technician = Some(TechnicianId(DocId::from_u128(3)));
    let s = suggest(
        &job(9, 9, 1),
        &[away, tech(3, 3, 0.0), tech(4, 3, 9.0)],
        &[busy_job],
        |t| t.home,
        None,
    );
    assert!(s[0].eligible && s[0].technician.0.as_uuid().as_u128() == 4);
    assert!(s.iter().any(|x| x.reasons.contains(&Reason::Absent)));
    assert!(
        s.iter()
            .any(|x| x.reasons.iter().any(|r| matches!(r, Reason::Busy { .. })))
    );
    let _ = Millis(0);
}
