//! Domain merge rules on top of the CRDT, as pure functions.
//!
//! Automerge keeps every concurrent write to a register (`get_all`). These functions pick the value
//! every replica shows, by the field's [`Policy`], and say when the pick is a real conflict that a
//! dispatcher must see. They see only values and their authors' roles, so every replica that holds
//! the same document computes the same answer.

use serde::{Deserialize, Serialize};

use crate::ids::{Author, Role};
use crate::model::JobStatus;
use crate::record::{Policy, Scalar};

/// One concurrent value of a register and who wrote it (`None`: an actor id we cannot parse).
pub type Candidate = (Scalar, Option<Author>);

/// What a register reads as after applying its policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    pub value: Scalar,
    /// Set when the policy could not settle the concurrent values: all of them, for the inbox.
    pub conflict: Option<Vec<Candidate>>,
    /// Set when the policy settled concurrent, different values against a person (a technician,
    /// a dispatcher, ERPNext's office): all of them, so whoever lost still sees what was kept
    /// instead of their value. Never set together with `conflict`.
    pub overridden: Option<Vec<Candidate>>,
}

/// A conflict on one register of one document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldConflict {
    /// `status`, or `checklist[<item>].done` for an item's register.
    pub field: String,
    /// The value every replica shows (until someone settles it, for an open conflict).
    pub shown: Scalar,
    pub values: Vec<(Scalar, Option<Author>)>,
}

fn office_rank(author: Option<&Author>) -> u8 {
    if author.is_some_and(Author::is_erpnext) {
        return 3;
    }
    match author.map(|a| a.role) {
        Some(Role::Dispatcher | Role::Admin) => 3,
        Some(Role::Server) => 2,
        Some(Role::Technician) => 1,
        None => 0,
    }
}

fn device_rank(author: Option<&Author>) -> u8 {
    if author.is_some_and(Author::is_erpnext) {
        return 2;
    }
    match author.map(|a| a.role) {
        Some(Role::Technician) => 3,
        Some(Role::Dispatcher | Role::Admin) => 2,
        Some(Role::Server) => 1,
        None => 0,
    }
}

/// Resolves a register. `candidates` come in Automerge's order, whose last element is Automerge's
/// own deterministic winner; it breaks ties.
pub fn resolve(policy: Policy, candidates: &[Candidate]) -> Resolution {
    let Some(last) = candidates.last() else {
        return Resolution {
            value: Scalar::Null,
            conflict: None,
            overridden: None,
        };
    };
    if candidates.iter().all(|(v, _)| v == &last.0) {
        return Resolution {
            value: last.0.clone(),
            conflict: None,
            overridden: None,
        };
    }
    let mut r = settle(policy, candidates);
    if r.conflict.is_none()
        && candidates
            .iter()
            .any(|(v, a)| v != &r.value && a.as_ref().is_some_and(is_person))
    {
        r.overridden = Some(candidates.to_vec());
    }
    r
}

/// Whether an author is someone who expects to see their value: not the server's own seeding,
/// compensating or decision-opening changes.
fn is_person(a: &Author) -> bool {
    a.is_erpnext() || a.role != Role::Server
}

fn settle(policy: Policy, candidates: &[Candidate]) -> Resolution {
    match policy {
        Policy::DeviceWins => by_rank(candidates, device_rank),
        Policy::OfficeWins => by_rank(candidates, office_rank),
        Policy::JobStatus => job_status(candidates),
        Policy::Deletion => {
            let mut r = by_rank(candidates, office_rank);
            if r.conflict.is_some() {
                r.value = Scalar::Bool(false);
            }
            r
        }
    }
}

fn by_rank(candidates: &[Candidate], rank: impl Fn(Option<&Author>) -> u8) -> Resolution {
    let top = candidates
        .iter()
        .map(|(_, a)| rank(a.as_ref()))
        .max()
        .unwrap_or(0);
    let best: Vec<&Candidate> = candidates
        .iter()
        .filter(|(_, a)| rank(a.as_ref()) == top)
        .collect();
    // `best` is not empty: it holds at least the candidates whose rank is the maximum.
    let value = best.last().map(|c| c.0.clone()).unwrap_or(Scalar::Null);
    let settled = best.iter().all(|(v, _)| *v == value);
    Resolution {
        value,
        conflict: (!settled).then(|| candidates.to_vec()),
        overridden: None,
    }
}

