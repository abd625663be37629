//! Texts to customers on job events, sent only while they are true: "your technician is on the
//! way" goes out when a technician sets a job en route, and never when that status reaches the
//! server late (a phone that was offline syncs hours after the fact: the customer would be told
//! of a visit that is over).
//!
//! The decision is [`en_route_text`], a pure function of when the status was written (the
//! change's own time, from the writer's clock), when the server learns it, and the customer's
//! language. [`run`] follows the live events (published once on disk) and queues the text in the
//! SMS outbox, once per job and status write, whatever replays the events.

use std::sync::Arc;

use shared::clock::Millis;
use shared::ids::DocId;
use shared::model::{AnyEntity, Language};

/// How late a status may reach the server and still be worth a text.
pub const FRESH_FOR: i64 = 15 * 60 * 1000;
/// How far ahead of the server's clock a writer's clock may run (a phone set a little fast).
pub const CLOCK_SKEW: i64 = 2 * 60 * 1000;

/// The arrival window told to the customer: from this long after the status…
const WINDOW_FROM: i64 = 10 * 60 * 1000;
/// … to this long after.
const WINDOW_TO: i64 = 40 * 60 * 1000;

/// `at` as the customer's local wall-clock time, rounded to 5 minutes (`10 h 05`, `10:05 AM`).
fn clock_time(at: Millis, zone: &jiff::tz::TimeZone, language: Language) -> String {
    let Ok(ts) = jiff::Timestamp::from_millisecond(at.0) else {
        return String::new();
    };
    let t = ts.to_zoned(zone.clone());
    let minutes = (i32::from(t.hour()) * 60 + i32::from(t.minute()) + 2) / 5 * 5;
    let (h, m) = ((minutes / 60) % 24, minutes % 60);
    match language {
        Language::Fr => format!("{h} h {m:02}"),
        Language::En => {
            let (h12, half) = match h {
                0 => (12, "AM"),
                1..=11 => (h, "AM"),
                12 => (12, "PM"),
                _ => (h - 12, "PM"),
            };
            format!("{h12}:{m:02} {half}")
        }
    }
}

/// The text for a job set en route at `written` (the writer's clock) and learned at `now`, in the
/// customer's language; `None` when it would come too late (or from a clock far ahead).
pub fn en_route_text(
    written: Millis,
    now: Millis,
    technician: &str,
    language: Language,
    zone: &jiff::tz::TimeZone,
) -> Option<String> {
    let late = now.0 - written.0;
    if !(-CLOCK_SKEW..=FRESH_FOR).contains(&late) {
        return None;
    }
    // From when the status was written (or now, for a clock a little ahead).
    let base = Millis(written.0.min(now.0));
    let from = clock_time(Millis(base.0 + WINDOW_FROM), zone, language);
    let to = clock_time(Millis(base.0 + WINDOW_TO), zone, language);
    let first = technician.split_whitespace().next().unwrap_or(technician);
    Some(match language {
        Language::Fr => format!(
            "Bonjour, votre technicien {first} est en route. Arrivée prévue entre {from} et {to}."
        ),
        Language::En => format!(
            "Hello, your technician {first} is on the way. Expected between {from} and {to}."
        ),
    })
}

/// What the notifier reads of a job set en route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnRoute {
    pub phone: String,
    pub language: Language,
    pub technician: String,
    pub written: Millis,
}

/// Reads, under the engine, what an en-route text needs (none when the customer has no phone).
pub fn en_route_facts(e: &mut shared::sync::server::ServerEngine, job: DocId) -> Option<EnRoute> {
    let Some(AnyEntity::Job(j)) = e.entity(job).cloned() else {
        return None;
    };
    if j.status != shared::model::JobStatus::EnRoute {
        return None;
    }
    let Some(AnyEntity::Customer(c)) = e.entity(j.customer.doc()).cloned() else {
        return None;
    };
    let technician = j
        .technician
        .and_then(|t| match e.entity(t.doc()) {
            Some(AnyEntity::Technician(t)) => Some(t.name.as_str().to_owned()),
            _ => None,
        })
        .unwrap_or_default();
    let written = e.written_at(job, "status").ok().flatten()?;
    Some(EnRoute {
        phone: c.phone?.as_str().to_owned(),
        language: c.language,
        technician,
        written,
    })
}

