//! Oktopus (TR-369/USP): which boxes are online, from the MQTT broker the agents use.
//!
//! The broker publishes `oktopus/usp/v1/status/<endpoint id>` with payload `1` when an agent
//! subscribes to its topic and `0` when it disconnects (also its Will, QoS 1). [`run`] keeps one
//! subscription to `oktopus/usp/v1/status/+` at QoS 1 in a persistent session (`clean_session`
//! off, a fixed client id), so the broker queues what happens while we are disconnected; each
//! message is acknowledged only once its transition is on disk ([`Presence::record`]), so a crash
//! between the two gets it again, and a message delivered twice changes nothing (only a change of
//! state is an event). Dispatchers read the events in order of their sequence number, live
//! (SSE) with `Last-Event-ID`, so a reconnect on either side neither loses nor repeats one.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde::{Deserialize, Serialize};

/// The status topics, for every endpoint.
pub const STATUS_TOPICS: &str = "oktopus/usp/v1/status/+";
const STATUS_PREFIX: &str = "oktopus/usp/v1/status/";

/// A status message: the endpoint and whether it is online; `None` for anything else.
pub fn parse_status(topic: &str, payload: &[u8]) -> Option<(String, bool)> {
    let id = topic.strip_prefix(STATUS_PREFIX)?;
    if id.is_empty() || id.contains('/') {
        return None;
    }
    let online = match std::str::from_utf8(payload).ok()?.trim().trim_matches('"') {
        "1" => true,
        "0" => false,
        _ => return None,
    };
    Some((id.to_owned(), online))
}

/// A box came online or went offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceEvent {
    pub seq: i64,
    pub device: String,
    pub online: bool,
    /// When we learnt it (Unix milliseconds).
    pub at: i64,
}

/// Each box's presence and the events that changed it, in `hub.sqlite3`.
pub struct Presence {
    db: Mutex<rusqlite::Connection>,
    /// Woken at each new event (the live streams wait on it).
    pub changed: tokio::sync::Notify,
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence").finish_non_exhaustive()
    }
}

impl Presence {
    pub fn open(file: &Path, full_sync: bool) -> Result<Arc<Self>, rusqlite::Error> {
        let conn = super::open_db(file, full_sync)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS usp_presence (
                 device TEXT PRIMARY KEY,
                 online INTEGER NOT NULL,
                 since INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS usp_events (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 device TEXT NOT NULL,
                 online INTEGER NOT NULL,
                 at INTEGER NOT NULL
             );",
        )?;
        Ok(Arc::new(Self {
            db: Mutex::new(conn),
            changed: tokio::sync::Notify::new(),
        }))
    }

    /// Records that `device` is `online` as of `at`: an event when that changes its state, and
    /// nothing (`None`) when it is what we knew (a message delivered again).
    pub fn record(
        &self,
        device: &str,
        online: bool,
        at: i64,
    ) -> Result<Option<i64>, rusqlite::Error> {
        let mut db = super::lock_db(&self.db);
        let tx = db.transaction()?;
        let known: Option<bool> = tx
            .query_row(
                "SELECT online FROM usp_presence WHERE device = ?1",
                [device],
                |r| r.get(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        if known == Some(online) {
            return Ok(None);
        }
        tx.execute(
            "INSERT INTO usp_presence (device, online, since) VALUES (?1, ?2, ?3)
             ON CONFLICT(device) DO UPDATE SET online = ?2, since = ?3",
            rusqlite::params![device, online, at],
        )?;
        tx.execute(
            "INSERT INTO usp_events (device, online, at) VALUES (?1, ?2, ?3)",
            rusqlite::params![device, online, at],
        )?;
        let seq = tx.last_insert_rowid();
        tx.commit()?;
        drop(db);
        self.changed.notify_waiters();
        Ok(Some(seq))
    }

    /// The events after `seq`, oldest first, at most `limit`.
    pub fn after(&self, seq: i64, limit: usize) -> Result<Vec<PresenceEvent>, rusqlite::Error> {
        let db = super::lock_db(&self.db);
        let mut st = db.prepare_cached(
            "SELECT seq, device, online, at FROM usp_events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        st.query_map(
            rusqlite::params![seq, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                Ok(PresenceEvent {
                    seq: r.get(0)?,
                    device: r.get(1)?,
                    online: r.get(2)?,
                    at: r.get(3)?,
                })
            },
        )?
        .collect()
    }

    /// The last event's sequence number (0 before any).
    pub fn last_seq(&self) -> Result<i64, rusqlite::Error> {
        super::lock_db(&self.db).query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM usp_events",
            [],
            |r| r.get(0),
        )
    }

    /// Every box we know of, its state and since when.
    pub fn all(&self) -> Result<Vec<(String, bool, i64)>, rusqlite::Error> {
        let db = super::lock_db(&self.db);
        let mut st =
            db.prepare_cached("SELECT device, online, since FROM usp_presence ORDER BY device")?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect()
    }
}

/// Where the broker is and who we are to it.
#[derive(Debug, Clone)]
pub struct MqttLink {
    pub host: String,
    pub port: u16,
    /// Fixed, so the broker keeps our session (and what it queued) across reconnects; one per
    /// server instance.
    pub client_id: String,
    pub credentials: Option<(String, String)>,
}

/// The pause before reconnecting after the `n`-th failure in a row: 1 s doubling to 30 s.
pub fn reconnect_delay(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.min(5)).min(Duration::from_secs(30))
}

