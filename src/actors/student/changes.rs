//! One change at a time: a submission or a hint reveal is computed by the rules from the
//! committed state, handed to the writer, and applied, answered and published after its commit.

use std::sync::Arc;

use actix::prelude::*;

use super::{
    ActorError, HintAnswer, HintTx, MAX_STALE_TRIES, Pending, StudentActor, SubmitAnswer,
    SubmitAttempt,
};
use crate::actors::writer::WriteError;
use crate::bus::ClassEvent;
use crate::domain::ids::HintId;
use crate::domain::progress::level_for;
use crate::domain::rules::{
    AttemptInput, AttemptOutcome, HintOutcome, evaluate_attempt, evaluate_hint,
};
use crate::domain::time::now_ms;
use crate::store::progress::{AttemptRow, HintRow, ItemResult, StatsRow, WriteItem};

impl StudentActor {
    pub(super) fn stats_after(
        &self,
        xp: i64,
        outcome_streak: Option<crate::domain::progress::Streak>,
    ) -> StatsRow {
        StatsRow {
            student_id: self.id,
            xp,
            streak: outcome_streak.unwrap_or(self.progress.streak),
            version: self.version,
        }
    }

    /// Starts the next queued change if none is in flight.
    pub(super) fn process_next(&mut self, ctx: &mut Context<Self>) {
        while !self.busy {
            if self.refresh_wanted {
                // Another instance changed the student's state: load it before the next change.
                self.refresh_wanted = false;
                self.reload_quietly(ctx);
                continue;
            }
            let Some(next) = self.queue.pop_front() else {
                return;
            };
            match next {
                Pending::Attempt {
                    attempt,
                    at_ms,
                    shared_slot,
                    stale_tries,
                } => self.start_attempt(attempt, at_ms, shared_slot, stale_tries, ctx),
                Pending::Hint {
                    hint_id,
                    xp_cost,
                    reply,
                    stale_tries,
                } => self.start_hint(hint_id, xp_cost, reply, stale_tries, ctx),
            }
        }
    }

    /// A change the database refused as computed on a stale base (`ItemResult::Stale`: another
    /// instance changed the student meanwhile): nothing of it was written. It goes back to the
    /// front of the queue and is computed again once the state is reloaded; after
    /// `MAX_STALE_TRIES` it answers 503 (the client resends).
    pub(super) fn retry_stale(&mut self, pending: Pending, ctx: &mut Context<Self>) {
        let tries = match &pending {
            Pending::Attempt { stale_tries, .. } | Pending::Hint { stale_tries, .. } => {
                *stale_tries
            }
        };
        if tries >= MAX_STALE_TRIES {
            self.refuse(pending, ActorError::Reloading);
        } else {
            self.queue.push_front(pending);
        }
        self.reload_quietly(ctx);
    }

