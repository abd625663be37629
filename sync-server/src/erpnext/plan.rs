//! What reconciling one document should do, decided from values alone: our record, the shadow
//! (ERPNext's record as last reconciled) and ERPNext's record now. No I/O here; the bridge reads
//! the three, asks these functions, and carries out the answer.

use shared::ids::DocId;
use shared::record::{EntityKind, FieldChange, Record, Scalar};

use super::mapping::{self, DocMap, MapError};

/// The first decision, before ERPNext is asked anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Nothing goes to ERPNext now.
    Skip(Why),
    /// ERPNext has the record under this name: read it and merge.
    Fetch(String),
    /// ERPNext has no record of it yet. `lookup`: a create was sent whose answer was lost, so
    /// look for the record by our id before creating a second one.
    Create { lookup: bool },
    /// Deleted here: delete ERPNext's record of this name too.
    Remove(String),
}

/// What deleting a document here does to ERPNext's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Deleted too (our own doctypes: nothing else in ERPNext depends on them).
    Delete,
    /// Left as the office has it (ERPNext's own doctypes, such as Customer, which invoices and
    /// payments link to: the office archives those itself).
    Keep,
}

/// How a doctype's records go when their documents are deleted here.
pub fn removal(map: &DocMap) -> Removal {
    if map.custom {
        Removal::Delete
    } else {
        Removal::Keep
    }
}

/// Why a document is not reconciled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Deleted here: ERPNext's record stays as the office left it.
    Deleted,
    /// The office has a decision to make first (work arrived on a deleted record, or two
    /// records of one unit met).
    Undecided,
    /// A confirmed duplicate: its twin stands for the unit in ERPNext.
    Duplicate,
}

/// Decides where reconciling starts. `undecided`: the document lists an open conflict on
/// `deleted` or `duplicate_of`. `shadow_name`: the name in the shadow, which wins over the
/// record's `erp_name` (the bridge wrote both, the shadow last). `creating`: a create was sent
/// without its answer being recorded.
pub fn start(
    ours: &Record,
    removal: Removal,
    undecided: bool,
    shadow_name: Option<&str>,
    creating: bool,
) -> Start {
    if undecided {
        return Start::Skip(Why::Undecided);
    }
    if ours.get("deleted") == &Scalar::Bool(true) {
        // Only a record the bridge itself reconciled (it has a shadow) is deleted in ERPNext.
        return match (removal, shadow_name) {
            (Removal::Delete, Some(name)) => Start::Remove(name.to_owned()),
            _ => Start::Skip(Why::Deleted),
        };
    }
    if ours.get("duplicate_of") != &Scalar::Null {
        return Start::Skip(Why::Duplicate);
    }
    match shadow_name.or_else(|| ours.get("erp_name").as_str()) {
        Some(name) => Start::Fetch(name.to_owned()),
        None => Start::Create { lookup: creating },
    }
}

/// What ERPNext changed since the shadow, in our canonical spelling, to be written into the
/// document as ERPNext concurrently with the shadow's heads. Without a shadow (the first meeting
/// after a create or an import) there is no base to tell who changed what: nothing is pulled, and
/// [`push`] sends our values. A value our entity refuses is an error, before anything is written.
pub fn pull(
    kind: EntityKind,
    doc: DocId,
    ours: &Record,
    shadow: Option<&Record>,
    theirs: &Record,
) -> Result<Vec<FieldChange>, MapError> {
    match shadow {
        None => Ok(Vec::new()),
        Some(base) => {
            let changed = base.diff(theirs);
            if changed.is_empty() {
                return Ok(Vec::new());
            }
            mapping::canonical_pull(kind, doc, ours, &changed)
        }
    }
}

/// Where the document, after the pull, differs from ERPNext: the fields and tables one update
/// sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Push {
    pub fields: Vec<&'static str>,
    pub tables: Vec<&'static str>,
}

impl Push {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.tables.is_empty()
    }
}

