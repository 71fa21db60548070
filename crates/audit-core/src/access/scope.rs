//! Which applications a scope covers.

use crate::event::ValidName;

/// The application names a token may write, or read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applications {
    /// Every application (`*`).
    All,
    /// These applications only, sorted; none when empty.
    Only(Vec<String>),
}

/// The list element that stands for every application.
const EVERY_APPLICATION: &str = "*";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("application name {name:?} {problem}")]
pub struct ScopeError {
    pub name: String,
    pub problem: String,
}

impl Applications {
    /// A scope from its list form, as stored and as given on the command line; `*`
    /// anywhere in the list means every application.
    pub fn from_list(names: Vec<String>) -> Result<Self, ScopeError> {
        if names.iter().any(|name| name == EVERY_APPLICATION) {
            return Ok(Self::All);
        }
        for name in &names {
            ValidName::parse(name).map_err(|error| ScopeError {
                name: name.clone(),
                problem: error.to_string(),
            })?;
        }
        let mut names = names;
        names.sort();
        names.dedup();
        Ok(Self::Only(names))
    }

    /// The list form: `["*"]` for every application.
    pub fn to_list(&self) -> Vec<String> {
        match self {
            Self::All => vec![EVERY_APPLICATION.to_owned()],
            Self::Only(names) => names.clone(),
        }
    }

    pub fn allows(&self, application: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(names) => names
                .binary_search_by(|name| name.as_str().cmp(application))
                .is_ok(),
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Only(names) if names.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn a_star_anywhere_covers_every_application() {
        let scope = Applications::from_list(list(&["a", "*"])).unwrap();

        assert_eq!(scope, Applications::All);
        assert!(scope.allows("anything"));
        assert_eq!(scope.to_list(), ["*"]);
    }

    #[test]
    fn a_list_covers_exactly_its_names() {
        let scope = Applications::from_list(list(&["b", "a", "b"])).unwrap();

        assert_eq!(scope.to_list(), ["a", "b"]);
        assert!(scope.allows("a") && scope.allows("b"));
        assert!(!scope.allows("c") && !scope.allows("A"));
        assert!(Applications::from_list(Vec::new()).unwrap().is_empty());
    }

    #[test]
    fn a_name_no_event_could_carry_is_refused() {
        let error = Applications::from_list(list(&["ok", ""])).unwrap_err();

        assert_eq!(error.name, "");
    }
}
