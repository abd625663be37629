//! Device tokens: HS256 JWTs naming the device, its role and (for technicians) who they are.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use shared::ids::{Author, DeviceId, DocId, Role, TechnicianId};
use shared::sync::server::Subject;

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// A device's session: syncs, listens, refreshes.
    Session,
    /// A one-time login link for a technician, exchanged for a session on their device.
    Magic,
    /// A one-time login link for an office account (a dispatcher or an admin).
    AccountLink,
}

/// The claims of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The device id (sessions) or `magic`.
    pub sub: String,
    pub role: Role,
    /// The technician this device belongs to (technician tokens only).
    pub tech: Option<String>,
    pub iat: i64,
    pub exp: i64,
    /// The token's own id, for revocation and single use.
    pub jti: String,
    pub kind: TokenKind,
    /// When the session began (the login), carried across refreshes: a session never outlives
    /// its role's maximum age. Absent in tokens from before it existed: `iat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<i64>,
    /// The office account this token belongs to (office accounts only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acct: Option<String>,
}

/// A verified session token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub device: Device,
    pub jti: String,
    /// When this token was issued (Unix seconds).
    pub iat: i64,
    /// When the session began (its login).
    pub auth: i64,
    pub exp: i64,
    /// The office account it belongs to, if any (tokens made by `sync-server token` have none).
    pub account: Option<DocId>,
}

/// A verified login link for an office account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountLink {
    pub account: DocId,
    pub jti: String,
    pub exp: i64,
}

/// A verified magic link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magic {
    pub technician: TechnicianId,
    pub jti: String,
    pub exp: i64,
}

fn new_jti() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An authenticated device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    pub author: Author,
    pub subject: Subject,
}

/// Why a token is refused. The message never includes the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid or expired token")]
    Invalid,
    #[error("a technician token must name its technician")]
    NoTechnician,
    #[error("this session has reached its maximum age: log in again")]
    TooOld,
}

/// How long sessions last (seconds): each token `ttl_s`, refreshed while the device is in use;
/// a session, refreshes included, at most its role's maximum age after the login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub ttl_s: i64,
    pub technician_max_s: i64,
    pub dispatcher_max_s: i64,
    pub admin_max_s: i64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        const DAY: i64 = 86_400;
        Self {
            ttl_s: 30 * DAY,
            // A technician's phone may stay offline for weeks: half a year, then a new link.
            technician_max_s: 180 * DAY,
            dispatcher_max_s: 90 * DAY,
            admin_max_s: 14 * DAY,
        }
    }
}

impl Lifetimes {
    pub fn max_age(&self, role: Role) -> i64 {
        match role {
            Role::Technician => self.technician_max_s,
            Role::Dispatcher | Role::Server => self.dispatcher_max_s,
            Role::Admin => self.admin_max_s,
        }
    }
}

/// The signing keys (HS256 from one secret) and the session lifetimes.
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    lifetimes: Lifetimes,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(<redacted>)")
    }
}

