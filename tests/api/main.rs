//! Integration tests: the real app on a random port, called over HTTP, on SQLite and PostgreSQL.
//! `TEST_DATABASE_URL` points at a PostgreSQL server (default: the local one); each test gets its
//! own database there. `TEST_LOG=1` shows the app's logs.

mod account_views;
mod accounts;
mod admission;
mod authz;
mod catalogue;
mod content;
mod content_answers;
mod data_care;
mod grading;
mod health;
mod helpers;
mod history;
mod limits;
mod live_state;
mod load_school;
mod metrics;
mod pages;
mod pg_tcp;
mod raw_client;
mod raw_ws;
mod redis_bus;
mod redis_limits;
mod redis_owner;
mod redis_resume;
mod security;
mod startup;
mod submissions;
mod ws;
mod ws_sessions;
