//! The versioned sync protocol: messages and their binary codec.
//!
//! One exchange is one round trip: the client sends a [`SyncRequest`] (its cursor and its outbox),
//! the server answers a [`SyncResponse`] (what it accepted, and everything in the client's scope
//! after the cursor). See `shared/docs/sync-protocol.md` for the whole story.
//!
//! Frame: `b"FSMS"`, protocol version (u16 LE), schema version (u16 LE), then the postcard body.
//! A frame from a newer protocol is refused with [`DecodeError::UnsupportedVersion`] before the
//! body is read, so an old client can tell its user to update.

use serde::{Deserialize, Serialize};

use crate::ids::{Author, DocId};
use crate::record::{EntityKind, Record};

/// The protocol this build speaks.
pub const PROTOCOL_VERSION: u16 = 3;
/// The oldest protocol this build still accepts (3 added the overridden values beside the
/// conflicts; a version-2 app is told to update).
pub const MIN_PROTOCOL_VERSION: u16 = 3;
/// The entity schema version (field names and meanings).
pub const SCHEMA_VERSION: u16 = 1;

const MAGIC: &[u8; 4] = b"FSMS";
const HEADER_LEN: usize = 8;

/// Who is syncing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientHello {
    /// The author whose changes this client pushes; it must match the registered device.
    pub author: Author,
    pub app_version: String,
}

/// The local changes to one document, in causal order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushDoc {
    pub doc: DocId,
    pub kind: EntityKind,
    /// The compaction epoch the changes were made on.
    pub epoch: u32,
    pub changes: Vec<Vec<u8>>,
}

/// Client → server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncRequest {
    pub hello: ClientHello,
    /// The server sequence number the client has everything up to (0: nothing).
    pub cursor: u64,
    /// The server's token for the set of documents this client holds, from the last response.
    pub token: u64,
    /// The highest outbox sequence number included in `push`.
    pub outbox_upto: u64,
    pub push: Vec<PushDoc>,
}

/// A whole document, sent when it enters the client's scope or was compacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub doc: DocId,
    pub kind: EntityKind,
    pub epoch: u32,
    pub bytes: Vec<u8>,
    /// The server's materialization of `bytes`, so a new replica can fill its tables without
    /// loading thousands of documents.
    pub record: Record,
    /// Open conflicts in `bytes`, for the same reason.
    pub conflicts: Vec<crate::merge::FieldConflict>,
    /// Values settled against a person in `bytes` (shown to them, no decision needed).
    pub overridden: Vec<crate::merge::FieldConflict>,
}

/// Changes to a document the client already holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocChanges {
    pub doc: DocId,
    pub kind: EntityKind,
    pub epoch: u32,
    pub changes: Vec<Vec<u8>>,
    /// The server's materialization after these changes. A client whose copy holds nothing the
    /// server has not seen reaches exactly this state (the merge is deterministic), so it can
    /// store the changes and the record without loading the document.
    pub record: Record,
    pub conflicts: Vec<crate::merge::FieldConflict>,
    /// Every value settled against a person in the document after these changes.
    pub overridden: Vec<crate::merge::FieldConflict>,
    /// `record` holds only the registers and collection items these changes touched (their
    /// values after them); the rest is as the client's clean copy has it. What a change costs on
    /// the wire then grows with the change, not with the document.
    pub partial: bool,
}

/// Why the server refused a pushed document's changes. The response carries the server's copy so
/// the client can drop what was refused and converge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RejectReason {
    CorruptChange(String),
    /// A change is signed by another actor than the pushing client's.
    UnknownActor,
    MissingDependencies,
    /// The entity would not be valid; the message names the field.
    Invalid(String),
    /// The document was compacted since; rebase the local edits on the snapshot and push again.
    StaleEpoch {
        current: u32,
    },
    KindMismatch,
    /// The document is not one this device can see.
    OutOfScope,
    /// A change reuses a sequence number of this device's that the server already holds with
    /// other content: the replica is behind its own history (restored from an older backup). It
    /// continues under a fresh actor incarnation and rebases its edits on the snapshot.
    ReusedSequence,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    pub doc: DocId,
    pub reason: RejectReason,
    /// The server's current document (absent if the server has none).
    pub snapshot: Option<Snapshot>,
}

/// Server → client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncResponse {
    /// The request cursor this answers; a client whose cursor moved on ignores the response.
    pub base_cursor: u64,
    pub base_token: u64,
    pub cursor: u64,
    pub token: u64,
    /// Outbox entries up to this sequence number are safely stored on the server.
    pub acked_outbox: u64,
    pub snapshots: Vec<Snapshot>,
    pub changes: Vec<DocChanges>,
    /// Documents that left the client's scope.
    pub evict: Vec<DocId>,
    pub rejected: Vec<Rejection>,
    /// More is waiting: sync again right away.
    pub more: bool,
    /// The server did not know what the client holds and is sending its whole scope again
    /// (in this and the following `more` responses): documents not sent by the end leave.
    pub full_resync: bool,
}

