//! Syncs the catalogue files to the database: keyed by slug, so a course, chapter or exercise keeps
//! its id across restarts and edits; whatever is no longer in the files is kept but marked
//! inactive (attempts still refer to it).

use sqlx::Row;

use super::{Pool, Store, in_transaction};
use crate::domain::catalogue::{CatalogueIds, CourseSpec};
use crate::domain::ids::{ChapterId, CourseId, ExerciseId, HintId};

/// Advisory lock key: instances starting together sync one after the other.
const SYNC_LOCK_KEY: i64 = 0x006e_7369_5f63_6174; // "nsi_cat"

impl Store {
    #[tracing::instrument(skip_all, fields(courses = specs.len()))]
    pub async fn sync_catalogue(&self, specs: &[CourseSpec]) -> anyhow::Result<CatalogueIds> {
        let ids = in_transaction!(self, tx => {
            if matches!(self.pool, Pool::Postgres(_)) {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(SYNC_LOCK_KEY)
                    .execute(&mut *tx)
                    .await?;
            }
            for table in [
                "UPDATE courses SET active = FALSE",
                "UPDATE chapters SET active = FALSE",
                "UPDATE exercises SET active = FALSE",
                "UPDATE hints SET active = FALSE",
            ] {
                sqlx::query(table).execute(&mut *tx).await?;
            }
            let mut ids = CatalogueIds::default();
            for course in specs {
                let course_id: i64 = sqlx::query(
                    "INSERT INTO courses (slug, title, level, description, position, active)
                     VALUES ($1, $2, $3, $4, $5, TRUE)
                     ON CONFLICT (slug) DO UPDATE SET title = excluded.title,
                        level = excluded.level, description = excluded.description,
                        position = excluded.position, active = TRUE
                     RETURNING id",
                )
                .bind(&course.slug)
                .bind(&course.file.title)
                .bind(course.file.level.as_str())
                .bind(&course.file.description)
                .bind(course.position)
                .fetch_one(&mut *tx)
                .await?
                .try_get("id")?;
                ids.courses.insert(course.slug.clone(), CourseId(course_id));
                for chapter in &course.chapters {
                    let chapter_id: i64 = sqlx::query(
                        "INSERT INTO chapters (course_id, slug, title, description, position, active)
                         VALUES ($1, $2, $3, $4, $5, TRUE)
                         ON CONFLICT (slug) DO UPDATE SET course_id = excluded.course_id,
                            title = excluded.title, description = excluded.description,
                            position = excluded.position, active = TRUE
                         RETURNING id",
                    )
                    .bind(course_id)
                    .bind(&chapter.slug)
                    .bind(&chapter.file.title)
                    .bind(&chapter.file.description)
                    .bind(chapter.position)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("id")?;
                    ids.chapters.insert(chapter.slug.clone(), ChapterId(chapter_id));
                    sqlx::query("DELETE FROM content_blocks WHERE chapter_id = $1")
                        .bind(chapter_id)
                        .execute(&mut *tx)
                        .await?;
                    for (i, block) in chapter.file.blocks.iter().enumerate() {
                        sqlx::query(
                            "INSERT INTO content_blocks (chapter_id, position, kind, language, body)
                             VALUES ($1, $2, $3, $4, $5)",
                        )
                        .bind(chapter_id)
                        .bind(i as i32 + 1)
                        .bind(block.kind.as_str())
                        .bind(block.language.as_deref())
                        .bind(&block.body)
                        .execute(&mut *tx)
                        .await?;
                    }
                    for exercise in &chapter.exercises {
                        let f = &exercise.file;
                        let exercise_id: i64 = sqlx::query(
                            "INSERT INTO exercises
                                (chapter_id, slug, title, kind, xp_reward, difficulty, position, active)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, TRUE)
                             ON CONFLICT (slug) DO UPDATE SET chapter_id = excluded.chapter_id,
                                title = excluded.title, kind = excluded.kind,
                                xp_reward = excluded.xp_reward, difficulty = excluded.difficulty,
                                position = excluded.position, active = TRUE
                             RETURNING id",
                        )
                        .bind(chapter_id)
                        .bind(&exercise.slug)
                        .bind(&f.title)
                        .bind(f.kind.as_str())
                        .bind(f.xp_reward)
                        .bind(f.difficulty)
                        .bind(exercise.position)
                        .fetch_one(&mut *tx)
                        .await?
                        .try_get("id")?;
                        ids.exercises.insert(exercise.slug.clone(), ExerciseId(exercise_id));
                        for (i, hint) in f.hints.iter().enumerate() {
                            let position = i as i32 + 1;
                            let hint_id: i64 = sqlx::query(
                                "INSERT INTO hints (exercise_id, position, body, xp_cost, active)
                                 VALUES ($1, $2, $3, $4, TRUE)
                                 ON CONFLICT (exercise_id, position) DO UPDATE SET
                                    body = excluded.body, xp_cost = excluded.xp_cost, active = TRUE
                                 RETURNING id",
                            )
                            .bind(exercise_id)
                            .bind(position)
                            .bind(&hint.text)
                            .bind(hint.xp_cost)
                            .fetch_one(&mut *tx)
                            .await?
                            .try_get("id")?;
                            ids.hints
                                .insert((exercise.slug.clone(), position), HintId(hint_id));
                        }
                    }
                }
            }
            ids
        });
        Ok(ids)
    }
}
