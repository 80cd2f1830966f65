//! Enrollments: who is in which class under which pseudonym — joins, the student's classes,
//! recovery-code candidates and resets, removals, and the pseudonym skeleton backfill.

use sqlx::Row;

use super::{Store, in_transaction, is_unique_violation, on_pool};
use crate::domain::accounts::pseudonym_skeleton;
use crate::domain::ids::{ClassroomId, UserId};

/// A class as one of its students sees it (no join code: a teacher may change it to keep
/// newcomers out, and students do not need it once in).
#[derive(Debug, Clone)]
pub struct StudentClass {
    pub id: ClassroomId,
    pub name: String,
    pub school: String,
    pub teacher_name: String,
    pub pseudonym: String,
    pub joined_at: i64,
    pub archived_at: Option<i64>,
}

/// The class a join code opens.
#[derive(Debug, Clone)]
pub struct JoinTarget {
    pub id: ClassroomId,
    pub name: String,
    pub school: String,
    pub teacher_name: String,
    pub archived_at: Option<i64>,
}

/// Why a join was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinRefusal {
    PseudonymTaken,
    AlreadyEnrolled,
}

/// A student's removal from a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removal {
    /// It was the student's last class: the account is disabled and its sessions deleted (there
    /// is no way back into it: recovery goes through a class).
    pub was_last_class: bool,
}

macro_rules! student_class_from_row {
    ($r:expr) => {
        StudentClass {
            id: ClassroomId($r.try_get("id")?),
            name: $r.try_get("name")?,
            school: $r.try_get("school")?,
            teacher_name: $r.try_get("teacher_name")?,
            pseudonym: $r.try_get("pseudonym")?,
            joined_at: $r.try_get("joined_at")?,
            archived_at: $r.try_get("archived_at")?,
        }
    };
}

const STUDENT_CLASS_SELECT: &str = "SELECT c.id, c.name, c.school, t.display_name AS teacher_name,
            e.pseudonym, e.joined_at, c.archived_at
     FROM enrollments e
     JOIN classrooms c ON c.id = e.classroom_id
     JOIN users t ON t.id = c.teacher_id
     WHERE e.student_id = $1";

impl Store {
    pub async fn is_enrolled(&self, id: ClassroomId, student: UserId) -> anyhow::Result<bool> {
        let found = on_pool!(self, pool => {
            sqlx::query("SELECT 1 FROM enrollments WHERE classroom_id = $1 AND student_id = $2")
                .bind(id.0)
                .bind(student.0)
                .fetch_optional(pool)
                .await?
                .is_some()
        });
        Ok(found)
    }

