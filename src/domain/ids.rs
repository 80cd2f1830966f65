//! Id newtypes: a `StudentId` cannot be passed where an `ExerciseId` is expected.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! int_id {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            /// Parses a positive decimal id, as found in a URL path.
            pub fn parse(s: &str) -> Option<Self> {
                s.parse::<i64>().ok().filter(|v| *v > 0).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}

int_id!(
    /// A course row id.
    CourseId,
    /// A chapter row id.
    ChapterId,
    /// An exercise row id: stable across restarts and edits (the content sync keys on the slug).
    ExerciseId,
    /// A hint row id.
    HintId,
    /// A user row id (student, teacher or admin).
    UserId,
    /// A classroom row id.
    ClassroomId,
);

/// An attempt's id: a UUID made by the client (so that a resend is stored once), kept in its
/// canonical form (lower-case, hyphenated) so that two spellings of one UUID are one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AttemptId(String);

impl AttemptId {
    /// Reads a UUID in any of its usual spellings (surrounding spaces ignored).
    pub fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::parse_str(s.trim())
            .ok()
            .map(|u| AttemptId(u.hyphenated().to_string()))
    }

    /// A fresh id, for a client that sent none (the portal's legacy route).
    pub fn random() -> Self {
        AttemptId(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AttemptId {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        AttemptId::parse(&s).ok_or_else(|| format!("not a UUID: {s:?}"))
    }
}

impl From<AttemptId> for String {
    fn from(id: AttemptId) -> String {
        id.0
    }
}

impl std::borrow::Borrow<str> for AttemptId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_ids_are_canonical_uuids() {
        let a = AttemptId::parse(" 0F8FAD5B-D9CB-469F-A165-70867728950E ").unwrap();
        assert_eq!(a.as_str(), "0f8fad5b-d9cb-469f-a165-70867728950e");
        assert_eq!(
            AttemptId::parse("0f8fad5bd9cb469fa16570867728950e"),
            Some(a.clone())
        );
        assert_eq!(AttemptId::parse("a-1"), None);
        assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{a}\""));
        let back: AttemptId = serde_json::from_str(&format!("\"{a}\"")).unwrap();
        assert_eq!(back, a);
        assert!(serde_json::from_str::<AttemptId>("\"nope\"").is_err());
        assert_ne!(AttemptId::random(), AttemptId::random());
    }

    #[test]
    fn parse_accepts_only_positive_integers() {
        assert_eq!(ExerciseId::parse("42"), Some(ExerciseId(42)));
        assert_eq!(ExerciseId::parse("0"), None);
        assert_eq!(ExerciseId::parse("-3"), None);
        assert_eq!(ExerciseId::parse("abc"), None);
        assert_eq!(ExerciseId::parse("99999999999999999999"), None);
    }
}
