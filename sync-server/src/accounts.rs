//! Office accounts: dispatchers and admins by name, created, disabled and given a role by an
//! admin, signing in with a one-time link like technicians, instead of raw tokens. Disabling an
//! account or changing its role ends every session it has (its role is in its tokens).

use serde::{Deserialize, Serialize};
use shared::ids::{DocId, Role};

/// One office account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: DocId,
    pub name: String,
    /// `dispatcher` or `admin`.
    pub role: OfficeRole,
    pub active: bool,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// The roles an office account may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfficeRole {
    Dispatcher,
    Admin,
}

impl OfficeRole {
    pub fn role(self) -> Role {
        match self {
            OfficeRole::Dispatcher => Role::Dispatcher,
            OfficeRole::Admin => Role::Admin,
        }
    }
}

/// The store key prefix of accounts.
pub const PREFIX: &str = "account:";

impl Account {
    pub fn key(id: DocId) -> String {
        format!("{PREFIX}{id}")
    }

    /// A name an office user is shown by: 1 to 120 characters, no control characters.
    pub fn check_name(name: &str) -> Result<String, String> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 120 {
            return Err("`name` must be 1 to 120 characters".into());
        }
        if name.chars().any(char::is_control) {
            return Err("`name` must not hold control characters".into());
        }
        Ok(name.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_typed_json_and_names_are_checked() {
        let a = Account {
            id: DocId::from_u128(3),
            name: "Julie Tremblay".into(),
            role: OfficeRole::Dispatcher,
            active: true,
            created_at: 1,
        };
        let json = serde_json::to_value(&a).unwrap_or_default();
        assert_eq!(json["role"], "dispatcher");
        assert_eq!(serde_json::from_value::<Account>(json).ok(), Some(a));
        assert!(Account::check_name("  ").is_err());
        assert!(Account::check_name("a\u{7}b").is_err());
        assert_eq!(Account::check_name(" Julie ").as_deref(), Ok("Julie"));
    }
}
