//! Data care (students are minors; RGPD): an online backup of the embedded database, the
//! end-of-year purge of a class, and a student's own data as one JSON document.

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::Row;

use super::{Pool, Store, in_transaction, on_pool};
use crate::domain::ids::{ClassroomId, UserId};

/// What a purge removed, for the teacher or the operator who asked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    /// Students whose account and everything of theirs (attempts, code, progress, XP, badges,
    /// sessions) was deleted: the purged class was their only one.
    pub students_deleted: u64,
    /// Students who are also in another class: only their place in this class was removed, their
    /// work stays for that other class.
    pub students_kept: u64,
    pub attempts_deleted: u64,
    /// Every student of the class, deleted or kept (so callers can end their sessions and
    /// refresh the hot state).
    #[serde(skip)]
    pub students: Vec<(UserId, bool)>,
}

impl Store {
    /// A class's name, whoever teaches it (for the operator's purge confirmation).
    pub async fn classroom_name(&self, id: ClassroomId) -> anyhow::Result<Option<String>> {
        let name = on_pool!(self, pool => {
            sqlx::query("SELECT name FROM classrooms WHERE id = $1")
                .bind(id.0)
                .fetch_optional(pool)
                .await?
                .map(|row| row.try_get::<String, _>("name"))
                .transpose()?
        });
        Ok(name)
    }

    /// A consistent copy of the embedded SQLite database at `path`, taken while the server runs
    /// (`VACUUM INTO`: one read transaction, so it holds exactly the commits made before it
    /// started). PostgreSQL is backed up with its own tools (`pg_dump`), see docs/deploy.md.
    pub async fn backup_to(&self, path: &std::path::Path) -> anyhow::Result<()> {
        let Pool::Sqlite(pool) = &self.pool else {
            bail!(
                "backups of a PostgreSQL database are made with pg_dump \
                 (e.g. `pg_dump --format=custom --file=nsi.dump \"$DATABASE_URL\"`), see docs/deploy.md"
            );
        };
        if path.exists() {
            bail!("{} already exists: choose a new file name", path.display());
        }
        let target = path
            .to_str()
            .with_context(|| format!("{} is not a UTF-8 path", path.display()))?;
        sqlx::query("VACUUM INTO $1")
            .bind(target)
            .execute(pool)
            .await
            .with_context(|| format!("writing the backup to {}", path.display()))?;
        Ok(())
    }

    /// Deletes a class for good: the class, its assignments and enrollments; the accounts of its
    /// students who have no other class, with all their data (the foreign keys cascade); for the
    /// others only their enrollment. One transaction: all or nothing.
    pub async fn purge_classroom(&self, classroom: ClassroomId) -> anyhow::Result<PurgeReport> {
        let report = in_transaction!(self, tx => {
            let rows = sqlx::query(
                "SELECT e.student_id,
                        (SELECT COUNT(*) FROM enrollments o WHERE o.student_id = e.student_id) AS classes
                 FROM enrollments e WHERE e.classroom_id = $1",
            )
            .bind(classroom.0)
            .fetch_all(&mut *tx)
            .await?;
            let mut report = PurgeReport::default();
            for row in rows {
                let student = UserId(row.try_get("student_id")?);
                let classes: i64 = row.try_get("classes")?;
                let delete_account = classes <= 1;
                if delete_account {
                    let attempts: i64 =
                        sqlx::query("SELECT COUNT(*) AS n FROM attempts WHERE student_id = $1")
                            .bind(student.0)
                            .fetch_one(&mut *tx)
                            .await?
                            .try_get("n")?;
                    sqlx::query("DELETE FROM users WHERE id = $1 AND role = 'student'")
                        .bind(student.0)
                        .execute(&mut *tx)
                        .await?;
                    report.students_deleted += 1;
                    report.attempts_deleted += attempts as u64;
                } else {
                    report.students_kept += 1;
                }
                report.students.push((student, delete_account));
            }
            sqlx::query("DELETE FROM enrollments WHERE classroom_id = $1")
                .bind(classroom.0)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM chapter_assignments WHERE classroom_id = $1")
                .bind(classroom.0)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM classrooms WHERE id = $1")
                .bind(classroom.0)
                .execute(&mut *tx)
                .await?;
            report
        });
        self.views_changed();
        Ok(report)
    }

