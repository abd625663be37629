//! An in-process server and transport: the server engine behind the real codec, no sockets.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use app_tauri_core::{Replica, Transport, TransportError};
use chrono::NaiveDate;
use shared::clock::{Clock, FixedClock, Millis};
use shared::ids::{Author, DeviceId, DocId, Role};
use shared::protocol::{self, Message};
use shared::record::Record;
use shared::sync::server::{
    ServerConfig, ServerEffect, ServerEngine, StoredDoc, StoredLog, Subject,
};

use crate::data::Dataset;

/// The server engines shared by in-process transports: instance 0 (`engine`) and, once started,
/// a second instance on the same durable store, as two server processes on one PostgreSQL.
/// Everything an exchange persists goes to [`Durable`], so an instance can be restarted from it
/// (losing its in-memory sessions, as a real restart does).
#[derive(Debug, Clone)]
pub struct Hub {
    pub engine: Rc<RefCell<ServerEngine>>,
    pub clock: Arc<FixedClock>,
    second: Rc<RefCell<Option<ServerEngine>>>,
    durable: Rc<RefCell<Durable>>,
    config: ServerConfig,
    /// Who each device is (from its token), and which instances have it registered.
    devices: Rc<RefCell<std::collections::HashMap<DeviceId, Registered>>>,
}

/// A device as the hub knows it: its author, its scope and on which instances it is registered.
type Registered = (Author, Subject, [bool; 2]);

/// What a store keeps: documents, the log, where each device stands. Applies effects exactly as
/// the SQLite and PostgreSQL stores do.
#[derive(Debug, Clone, Default)]
pub struct Durable {
    docs: std::collections::BTreeMap<DocId, StoredDoc>,
    log: std::collections::BTreeMap<u64, StoredLog>,
    cursors: std::collections::HashMap<DeviceId, (u64, Millis)>,
    /// Per device and document: held (`None`) or released at.
    held: std::collections::HashMap<(DeviceId, DocId), Option<Millis>>,
    /// When the store was restored from a backup, as the operator records it.
    restored_at: Option<Millis>,
}

impl Durable {
    fn persist(&mut self, effects: &[ServerEffect]) {
        for e in effects {
            match e {
                ServerEffect::PutDoc {
                    doc,
                    kind,
                    epoch,
                    bytes,
                } => {
                    self.docs.insert(
                        *doc,
                        StoredDoc {
                            doc: *doc,
                            kind: *kind,
                            epoch: *epoch,
                            bytes: bytes.clone(),
                        },
                    );
                }
                ServerEffect::AppendLog {
                    seq,
                    doc,
                    origin,
                    change,
                } => {
                    self.log.insert(
                        *seq,
                        StoredLog {
                            seq: *seq,
                            doc: *doc,
                            origin: *origin,
                            change: Some(change.clone()),
                        },
                    );
                }
                ServerEffect::Compacted { doc, seq, .. } => {
                    self.log.retain(|s, l| l.doc != *doc || *s >= *seq);
                    self.log.insert(
                        *seq,
                        StoredLog {
                            seq: *seq,
                            doc: *doc,
                            origin: None,
                            change: None,
                        },
                    );
                }
                ServerEffect::Conflicts { .. } => {}
                ServerEffect::DeviceCursor { device, cursor, at } => {
                    self.cursors.insert(*device, (*cursor, *at));
                }
                ServerEffect::Held {
                    device,
                    held,
                    released,
                    reset,
                    at,
                } => {
                    for ((d, _), until) in &mut self.held {
                        if *reset && d == device && until.is_none() {
                            *until = Some(*at);
                        }
                    }
                    for doc in held {
                        self.held.insert((*device, *doc), None);
                    }
                    for doc in released {
                        if let Some(until) = self.held.get_mut(&(*device, *doc))
                            && until.is_none()
                        {
                            *until = Some(*at);
                        }
                    }
                }
            }
        }
    }

    /// The records of the documents this store holds, read through their merge policies.
    pub fn records(&self) -> Vec<Record> {
        self.docs
            .values()
            .filter_map(|d| {
                let doc = shared::crdt::load(&d.bytes).ok()?;
                Some(shared::crdt::read(&doc, d.kind).record)
            })
            .collect()
    }

