//! The writer's group commit: a batch of attempts and hint reveals written in one transaction,
//! with one multi-row statement per table (UNNEST on PostgreSQL, chunked VALUES on SQLite).

use std::collections::{HashMap, HashSet};

use sqlx::{QueryBuilder, Row};

use super::progress::{AttemptRow, BatchReport, ItemResult, StatsRow, WriteItem};
use super::{Pool, Store};
use crate::domain::ids::{ExerciseId, UserId};

/// SQLite allows 32766 bound values per statement; stay far below it.
const SQLITE_ROWS_PER_STATEMENT: usize = 200;

const PROGRESS_UPSERT_TAIL: &str = " ON CONFLICT (student_id, exercise_id) DO UPDATE SET
    attempts = excluded.attempts, failed_attempts = excluded.failed_attempts,
    best_score = excluded.best_score, passed = excluded.passed,
    first_passed_at = excluded.first_passed_at, last_attempt_at = excluded.last_attempt_at";

const STATS_UPSERT_TAIL: &str = " ON CONFLICT (student_id) DO UPDATE SET
    xp = excluded.xp, current_streak = excluded.current_streak,
    longest_streak = excluded.longest_streak, last_pass_day = excluded.last_pass_day,
    updated_at = excluded.updated_at";

/// Fetches (student, stored outcome) of the attempts that were not inserted. Rare: resends.
macro_rules! fetch_duplicates {
    ($conn:expr, $attempts:expr, $inserted:expr) => {{
        let mut found: HashMap<String, (UserId, String)> = HashMap::new();
        for a in $attempts
            .iter()
            .filter(|a| !$inserted.contains(a.attempt_id.as_str()))
        {
            if let Some(r) =
                sqlx::query("SELECT student_id, outcome FROM attempts WHERE attempt_id = $1")
                    .bind(a.attempt_id.as_str())
                    .fetch_optional(&mut *$conn)
                    .await?
            {
                found.insert(
                    a.attempt_id.to_string(),
                    (UserId(r.try_get("student_id")?), r.try_get("outcome")?),
                );
            }
        }
        found
    }};
}

