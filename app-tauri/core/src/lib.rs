//! The app's core, free of Tauri: the local replica and the sync client.
//!
//! # Flow
//!
//! [`Replica`] keeps every document of the device's scope in SQLite: the Automerge bytes, the
//! materialized, indexed rows that screens query, the outbox of local changes and the sync point.
//! A local edit ([`Replica::update`] and friends) is one SQLite transaction — the Automerge change,
//! the materialized rows and the outbox entry commit together or not at all — so killing the app at
//! any instant loses no edit whose call returned.
//!
//! Syncing ([`Replica::sync`]) sends the outbox and the cursor through a [`Transport`] and applies
//! the server's answer in one transaction: snapshots of documents entering the scope, changes to
//! documents already held, evictions, and rejections (with the server's copy to converge on).
//! Screens read the materialized tables; documents are loaded only while edited or merged.
//!
//! For the app: [`views`] builds the screens' view models (`shared::ipc`), [`device`] holds the
//! login (sealed by [`secrets`]) and the replica for it, and syncs without holding the replica
//! while a request is on the network; the edits screens make are methods of [`Replica`].

mod actions;
pub mod device;
#[cfg(feature = "http")]
pub mod live;
mod replica;
pub mod secrets;
mod sync_client;
pub mod views;

pub use replica::{
    ConflictRow, EquipmentRow, JobRow, RejectionRow, Replica, ReplicaBackup, ReplicaError,
    ReplicaStatus, SearchHit,
};
#[cfg(feature = "http")]
pub use sync_client::http::{Http, HttpTransport, client as http_client};
pub use sync_client::{SyncReport, SyncStep, Transport, TransportError};
