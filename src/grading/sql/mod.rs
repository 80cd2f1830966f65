//! SQL graded on the server: the student's query runs in a fresh private database holding the
//! exercise's schema and data, under guard (`guard.rs`), on the grader's own threads (`pool.rs`),
//! and its result is compared with the expected one (`compare.rs`). The same guarded runner
//! computes each exercise's expected result from the content files at start-up.

pub mod compare;
pub mod guard;
pub mod pool;

use serde::Deserialize;

pub use guard::{SqlError, SqlLimits};

use super::Verdict;
use crate::domain::catalogue::ResultTable;
use guard::Sandbox;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlAnswer {
    pub query: String,
}

/// What `statements` give on a fresh copy of the exercise's data: their result for a SELECT
/// exercise (one read-only statement); `check_query`'s result after them for a data-changing one.
pub fn result_of(
    schema: &str,
    data: &str,
    statements: &str,
    check_query: Option<&str>,
    limits: SqlLimits,
) -> Result<ResultTable, SqlError> {
    let mut db = Sandbox::open(schema, data, limits)?;
    match check_query {
        None => db.query_read_only(statements),
        Some(check) => {
            let tables = db.table_names()?;
            db.modify(statements, tables)?;
            db.query_read_only(check)
        }
    }
}

/// The exercise's expected result, from its content (a content compile step: start-up and the
/// content test). Any error here is a content bug.
pub fn expected_result(
    schema: &str,
    data: &str,
    solution: &str,
    check_query: Option<&str>,
    limits: SqlLimits,
) -> Result<ResultTable, SqlError> {
    result_of(schema, data, solution, check_query, limits)
}

/// Grades a student's query. A query SQLite rejects (syntax, unknown column…) is a wrong answer
/// with SQLite's message; a refused statement or a limit reached is an error (answered 4xx, not
/// stored).
pub fn grade(
    schema: &str,
    data: &str,
    check_query: Option<&str>,
    order_matters: bool,
    expected: &ResultTable,
    query: &str,
    limits: SqlLimits,
) -> Result<Verdict, SqlError> {
    match result_of(schema, data, query, check_query, limits) {
        Ok(got) => Ok(match compare::compare(expected, &got, order_matters) {
            None => Verdict::server(true, "Résultat correct !"),
            Some(why) => Verdict::server(false, why),
        }),
        Err(SqlError::Query(msg)) => Ok(Verdict::server(false, format!("Erreur SQL : {msg}"))),
        Err(refused) => Err(refused),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = "CREATE TABLE films (id INTEGER PRIMARY KEY, titre TEXT, duree INTEGER);";
    const DATA: &str =
        "INSERT INTO films VALUES (1, 'A', 120), (2, 'B', 90), (3, 'C', 130), (4, 'D', 80);";

    fn expected(solution: &str, check: Option<&str>) -> ResultTable {
        expected_result(SCHEMA, DATA, solution, check, SqlLimits::default()).unwrap()
    }

    fn run(
        solution: &str,
        check: Option<&str>,
        order: bool,
        query: &str,
    ) -> Result<Verdict, SqlError> {
        let e = expected(solution, check);
        grade(SCHEMA, DATA, check, order, &e, query, SqlLimits::default())
    }

    #[test]
    fn right_wrong_and_broken_queries() {
        let sol = "SELECT titre, duree FROM films WHERE duree > 100 ORDER BY duree DESC";
        let v = run(
            sol,
            None,
            true,
            "select titre, duree from films where duree >= 101 order by duree desc;",
        )
        .unwrap();
        assert!(v.passed, "{v:?}");
        let v = run(sol, None, true, "SELECT titre, duree FROM films").unwrap();
        assert!(!v.passed);
        assert_eq!(
            v.feedback.as_deref(),
            Some("2 lignes attendues, 4 obtenues.")
        );
        let v = run(
            sol,
            None,
            true,
            "SELECT duree, titre FROM films WHERE duree > 100 ORDER BY duree DESC",
        )
        .unwrap();
        assert!(!v.passed && v.feedback.unwrap().contains("ordre demandé"));
        let v = run(sol, None, true, "SELEC titre FROM films").unwrap();
        assert!(!v.passed && v.feedback.unwrap().starts_with("Erreur SQL"));
        assert!(matches!(
            run(sol, None, true, "DELETE FROM films"),
            Err(SqlError::Forbidden(_))
        ));
    }

    #[test]
    fn a_data_changing_exercise_is_graded_on_the_check_query() {
        let sol = "UPDATE films SET duree = duree + 10 WHERE duree < 100";
        let check = Some("SELECT id, duree FROM films ORDER BY id");
        let v = run(
            sol,
            check,
            true,
            "UPDATE films SET duree = duree + 10 WHERE duree <= 90",
        )
        .unwrap();
        assert!(v.passed, "{v:?}");
        let v = run(sol, check, true, "UPDATE films SET duree = duree + 10").unwrap();
        assert!(!v.passed);
        let v = run(sol, check, true, "SELECT 1").unwrap();
        assert!(!v.passed);
        assert!(matches!(
            run(sol, check, true, "DROP TABLE films"),
            Err(SqlError::Forbidden(_))
        ));
        assert!(matches!(
            run(sol, check, true, "ATTACH ':memory:' AS x"),
            Err(SqlError::Forbidden(_))
        ));
    }
}
