//! A private in-memory SQLite database under guard: the one place where SQL from content files
//! and from students runs. An authorizer refuses what a grading query never needs (ATTACH, PRAGMA,
//! VACUUM, file-touching functions, and anything but reading for a SELECT exercise), a progress
//! handler stops a statement at its deadline, and rows and result bytes are capped.
//!
//! Synchronous on purpose: it runs on the grader's own small pool of threads (`pool.rs`), never on
//! an async worker.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::fallible_iterator::FallibleIterator;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Batch, Connection, ErrorCode};

use crate::domain::catalogue::ResultTable;

/// What one grading may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlLimits {
    /// Wall time for each phase (setup, the student's statements, the check query).
    pub timeout: Duration,
    /// Rows a result may have.
    pub max_rows: usize,
    /// Bytes a result may hold (text and blob lengths, 8 per number).
    pub max_result_bytes: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits {
            timeout: Duration::from_millis(500),
            max_rows: 1000,
            max_result_bytes: 256 * 1024,
        }
    }
}

/// Why SQL did not give a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    /// The guard refused a statement; the text says what (French).
    #[error("{0}")]
    Forbidden(String),
    #[error("la requête a dépassé le temps limite")]
    Timeout,
    #[error("le résultat dépasse {0} lignes")]
    TooManyRows(usize),
    #[error("le résultat dépasse {0} octets")]
    TooLarge(usize),
    /// SQLite's own message (a syntax error, an unknown column…): a wrong answer, not a refusal.
    #[error("{0}")]
    Query(String),
}

/// What the authorizer lets through at the moment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Policy {
    /// Content files: schema and data (trusted, but still no file, no ATTACH, no PRAGMA).
    Setup,
    /// Reading only: SELECT and WITH … SELECT.
    Read,
    /// INSERT, UPDATE and DELETE on these tables (the exercise's own), and reading.
    Modify(HashSet<String>),
}

#[derive(Debug)]
struct AuthState {
    policy: Policy,
    /// The first thing refused since the last reset, to name it in the answer.
    refused: Option<String>,
}

/// Functions that reach outside the database (files, extensions) or change SQLite itself. Most are
/// not even compiled into the bundled library; refusing the names costs nothing.
const FORBIDDEN_FUNCTIONS: &[&str] = &[
    "load_extension",
    "fts3_tokenizer",
    "readfile",
    "writefile",
    "edit",
    "lsdir",
    "zipfile",
    "sqlar_compress",
    "sqlar_uncompress",
];

/// Tables that are windows on the database's file or on SQLite's internals.
fn forbidden_table(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == "dbstat"
        || name == "sqlite_dbpage"
        || name == "sqlite_stmt"
        || name.starts_with("pragma_")
}

fn decide(state: &mut AuthState, ctx: &AuthContext<'_>) -> Authorization {
    let refusal = match (&state.policy, ctx.action) {
        (_, AuthAction::Attach { .. } | AuthAction::Detach { .. }) => {
            Some("ATTACH/DETACH est interdit".to_owned())
        }
        (_, AuthAction::Pragma { pragma_name, .. }) => {
            Some(format!("PRAGMA {pragma_name} est interdit"))
        }
        (_, AuthAction::Function { function_name })
            if FORBIDDEN_FUNCTIONS.contains(&function_name.to_ascii_lowercase().as_str()) =>
        {
            Some(format!("la fonction {function_name} est interdite"))
        }
        (_, AuthAction::Read { table_name, .. }) if forbidden_table(table_name) => {
            Some(format!("la table {table_name} est interdite"))
        }
        (_, AuthAction::CreateVtable { .. } | AuthAction::DropVtable { .. }) => {
            Some("les tables virtuelles sont interdites".to_owned())
        }
        (_, AuthAction::Select | AuthAction::Read { .. } | AuthAction::Function { .. })
        | (_, AuthAction::Recursive) => None,
        (Policy::Setup, AuthAction::Unknown { .. }) => Some("instruction inconnue".to_owned()),
        (Policy::Setup, _) => None,
        (Policy::Modify(tables), AuthAction::Insert { table_name })
        | (Policy::Modify(tables), AuthAction::Delete { table_name })
        | (Policy::Modify(tables), AuthAction::Update { table_name, .. })
            if ctx.database_name.is_none_or(|d| d == "main")
                && tables.contains(&table_name.to_ascii_lowercase()) =>
        {
            None
        }
        (Policy::Modify(_), _) => Some(
            "seules INSERT, UPDATE et DELETE sur les tables de l'exercice sont acceptées"
                .to_owned(),
        ),
        (Policy::Read, _) => {
            Some("seule une requête de lecture (SELECT) est acceptée pour cet exercice".to_owned())
        }
    };
    match refusal {
        None => Authorization::Allow,
        Some(why) => {
            state.refused.get_or_insert(why);
            Authorization::Deny
        }
    }
}

