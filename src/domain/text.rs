//! Text the databases can store. PostgreSQL's `text` refuses the NUL character (SQLite keeps it),
//! and Rust strings cannot hold anything else PostgreSQL would refuse (lone surrogates, invalid
//! UTF-8), so NUL is the one character refused, in every text a client sends, before any SQL.

use serde_json::Value;

/// The message of the 400 `invalid_text`.
pub const INVALID_TEXT: &str =
    "Le texte envoyé contient un caractère interdit (NUL, \\u0000) : retirez-le et réessayez.";

/// Whether `s` can be stored as text on both databases.
pub fn storable(s: &str) -> bool {
    !s.contains('\0')
}

/// Whether every string in `value`, keys included, can be stored.
pub fn json_storable(value: &Value) -> bool {
    match value {
        Value::String(s) => storable(s),
        Value::Array(items) => items.iter().all(json_storable),
        Value::Object(map) => map.iter().all(|(k, v)| storable(k) && json_storable(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_is_refused_anywhere_in_json() {
        assert!(storable("élève – 💡 \u{1}"));
        assert!(!storable("ab\0c"));
        assert!(json_storable(&json!({"a": ["b", 1, null, {"c": "d"}]})));
        assert!(!json_storable(&json!({"a": ["b", {"c": "d\u{0}"}]})));
        assert!(!json_storable(&json!({"a\u{0}": 1})));
    }
}