/// Badges, achievements and hint uses: few rows, `ON CONFLICT DO NOTHING` (each is had once).
macro_rules! write_awards {
    ($conn:expr, $items:expr, $now:expr) => {{
        let mut rows: u64 = 0;
        let mut badges: Vec<(i64, &'static str)> = Vec::new();
        let mut achievements: Vec<(i64, &'static str, i64)> = Vec::new();
        let mut hints: Vec<(i64, i64, i64, i64)> = Vec::new();
        for item in $items.iter() {
            match item {
                WriteItem::Attempt(a) => {
                    badges.extend(a.new_badges.iter().map(|b| (a.student_id.0, b.code())));
                    achievements.extend(
                        a.new_achievements
                            .iter()
                            .map(|x| (a.student_id.0, x.code(), x.xp_bonus())),
                    );
                }
                WriteItem::Hint(h) => {
                    hints.push((h.student_id.0, h.hint_id.0, h.xp_spent, h.created_at))
                }
            }
        }
        for chunk in badges.chunks(SQLITE_ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::new("INSERT INTO student_badges (student_id, badge, awarded_at) ");
            qb.push_values(chunk, |mut b, (student, badge)| {
                b.push_bind(*student).push_bind(*badge).push_bind($now);
            });
            qb.push(" ON CONFLICT (student_id, badge) DO NOTHING");
            rows += qb.build().execute(&mut *$conn).await?.rows_affected();
        }
        for chunk in achievements.chunks(SQLITE_ROWS_PER_STATEMENT) {
            let mut qb = QueryBuilder::new(
                "INSERT INTO student_achievements (student_id, achievement, xp_awarded, unlocked_at) ",
            );
            qb.push_values(chunk, |mut b, (student, code, xp)| {
                b.push_bind(*student).push_bind(*code).push_bind(*xp as i32).push_bind($now);
            });
            qb.push(" ON CONFLICT (student_id, achievement) DO NOTHING");
            rows += qb.build().execute(&mut *$conn).await?.rows_affected();
        }
        for chunk in hints.chunks(SQLITE_ROWS_PER_STATEMENT) {
            let mut qb =
                QueryBuilder::new("INSERT INTO hint_uses (student_id, hint_id, xp_spent, created_at) ");
            qb.push_values(chunk, |mut b, (student, hint, spent, at)| {
                b.push_bind(*student).push_bind(*hint).push_bind(*spent as i32).push_bind(*at);
            });
            qb.push(" ON CONFLICT (student_id, hint_id) DO NOTHING");
            rows += qb.build().execute(&mut *$conn).await?.rows_affected();
        }
        rows
    }};
}

/// The version check (see `StatsRow::version`): bumps the version of each given student whose
/// stored version is still the one their change was computed from (a student without a stats
/// row is at version 0), and returns those students. One row per student per statement.
macro_rules! check_versions {
    ($conn:expr, $rows:expr, $now:expr) => {{
        let mut fresh: HashSet<i64> = HashSet::new();
        for chunk in $rows.chunks(SQLITE_ROWS_PER_STATEMENT) {
            let mut qb =
                QueryBuilder::new("INSERT INTO student_stats (student_id, version, updated_at) ");
            qb.push_values(chunk, |mut b, s: &StatsRow| {
                b.push_bind(s.student_id.0)
                    .push_bind(s.version + 1)
                    .push_bind($now);
            });
            qb.push(VERSION_CHECK_TAIL);
            for r in qb.build().fetch_all(&mut *$conn).await? {
                fresh.insert(r.try_get::<i64, _>("student_id")?);
            }
        }
        fresh
    }};
}

const VERSION_CHECK_TAIL: &str = " ON CONFLICT (student_id) DO UPDATE SET
    version = excluded.version, updated_at = excluded.updated_at
    WHERE student_stats.version = excluded.version - 1
    RETURNING student_id";

impl Store {
    /// Writes a batch in one transaction. First each item's student is checked to be still at
    /// the version the item was computed from (`StatsRow::version`; one item per student is
    /// checked, later ones of the same student in the batch are stale): a stale item writes
    /// nothing and comes back `Stale` (or `Duplicate` if its attempt was stored before). Then
    /// attempts go with `ON CONFLICT (attempt_id) DO NOTHING`: an attempt already stored makes
    /// its item a `Duplicate` and nothing else of that item is written. Either the whole batch
    /// commits or nothing of it does.
    #[tracing::instrument(skip_all, fields(items = items.len()))]
    pub async fn write_batch(
        &self,
        items: &[WriteItem],
    ) -> anyhow::Result<(Vec<ItemResult>, BatchReport)> {
        let now = crate::domain::time::now_ms();
        // One row per attempt id: a later copy in the same batch (another student reusing a
        // UUID) is a duplicate of the first, whatever order the database would insert them in.
        let first = FirstCopies::of(items);
        let attempts: Vec<(usize, &AttemptRow)> = items
            .iter()
            .enumerate()
            .filter_map(|(index, item)| match item {
                WriteItem::Attempt(a) if first.is_first(index, a) => Some((index, &**a)),
                _ => None,
            })
            .collect();
        // The item checked for each student: the first of the batch.
        let mut checked: HashMap<UserId, usize> = HashMap::new();
        for (index, item) in items.iter().enumerate() {
            checked.entry(item.stats().student_id).or_insert(index);
        }
        let versions: Vec<StatsRow> = {
            let mut firsts: Vec<usize> = checked.values().copied().collect();
            firsts.sort_unstable();
            firsts.iter().map(|&i| items[i].stats()).collect()
        };
        let stale_given = |fresh: &HashSet<i64>| -> HashSet<usize> {
            items
                .iter()
                .enumerate()
                .filter(|(index, item)| {
                    let s = item.stats().student_id;
                    checked.get(&s) != Some(index) || !fresh.contains(&s.0)
                })
                .map(|(index, _)| index)
                .collect()
        };
        let mut report = BatchReport::default();

        let (inserted, duplicates, stale) = match &self.pool {
            Pool::Postgres(pool) => {
                let acquiring = std::time::Instant::now();
                let mut tx = pool.begin().await?;
                report.acquire = acquiring.elapsed();
                let stale = stale_given(&check_versions!(&mut *tx, versions, now));
                let to_insert = not_stale(&attempts, &stale);
                let inserted = pg::insert_attempts(&mut tx, &to_insert).await?;
                let duplicates = fetch_duplicates!(&mut *tx, attempts_of(&attempts), &inserted);
                let effective = first.effective_items(items, &inserted, &stale);
                report.rows += inserted.len() as u64;
                report.rows += pg::upsert_progress(&mut tx, &effective).await?;
                report.rows += pg::upsert_stats(&mut tx, &effective, now).await?;
                report.rows += write_awards!(&mut *tx, &effective, now);
                tx.commit().await?;
                (inserted, duplicates, stale)
            }
            Pool::Sqlite(pool) => {
                let acquiring = std::time::Instant::now();
                let mut tx = pool.begin().await?;
                report.acquire = acquiring.elapsed();
                let stale = stale_given(&check_versions!(&mut *tx, versions, now));
                let to_insert = not_stale(&attempts, &stale);
                let inserted = sqlite::insert_attempts(&mut tx, &to_insert).await?;
                let duplicates = fetch_duplicates!(&mut *tx, attempts_of(&attempts), &inserted);
                let effective = first.effective_items(items, &inserted, &stale);
                report.rows += inserted.len() as u64;
                report.rows += sqlite::upsert_progress(&mut tx, &effective).await?;
                report.rows += sqlite::upsert_stats(&mut tx, &effective, now).await?;
                report.rows += write_awards!(&mut *tx, &effective, now);
                tx.commit().await?;
                (inserted, duplicates, stale)
            }
        };

        let results = items
            .iter()
            .enumerate()
            .map(|(index, item)| match item {
                WriteItem::Hint(_) if stale.contains(&index) => ItemResult::Stale,
                WriteItem::Hint(_) => ItemResult::Written,
                WriteItem::Attempt(a) if first.is_written(index, a, &inserted) => {
                    ItemResult::Written
                }
                // Stored before this batch: its owner and the answer stored with it.
                WriteItem::Attempt(a) => match duplicates.get(a.attempt_id.as_str()) {
                    Some((student_id, outcome)) => ItemResult::Duplicate {
                        student_id: *student_id,
                        outcome: outcome.clone(),
                    },
                    // A later copy of an id this batch wrote: the first copy's owner and answer.
                    None if inserted.contains(a.attempt_id.as_str()) => {
                        let original = first.copy_of(items, a);
                        ItemResult::Duplicate {
                            student_id: original.student_id,
                            outcome: original.outcome.clone(),
                        }
                    }
                    // Not written because it (or the first copy of its id) was stale.
                    None if stale.contains(&index) || first.first_is_in(a, &stale) => {
                        ItemResult::Stale
                    }
                    // Neither inserted nor found (cannot happen while attempts are never
                    // deleted): an empty outcome, which the actor answers as a conflict.
                    None => ItemResult::Duplicate {
                        student_id: a.student_id,
                        outcome: String::new(),
                    },
                },
            })
            .collect();
        Ok((results, report))
    }
}

/// The attempts whose item the version check did not find stale: those to insert.
fn not_stale<'a>(
    indexed: &[(usize, &'a AttemptRow)],
    stale: &HashSet<usize>,
) -> Vec<&'a AttemptRow> {
    indexed
        .iter()
        .filter(|(index, _)| !stale.contains(index))
        .map(|(_, attempt)| *attempt)
        .collect()
}

fn attempts_of<'a>(indexed: &[(usize, &'a AttemptRow)]) -> Vec<&'a AttemptRow> {
    indexed.iter().map(|(_, a)| *a).collect()
}

