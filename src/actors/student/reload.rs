//! Reloading the student's state from the database after a write that may have committed, or a
//! resend found stored: retried with backoff while it fails (changes answer 503 meanwhile), and
//! what it reveals is told to the classes and the other tabs.

use actix::prelude::*;

use super::{
    ActorError, Pending, RELOAD_BACKOFF_MAX, RELOAD_BACKOFF_MIN, StudentActor, SubmitAnswer,
};
use crate::actors::registry::{LoadTimedOut, ReloadKind};
use crate::bus::ClassEvent;
use crate::domain::ids::ExerciseId;
use crate::domain::progress::StudentProgress;
use crate::domain::time::now_ms;

impl StudentActor {
    /// Replaces the hot state with the database's, after a write that may have committed (a
    /// connection lost after COMMIT was sent, a batch that timed out) or a resend found stored:
    /// the next change must be computed from what the database has, never from a stale base
    /// (XP and streak are written as absolute values). Queued changes wait for it. A reload that
    /// fails is retried with a growing delay (`RELOAD_BACKOFF_MIN` to `RELOAD_BACKOFF_MAX`);
    /// meanwhile queued and new changes answer 503 (`ActorError::Reloading`).
    ///
    /// `maybe_stored`: the attempt whose write may have committed, and the socket that sent it.
    /// If the reload shows it stored, the classes get its `attempt_recorded` (and the badges and
    /// achievements the reload reveals), the other tabs get its answer, and the stuck check runs.
    pub(super) fn reload(
        &mut self,
        maybe_stored: Option<(SubmitAnswer, Option<u64>)>,
        ctx: &mut Context<Self>,
    ) {
        self.reload_with(maybe_stored, true, ctx)
    }

    /// A reload after another instance changed the student's state (a stale base found by the
    /// database, or that instance's word through Redis): that instance told the classes, so what
    /// the reload reveals is not told again.
    pub(super) fn reload_quietly(&mut self, ctx: &mut Context<Self>) {
        self.reload_with(None, false, ctx)
    }

    fn reload_with(
        &mut self,
        maybe_stored: Option<(SubmitAnswer, Option<u64>)>,
        tell: bool,
        ctx: &mut Context<Self>,
    ) {
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let id = self.id;
        let limit = registry.load_timeout();
        self.busy = true;
        ctx.spawn(
            async move {
                let loading = async {
                    let state = registry.store().load_student_state(id).await?;
                    let window = registry.recent_attempt_times(id).await?;
                    Ok::<_, anyhow::Error>((state, window))
                };
                tokio::time::timeout(limit, loading)
                    .await
                    .map_err(|_| LoadTimedOut)?
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                act.busy = false;
                match result {
                    Ok(((progress, version), window)) => {
                        act.reload_failing = false;
                        act.reload_backoff = RELOAD_BACKOFF_MIN;
                        act.version = version;
                        let before = std::mem::replace(&mut act.progress, progress);
                        act.rebuild_rate_window(window);
                        if tell {
                            act.publish_revealed(&before, maybe_stored, ctx);
                        }
                        act.process_next(ctx);
                    }
                    Err(e) => {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            retry_in_ms = act.reload_backoff.as_millis() as u64,
                            "reloading a student's progress failed"
                        );
                        if let Some(registry) = act.registry.upgrade() {
                            registry.count_reload_failure(ReloadKind::Student);
                        }
                        act.reload_failing = true;
                        act.refuse_queued(ActorError::Reloading);
                        let delay = act.reload_backoff;
                        act.reload_backoff = (delay * 2).min(RELOAD_BACKOFF_MAX);
                        // Busy until the reload succeeds: nothing is computed meanwhile.
                        act.busy = true;
                        ctx.run_later(delay, move |act, ctx| {
                            act.busy = false;
                            act.reload_with(maybe_stored, tell, ctx);
                        });
                    }
                }
            }),
        );
    }

    /// Answers every queued change with `error` (their rate slots given back: nothing of them
    /// was written).
    pub(super) fn refuse_queued(&mut self, error: ActorError) {
        for pending in std::mem::take(&mut self.queue) {
            self.refuse(pending, error.clone());
        }
    }

    /// Answers one change with `error`, nothing of it written: an attempt's rate slot is given
    /// back (in the shared window too when it took one there).
    pub(super) fn refuse(&mut self, pending: Pending, error: ActorError) {
        match pending {
            Pending::Attempt {
                attempt,
                at_ms,
                shared_slot,
                ..
            } => {
                self.release_rate_slot(at_ms, shared_slot.then_some(&attempt.attempt_id));
                self.answer_waiters(&attempt.attempt_id, Err(error));
            }
            Pending::Hint { reply, .. } => {
                let _ = reply.send(Err(error));
            }
        }
    }

    /// After a reload: what it shows that the hot state `before` lacked goes to the classes
    /// (the attempt that may have been stored, new badges and achievements, else a new XP).
    pub(super) fn publish_revealed(
        &mut self,
        before: &StudentProgress,
        maybe_stored: Option<(SubmitAnswer, Option<u64>)>,
        ctx: &mut Context<Self>,
    ) {
        let at = now_ms();
        let attempts =
            |p: &StudentProgress, e: ExerciseId| p.exercises.get(&e).map_or(0, |p| p.attempts);
        let mut told_xp = false;
        if let Some((answer, origin)) = maybe_stored
            && attempts(&self.progress, answer.exercise_id) > attempts(before, answer.exercise_id)
            && let Some(cell) = self.progress.exercises.get(&answer.exercise_id).cloned()
        {
            self.publish(ClassEvent::AttemptRecorded {
                student_id: self.id,
                exercise_id: answer.exercise_id,
                attempt_id: answer.attempt_id.clone(),
                passed: answer.passed,
                score: answer.score,
                at: cell.last_attempt_at,
                progress: cell,
                xp: self.progress.xp,
            });
            told_xp = true;
            self.check_stuck_after_attempt(answer.exercise_id);
            self.push_answer(&answer, origin, ctx);
            self.tell_others(Some(&answer));
            self.remember(answer);
        }
        let badges: Vec<_> = self
            .progress
            .badges
            .difference(&before.badges)
            .copied()
            .collect();
        for badge in badges {
            self.publish(ClassEvent::BadgeAwarded {
                student_id: self.id,
                badge,
                at,
            });
        }
        let achievements: Vec<_> = self
            .progress
            .achievements
            .difference(&before.achievements)
            .copied()
            .collect();
        for achievement in achievements {
            self.publish(ClassEvent::AchievementUnlocked {
                student_id: self.id,
                achievement,
                at,
            });
        }
        if !told_xp && self.progress.xp != before.xp {
            self.publish(ClassEvent::XpChanged {
                student_id: self.id,
                xp: self.progress.xp,
            });
        }
    }
}
