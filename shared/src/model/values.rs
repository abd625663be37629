//! Validated values. Each has a `parse` constructor that says what is wrong, and a canonical form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! from_str_via_parse {
    ($t:ty) => {
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                <$t>::parse(s)
            }
        }
    };
}

/// A person's or company's name, or a short label: trimmed, 1–200 characters, no control chars.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.is_empty() {
            return Err("must not be empty".into());
        }
        if t.chars().count() > 200 {
            return Err("must be at most 200 characters".into());
        }
        if t.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(t.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
from_str_via_parse!(Name);
impl TryFrom<String> for Name {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}
impl From<Name> for String {
    fn from(n: Name) -> String {
        n.0
    }
}
impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An equipment serial number: upper-cased, 4–64 characters of `A-Z 0-9 - _ . /`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Serial(String);

impl Serial {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_uppercase();
        let n = t.chars().count();
        if !(4..=64).contains(&n) {
            return Err(format!(
                "serial number `{}` must be 4 to 64 characters",
                s.trim()
            ));
        }
        if let Some(bad) = t
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-_./".contains(*c)))
        {
            return Err(format!(
                "serial number `{}` has an invalid character `{bad}`",
                s.trim()
            ));
        }
        Ok(Self(t))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
from_str_via_parse!(Serial);
impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A MAC address. Accepts `AA:BB:CC:DD:EE:FF`, `aa-bb-…`, `aabb.ccdd.eeff` and bare hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MacAddr([u8; 6]);

impl MacAddr {
    pub fn parse(s: &str) -> Result<Self, String> {
        let hex: String = s.trim().chars().filter(|c| !":-. ".contains(*c)).collect();
        if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "`{}` is not a MAC address (12 hexadecimal digits)",
                s.trim()
            ));
        }
        let mut out = [0u8; 6];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16)
                .map_err(|_| format!("`{}` is not a MAC address", s.trim()))?;
        }
        Ok(Self(out))
    }
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }
    /// Twelve upper-case hex digits, the form prefix search runs on.
    pub fn compact(&self) -> String {
        self.0.iter().map(|b| format!("{b:02X}")).collect()
    }
    /// Normalizes a partial MAC typed by a user into the compact form, for prefix search.
    pub fn normalize_prefix(s: &str) -> Option<String> {
        let hex: String = s.trim().chars().filter(|c| !":-. ".contains(*c)).collect();
        (hex.len() <= 12 && hex.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| hex.to_ascii_uppercase())
    }
}
from_str_via_parse!(MacAddr);
impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(
            f,
            "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

/// A WGS84 position.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    lat: f64,
    lon: f64,
}

impl GeoPoint {
    pub fn new(lat: f64, lon: f64) -> Result<Self, String> {
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(format!("latitude {lat} is out of range (-90 to 90)"));
        }
        if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
            return Err(format!("longitude {lon} is out of range (-180 to 180)"));
        }
        Ok(Self { lat, lon })
    }
    /// `"lat,lon"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once(',')
            .ok_or_else(|| format!("`{s}` is not `lat,lon`"))?;
        let lat = a
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("`{a}` is not a latitude"))?;
        let lon = b
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("`{b}` is not a longitude"))?;
        Self::new(lat, lon)
    }
    pub fn lat(&self) -> f64 {
        self.lat
    }
    pub fn lon(&self) -> f64 {
        self.lon
    }
    /// Great-circle distance in kilometres.
    pub fn distance_km(&self, other: &GeoPoint) -> f64 {
        let (p1, p2) = (self.lat.to_radians(), other.lat.to_radians());
        let dp = (other.lat - self.lat).to_radians();
        let dl = (other.lon - self.lon).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        6371.0 * 2.0 * a.sqrt().atan2((1.0 - a).sqrt())
    }
}
from_str_via_parse!(GeoPoint);
impl fmt::Display for GeoPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6},{:.6}", self.lat, self.lon)
    }
}

/// A phone number in E.164 form. North American numbers may be given with 10 digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Phone(String);

