//! A load-test school written in bulk (`nsi-live admin seed-load`): teachers, classes, students,
//! enrollments and sessions as multi-row INSERTs in one transaction, so that 10,000 students take
//! seconds instead of 10,000 sign-ins. Secrets arrive hashed, as everywhere in the store.

use std::collections::HashMap;

use sqlx::{QueryBuilder, Row};

use super::{Store, in_transaction, is_unique_violation};
use crate::domain::accounts::{pseudonym_key, pseudonym_skeleton};

/// Rows per INSERT statement: under SQLite's bound-value limit (32,766) and PostgreSQL's (65,535)
/// at 6 values a row.
const ROWS_PER_STATEMENT: usize = 1_000;

#[derive(Debug, Clone)]
pub struct SeedTeacher {
    pub login: String,
    pub display_name: String,
    pub session_hash: String,
}

#[derive(Debug, Clone)]
pub struct SeedClass {
    /// Index into `SeedSchool::teachers`.
    pub teacher: usize,
    pub name: String,
    pub join_code: String,
}

#[derive(Debug, Clone)]
pub struct SeedStudent {
    /// Index into `SeedSchool::classes`.
    pub class: usize,
    /// Unique in the whole school (the ids come back keyed by it).
    pub pseudonym: String,
    pub session_hash: String,
}

/// What to write. Every teacher shares one password hash and every student one recovery code
/// hash: signing in is measured on its own, not paid here.
#[derive(Debug, Clone)]
pub struct SeedSchool {
    pub teachers: Vec<SeedTeacher>,
    pub classes: Vec<SeedClass>,
    pub students: Vec<SeedStudent>,
    pub password_hash: String,
    pub recovery_code_hash: String,
    pub school: String,
    pub now: i64,
    pub session_expires_at: i64,
}

/// The ids given, index for index.
#[derive(Debug, Clone, Default)]
pub struct SeededIds {
    pub teachers: Vec<i64>,
    pub classes: Vec<i64>,
    pub students: Vec<i64>,
}

/// Puts each returned (id, key) row at the index its key had in the input.
fn place(
    ids: &mut [i64],
    index: &HashMap<&str, usize>,
    rows: Vec<(i64, String)>,
) -> anyhow::Result<()> {
    for (id, key) in rows {
        let i = *index
            .get(key.as_str())
            .ok_or_else(|| anyhow::anyhow!("unexpected row {key:?} returned"))?;
        ids[i] = id;
    }
    Ok(())
}

impl Store {
    /// Writes the whole school in one transaction: all of it or nothing (a login or a join code
    /// already taken fails the lot, with a sentence saying so).
    pub async fn seed_load_school(&self, school: &SeedSchool) -> anyhow::Result<SeededIds> {
        self.write_load_school(school).await.map_err(|e| {
            if e.downcast_ref::<sqlx::Error>()
                .is_some_and(is_unique_violation)
            {
                anyhow::anyhow!(
                    "this school's logins or join codes are already in the database: nothing \
                     was written (seed a fresh database, or give another --prefix)"
                )
            } else {
                e
            }
        })
    }

