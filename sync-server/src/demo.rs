//! Realistic, deterministic data sets: Québec addresses, French names, technicians with skills and
//! schedules, jobs over a window, equipment at locations.

use chrono::{Duration, NaiveDate, NaiveTime};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shared::clock::Millis;
use shared::ids::*;
use shared::model::*;

const FIRST: &[&str] = &[
    "Émilie",
    "Jean-François",
    "Marie-Ève",
    "Olivier",
    "Geneviève",
    "Mathieu",
    "Catherine",
    "Louis",
    "Isabelle",
    "Étienne",
    "Sophie",
    "Gabriel",
    "Chloé",
    "Félix",
    "Amélie",
    "Samuel",
    "Julie",
    "Maxime",
];
const LAST: &[&str] = &[
    "Tremblay",
    "Gagnon",
    "Roy",
    "Côté",
    "Bouchard",
    "Gauthier",
    "Morin",
    "Lavoie",
    "Fortin",
    "Gagné",
    "Ouellet",
    "Pelletier",
    "Bélanger",
    "Lévesque",
    "Bergeron",
    "Leblanc",
    "Paquette",
    "Girard",
];
const STREETS: &[&str] = &[
    "rue Saint-Denis",
    "boulevard René-Lévesque",
    "rue Sainte-Catherine",
    "chemin de la Côte-des-Neiges",
    "avenue du Mont-Royal",
    "rue Notre-Dame",
    "boulevard Saint-Laurent",
    "rue Principale",
    "rang Saint-Joseph",
    "avenue Cartier",
    "rue des Érables",
    "montée Sainte-Julie",
];
/// City, postal prefix, latitude, longitude.
const CITIES: &[(&str, &str, f64, f64)] = &[
    ("Montréal", "H2X", 45.515, -73.57),
    ("Québec", "G1R", 46.81, -71.21),
    ("Laval", "H7N", 45.57, -73.72),
    ("Longueuil", "J4K", 45.53, -73.51),
    ("Sherbrooke", "J1H", 45.40, -71.89),
    ("Trois-Rivières", "G9A", 46.35, -72.55),
    ("Gatineau", "J8X", 45.48, -75.70),
    ("Saint-Jérôme", "J7Z", 45.78, -74.00),
];

/// The seed of the `sync-server demo` data set.
pub const DEMO_SEED: u64 = 2026;

/// The size of the `sync-server demo` data set: 8 technicians, a month of jobs, 200 locations.
pub const DEMO_SPEC: Spec = Spec {
    technicians: 8,
    jobs_per_technician: 30,
    locations: 200,
    subscribers_per_location: 2,
    equipment_per_location: 3,
    days_back: 3,
    days_ahead: 14,
};

/// How big a data set to make.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub technicians: usize,
    /// Jobs per technician, spread over the window around `today`.
    pub jobs_per_technician: usize,
    pub locations: usize,
    /// Subscribers (customer + subscription) per location, besides the location's owner.
    pub subscribers_per_location: usize,
    pub equipment_per_location: usize,
    pub days_back: i64,
    pub days_ahead: i64,
}

