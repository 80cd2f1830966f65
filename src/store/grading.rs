//! Trusted grading's reads and writes: a resent attempt's stored answer (read only when a resend
//! is refused before the actor), the class setting that restricts the leaderboard to
//! server-checked XP, and who checked the attempts behind a class's progress grid.

use std::collections::HashMap;

use sqlx::Row;

use super::{Store, on_pool};
use crate::domain::ids::{ClassroomId, ExerciseId, UserId};

/// How the attempts of one student on one exercise were checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckedCounts {
    pub server: i64,
    pub browser: i64,
}

impl Store {
    /// The student and the stored answer (JSON) of an attempt id, if it is stored.
    pub async fn stored_outcome(
        &self,
        attempt_id: &str,
    ) -> anyhow::Result<Option<(UserId, String)>> {
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT student_id, outcome FROM attempts WHERE attempt_id = $1")
                .bind(attempt_id)
                .fetch_optional(pool)
                .await?;
            Ok(match row {
                Some(r) => Some((UserId(r.try_get("student_id")?), r.try_get("outcome")?)),
                None => None,
            })
        })
    }

    /// Whether the class ranks its leaderboard by server-checked XP only.
    pub async fn leaderboard_server_checked_only(&self, id: ClassroomId) -> anyhow::Result<bool> {
        on_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT leaderboard_server_checked_only FROM classrooms WHERE id = $1",
            )
            .bind(id.0)
            .fetch_optional(pool)
            .await?;
            Ok(match row {
                Some(r) => r.try_get("leaderboard_server_checked_only")?,
                None => false,
            })
        })
    }

    pub async fn set_leaderboard_server_checked_only(
        &self,
        id: ClassroomId,
        on: bool,
    ) -> anyhow::Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE classrooms SET leaderboard_server_checked_only = $2 WHERE id = $1")
                .bind(id.0)
                .bind(on)
                .execute(pool)
                .await?;
        });
        self.views_changed();
        Ok(())
    }

    /// Each member's XP earned by server-checked attempts (members with none are absent).
    pub async fn server_checked_xp(&self, id: ClassroomId) -> anyhow::Result<HashMap<UserId, i64>> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT a.student_id, CAST(SUM(a.xp_awarded) AS BIGINT) AS xp
                 FROM enrollments e JOIN attempts a ON a.student_id = e.student_id
                 WHERE e.classroom_id = $1 AND a.checked_by = 'server'
                 GROUP BY a.student_id",
            )
            .bind(id.0)
            .fetch_all(pool)
            .await?;
            let mut out = HashMap::with_capacity(rows.len());
            for r in rows {
                out.insert(UserId(r.try_get("student_id")?), r.try_get::<i64, _>("xp")?);
            }
            Ok(out)
        })
    }

    /// Per (member, exercise): how many attempts the server checked and how many the browser.
    pub async fn classroom_checked_by(
        &self,
        id: ClassroomId,
    ) -> anyhow::Result<HashMap<(UserId, ExerciseId), CheckedCounts>> {
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT a.student_id, a.exercise_id,
                        CAST(SUM(CASE WHEN a.checked_by = 'server' THEN 1 ELSE 0 END) AS BIGINT) AS server,
                        CAST(SUM(CASE WHEN a.checked_by = 'server' THEN 0 ELSE 1 END) AS BIGINT) AS browser
                 FROM enrollments e JOIN attempts a ON a.student_id = e.student_id
                 WHERE e.classroom_id = $1
                 GROUP BY a.student_id, a.exercise_id",
            )
            .bind(id.0)
            .fetch_all(pool)
            .await?;
            let mut out = HashMap::with_capacity(rows.len());
            for r in rows {
                out.insert(
                    (UserId(r.try_get("student_id")?), ExerciseId(r.try_get("exercise_id")?)),
                    CheckedCounts {
                        server: r.try_get("server")?,
                        browser: r.try_get("browser")?,
                    },
                );
            }
            Ok(out)
        })
    }
}
