//! Chapter assignments of a class, with their due dates.

use sqlx::Row;

use super::{Store, on_pool};
use crate::domain::ids::{ChapterId, ClassroomId, UserId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentRecord {
    pub classroom_id: ClassroomId,
    pub chapter_slug: String,
    pub due_at: Option<i64>,
    pub assigned_at: i64,
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

const ASSIGNMENT_SELECT: &str = "SELECT a.classroom_id, ch.slug, a.due_at, a.assigned_at \
     FROM chapter_assignments a JOIN chapters ch ON ch.id = a.chapter_id";
/// Soonest due first, undated ones last.
const ASSIGNMENT_ORDER: &str = "ORDER BY a.due_at IS NULL, a.due_at, a.assigned_at, ch.slug";

impl Store {
    /// A class's assigned chapters: soonest due first, undated ones last.
    pub async fn assignments(
        &self,
        classroom: ClassroomId,
    ) -> anyhow::Result<Vec<AssignmentRecord>> {
        on_pool!(self, pool => {
            // Built from constants only; the values are bound.
            let sql = format!("{ASSIGNMENT_SELECT} WHERE a.classroom_id = $1 {ASSIGNMENT_ORDER}");
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(classroom.0).fetch_all(pool).await?;
            let out: Result<Vec<_>, sqlx::Error> =
                rows.iter().map(|r| Ok(assignment_from_row!(r))).collect();
            Ok(out?)
        })
    }

    /// The assignments of every class a student is in.
    pub async fn student_assignments(
        &self,
        student: UserId,
    ) -> anyhow::Result<Vec<AssignmentRecord>> {
        on_pool!(self, pool => {
            let sql = format!(
                "{ASSIGNMENT_SELECT} WHERE a.classroom_id IN \
                 (SELECT classroom_id FROM enrollments WHERE student_id = $1) {ASSIGNMENT_ORDER}"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(student.0).fetch_all(pool).await?;
            let out: Result<Vec<_>, sqlx::Error> =
                rows.iter().map(|r| Ok(assignment_from_row!(r))).collect();
            Ok(out?)
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
        self.views_changed();
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
        if n > 0 {
            self.views_changed();
        }
        Ok(n == 1)
    }
}
