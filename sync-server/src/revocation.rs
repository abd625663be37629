//! What is revoked: single tokens (a session refreshed or revoked, a login link used), and every
//! session of a device or of a technician issued up to a moment (a lost phone, someone who left).
//! Kept in the store's `revoked` table under a key each, mirrored in memory so checking a token
//! never waits for a sync.

use std::collections::{HashMap, HashSet};

use shared::ids::{DeviceId, DocId, TechnicianId};

use crate::auth::Session;

/// One revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// One token, by its id (random hex, never containing `:`).
    Token(String),
    /// Every session of a device issued at or before `upto` (Unix seconds).
    Device { device: DeviceId, upto: i64 },
    /// Every session of a technician, on any device, issued at or before `upto`.
    Technician { technician: TechnicianId, upto: i64 },
    /// Every session of an office account issued at or before `upto` (disabled, or its role
    /// changed).
    Account { account: DocId, upto: i64 },
}

impl Revocation {
    /// The key it is stored under: the token id, or `device:ID:UPTO` / `technician:ID:UPTO`.
    pub fn key(&self) -> String {
        match self {
            Revocation::Token(jti) => jti.clone(),
            Revocation::Device { device, upto } => format!("device:{device}:{upto}"),
            Revocation::Technician { technician, upto } => {
                format!("technician:{technician}:{upto}")
            }
            Revocation::Account { account, upto } => format!("account:{account}:{upto}"),
        }
    }

    /// Reads a stored key back.
    pub fn parse(key: &str) -> Self {
        let mut parts = key.splitn(3, ':');
        let (kind, id, upto) = (parts.next(), parts.next(), parts.next());
        let id = id.and_then(|i| i.parse::<DocId>().ok());
        let upto = upto.and_then(|u| u.parse::<i64>().ok());
        match (kind, id, upto) {
            (Some("device"), Some(id), Some(upto)) => Revocation::Device {
                device: DeviceId(id),
                upto,
            },
            (Some("technician"), Some(id), Some(upto)) => Revocation::Technician {
                technician: TechnicianId(id),
                upto,
            },
            (Some("account"), Some(account), Some(upto)) => Revocation::Account { account, upto },
            _ => Revocation::Token(key.to_owned()),
        }
    }
}

/// Everything revoked, as a token check reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revoked {
    tokens: HashSet<String>,
    devices: HashMap<DeviceId, i64>,
    technicians: HashMap<TechnicianId, i64>,
    accounts: HashMap<DocId, i64>,
}

impl Revoked {
    pub fn from_keys(keys: impl IntoIterator<Item = String>) -> Self {
        let mut r = Self::default();
        for k in keys {
            r.add(Revocation::parse(&k));
        }
        r
    }

    pub fn add(&mut self, r: Revocation) {
        match r {
            Revocation::Token(jti) => {
                self.tokens.insert(jti);
            }
            Revocation::Device { device, upto } => {
                let at = self.devices.entry(device).or_insert(upto);
                *at = (*at).max(upto);
            }
            Revocation::Technician { technician, upto } => {
                let at = self.technicians.entry(technician).or_insert(upto);
                *at = (*at).max(upto);
            }
            Revocation::Account { account, upto } => {
                let at = self.accounts.entry(account).or_insert(upto);
                *at = (*at).max(upto);
            }
        }
    }

    /// The latest revocation naming this device, technician or account (its `upto`).
    pub fn latest(
        &self,
        device: DeviceId,
        technician: Option<TechnicianId>,
        account: Option<DocId>,
    ) -> Option<i64> {
        [
            self.devices.get(&device),
            technician.and_then(|t| self.technicians.get(&t)),
            account.and_then(|a| self.accounts.get(&a)),
        ]
        .into_iter()
        .flatten()
        .copied()
        .max()
    }

    /// The `upto` of the revocation already naming the same device, technician or account.
    pub fn current(&self, what: &Revocation) -> Option<i64> {
        match what {
            Revocation::Token(_) => None,
            Revocation::Device { device, .. } => self.devices.get(device).copied(),
            Revocation::Technician { technician, .. } => self.technicians.get(technician).copied(),
            Revocation::Account { account, .. } => self.accounts.get(account).copied(),
        }
    }

    /// Whether a single token id is revoked (a used login link).
    pub fn token(&self, jti: &str) -> bool {
        self.tokens.contains(jti)
    }

    /// Whether a session is revoked: by itself, by its device, or by its technician.
    pub fn covers(&self, s: &Session) -> bool {
        let before = |upto: Option<&i64>| upto.is_some_and(|u| s.iat <= *u);
        self.tokens.contains(&s.jti)
            || before(self.devices.get(&s.device.author.device))
            || s.account.is_some_and(|a| before(self.accounts.get(&a)))
            || match s.device.subject {
                shared::sync::server::Subject::Technician(t) => before(self.technicians.get(&t)),
                shared::sync::server::Subject::Office => false,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Device;
    use shared::ids::{Author, Role};
    use shared::sync::server::Subject;

    fn session(device: u128, tech: Option<u128>, iat: i64) -> Session {
        Session {
            device: Device {
                author: Author::new(
                    if tech.is_some() {
                        Role::Technician
                    } else {
                        Role::Dispatcher
                    },
                    DeviceId(DocId::from_u128(device)),
                ),
                subject: tech.map_or(Subject::Office, |t| {
                    Subject::Technician(TechnicianId(DocId::from_u128(t)))
                }),
            },
            jti: format!("jti{device}{iat}"),
            iat,
            auth: iat,
            exp: iat + 3600,
            account: None,
        }
    }

    #[test]
    fn keys_round_trip_and_cover_what_they_name() {
        let all = [
            Revocation::Token("0a1b".into()),
            Revocation::Device {
                device: DeviceId(DocId::from_u128(1)),
                upto: 100,
            },
            Revocation::Technician {
                technician: TechnicianId(DocId::from_u128(9)),
                upto: 200,
            },
            Revocation::Account {
                account: DocId::from_u128(7),
                upto: 300,
            },
        ];
        for r in &all {
            assert_eq!(&Revocation::parse(&r.key()), r);
        }
        let revoked = Revoked::from_keys(all.iter().map(Revocation::key));
        assert!(
            revoked.covers(&session(1, None, 100)),
            "the device's old session"
        );
        assert!(!revoked.covers(&session(1, None, 101)), "a login after it");
        assert!(
            revoked.covers(&session(2, Some(9), 150)),
            "the technician's other device"
        );
        assert!(!revoked.covers(&session(2, Some(9), 201)));
        assert!(!revoked.covers(&session(3, Some(8), 1)), "someone else");
        assert!(revoked.token("0a1b"));
    }
}
