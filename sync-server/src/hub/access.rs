//! The access network's picture: each OLT polled on its schedule ([`olt::poll`]), its ONUs
//! tracked with the time of their last state change, every transition stored, and incidents
//! opened and closed from the table: a port outage, a customer-side fault, an OLT that does not
//! answer. Dispatchers read it with the customers and jobs behind each ONU ([`affected`]) and
//! follow it live from the event log.
//!
//! Decisions are pure ([`track`], [`assess`], [`assess_reachability`], [`affected`]); [`run`]
//! and [`Access`] only poll, store and wake.
//!
//! Rules:
//! - an ONU's state and the time it entered it come from the polls; an ONU first seen has been
//!   in its state since an unknown time, and opens nothing (an OLT has ONUs offline for months:
//!   homes closed for the winter, ended subscriptions);
//! - on a port with no outage open, [`olt::PORT_OUTAGE_MIN_ONUS`] or more ONUs that went down
//!   within the window are one port outage (customer faults already open for them are folded
//!   into it); fewer are each a customer fault;
//! - an open outage follows its port: ONUs going down from a little before it began join it,
//!   ONUs back leave it, and it ends when none of them is down; a customer fault ends when its ONU is back (or is removed);
//! - an OLT that does not answer opens one "OLT unreachable" incident and leaves its ONUs'
//!   states and incidents as they were: silence is not an outage.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{OptionalExtension as _, params};
use shared::clock::Clock;
use shared::ids::DocId;
use shared::model::AnyEntity;
use shared::network::{
    Affected, AffectedJob, Incident, IncidentKind, LineView, MonitorDown, NetworkPicture,
    OltStatus, OnuRef, OnuState,
};

use super::olt::{self, Onu, PonPort};

/// An ONU as tracked between polls: its last row and since when it is in its state.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracked {
    pub onu: Onu,
    /// When it entered its state (Unix milliseconds); `None` when it was in it when first seen.
    pub since: Option<i64>,
}

/// A state change seen by a poll.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub port: PonPort,
    pub onu: u32,
    pub serial: Option<String>,
    /// `None` for an ONU first seen.
    pub from: Option<OnuState>,
    pub to: OnuState,
}

/// The new table from the previous one and a poll: states carried with their time, changed
/// ones stamped `now`, first seen ones with no time, and the transitions.
pub fn track(prev: &[Tracked], polled: Vec<Onu>, now: i64) -> (Vec<Tracked>, Vec<Transition>) {
    let old: BTreeMap<(PonPort, u32), &Tracked> =
        prev.iter().map(|t| ((t.onu.port, t.onu.onu), t)).collect();
    let mut changes = Vec::new();
    let table = polled
        .into_iter()
        .map(|o| {
            let before = old.get(&(o.port, o.onu));
            let since = match before {
                Some(t) if t.onu.state == o.state => t.since,
                None => {
                    changes.push(Transition {
                        port: o.port,
                        onu: o.onu,
                        serial: o.serial.clone(),
                        from: None,
                        to: o.state,
                    });
                    None
                }
                Some(t) => {
                    changes.push(Transition {
                        port: o.port,
                        onu: o.onu,
                        serial: o.serial.clone(),
                        from: Some(t.onu.state),
                        to: o.state,
                    });
                    Some(now)
                }
            };
            Tracked { onu: o, since }
        })
        .collect();
    (table, changes)
}

/// What to do to the incidents.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Open {
        kind: IncidentKind,
        port: Option<PonPort>,
        onus: Vec<OnuRef>,
        of: Option<u32>,
    },
    /// An open incident's ONUs changed.
    Update {
        id: i64,
        onus: Vec<OnuRef>,
        of: Option<u32>,
    },
    Close {
        id: i64,
    },
}

fn onu_ref(t: &Tracked) -> OnuRef {
    OnuRef {
        onu: t.onu.onu,
        serial: t.onu.serial.clone(),
        state: t.onu.state,
    }
}

fn port_of(i: &Incident) -> Option<PonPort> {
    PonPort::parse(i.port.as_deref()?)
}

