//! The client side of a sync exchange.

use crate::ids::DocId;
use crate::protocol::{ClientHello, PushDoc, SyncRequest, SyncResponse};
use crate::record::EntityKind;

/// One local change waiting to be pushed.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub seq: u64,
    pub doc: DocId,
    pub kind: EntityKind,
    pub epoch: u32,
    pub change: Vec<u8>,
}

/// Where this replica stands with the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncPoint {
    pub cursor: u64,
    pub token: u64,
}

/// Builds the request for the outbox (in outbox order), grouping changes by document so each
/// document's changes stay in causal order.
pub fn build_request(hello: ClientHello, at: SyncPoint, outbox: &[OutboxEntry]) -> SyncRequest {
    let mut push: Vec<PushDoc> = Vec::new();
    let mut index: std::collections::HashMap<(DocId, u32), usize> = Default::default();
    for e in outbox {
        let i = *index.entry((e.doc, e.epoch)).or_insert_with(|| {
            push.push(PushDoc {
                doc: e.doc,
                kind: e.kind,
                epoch: e.epoch,
                changes: Vec::new(),
            });
            push.len() - 1
        });
        push[i].changes.push(e.change.clone());
    }
    SyncRequest {
        hello,
        cursor: at.cursor,
        token: at.token,
        outbox_upto: outbox.iter().map(|e| e.seq).max().unwrap_or(0),
        push,
    }
}

/// A response that does not answer this replica's current position (late or duplicated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stale response for cursor {got}, replica is at {at}")]
pub struct StaleResponse {
    pub got: u64,
    pub at: u64,
}

/// Checks that a response answers the replica's current position. Any other response is ignored:
/// everything in it will come again, so dropping it loses nothing.
pub fn accept(at: SyncPoint, resp: &SyncResponse) -> Result<SyncPoint, StaleResponse> {
    if resp.base_cursor != at.cursor || resp.base_token != at.token {
        return Err(StaleResponse {
            got: resp.base_cursor,
            at: at.cursor,
        });
    }
    Ok(SyncPoint {
        cursor: resp.cursor,
        token: resp.token,
    })
}
