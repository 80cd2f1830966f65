//! What the class shows: the snapshot a dashboard starts from, and the leaderboard.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{ClassroomActor, Member};
use crate::domain::ids::{ClassroomId, ExerciseId, UserId};
use crate::domain::progress::level_for;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExerciseAggregate {
    pub exercise_id: ExerciseId,
    /// Students who made at least one attempt.
    pub tried: usize,
    pub passed: usize,
    /// Mean of the best scores of the students who tried.
    pub mean_best_score: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GridCell {
    pub student_id: UserId,
    pub exercise_id: ExerciseId,
    pub attempts: i32,
    pub failed_attempts: i32,
    pub best_score: i32,
    pub passed: bool,
    pub last_attempt_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StudentRow {
    #[serde(flatten)]
    pub member: Member,
    pub level: i64,
    pub passed_count: usize,
    /// Exercises the student was reported stuck on and has not passed since.
    pub stuck_on: Vec<ExerciseId>,
}

/// The class at one offset: what a dashboard starts from.
#[derive(Debug, Clone, Serialize)]
pub struct ClassroomSnapshot {
    pub classroom_id: ClassroomId,
    /// Identifies the class's event stream (with Redis, shared by every instance): offsets only
    /// compare within one epoch.
    pub epoch: u64,
    /// The offset of the last event folded in (0: none yet).
    pub offset: u64,
    pub students: Vec<StudentRow>,
    pub exercises: Vec<ExerciseAggregate>,
    pub grid: Vec<GridCell>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LeaderboardEntry {
    pub rank: usize,
    pub student_id: UserId,
    pub pseudonym: String,
    pub xp: i64,
    pub level: i64,
}

impl ClassroomActor {
    pub(super) fn snapshot(&self) -> ClassroomSnapshot {
        let mut aggregates: BTreeMap<ExerciseId, (usize, usize, i64)> = BTreeMap::new();
        let mut grid = Vec::new();
        for (student, exercises) in &self.progress {
            if !self.members.contains_key(student) {
                continue;
            }
            for (exercise, p) in exercises {
                let a = aggregates.entry(*exercise).or_default();
                if p.attempts > 0 {
                    a.0 += 1;
                    a.2 += i64::from(p.best_score);
                }
                if p.passed {
                    a.1 += 1;
                }
                grid.push(GridCell {
                    student_id: *student,
                    exercise_id: *exercise,
                    attempts: p.attempts,
                    failed_attempts: p.failed_attempts,
                    best_score: p.best_score,
                    passed: p.passed,
                    last_attempt_at: p.last_attempt_at,
                });
            }
        }
        grid.sort_by_key(|c| (c.student_id, c.exercise_id));
        let students = self
            .members
            .values()
            .map(|m| StudentRow {
                member: m.clone(),
                level: level_for(m.xp),
                passed_count: self
                    .progress
                    .get(&m.student_id)
                    .map(|e| e.values().filter(|p| p.passed).count())
                    .unwrap_or(0),
                stuck_on: self
                    .stuck
                    .get(&m.student_id)
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default(),
            })
            .collect();
        ClassroomSnapshot {
            classroom_id: self.id,
            epoch: self.epoch,
            offset: self.next_offset - 1,
            students,
            exercises: aggregates
                .into_iter()
                .map(|(exercise_id, (tried, passed, sum))| ExerciseAggregate {
                    exercise_id,
                    tried,
                    passed,
                    mean_best_score: if tried == 0 {
                        0.0
                    } else {
                        sum as f64 / tried as f64
                    },
                })
                .collect(),
            grid,
        }
    }

    /// Students by XP, without those who opted out (equal XP, equal rank).
    pub(super) fn leaderboard(&self) -> Vec<LeaderboardEntry> {
        let mut visible: Vec<&Member> = self
            .members
            .values()
            .filter(|m| !m.leaderboard_opt_out)
            .collect();
        visible.sort_by(|a, b| b.xp.cmp(&a.xp).then_with(|| a.pseudonym.cmp(&b.pseudonym)));
        let mut entries = Vec::with_capacity(visible.len());
        for (i, m) in visible.iter().enumerate() {
            // Equal XP, equal rank ("1, 2, 2, 4").
            let rank = match entries.last() {
                Some(LeaderboardEntry { xp, rank, .. }) if *xp == m.xp => *rank,
                _ => i + 1,
            };
            entries.push(LeaderboardEntry {
                rank,
                student_id: m.student_id,
                pseudonym: m.pseudonym.clone(),
                xp: m.xp,
                level: level_for(m.xp),
            });
        }
        entries
    }
}