/// Where each attempt id of a batch first appears: that copy is the one sent to the database;
/// later copies (another student reusing a UUID) are its duplicates, and nothing of theirs
/// (progress, XP) is written without their own attempt row.
struct FirstCopies<'a>(HashMap<&'a str, usize>);

impl<'a> FirstCopies<'a> {
    fn of(items: &'a [WriteItem]) -> Self {
        let mut first = HashMap::new();
        for (index, item) in items.iter().enumerate() {
            if let WriteItem::Attempt(a) = item {
                first.entry(a.attempt_id.as_str()).or_insert(index);
            }
        }
        FirstCopies(first)
    }

    fn is_first(&self, index: usize, a: &AttemptRow) -> bool {
        self.0.get(a.attempt_id.as_str()) == Some(&index)
    }

    fn is_written(&self, index: usize, a: &AttemptRow, inserted: &HashSet<String>) -> bool {
        self.is_first(index, a) && inserted.contains(a.attempt_id.as_str())
    }

    /// Whether the first copy of `a`'s id is among `indexes`.
    fn first_is_in(&self, a: &AttemptRow, indexes: &HashSet<usize>) -> bool {
        self.0
            .get(a.attempt_id.as_str())
            .is_some_and(|i| indexes.contains(i))
    }

    /// The first copy of `a`'s id (`a` itself if it is the first).
    fn copy_of<'i>(&self, items: &'i [WriteItem], a: &'i AttemptRow) -> &'i AttemptRow {
        match self.0.get(a.attempt_id.as_str()).map(|&i| &items[i]) {
            Some(WriteItem::Attempt(original)) => original,
            _ => a,
        }
    }