/// The incident steps for one answered poll of an OLT: `table` as tracked, `open` the OLT's
/// open port outages and customer faults, `window` in milliseconds.
pub fn assess(now: i64, window: i64, table: &[Tracked], open: &[Incident]) -> Vec<Step> {
    let mut ports: BTreeMap<PonPort, Vec<&Tracked>> = BTreeMap::new();
    for t in table {
        ports.entry(t.onu.port).or_default().push(t);
    }
    let outages: BTreeMap<PonPort, &Incident> = open
        .iter()
        .filter(|i| i.kind == IncidentKind::PortOutage)
        .filter_map(|i| Some((port_of(i)?, i)))
        .collect();
    let faults: BTreeMap<(PonPort, u32), &Incident> = open
        .iter()
        .filter(|i| i.kind == IncidentKind::CustomerFault)
        .filter_map(|i| Some(((port_of(i)?, i.onus.first()?.onu), i)))
        .collect();
    let mut steps = Vec::new();
    let mut kept_faults: BTreeSet<i64> = BTreeSet::new();
    // Outages whose port is no longer in the table (deleted on the OLT) end.
    for (port, i) in &outages {
        if !ports.contains_key(port) {
            steps.push(Step::Close { id: i.id });
        }
    }
    for (port, onus) in &ports {
        let of = u32::try_from(onus.len()).ok();
        // Down, and seen going down (since when is known).
        let down: Vec<(&Tracked, i64)> = onus
            .iter()
            .filter(|t| t.onu.state.is_down())
            .filter_map(|t| Some((*t, t.since?)))
            .collect();
        let mut folded: BTreeSet<u32> = BTreeSet::new();
        if let Some(i) = outages.get(port) {
            let members: Vec<&Tracked> = down
                .iter()
                .filter(|(_, since)| *since >= i.started - window)
                .map(|(t, _)| *t)
                .collect();
            if members.is_empty() {
                steps.push(Step::Close { id: i.id });
            } else {
                let now_down: Vec<OnuRef> = members.iter().map(|t| onu_ref(t)).collect();
                if now_down != i.onus || of != i.of {
                    steps.push(Step::Update {
                        id: i.id,
                        onus: now_down,
                        of,
                    });
                }
                folded.extend(members.iter().map(|t| t.onu.onu));
            }
        } else {
            let recent: Vec<&Tracked> = down
                .iter()
                .filter(|(_, since)| now - since <= window)
                .map(|(t, _)| *t)
                .collect();
            if recent.len() >= olt::PORT_OUTAGE_MIN_ONUS {
                steps.push(Step::Open {
                    kind: IncidentKind::PortOutage,
                    port: Some(*port),
                    onus: recent.iter().map(|t| onu_ref(t)).collect(),
                    of,
                });
                folded.extend(recent.iter().map(|t| t.onu.onu));
            }
        }
        for (t, _) in &down {
            let n = t.onu.onu;
            match faults.get(&(*port, n)) {
                Some(i) if folded.contains(&n) => steps.push(Step::Close { id: i.id }),
                Some(i) => {
                    kept_faults.insert(i.id);
                    if i.onus.first().map(|o| o.state) != Some(t.onu.state) {
                        steps.push(Step::Update {
                            id: i.id,
                            onus: vec![onu_ref(t)],
                            of: None,
                        });
                    }
                }
                None if folded.contains(&n) => {}
                None => steps.push(Step::Open {
                    kind: IncidentKind::CustomerFault,
                    port: Some(*port),
                    onus: vec![onu_ref(t)],
                    of: None,
                }),
            }
        }
    }
    // Customer faults whose ONU is back, or gone from the table, end.
    for i in faults.values() {
        let closing = Step::Close { id: i.id };
        if !kept_faults.contains(&i.id) && !steps.contains(&closing) {
            steps.push(closing);
        }
    }
    steps
}

/// The "OLT unreachable" step for a poll that was (not) answered, against the OLT's open
/// unreachable incident.
pub fn assess_reachability(answered: bool, open: Option<&Incident>) -> Option<Step> {
    match (answered, open) {
        (false, None) => Some(Step::Open {
            kind: IncidentKind::OltUnreachable,
            port: None,
            onus: Vec::new(),
            of: None,
        }),
        (true, Some(i)) => Some(Step::Close { id: i.id }),
        _ => None,
    }
}

