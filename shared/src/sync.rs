//! The sans-IO sync engines.
//!
//! [`client`] turns an outbox into a request and a response into effects a replica executes in one
//! storage transaction. [`server`] (with the `crdt` feature) holds the server side: documents, the
//! change log with sequence numbers, scopes, snapshots for documents entering a scope, eviction
//! for documents leaving it, write authorization with compensating changes, and compaction. Neither
//! does I/O or reads a clock: callers pass time in and carry effects out.

pub mod client;
#[cfg(feature = "crdt")]
pub mod server;