/// A refusal of the whole exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SyncRefusal {
    #[error("this device is not registered with the server")]
    UnknownClient,
    #[error(
        "the app is too old for this server (protocol {got}, at least {min} needed): update the app"
    )]
    ClientTooOld { got: u16, min: u16 },
    #[error("app version {version} is no longer supported (at least {min} needed): update the app")]
    AppTooOld { version: String, min: String },
    #[error("the request is too large: {what}")]
    TooLarge { what: String },
}

/// Everything that travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    Request(SyncRequest),
    Response(SyncResponse),
    Refused(SyncRefusal),
}

/// A frame that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message is truncated ({0} bytes)")]
    Truncated(usize),
    #[error("not a sync message (bad magic)")]
    BadMagic,
    #[error("protocol version {got} is not supported (this build speaks {min} to {max})")]
    UnsupportedVersion { got: u16, min: u16, max: u16 },
    #[error("schema version {got} is newer than this build's {max}: update the app")]
    UnsupportedSchema { got: u16, max: u16 },
    #[error("malformed message body: {0}")]
    Malformed(String),
}

/// Encodes a message with the current versions.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    out.extend_from_slice(&SCHEMA_VERSION.to_le_bytes());
    // Serializing into a Vec only fails for types postcard cannot represent; ours are all plain.
    match postcard::to_extend(msg, out) {
        Ok(v) => v,
        Err(e) => unreachable!("sync messages always serialize: {e}"),
    }
}

/// Reads the versions of a frame without decoding the body.
pub fn peek_versions(bytes: &[u8]) -> Result<(u16, u16), DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::Truncated(bytes.len()));
    }
    if &bytes[..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    Ok((
        u16::from_le_bytes([bytes[4], bytes[5]]),
        u16::from_le_bytes([bytes[6], bytes[7]]),
    ))
}

/// Decodes a frame; never panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let (protocol, schema) = peek_versions(bytes)?;
    if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&protocol) {
        return Err(DecodeError::UnsupportedVersion {
            got: protocol,
            min: MIN_PROTOCOL_VERSION,
            max: PROTOCOL_VERSION,
        });
    }
    if schema > SCHEMA_VERSION {
        return Err(DecodeError::UnsupportedSchema {
            got: schema,
            max: SCHEMA_VERSION,
        });
    }
    let (msg, rest) = postcard::take_from_bytes::<Message>(&bytes[HEADER_LEN..])
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{DeviceId, Role};
    use proptest::prelude::*;

    fn sample() -> Message {
        Message::Request(SyncRequest {
            hello: ClientHello {
                author: Author::new(Role::Technician, DeviceId(DocId::from_u128(7))),
                app_version: "0.1.0".into(),
            },
            cursor: 42,
            token: 5,
            outbox_upto: 3,
            push: vec![PushDoc {
                doc: DocId::from_u128(1),
                kind: EntityKind::Job,
                epoch: 0,
                changes: vec![vec![1, 2, 3]],
            }],
        })
    }

    #[test]
    fn round_trip_and_versions() {
        let bytes = encode(&sample());
        assert_eq!(decode(&bytes).unwrap(), sample());
        let mut future = bytes.clone();
        future[4] = 9;
        assert_eq!(
            decode(&future),
            Err(DecodeError::UnsupportedVersion {
                got: 9,
                min: MIN_PROTOCOL_VERSION,
                max: PROTOCOL_VERSION
            })
        );
        let mut schema = bytes;
        schema[6] = 9;
        assert!(matches!(
            decode(&schema),
            Err(DecodeError::UnsupportedSchema { .. })
        ));
        assert_eq!(decode(b"FSM"), Err(DecodeError::Truncated(3)));
        assert_eq!(decode(b"GARBAGE!!"), Err(DecodeError::BadMagic));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = encode(&sample());
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "truncated at {n}");
        }
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut framed = b"FSMS\x01\x00\x01\x00".to_vec();
            framed.extend_from_slice(&body);
            let _ = decode(&framed);
            let _ = decode(&body);
        }

        #[test]
        fn bit_flips_never_panic(pos in 8usize..64, bit in 0u8..8) {
            let mut bytes = encode(&sample());
            let p = pos % bytes.len();
            bytes[p] ^= 1 << bit;
            let _ = decode(&bytes);
        }
    }
}