/// The customers behind `serials` (as GPON serials; equipment serials are read either way), with
/// their jobs not yet finished and dated from `today` on or already under way.
pub fn affected<'a>(
    entities: impl Iterator<Item = (DocId, &'a AnyEntity)>,
    serials: &[String],
    today: chrono::NaiveDate,
) -> Vec<Affected> {
    let wanted: BTreeSet<&str> = serials.iter().map(String::as_str).collect();
    let mut locations: BTreeMap<DocId, &shared::model::ServiceLocation> = BTreeMap::new();
    let mut customers: BTreeMap<DocId, &shared::model::Customer> = BTreeMap::new();
    let mut jobs: Vec<&shared::model::DispatchJob> = Vec::new();
    let mut equipment: Vec<(String, &shared::model::ServiceEquipment)> = Vec::new();
    for (_, e) in entities {
        match e {
            AnyEntity::Location(l) => {
                locations.insert(l.id.doc(), l);
            }
            AnyEntity::Customer(c) => {
                customers.insert(c.id.doc(), c);
            }
            AnyEntity::Job(j) => jobs.push(j),
            AnyEntity::Equipment(q) => {
                if let Some(s) = olt::normalize_serial(q.serial.as_str())
                    && wanted.contains(s.as_str())
                {
                    equipment.push((s, q));
                }
            }
            _ => {}
        }
    }
    equipment.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.id.doc().cmp(&b.1.id.doc())));
    equipment
        .into_iter()
        .map(|(serial, q)| {
            let location = q.location.map(|l| l.doc());
            let place = location.and_then(|l| locations.get(&l));
            let customer = place.map(|p| p.customer.doc());
            let mut js: Vec<AffectedJob> = jobs
                .iter()
                .filter(|j| {
                    Some(j.location.doc()) == location
                        && !j.status.is_terminal()
                        && (j.date >= today || j.status.is_field_progress())
                })
                .map(|j| AffectedJob {
                    id: j.id.doc(),
                    title: j.title.as_str().to_owned(),
                    date: j.date,
                    status: j.status,
                    technician: j.technician.map(|t| t.doc()),
                })
                .collect();
            js.sort_by_key(|j| (j.date, j.id));
            Affected {
                serial,
                equipment: q.id.doc(),
                customer,
                customer_name: customer
                    .and_then(|c| customers.get(&c))
                    .map(|c| c.name.as_str().to_owned()),
                location,
                address: place.map(|p| p.address.one_line()),
                jobs: js,
            }
        })
        .collect()
}

/// One OLT to poll, and how often.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub target: olt::Target,
    pub every: Duration,
}

/// The access network's tables in `hub.sqlite3`, and the event log live streams follow.
pub struct Access {
    db: Mutex<rusqlite::Connection>,
    /// Woken at each new event.
    pub changed: tokio::sync::Notify,
    /// The OLTs configured, in order, with their hosts (to join Uptime Kuma monitors).
    olts: Vec<(String, String)>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("olts", &self.olts)
            .finish_non_exhaustive()
    }
}

/// One event of the access network's log: an incident as it now stands, or an OLT's status.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NetworkEvent {
    Incident { seq: i64, incident: Incident },
    Olt { seq: i64, olt: OltStatus },
}

impl NetworkEvent {
    pub fn seq(&self) -> i64 {
        match self {
            Self::Incident { seq, .. } | Self::Olt { seq, .. } => *seq,
        }
    }
}

fn state_text(s: OnuState) -> &'static str {
    match s {
        OnuState::Online => "online",
        OnuState::Los => "los",
        OnuState::DyingGasp => "dying_gasp",
        OnuState::Offline => "offline",
        OnuState::Other => "other",
    }
}

fn state_from(s: &str) -> OnuState {
    match s {
        "online" => OnuState::Online,
        "los" => OnuState::Los,
        "dying_gasp" => OnuState::DyingGasp,
        "offline" => OnuState::Offline,
        _ => OnuState::Other,
    }
}

fn kind_text(k: IncidentKind) -> &'static str {
    match k {
        IncidentKind::PortOutage => "port_outage",
        IncidentKind::CustomerFault => "customer_fault",
        IncidentKind::OltUnreachable => "olt_unreachable",
    }
}

fn kind_from(s: &str) -> IncidentKind {
    match s {
        "port_outage" => IncidentKind::PortOutage,
        "customer_fault" => IncidentKind::CustomerFault,
        _ => IncidentKind::OltUnreachable,
    }
}

