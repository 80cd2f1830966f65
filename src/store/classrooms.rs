//! Classrooms, enrollments (who is in which class under which pseudonym) and chapter assignments.
//! Ownership is part of every teacher-side query (`WHERE teacher_id = …`), so that a classroom of
//! another teacher is simply not found.

use sqlx::Row;

use super::{Store, in_transaction, is_unique_violation, on_pool};
use crate::domain::accounts::{generate_join_code, pseudonym_skeleton};
use crate::domain::ids::{ChapterId, ClassroomId, UserId};

/// A classroom as its teacher sees it.
#[derive(Debug, Clone)]
pub struct Classroom {
    pub id: ClassroomId,
    pub teacher_id: UserId,
    pub name: String,
    pub school: String,
    pub join_code: String,
    pub created_at: i64,
    pub archived_at: Option<i64>,
    pub student_count: i64,
    /// The leaderboard counts only server-checked XP (trusted grading).
    pub leaderboard_server_checked_only: bool,
}

/// One student of a class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterEntry {
    pub student_id: UserId,
    pub pseudonym: String,
    pub joined_at: i64,
}

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentRecord {
    pub classroom_id: ClassroomId,
    pub chapter_slug: String,
    pub due_at: Option<i64>,
    pub assigned_at: i64,
}

/// What a user is to a class (`Store::classroom_role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassroomRole {
    Teacher,
    Member,
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

/// How many times a fresh join code is drawn when the first collides (1 in ~900 million each).
const JOIN_CODE_TRIES: usize = 8;

