//! An in-process server and transport: the server engine behind the real codec, no sockets.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use app_tauri_core::{Replica, Transport, TransportError};
use chrono::NaiveDate;
use shared::clock::{Clock, FixedClock, Millis};
use shared::ids::{Author, DeviceId, DocId, Role};
use shared::protocol::{self, Message};
use shared::sync::server::{ServerConfig, ServerEngine, Subject};

use crate::data::Dataset;

/// The server engine shared by in-process transports.
#[derive(Debug, Clone)]
pub struct Hub {
    pub engine: Rc<RefCell<ServerEngine>>,
    pub clock: Arc<FixedClock>,
}

/// The server's own author.
pub fn server_author() -> Author {
    Author::new(Role::Server, DeviceId(DocId::from_u128(0x5e)))
}

impl Hub {
    pub fn new(config: ServerConfig, clock: Arc<FixedClock>) -> Self {
        Self {
            engine: Rc::new(RefCell::new(ServerEngine::new(config))),
            clock,
        }
    }

    pub fn today(&self) -> NaiveDate {
        self.clock.now().date()
    }

    /// Loads a data set as server-authored documents.
    pub fn seed(&self, data: &Dataset) -> anyhow::Result<()> {
        self.engine
            .borrow_mut()
            .insert_all(&data.entities, self.clock.now())?;
        Ok(())
    }

    /// Registers a device and returns a transport for it.
    pub fn connect(&self, author: Author, subject: Subject) -> Direct {
        self.engine
            .borrow_mut()
            .register(author.device, author, subject);
        Direct {
            hub: self.clone(),
            device: author.device,
        }
    }

    /// One exchange on raw frames, as an HTTP handler would do it.
    pub fn exchange(&self, device: DeviceId, frame: &[u8]) -> Vec<u8> {
        let msg = match protocol::decode(frame) {
            Ok(Message::Request(req)) => {
                match self
                    .engine
                    .borrow_mut()
                    .sync(device, &req, self.today(), self.clock.now())
                {
                    Ok((resp, _effects)) => Message::Response(resp),
                    Err(refusal) => Message::Refused(refusal),
                }
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
