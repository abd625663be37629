//! Identifiers.
//!
//! Every entity has a client-generatable UUIDv7 so it can be created offline. Typed ids wrap it so a
//! job id can never be passed where a customer id is expected; [`DocId`] is the untyped id of the
//! entity's document, used by the sync layer which does not care about kinds.
//!
//! `shared` reads neither the clock nor a random source: callers pass both in.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::clock::Millis;

/// The id of one replicated document (one entity).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DocId(Uuid);

impl DocId {
    /// A UUIDv7 from a timestamp and ten random bytes supplied by the caller.
    pub fn new_v7(at: Millis, random: [u8; 10]) -> Self {
        let ms = u64::try_from(at.0).unwrap_or(0);
        Self(uuid::Builder::from_unix_timestamp_millis(ms, &random).into_uuid())
    }
    pub const fn from_u128(v: u128) -> Self {
        Self(Uuid::from_u128(v))
    }
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
    pub fn from_bytes(b: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(b))
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
impl fmt::Debug for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocId({})", self.0)
    }
}

/// An id that is not a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a valid id (expected a UUID)")]
pub struct BadId(pub String);

impl FromStr for DocId {
    type Err = BadId;
    fn from_str(s: &str) -> Result<Self, BadId> {
        Uuid::parse_str(s.trim())
            .map(Self)
            .map_err(|_| BadId(s.to_owned()))
    }
}

macro_rules! typed_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub DocId);
        impl $name {
            pub fn doc(self) -> DocId { self.0 }
        }
        impl From<$name> for DocId {
            fn from(v: $name) -> DocId { v.0 }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { self.0.fmt(f) }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0.as_uuid())
            }
        }
        impl FromStr for $name {
            type Err = BadId;
            fn from_str(s: &str) -> Result<Self, BadId> { s.parse().map(Self) }
        }
    };
}

typed_id!(
    /// A customer.
    CustomerId
);
typed_id!(
    /// A service location (`LOC-#####` in ERPNext).
    LocationId
);
typed_id!(
    /// A piece of service equipment (`EQP-#####`).
    EquipmentId
);
typed_id!(
    /// A service subscription (`SUB-#####`).
    SubscriptionId
);
typed_id!(
    /// A dispatch job.
    JobId
);
typed_id!(
    /// A dispatch technician.
    TechnicianId
);
typed_id!(
    /// A skill tag.
    TagId
);
typed_id!(
    /// One device (a phone or laptop install of the app, or a server process).
    DeviceId
);

/// What an author is allowed to do; encoded in the first byte of its Automerge actor id, so merge
/// policies can tell a technician's write from a dispatcher's without any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    Technician,
    Dispatcher,
    Admin,
    /// The sync server itself: ERPNext's edits, compensating changes and compactions.
    Server,
}

impl Role {
    fn tag(self) -> u8 {
        match self {
            Role::Technician => b'T',
            Role::Dispatcher => b'D',
            Role::Admin => b'A',
            Role::Server => b'S',
        }
    }
    fn from_tag(b: u8) -> Option<Self> {
        Some(match b {
            b'T' => Role::Technician,
            b'D' => Role::Dispatcher,
            b'A' => Role::Admin,
            b'S' => Role::Server,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Technician => "technician",
            Role::Dispatcher => "dispatcher",
            Role::Admin => "admin",
            Role::Server => "server",
        }
    }
    /// Office roles edit schedules and assignments.
    pub fn is_office(self) -> bool {
        matches!(self, Role::Dispatcher | Role::Admin)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The author of changes: a role and the device it writes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Author {
    pub role: Role,
    pub device: DeviceId,
}

impl Author {
    pub const ENCODED_LEN: usize = 17;

    /// ERPNext's office, as the bridge writes its edits: an office author like a dispatcher (a
    /// concurrent dispatcher edit is a listed conflict, not a silent win), distinct from the
    /// server's own seeding and compensating changes.
    pub const ERPNEXT: Author = Author {
        role: Role::Server,
        device: DeviceId(DocId::from_u128(0x0000_0000_0000_7000_8000_4552_504e_7874)),
    };

    /// Whether this is [`Author::ERPNEXT`].
    pub fn is_erpnext(&self) -> bool {
        *self == Self::ERPNEXT
    }

    pub fn new(role: Role, device: DeviceId) -> Self {
        Self { role, device }
    }
    /// The bytes used as the Automerge actor id.
    pub fn to_actor_bytes(&self) -> [u8; 17] {
        let mut out = [0u8; 17];
        out[0] = self.role.tag();
        out[1..].copy_from_slice(self.device.doc().as_bytes());
        out
    }
    /// Parses an Automerge actor id written by [`Author::to_actor_bytes`] or [`Actor::to_bytes`]
    /// (any incarnation).
    pub fn from_actor_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != Self::ENCODED_LEN && b.len() != Self::ENCODED_LEN + 4 {
            return None;
        }
        let b = &b[..Self::ENCODED_LEN];
        let role = Role::from_tag(b[0])?;
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[1..]);
        Some(Self {
            role,
            device: DeviceId(DocId::from_bytes(id)),
        })
    }
}

/// Who writes a change: an author in one incarnation of its replica. A replica that finds
/// itself behind its own history (restored from an older backup) continues under a new
/// incarnation, so it never reuses a change sequence the server already holds. Incarnation 0 is
/// the author's plain actor id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Actor {
    pub author: Author,
    pub incarnation: u32,
}

impl Actor {
    /// The Automerge actor id: the author's bytes, then the incarnation (big-endian) if not 0.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.author.to_actor_bytes().to_vec();
        if self.incarnation != 0 {
            out.extend_from_slice(&self.incarnation.to_be_bytes());
        }
        out
    }
}

impl From<Author> for Actor {
    fn from(author: Author) -> Self {
        Self {
            author,
            incarnation: 0,
        }
    }
}

impl From<&Author> for Actor {
    fn from(author: &Author) -> Self {
        Self::from(*author)
    }
}
