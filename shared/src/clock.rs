//! Time is injected: `shared` never reads the system clock.
//!
//! Replicas and the server pass a [`Clock`]; tests use [`FixedClock`], which can also go backwards
//! to model a field device whose clock is wrong.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, NaiveDate, Utc};

/// Milliseconds since the Unix epoch, UTC.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Millis(pub i64);

impl Millis {
    /// The calendar day of this instant in UTC.
    pub fn date(self) -> NaiveDate {
        DateTime::<Utc>::from_timestamp_millis(self.0)
            .map(|t| t.date_naive())
            .unwrap_or_default()
    }
}

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Millis;
}

/// A clock that only moves when told to; it may be set backwards.
#[derive(Debug, Default)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    pub fn new(at: Millis) -> Self {
        Self(AtomicI64::new(at.0))
    }
    pub fn set(&self, at: Millis) {
        self.0.store(at.0, Ordering::SeqCst);
    }
    pub fn advance(&self, by_ms: i64) {
        self.0.fetch_add(by_ms, Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Millis {
        Millis(self.0.load(Ordering::SeqCst))
    }
}