fn job_status(candidates: &[Candidate]) -> Resolution {
    let mut statuses: Vec<JobStatus> = candidates
        .iter()
        .filter_map(|(v, _)| v.as_str()?.parse().ok())
        .collect();
    statuses.sort();
    statuses.dedup();
    let terminals: Vec<JobStatus> = statuses
        .iter()
        .copied()
        .filter(|s| s.is_terminal())
        .collect();
    // Field work is never hidden: completed shows over could-not-complete over cancelled.
    let preference = [
        JobStatus::Completed,
        JobStatus::CouldNotComplete,
        JobStatus::Cancelled,
    ];
    let impossible = terminals.len() >= 2
        || (terminals == [JobStatus::Cancelled] && statuses.iter().any(|s| s.is_field_progress()));
    let shown = if let Some(t) = preference.iter().find(|p| terminals.contains(p)) {
        *t
    } else if let Some(s) = statuses.iter().max_by_key(|s| s.rank()) {
        *s
    } else {
        // No candidate parses as a status: fall back to Automerge's winner, flagged.
        let last = candidates
            .last()
            .map(|c| c.0.clone())
            .unwrap_or(Scalar::Null);
        return Resolution {
            value: last,
            conflict: Some(candidates.to_vec()),
            overridden: None,
        };
    };
    Resolution {
        value: Scalar::str(shown.as_str()),
        conflict: impossible.then(|| candidates.to_vec()),
        overridden: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{DeviceId, DocId};

    fn who(role: Role, n: u128) -> Option<Author> {
        Some(Author::new(role, DeviceId(DocId::from_u128(n))))
    }
    fn s(v: &str) -> Scalar {
        Scalar::str(v)
    }

    #[test]
    fn device_wins_over_office_whatever_the_order() {
        for cands in [
            vec![
                (s("tech"), who(Role::Technician, 1)),
                (s("office"), who(Role::Dispatcher, 2)),
            ],
            vec![
                (s("office"), who(Role::Dispatcher, 2)),
                (s("tech"), who(Role::Technician, 1)),
            ],
        ] {
            let r = resolve(Policy::DeviceWins, &cands);
            assert_eq!(r.value, s("tech"));
            assert!(r.conflict.is_none());
        }
    }

    #[test]
    fn erpnext_and_a_dispatcher_are_both_the_office_so_their_clash_is_listed() {
        let erp = Some(Author::ERPNEXT);
        let cands = vec![(s("bureau"), who(Role::Dispatcher, 2)), (s("erpnext"), erp)];
        let r = resolve(Policy::OfficeWins, &cands);
        assert_eq!(r.value, s("erpnext"), "the later candidate is shown");
        assert_eq!(r.conflict, Some(cands));
        // The server's own changes still lose to a dispatcher without a conflict.
        let server = vec![
            (s("bureau"), who(Role::Dispatcher, 2)),
            (s("seed"), who(Role::Server, 0x5e)),
        ];
        assert_eq!(resolve(Policy::OfficeWins, &server).conflict, None);
        // A technician's reading beats ERPNext's copy of it.
        let device = vec![(s("tech"), who(Role::Technician, 1)), (s("erp"), erp)];
        let r = resolve(Policy::DeviceWins, &device);
        assert_eq!((r.value, r.conflict), (s("tech"), None));
    }

    #[test]
    fn a_value_settled_against_a_person_is_kept_as_overridden() {
        // ERPNext's office corrects a quantity a technician also changed: the office's value
        // stands, and the technician's is kept for them to see.
        let cands = vec![
            (Scalar::Int(3), who(Role::Technician, 1)),
            (Scalar::Int(2), Some(Author::ERPNEXT)),
        ];
        let r = resolve(Policy::OfficeWins, &cands);
        assert_eq!(r.value, Scalar::Int(2));
        assert_eq!((r.conflict, r.overridden), (None, Some(cands)));
        // A dispatcher's edit that a device-owned field overrides.
        let cands = vec![
            (s("tech"), who(Role::Technician, 1)),
            (s("office"), who(Role::Dispatcher, 2)),
        ];
        let r = resolve(Policy::DeviceWins, &cands);
        assert_eq!((r.value, r.overridden), (s("tech"), Some(cands)));
        // The server's own seed losing is nobody's loss.
        let seed = vec![
            (s("bureau"), who(Role::Dispatcher, 2)),
            (s("seed"), who(Role::Server, 0x5e)),
        ];
        assert_eq!(resolve(Policy::OfficeWins, &seed).overridden, None);
        // Equal values, or an open conflict, are not overrides.
        let same = vec![
            (s("a"), who(Role::Technician, 1)),
            (s("a"), who(Role::Dispatcher, 2)),
        ];
        assert_eq!(resolve(Policy::OfficeWins, &same).overridden, None);
        let open = vec![
            (s("a"), who(Role::Technician, 1)),
            (s("b"), who(Role::Technician, 2)),
        ];
        let r = resolve(Policy::DeviceWins, &open);
        assert!(r.conflict.is_some() && r.overridden.is_none());
    }

    #[test]
    fn office_wins_and_server_beats_technician() {
        let cands = vec![
            (s("office"), who(Role::Dispatcher, 2)),
            (s("tech"), who(Role::Technician, 1)),
        ];
        assert_eq!(resolve(Policy::OfficeWins, &cands).value, s("office"));
        let cands = vec![
            (s("erp"), who(Role::Server, 9)),
            (s("tech"), who(Role::Technician, 1)),
        ];
        assert_eq!(resolve(Policy::OfficeWins, &cands).value, s("erp"));
    }

    #[test]
    fn an_undecided_deletion_keeps_the_document_visible() {
        let open = vec![
            (Scalar::Bool(false), who(Role::Server, 0x5e)),
            (Scalar::Bool(true), who(Role::Server, 0x5e)),
        ];
        let r = resolve(Policy::Deletion, &open);
        assert_eq!(r.value, Scalar::Bool(false), "shown until decided");
        assert_eq!(r.conflict.map(|c| c.len()), Some(2));
        // Otherwise a deletion is settled like any office field.
        let office = vec![
            (Scalar::Bool(true), who(Role::Dispatcher, 2)),
            (Scalar::Bool(false), who(Role::Server, 0x5e)),
        ];
        let r = resolve(Policy::Deletion, &office);
        assert_eq!((r.value, r.conflict), (Scalar::Bool(true), None));
    }

    #[test]
    fn same_rank_different_values_is_a_listed_conflict() {
        let cands = vec![
            (s("a"), who(Role::Technician, 1)),
            (s("b"), who(Role::Technician, 2)),
        ];
        let r = resolve(Policy::DeviceWins, &cands);
        assert_eq!(r.value, s("b"));
        assert_eq!(r.conflict.unwrap().len(), 2);
        let same = vec![
            (s("a"), who(Role::Technician, 1)),
            (s("a"), who(Role::Dispatcher, 2)),
        ];
        assert!(resolve(Policy::OfficeWins, &same).conflict.is_none());
    }

    #[test]
    fn status_compatible_progress_merges() {
        let cands = vec![
            (s("scheduled"), who(Role::Dispatcher, 2)),
            (s("on_site"), who(Role::Technician, 1)),
        ];
        let r = resolve(Policy::JobStatus, &cands);
        assert_eq!(r.value, s("on_site"));
        assert!(r.conflict.is_none());
    }

    #[test]
    fn completed_versus_cancelled_is_a_conflict_showing_the_field_work() {
        for cands in [
            vec![
                (s("completed"), who(Role::Technician, 1)),
                (s("cancelled"), who(Role::Dispatcher, 2)),
            ],
            vec![
                (s("cancelled"), who(Role::Dispatcher, 2)),
                (s("completed"), who(Role::Technician, 1)),
            ],
        ] {
            let r = resolve(Policy::JobStatus, &cands);
            assert_eq!(r.value, s("completed"));
            assert_eq!(r.conflict.unwrap().len(), 2);
        }
        let r = resolve(
            Policy::JobStatus,
            &[
                (s("cancelled"), who(Role::Dispatcher, 2)),
                (s("en_route"), who(Role::Technician, 1)),
            ],
        );
        assert_eq!(r.value, s("cancelled"));
        assert!(r.conflict.is_some());
    }
}