/// What an ERPNext document still holds as an earlier version of the mapping wrote it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Legacy {
    /// Registers whose value is only in their old field (a time as Unix milliseconds).
    pub fields: Vec<&'static str>,
    /// Tables with rows written as JSON, or with times only in their old columns.
    pub tables: Vec<&'static str>,
}

/// Decides what to push: the mapped registers and tables where `ours` differs from `theirs`,
/// and what is still in an earlier version's form (`legacy`: sent again, typed).
pub fn push(map: &DocMap, ours: &Record, theirs: &Record, legacy: &Legacy) -> Push {
    let now = mapping::mapped(map, ours);
    Push {
        fields: map
            .fields
            .iter()
            .filter(|f| now.get(f.ours) != theirs.get(f.ours) || legacy.fields.contains(&f.ours))
            .map(|f| f.ours)
            .collect(),
        tables: map
            .tables
            .iter()
            .filter(|t| {
                now.items(t.collection) != theirs.items(t.collection)
                    || legacy.tables.contains(&t.collection)
            })
            .map(|t| t.collection)
            .collect(),
    }
}

/// Whether the document still has to record ERPNext's name for it.
pub fn needs_name(ours: &Record, name: &str) -> bool {
    ours.get("erp_name").as_str() != Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(fields: &[(&str, Scalar)]) -> Record {
        let mut r = Record::default();
        for (f, v) in fields {
            r.set(f, v.clone());
        }
        r
    }

    #[test]
    fn start_table() {
        let none = Scalar::Null;
        // (what, ours, undecided, shadow name, create marker, decision)
        type Case<'a> = (&'a str, Record, bool, Option<&'a str>, bool, Start);
        let cases: Vec<Case<'_>> = vec![
            (
                "deleted here, reconciled before",
                rec(&[
                    ("deleted", Scalar::Bool(true)),
                    ("erp_name", Scalar::str("J-1")),
                ]),
                false,
                Some("J-1"),
                false,
                Start::Remove("J-1".into()),
            ),
            (
                "deleted here, a name the bridge never reconciled",
                rec(&[
                    ("deleted", Scalar::Bool(true)),
                    ("erp_name", Scalar::str("J-1")),
                ]),
                false,
                None,
                false,
                Start::Skip(Why::Deleted),
            ),
            (
                "deleted, field work arriving: the office decides first",
                rec(&[("deleted", Scalar::Bool(true))]),
                true,
                Some("J-1"),
                false,
                Start::Skip(Why::Undecided),
            ),
            (
                "office decision open",
                rec(&[("erp_name", Scalar::str("J-1"))]),
                true,
                Some("J-1"),
                false,
                Start::Skip(Why::Undecided),
            ),
            (
                "confirmed duplicate",
                rec(&[("duplicate_of", Scalar::str("x"))]),
                false,
                None,
                false,
                Start::Skip(Why::Duplicate),
            ),
            (
                "shadow name wins",
                rec(&[("erp_name", Scalar::str("OLD"))]),
                false,
                Some("NEW"),
                false,
                Start::Fetch("NEW".into()),
            ),
            (
                "name on the record only",
                rec(&[
                    ("erp_name", Scalar::str("J-7")),
                    ("deleted", Scalar::Bool(false)),
                ]),
                false,
                None,
                false,
                Start::Fetch("J-7".into()),
            ),
            (
                "new",
                rec(&[("erp_name", none.clone())]),
                false,
                None,
                false,
                Start::Create { lookup: false },
            ),
            (
                "create answer lost",
                rec(&[("erp_name", none)]),
                false,
                None,
                true,
                Start::Create { lookup: true },
            ),
        ];
        for (what, ours, undecided, shadow, creating, want) in cases {
            assert_eq!(
                start(&ours, Removal::Delete, undecided, shadow, creating),
                want,
                "{what}"
            );
        }
        // ERPNext's own doctypes keep their record.
        let deleted = rec(&[("deleted", Scalar::Bool(true))]);
        assert_eq!(
            start(&deleted, Removal::Keep, false, Some("CUST-1"), false),
            Start::Skip(Why::Deleted)
        );
        assert_eq!(removal(mapping::doc_map(EntityKind::Job)), Removal::Delete);
        assert_eq!(
            removal(mapping::doc_map(EntityKind::Customer)),
            Removal::Keep
        );
    }

    fn job() -> (DocId, Record) {
        let spec = crate::demo::Spec {
            technicians: 2,
            locations: 4,
            ..crate::demo::DEMO_SPEC
        };
        let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).expect("valid date");
        crate::demo::generate(crate::demo::DEMO_SEED, spec, today)
            .entities
            .into_iter()
            .find(|e| e.kind() == EntityKind::Job)
            .map(|e| (e.doc_id(), e.to_record()))
            .expect("the demo has jobs")
    }

    #[test]
    fn pull_table() {
        let (doc, ours) = job();
        let map = mapping::doc_map(EntityKind::Job);
        let base = mapping::mapped(map, &ours);
        let mut retitled = base.clone();
        retitled.set("title", Scalar::str("Fibre cut, aisle 3 "));
        let mut bad_priority = base.clone();
        bad_priority.set("priority", Scalar::str("whenever"));

        // No shadow: no base, nothing pulled.
        assert_eq!(
            pull(EntityKind::Job, doc, &ours, None, &retitled),
            Ok(vec![])
        );
        // ERPNext unchanged since the shadow.
        assert_eq!(
            pull(EntityKind::Job, doc, &ours, Some(&base), &base),
            Ok(vec![])
        );
        // ERPNext retitled it: pulled in our spelling (trailing space trimmed).
        assert_eq!(
            pull(EntityKind::Job, doc, &ours, Some(&base), &retitled),
            Ok(vec![FieldChange::Set {
                field: "title".into(),
                value: Scalar::str("Fibre cut, aisle 3"),
            }])
        );
        // A value our entity refuses stops the pull before anything is written.
        assert!(matches!(
            pull(EntityKind::Job, doc, &ours, Some(&base), &bad_priority),
            Err(MapError::BadValue { .. })
        ));
    }

    #[test]
    fn push_table() {
        let (_, ours) = job();
        let map = mapping::doc_map(EntityKind::Job);
        let theirs = mapping::mapped(map, &ours);
        assert!(
            push(map, &ours, &theirs, &Legacy::default()).is_empty(),
            "in step"
        );

        // An empty text and ERPNext's null are the same value.
        let mut blank = ours.clone();
        blank.set("title", Scalar::str(""));
        let mut theirs_null = theirs.clone();
        theirs_null.set("title", Scalar::Null);
        assert!(
            push(map, &blank, &theirs_null, &Legacy::default()).is_empty(),
            "empty is null"
        );

        let mut edited = ours.clone();
        edited.set("title", Scalar::str("Splice the drop"));
        assert_eq!(
            push(map, &edited, &theirs, &Legacy::default()),
            Push {
                fields: vec!["title"],
                tables: vec![],
            }
        );

        // In step, but written by an earlier version (a time in milliseconds, a JSON table):
        // written again.
        let old = Legacy {
            fields: vec!["actual_start"],
            tables: vec!["notes"],
        };
        assert_eq!(
            push(map, &ours, &theirs, &old),
            Push {
                fields: vec!["actual_start"],
                tables: vec!["notes"],
            }
        );

        // Fields outside the mapping never go.
        let mut local = ours;
        local.set("erp_name", Scalar::str("J-9"));
        assert!(
            push(map, &local, &theirs, &Legacy::default())
                .fields
                .iter()
                .all(|f| *f != "erp_name")
        );
    }

    #[test]
    fn needs_name_only_when_it_differs() {
        let r = rec(&[("erp_name", Scalar::str("J-1"))]);
        assert!(!needs_name(&r, "J-1"));
        assert!(needs_name(&r, "J-2"));
        assert!(needs_name(&Record::default(), "J-1"));
    }
}
