//! The audit log of sign-ins and revocations: login links issued, redeemed (by which device) and
//! refused when used again, refused refreshes, revocations. Kept in the store (every instance
//! writes to and reads the same log), readable by the office at `GET /api/v1/audit`.

use serde::{Deserialize, Serialize};
use shared::ids::{DeviceId, DocId, TechnicianId};

use crate::accounts::OfficeRole;

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent {
    /// The office made a login link for a technician.
    LinkIssued {
        technician: TechnicianId,
        by: DeviceId,
    },
    /// A technician's device traded a login link for a session.
    LinkRedeemed {
        technician: TechnicianId,
        device: DeviceId,
    },
    /// A login link presented again after its first use (a leaked link, or a second app that
    /// caught it).
    LinkReused {
        technician: TechnicianId,
        device: DeviceId,
    },
    /// A session refused at refresh (already refreshed, revoked, or past its maximum age).
    RefreshRefused {
        device: DeviceId,
        reason: RefusalReason,
    },
    /// An admin revoked a token, a device's sessions or a technician's sessions.
    Revoked { what: String, by: DeviceId },
    /// An admin created an office account.
    AccountCreated {
        account: DocId,
        role: OfficeRole,
        by: DeviceId,
    },
    /// An admin changed an office account (disabled it, changed its role, sent a new link).
    AccountChanged {
        account: DocId,
        active: bool,
        role: OfficeRole,
        by: DeviceId,
    },
    /// An office account's device traded its login link for a session.
    AccountSignedIn { account: DocId, device: DeviceId },
    /// A login refused (a disabled account's link).
    LoginRefused {
        device: DeviceId,
        reason: RefusalReason,
    },
    /// Someone asked a customer's box to do something through the ACS (refresh, reboot), and
    /// what came of it (`done`, `queued`, `faulted`, `unreachable`, `refused`, `failed`).
    DeviceAction {
        equipment: DocId,
        /// The ACS's device id, when the box was found.
        device: Option<String>,
        action: crate::hub::acs::Action,
        outcome: String,
        by: DeviceId,
        role: shared::ids::Role,
    },
}

/// Why a sign-in or a refresh was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// The session, its device or its technician was revoked, or the token was refreshed.
    Revoked,
    /// The same token was refreshed twice.
    RefreshedAlready,
    /// The session reached its role's maximum age.
    TooOld,
    /// The office account is disabled or gone.
    AccountDisabled,
    /// An account's one-time link presented again.
    LinkReused,
}

/// An entry: when (Unix milliseconds) and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: i64,
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// The store key prefix of audit entries; keys sort by time.
pub const PREFIX: &str = "audit:";

impl AuditEntry {
    /// The store key: time first, so entries list in order; `nonce` keeps two entries of the
    /// same millisecond apart.
    pub fn key(&self, nonce: u64) -> String {
        format!("{PREFIX}{:015}:{nonce:016x}", self.at.max(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_typed_json_and_keys_sort_by_time() {
        let e = AuditEntry {
            at: 1_700_000_000_000,
            event: AuditEvent::LinkRedeemed {
                technician: TechnicianId(DocId::from_u128(1)),
                device: DeviceId(DocId::from_u128(2)),
            },
        };
        let json = serde_json::to_value(&e).unwrap_or_default();
        assert_eq!(json["event"], "link_redeemed");
        assert_eq!(json["at"], 1_700_000_000_000_i64);
        assert_eq!(
            serde_json::from_value::<AuditEntry>(json).ok(),
            Some(e.clone())
        );
        let later = AuditEntry {
            at: e.at + 1,
            ..e.clone()
        };
        assert!(e.key(u64::MAX) < later.key(0));
    }
}