/// One private database. Dropped after one grading: nothing a query did survives it.
pub struct Sandbox {
    conn: Connection,
    auth: Arc<Mutex<AuthState>>,
    limits: SqlLimits,
}

impl Sandbox {
    /// A fresh in-memory database holding `schema` and `data` (content: trusted, still guarded).
    pub fn open(schema: &str, data: &str, limits: SqlLimits) -> Result<Sandbox, SqlError> {
        let conn = Connection::open_in_memory().map_err(|e| SqlError::Query(e.to_string()))?;
        // Set before the authorizer (which refuses PRAGMA): temporary tables and sorts stay in
        // memory, never in a file.
        conn.execute_batch("PRAGMA temp_store = MEMORY;")
            .map_err(|e| SqlError::Query(e.to_string()))?;
        for (limit, value) in [
            // No ATTACH at all, even if the authorizer missed one (VACUUM INTO attaches too).
            (Limit::SQLITE_LIMIT_ATTACHED, 0),
            // One string or blob, and one statement's text.
            (Limit::SQLITE_LIMIT_LENGTH, 1_000_000),
            (Limit::SQLITE_LIMIT_SQL_LENGTH, 100_000),
            (Limit::SQLITE_LIMIT_EXPR_DEPTH, 100),
            (Limit::SQLITE_LIMIT_COMPOUND_SELECT, 50),
            (Limit::SQLITE_LIMIT_TRIGGER_DEPTH, 10),
            (Limit::SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 1000),
        ] {
            conn.set_limit(limit, value)
                .map_err(|e| SqlError::Query(e.to_string()))?;
        }
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
            .map_err(|e| SqlError::Query(e.to_string()))?;
        let auth = Arc::new(Mutex::new(AuthState {
            policy: Policy::Setup,
            refused: None,
        }));
        let hook = auth.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| {
            let mut state = hook.lock().unwrap_or_else(|e| e.into_inner());
            decide(&mut state, &ctx)
        }))
        .map_err(|e| SqlError::Query(e.to_string()))?;
        let mut sandbox = Sandbox { conn, auth, limits };
        sandbox.execute_all(schema)?;
        sandbox.execute_all(data)?;
        Ok(sandbox)
    }

    /// The exercise's tables (lower case), for a data-changing exercise's policy.
    pub fn table_names(&mut self) -> Result<HashSet<String>, SqlError> {
        let rows = self.query(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )?;
        Ok(rows
            .rows
            .into_iter()
            .filter_map(|r| r.into_iter().next())
            .filter_map(|v| v.as_str().map(str::to_ascii_lowercase))
            .collect())
    }

    /// Runs one read-only statement (SELECT, WITH … SELECT) and returns its result.
    pub fn query_read_only(&mut self, sql: &str) -> Result<ResultTable, SqlError> {
        self.set_policy(Policy::Read);
        self.query(sql)
    }

    /// Runs the student's INSERT / UPDATE / DELETE statements on the exercise's tables.
    pub fn modify(&mut self, sql: &str, tables: HashSet<String>) -> Result<(), SqlError> {
        self.set_policy(Policy::Modify(tables));
        self.execute_all(sql)
    }

    fn set_policy(&mut self, policy: Policy) {
        let mut state = self.auth.lock().unwrap_or_else(|e| e.into_inner());
        state.policy = policy;
        state.refused = None;
    }

    /// Whatever the authorizer refused since the policy was set, else SQLite's error.
    fn sql_error(&self, e: rusqlite::Error) -> SqlError {
        let refused = self
            .auth
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .refused
            .take();
        if let Some(why) = refused {
            return SqlError::Forbidden(why);
        }
        match e.sqlite_error_code() {
            Some(ErrorCode::OperationInterrupted) => SqlError::Timeout,
            Some(ErrorCode::AuthorizationForStatementDenied) => {
                SqlError::Forbidden("instruction interdite".to_owned())
            }
            _ => match e {
                rusqlite::Error::MultipleStatement => {
                    SqlError::Forbidden("une seule requête est acceptée".to_owned())
                }
                rusqlite::Error::SqliteFailure(_, Some(msg)) => SqlError::Query(msg),
                other => SqlError::Query(other.to_string()),
            },
        }
    }

    fn arm_deadline(&self) -> Result<(), SqlError> {
        let deadline = Instant::now() + self.limits.timeout;
        // Called every 1000 virtual-machine steps (a few µs): returning true interrupts.
        self.conn
            .progress_handler(1000, Some(move || Instant::now() >= deadline))
            .map_err(|e| SqlError::Query(e.to_string()))
    }

    /// Every statement of `sql`, in order (no result kept).
    fn execute_all(&mut self, sql: &str) -> Result<(), SqlError> {
        self.arm_deadline()?;
        let mut batch = Batch::new(&self.conn, sql);
        loop {
            let next = batch.next();
            let mut stmt = match next {
                Ok(Some(stmt)) => stmt,
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.sql_error(e)),
            };
            let mut rows = stmt.raw_query();
            loop {
                match rows.next() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        drop(rows);
                        drop(stmt);
                        return Err(self.sql_error(e));
                    }
                }
            }
        }
    }

    /// One statement that must read and return rows, under the row and size limits.
    fn query(&mut self, sql: &str) -> Result<ResultTable, SqlError> {
        self.arm_deadline()?;
        let result = read_rows(&self.conn, sql, &self.limits);
        result.map_err(|e| match e {
            Failure::Sqlite(e) => self.sql_error(e),
            Failure::Guard(e) => e,
        })
    }
}

