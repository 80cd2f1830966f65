//! Pure rules and types, no I/O: ids, the course catalogue and its validation, student progress
//! and the XP/badge/achievement/streak rules.

pub mod accounts;
pub mod catalogue;
pub mod ids;
pub mod progress;
pub mod rules;
pub mod text;
pub mod time;
pub mod verdict;
