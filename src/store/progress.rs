//! Student progress: the rows the writer stores, and the reads — one student's state (once,
//! when their actor starts) and a class's progress. The batch write itself is in batch.rs.

use std::collections::HashMap;

use sqlx::Row;

use super::{Store, on_pool};
use crate::domain::ids::{AttemptId, ClassroomId, ExerciseId, HintId, UserId};
use crate::domain::progress::{Achievement, Badge, ExerciseProgress, Streak, StudentProgress};

/// A student's XP and streak, written whole, and the version of the student's state they were
/// computed from: the batch writes the change only if the stored version is still that one (it
/// then becomes `version + 1`), so no change computed on a stale base is ever written, whatever
/// instance computed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsRow {
    pub student_id: UserId,
    pub xp: i64,
    pub streak: Streak,
    pub version: i64,
}

#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub attempt_id: AttemptId,
    pub student_id: UserId,
    pub exercise_id: ExerciseId,
    pub passed: bool,
    pub score: i32,
    pub code: String,
    pub duration_ms: Option<i64>,
    pub created_at: i64,
    /// The answer given to the submitter (JSON), kept for resends.
    pub outcome: String,
    /// `server` or `browser` (who computed `passed` and `score`).
    pub checked_by: &'static str,
    /// What the browser reported (Python's per-test results, JSON).
    pub details: Option<String>,
    pub xp_awarded: i64,
    pub progress: ExerciseProgress,
    pub stats: StatsRow,
    pub new_badges: Vec<Badge>,
    pub new_achievements: Vec<Achievement>,
}

#[derive(Debug, Clone)]
pub struct HintRow {
    pub student_id: UserId,
    pub hint_id: HintId,
    pub xp_spent: i64,
    pub created_at: i64,
    pub stats: StatsRow,
}

#[derive(Debug, Clone)]
pub enum WriteItem {
    /// Boxed: an attempt row is several times the size of a hint row.
    Attempt(Box<AttemptRow>),
    Hint(HintRow),
}

impl WriteItem {
    pub(super) fn stats(&self) -> StatsRow {
        match self {
            WriteItem::Attempt(a) => a.stats,
            WriteItem::Hint(h) => h.stats,
        }
    }
}

/// What became of one item of a committed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemResult {
    Written,
    /// The attempt id was already stored: nothing was written for this item. `outcome` is the
    /// answer stored with it, `student_id` whose it is (a foreign id must not get it).
    Duplicate {
        student_id: UserId,
        outcome: String,
    },
    /// The student's state changed since the actor loaded it (`StatsRow::version` is not the
    /// stored one: another instance's actor, or a commit this actor did not hear of): nothing of
    /// this item was written. The actor reloads and computes it again.
    Stale,
}

/// Rows a committed batch wrote, by table (for the writer's counters).
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchReport {
    pub rows: u64,
    /// Time to get a pooled connection and open the transaction (the pool's wait shows here:
    /// sqlx exposes no count of waiters).
    pub acquire: std::time::Duration,
}

/// A `progress` row's columns (both backends).
fn exercise_progress<'r, R>(r: &'r R) -> Result<ExerciseProgress, sqlx::Error>
where
    R: Row,
    &'static str: sqlx::ColumnIndex<R>,
    i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(ExerciseProgress {
        attempts: r.try_get("attempts")?,
        failed_attempts: r.try_get("failed_attempts")?,
        best_score: r.try_get("best_score")?,
        passed: r.try_get("passed")?,
        first_passed_at: r.try_get("first_passed_at")?,
        last_attempt_at: r.try_get("last_attempt_at")?,
    })
}

