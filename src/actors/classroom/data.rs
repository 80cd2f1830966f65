//! The class's roster and progress: loaded from the database, replaced by a reload, and changed
//! by each event folded in.

use std::time::Duration;

use serde::Serialize;

use super::ClassroomActor;
use crate::actors::registry::LoadTimedOut;
use crate::bus::{ClassEvent, Presence};
use crate::domain::ids::{ClassroomId, ExerciseId, UserId};
use crate::domain::progress::ExerciseProgress;
use crate::store::Store;

/// One student of the class as the dashboard shows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    pub student_id: UserId,
    pub pseudonym: String,
    pub joined_at: i64,
    pub xp: i64,
    #[serde(skip)]
    pub leaderboard_opt_out: bool,
    /// The exercise they are on: the one a tab shows, else the one of their last attempt.
    pub current_exercise_id: Option<ExerciseId>,
    pub last_attempt_at: Option<i64>,
    /// At least one socket open (on the instances this actor hears from).
    pub online: bool,
    pub running_tests: bool,
}

impl Member {
    fn apply_presence(&mut self, p: &Presence) {
        self.online = p.online;
        self.running_tests = p.running_tests;
        if p.exercise_id.is_some() {
            self.current_exercise_id = p.exercise_id;
        }
    }
}

/// What the actor loads from the database.
#[derive(Debug, Clone)]
pub struct ClassroomData {
    pub teacher_id: UserId,
    pub members: Vec<Member>,
    pub progress: Vec<(UserId, ExerciseId, ExerciseProgress)>,
}

impl ClassroomData {
    pub async fn load(store: &Store, id: ClassroomId) -> anyhow::Result<Option<ClassroomData>> {
        let Some(teacher_id) = store.classroom_teacher(id).await? else {
            return Ok(None);
        };
        let stats = store.classroom_member_stats(id).await?;
        let members = store
            .classroom_roster(id)
            .await?
            .into_iter()
            .map(|r| {
                let (xp, opt_out) = stats.get(&r.student_id).copied().unwrap_or((0, false));
                Member {
                    student_id: r.student_id,
                    pseudonym: r.pseudonym,
                    joined_at: r.joined_at,
                    xp,
                    leaderboard_opt_out: opt_out,
                    current_exercise_id: None,
                    last_attempt_at: None,
                    online: false,
                    running_tests: false,
                }
            })
            .collect();
        let progress = store.classroom_progress(id).await?;
        Ok(Some(ClassroomData {
            teacher_id,
            members,
            progress,
        }))
    }

    /// `load`, given up after `limit` (an error, as a database error is).
    pub async fn load_within(
        store: &Store,
        id: ClassroomId,
        limit: Duration,
    ) -> anyhow::Result<Option<ClassroomData>> {
        tokio::time::timeout(limit, Self::load(store, id))
            .await
            .map_err(|_| LoadTimedOut)?
    }
}

impl ClassroomActor {
    /// Replaces the roster and progress with freshly loaded ones; answers who joined and who left.
    pub(super) fn replace_data(&mut self, data: ClassroomData) -> (Vec<Member>, Vec<UserId>) {
        self.teacher_id = data.teacher_id;
        let previous = std::mem::take(&mut self.members);
        let registry = self.registry.upgrade();
        self.members = data
            .members
            .into_iter()
            .map(|mut m| {
                if let Some(old) = previous.get(&m.student_id) {
                    m.current_exercise_id = old.current_exercise_id;
                    m.last_attempt_at = old.last_attempt_at;
                    m.online = old.online;
                    m.running_tests = old.running_tests;
                }
                // Students who connected before this actor started (or joined while online).
                if let Some(p) = registry.as_ref().and_then(|r| r.presence(m.student_id)) {
                    m.apply_presence(&p);
                }
                (m.student_id, m)
            })
            .collect();
        let joined = self
            .members
            .values()
            .filter(|m| !previous.contains_key(&m.student_id))
            .cloned()
            .collect();
        let left = previous
            .keys()
            .filter(|id| !self.members.contains_key(id))
            .copied()
            .collect();
        self.stuck.retain(|id, _| self.members.contains_key(id));
        self.progress.clear();
        for (student, exercise, p) in data.progress {
            self.progress
                .entry(student)
                .or_default()
                .insert(exercise, p);
        }
        (joined, left)
    }

    pub(super) fn fold(&mut self, event: &ClassEvent) {
        // A student not in the roster (removed, or joined and the roster is reloading: then the
        // event is folded again after the reload) changes nothing.
        let student = event.student_id();
        if let ClassEvent::StudentJoined {
            student_id,
            pseudonym,
            joined_at,
            xp,
        } = event
        {
            let presence = self
                .registry
                .upgrade()
                .and_then(|r| r.presence(*student_id));
            let member = self.members.entry(*student_id).or_insert_with(|| Member {
                student_id: *student_id,
                pseudonym: pseudonym.clone(),
                joined_at: *joined_at,
                xp: *xp,
                leaderboard_opt_out: false,
                current_exercise_id: None,
                last_attempt_at: None,
                online: false,
                running_tests: false,
            });
            if let Some(p) = presence {
                member.apply_presence(&p);
            }
            return;
        }
        if !self.members.contains_key(&student) {
            return;
        }
        match event {
            ClassEvent::AttemptRecorded {
                student_id,
                exercise_id,
                progress,
                xp,
                at,
                ..
            } => {
                let cell = self
                    .progress
                    .entry(*student_id)
                    .or_default()
                    .entry(*exercise_id)
                    .or_default();
                // Absolute values: an older event arriving late must not undo a newer one.
                if progress.attempts >= cell.attempts {
                    *cell = progress.clone();
                }
                if let Some(m) = self.members.get_mut(student_id) {
                    m.xp = m.xp.max(*xp);
                    if m.last_attempt_at.is_none_or(|t| *at >= t) {
                        m.last_attempt_at = Some(*at);
                        m.current_exercise_id = Some(*exercise_id);
                    }
                }
            }
            ClassEvent::XpChanged { student_id, xp } => {
                if let Some(m) = self.members.get_mut(student_id) {
                    m.xp = *xp;
                }
            }
            ClassEvent::PresenceChanged { presence, .. } => {
                if let Some(m) = self.members.get_mut(&student) {
                    m.apply_presence(presence);
                }
            }
            ClassEvent::StudentStuck { exercise_id, .. } => {
                let passed = self
                    .progress
                    .get(&student)
                    .and_then(|e| e.get(exercise_id))
                    .is_some_and(|p| p.passed);
                if !passed {
                    self.stuck.entry(student).or_default().insert(*exercise_id);
                }
            }
            ClassEvent::StudentLeft { .. } => {
                self.members.remove(&student);
                self.progress.remove(&student);
                self.stuck.remove(&student);
            }
            ClassEvent::BadgeAwarded { .. }
            | ClassEvent::AchievementUnlocked { .. }
            | ClassEvent::StudentJoined { .. } => {}
        }
        if let ClassEvent::AttemptRecorded {
            exercise_id,
            passed: true,
            ..
        } = event
            && let Some(stuck) = self.stuck.get_mut(&student)
        {
            stuck.remove(exercise_id);
        }
    }
}
