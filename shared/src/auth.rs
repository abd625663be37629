//! Write authorization: what a role may change in an entity.
//!
//! The server runs this on every pushed change (against the state its author saw); the replica runs
//! it before committing a local edit, so users get the refusal at once instead of a silent revert.

use crate::ids::Role;
use crate::model::{JobStatus, TransitionError, field_spec, schema};
use crate::record::{EntityKind, FieldChange, Record};

/// Why a write is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("a {role:?} may not create a {kind:?}")]
    Create { kind: EntityKind, role: Role },
    #[error("a {role:?} may not change `{field}`")]
    Field { field: String, role: Role },
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("`{field}` is not a field of a {kind:?}")]
    UnknownField { field: String, kind: EntityKind },
}

impl Denied {
    /// The register or collection to restore when compensating.
    pub fn target(&self) -> Option<&str> {
        match self {
            Denied::Create { .. } => None,
            Denied::Field { field, .. } | Denied::UnknownField { field, .. } => Some(field),
            Denied::Transition(_) => Some("status"),
        }
    }
}

/// Which kinds a role may create.
pub fn may_create(kind: EntityKind, role: Role) -> bool {
    match role {
        // New equipment is scanned in the field; everything else starts in the office.
        Role::Technician => kind == EntityKind::Equipment,
        Role::Dispatcher | Role::Admin | Role::Server => true,
    }
}

/// Checks a write from `before` (`None`: the entity is being created) to `after`. Returns every
/// refusal; an empty list means the write is allowed.
pub fn check(kind: EntityKind, role: Role, before: Option<&Record>, after: &Record) -> Vec<Denied> {
    let Some(before) = before else {
        return if may_create(kind, role) {
            Vec::new()
        } else {
            vec![Denied::Create { kind, role }]
        };
    };
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for change in before.diff(after) {
        let target = change.target().to_owned();
        if !seen.insert(target.clone()) {
            continue;
        }
        let writers = match &change {
            FieldChange::Set { field, .. } => field_spec(kind, field).map(|f| f.writers),
            FieldChange::SetItem { collection, .. } => {
                schema(kind).collection(collection).map(|c| c.writers)
            }
        };
        let Some(writers) = writers else {
            out.push(Denied::UnknownField {
                field: target,
                kind,
            });
            continue;
        };
        if !writers.allows(role) {
            out.push(Denied::Field {
                field: target,
                role,
            });
            continue;
        }
        if kind == EntityKind::Job && target == "status" {
            let from = before
                .get("status")
                .as_str()
                .and_then(|s| s.parse::<JobStatus>().ok());
            let to = after
                .get("status")
                .as_str()
                .and_then(|s| s.parse::<JobStatus>().ok());
            if let (Some(from), Some(to)) = (from, to)
                && let Err(e) = from.check_reachable(to, role)
            {
                out.push(Denied::Transition(e));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Scalar;

    fn job(status: &str, tech: &str) -> Record {
        let mut r = Record::default();
        r.set("status", Scalar::str(status));
        r.set("technician", Scalar::str(tech));
        r
    }

    #[test]
    fn technician_cannot_reassign_or_reschedule() {
        let d = check(
            EntityKind::Job,
            Role::Technician,
            Some(&job("scheduled", "a")),
            &job("scheduled", "b"),
        );
        assert_eq!(
            d,
            vec![Denied::Field {
                field: "technician".into(),
                role: Role::Technician
            }]
        );
        assert!(
            check(
                EntityKind::Job,
                Role::Dispatcher,
                Some(&job("scheduled", "a")),
                &job("scheduled", "b")
            )
            .is_empty()
        );
    }

    #[test]
    fn status_follows_the_state_machine_per_role() {
        assert!(
            check(
                EntityKind::Job,
                Role::Technician,
                Some(&job("scheduled", "a")),
                &job("en_route", "a")
            )
            .is_empty()
        );
        let d = check(
            EntityKind::Job,
            Role::Technician,
            Some(&job("scheduled", "a")),
            &job("cancelled", "a"),
        );
        assert!(matches!(d.as_slice(), [Denied::Transition(_)]));
    }

    #[test]
    fn creation_and_unknown_fields() {
        assert!(
            check(
                EntityKind::Equipment,
                Role::Technician,
                None,
                &Record::default()
            )
            .is_empty()
        );
        assert_eq!(
            check(EntityKind::Job, Role::Technician, None, &Record::default()).len(),
            1
        );
        let mut after = job("scheduled", "a");
        after.set("price_override", Scalar::Int(1));
        let d = check(
            EntityKind::Job,
            Role::Dispatcher,
            Some(&job("scheduled", "a")),
            &after,
        );
        assert!(matches!(d.as_slice(), [Denied::UnknownField { .. }]));
    }
}