impl Store {
    /// When the student's last `max` attempts since `since_ms` were made, oldest first (the
    /// submission rate limit's window, rebuilt when the student's actor starts). Read through the
    /// `(student_id, exercise_id)` index: an index on `(student_id, created_at)` served this rare
    /// read but cost every burst a quarter more flush time on SQLite (docs/benchmarks.md).
    pub async fn attempt_times_since(
        &self,
        student: UserId,
        since_ms: i64,
        max: u32,
    ) -> anyhow::Result<Vec<i64>> {
        let mut times: Vec<i64> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT created_at FROM attempts
                 WHERE student_id = $1 AND created_at > $2
                 ORDER BY created_at DESC LIMIT $3",
            )
            .bind(student.0)
            .bind(since_ms)
            .bind(i64::from(max))
            .fetch_all(pool)
            .await?
        });
        times.reverse();
        Ok(times)
    }

    /// Everything the rules need about one student: five small indexed reads.
    pub async fn load_student_progress(&self, student: UserId) -> anyhow::Result<StudentProgress> {
        Ok(self.load_student_state(student).await?.0)
    }

    /// The student's progress and the version of their state it is at least as new as. The
    /// version is read first, in its own statement: the reads after it see that version or a
    /// newer one, so a change computed from them with this version is either on the current
    /// state or refused by the batch as stale — never written on a mixed base.
    #[tracing::instrument(skip(self))]
    pub async fn load_student_state(
        &self,
        student: UserId,
    ) -> anyhow::Result<(StudentProgress, i64)> {
        let mut p = StudentProgress::new(student);
        let mut version = 0;
        on_pool!(self, pool => {
            // One connection for the six reads: a loaded pool is waited for once, not six times.
            let mut conn = pool.acquire().await?;
            if let Some(r) = sqlx::query("SELECT version FROM student_stats WHERE student_id = $1")
                .bind(student.0)
                .fetch_optional(&mut *conn)
                .await?
            {
                version = r.try_get("version")?;
            }
            let rows = sqlx::query(
                "SELECT exercise_id, attempts, failed_attempts, best_score, passed,
                        first_passed_at, last_attempt_at
                 FROM progress WHERE student_id = $1",
            )
            .bind(student.0)
            .fetch_all(&mut *conn)
            .await?;
            for r in rows {
                p.exercises
                    .insert(ExerciseId(r.try_get("exercise_id")?), exercise_progress(&r)?);
            }
            if let Some(r) = sqlx::query(
                "SELECT xp, current_streak, longest_streak, last_pass_day
                 FROM student_stats WHERE student_id = $1",
            )
            .bind(student.0)
            .fetch_optional(&mut *conn)
            .await?
            {
                p.xp = r.try_get("xp")?;
                p.streak = Streak {
                    current: r.try_get("current_streak")?,
                    longest: r.try_get("longest_streak")?,
                    last_pass_day: r.try_get("last_pass_day")?,
                };
            }
            for r in sqlx::query("SELECT badge FROM student_badges WHERE student_id = $1")
                .bind(student.0)
                .fetch_all(&mut *conn)
                .await?
            {
                let code: String = r.try_get("badge")?;
                p.badges.extend(Badge::from_code(&code));
            }
            for r in sqlx::query("SELECT achievement FROM student_achievements WHERE student_id = $1")
                .bind(student.0)
                .fetch_all(&mut *conn)
                .await?
            {
                let code: String = r.try_get("achievement")?;
                p.achievements.extend(Achievement::from_code(&code));
            }
            for r in sqlx::query("SELECT hint_id FROM hint_uses WHERE student_id = $1")
                .bind(student.0)
                .fetch_all(&mut *conn)
                .await?
            {
                p.hints_used.insert(HintId(r.try_get("hint_id")?));
            }
        });
        Ok((p, version))
    }

    /// Per-student progress of every student enrolled in a class (for its `ClassroomActor`).
    pub async fn classroom_progress(
        &self,
        classroom: ClassroomId,
    ) -> anyhow::Result<Vec<(UserId, ExerciseId, ExerciseProgress)>> {
        let mut out = Vec::new();
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT p.student_id, p.exercise_id, p.attempts, p.failed_attempts, p.best_score,
                        p.passed, p.first_passed_at, p.last_attempt_at
                 FROM progress p
                 JOIN enrollments e ON e.student_id = p.student_id AND e.classroom_id = $1",
            )
            .bind(classroom.0)
            .fetch_all(pool)
            .await?;
            for r in rows {
                out.push((
                    UserId(r.try_get("student_id")?),
                    ExerciseId(r.try_get("exercise_id")?),
                    exercise_progress(&r)?,
                ));
            }
        });
        Ok(out)
    }

    /// The teacher of a class, or `None` if there is no such class.
    pub async fn classroom_teacher(
        &self,
        classroom: ClassroomId,
    ) -> anyhow::Result<Option<UserId>> {
        let teacher: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT teacher_id FROM classrooms WHERE id = $1")
                .bind(classroom.0)
                .fetch_optional(pool)
                .await?
        });
        Ok(teacher.map(UserId))
    }

    /// XP and leaderboard opt-out of each student of a class.
    pub async fn classroom_member_stats(
        &self,
        classroom: ClassroomId,
    ) -> anyhow::Result<HashMap<UserId, (i64, bool)>> {
        let mut out = HashMap::new();
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT e.student_id, COALESCE(s.xp, 0) AS xp, u.leaderboard_opt_out
                 FROM enrollments e
                 JOIN users u ON u.id = e.student_id
                 LEFT JOIN student_stats s ON s.student_id = e.student_id
                 WHERE e.classroom_id = $1",
            )
            .bind(classroom.0)
            .fetch_all(pool)
            .await?;
            for r in rows {
                out.insert(
                    UserId(r.try_get("student_id")?),
                    (r.try_get::<i64, _>("xp")?, r.try_get::<bool, _>("leaderboard_opt_out")?),
                );
            }
        });
        Ok(out)
    }
}