/// Follows the live events until `shutdown` and queues an en-route text for each fresh one.
pub async fn run(
    sync: Arc<crate::service::SyncService>,
    sms: Arc<super::sms::Sms>,
    zone: jiff::tz::TimeZone,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::sync::broadcast::error::RecvError;
    let (_, mut events) = sync.subscribe(None);
    loop {
        let ev = tokio::select! {
            _ = shutdown.changed() => return,
            ev = events.recv() => ev,
        };
        let job = match ev {
            Ok(crate::events::LiveEvent::TechnicianStatus { job, status, .. })
                if status == shared::model::JobStatus::EnRoute.to_string() =>
            {
                job
            }
            Ok(_) => continue,
            // Fell behind: those events are past; a late text is no text.
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "notify.lagged");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let (sync2, sms2, zone2) = (Arc::clone(&sync), Arc::clone(&sms), zone.clone());
        let done = tokio::task::spawn_blocking(move || {
            let now = sync2.now();
            let Some(facts) = sync2.read(|e| en_route_facts(e, job))? else {
                return Ok::<_, anyhow::Error>(());
            };
            let Some(text) = en_route_text(
                facts.written,
                now,
                &facts.technician,
                facts.language,
                &zone2,
            ) else {
                tracing::info!(%job, late_ms = now.0 - facts.written.0, "notify.too_late");
                return Ok(());
            };
            if sms2.mark_notified(job, "en_route", facts.written.0)? {
                match sms2.queue(&facts.phone, &text, "server:en_route", now.0) {
                    Ok(_) | Err(super::sms::SmsError::OptedOut) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        })
        .await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "notify.failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toronto() -> jiff::tz::TimeZone {
        jiff::tz::TimeZone::get("America/Toronto").unwrap()
    }

    /// 2026-11-30 14:03 UTC, 9:03 in Toronto.
    const AT: Millis = Millis(1_796_047_380_000);

    #[test]
    fn a_fresh_status_is_told_with_a_window_in_the_customers_words() {
        let fr = en_route_text(
            AT,
            Millis(AT.0 + 60_000),
            "Samuel Tremblay",
            Language::Fr,
            &toronto(),
        );
        assert_eq!(
            fr.as_deref(),
            Some(
                "Bonjour, votre technicien Samuel est en route. Arrivée prévue entre 9 h 15 et 9 h 45."
            )
        );
        let en = en_route_text(AT, AT, "Samuel Tremblay", Language::En, &toronto());
        assert_eq!(
            en.as_deref(),
            Some(
                "Hello, your technician Samuel is on the way. Expected between 9:15 AM and 9:45 AM."
            )
        );
    }

    #[test]
    fn a_status_that_arrives_late_or_from_a_clock_far_ahead_is_not_told() {
        let z = toronto();
        assert!(en_route_text(AT, Millis(AT.0 + FRESH_FOR), "S", Language::Fr, &z).is_some());
        assert_eq!(
            en_route_text(AT, Millis(AT.0 + FRESH_FOR + 1), "S", Language::Fr, &z),
            None,
            "synced after the fact"
        );
        assert_eq!(
            en_route_text(AT, Millis(AT.0 + 3 * 3_600_000), "S", Language::Fr, &z),
            None
        );
        assert_eq!(
            en_route_text(Millis(AT.0 + CLOCK_SKEW + 1), AT, "S", Language::Fr, &z),
            None,
            "a phone whose clock is far ahead"
        );
        // A clock a little ahead: the window counts from the server's now.
        let ahead = en_route_text(Millis(AT.0 + 60_000), AT, "S", Language::Fr, &z).unwrap();
        assert!(ahead.contains("entre 9 h 15 et 9 h 45"), "{ahead}");
    }
}
