//! Device tokens: HS256 JWTs naming the device, its role and (for technicians) who they are.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use shared::ids::{Author, DeviceId, DocId, Role, TechnicianId};
use shared::sync::server::Subject;

/// The claims of a device token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The device id.
    pub sub: String,
    pub role: Role,
    /// The technician this device belongs to (technician tokens only).
    pub tech: Option<String>,
    pub iat: i64,
    pub exp: i64,
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
}

/// The signing keys (HS256 from one secret).
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
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
        }
    }

    /// Issues a token valid for `ttl_s` seconds from `now_s` (Unix seconds).
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
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|_| AuthError::Invalid)
    }

    /// Checks a token (signature, algorithm, expiry) and says who it is.
    pub fn verify(&self, token: &str) -> Result<Device, AuthError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 30;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .map_err(|_| AuthError::Invalid)?;
        let c = data.claims;
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
        let mut bad = tok;
        bad.pop();
        assert_eq!(keys.verify(&bad), Err(AuthError::Invalid));
        let no_tech = keys.issue(dev, Role::Technician, None, now(), 60).unwrap();
        assert_eq!(keys.verify(&no_tech), Err(AuthError::NoTechnician));
    }
}
