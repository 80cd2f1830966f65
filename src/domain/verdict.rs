//! Who checked an attempt: the server graded it, or the student's browser reported it.

use serde::{Deserialize, Serialize};

/// Who computed `passed` and `score`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckedBy {
    Server,
    Browser,
}

impl CheckedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckedBy::Server => "server",
            CheckedBy::Browser => "browser",
        }
    }

    pub fn parse(s: &str) -> CheckedBy {
        if s == "server" {
            CheckedBy::Server
        } else {
            CheckedBy::Browser
        }
    }
}