    /// The items whose effects are written: hints not stale, and the attempts really inserted.
    fn effective_items<'i>(
        &self,
        items: &'i [WriteItem],
        inserted: &HashSet<String>,
        stale: &HashSet<usize>,
    ) -> Vec<&'i WriteItem> {
        items
            .iter()
            .enumerate()
            .filter(|(index, item)| match item {
                WriteItem::Attempt(a) => self.is_written(*index, a, inserted),
                WriteItem::Hint(_) => !stale.contains(index),
            })
            .map(|(_, item)| item)
            .collect()
    }
}

/// One stats row per student, the last one of the batch winning (a statement may not upsert the
/// same key twice on PostgreSQL).
fn last_stats_per_student(items: &[&WriteItem]) -> Vec<StatsRow> {
    let mut by_student: HashMap<UserId, StatsRow> = HashMap::new();
    for item in items {
        let s = item.stats();
        by_student.insert(s.student_id, s);
    }
    by_student.into_values().collect()
}

/// One progress row per (student, exercise), the last one winning.
fn last_progress<'a>(items: &[&'a WriteItem]) -> Vec<&'a AttemptRow> {
    let mut by_key: HashMap<(UserId, ExerciseId), &AttemptRow> = HashMap::new();
    for item in items {
        if let WriteItem::Attempt(a) = item {
            by_key.insert((a.student_id, a.exercise_id), a);
        }
    }
    by_key.into_values().collect()
}

/// PostgreSQL: one statement per table whatever the batch size, arrays bound whole (UNNEST).
mod pg {
    use super::*;
    use sqlx::{PgConnection, Postgres, Transaction};