impl Keys {
    pub fn from_secret(secret: &[u8]) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            lifetimes: Lifetimes::default(),
        }
    }

    pub fn with_lifetimes(mut self, lifetimes: Lifetimes) -> Self {
        self.lifetimes = lifetimes;
        self
    }

    pub fn lifetimes(&self) -> Lifetimes {
        self.lifetimes
    }

    /// Issues a session token for a session that began at `auth_s`: valid for the token
    /// lifetime, never past the role's maximum age. Returns the token and its expiry; refused
    /// once the session is that old.
    pub fn issue_session(
        &self,
        device: DeviceId,
        role: Role,
        tech: Option<TechnicianId>,
        now_s: i64,
        auth_s: i64,
    ) -> Result<(String, i64), AuthError> {
        self.issue_account_session(device, role, tech, None, now_s, auth_s)
    }

    /// [`Keys::issue_session`] for an office account's session.
    pub fn issue_account_session(
        &self,
        device: DeviceId,
        role: Role,
        tech: Option<TechnicianId>,
        account: Option<DocId>,
        now_s: i64,
        auth_s: i64,
    ) -> Result<(String, i64), AuthError> {
        let end = auth_s.saturating_add(self.lifetimes.max_age(role));
        let exp = now_s.saturating_add(self.lifetimes.ttl_s).min(end);
        if exp <= now_s {
            return Err(AuthError::TooOld);
        }
        let claims = Claims {
            sub: device.to_string(),
            role,
            tech: tech.map(|t| t.to_string()),
            iat: now_s,
            exp,
            jti: new_jti(),
            kind: TokenKind::Session,
            auth: Some(auth_s),
            acct: account.map(|a| a.to_string()),
        };
        Ok((self.sign(&claims)?, exp))
    }

    /// Issues a session token valid for `ttl_s` seconds from `now_s` (Unix seconds).
    pub fn issue(
        &self,
        device: DeviceId,
        role: Role,
        tech: Option<TechnicianId>,
        now_s: i64,
        ttl_s: i64,
    ) -> Result<String, AuthError> {
        let claims = Claims {
            sub: device.to_string(),
            role,
            tech: tech.map(|t| t.to_string()),
            iat: now_s,
            exp: now_s + ttl_s,
            jti: new_jti(),
            kind: TokenKind::Session,
            auth: None,
            acct: None,
        };
        self.sign(&claims)
    }

    /// Issues a magic link token for a technician.
    pub fn issue_magic(
        &self,
        tech: TechnicianId,
        now_s: i64,
        ttl_s: i64,
    ) -> Result<String, AuthError> {
        let claims = Claims {
            sub: "magic".into(),
            role: Role::Technician,
            tech: Some(tech.to_string()),
            iat: now_s,
            exp: now_s + ttl_s,
            jti: new_jti(),
            kind: TokenKind::Magic,
            auth: None,
            acct: None,
        };
        self.sign(&claims)
    }

    fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|_| AuthError::Invalid)
    }

    fn claims(&self, token: &str, kind: TokenKind) -> Result<Claims, AuthError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 30;
        let c = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .map_err(|_| AuthError::Invalid)?
            .claims;
        if c.kind == kind {
            Ok(c)
        } else {
            Err(AuthError::Invalid)
        }
    }

    /// Issues a one-time login link for an office account.
    pub fn issue_account_link(
        &self,
        account: DocId,
        role: Role,
        now_s: i64,
        ttl_s: i64,
    ) -> Result<String, AuthError> {
        let claims = Claims {
            sub: "magic".into(),
            role,
            tech: None,
            iat: now_s,
            exp: now_s + ttl_s,
            jti: new_jti(),
            kind: TokenKind::AccountLink,
            auth: None,
            acct: Some(account.to_string()),
        };
        self.sign(&claims)
    }

    /// Checks an office account's login link. Single use is the caller's check.
    pub fn verify_account_link(&self, token: &str) -> Result<AccountLink, AuthError> {
        let c = self.claims(token, TokenKind::AccountLink)?;
        let account = c
            .acct
            .as_deref()
            .and_then(|a| a.parse::<DocId>().ok())
            .ok_or(AuthError::Invalid)?;
        Ok(AccountLink {
            account,
            jti: c.jti,
            exp: c.exp,
        })
    }

    /// Checks a magic link (signature, expiry, kind). Single use is the caller's check.
    pub fn verify_magic(&self, token: &str) -> Result<Magic, AuthError> {
        let c = self.claims(token, TokenKind::Magic)?;
        let t = c.tech.ok_or(AuthError::NoTechnician)?;
        Ok(Magic {
            technician: TechnicianId(t.parse::<DocId>().map_err(|_| AuthError::Invalid)?),
            jti: c.jti,
            exp: c.exp,
        })
    }

    /// Checks a session token (signature, algorithm, expiry, kind) and says who it is.
    /// Revocation is the caller's check.
    pub fn verify_session(&self, token: &str) -> Result<Session, AuthError> {
        let c = self.claims(token, TokenKind::Session)?;
        let (jti, exp, iat, auth) = (c.jti.clone(), c.exp, c.iat, c.auth.unwrap_or(c.iat));
        let account = match c.acct.as_deref() {
            None => None,
            Some(a) => Some(a.parse::<DocId>().map_err(|_| AuthError::Invalid)?),
        };
        Ok(Session {
            device: Self::device(c)?,
            jti,
            iat,
            auth,
            exp,
            account,
        })
    }

    /// [`Keys::verify_session`] without the token id.
    pub fn verify(&self, token: &str) -> Result<Device, AuthError> {
        Ok(self.verify_session(token)?.device)
    }

    fn device(c: Claims) -> Result<Device, AuthError> {
        let device = DeviceId(c.sub.parse::<DocId>().map_err(|_| AuthError::Invalid)?);
        let subject = match c.role {
            Role::Technician => {
                let t = c.tech.ok_or(AuthError::NoTechnician)?;
                Subject::Technician(TechnicianId(
                    t.parse::<DocId>().map_err(|_| AuthError::Invalid)?,
                ))
            }
            Role::Dispatcher | Role::Admin | Role::Server => Subject::Office,
        };
        Ok(Device {
            author: Author::new(c.role, device),
            subject,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> i64 {
        // jsonwebtoken checks expiry against the system clock.
        #[allow(clippy::disallowed_methods)]
        let t = std::time::SystemTime::now();
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap()
    }

    #[test]
    fn issue_verify_expire_and_tamper() {
        let keys = Keys::from_secret(b"test secret of enough length 0123456789");
        let dev = DeviceId(DocId::from_u128(5));
        let tech = TechnicianId(DocId::from_u128(6));
        let tok = keys
            .issue(dev, Role::Technician, Some(tech), now(), 3600)
            .unwrap();
        let d = keys.verify(&tok).unwrap();
        assert_eq!(d.author, Author::new(Role::Technician, dev));
        assert_eq!(d.subject, Subject::Technician(tech));
        let old = keys
            .issue(dev, Role::Dispatcher, None, now() - 7200, 3600)
            .unwrap();
        assert_eq!(keys.verify(&old), Err(AuthError::Invalid));
        let other = Keys::from_secret(b"another secret of enough length 987654");
        assert_eq!(other.verify(&tok), Err(AuthError::Invalid));
        let mut bad = tok.clone();
        bad.pop();
        assert_eq!(keys.verify(&bad), Err(AuthError::Invalid));
        let no_tech = keys.issue(dev, Role::Technician, None, now(), 60).unwrap();
        assert_eq!(keys.verify(&no_tech), Err(AuthError::NoTechnician));
        // A magic link is not a session, and the other way round.
        let magic = keys.issue_magic(tech, now(), 600).unwrap();
        assert_eq!(keys.verify(&magic), Err(AuthError::Invalid));
        assert_eq!(keys.verify_magic(&magic).unwrap().technician, tech);
        assert_eq!(keys.verify_magic(&tok), Err(AuthError::Invalid));
    }
}