/// Incidents that ended within this long stay in the picture.
const RECENT_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("the access network's tables: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("a stored incident's ONUs do not read back: {0}")]
    Json(#[from] serde_json::Error),
}

impl Access {
    /// Opens the tables; `olts` are the configured OLTs' names and hosts.
    pub fn open(
        path: &std::path::Path,
        full_sync: bool,
        olts: Vec<(String, String)>,
    ) -> Result<Arc<Self>, AccessError> {
        let conn = super::open_db(path, full_sync)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS olt_status (
                 olt TEXT PRIMARY KEY, reachable INTEGER, since INTEGER, last_poll INTEGER,
                 last_error TEXT
             );
             CREATE TABLE IF NOT EXISTS olt_onus (
                 olt TEXT NOT NULL, port TEXT NOT NULL, onu INTEGER NOT NULL, serial TEXT,
                 description TEXT, state TEXT NOT NULL, rx REAL, tx REAL, since INTEGER,
                 PRIMARY KEY (olt, port, onu)
             );
             CREATE INDEX IF NOT EXISTS olt_onus_serial ON olt_onus (serial);
             CREATE TABLE IF NOT EXISTS onu_transitions (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, olt TEXT NOT NULL,
                 port TEXT NOT NULL, onu INTEGER NOT NULL, serial TEXT, from_state TEXT,
                 to_state TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS onu_transitions_serial ON onu_transitions (serial, at);
             CREATE TABLE IF NOT EXISTS incidents (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, olt TEXT NOT NULL, kind TEXT NOT NULL,
                 port TEXT, onus TEXT NOT NULL, of_onus INTEGER, started INTEGER NOT NULL,
                 ended INTEGER
             );
             CREATE INDEX IF NOT EXISTS incidents_open ON incidents (olt, ended);
             CREATE TABLE IF NOT EXISTS network_events (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, body TEXT NOT NULL
             );",
        )?;
        Ok(Arc::new(Self {
            db: Mutex::new(conn),
            changed: tokio::sync::Notify::new(),
            olts,
        }))
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        super::lock_db(&self.db)
    }

    /// An OLT's tracked table, as stored.
    pub fn table(&self, olt: &str) -> Result<Vec<Tracked>, AccessError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT port, onu, serial, description, state, rx, tx, since FROM olt_onus
             WHERE olt = ?1 ORDER BY port, onu",
        )?;
        let rows = stmt.query_map([olt], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<f64>>(5)?,
                r.get::<_, Option<f64>>(6)?,
                r.get::<_, Option<i64>>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (port, onu, serial, description, state, rx, tx, since) = row?;
            let Some(port) = PonPort::parse(&port) else {
                continue;
            };
            out.push(Tracked {
                onu: Onu {
                    port,
                    onu,
                    serial,
                    description,
                    state: state_from(&state),
                    rx_dbm: rx,
                    tx_dbm: tx,
                },
                since,
            });
        }
        Ok(out)
    }

    fn incidents_where(
        conn: &rusqlite::Connection,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<Incident>, AccessError> {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT id, olt, kind, port, onus, of_onus, started, ended FROM incidents WHERE {filter}
             ORDER BY started DESC, id DESC"
        ))?;
        let rows = stmt.query_map(args, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<u32>>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, Option<i64>>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, olt, kind, port, onus, of, started, ended) = row?;
            out.push(Incident {
                id,
                olt,
                kind: kind_from(&kind),
                port,
                onus: serde_json::from_str(&onus)?,
                of,
                started,
                ended,
                affected: Vec::new(),
            });
        }
        Ok(out)
    }

    /// An OLT's open incidents.
    pub fn open_incidents(&self, olt: &str) -> Result<Vec<Incident>, AccessError> {
        Self::incidents_where(&self.conn(), "olt = ?1 AND ended IS NULL", [olt])
    }

    fn status_of(conn: &rusqlite::Connection, olt: &str) -> Result<OltStatus, AccessError> {
        let row = conn
            .query_row(
                "SELECT reachable, since, last_poll, last_error FROM olt_status WHERE olt = ?1",
                [olt],
                |r| {
                    Ok((
                        r.get::<_, Option<bool>>(0)?,
                        r.get::<_, Option<i64>>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                },
            )
            .optional()?;
        let (onus, down) = conn.query_row(
            "SELECT count(*), coalesce(sum(state IN ('los', 'dying_gasp', 'offline')), 0)
             FROM olt_onus WHERE olt = ?1",
            [olt],
            |r| Ok((r.get::<_, u32>(0)?, r.get::<_, u32>(1)?)),
        )?;
        let (reachable, since, last_poll, last_error) = row.unwrap_or_default();
        Ok(OltStatus {
            name: olt.to_owned(),
            reachable,
            since,
            last_poll,
            last_error,
            onus,
            onus_down: down,
            monitor: None,
        })
    }

    /// Stores one poll of `olt` at `now`: the new table and its transitions when it answered
    /// (`Ok`), or why it did not, and the incident steps; one transaction, then the live streams
    /// are woken.
    pub fn record(
        &self,
        olt: &str,
        now: i64,
        outcome: Result<(&[Tracked], &[Transition]), &str>,
        steps: &[Step],
    ) -> Result<(), AccessError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let before = Self::status_of(&tx, olt)?;
        let answered = outcome.is_ok();
        let mut events: Vec<String> = Vec::new();
        match outcome {
            Ok((table, transitions)) => {
                tx.execute("DELETE FROM olt_onus WHERE olt = ?1", [olt])?;
                {
                    let mut ins = tx.prepare_cached(
                        "INSERT INTO olt_onus (olt, port, onu, serial, description, state, rx, tx,
                         since) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    )?;
                    for t in table {
                        let o = &t.onu;
                        ins.execute(params![
                            olt,
                            o.port.to_string(),
                            o.onu,
                            o.serial,
                            o.description,
                            state_text(o.state),
                            o.rx_dbm,
                            o.tx_dbm,
                            t.since
                        ])?;
                    }
                    let mut log = tx.prepare_cached(
                        "INSERT INTO onu_transitions (at, olt, port, onu, serial, from_state,
                         to_state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?;
                    for c in transitions {
                        log.execute(params![
                            now,
                            olt,
                            c.port.to_string(),
                            c.onu,
                            c.serial,
                            c.from.map(state_text),
                            state_text(c.to)
                        ])?;
                    }
                }
                tx.execute(
                    "INSERT INTO olt_status (olt, reachable, since, last_poll, last_error)
                     VALUES (?1, 1, ?2, ?2, NULL)
                     ON CONFLICT (olt) DO UPDATE SET last_poll = ?2, last_error = NULL,
                         since = CASE WHEN reachable = 1 THEN since ELSE ?2 END, reachable = 1",
                    params![olt, now],
                )?;
            }
            Err(why) => {
                tx.execute(
                    "INSERT INTO olt_status (olt, reachable, since, last_poll, last_error)
                     VALUES (?1, 0, ?2, ?2, ?3)
                     ON CONFLICT (olt) DO UPDATE SET last_poll = ?2, last_error = ?3,
                         since = CASE WHEN reachable = 0 THEN since ELSE ?2 END, reachable = 0",
                    params![olt, now, why],
                )?;
            }
        }
        for step in steps {
            let id = match step {
                Step::Open {
                    kind,
                    port,
                    onus,
                    of,
                } => {
                    tx.execute(
                        "INSERT INTO incidents (olt, kind, port, onus, of_onus, started)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![
                            olt,
                            kind_text(*kind),
                            port.map(|p| p.to_string()),
                            serde_json::to_string(onus)?,
                            of,
                            now
                        ],
                    )?;
                    tx.last_insert_rowid()
                }
                Step::Update { id, onus, of } => {
                    tx.execute(
                        "UPDATE incidents SET onus = ?2, of_onus = coalesce(?3, of_onus)
                         WHERE id = ?1",
                        params![id, serde_json::to_string(onus)?, of],
                    )?;
                    *id
                }
                Step::Close { id } => {
                    tx.execute(
                        "UPDATE incidents SET ended = ?2 WHERE id = ?1 AND ended IS NULL",
                        params![id, now],
                    )?;
                    *id
                }
            };
            if let Some(i) = Self::incidents_where(&tx, "id = ?1", [id])?.pop() {
                events.push(serde_json::to_string(&NetworkEvent::Incident {
                    seq: 0,
                    incident: i,
                })?);
            }
        }
        let after = Self::status_of(&tx, olt)?;
        // The OLT's status is an event when its reachability or its count of ONUs down moved.
        if before.reachable != Some(answered) || before.onus_down != after.onus_down {
            events.push(serde_json::to_string(&NetworkEvent::Olt {
                seq: 0,
                olt: after,
            })?);
        }
        {
            let mut ins =
                tx.prepare_cached("INSERT INTO network_events (at, body) VALUES (?1, ?2)")?;
            for e in &events {
                ins.execute(params![now, e])?;
            }
        }
        tx.commit()?;
        drop(conn);
        if !events.is_empty() {
            self.changed.notify_waiters();
        }
        Ok(())
    }

    /// Events after `seq`, at most `limit`, each with its sequence number.
    pub fn events_after(&self, seq: i64, limit: u32) -> Result<Vec<NetworkEvent>, AccessError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, body FROM network_events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![seq, limit], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (n, body) = row?;
            let mut e: NetworkEvent = serde_json::from_str(&body)?;
            match &mut e {
                NetworkEvent::Incident { seq, .. } | NetworkEvent::Olt { seq, .. } => *seq = n,
            }
            out.push(e);
        }
        Ok(out)
    }

    /// Every configured OLT's status, the open incidents and those that ended in the last day
    /// (without `affected`), and the monitors down: those watching an OLT's host are joined to
    /// it, the others listed apart.
    pub fn picture(
        &self,
        now: i64,
        monitors: &[super::alerts::Monitor],
    ) -> Result<NetworkPicture, AccessError> {
        let conn = self.conn();
        let mut down: Vec<MonitorDown> = monitors
            .iter()
            .filter(|m| !m.up)
            .map(|m| MonitorDown {
                name: m.name.clone(),
                target: m.target.clone(),
                since: m.since.clone(),
                message: m.message.clone(),
            })
            .collect();
        let mut olts = Vec::new();
        for (name, host) in &self.olts {
            let mut s = Self::status_of(&conn, name)?;
            if let Some(k) = down.iter().position(|m| {
                m.target
                    .as_deref()
                    .is_some_and(|t| host_of(t) == host.as_str())
            }) {
                s.monitor = Some(down.remove(k));
            }
            olts.push(s);
        }
        let incidents = Self::incidents_where(
            &conn,
            "ended IS NULL OR ended >= ?1",
            [now.saturating_sub(RECENT_MS)],
        )?;
        Ok(NetworkPicture {
            olts,
            incidents,
            monitors_down: down,
        })
    }

    /// The line behind a GPON serial, as its OLT last saw it.
    pub fn line(&self, serial: &str) -> Result<Option<LineView>, AccessError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT o.olt, o.port, o.onu, o.serial, o.state, o.since, o.rx, o.tx,
                        s.last_poll, coalesce(s.reachable, 0)
                 FROM olt_onus o LEFT JOIN olt_status s ON s.olt = o.olt
                 WHERE o.serial = ?1 ORDER BY s.last_poll DESC LIMIT 1",
                [serial],
                |r| {
                    Ok(LineView {
                        olt: r.get(0)?,
                        port: r.get(1)?,
                        onu: r.get(2)?,
                        serial: r.get(3)?,
                        state: state_from(&r.get::<_, String>(4)?),
                        since: r.get(5)?,
                        rx_dbm: r.get(6)?,
                        tx_dbm: r.get(7)?,
                        polled_at: r.get(8)?,
                        olt_reachable: r.get(9)?,
                        incident: None,
                    })
                },
            )
            .optional()?;
        let Some(mut line) = row else {
            return Ok(None);
        };
        let open = Self::incidents_where(&conn, "olt = ?1 AND ended IS NULL", [&line.olt])?;
        line.incident = open.into_iter().find(|i| match i.kind {
            IncidentKind::OltUnreachable => true,
            IncidentKind::PortOutage => i.port.as_deref() == Some(line.port.as_str()),
            IncidentKind::CustomerFault => {
                i.port.as_deref() == Some(line.port.as_str())
                    && i.onus.first().is_some_and(|o| o.onu == line.onu)
            }
        });
        Ok(Some(line))
    }
}

