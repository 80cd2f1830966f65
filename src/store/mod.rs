//! Every SQL statement lives under this folder; nothing else touches sqlx.
//!
//! One `Store` over either backend. Most statements are one portable SQL text run on whichever
//! pool is configured (`on_pool!`): `$1`-style parameters work on both (SQLite reads `$N` as the
//! N-th argument), times are BIGINT milliseconds, ids BIGINT. Where the dialects really differ
//! (bulk inserts), a statement is written once per backend, side by side.

pub mod admission;
pub mod assignments;
mod batch;
pub mod catalogue;
pub mod classrooms;
pub mod data_care;
pub mod enrollments;
pub mod grading;
pub mod history;
pub mod load_school;
pub mod progress;
pub mod sessions;
pub mod users;
mod views_version;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::config::{DatabaseSettings, DatabaseTarget};

/// Runs the same code on whichever pool is configured. The body is compiled once per backend,
/// so it may use anything sqlx offers for both.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Postgres($pool) => $body,
            $crate::store::Pool::Sqlite($pool) => $body,
        }
    };
}
#[allow(unused_imports)] // used by the store modules that come with later features
pub(crate) use on_pool;

/// Same as `on_pool!` inside a transaction: begins, runs the body with `$tx` (a `&mut` connection),
/// commits if it returns `Ok`. Dropping the transaction on `Err` rolls it back.
macro_rules! in_transaction {
    ($store:expr, $tx:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Postgres(pool) => {
                let mut transaction = pool.begin().await?;
                let $tx = &mut *transaction;
                let out = $body;
                transaction.commit().await?;
                out
            }
            $crate::store::Pool::Sqlite(pool) => {
                let mut transaction = pool.begin().await?;
                let $tx = &mut *transaction;
                let out = $body;
                transaction.commit().await?;
                out
            }
        }
    };
}
pub(crate) use in_transaction;

/// Whether a statement failed on a UNIQUE (or primary key) constraint: the database is the judge
/// of uniqueness, without a racy check beforehand.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

#[derive(Debug, Clone)]
pub enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A database pool's connections at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Open connections, idle or in use.
    pub size: u32,
    pub idle: usize,
    /// `database.max_connections`.
    pub max: u32,
}

#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: Pool,
    /// Bounded waiting for the on-demand loads (admission.rs).
    admission: std::sync::Arc<admission::Admission>,
    /// Raised by every write that can change a user's own account view (views_version.rs).
    views: std::sync::Arc<views_version::ViewsVersion>,
}

static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

impl Store {
    /// Connects to the configured database (creating the SQLite file and its folder if absent)
    /// and runs the migrations.
    pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Store> {
        let acquire_timeout = Duration::from_secs(settings.acquire_timeout_secs);
        let connect_timeout = Duration::from_secs(settings.connect_timeout_secs);
        let pool = match settings.target() {
            DatabaseTarget::Postgres(url) => {
                let mut options = PgConnectOptions::from_str(url.expose_secret())
                    .context("DATABASE_URL is not a valid postgres:// URL")?
                    .application_name("nsi-live");
                if settings.statement_timeout_ms > 0 {
                    // A startup parameter: every connection of the pool has it, from its first
                    // statement on, without an extra round trip.
                    let timeout = settings.statement_timeout_ms.to_string();
                    options = options.options([("statement_timeout", timeout.as_str())]);
                }
                let connect = PgPoolOptions::new()
                    .max_connections(settings.max_connections)
                    .min_connections(settings.min_connections)
                    .acquire_timeout(acquire_timeout)
                    .connect_with(options);
                let pool = tokio::time::timeout(connect_timeout, connect)
                    .await
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "PostgreSQL (DATABASE_URL) did not answer within database.connect_timeout_secs ({} s)",
                            settings.connect_timeout_secs
                        )
                    })?
                    // The error from sqlx does not include the password; the URL is not echoed.
                    .context("cannot connect to PostgreSQL (DATABASE_URL)")?;
                Pool::Postgres(pool)
            }
            DatabaseTarget::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    // WAL + NORMAL is durable across process crashes (kill -9); only a power cut
                    // can lose the last commits. FULL would fsync every commit.
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true);
                let pool = SqlitePoolOptions::new()
                    // The database is a file in this process: a "ping" before each use would be
                    // one more round trip to the connection's thread, and can find nothing wrong.
                    .test_before_acquire(false)
                    .max_connections(settings.max_connections)
                    .min_connections(settings.min_connections)
                    .acquire_timeout(acquire_timeout)
                    .connect_with(options)
                    .await
                    .with_context(|| format!("cannot open SQLite file {}", path.display()))?;
                Pool::Sqlite(pool)
            }
        };
        let store = Store {
            pool,
            admission: std::sync::Arc::new(admission::Admission::new(
                settings.max_connections,
                settings.max_waiting,
                acquire_timeout,
            )),
            views: views_version::new(),
        };
        store.migrate().await?;
        store
            .backfill_pseudonym_skeletons()
            .await
            .context("computing the pseudonym skeletons of existing enrollments")?;
        Ok(store)
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        match &self.pool {
            Pool::Postgres(pool) => PG_MIGRATOR.run(pool).await,
            Pool::Sqlite(pool) => SQLITE_MIGRATOR.run(pool).await,
        }
        .context("running database migrations")
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Postgres(_) => Backend::Postgres,
            Pool::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// One round trip, for `/readyz`.
    pub async fn ping(&self) -> anyhow::Result<()> {
        on_pool!(self, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// A turn to load state on demand (an actor, a session or an account view not in memory):
    /// at most `database.max_waiting` loads wait for one, each at most
    /// `database.acquire_timeout_secs`; past either, `PoolTimedOut` (503). Hold it while loading.
    pub async fn admit(&self) -> Result<admission::Admitted<'_>, sqlx::Error> {
        self.admission.admit().await
    }

    /// Loads waiting for a turn now, and refused so far: (waiting, (queue full, too late)).
    pub fn admission_stats(&self) -> (usize, (u64, u64)) {
        (self.admission.waiting(), self.admission.refused())
    }

    /// The pool's connections now (`/metrics`). sqlx tells neither how many wait for a
    /// connection nor how long they waited: a timed-out wait shows as a 503 instead.
    pub fn pool_stats(&self) -> PoolStats {
        on_pool!(self, pool => PoolStats {
            size: pool.size(),
            idle: pool.num_idle(),
            max: pool.options().get_max_connections(),
        })
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}
