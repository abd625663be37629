//! The domain model and sync core shared by the app, its UI and the sync server.
//!
//! # Bird's-eye view
//!
//! * [`model`]: the replicated entities (customers, service locations, equipment, subscriptions,
//!   dispatch jobs, technicians, tags) with validated values and the job status state machine.
//! * [`record`]: the flat form of an entity (registers and append-only collections) that the rest
//!   of the sync machinery works on, with per-field merge [`record::Policy`] and writers.
//! * [`merge`], [`auth`], [`dispatch`]: pure rules — settling concurrent writes, what a role may
//!   change, and which technician fits a job.
//! * [`crdt`] (feature `crdt`): one Automerge document per entity.
//! * [`ipc`]: what crosses between the app's UI and its shell (commands, view models, errors).
//! * [`protocol`] and [`sync`]: the versioned wire messages and the sans-IO engines for both sides.
//!
//! # Typical flow
//!
//! A replica edits an entity: it reads the [`record::Record`], checks the write with
//! [`auth::check`], writes the field changes with [`crdt::write`] and queues the change bytes in
//! its outbox. Syncing, it builds a request with [`sync::client::build_request`]; the server's
//! [`sync::server::ServerEngine::sync`] merges the changes, compensates forbidden ones, and answers
//! with everything in the client's scope after its cursor, which the replica applies.
//!
//! This crate does no I/O, spawns nothing and never reads the clock, the environment or a random
//! source: time and randomness come in as arguments. It builds for `wasm32-unknown-unknown`.

pub mod auth;
pub mod clock;
#[cfg(feature = "crdt")]
pub mod crdt;
pub mod dispatch;
pub mod ids;
pub mod ipc;
pub mod merge;
pub mod model;
pub mod network;
pub mod protocol;
pub mod record;
pub mod sync;