/// The host of a monitor's target: `https://10.20.0.1:8443/x` and `10.20.0.1` give `10.20.0.1`.
pub fn host_of(target: &str) -> &str {
    let rest = target.split_once("://").map_or(target, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or(rest);
    match host.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') => h,
        _ => host,
    }
}

/// One poll of one OLT, stored: what [`run`] does at each tick (and what tests call).
pub async fn poll_once(
    access: &Access,
    schedule: &Schedule,
    clock: &dyn Clock,
    window: Duration,
) -> Result<(), AccessError> {
    let target = schedule.target.clone();
    let name = target.name.clone();
    let polled = tokio::task::spawn_blocking(move || olt::poll(&target))
        .await
        .unwrap_or_else(|e| {
            Err(olt::PollError::Protocol {
                olt: name,
                problem: format!("the poll stopped: {e}"),
            })
        });
    let olt = schedule.target.name.as_str();
    let now = clock.now().0;
    let window = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    let (prev, open) = (access.table(olt)?, access.open_incidents(olt)?);
    let unreachable = open.iter().find(|i| i.kind == IncidentKind::OltUnreachable);
    match polled {
        Ok(rows) => {
            let (table, transitions) = track(&prev, rows, now);
            let mut steps = assess(now, window, &table, &open);
            steps.extend(assess_reachability(true, unreachable));
            access.record(olt, now, Ok((&table, &transitions)), &steps)
        }
        Err(e) => {
            tracing::warn!(olt, error = %e, "olt.poll_failed");
            let steps: Vec<Step> = assess_reachability(false, unreachable)
                .into_iter()
                .collect();
            access.record(olt, now, Err(&e.to_string()), &steps)
        }
    }
}