    /// What was written after `head`: the log entries and the documents they touched.
    fn since(&self, head: u64) -> (Vec<StoredDoc>, Vec<StoredLog>) {
        let log: Vec<StoredLog> = self
            .log
            .range(head.saturating_add(1)..)
            .map(|(_, l)| l.clone())
            .collect();
        let touched: std::collections::BTreeSet<DocId> = log.iter().map(|l| l.doc).collect();
        let docs = touched
            .iter()
            .filter_map(|d| self.docs.get(d).cloned())
            .collect();
        (docs, log)
    }

    /// Which of `docs` the device holds, or released at or after `since`.
    fn held(&self, device: DeviceId, docs: &[DocId], since: Millis) -> Vec<DocId> {
        docs.iter()
            .copied()
            .filter(|d| {
                self.held
                    .get(&(device, *d))
                    .is_some_and(|u| u.is_none_or(|at| at >= since))
            })
            .collect()
    }

    /// The lowest position of the devices seen at or after `since`; nothing within the
    /// retention after a restore (as the service does).
    fn horizon(&self, since: Millis) -> u64 {
        if self.restored_at.is_some_and(|r| r >= since) {
            return 0;
        }
        self.cursors
            .values()
            .filter(|(_, at)| *at >= since)
            .map(|(c, _)| *c)
            .min()
            .unwrap_or(u64::MAX)
    }
}

/// How long a device's offline work on a document that left its scope is accepted (the
/// server's default retention).
const GRACE_MS: i64 = 30 * 86_400_000;

/// The server's own author.
pub fn server_author() -> Author {
    Author::new(Role::Server, DeviceId(DocId::from_u128(0x5e)))
}

impl Hub {
    pub fn new(config: ServerConfig, clock: Arc<FixedClock>) -> Self {
        Self {
            engine: Rc::new(RefCell::new(ServerEngine::new(config.clone()))),
            clock,
            second: Rc::new(RefCell::new(None)),
            durable: Rc::new(RefCell::new(Durable::default())),
            config,
            devices: Rc::new(RefCell::new(std::collections::HashMap::new())),
        }
    }

    pub fn today(&self) -> NaiveDate {
        self.clock.now().date()
    }

    /// Loads a data set as server-authored documents.
    pub fn seed(&self, data: &Dataset) -> anyhow::Result<()> {
        let effects = self
            .engine
            .borrow_mut()
            .insert_all(&data.entities, self.clock.now())?;
        self.durable.borrow_mut().persist(&effects);
        Ok(())
    }

    /// Registers (or re-registers) a device with instance 0 and returns a transport for it.
    pub fn connect(&self, author: Author, subject: Subject) -> Direct {
        self.engine
            .borrow_mut()
            .register(author.device, author, subject);
        self.devices
            .borrow_mut()
            .insert(author.device, (author, subject, [true, false]));
        Direct {
            hub: self.clone(),
            device: author.device,
        }
    }

    /// Runs `f` on instance `i` (0 or 1) after it caught up on the store, and persists what it
    /// did, as one critical section of a server instance.
    pub fn on<T>(
        &self,
        i: usize,
        f: impl FnOnce(&mut ServerEngine) -> (T, Vec<ServerEffect>),
    ) -> anyhow::Result<T> {
        let mut second = self.second.borrow_mut();
        let mut first = self.engine.borrow_mut();
        let engine: &mut ServerEngine = match (i, second.as_mut()) {
            (1, Some(e)) => e,
            _ => &mut first,
        };
        let (docs, log) = self.durable.borrow().since(engine.head());
        engine.absorb(docs, log)?;
        let (out, effects) = f(engine);
        self.durable.borrow_mut().persist(&effects);
        Ok(out)
    }

    /// Starts the second instance on the same store (or restarts it).
    pub fn start_second(&self) -> anyhow::Result<()> {
        let e = self.restored(2)?;
        *self.second.borrow_mut() = Some(e);
        for d in self.devices.borrow_mut().values_mut() {
            d.2[1] = false;
        }
        Ok(())
    }

    fn restored(&self, seed: u64) -> anyhow::Result<ServerEngine> {
        let durable = self.durable.borrow();
        Ok(ServerEngine::restore(
            self.config.clone(),
            durable.docs.values().cloned().collect(),
            durable.log.values().cloned().collect(),
            seed.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        )?)
    }

    /// Restarts instance 0 from the store: its sessions are gone, as after a process restart.
    pub fn restart(&self, seed: u64) -> anyhow::Result<()> {
        let e = self.restored(seed)?;
        *self.engine.borrow_mut() = e;
        for d in self.devices.borrow_mut().values_mut() {
            d.2[0] = false;
        }
        Ok(())
    }