    /// The classes a student is in (for the live layer: which classroom topics they feed).
    pub async fn student_classroom_ids(&self, student: UserId) -> anyhow::Result<Vec<ClassroomId>> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT classroom_id FROM enrollments WHERE student_id = $1 ORDER BY classroom_id",
            )
            .bind(student.0)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(ClassroomId(r.try_get("classroom_id")?));
            }
            Ok(out)
        })
    }

    /// A student's classes, in the order joined.
    pub async fn student_classes(&self, student: UserId) -> anyhow::Result<Vec<StudentClass>> {
        let sql = format!("{STUDENT_CLASS_SELECT} ORDER BY e.joined_at, c.id");
        on_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(student.0)
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(student_class_from_row!(r));
            }
            Ok(out)
        })
    }

    /// One class of a student's; `None` if they are not in it.
    pub async fn student_class(
        &self,
        student: UserId,
        id: ClassroomId,
    ) -> anyhow::Result<Option<StudentClass>> {
        let sql = format!("{STUDENT_CLASS_SELECT} AND c.id = $2");
        on_pool!(self, pool => {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(student.0)
                .bind(id.0)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(r) => Ok(Some(student_class_from_row!(r))),
                None => Ok(None),
            }
        })
    }

    /// The class a (canonical) join code opens, archived or not.
    pub async fn classroom_by_join_code(&self, code: &str) -> anyhow::Result<Option<JoinTarget>> {
        on_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT c.id, c.name, c.school, t.display_name AS teacher_name, c.archived_at
                 FROM classrooms c JOIN users t ON t.id = c.teacher_id
                 WHERE c.join_code = $1",
            )
            .bind(code)
            .fetch_optional(pool)
            .await?;
            match row {
                Some(r) => Ok(Some(JoinTarget {
                    id: ClassroomId(r.try_get("id")?),
                    name: r.try_get("name")?,
                    school: r.try_get("school")?,
                    teacher_name: r.try_get("teacher_name")?,
                    archived_at: r.try_get("archived_at")?,
                })),
                None => Ok(None),
            }
        })
    }

    /// Creates a pseudonymous student and enrolls them, in one transaction: if the pseudonym is
    /// taken in the class, no account is left behind.
    pub async fn join_as_new_student(
        &self,
        classroom: ClassroomId,
        pseudonym: &str,
        pseudonym_key: &str,
        recovery_code_hash: &str,
        now: i64,
    ) -> anyhow::Result<Result<UserId, JoinRefusal>> {
        let outcome = in_transaction!(self, tx => {
            let id: i64 = sqlx::query(
                "INSERT INTO users (role, display_name, recovery_code_hash, created_at)
                 VALUES ('student', $1, $2, $3) RETURNING id",
            )
            .bind(pseudonym)
            .bind(recovery_code_hash)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?
            .try_get("id")?;
            let enrolled = sqlx::query(
                "INSERT INTO enrollments
                     (classroom_id, student_id, pseudonym, pseudonym_key, pseudonym_skeleton, joined_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(classroom.0)
            .bind(id)
            .bind(pseudonym)
            .bind(pseudonym_key)
            .bind(pseudonym_skeleton(pseudonym))
            .bind(now)
            .execute(&mut *tx)
            .await;
            match enrolled {
                Ok(_) => Ok(UserId(id)),
                // Returning drops the transaction: the new user is rolled back.
                Err(e) if is_unique_violation(&e) => return Ok(Err(JoinRefusal::PseudonymTaken)),
                Err(e) => return Err(e.into()),
            }
        });
        self.views_changed();
        Ok(outcome)
    }

    /// Gives every enrollment made before migration 0003 its pseudonym skeleton (computed here,
    /// not in SQL). Run at start-up; a no-op once done. Two look-alike pseudonyms already in one
    /// class keep their accounts: the second keeps no skeleton (the first's blocks newcomers).
    pub async fn backfill_pseudonym_skeletons(&self) -> anyhow::Result<()> {
        let rows: Vec<(i64, i64, String)> = on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT classroom_id, student_id, pseudonym FROM enrollments
                 WHERE pseudonym_skeleton IS NULL ORDER BY joined_at, student_id",
            )
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push((r.try_get("classroom_id")?, r.try_get("student_id")?, r.try_get("pseudonym")?));
            }
            out
        });
        if rows.is_empty() {
            return Ok(());
        }
        let (mut filled, mut clashes) = (0u64, 0u64);
        for (classroom, student, pseudonym) in &rows {
            let updated: Result<_, sqlx::Error> = on_pool!(self, pool => {
                sqlx::query(
                    "UPDATE enrollments SET pseudonym_skeleton = $1
                     WHERE classroom_id = $2 AND student_id = $3",
                )
                .bind(pseudonym_skeleton(pseudonym))
                .bind(classroom)
                .bind(student)
                .execute(pool)
                .await
                .map(|_| ())
            });
            match updated {
                Ok(_) => filled += 1,
                Err(e) if is_unique_violation(&e) => clashes += 1,
                Err(e) => return Err(e.into()),
            }
        }
        // Counts only: pseudonyms never reach the logs.
        tracing::info!(
            filled,
            clashes,
            "pseudonym skeletons computed for existing enrollments"
        );
        Ok(())
    }

    /// Enrolls an existing student in one more class.
    pub async fn enroll(
        &self,
        classroom: ClassroomId,
        student: UserId,
        pseudonym: &str,
        pseudonym_key: &str,
        now: i64,
    ) -> anyhow::Result<Result<(), JoinRefusal>> {
        let inserted: Result<_, sqlx::Error> = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO enrollments
                     (classroom_id, student_id, pseudonym, pseudonym_key, pseudonym_skeleton, joined_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(classroom.0)
            .bind(student.0)
            .bind(pseudonym)
            .bind(pseudonym_key)
            .bind(pseudonym_skeleton(pseudonym))
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        });
        match inserted {
            Ok(_) => {
                self.views_changed();
                Ok(Ok(()))
            }
            Err(e) if is_unique_violation(&e) => {
                // Three unique keys: (class, student), (class, pseudonym key), (class, skeleton).
                // Which kind was hit?
                if self.is_enrolled(classroom, student).await? {
                    Ok(Err(JoinRefusal::AlreadyEnrolled))
                } else {
                    Ok(Err(JoinRefusal::PseudonymTaken))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The student who goes by `pseudonym_key` in the class of `join_code`, with their recovery
    /// code hash, for signing in on another device.
    pub async fn recovery_candidate(
        &self,
        join_code: &str,
        pseudonym_key: &str,
    ) -> anyhow::Result<Option<(UserId, Option<String>)>> {
        on_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT u.id, u.recovery_code_hash
                 FROM classrooms c
                 JOIN enrollments e ON e.classroom_id = c.id
                 JOIN users u ON u.id = e.student_id
                 WHERE c.join_code = $1 AND e.pseudonym_key = $2
                   AND u.role = 'student' AND u.disabled_at IS NULL",
            )
            .bind(join_code)
            .bind(pseudonym_key)
            .fetch_optional(pool)
            .await?;
            match row {
                Some(r) => Ok(Some((UserId(r.try_get("id")?), r.try_get("recovery_code_hash")?))),
                None => Ok(None),
            }
        })
    }

    /// Whether the student is in a class that `teacher` does not own (archived ones included).
    pub async fn in_other_teachers_class(
        &self,
        student: UserId,
        teacher: UserId,
    ) -> anyhow::Result<bool> {
        let found = on_pool!(self, pool => {
            sqlx::query(
                "SELECT 1 FROM enrollments e JOIN classrooms c ON c.id = e.classroom_id
                 WHERE e.student_id = $1 AND c.teacher_id <> $2 LIMIT 1",
            )
            .bind(student.0)
            .bind(teacher.0)
            .fetch_optional(pool)
            .await?
            .is_some()
        });
        Ok(found)
    }

    /// Sets a student's recovery code for `teacher`, only if every class of the student's is
    /// `teacher`'s (checked in the same statement); `false` if it was not set.
    pub async fn set_recovery_code_hash(
        &self,
        student: UserId,
        teacher: UserId,
        hash: &str,
    ) -> anyhow::Result<bool> {
        let changed = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE users SET recovery_code_hash = $1
                 WHERE id = $2 AND role = 'student'
                   AND NOT EXISTS (SELECT 1 FROM enrollments e JOIN classrooms c ON c.id = e.classroom_id
                                   WHERE e.student_id = $2 AND c.teacher_id <> $3)",
            )
            .bind(hash)
            .bind(student.0)
            .bind(teacher.0)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(changed == 1)
    }

    /// Removes a student from a class; `None` if they were not in it. A student left without any
    /// class is disabled and signed out everywhere (see [`Removal`]).
    pub async fn remove_enrollment(
        &self,
        classroom: ClassroomId,
        student: UserId,
        now: i64,
    ) -> anyhow::Result<Option<Removal>> {
        let removal = in_transaction!(self, tx => {
            let removed = sqlx::query(
                "DELETE FROM enrollments WHERE classroom_id = $1 AND student_id = $2",
            )
            .bind(classroom.0)
            .bind(student.0)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if removed == 0 {
                return Ok(None);
            }
            let remaining: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM enrollments WHERE student_id = $1",
            )
            .bind(student.0)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
            if remaining == 0 {
                sqlx::query(
                    "UPDATE users SET disabled_at = $2
                     WHERE id = $1 AND role = 'student' AND disabled_at IS NULL",
                )
                .bind(student.0)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                    .bind(student.0)
                    .execute(&mut *tx)
                    .await?;
            }
            Some(Removal {
                was_last_class: remaining == 0,
            })
        });
        if removal.is_some() {
            self.views_changed();
        }
        Ok(removal)
    }
}
