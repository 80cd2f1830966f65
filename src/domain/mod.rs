//! Pure rules and types, no I/O: ids, the course catalogue and its validation.

pub mod accounts;
pub mod catalogue;
pub mod ids;
pub mod time;
