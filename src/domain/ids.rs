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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_only_positive_integers() {
        assert_eq!(ExerciseId::parse("42"), Some(ExerciseId(42)));
        assert_eq!(ExerciseId::parse("0"), None);
        assert_eq!(ExerciseId::parse("-3"), None);
        assert_eq!(ExerciseId::parse("abc"), None);
        assert_eq!(ExerciseId::parse("99999999999999999999"), None);
    }
}