/// Polls each OLT on its schedule until shutdown: one task per OLT, asleep between polls.
pub async fn run(
    access: Arc<Access>,
    schedules: Vec<Schedule>,
    window: Duration,
    clock: Arc<dyn Clock>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let tasks: Vec<_> = schedules
        .into_iter()
        .map(|s| {
            let (access, clock, mut shutdown) =
                (Arc::clone(&access), Arc::clone(&clock), shutdown.clone());
            tokio::spawn(async move {
                loop {
                    if let Err(e) = poll_once(&access, &s, clock.as_ref(), window).await {
                        tracing::error!(olt = %s.target.name, error = %e, "olt.store_failed");
                    }
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        () = tokio::time::sleep(s.every) => {}
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(slot: u32) -> PonPort {
        PonPort {
            frame: 0,
            slot,
            port: 0,
        }
    }

    fn onu(slot: u32, n: u32, state: OnuState) -> Onu {
        Onu {
            port: port(slot),
            onu: n,
            serial: Some(format!("HWTC{n:08X}")),
            description: None,
            state,
            rx_dbm: None,
            tx_dbm: None,
        }
    }

    /// Applies steps the way the store does, numbering new incidents from 1.
    fn apply(open: &mut Vec<Incident>, steps: &[Step], now: i64) {
        for s in steps {
            match s {
                Step::Open {
                    kind,
                    port,
                    onus,
                    of,
                } => open.push(Incident {
                    id: open.iter().map(|i| i.id).max().unwrap_or(0) + 1,
                    olt: "olt".into(),
                    kind: *kind,
                    port: port.map(|p| p.to_string()),
                    onus: onus.clone(),
                    of: *of,
                    started: now,
                    ended: None,
                    affected: Vec::new(),
                }),
                Step::Update { id, onus, of } => {
                    let i = open.iter_mut().find(|i| i.id == *id).unwrap();
                    i.onus = onus.clone();
                    i.of = of.or(i.of);
                }
                Step::Close { id } => open.retain(|i| i.id != *id),
            }
        }
    }

    #[test]
    fn one_onu_down_is_the_customers_and_others_following_soon_make_it_a_port_outage() {
        use OnuState::*;
        let window = 180_000;
        let all_up: Vec<Onu> = (0..8).map(|n| onu(1, n, Online)).collect();
        let (t0, ch) = track(&[], all_up.clone(), 0);
        assert_eq!(ch.len(), 8, "first seen ONUs are transitions from nothing");
        let mut open = Vec::new();
        let steps = assess(0, window, &t0, &open);
        apply(&mut open, &steps, 0);
        assert!(open.is_empty());

        // One ONU down: a customer fault.
        let mut p1 = all_up.clone();
        p1[0].state = DyingGasp;
        let (t1, ch) = track(&t0, p1.clone(), 60_000);
        assert_eq!(ch.len(), 1);
        assert_eq!(ch[0].from, Some(Online));
        let steps = assess(60_000, window, &t1, &open);
        apply(&mut open, &steps, 60_000);
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].kind, IncidentKind::CustomerFault);

        // Two more within the window: one port outage of three, the fault folded in.
        let mut p2 = p1.clone();
        p2[1].state = Los;
        p2[2].state = Los;
        let (t2, _) = track(&t1, p2.clone(), 120_000);
        let steps = assess(120_000, window, &t2, &open);
        apply(&mut open, &steps, 120_000);
        assert_eq!(open.len(), 1, "{open:?}");
        assert_eq!(open[0].kind, IncidentKind::PortOutage);
        assert_eq!(open[0].onus.len(), 3);
        assert_eq!(
            (open[0].port.as_deref(), open[0].of),
            (Some("0/1/0"), Some(8))
        );

        // A fourth joins it; then all but one come back: it follows, then ends.
        let mut p3 = p2.clone();
        p3[3].state = Offline;
        let (t3, _) = track(&t2, p3.clone(), 600_000);
        let steps = assess(600_000, window, &t3, &open);
        apply(&mut open, &steps, 600_000);
        assert_eq!(open[0].onus.len(), 4, "a later ONU down joins the outage");
        let mut p4 = all_up.clone();
        p4[2].state = Los;
        let (t4, _) = track(&t3, p4, 660_000);
        let steps = assess(660_000, window, &t4, &open);
        apply(&mut open, &steps, 660_000);
        assert_eq!((open.len(), open[0].onus.len()), (1, 1));
        let (t5, _) = track(&t4, all_up, 720_000);
        let steps = assess(720_000, window, &t5, &open);
        assert_eq!(steps, vec![Step::Close { id: open[0].id }]);
    }

    #[test]
    fn onus_already_down_when_first_seen_open_nothing_and_join_no_outage() {
        use OnuState::*;
        let window = 180_000;
        // Three ONUs of the port were offline before we ever looked: months-old, not news.
        let first: Vec<Onu> = (0..8)
            .map(|n| onu(1, n, if n < 3 { Offline } else { Online }))
            .collect();
        let (t0, _) = track(&[], first.clone(), 0);
        assert!(t0.iter().all(|t| t.since.is_none()));
        assert_eq!(assess(0, window, &t0, &[]), vec![]);
        // Three more go down: an outage of those three only.
        let mut next = first.clone();
        for o in next.iter_mut().skip(3).take(3) {
            o.state = Los;
        }
        let (t1, _) = track(&t0, next, 60_000);
        let mut open = Vec::new();
        let steps = assess(60_000, window, &t1, &open);
        apply(&mut open, &steps, 60_000);
        assert_eq!(open.len(), 1);
        let members: Vec<u32> = open[0].onus.iter().map(|o| o.onu).collect();
        assert_eq!(members, vec![3, 4, 5]);
        // They come back: it ends, though the old three are still offline.
        let (t2, _) = track(&t1, first, 120_000);
        assert_eq!(
            assess(120_000, window, &t2, &open),
            vec![Step::Close { id: open[0].id }]
        );
    }

    #[test]
    fn onus_going_down_far_apart_stay_separate_faults() {
        use OnuState::*;
        let window = 180_000;
        let mut states: Vec<Onu> = (0..8).map(|n| onu(1, n, Online)).collect();
        let (mut table, _) = track(&[], states.clone(), 0);
        let mut open = Vec::new();
        for (k, at) in [(0usize, 1_000_000i64), (1, 2_000_000), (2, 3_000_000)] {
            states[k].state = Los;
            (table, _) = track(&table, states.clone(), at);
            let steps = assess(at, window, &table, &open);
            apply(&mut open, &steps, at);
        }
        assert_eq!(open.len(), 3);
        assert!(open.iter().all(|i| i.kind == IncidentKind::CustomerFault));
        // One comes back: its fault ends, the others stay.
        states[1].state = Online;
        (table, _) = track(&table, states.clone(), 3_100_000);
        let steps = assess(3_100_000, window, &table, &open);
        apply(&mut open, &steps, 3_100_000);
        assert_eq!(open.len(), 2);
        // A fault whose state changes (LOS to dying gasp) is updated, not reopened.
        states[0].state = DyingGasp;
        (table, _) = track(&table, states.clone(), 3_200_000);
        let steps = assess(3_200_000, window, &table, &open);
        assert!(
            matches!(steps.as_slice(), [Step::Update { .. }]),
            "{steps:?}"
        );
    }

    #[test]
    fn an_unreachable_olt_is_one_incident_and_its_end() {
        let open_step = assess_reachability(false, None).unwrap();
        assert!(matches!(
            open_step,
            Step::Open {
                kind: IncidentKind::OltUnreachable,
                ..
            }
        ));
        let mut open = Vec::new();
        apply(&mut open, &[open_step], 0);
        assert_eq!(assess_reachability(false, open.first()), None);
        assert_eq!(
            assess_reachability(true, open.first()),
            Some(Step::Close { id: open[0].id })
        );
        assert_eq!(assess_reachability(true, None), None);
    }

    #[test]
    fn monitor_targets_read_as_hosts() {
        assert_eq!(host_of("10.20.0.1"), "10.20.0.1");
        assert_eq!(host_of("https://10.20.0.1:8443/status"), "10.20.0.1");
        assert_eq!(
            host_of("olt-levis.example.net:161"),
            "olt-levis.example.net"
        );
    }

    #[test]
    fn the_store_keeps_tables_transitions_incidents_and_their_events() {
        let dir = tempfile::tempdir().unwrap();
        let a = Access::open(
            &dir.path().join("hub.sqlite3"),
            false,
            vec![("olt".into(), "10.20.0.1".into())],
        )
        .unwrap();
        let up: Vec<Onu> = (0..4).map(|n| onu(1, n, OnuState::Online)).collect();
        let (t0, tr0) = track(&[], up, 1_000);
        a.record(
            "olt",
            1_000,
            Ok((&t0, &tr0)),
            &assess(1_000, 180_000, &t0, &[]),
        )
        .unwrap();
        let rows: Vec<Onu> = (0..4)
            .map(|n| {
                onu(
                    1,
                    n,
                    if n < 3 {
                        OnuState::Los
                    } else {
                        OnuState::Online
                    },
                )
            })
            .collect();
        let (table, transitions) = track(&t0, rows, 5_000);
        let steps = assess(5_000, 180_000, &table, &[]);
        a.record("olt", 5_000, Ok((&table, &transitions)), &steps)
            .unwrap();
        assert_eq!(a.table("olt").unwrap(), table);
        let open = a.open_incidents("olt").unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].kind, IncidentKind::PortOutage);
        let line = a.line("HWTC00000001").unwrap().unwrap();
        assert_eq!((line.port.as_str(), line.state), ("0/1/0", OnuState::Los));
        assert_eq!(line.incident.as_ref().map(|i| i.id), Some(open[0].id));

        let unreachable = assess_reachability(false, None).unwrap();
        a.record(
            "olt",
            65_000,
            Err("the OLT olt does not answer"),
            &[unreachable],
        )
        .unwrap();
        assert_eq!(a.table("olt").unwrap(), table, "silence changes no ONU");
        let pic = a
            .picture(
                70_000,
                &[super::super::alerts::Monitor {
                    id: 1,
                    name: "OLT ping".into(),
                    target: Some("10.20.0.1".into()),
                    up: false,
                    since: "2026-12-01 03:00:00.000".into(),
                    message: None,
                }],
            )
            .unwrap();
        assert_eq!(pic.olts[0].reachable, Some(false));
        assert_eq!(pic.olts[0].onus_down, 3);
        assert_eq!(
            pic.olts[0].monitor.as_ref().map(|m| m.name.as_str()),
            Some("OLT ping")
        );
        assert!(pic.monitors_down.is_empty(), "joined to its OLT");
        assert_eq!(pic.incidents.len(), 2);
        let events = a.events_after(0, 100).unwrap();
        let seqs: Vec<i64> = events.iter().map(NetworkEvent::seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]) && seqs[0] > 0,
            "{seqs:?}"
        );
        assert!(
            events.iter().any(
                |e| matches!(e, NetworkEvent::Olt { olt, .. } if olt.reachable == Some(false))
            )
        );
        assert_eq!(a.events_after(*seqs.last().unwrap(), 10).unwrap(), vec![]);
    }
}