macro_rules! classroom_from_row {
    ($r:expr) => {
        Classroom {
            id: ClassroomId($r.try_get("id")?),
            teacher_id: UserId($r.try_get("teacher_id")?),
            name: $r.try_get("name")?,
            school: $r.try_get("school")?,
            join_code: $r.try_get("join_code")?,
            created_at: $r.try_get("created_at")?,
            archived_at: $r.try_get("archived_at")?,
            student_count: $r.try_get("student_count")?,
            leaderboard_server_checked_only: $r.try_get("leaderboard_server_checked_only")?,
        }
    };
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

macro_rules! assignment_from_row {
    ($r:expr) => {
        AssignmentRecord {
            classroom_id: ClassroomId($r.try_get("classroom_id")?),
            chapter_slug: $r.try_get("slug")?,
            due_at: $r.try_get("due_at")?,
            assigned_at: $r.try_get("assigned_at")?,
        }
    };
}

const CLASSROOM_COLUMNS: &str = "c.id, c.teacher_id, c.name, c.school, c.join_code, c.created_at, \
     c.archived_at, c.leaderboard_server_checked_only, (SELECT COUNT(*) FROM enrollments e WHERE e.classroom_id = c.id) AS student_count";

const STUDENT_CLASS_SELECT: &str = "SELECT c.id, c.name, c.school, t.display_name AS teacher_name,
            e.pseudonym, e.joined_at, c.archived_at
     FROM enrollments e
     JOIN classrooms c ON c.id = e.classroom_id
     JOIN users t ON t.id = c.teacher_id
     WHERE e.student_id = $1";

impl Store {
    /// Creates a classroom with a fresh join code.
    /// Creates a classroom, unless the teacher already has `max` (archived ones included): then
    /// `None`. The count and the insert are one statement; on PostgreSQL, creations of one teacher
    /// running at the same instant may each see room for one more (the cap is exact on SQLite,
    /// whose writes are serialised).
    pub async fn create_classroom(
        &self,
        teacher: UserId,
        name: &str,
        school: &str,
        now: i64,
        max: u32,
    ) -> anyhow::Result<Option<Classroom>> {
        for _ in 0..JOIN_CODE_TRIES {
            let code = generate_join_code(&mut rand::rng());
            let inserted: Result<Option<i64>, sqlx::Error> = on_pool!(self, pool => {
                sqlx::query(
                    "INSERT INTO classrooms (teacher_id, name, school, join_code, created_at)
                     SELECT $1, $2, $3, $4, $5
                     WHERE (SELECT COUNT(*) FROM classrooms WHERE teacher_id = $1) < $6
                     RETURNING id",
                )
                .bind(teacher.0)
                .bind(name)
                .bind(school)
                .bind(&code)
                .bind(now)
                .bind(i64::from(max))
                .fetch_optional(pool)
                .await
                .and_then(|r| r.map(|r| r.try_get("id")).transpose())
            });
            match inserted {
                Ok(None) => return Ok(None),
                Ok(Some(id)) => {
                    return Ok(Some(Classroom {
                        id: ClassroomId(id),
                        teacher_id: teacher,
                        name: name.to_owned(),
                        school: school.to_owned(),
                        join_code: code,
                        created_at: now,
                        archived_at: None,
                        student_count: 0,
                        leaderboard_server_checked_only: false,
                    }));
                }
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        anyhow::bail!("no free join code after {JOIN_CODE_TRIES} tries")
    }

    /// A teacher's classrooms, oldest first.
    pub async fn teacher_classrooms(&self, teacher: UserId) -> anyhow::Result<Vec<Classroom>> {
        let sql = format!(
            "SELECT {CLASSROOM_COLUMNS} FROM classrooms c WHERE c.teacher_id = $1
             ORDER BY c.created_at, c.id"
        );
        on_pool!(self, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(teacher.0)
                .fetch_all(pool)
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(classroom_from_row!(r));
            }
            Ok(out)
        })
    }

    /// The classroom if it exists and belongs to `teacher`; `None` otherwise (answered 404 alike).
    pub async fn classroom_for_teacher(
        &self,
        id: ClassroomId,
        teacher: UserId,
    ) -> anyhow::Result<Option<Classroom>> {
        let sql = format!(
            "SELECT {CLASSROOM_COLUMNS} FROM classrooms c WHERE c.id = $1 AND c.teacher_id = $2"
        );
        on_pool!(self, pool => {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id.0)
                .bind(teacher.0)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(r) => Ok(Some(classroom_from_row!(r))),
                None => Ok(None),
            }
        })
    }

    pub async fn teacher_owns_classroom(
        &self,
        id: ClassroomId,
        teacher: UserId,
    ) -> anyhow::Result<bool> {
        let found = on_pool!(self, pool => {
            sqlx::query("SELECT 1 FROM classrooms WHERE id = $1 AND teacher_id = $2")
                .bind(id.0)
                .bind(teacher.0)
                .fetch_optional(pool)
                .await?
                .is_some()
        });
        Ok(found)
    }

    /// What `user` is to class `id`, in one indexed query (the class's primary key, then the
    /// enrollments' one): checked before any class actor is started, so that probing ids loads
    /// nothing into memory. `None`: no such class, or not the user's.
    pub async fn classroom_role(
        &self,
        id: ClassroomId,
        user: UserId,
    ) -> anyhow::Result<Option<ClassroomRole>> {
        let role: Option<i32> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT CASE WHEN c.teacher_id = $2 THEN 1
                             WHEN EXISTS (SELECT 1 FROM enrollments e
                                          WHERE e.classroom_id = c.id AND e.student_id = $2)
                             THEN 2 ELSE 0 END
                 FROM classrooms c WHERE c.id = $1",
            )
            .bind(id.0)
            .bind(user.0)
            .fetch_optional(pool)
            .await?
        });
        Ok(match role {
            Some(1) => Some(ClassroomRole::Teacher),
            Some(2) => Some(ClassroomRole::Member),
            _ => None,
        })
    }

    /// Draws a new join code for the classroom; the old one stops working at once.
    pub async fn regenerate_join_code(&self, id: ClassroomId) -> anyhow::Result<String> {
        for _ in 0..JOIN_CODE_TRIES {
            let code = generate_join_code(&mut rand::rng());
            let updated: Result<u64, sqlx::Error> = on_pool!(self, pool => {
                sqlx::query("UPDATE classrooms SET join_code = $1 WHERE id = $2")
                    .bind(&code)
                    .bind(id.0)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
            });
            match updated {
                Ok(_) => return Ok(code),
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        anyhow::bail!("no free join code after {JOIN_CODE_TRIES} tries")
    }

    /// Renames, moves or (un)archives a classroom; `None` leaves a field as it is. Archiving keeps
    /// the first archive time.
    pub async fn update_classroom(
        &self,
        id: ClassroomId,
        name: Option<&str>,
        school: Option<&str>,
        archived: Option<bool>,
        now: i64,
    ) -> anyhow::Result<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE classrooms SET
                    name = COALESCE($2, name),
                    school = COALESCE($3, school),
                    archived_at = CASE WHEN $4 IS NULL THEN archived_at
                                       WHEN $4 THEN COALESCE(archived_at, $5)
                                       ELSE NULL END
                 WHERE id = $1",
            )
            .bind(id.0)
            .bind(name)
            .bind(school)
            .bind(archived)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The students of a class, by pseudonym.
    pub async fn classroom_roster(&self, id: ClassroomId) -> anyhow::Result<Vec<RosterEntry>> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT student_id, pseudonym, joined_at FROM enrollments
                 WHERE classroom_id = $1 ORDER BY pseudonym_key, student_id",
            )
            .bind(id.0)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(RosterEntry {
                    student_id: UserId(r.try_get("student_id")?),
                    pseudonym: r.try_get("pseudonym")?,
                    joined_at: r.try_get("joined_at")?,
                });
            }
            Ok(out)
        })
    }

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
            Ok(_) => Ok(Ok(())),
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
        Ok(removal)
    }

    /// A class's assigned chapters: soonest due first, undated ones last.
    pub async fn assignments(
        &self,
        classroom: ClassroomId,
    ) -> anyhow::Result<Vec<AssignmentRecord>> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT a.classroom_id, ch.slug, a.due_at, a.assigned_at
                 FROM chapter_assignments a JOIN chapters ch ON ch.id = a.chapter_id
                 WHERE a.classroom_id = $1
                 ORDER BY a.due_at IS NULL, a.due_at, a.assigned_at, ch.slug",
            )
            .bind(classroom.0)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(assignment_from_row!(r));
            }
            Ok(out)
        })
    }

    /// The assignments of every class a student is in.
    pub async fn student_assignments(
        &self,
        student: UserId,
    ) -> anyhow::Result<Vec<AssignmentRecord>> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT a.classroom_id, ch.slug, a.due_at, a.assigned_at
                 FROM chapter_assignments a JOIN chapters ch ON ch.id = a.chapter_id
                 WHERE a.classroom_id IN (SELECT classroom_id FROM enrollments WHERE student_id = $1)
                 ORDER BY a.due_at IS NULL, a.due_at, a.assigned_at, ch.slug",
            )
            .bind(student.0)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(assignment_from_row!(r));
            }
            Ok(out)
        })
    }

    /// Assigns a chapter (or changes its due date if already assigned); returns when it was first
    /// assigned.
    pub async fn assign_chapter(
        &self,
        classroom: ClassroomId,
        chapter: ChapterId,
        due_at: Option<i64>,
        now: i64,
    ) -> anyhow::Result<i64> {
        let assigned_at = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO chapter_assignments (classroom_id, chapter_id, due_at, assigned_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (classroom_id, chapter_id) DO UPDATE SET due_at = excluded.due_at
                 RETURNING assigned_at",
            )
            .bind(classroom.0)
            .bind(chapter.0)
            .bind(due_at)
            .bind(now)
            .fetch_one(pool)
            .await?
            .try_get("assigned_at")?
        });
        Ok(assigned_at)
    }

    /// Whether the chapter was assigned (and now is not).
    pub async fn unassign_chapter(
        &self,
        classroom: ClassroomId,
        chapter: ChapterId,
    ) -> anyhow::Result<bool> {
        let n = on_pool!(self, pool => {
            sqlx::query("DELETE FROM chapter_assignments WHERE classroom_id = $1 AND chapter_id = $2")
                .bind(classroom.0)
                .bind(chapter.0)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }
}