    pub(super) fn start_attempt(
        &mut self,
        attempt: SubmitAttempt,
        at_ms: i64,
        shared_slot: bool,
        stale_tries: u8,
        ctx: &mut Context<Self>,
    ) {
        // Kept to compute it again if the database finds its base stale.
        let again = attempt.clone();
        let input = AttemptInput {
            exercise_id: attempt.exercise_id,
            xp_reward: attempt.xp_reward,
            passed: attempt.passed,
            score: attempt.score,
            at_ms,
        };
        let outcome = evaluate_attempt(&self.progress, &input);
        let origin = attempt.origin_socket;
        let answer = SubmitAnswer {
            success: true,
            attempt_id: attempt.attempt_id.clone(),
            exercise_id: attempt.exercise_id,
            passed: attempt.passed,
            score: attempt.score,
            first_pass: outcome.first_pass,
            xp_awarded: outcome.xp_awarded,
            total_xp: outcome.xp_after,
            level: outcome.level_after,
            level_up: outcome.level_after > outcome.level_before,
            new_badges: outcome
                .new_badges
                .iter()
                .map(|b| b.code().to_owned())
                .collect(),
            new_achievements: outcome
                .new_achievements
                .iter()
                .map(|a| a.code().to_owned())
                .collect(),
            checked_by: attempt.checked_by,
            feedback: attempt.feedback.clone(),
        };
        let row = AttemptRow {
            attempt_id: attempt.attempt_id.clone(),
            student_id: self.id,
            exercise_id: attempt.exercise_id,
            passed: attempt.passed,
            score: attempt.score,
            code: attempt.code,
            duration_ms: attempt.duration_ms,
            created_at: at_ms,
            outcome: serde_json::to_string(&answer).unwrap_or_default(),
            checked_by: attempt.checked_by.as_str(),
            details: attempt.details,
            xp_awarded: outcome.xp_awarded,
            progress: outcome.progress.clone(),
            stats: self.stats_after(outcome.xp_after, Some(outcome.streak)),
            new_badges: outcome.new_badges.clone(),
            new_achievements: outcome.new_achievements.clone(),
        };
        let rx = match self.writer.submit(WriteItem::Attempt(Box::new(row))) {
            Ok(rx) => rx,
            Err(e) => {
                self.release_rate_slot(at_ms, shared_slot.then_some(&answer.attempt_id));
                self.answer_waiters(&answer.attempt_id, Err(write_error(e)));
                return;
            }
        };
        self.busy = true;
        ctx.spawn(
            async move { rx.await.unwrap_or(Err(WriteError::Closed)) }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    act.busy = false;
                    if matches!(result, Ok(ItemResult::Stale)) {
                        let again = Pending::Attempt {
                            attempt: again,
                            at_ms,
                            shared_slot,
                            stale_tries: stale_tries + 1,
                        };
                        act.retry_stale(again, ctx);
                        return;
                    }
                    let own = act.id;
                    let maybe_stored = match &result {
                        Ok(ItemResult::Written) | Err(WriteError::Failed) => true,
                        Ok(ItemResult::Duplicate { student_id, .. }) => *student_id == own,
                        Ok(ItemResult::Stale) | Err(_) => false,
                    };
                    if !maybe_stored {
                        // Certainly not stored: the student will resend it, and must not be
                        // charged twice. (After a write that may have committed, or a resend
                        // of a stored one, the reload rebuilds the window from the database.)
                        act.release_rate_slot(at_ms, shared_slot.then_some(&answer.attempt_id));
                    }
                    act.finish_attempt(result, outcome, answer, origin, ctx);
                    act.process_next(ctx);
                }),
        );
    }

    pub(super) fn finish_attempt(
        &mut self,
        result: Result<ItemResult, WriteError>,
        outcome: AttemptOutcome,
        answer: SubmitAnswer,
        origin: Option<u64>,
        ctx: &mut Context<Self>,
    ) {
        let attempt_id = answer.attempt_id.clone();
        match result {
            Ok(ItemResult::Written) => {
                self.version += 1;
                self.progress.apply_attempt(&outcome);
                self.publish_attempt(&outcome, &answer);
                self.check_stuck_after_attempt(outcome.exercise_id);
                if self.presence.running_tests {
                    // The tests ran: their result is this attempt.
                    self.activity(self.presence.exercise_id, false, ctx);
                }
                self.push_answer(&answer, origin, ctx);
                self.tell_others(Some(&answer));
                self.remember(answer.clone());
                self.answer_waiters(&attempt_id, Ok(answer));
            }
            Ok(ItemResult::Duplicate {
                student_id,
                outcome: stored,
            }) => {
                let stored: Option<SubmitAnswer> = serde_json::from_str(&stored).ok();
                match stored {
                    Some(stored) if student_id == self.id => {
                        // Stored by an earlier try whose answer was lost (a batch that timed
                        // out after its commit), before this actor loaded, or by another
                        // instance: the hot state may lack it, so reload it from the database,
                        // and tell the classes and the other tabs what the reload reveals.
                        self.answer_waiters(&attempt_id, Ok(stored.clone()));
                        self.reload(Some((stored, origin)), ctx);
                    }
                    _ => self.answer_waiters(&attempt_id, Err(ActorError::AttemptIdConflict)),
                }
            }
            // Handled by `start_attempt` (computed again after a reload).
            Ok(ItemResult::Stale) => {
                self.answer_waiters(&attempt_id, Err(ActorError::Reloading));
            }
            Err(e) => {
                if matches!(e, WriteError::Failed) {
                    self.reload(Some((answer, origin)), ctx);
                }
                self.answer_waiters(&attempt_id, Err(write_error(e)));
            }
        }
    }

    pub(super) fn publish_attempt(&self, outcome: &AttemptOutcome, answer: &SubmitAnswer) {
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let at = outcome.progress.last_attempt_at;
        let mut events = vec![ClassEvent::AttemptRecorded {
            student_id: self.id,
            exercise_id: outcome.exercise_id,
            attempt_id: answer.attempt_id.clone(),
            passed: answer.passed,
            score: answer.score,
            at,
            progress: outcome.progress.clone(),
            xp: outcome.xp_after,
        }];
        events.extend(outcome.new_badges.iter().map(|b| ClassEvent::BadgeAwarded {
            student_id: self.id,
            badge: *b,
            at,
        }));
        events.extend(
            outcome
                .new_achievements
                .iter()
                .map(|a| ClassEvent::AchievementUnlocked {
                    student_id: self.id,
                    achievement: *a,
                    at,
                }),
        );
        for event in events {
            let event = Arc::new(event);
            for classroom in &self.classrooms {
                registry.publish(*classroom, event.clone());
            }
        }
    }

    pub(super) fn start_hint(
        &mut self,
        hint_id: HintId,
        xp_cost: i32,
        reply: HintTx,
        stale_tries: u8,
        ctx: &mut Context<Self>,
    ) {
        let outcome = evaluate_hint(&self.progress, hint_id, xp_cost);
        if outcome.already_revealed {
            let _ = reply.send(Ok(self.hint_answer(&outcome)));
            return;
        }
        let row = HintRow {
            student_id: self.id,
            hint_id,
            xp_spent: outcome.xp_spent,
            created_at: now_ms(),
            stats: self.stats_after(outcome.xp_after, None),
        };
        let rx = match self.writer.submit(WriteItem::Hint(row)) {
            Ok(rx) => rx,
            Err(e) => {
                let _ = reply.send(Err(write_error(e)));
                return;
            }
        };
        self.busy = true;
        ctx.spawn(
            async move { rx.await.unwrap_or(Err(WriteError::Closed)) }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    act.busy = false;
                    let answer = match result {
                        Ok(ItemResult::Stale) => {
                            let again = Pending::Hint {
                                hint_id,
                                xp_cost,
                                reply,
                                stale_tries: stale_tries + 1,
                            };
                            act.retry_stale(again, ctx);
                            return;
                        }
                        Ok(_) => {
                            act.version += 1;
                            act.progress.apply_hint(&outcome);
                            act.tell_others(None);
                            if let Some(registry) = act.registry.upgrade() {
                                let event = Arc::new(ClassEvent::XpChanged {
                                    student_id: act.id,
                                    xp: act.progress.xp,
                                });
                                for classroom in &act.classrooms {
                                    registry.publish(*classroom, event.clone());
                                }
                            }
                            Ok(act.hint_answer(&outcome))
                        }
                        Err(e) => {
                            if matches!(e, WriteError::Failed) {
                                // A write that failed may still have committed.
                                act.reload(None, ctx);
                            }
                            Err(write_error(e))
                        }
                    };
                    let _ = reply.send(answer);
                    act.process_next(ctx);
                }),
        );
    }

    pub(super) fn hint_answer(&self, o: &HintOutcome) -> HintAnswer {
        HintAnswer {
            hint_id: o.hint_id,
            already_revealed: o.already_revealed,
            xp_spent: o.xp_spent,
            total_xp: o.xp_after,
            level: level_for(o.xp_after),
        }
    }
}

pub(super) fn write_error(e: WriteError) -> ActorError {
    match e {
        WriteError::QueueFull => ActorError::Overloaded,
        WriteError::Closed => ActorError::ShuttingDown,
        WriteError::Failed => ActorError::NotStored,
        WriteError::NotStorable => ActorError::NotStorable,
    }
}
