//! The bridge's own durable state, typed: shadows, issues, the markers of a create or an import
//! under way, and the cursors. It lives in the store's metadata, next to the documents, so a
//! backup holds both; this module is the only code that knows how it is spelled there.
//!
//! A value that cannot be read back is [`BridgeError::CorruptState`]: the document it belongs
//! to stops (parked as an issue) instead of being reconciled as if the bridge knew nothing,
//! which could overwrite ERPNext's edits with ours.

use serde::{Deserialize, Serialize};
use shared::clock::Millis;
use shared::ids::DocId;
use shared::record::{EntityKind, Record};

use super::bridge::{BridgeError, Issue};
use crate::service::{ServiceError, SyncService};

/// ERPNext's record as last reconciled, and the document's heads at that moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shadow {
    /// The record's ERPNext `name`.
    pub name: String,
    /// Its `modified`, verbatim (ERPNext compares it as text).
    pub modified: String,
    pub heads: Vec<String>,
    /// Its mapped registers.
    pub record: Record,
}

/// The first poll's cursor: everything.
const EPOCH: &str = "1970-01-01 00:00:00.000000";

/// Where each piece of state is kept.
#[derive(Debug, Clone, Copy)]
enum Key<'a> {
    /// The outbound cursor: the log position reconciled up to.
    OutCursor,
    Shadow(DocId),
    Issue(DocId),
    /// A create was sent and its answer may have been lost: look the record up first.
    Creating(DocId),
    /// The id chosen for an ERPNext record being imported, so a retried import reuses it.
    Importing {
        doctype: &'a str,
        name: &'a str,
    },
    /// A doctype's poll cursor (a `modified` timestamp).
    Poll(&'a str),
    /// The `Deleted Document` feed's cursor (a `creation` timestamp).
    DeletedFeed,
}

impl Key<'_> {
    fn text(self) -> String {
        match self {
            Key::OutCursor => "erp:out_cursor".into(),
            Key::Shadow(d) => format!("{SHADOW}{d}"),
            Key::Issue(d) => format!("{ISSUE}{d}"),
            Key::Creating(d) => format!("erp:creating:{d}"),
            Key::Importing { doctype, name } => format!("erp:importing:{doctype}:{name}"),
            Key::Poll(doctype) => format!("erp:poll:{doctype}"),
            Key::DeletedFeed => "erp:poll-deleted".into(),
        }
    }

    fn what(self) -> &'static str {
        match self {
            Key::OutCursor => "outbound cursor",
            Key::Shadow(_) => "shadow",
            Key::Issue(_) => "issue",
            Key::Creating(_) => "create marker",
            Key::Importing { .. } => "import marker",
            Key::Poll(_) => "poll cursor",
            Key::DeletedFeed => "deletion feed cursor",
        }
    }
}

const SHADOW: &str = "erp:shadow:";
const ISSUE: &str = "erp:issue:";

/// The service does blocking I/O (SQLite, the PostgreSQL client): on a multi-threaded runtime
/// the worker is handed over while it runs, so other tasks carry on.
pub(super) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The bridge's state in a service's store.
#[derive(Clone, Copy, Debug)]
pub struct State<'a>(pub &'a SyncService);

