//! Trusted grading: the server grades what it can grade safely in-process (MCQ choices, Parsons
//! lines, SQL queries in a guarded private SQLite) and derives a Python attempt's score from the
//! browser's per-test results, recording who checked each attempt. Below http/ and ws/: both
//! adapters call [`Grader::grade`] from the one validation step.

pub mod mcq;
pub mod parsons;
pub mod python;
pub mod sql;

use std::sync::Arc;
use std::time::Duration;

use crate::domain::catalogue::{Exercise, ExerciseBody};
pub use crate::domain::verdict::CheckedBy;
use crate::error::AppError;
use sql::pool::{GradingPool, PoolError};
use sql::{SqlError, SqlLimits};

/// What an adapter read from a submission: the answer to grade, or (the portal's Python route
/// only) the browser's own verdict.
#[derive(Debug)]
pub enum Work {
    Answer(serde_json::Value),
    BrowserVerdict {
        passed: bool,
        score: i64,
        code: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub passed: bool,
    pub score: i32,
    pub checked_by: CheckedBy,
    /// French, for the student.
    pub feedback: Option<String>,
}

impl Verdict {
    /// A server-graded answer: all or nothing.
    pub fn server(passed: bool, feedback: impl Into<String>) -> Verdict {
        Verdict {
            passed,
            score: if passed { 100 } else { 0 },
            checked_by: CheckedBy::Server,
            feedback: Some(feedback.into()),
        }
    }
}

/// A graded answer and what is stored of it.
#[derive(Debug, Clone)]
pub struct Graded {
    pub verdict: Verdict,
    /// The student's work as the teacher reads it: Python code, the SQL query, the Parsons
    /// program as placed, the MCQ choice ids.
    pub code: String,
    /// Python's per-test results (JSON), else `None`.
    pub details: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GradeError {
    /// The answer does not fit the exercise: 400 with `code` (`invalid_answer`, `invalid_score`,
    /// `code_too_large`).
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error(transparent)]
    Sql(#[from] SqlError),
    #[error(transparent)]
    Pool(#[from] PoolError),
}

impl GradeError {
    pub fn invalid(message: impl Into<String>) -> GradeError {
        GradeError::Invalid {
            code: "invalid_answer",
            message: message.into(),
        }
    }
}

impl From<GradeError> for AppError {
    fn from(e: GradeError) -> AppError {
        match e {
            GradeError::Invalid { code, message } => AppError::bad_request(code, message),
            GradeError::Sql(SqlError::Forbidden(why)) => {
                AppError::bad_request("sql_forbidden", format!("Requête refusée : {why}."))
            }
            GradeError::Sql(SqlError::Timeout) => AppError::bad_request(
                "sql_timeout",
                "La requête a dépassé le temps limite : elle ne se termine pas, ou fait beaucoup trop de calculs.",
            ),
            GradeError::Sql(SqlError::TooManyRows(n)) => AppError::bad_request(
                "sql_too_many_rows",
                format!("Le résultat dépasse {n} lignes."),
            ),
            GradeError::Sql(SqlError::TooLarge(n)) => AppError::bad_request(
                "sql_result_too_large",
                format!("Le résultat dépasse {} Kio.", n / 1024),
            ),
            // Not produced by `grade` (a SQLite error there is a wrong answer), kept total.
            GradeError::Sql(SqlError::Query(m)) => {
                AppError::bad_request("invalid_answer", format!("Erreur SQL : {m}"))
            }
            GradeError::Pool(PoolError::Busy | PoolError::TimedOut) => AppError::Unavailable {
                message:
                    "Trop de requêtes SQL à corriger en ce moment ; réessayez dans un instant."
                        .into(),
                retry_after_secs: 2,
            },
            GradeError::Pool(PoolError::Stopped) => AppError::Unavailable {
                message: "Le serveur redémarre ; réessayez dans un instant.".into(),
                retry_after_secs: 5,
            },
        }
    }
}

/// The grader: its SQL threads and limits. One per process, in `AppState`.
#[derive(Debug, Clone)]
pub struct Grader {
    pool: GradingPool,
    limits: SqlLimits,
    /// How long a submission waits for its SQL grading, queueing included.
    wait: Duration,
    max_code_bytes: usize,
}

impl Grader {
    pub fn start(
        threads: usize,
        queue: usize,
        limits: SqlLimits,
        wait: Duration,
        max_code_bytes: usize,
    ) -> std::io::Result<Grader> {
        Ok(Grader {
            pool: GradingPool::start(threads, queue)?,
            limits,
            wait,
            max_code_bytes,
        })
    }

    pub fn limits(&self) -> SqlLimits {
        self.limits
    }

    /// Grades `answer` (the submit body's `answer` object) for `exercise`.
    pub async fn grade(
        &self,
        exercise: &Arc<Exercise>,
        answer: serde_json::Value,
    ) -> Result<Graded, GradeError> {
        match &exercise.body {
            ExerciseBody::Mcq { choices, .. } => {
                let a: mcq::McqAnswer = parse(answer, "{\"choices\": [\"c0\", …]}")?;
                Ok(Graded {
                    verdict: mcq::grade(choices, &a)?,
                    code: a.choices.join(","),
                    details: None,
                })
            }
            ExerciseBody::Parsons {
                lines, indented, ..
            } => {
                let a: parsons::ParsonsAnswer =
                    parse(answer, "{\"lines\": [{\"id\": …, \"indent\": 0}, …]}")?;
                if a.lines.len() > lines.len() {
                    return Err(GradeError::invalid("Trop de lignes."));
                }
                Ok(Graded {
                    verdict: parsons::grade(lines, *indented, &a)?,
                    code: parsons::program(lines, &a),
                    details: None,
                })
            }
            ExerciseBody::Python { tests, .. } => {
                let mut a: python::PythonAnswer = parse(
                    answer,
                    "{\"code\": …, \"tests\": [{\"name\", \"passed\"}, …]}",
                )?;
                self.check_size(&a.code)?;
                let verdict = python::grade(tests, &mut a)?;
                let details = serde_json::to_string(&a.tests).ok();
                Ok(Graded {
                    verdict,
                    code: a.code,
                    details,
                })
            }
            ExerciseBody::Sql { .. } => {
                let a: sql::SqlAnswer = parse(answer, "{\"query\": \"SELECT …\"}")?;
                self.check_size(&a.query)?;
                if a.query.trim().is_empty() {
                    return Err(GradeError::invalid("La requête est vide."));
                }
                let exercise = exercise.clone();
                let query = a.query.clone();
                let limits = self.limits;
                let verdict = self
                    .pool
                    .run(
                        move || {
                            let ExerciseBody::Sql {
                                schema,
                                data,
                                check_query,
                                order_matters,
                                expected,
                                ..
                            } = &exercise.body
                            else {
                                return Err(SqlError::Query("not a SQL exercise".into()));
                            };
                            sql::grade(
                                schema,
                                data,
                                check_query.as_deref(),
                                *order_matters,
                                expected,
                                &query,
                                limits,
                            )
                        },
                        self.wait,
                    )
                    .await??;
                Ok(Graded {
                    verdict,
                    code: a.query,
                    details: None,
                })
            }
        }
    }

    /// Grades what an adapter read from a submission.
    pub async fn grade_work(
        &self,
        exercise: &Arc<Exercise>,
        work: Work,
    ) -> Result<Graded, GradeError> {
        match work {
            Work::Answer(answer) => self.grade(exercise, answer).await,
            Work::BrowserVerdict {
                passed,
                score,
                code,
            } => {
                if !matches!(exercise.body, ExerciseBody::Python { .. }) {
                    return Err(GradeError::invalid(
                        "Pour ce type d'exercice, le serveur corrige lui-même : envoyez `answer`.",
                    ));
                }
                self.check_size(&code)?;
                Ok(Graded {
                    verdict: python::browser_verdict(passed, score)?,
                    code,
                    details: None,
                })
            }
        }
    }

    fn check_size(&self, text: &str) -> Result<(), GradeError> {
        if text.len() > self.max_code_bytes {
            return Err(GradeError::Invalid {
                code: "code_too_large",
                message: format!(
                    "Le code dépasse la taille maximale ({} Kio).",
                    self.max_code_bytes / 1024
                ),
            });
        }
        Ok(())
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    answer: serde_json::Value,
    shape: &str,
) -> Result<T, GradeError> {
    serde_json::from_value(answer).map_err(|e| {
        GradeError::invalid(format!(
            "`answer` ne convient pas à cet exercice (attendu : {shape}) : {e}"
        ))
    })
}
