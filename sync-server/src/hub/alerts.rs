//! Monitoring alerts from Uptime Kuma: which monitored parts of the network (an OLT, a POP, the
//! ERPNext site…) are down now, and since when, for dispatchers to see before twenty tickets
//! about one outage arrive.
//!
//! Uptime Kuma's webhook notification posts `{"heartbeat": {"monitorID", "status" (0 down,
//! 1 up), "time", "msg"}, "monitor": {"id", "name", "url"|"hostname"}, "msg"}`; it signs nothing,
//! so the endpoint is set up with a bearer secret in its "Additional Headers". A test
//! notification carries no heartbeat.

use std::sync::{Arc, Mutex};

use rusqlite::{Connection, params};
use serde::Serialize;
use serde_json::Value;

use super::inbox::{Event, HandleError, Handler};

/// One monitor as last reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Monitor {
    pub id: i64,
    pub name: String,
    pub target: Option<String>,
    pub up: bool,
    /// Since when it is in that state (Uptime Kuma's heartbeat time, as it wrote it).
    pub since: String,
    pub message: Option<String>,
}

/// A heartbeat read from a webhook body; `None` for a test notification.
pub fn heartbeat(body: &Value) -> Result<Option<(Monitor, String)>, String> {
    let Some(hb) = body.get("heartbeat").filter(|h| !h.is_null()) else {
        return Ok(None);
    };
    let monitor = body.get("monitor").unwrap_or(&Value::Null);
    let id = hb
        .get("monitorID")
        .and_then(Value::as_i64)
        .or_else(|| monitor.get("id").and_then(Value::as_i64))
        .ok_or("the heartbeat names no monitor")?;
    let up = match hb.get("status").and_then(Value::as_i64) {
        Some(1) => true,
        Some(0) => false,
        other => return Err(format!("unknown heartbeat status {other:?}")),
    };
    let time = hb
        .get("time")
        .and_then(Value::as_str)
        .ok_or("the heartbeat has no time")?
        .to_owned();
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let m = Monitor {
        id,
        name: text(monitor, "name").unwrap_or_else(|| format!("monitor {id}")),
        target: text(monitor, "url")
            .filter(|u| !u.is_empty() && u != "https://")
            .or_else(|| text(monitor, "hostname")),
        up,
        since: time.clone(),
        message: text(hb, "msg").filter(|m| !m.is_empty()),
    };
    // One event per monitor, time and state: a repeated delivery is the same event.
    let event_id = format!("{id}:{time}:{}", u8::from(up));
    Ok(Some((m, event_id)))
}

pub struct Alerts {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerts").finish_non_exhaustive()
    }
}

impl Alerts {
    pub fn open(path: &std::path::Path) -> Result<Arc<Self>, rusqlite::Error> {
        // Derived from the inbox's events, like the payment state: not synced on its own.
        let conn = super::open_db(path, false)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS monitors (
                 id INTEGER PRIMARY KEY, name TEXT NOT NULL, target TEXT, up INTEGER NOT NULL,
                 since TEXT NOT NULL, message TEXT
             );",
        )?;
        Ok(Arc::new(Self {
            conn: Mutex::new(conn),
        }))
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        super::lock_db(&self.conn)
    }

    /// Records a heartbeat unless a later one is already known (deliveries out of order).
    pub fn record(&self, m: &Monitor) -> Result<(), rusqlite::Error> {
        self.conn().execute(
            "INSERT INTO monitors (id, name, target, up, since, message)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, target = excluded.target,
                 up = excluded.up, since = excluded.since, message = excluded.message
             WHERE excluded.since >= monitors.since",
            params![m.id, m.name, m.target, m.up, m.since, m.message],
        )?;
        Ok(())
    }

    /// Every monitor, those down first.
    pub fn monitors(&self) -> Result<Vec<Monitor>, rusqlite::Error> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, name, target, up, since, message FROM monitors ORDER BY up, since DESC",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Monitor {
                id: r.get(0)?,
                name: r.get(1)?,
                target: r.get(2)?,
                up: r.get(3)?,
                since: r.get(4)?,
                message: r.get(5)?,
            })
        })?;
        rows.collect()
    }
}

impl Handler for Alerts {
    fn handle<'a>(
        &'a self,
        event: &'a Event,
    ) -> futures_util::future::BoxFuture<'a, Result<(), HandleError>> {
        Box::pin(async move {
            match heartbeat(&event.payload).map_err(HandleError::Final)? {
                Some((m, _)) => self
                    .record(&m)
                    .map_err(|e| HandleError::Retry(e.to_string())),
                None => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn down(time: &str, status: i64) -> Value {
        json!({
            "heartbeat": {"monitorID": 7, "status": status, "time": time, "msg": "timeout", "important": true},
            "monitor": {"id": 7, "name": "OLT Lévis", "url": "https://", "hostname": "10.20.0.1", "type": "ping"},
            "msg": "[OLT Lévis] [🔴 Down] timeout"
        })
    }

    #[test]
    fn heartbeats_in_any_order_leave_the_latest_state() {
        let dir = tempfile::tempdir().unwrap();
        let a = Alerts::open(&dir.path().join("hub.sqlite3")).unwrap();
        let (up, _) = heartbeat(&down("2026-11-30 14:10:00.000", 1))
            .unwrap()
            .unwrap();
        let (dn, id) = heartbeat(&down("2026-11-30 14:03:00.000", 0))
            .unwrap()
            .unwrap();
        assert_eq!(id, "7:2026-11-30 14:03:00.000:0");
        assert_eq!(
            dn.target.as_deref(),
            Some("10.20.0.1"),
            "an empty URL gives the host"
        );
        a.record(&up).unwrap();
        a.record(&dn).unwrap();
        let m = a.monitors().unwrap();
        assert_eq!(m.len(), 1);
        assert!(m[0].up, "the later heartbeat (up) stays: {m:?}");
        assert_eq!(
            heartbeat(&json!({"heartbeat": null, "monitor": null, "msg": "Test"})),
            Ok(None)
        );
        assert!(heartbeat(&down("2026-11-30 14:03:00.000", 5)).is_err());
    }
}