    #[tracing::instrument(skip_all, fields(
        teachers = school.teachers.len(),
        classes = school.classes.len(),
        students = school.students.len()
    ))]
    async fn write_load_school(&self, school: &SeedSchool) -> anyhow::Result<SeededIds> {
        let mut ids = SeededIds {
            teachers: vec![0; school.teachers.len()],
            classes: vec![0; school.classes.len()],
            students: vec![0; school.students.len()],
        };
        let teacher_index: HashMap<&str, usize> = school
            .teachers
            .iter()
            .enumerate()
            .map(|(i, t)| (t.login.as_str(), i))
            .collect();
        let class_index: HashMap<&str, usize> = school
            .classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.join_code.as_str(), i))
            .collect();
        let student_index: HashMap<&str, usize> = school
            .students
            .iter()
            .enumerate()
            .map(|(i, s)| (s.pseudonym.as_str(), i))
            .collect();
        anyhow::ensure!(
            teacher_index.len() == school.teachers.len()
                && class_index.len() == school.classes.len()
                && student_index.len() == school.students.len(),
            "logins, join codes and pseudonyms must each be unique"
        );
        in_transaction!(self, tx => {
            for chunk in school.teachers.chunks(ROWS_PER_STATEMENT) {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO users (role, display_name, login, password_hash, created_at) ",
                );
                qb.push_values(chunk, |mut b, t| {
                    b.push_bind("teacher")
                        .push_bind(t.display_name.clone())
                        .push_bind(t.login.clone())
                        .push_bind(school.password_hash.clone())
                        .push_bind(school.now);
                });
                qb.push(" RETURNING id, login");
                let mut rows = Vec::with_capacity(chunk.len());
                for r in qb.build().fetch_all(&mut *tx).await? {
                    rows.push((r.try_get("id")?, r.try_get("login")?));
                }
                place(&mut ids.teachers, &teacher_index, rows)?;
            }
            for chunk in school.classes.chunks(ROWS_PER_STATEMENT) {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO classrooms (teacher_id, name, school, join_code, created_at) ",
                );
                qb.push_values(chunk, |mut b, c| {
                    b.push_bind(ids.teachers[c.teacher])
                        .push_bind(c.name.clone())
                        .push_bind(school.school.clone())
                        .push_bind(c.join_code.clone())
                        .push_bind(school.now);
                });
                qb.push(" RETURNING id, join_code");
                let mut rows = Vec::with_capacity(chunk.len());
                for r in qb.build().fetch_all(&mut *tx).await? {
                    rows.push((r.try_get("id")?, r.try_get("join_code")?));
                }
                place(&mut ids.classes, &class_index, rows)?;
            }
            for chunk in school.students.chunks(ROWS_PER_STATEMENT) {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO users (role, display_name, recovery_code_hash, created_at) ",
                );
                qb.push_values(chunk, |mut b, s| {
                    b.push_bind("student")
                        .push_bind(s.pseudonym.clone())
                        .push_bind(school.recovery_code_hash.clone())
                        .push_bind(school.now);
                });
                qb.push(" RETURNING id, display_name");
                let mut rows = Vec::with_capacity(chunk.len());
                for r in qb.build().fetch_all(&mut *tx).await? {
                    rows.push((r.try_get("id")?, r.try_get("display_name")?));
                }
                place(&mut ids.students, &student_index, rows)?;
            }
            for (chunk_no, chunk) in school.students.chunks(ROWS_PER_STATEMENT).enumerate() {
                let first = chunk_no * ROWS_PER_STATEMENT;
                let mut qb = QueryBuilder::new(
                    "INSERT INTO enrollments (classroom_id, student_id, pseudonym, pseudonym_key,
                                              pseudonym_skeleton, joined_at) ",
                );
                qb.push_values(chunk.iter().enumerate(), |mut b, (i, s)| {
                    b.push_bind(ids.classes[s.class])
                        .push_bind(ids.students[first + i])
                        .push_bind(s.pseudonym.clone())
                        .push_bind(pseudonym_key(&s.pseudonym))
                        .push_bind(pseudonym_skeleton(&s.pseudonym))
                        .push_bind(school.now);
                });
                qb.build().execute(&mut *tx).await?;
            }
            let sessions: Vec<(i64, &str)> = ids
                .teachers
                .iter()
                .zip(&school.teachers)
                .map(|(id, t)| (*id, t.session_hash.as_str()))
                .chain(
                    ids.students
                        .iter()
                        .zip(&school.students)
                        .map(|(id, s)| (*id, s.session_hash.as_str())),
                )
                .collect();
            for chunk in sessions.chunks(ROWS_PER_STATEMENT) {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO sessions (token_hash, user_id, created_at, expires_at,
                                           last_seen_at) ",
                );
                qb.push_values(chunk, |mut b, (id, hash)| {
                    b.push_bind((*hash).to_owned())
                        .push_bind(*id)
                        .push_bind(school.now)
                        .push_bind(school.session_expires_at)
                        .push_bind(school.now);
                });
                qb.build().execute(&mut *tx).await?;
            }
        });
        Ok(ids)
    }
}