    pub(super) async fn insert_attempts(
        tx: &mut Transaction<'_, Postgres>,
        attempts: &[&AttemptRow],
    ) -> anyhow::Result<HashSet<String>> {
        if attempts.is_empty() {
            return Ok(HashSet::new());
        }
        let conn: &mut PgConnection = tx;
        let rows = sqlx::query(
            "INSERT INTO attempts (attempt_id, student_id, exercise_id, passed, score, code,
                                   duration_ms, created_at, outcome, checked_by, details,
                                   xp_awarded)
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bool[], $5::int[],
                                  $6::text[], $7::bigint[], $8::bigint[], $9::text[], $10::text[],
                                  $11::text[], $12::bigint[])
             ON CONFLICT (attempt_id) DO NOTHING
             RETURNING attempt_id",
        )
        .bind(
            attempts
                .iter()
                .map(|a| a.attempt_id.to_string())
                .collect::<Vec<_>>(),
        )
        .bind(attempts.iter().map(|a| a.student_id.0).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.exercise_id.0).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.passed).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.score).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.code.clone()).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.duration_ms).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.created_at).collect::<Vec<_>>())
        .bind(
            attempts
                .iter()
                .map(|a| a.outcome.clone())
                .collect::<Vec<_>>(),
        )
        .bind(attempts.iter().map(|a| a.checked_by).collect::<Vec<_>>())
        .bind(
            attempts
                .iter()
                .map(|a| a.details.clone())
                .collect::<Vec<_>>(),
        )
        .bind(attempts.iter().map(|a| a.xp_awarded).collect::<Vec<_>>())
        .fetch_all(conn)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("attempt_id")?))
            .collect()
    }

    pub(super) async fn upsert_progress(
        tx: &mut Transaction<'_, Postgres>,
        items: &[&WriteItem],
    ) -> anyhow::Result<u64> {
        let rows = last_progress(items);
        if rows.is_empty() {
            return Ok(0);
        }
        let conn: &mut PgConnection = tx;
        let sql = format!(
            "INSERT INTO progress (student_id, exercise_id, attempts, failed_attempts, best_score,
                                   passed, first_passed_at, last_attempt_at)
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::int[], $4::int[], $5::int[],
                                  $6::bool[], $7::bigint[], $8::bigint[])
             {PROGRESS_UPSERT_TAIL}"
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(rows.iter().map(|a| a.student_id.0).collect::<Vec<_>>())
            .bind(rows.iter().map(|a| a.exercise_id.0).collect::<Vec<_>>())
            .bind(rows.iter().map(|a| a.progress.attempts).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|a| a.progress.failed_attempts)
                    .collect::<Vec<_>>(),
            )
            .bind(
                rows.iter()
                    .map(|a| a.progress.best_score)
                    .collect::<Vec<_>>(),
            )
            .bind(rows.iter().map(|a| a.progress.passed).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|a| a.progress.first_passed_at)
                    .collect::<Vec<_>>(),
            )
            .bind(
                rows.iter()
                    .map(|a| a.progress.last_attempt_at)
                    .collect::<Vec<_>>(),
            )
            .execute(conn)
            .await?;
        Ok(done.rows_affected())
    }

    pub(super) async fn upsert_stats(
        tx: &mut Transaction<'_, Postgres>,
        items: &[&WriteItem],
        now: i64,
    ) -> anyhow::Result<u64> {
        let rows = last_stats_per_student(items);
        if rows.is_empty() {
            return Ok(0);
        }
        let conn: &mut PgConnection = tx;
        let sql = format!(
            "INSERT INTO student_stats (student_id, xp, current_streak, longest_streak,
                                        last_pass_day, updated_at)
             SELECT s, x, c, l, d, $6 FROM UNNEST($1::bigint[], $2::bigint[], $3::int[], $4::int[],
                                                  $5::int[]) AS t(s, x, c, l, d)
             {STATS_UPSERT_TAIL}"
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(rows.iter().map(|s| s.student_id.0).collect::<Vec<_>>())
            .bind(rows.iter().map(|s| s.xp).collect::<Vec<_>>())
            .bind(rows.iter().map(|s| s.streak.current).collect::<Vec<_>>())
            .bind(rows.iter().map(|s| s.streak.longest).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|s| s.streak.last_pass_day)
                    .collect::<Vec<_>>(),
            )
            .bind(now)
            .execute(conn)
            .await?;
        Ok(done.rows_affected())
    }
}