/// Follows the status topics until shutdown, reconnecting with backoff.
pub async fn run(
    presence: Arc<Presence>,
    link: MqttLink,
    clock: Arc<dyn shared::clock::Clock>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut opts = MqttOptions::new(link.client_id.clone(), link.host.clone(), link.port);
    opts.set_clean_session(false);
    opts.set_keep_alive(Duration::from_secs(30));
    // Acknowledged only once recorded: a crash in between gets the message again.
    opts.set_manual_acks(true);
    if let Some((user, password)) = &link.credentials {
        opts.set_credentials(user.clone(), password.clone());
    }
    let (client, mut events) = AsyncClient::new(opts, 64);
    let mut failures = 0u32;
    loop {
        let polled = tokio::select! {
            _ = shutdown.changed() => break,
            p = events.poll() => p,
        };
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                failures = 0;
                tracing::info!(session_present = ack.session_present, "usp.mqtt_connected");
                // Asked again at each connection: a broker that lost our session (restarted
                // without persistence) would otherwise send nothing.
                if let Err(e) = client.subscribe(STATUS_TOPICS, QoS::AtLeastOnce).await {
                    tracing::warn!(error = %e, "usp.mqtt_subscribe_failed");
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if let Some((device, online)) = parse_status(&p.topic, &p.payload) {
                    let at = clock.now().0;
                    let store = Arc::clone(&presence);
                    let recorded =
                        super::off_thread("usp.record", move || store.record(&device, online, at))
                            .await;
                    if recorded.is_none() {
                        // Not stored: not acknowledged, so the broker sends it again.
                        continue;
                    }
                } else {
                    tracing::debug!(topic = %p.topic, "usp.mqtt_ignored");
                }
                if let Err(e) = client.ack(&p).await {
                    tracing::warn!(error = %e, "usp.mqtt_ack_failed");
                }
            }
            Ok(_) => {}
            Err(e) => {
                let pause = reconnect_delay(failures);
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, retry_in_s = pause.as_secs(), "usp.mqtt_disconnected");
                tokio::select! {
                    _ = shutdown.changed() => break,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
    let _ = client.disconnect().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_messages_are_read_and_nothing_else() {
        assert_eq!(
            parse_status("oktopus/usp/v1/status/os::012345-F00D", b"1"),
            Some(("os::012345-F00D".into(), true))
        );
        assert_eq!(
            parse_status("oktopus/usp/v1/status/oui-sn", b"0\n"),
            Some(("oui-sn".into(), false))
        );
        assert_eq!(
            parse_status("oktopus/usp/v1/status/x", b"\"1\""),
            Some(("x".into(), true))
        );
        assert_eq!(parse_status("oktopus/usp/v1/status/", b"1"), None);
        assert_eq!(parse_status("oktopus/usp/v1/status/a/b", b"1"), None);
        assert_eq!(parse_status("oktopus/usp/v1/controller", b"1"), None);
        assert_eq!(parse_status("oktopus/usp/v1/status/x", b"2"), None);
    }

    #[test]
    fn only_a_change_of_state_is_an_event() {
        let dir = tempfile::tempdir().unwrap();
        let p = Presence::open(&dir.path().join("hub.sqlite3"), false).unwrap();
        assert_eq!(p.record("a", true, 1).unwrap(), Some(1));
        assert_eq!(p.record("a", true, 2).unwrap(), None, "delivered again");
        assert_eq!(p.record("a", false, 3).unwrap(), Some(2));
        assert_eq!(p.record("b", false, 4).unwrap(), Some(3));
        let all = p.after(0, 10).unwrap();
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(p.after(2, 10).unwrap()[0].device, "b");
        assert_eq!(
            p.all().unwrap(),
            [("a".into(), false, 3), ("b".into(), false, 4)]
        );
        assert_eq!(reconnect_delay(0), Duration::from_secs(1));
        assert_eq!(reconnect_delay(9), Duration::from_secs(30));
    }
}
