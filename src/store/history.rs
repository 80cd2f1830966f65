//! Reads of stored attempts for people (a student's own, a teacher's drill-down) and the class
//! figures of the CSV export. Not on the hot path: these read the database directly.

use sqlx::Row;

use super::{Store, on_pool};
use crate::domain::ids::{ClassroomId, ExerciseId, UserId};

/// One stored attempt as a person reads it.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub attempt_id: String,
    pub exercise_id: ExerciseId,
    pub passed: bool,
    pub score: i32,
    pub code: String,
    pub duration_ms: Option<i64>,
    pub created_at: i64,
}

/// The most attempts one read returns (newest first).
pub const ATTEMPTS_LIMIT: i64 = 500;

impl Store {
    /// A student's attempts, newest first, on one exercise or all.
    pub async fn student_attempts(
        &self,
        student: UserId,
        exercise: Option<ExerciseId>,
    ) -> anyhow::Result<Vec<AttemptRecord>> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT attempt_id, exercise_id, passed, score, code, duration_ms, created_at
                 FROM attempts
                 WHERE student_id = $1 AND ($2 IS NULL OR exercise_id = $2)
                 ORDER BY created_at DESC, id DESC
                 LIMIT $3",
            )
            .bind(student.0)
            .bind(exercise.map(|e| e.0))
            .bind(ATTEMPTS_LIMIT)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(AttemptRecord {
                        attempt_id: r.try_get("attempt_id")?,
                        exercise_id: ExerciseId(r.try_get("exercise_id")?),
                        passed: r.try_get("passed")?,
                        score: r.try_get("score")?,
                        code: r.try_get("code")?,
                        duration_ms: r.try_get("duration_ms")?,
                        created_at: r.try_get("created_at")?,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })
    }

    /// Each enrolled student's XP (0 for a student who has none yet).
    pub async fn classroom_xp(&self, classroom: ClassroomId) -> anyhow::Result<Vec<(UserId, i64)>> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT e.student_id, COALESCE(s.xp, 0) AS xp
                 FROM enrollments e
                 LEFT JOIN student_stats s ON s.student_id = e.student_id
                 WHERE e.classroom_id = $1",
            )
            .bind(classroom.0)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| Ok((UserId(r.try_get("student_id")?), r.try_get::<i64, _>("xp")?)))
                .collect::<anyhow::Result<Vec<_>>>()
        })
    }
}
