//! Classrooms: creation, the teacher's list, roles, join codes, settings and rosters
//! (enrollments.rs: who is in which class under which pseudonym; assignments.rs: chapters).
//! Ownership is part of every teacher-side query (`WHERE teacher_id = …`), so that a classroom of
//! another teacher is simply not found.

use sqlx::Row;

use super::{Store, is_unique_violation, on_pool};
use crate::domain::accounts::generate_join_code;
use crate::domain::ids::{ClassroomId, UserId};

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

/// What a user is to a class (`Store::classroom_role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassroomRole {
    Teacher,
    Member,
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

const CLASSROOM_COLUMNS: &str = "c.id, c.teacher_id, c.name, c.school, c.join_code, c.created_at, \
     c.archived_at, c.leaderboard_server_checked_only, (SELECT COUNT(*) FROM enrollments e WHERE e.classroom_id = c.id) AS student_count";

impl Store {
    /// Creates a classroom with a fresh join code, unless the teacher already has `max` (archived ones included): then
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
                    self.views_changed();
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
                Ok(_) => {
                    self.views_changed();
                    return Ok(code);
                }
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
        self.views_changed();
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
}