/// A generated data set, in creation order (referenced entities first).
#[derive(Debug, Clone)]
pub struct Dataset {
    pub entities: Vec<AnyEntity>,
    pub technicians: Vec<TechnicianId>,
    pub jobs: Vec<JobId>,
    pub tags: Vec<TagId>,
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, xs: &'a [T]) -> &'a T {
    &xs[rng.random_range(0..xs.len())]
}

/// A v7 id from the generator's stream (time ordered by `n`).
fn id(rng: &mut ChaCha8Rng, n: u64) -> DocId {
    DocId::new_v7(
        Millis(1_700_000_000_000 + i64::try_from(n).unwrap_or(0)),
        rng.random(),
    )
}

fn hm(h: u32, m: u32) -> NaiveTime {
    NaiveTime::from_hms_opt(h, m, 0).expect("valid literal time")
}

/// Makes a data set. The same seed and spec give the same entities.
pub fn generate(seed: u64, spec: Spec, today: NaiveDate) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut n = 0u64;
    let mut next = |rng: &mut ChaCha8Rng| {
        n += 1;
        id(rng, n)
    };
    let mut out = Vec::new();
    let tag_names = [
        "Fibre",
        "Épissure",
        "Wi-Fi",
        "IPTV",
        "Téléphonie",
        "Commercial",
    ];
    let tags: Vec<TagId> = tag_names.iter().map(|_| TagId(next(&mut rng))).collect();
    for (t, name) in tags.iter().zip(tag_names) {
        out.push(AnyEntity::Tag(Tag {
            id: *t,
            erp_name: None,
            label: Name::parse(name).expect("literal"),
            category: Some("skill".into()),
        }));
    }
    let day = Some(Shift::new(hm(8, 0), hm(17, 0)).expect("literal"));
    let mut technicians = Vec::new();
    for i in 0..spec.technicians {
        let tid = TechnicianId(next(&mut rng));
        technicians.push(tid);
        let (city, _, lat, lon) = *pick(&mut rng, CITIES);
        let _ = city;
        let mut skills = Vec::new();
        for t in &tags {
            if rng.random_bool(0.7) {
                skills.push(TagLevel {
                    tag: *t,
                    level: Level::new(rng.random_range(1..=5)).expect("1..=5"),
                });
            }
        }
        out.push(AnyEntity::Technician(DispatchTechnician {
            id: tid,
            erp_name: None,
            name: Name::parse(&format!(
                "{} {}",
                pick(&mut rng, FIRST),
                pick(&mut rng, LAST)
            ))
            .expect("names"),
            phone: Phone::parse(&format!("514555{:04}", i % 10_000)).ok(),
            active: true,
            home: GeoPoint::new(
                lat + rng.random_range(-0.05..0.05),
                lon + rng.random_range(-0.05..0.05),
            )
            .ok(),
            weekly: WeeklySchedule([day, day, day, day, day, None, None]),
            extra_shifts: vec![],
            absences: vec![],
            skills,
        }));
    }
    let mut locations: Vec<(CustomerId, LocationId)> = Vec::new();
    for i in 0..spec.locations {
        let cid = CustomerId(next(&mut rng));
        let lid = LocationId(next(&mut rng));
        let (city, prefix, lat, lon) = *pick(&mut rng, CITIES);
        let first = pick(&mut rng, FIRST);
        let last = pick(&mut rng, LAST);
        out.push(AnyEntity::Customer(Customer {
            id: cid,
            erp_name: None,
            name: Name::parse(&format!("{first} {last}")).expect("names"),
            kind: CustomerKind::Individual,
            phone: Phone::parse(&format!("438{:07}", rng.random_range(0..10_000_000))).ok(),
            email: None,
            language: if rng.random_bool(0.85) {
                Language::Fr
            } else {
                Language::En
            },
            stripe_id: None,
            is_commercial: false,
            ppa_enabled: rng.random_bool(0.3),
        }));
        let postal = format!(
            "{prefix} {}{}{}",
            rng.random_range(1..10),
            (b'A' + rng.random_range(0..20u8)) as char,
            rng.random_range(0..10)
        );
        out.push(AnyEntity::Location(ServiceLocation {
            id: lid,
            erp_name: None,
            customer: cid,
            address: Address::parse(
                &format!("{} {}", rng.random_range(1..9999), pick(&mut rng, STREETS)),
                city,
                "QC",
                &postal,
            )
            .expect("generated address is valid"),
            gps: GeoPoint::new(
                lat + rng.random_range(-0.1..0.1),
                lon + rng.random_range(-0.1..0.1),
            )
            .ok(),
            olt_port: OltPort::parse(&format!(
                "0/{}/{}:{}",
                rng.random_range(1..16),
                rng.random_range(0..16),
                rng.random_range(0..128)
            ))
            .ok(),
            vlan: Vlan::new(rng.random_range(100..4000)).ok(),
            network_notes: String::new(),
            contacts: vec![],
        }));
        for s in 0..spec.subscribers_per_location {
            let sub_customer = CustomerId(next(&mut rng));
            out.push(AnyEntity::Customer(Customer {
                id: sub_customer,
                erp_name: None,
                name: Name::parse(&format!(
                    "{} {} (app. {})",
                    pick(&mut rng, FIRST),
                    pick(&mut rng, LAST),
                    s + 1
                ))
                .expect("names"),
                kind: CustomerKind::Individual,
                phone: None,
                email: Email::parse(&format!("client{i}x{s}@exemple.qc.ca")).ok(),
                language: Language::Fr,
                stripe_id: None,
                is_commercial: false,
                ppa_enabled: false,
            }));
            out.push(AnyEntity::Subscription(ServiceSubscription {
                id: SubscriptionId(next(&mut rng)),
                erp_name: None,
                customer: sub_customer,
                location: lid,
                plan: *pick(&mut rng, Plan::ALL),
                status: SubscriptionStatus::Active,
                monthly_price: Money::from_cents(rng.random_range(4_000..15_000))
                    .expect("positive"),
                start_date: today - Duration::days(rng.random_range(30..2000)),
            }));
        }
        for e in 0..spec.equipment_per_location {
            let kind = if e == 0 {
                EquipmentType::Ont
            } else {
                *pick(&mut rng, EquipmentType::ALL)
            };
            let mac: [u8; 6] = rng.random();
            out.push(AnyEntity::Equipment(ServiceEquipment {
                id: EquipmentId(next(&mut rng)),
                erp_name: None,
                location: Some(lid),
                kind,
                serial: Serial::parse(&format!(
                    "{}{:08X}",
                    ["HWTC", "ZTEG", "TPLK", "ALCL"][rng.random_range(0..4)],
                    rng.random::<u64>() & 0xFFFF_FFFF
                ))
                .expect("serial"),
                mac: MacAddr::parse(&mac.iter().map(|b| format!("{b:02X}")).collect::<String>())
                    .ok(),
                management_ip: None,
                model: Some(
                    ["EG8145V5", "XX230v", "EX220", "BM632w"][rng.random_range(0..4)].into(),
                ),
                firmware: Some(format!("V5R{}C00", rng.random_range(19..23))),
                status: EquipmentStatus::Active,
                duplicate_of: None,
            }));
        }
        locations.push((cid, lid));
    }
    let mut jobs = Vec::new();
    let span = spec.days_back + spec.days_ahead + 1;
    for (ti, tech) in technicians.iter().enumerate() {
        for j in 0..spec.jobs_per_technician {
            let jid = JobId(next(&mut rng));
            jobs.push(jid);
            let (cid, lid) =
                locations[(ti * spec.jobs_per_technician + j) % locations.len().max(1)];
            let offset = i64::try_from(j).unwrap_or(0) % span - spec.days_back;
            let date = today + Duration::days(offset);
            let status = if offset < 0 {
                JobStatus::Completed
            } else {
                JobStatus::Scheduled
            };
            let key = |rng: &mut ChaCha8Rng, k: u64| id(rng, 1_000_000 + k).to_string();
            let checklist = [
                "Vérifier le signal optique",
                "Configurer le Wi-Fi",
                "Expliquer la facture",
            ]
            .iter()
            .enumerate()
            .map(|(k, label)| ChecklistItem {
                key: key(&mut rng, k as u64),
                label: (*label).into(),
                done: false,
            })
            .collect();
            // What the job is and how long it usually takes.
            let (title, duration_min) = [
                ("Installation fibre", 120),
                ("Réparation", 60),
                ("Remplacement ONT", 45),
                ("Visite technique", 90),
            ][rng.random_range(0..4)];
            out.push(AnyEntity::Job(Box::new(DispatchJob {
                id: jid,
                erp_name: None,
                customer: cid,
                location: lid,
                title: Name::parse(title).expect("literal"),
                description: "Client absent avant 10 h.".into(),
                technician: Some(*tech),
                assistants: vec![],
                required_tags: vec![TagRequirement {
                    tag: tags[0],
                    level: Level::new(rng.random_range(1..=3)).expect("1..=3"),
                }],
                date,
                start: Some(hm(8 + u32::try_from(j % 8).unwrap_or(0), 0)),
                duration_min,
                recurrence: None,
                priority: Priority::Normal,
                status,
                check_in: None,
                actual_start: None,
                actual_end: None,
                signature: None,
                notes: vec![],
                checklist,
                materials: vec![],
                equipment_items: vec![],
                photos: vec![],
                time_log: vec![],
                diagnostics: vec![],
            })));
        }
    }
    Dataset {
        entities: out,
        technicians,
        jobs,
        tags,
    }
}
