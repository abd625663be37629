//! The office's live stream (`GET /api/v1/events`, server-sent events): what wakes a
//! dispatcher's sync the moment something changes. The stream is parsed by `eventsource-stream`
//! (the SSE format in full: multi-line data, comments, `retry`), and the last event id is kept
//! so a stream that drops (network, token refresh) resumes where it stopped with
//! `Last-Event-ID`: the server replays what was missed.

use std::io::Read;

use eventsource_stream::Eventsource;

use crate::TransportError;
use crate::sync_client::http::{Http, failed};

/// One event of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveEvent {
    /// The event's name (`changed`, `conflict`, `resync`…).
    pub name: String,
    /// Its id, as the server numbers them.
    pub id: String,
    /// Its JSON data.
    pub data: String,
}

/// Whether to keep following after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// A live stream that resumes where it stopped.
#[derive(Debug, Default, Clone)]
pub struct LiveStream {
    last_id: Option<String>,
}

/// How much of the stream is read at once.
const CHUNK: usize = 8 * 1024;

impl LiveStream {
    /// The id of the last event received, sent as `Last-Event-ID` on the next [`Self::follow`].
    pub fn last_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// Opens the stream and calls `on_event` for each event (first those missed since the last
    /// one received, replayed by the server), until the stream ends, fails, or `on_event` says
    /// [`Flow::Stop`]. `http` must have no deadline (the stream stays open; the server sends a
    /// keep-alive every 15 s).
    pub fn follow(
        &mut self,
        http: &Http,
        server: &str,
        token: &str,
        mut on_event: impl FnMut(&LiveEvent) -> Flow,
    ) -> Result<(), TransportError> {
        let mut req = http
            .get(format!("{}/api/v1/events", server.trim_end_matches('/')))
            .bearer_auth(token)
            .header("accept", "text/event-stream");
        if let Some(id) = &self.last_id {
            req = req.header("last-event-id", id.as_str());
        }
        let resp = req.send().map_err(failed)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(TransportError::Server {
                status: status.as_u16(),
                message: format!("the live stream was refused ({status})"),
            });
        }
        let mut body = resp;
        let chunks = std::iter::from_fn(move || {
            let mut buf = vec![0u8; CHUNK];
            match body.read(&mut buf) {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some(Ok(buf))
                }
                Err(e) => Some(Err(e)),
            }
        });
        let events = Box::pin(futures_util::stream::iter(chunks).eventsource());
        for ev in futures_executor::block_on_stream(events) {
            let ev = ev.map_err(|e| TransportError::Unreachable(e.to_string()))?;
            if !ev.id.is_empty() {
                self.last_id = Some(ev.id.clone());
            }
            let ev = LiveEvent {
                name: ev.event,
                id: ev.id,
                data: ev.data,
            };
            if on_event(&ev) == Flow::Stop {
                break;
            }
        }
        Ok(())
    }
}