impl State<'_> {
    fn get(self, key: Key<'_>) -> Result<Option<String>, ServiceError> {
        blocking(|| self.0.meta(&key.text()))
    }

    fn put(self, key: Key<'_>, value: &str) -> Result<(), ServiceError> {
        blocking(|| self.0.set_meta(&key.text(), value))
    }

    fn delete(self, key: Key<'_>) -> Result<(), ServiceError> {
        blocking(|| self.0.delete_meta(&key.text()))
    }

    fn get_json<T: for<'de> Deserialize<'de>>(
        self,
        key: Key<'_>,
        doc: Option<DocId>,
    ) -> Result<Option<T>, BridgeError> {
        match self.get(key)? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| corrupt(key, doc, &e.to_string())),
        }
    }

    fn put_json<T: Serialize>(self, key: Key<'_>, value: &T) -> Result<(), BridgeError> {
        let text = serde_json::to_string(value).map_err(|e| corrupt(key, None, &e.to_string()))?;
        Ok(self.put(key, &text)?)
    }

    /// ERPNext's record as last reconciled; an unreadable one is an error, never "none".
    pub fn shadow(self, doc: DocId) -> Result<Option<Shadow>, BridgeError> {
        self.get_json(Key::Shadow(doc), Some(doc))
    }

    pub fn set_shadow(self, doc: DocId, shadow: &Shadow) -> Result<(), BridgeError> {
        self.put_json(Key::Shadow(doc), shadow)
    }

    pub fn forget_shadow(self, doc: DocId) -> Result<(), BridgeError> {
        Ok(self.delete(Key::Shadow(doc))?)
    }

    /// Every open issue, oldest first. An unreadable one is listed as what it is, so it can be
    /// retried (which forgets it) rather than hiding its document's trouble.
    pub fn issues(self, now: Millis) -> Result<Vec<Issue>, BridgeError> {
        let rows = blocking(|| self.0.meta_prefix(ISSUE))?;
        let mut out = Vec::with_capacity(rows.len());
        for (key, text) in rows {
            match serde_json::from_str::<Issue>(&text) {
                Ok(i) => out.push(i),
                Err(e) => {
                    let Some(doc) = key.strip_prefix(ISSUE).and_then(|d| d.parse().ok()) else {
                        tracing::error!(key, "erpnext.unreadable_issue_key");
                        continue;
                    };
                    out.push(Issue {
                        doc,
                        kind: EntityKind::Job,
                        doctype: String::new(),
                        erp_name: None,
                        direction: "state".into(),
                        exc_type: "CorruptState".into(),
                        message: format!("the stored issue cannot be read: {e}"),
                        at: now,
                    });
                }
            }
        }
        out.sort_by_key(|i| (i.at, i.doc));
        Ok(out)
    }

    pub fn set_issue(self, issue: &Issue) -> Result<(), BridgeError> {
        self.put_json(Key::Issue(issue.doc), issue)
    }

    pub fn clear_issue(self, doc: DocId) -> Result<(), BridgeError> {
        Ok(self.delete(Key::Issue(doc))?)
    }

    /// Whether a create of this document was sent without its answer being recorded.
    pub fn creating(self, doc: DocId) -> Result<bool, BridgeError> {
        Ok(self.get(Key::Creating(doc))?.is_some())
    }

    pub fn set_creating(self, doc: DocId, on: bool) -> Result<(), BridgeError> {
        let done = if on {
            self.put(Key::Creating(doc), "1")
        } else {
            self.delete(Key::Creating(doc))
        };
        Ok(done?)
    }

    /// The id an import of this ERPNext record chose before it was cut short.
    pub fn importing(self, doctype: &str, name: &str) -> Result<Option<DocId>, BridgeError> {
        let key = Key::Importing { doctype, name };
        match self.get(key)? {
            None => Ok(None),
            Some(t) => t
                .parse()
                .map(Some)
                .map_err(|_| corrupt(key, None, &format!("not a document id: {t:?}"))),
        }
    }

    pub fn set_importing(
        self,
        doctype: &str,
        name: &str,
        doc: Option<DocId>,
    ) -> Result<(), BridgeError> {
        let key = Key::Importing { doctype, name };
        let done = match doc {
            Some(d) => self.put(key, &d.to_string()),
            None => self.delete(key),
        };
        Ok(done?)
    }

    pub fn out_cursor(self) -> Result<u64, BridgeError> {
        match self.get(Key::OutCursor)? {
            None => Ok(0),
            Some(t) => t
                .parse()
                .map_err(|_| corrupt(Key::OutCursor, None, &format!("not a position: {t:?}"))),
        }
    }

    pub fn set_out_cursor(self, c: u64) -> Result<(), BridgeError> {
        Ok(self.put(Key::OutCursor, &c.to_string())?)
    }

    /// A doctype's poll cursor; ERPNext's own timestamp text, compared by ERPNext.
    pub fn poll_cursor(self, doctype: &str) -> Result<String, BridgeError> {
        Ok(self
            .get(Key::Poll(doctype))?
            .unwrap_or_else(|| EPOCH.into()))
    }

    pub fn set_poll_cursor(self, doctype: &str, cursor: &str) -> Result<(), BridgeError> {
        Ok(self.put(Key::Poll(doctype), cursor)?)
    }

    pub fn deleted_cursor(self) -> Result<String, BridgeError> {
        Ok(self.get(Key::DeletedFeed)?.unwrap_or_else(|| EPOCH.into()))
    }

    pub fn set_deleted_cursor(self, cursor: &str) -> Result<(), BridgeError> {
        Ok(self.put(Key::DeletedFeed, cursor)?)
    }
}

fn corrupt(key: Key<'_>, doc: Option<DocId>, problem: &str) -> BridgeError {
    BridgeError::CorruptState {
        doc,
        what: key.what(),
        problem: problem.to_owned(),
    }
}