/// SQLite: multi-row VALUES statements, in chunks that stay under its bound-value limit.
mod sqlite {
    use super::*;
    use sqlx::{Sqlite, SqliteConnection, Transaction};

    pub(super) async fn insert_attempts(
        tx: &mut Transaction<'_, Sqlite>,
        attempts: &[&AttemptRow],
    ) -> anyhow::Result<HashSet<String>> {
        let mut inserted = HashSet::new();
        for chunk in attempts.chunks(SQLITE_ROWS_PER_STATEMENT) {
            let conn: &mut SqliteConnection = tx;
            let mut qb = QueryBuilder::new(
                "INSERT INTO attempts (attempt_id, student_id, exercise_id, passed, score, code,
                                       duration_ms, created_at, outcome, checked_by, details,
                                       xp_awarded) ",
            );
            qb.push_values(chunk, |mut b, a| {
                b.push_bind(a.attempt_id.to_string())
                    .push_bind(a.student_id.0)
                    .push_bind(a.exercise_id.0)
                    .push_bind(a.passed)
                    .push_bind(a.score)
                    .push_bind(a.code.clone())
                    .push_bind(a.duration_ms)
                    .push_bind(a.created_at)
                    .push_bind(a.outcome.clone())
                    .push_bind(a.checked_by)
                    .push_bind(a.details.clone())
                    .push_bind(a.xp_awarded);
            });
            qb.push(" ON CONFLICT (attempt_id) DO NOTHING RETURNING attempt_id");
            for r in qb.build().fetch_all(conn).await? {
                inserted.insert(r.try_get::<String, _>("attempt_id")?);
            }
        }
        Ok(inserted)
    }

    pub(super) async fn upsert_progress(
        tx: &mut Transaction<'_, Sqlite>,
        items: &[&WriteItem],
    ) -> anyhow::Result<u64> {
        let rows = last_progress(items);
        let mut affected = 0;
        for chunk in rows.chunks(SQLITE_ROWS_PER_STATEMENT) {
            let conn: &mut SqliteConnection = tx;
            let mut qb = QueryBuilder::new(
                "INSERT INTO progress (student_id, exercise_id, attempts, failed_attempts,
                                       best_score, passed, first_passed_at, last_attempt_at) ",
            );
            qb.push_values(chunk, |mut b, a| {
                b.push_bind(a.student_id.0)
                    .push_bind(a.exercise_id.0)
                    .push_bind(a.progress.attempts)
                    .push_bind(a.progress.failed_attempts)
                    .push_bind(a.progress.best_score)
                    .push_bind(a.progress.passed)
                    .push_bind(a.progress.first_passed_at)
                    .push_bind(a.progress.last_attempt_at);
            });
            qb.push(PROGRESS_UPSERT_TAIL);
            affected += qb.build().execute(conn).await?.rows_affected();
        }
        Ok(affected)
    }

    pub(super) async fn upsert_stats(
        tx: &mut Transaction<'_, Sqlite>,
        items: &[&WriteItem],
        now: i64,
    ) -> anyhow::Result<u64> {
        let rows = last_stats_per_student(items);
        let mut affected = 0;
        for chunk in rows.chunks(SQLITE_ROWS_PER_STATEMENT) {
            let conn: &mut SqliteConnection = tx;
            let mut qb = QueryBuilder::new(
                "INSERT INTO student_stats (student_id, xp, current_streak, longest_streak,
                                            last_pass_day, updated_at) ",
            );
            qb.push_values(chunk, |mut b, s| {
                b.push_bind(s.student_id.0)
                    .push_bind(s.xp)
                    .push_bind(s.streak.current)
                    .push_bind(s.streak.longest)
                    .push_bind(s.streak.last_pass_day)
                    .push_bind(now);
            });
            qb.push(STATS_UPSERT_TAIL);
            affected += qb.build().execute(conn).await?.rows_affected();
        }
        Ok(affected)
    }
}
