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

/// At most this many documents are pushed in one request; the rest follow in the next ones.
pub const MAX_PUSH_DOCS: usize = 2_000;

/// At most this many changes are pushed in one request (a week offline is a few thousand).
pub const MAX_PUSH_CHANGES: usize = 20_000;

/// Builds the request for the outbox (in outbox order), grouping changes by document so each
/// document's changes stay in causal order. It takes the longest prefix of the outbox that touches
/// at most [`MAX_PUSH_DOCS`] documents and holds at most [`MAX_PUSH_CHANGES`] changes, so
/// `outbox_upto` acknowledges exactly what was sent.
pub fn build_request(hello: ClientHello, at: SyncPoint, outbox: &[OutboxEntry]) -> SyncRequest {
    let mut push: Vec<PushDoc> = Vec::new();
    let mut index: std::collections::HashMap<(DocId, u32), usize> = Default::default();
    let mut upto = 0;
    for (n, e) in outbox.iter().enumerate() {
        if n == MAX_PUSH_CHANGES
            || (!index.contains_key(&(e.doc, e.epoch)) && push.len() == MAX_PUSH_DOCS)
        {
            break;
        }
        upto = e.seq;
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
        outbox_upto: upto,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Author, DeviceId, Role};

    fn entry(seq: u64, doc: u128) -> OutboxEntry {
        OutboxEntry {
            seq,
            doc: DocId::from_u128(doc),
            kind: EntityKind::Job,
            epoch: 0,
            change: vec![seq as u8],
        }
    }

    #[test]
    fn a_large_outbox_is_pushed_as_prefixes_touching_a_bounded_number_of_documents() {
        let hello = ClientHello {
            author: Author::new(Role::Dispatcher, DeviceId(DocId::from_u128(1))),
            app_version: "t".into(),
        };
        // Two changes per document, interleaved: doc d gets seqs 2d+1 and 2d+2.
        let n = MAX_PUSH_DOCS as u64 + 10;
        let outbox: Vec<OutboxEntry> = (0..n)
            .flat_map(|d| {
                [
                    entry(2 * d + 1, u128::from(d)),
                    entry(2 * d + 2, u128::from(d)),
                ]
            })
            .collect();
        let req = build_request(hello.clone(), SyncPoint::default(), &outbox);
        assert_eq!(req.push.len(), MAX_PUSH_DOCS);
        assert_eq!(
            req.outbox_upto,
            2 * MAX_PUSH_DOCS as u64,
            "acknowledges exactly the prefix sent"
        );
        assert!(req.push.iter().all(|p| p.changes.len() == 2));
        let rest: Vec<OutboxEntry> = outbox
            .into_iter()
            .filter(|e| e.seq > req.outbox_upto)
            .collect();
        let next = build_request(hello, SyncPoint::default(), &rest);
        assert_eq!(next.push.len(), 10);
        assert_eq!(next.outbox_upto, 2 * n);
    }

    #[test]
    fn a_long_offline_outbox_is_pushed_in_requests_of_bounded_changes() {
        let hello = ClientHello {
            author: Author::new(Role::Technician, DeviceId(DocId::from_u128(1))),
            app_version: "t".into(),
        };
        let n = MAX_PUSH_CHANGES as u64 + 5;
        let outbox: Vec<OutboxEntry> = (1..=n).map(|s| entry(s, 7)).collect();
        let req = build_request(hello.clone(), SyncPoint::default(), &outbox);
        assert_eq!(req.push.len(), 1);
        assert_eq!(req.push[0].changes.len(), MAX_PUSH_CHANGES);
        assert_eq!(req.outbox_upto, MAX_PUSH_CHANGES as u64);
        let rest: Vec<OutboxEntry> = outbox
            .into_iter()
            .filter(|e| e.seq > req.outbox_upto)
            .collect();
        let next = build_request(hello, SyncPoint::default(), &rest);
        assert_eq!(next.push[0].changes.len(), 5);
        assert_eq!(next.outbox_upto, n);
    }
}