impl Phone {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.chars()
            .any(|c| !(c.is_ascii_digit() || " +-().".contains(c)))
        {
            return Err(format!("`{t}` is not a phone number"));
        }
        let digits: String = t.chars().filter(char::is_ascii_digit).collect();
        let e164 = match (t.starts_with('+'), digits.len()) {
            (false, 10) => format!("+1{digits}"),
            (false, 11) if digits.starts_with('1') => format!("+{digits}"),
            (true, 8..=15) => format!("+{digits}"),
            _ => {
                return Err(format!(
                    "`{t}` is not a phone number (10 digits, or + and 8 to 15)"
                ));
            }
        };
        Ok(Self(e164))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
from_str_via_parse!(Phone);
impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An e-mail address (shape check only; delivery proves the rest).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let ok = t.len() <= 254
            && !t.chars().any(char::is_whitespace)
            && t.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
            });
        if ok {
            Ok(Self(t.to_owned()))
        } else {
            Err(format!("`{t}` is not an e-mail address"))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
from_str_via_parse!(Email);
impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Canadian postal code, `A1A 1A1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PostalCode(String);

impl PostalCode {
    pub fn parse(s: &str) -> Result<Self, String> {
        let c: String = s
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_uppercase();
        let b = c.as_bytes();
        let ok = b.len() == 6
            && b.iter().enumerate().all(|(i, ch)| {
                if i % 2 == 0 {
                    ch.is_ascii_uppercase()
                } else {
                    ch.is_ascii_digit()
                }
            })
            && !b"DFIOQU".contains(&b[0])
            && !b"WZ".contains(&b[0]);
        if ok {
            Ok(Self(format!("{} {}", &c[..3], &c[3..])))
        } else {
            Err(format!(
                "`{}` is not a Canadian postal code (A1A 1A1)",
                s.trim()
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
from_str_via_parse!(PostalCode);
impl fmt::Display for PostalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An 802.1Q VLAN id, 1–4094.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Vlan(u16);

impl Vlan {
    pub fn new(v: i64) -> Result<Self, String> {
        u16::try_from(v)
            .ok()
            .filter(|v| (1..=4094).contains(v))
            .map(Self)
            .ok_or_else(|| format!("VLAN {v} is out of range (1 to 4094)"))
    }
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::new(
            s.trim()
                .parse::<i64>()
                .map_err(|_| format!("`{s}` is not a VLAN id"))?,
        )
    }
    pub fn get(self) -> u16 {
        self.0
    }
}
from_str_via_parse!(Vlan);

/// A GPON port on an OLT: `frame/slot/port` optionally followed by `:onu`, e.g. `0/1/3:12`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OltPort(String);

impl OltPort {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let (path, onu) = match t.split_once(':') {
            Some((p, o)) => (p, Some(o)),
            None => (t, None),
        };
        let parts: Vec<&str> = path.split('/').collect();
        let num = |x: &str| !x.is_empty() && x.len() <= 4 && x.chars().all(|c| c.is_ascii_digit());
        if parts.len() == 3 && parts.iter().all(|p| num(p)) && onu.is_none_or(num) {
            Ok(Self(t.to_owned()))
        } else {
            Err(format!(
                "`{t}` is not an OLT port (frame/slot/port[:onu], e.g. 0/1/3:12)"
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
from_str_via_parse!(OltPort);

/// A skill level, 1 (beginner) to 5 (expert).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Level(u8);

impl Level {
    pub fn new(v: u8) -> Result<Self, String> {
        if (1..=5).contains(&v) {
            Ok(Self(v))
        } else {
            Err(format!("level {v} is out of range (1 to 5)"))
        }
    }
    pub fn get(self) -> u8 {
        self.0
    }
}
impl TryFrom<u8> for Level {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        Self::new(v)
    }
}
impl From<Level> for u8 {
    fn from(l: Level) -> u8 {
        l.0
    }
}

/// An amount in cents of CAD, never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Money(i64);

impl Money {
    pub fn from_cents(c: i64) -> Result<Self, String> {
        if c < 0 {
            Err(format!("amount {c} ¢ must not be negative"))
        } else {
            Ok(Self(c))
        }
    }
    pub fn cents(self) -> i64 {
        self.0
    }
}

/// A recurrence rule (RFC 5545 `RRULE` value, e.g. `FREQ=WEEKLY;BYDAY=MO`): the keys are checked,
/// expansion happens where jobs are planned.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RRule(String);

impl RRule {
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = s.trim().trim_start_matches("RRULE:");
        let mut has_freq = false;
        for part in t.split(';') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not KEY=VALUE"))?;
            match k {
                "FREQ" => {
                    if !["DAILY", "WEEKLY", "MONTHLY", "YEARLY"].contains(&v) {
                        return Err(format!(
                            "FREQ `{v}` is not DAILY, WEEKLY, MONTHLY or YEARLY"
                        ));
                    }
                    has_freq = true;
                }
                "INTERVAL" | "COUNT" | "BYMONTHDAY" => {
                    v.parse::<u32>()
                        .map_err(|_| format!("{k} `{v}` is not a number"))?;
                }
                "BYDAY" => {
                    let days = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"];
                    if let Some(d) = v.split(',').find(|d| {
                        !days.contains(
                            &d.trim_start_matches(|c: char| c == '-' || c.is_ascii_digit()),
                        )
                    }) {
                        return Err(format!("BYDAY `{d}` is not a weekday"));
                    }
                }
                "UNTIL" | "WKST" | "BYMONTH" | "BYSETPOS" => {}
                _ => return Err(format!("unsupported RRULE key `{k}`")),
            }
        }
        if has_freq {
            Ok(Self(t.to_owned()))
        } else {
            Err("an RRULE needs FREQ".into())
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
from_str_via_parse!(RRule);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_forms_normalize() {
        for s in [
            "aa:bb:cc:dd:ee:0f",
            "AA-BB-CC-DD-EE-0F",
            "aabb.ccdd.ee0f",
            "AABBCCDDEE0F",
        ] {
            assert_eq!(
                MacAddr::parse(s).unwrap().to_string(),
                "AA:BB:CC:DD:EE:0F",
                "{s}"
            );
        }
        assert!(MacAddr::parse("AA:BB:CC:DD:EE").is_err());
        assert!(MacAddr::parse("GG:BB:CC:DD:EE:FF").is_err());
        assert_eq!(MacAddr::normalize_prefix("aa:b").as_deref(), Some("AAB"));
        assert_eq!(MacAddr::normalize_prefix("zz"), None);
    }

    #[test]
    fn serial_rules() {
        assert_eq!(
            Serial::parse(" 48575443a94196a5 ").unwrap().as_str(),
            "48575443A94196A5"
        );
        assert!(Serial::parse("ab").unwrap_err().contains("4 to 64"));
        assert!(
            Serial::parse("ABC DEF")
                .unwrap_err()
                .contains("invalid character")
        );
    }

    #[test]
    fn phone_postal_email() {
        assert_eq!(
            Phone::parse("(514) 555-0199").unwrap().as_str(),
            "+15145550199"
        );
        assert_eq!(
            Phone::parse("+33 1 23 45 67 89").unwrap().as_str(),
            "+33123456789"
        );
        assert!(Phone::parse("555-0199").is_err());
        assert!(Phone::parse("514 555 0199 ext").is_err());
        assert_eq!(PostalCode::parse("h2x1y4").unwrap().as_str(), "H2X 1Y4");
        assert!(PostalCode::parse("D2X 1Y4").is_err());
        assert!(PostalCode::parse("12345").is_err());
        assert!(Email::parse("a@b.ca").is_ok());
        assert!(Email::parse("a@b").is_err());
        assert!(Email::parse("a b@c.ca").is_err());
    }

    #[test]
    fn geo_vlan_olt_level_rrule() {
        let mtl = GeoPoint::new(45.5017, -73.5673).unwrap();
        let qc = GeoPoint::new(46.8139, -71.2080).unwrap();
        let d = mtl.distance_km(&qc);
        assert!((230.0..240.0).contains(&d), "{d}");
        assert!(GeoPoint::new(91.0, 0.0).is_err());
        assert!(GeoPoint::parse("45.5,-73.5").is_ok());
        assert!(Vlan::new(0).is_err() && Vlan::new(4095).is_err() && Vlan::new(100).is_ok());
        assert!(OltPort::parse("0/1/3:12").is_ok() && OltPort::parse("0/1").is_err());
        assert!(Level::new(0).is_err() && Level::new(5).is_ok() && Level::new(6).is_err());
        assert!(RRule::parse("FREQ=WEEKLY;BYDAY=MO,WE").is_ok());
        assert!(RRule::parse("BYDAY=MO").is_err());
        assert!(RRule::parse("FREQ=HOURLY").is_err());
        assert!(Money::from_cents(-1).is_err());
    }
}
