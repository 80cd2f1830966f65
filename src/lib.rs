//! nsi-live: a real-time classroom server for Python and SQL exercises.
//! `startup::Application` builds the whole app; `main.rs` and the tests both use it.

pub mod actors;
pub mod auth;
pub mod bus;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod content;
pub mod domain;
pub mod error;
pub mod grading;
pub mod http;
pub mod load_school;
pub mod metrics;
pub mod service;
pub mod sockets;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod ws;