enum Failure {
    Sqlite(rusqlite::Error),
    Guard(SqlError),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Sqlite(e)
    }
}

fn read_rows(conn: &Connection, sql: &str, limits: &SqlLimits) -> Result<ResultTable, Failure> {
    let mut stmt = conn.prepare(sql)?;
    if !stmt.readonly() || stmt.column_count() == 0 {
        return Err(Failure::Guard(SqlError::Forbidden(
            "seule une requête de lecture (SELECT) est acceptée ici".to_owned(),
        )));
    }
    let columns: Vec<String> = stmt
        .column_names()
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    let width = columns.len();
    let mut rows = stmt.raw_query();
    let mut table = Vec::new();
    let mut bytes = 0usize;
    while let Some(row) = rows.next()? {
        if table.len() == limits.max_rows {
            return Err(Failure::Guard(SqlError::TooManyRows(limits.max_rows)));
        }
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            let (value, size) = cell(row.get_ref(i)?);
            bytes += size;
            values.push(value);
        }
        if bytes > limits.max_result_bytes {
            return Err(Failure::Guard(SqlError::TooLarge(limits.max_result_bytes)));
        }
        table.push(values);
    }
    Ok(ResultTable {
        columns,
        rows: table,
    })
}

/// One cell as JSON by its runtime type, and what it weighs.
fn cell(v: ValueRef<'_>) -> (serde_json::Value, usize) {
    match v {
        ValueRef::Null => (serde_json::Value::Null, 1),
        ValueRef::Integer(i) => (i.into(), 8),
        ValueRef::Real(f) => (
            serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into),
            8,
        ),
        ValueRef::Text(t) => (String::from_utf8_lossy(t).into_owned().into(), t.len()),
        ValueRef::Blob(b) => (format!("<{} octets>", b.len()).into(), b.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = "CREATE TABLE t (nom TEXT, age INTEGER, taille REAL);";
    const DATA: &str = "INSERT INTO t VALUES ('Léa', 16, 1.65), ('Noé', 17, NULL);";

    fn sandbox() -> Sandbox {
        Sandbox::open(SCHEMA, DATA, SqlLimits::default()).unwrap()
    }

    #[test]
    fn computes_a_result_table() {
        let t = sandbox()
            .query_read_only("SELECT nom, age, taille, age * 2 AS double FROM t ORDER BY nom")
            .unwrap();
        assert_eq!(t.columns, vec!["nom", "age", "taille", "double"]);
        assert_eq!(
            t.rows,
            vec![
                vec!["Léa".into(), 16.into(), 1.65.into(), 32.into()],
                vec!["Noé".into(), 17.into(), serde_json::Value::Null, 34.into()],
            ]
        );
    }

    #[test]
    fn a_broken_query_is_a_query_error() {
        let err = sandbox().query_read_only("SELECT y FROM t").unwrap_err();
        assert!(
            matches!(&err, SqlError::Query(m) if m.contains("no such column")),
            "{err:?}"
        );
    }

    fn forbidden(sql: &str) {
        let err = sandbox().query_read_only(sql).unwrap_err();
        assert!(matches!(err, SqlError::Forbidden(_)), "{sql}: {err:?}");
    }

    #[test]
    fn attach_pragma_vacuum_and_writes_are_refused_on_a_select_exercise() {
        forbidden("ATTACH DATABASE '/tmp/x.db' AS x");
        forbidden("ATTACH DATABASE ':memory:' AS x");
        forbidden("DETACH DATABASE main");
        forbidden("PRAGMA table_info(t)");
        forbidden("PRAGMA writable_schema = ON");
        forbidden("SELECT * FROM pragma_table_info('t')");
        forbidden("VACUUM");
        forbidden("VACUUM INTO '/tmp/copie.db'");
        forbidden("SELECT load_extension('/tmp/evil')");
        forbidden("SELECT * FROM dbstat");
        forbidden("DELETE FROM t");
        forbidden("INSERT INTO t VALUES ('x', 1, 1.0)");
        forbidden("UPDATE t SET age = 0");
        forbidden("DROP TABLE t");
        forbidden("CREATE TABLE u (x)");
        forbidden("BEGIN");
        forbidden("SELECT 1; DELETE FROM t");
        forbidden("SELECT 1; SELECT 2");
        forbidden("CREATE VIRTUAL TABLE v USING fts5(x)");
        assert!(!std::path::Path::new("/tmp/copie.db").exists());
    }

    #[test]
    fn setup_refuses_attach_and_pragma_too() {
        for schema in [
            "ATTACH DATABASE ':memory:' AS x",
            "PRAGMA journal_mode = OFF",
            "VACUUM INTO '/tmp/nsi-setup.db'",
        ] {
            let err = Sandbox::open(schema, "", SqlLimits::default())
                .err()
                .unwrap_or_else(|| panic!("{schema} was accepted"));
            assert!(matches!(err, SqlError::Forbidden(_)), "{schema}: {err:?}");
        }
    }

    #[test]
    fn a_runaway_query_is_stopped_at_its_deadline() {
        let limits = SqlLimits {
            timeout: Duration::from_millis(100),
            ..SqlLimits::default()
        };
        let mut s = Sandbox::open(SCHEMA, DATA, limits).unwrap();
        let start = Instant::now();
        let err = s
            .query_read_only(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) \
                 SELECT count(*) FROM n",
            )
            .unwrap_err();
        assert_eq!(err, SqlError::Timeout);
        // Generous: the point is that it stops, not how fast (no wall-clock asserts on speed).
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn rows_and_bytes_are_capped() {
        let err = sandbox()
            .query_read_only(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) \
                 SELECT i FROM n",
            )
            .unwrap_err();
        assert_eq!(err, SqlError::TooManyRows(1000));
        let err = sandbox()
            .query_read_only(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) \
                 SELECT printf('%.1000c', 'x') FROM n",
            )
            .unwrap_err();
        assert_eq!(err, SqlError::TooLarge(256 * 1024));
        let err = sandbox()
            .query_read_only("SELECT length(zeroblob(2000000))")
            .unwrap_err();
        assert!(matches!(err, SqlError::Query(_)), "{err:?}");
    }

    #[test]
    fn modify_allows_dml_on_the_exercise_tables_only() {
        let mut s = sandbox();
        let tables = s.table_names().unwrap();
        assert_eq!(tables, HashSet::from(["t".to_owned()]));
        s.modify(
            "UPDATE t SET age = age + 1 WHERE nom = 'Léa'; DELETE FROM t WHERE nom = 'Noé';",
            tables.clone(),
        )
        .unwrap();
        let t = s.query_read_only("SELECT nom, age FROM t").unwrap();
        assert_eq!(
            t.rows,
            vec![vec![serde_json::Value::from("Léa"), 17.into()]]
        );
        for sql in [
            "DROP TABLE t",
            "CREATE TABLE u (x)",
            "ALTER TABLE t ADD COLUMN y",
            "ATTACH ':memory:' AS x",
            "PRAGMA foreign_keys = OFF",
            "INSERT INTO sqlite_temp_master VALUES (1)",
            "BEGIN; DELETE FROM t; COMMIT;",
        ] {
            let err = s.modify(sql, tables.clone()).unwrap_err();
            assert!(matches!(err, SqlError::Forbidden(_)), "{sql}: {err:?}");
        }
    }
}