    /// A copy of the store, as a nightly backup takes it.
    pub fn backup(&self) -> Durable {
        self.durable.borrow().clone()
    }

    /// The store is lost and replaced by an older `backup`; every instance restarts from it.
    pub fn restore(&self, mut backup: Durable, seed: u64) -> anyhow::Result<()> {
        // The operator's `sync-server restored` after putting the backup in place.
        backup.restored_at = Some(self.clock.now());
        *self.durable.borrow_mut() = backup;
        self.restart(seed)?;
        if self.second.borrow().is_some() {
            self.start_second()?;
        }
        Ok(())
    }

    /// Compacts on instance `i` under the durable horizon of devices seen within `retention_ms`.
    pub fn compact(&self, i: usize, retention_ms: i64) -> anyhow::Result<usize> {
        let now = self.clock.now();
        let horizon = self
            .durable
            .borrow()
            .horizon(Millis(now.0.saturating_sub(retention_ms)));
        self.on(i, |e| match e.compact(now, horizon) {
            Ok(effects) => {
                let n = effects
                    .iter()
                    .filter(|f| matches!(f, ServerEffect::Compacted { .. }))
                    .count();
                (Ok(n), effects)
            }
            Err(err) => (Err(err), Vec::new()),
        })?
        .map_err(Into::into)
    }

    /// Brings instance 0 up to date with what the other instance wrote (before reading it).
    pub fn catch_up(&self) -> anyhow::Result<()> {
        self.on(0, |_| ((), Vec::new()))
    }

    /// One exchange on raw frames with instance 0, as an HTTP handler would do it.
    pub fn exchange(&self, device: DeviceId, frame: &[u8]) -> Vec<u8> {
        self.exchange_on(0, device, frame)
    }

    /// One exchange on raw frames with instance `i`.
    pub fn exchange_on(&self, i: usize, device: DeviceId, frame: &[u8]) -> Vec<u8> {
        let i = if i == 1 && self.second.borrow().is_some() {
            1
        } else {
            0
        };
        let who = self.devices.borrow().get(&device).copied();
        let today = self.today();
        let now = self.clock.now();
        let msg = match protocol::decode(frame) {
            Ok(Message::Request(req)) => {
                let pushed: Vec<DocId> = req.push.iter().map(|p| p.doc).collect();
                let held = self.durable.borrow().held(
                    device,
                    &pushed,
                    Millis(now.0.saturating_sub(GRACE_MS)),
                );
                let answer = self.on(i, |engine| {
                    if let Some((author, subject, registered)) = who
                        && !registered[i]
                    {
                        engine.register(device, author, subject);
                    }
                    engine.allow_pushes(device, held);
                    match engine.sync(device, &req, today, now) {
                        Ok((resp, effects)) => (Message::Response(resp), effects),
                        Err(refusal) => (Message::Refused(refusal), Vec::new()),
                    }
                });
                if let Some(d) = self.devices.borrow_mut().get_mut(&device) {
                    d.2[i] = true;
                }
                answer.unwrap_or_else(|e| {
                    Message::Refused(shared::protocol::SyncRefusal::TooLarge {
                        what: format!("the store is unreadable: {e}"),
                    })
                })
            }
            Ok(_) | Err(_) => Message::Refused(shared::protocol::SyncRefusal::TooLarge {
                what: "unreadable request".into(),
            }),
        };
        protocol::encode(&msg)
    }
}

/// A transport that calls the hub directly.
#[derive(Debug, Clone)]
pub struct Direct {
    pub hub: Hub,
    pub device: DeviceId,
}

impl Transport for Direct {
    fn exchange(&mut self, request: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        Ok(self.hub.exchange(self.device, &request))
    }
}

/// A device id from a small number (tests).
pub fn device(n: u128) -> DeviceId {
    DeviceId(DocId::from_u128(0xd000 + n))
}

/// An in-memory replica for an author, on its own clock.
pub fn replica(author: Author, clock: Arc<FixedClock>, seed: u64) -> anyhow::Result<Replica> {
    Ok(Replica::open_in_memory(
        author,
        clock as Arc<dyn Clock>,
        Some(seed),
    )?)
}

/// A fixed instant: Monday 23 November 2026, 09:00 UTC.
pub fn monday_9am() -> Millis {
    Millis(1_795_424_400_000)
}