    /// Everything stored about one user, as the RGPD's right of access asks: account, classes,
    /// attempts with their code, progress, XP, badges, achievements, hints used. Secrets (password
    /// and recovery-code hashes, session tokens) are not data about the person and are left out.
    pub async fn export_user(&self, user: UserId) -> anyhow::Result<Value> {
        let doc = on_pool!(self, pool => {
            let account = sqlx::query(
                "SELECT id, role, display_name, login, leaderboard_opt_out, created_at
                 FROM users WHERE id = $1",
            )
            .bind(user.0)
            .fetch_optional(pool)
            .await?;
            let Some(account) = account else {
                return Ok(Value::Null);
            };
            let account = json!({
                "id": account.try_get::<i64, _>("id")?,
                "role": account.try_get::<String, _>("role")?,
                "display_name": account.try_get::<String, _>("display_name")?,
                "login": account.try_get::<Option<String>, _>("login")?,
                "leaderboard_opt_out": account.try_get::<bool, _>("leaderboard_opt_out")?,
                "created_at_ms": account.try_get::<i64, _>("created_at")?,
            });
            let mut classes = Vec::new();
            for row in sqlx::query(
                "SELECT c.id, c.name, c.school, e.pseudonym, e.joined_at
                 FROM enrollments e JOIN classrooms c ON c.id = e.classroom_id
                 WHERE e.student_id = $1 ORDER BY e.joined_at",
            )
            .bind(user.0)
            .fetch_all(pool)
            .await?
            {
                classes.push(json!({
                    "classroom_id": row.try_get::<i64, _>("id")?,
                    "name": row.try_get::<String, _>("name")?,
                    "school": row.try_get::<String, _>("school")?,
                    "pseudonym": row.try_get::<String, _>("pseudonym")?,
                    "joined_at_ms": row.try_get::<i64, _>("joined_at")?,
                }));
            }
            let mut taught = Vec::new();
            for row in sqlx::query(
                "SELECT id, name, school, created_at, archived_at FROM classrooms
                 WHERE teacher_id = $1 ORDER BY id",
            )
            .bind(user.0)
            .fetch_all(pool)
            .await?
            {
                taught.push(json!({
                    "classroom_id": row.try_get::<i64, _>("id")?,
                    "name": row.try_get::<String, _>("name")?,
                    "school": row.try_get::<String, _>("school")?,
                    "created_at_ms": row.try_get::<i64, _>("created_at")?,
                    "archived_at_ms": row.try_get::<Option<i64>, _>("archived_at")?,
                }));
            }
            let mut attempts = Vec::new();
            for row in sqlx::query(
                "SELECT a.attempt_id, e.slug, a.passed, a.score, a.code, a.duration_ms, a.created_at
                 FROM attempts a JOIN exercises e ON e.id = a.exercise_id
                 WHERE a.student_id = $1 ORDER BY a.id",
            )
            .bind(user.0)
            .fetch_all(pool)
            .await?
            {
                attempts.push(json!({
                    "attempt_id": row.try_get::<String, _>("attempt_id")?,
                    "exercise": row.try_get::<String, _>("slug")?,
                    "passed": row.try_get::<bool, _>("passed")?,
                    "score": row.try_get::<i32, _>("score")?,
                    "code": row.try_get::<String, _>("code")?,
                    "duration_ms": row.try_get::<Option<i64>, _>("duration_ms")?,
                    "created_at_ms": row.try_get::<i64, _>("created_at")?,
                }));
            }
            let mut progress = Vec::new();
            for row in sqlx::query(
                "SELECT e.slug, p.attempts, p.failed_attempts, p.best_score, p.passed,
                        p.first_passed_at, p.last_attempt_at
                 FROM progress p JOIN exercises e ON e.id = p.exercise_id
                 WHERE p.student_id = $1 ORDER BY e.slug",
            )
            .bind(user.0)
            .fetch_all(pool)
            .await?
            {
                progress.push(json!({
                    "exercise": row.try_get::<String, _>("slug")?,
                    "attempts": row.try_get::<i32, _>("attempts")?,
                    "failed_attempts": row.try_get::<i32, _>("failed_attempts")?,
                    "best_score": row.try_get::<i32, _>("best_score")?,
                    "passed": row.try_get::<bool, _>("passed")?,
                    "first_passed_at_ms": row.try_get::<Option<i64>, _>("first_passed_at")?,
                    "last_attempt_at_ms": row.try_get::<i64, _>("last_attempt_at")?,
                }));
            }
            let stats = sqlx::query(
                "SELECT xp, current_streak, longest_streak FROM student_stats WHERE student_id = $1",
            )
            .bind(user.0)
            .fetch_optional(pool)
            .await?
            .map(|row| -> Result<Value, sqlx::Error> {
                Ok(json!({
                    "xp": row.try_get::<i64, _>("xp")?,
                    "current_streak": row.try_get::<i32, _>("current_streak")?,
                    "longest_streak": row.try_get::<i32, _>("longest_streak")?,
                }))
            })
            .transpose()?;
            let mut badges = Vec::new();
            for row in sqlx::query(
                "SELECT badge, awarded_at FROM student_badges WHERE student_id = $1 ORDER BY awarded_at",
            )
            .bind(user.0)
            .fetch_all(pool)
            .await?
            {
                badges.push(json!({
                    "badge": row.try_get::<String, _>("badge")?,
                    "awarded_at_ms": row.try_get::<i64, _>("awarded_at")?,
                }));
            }
            let mut achievements = Vec::new();
            for row in sqlx::query(
                "SELECT achievement, xp_awarded, unlocked_at FROM student_achievements
                 WHERE student_id = $1 ORDER BY unlocked_at",
            )
            .bind(user.0)
            .fetch_all(pool)
            .await?
            {
                achievements.push(json!({
                    "achievement": row.try_get::<String, _>("achievement")?,
                    "xp_awarded": row.try_get::<i32, _>("xp_awarded")?,
                    "unlocked_at_ms": row.try_get::<i64, _>("unlocked_at")?,
                }));
            }
            let mut hints = Vec::new();
            for row in sqlx::query(
                "SELECT e.slug, h.position, u.xp_spent, u.created_at
                 FROM hint_uses u JOIN hints h ON h.id = u.hint_id JOIN exercises e ON e.id = h.exercise_id
                 WHERE u.student_id = $1 ORDER BY u.created_at",
            )
            .bind(user.0)
            .fetch_all(pool)
            .await?
            {
                hints.push(json!({
                    "exercise": row.try_get::<String, _>("slug")?,
                    "hint_position": row.try_get::<i32, _>("position")?,
                    "xp_spent": row.try_get::<i32, _>("xp_spent")?,
                    "revealed_at_ms": row.try_get::<i64, _>("created_at")?,
                }));
            }
            json!({
                "account": account,
                "classes": classes,
                "classes_taught": taught,
                "attempts": attempts,
                "progress": progress,
                "stats": stats,
                "badges": badges,
                "achievements": achievements,
                "hints_revealed": hints,
            })
        });
        Ok(doc)
    }
}
