//! The student's sockets on this instance, the presence derived from them (several tabs are one
//! presence, told to the classes at most once per `ws.presence_interval_ms`), the pushes of new
//! answers to them, and the stuck reports.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::mpsc;

use super::{StudentActor, StudentPush, SubmitAnswer};
use crate::bus::{ClassEvent, Presence, StuckReason};
use crate::domain::ids::ExerciseId;
use crate::domain::time::now_ms;

impl StudentActor {
    pub(super) fn set_presence(&mut self, presence: Presence, ctx: &mut Context<Self>) {
        if presence == self.presence {
            return;
        }
        let was_online = self.presence.online;
        self.presence = presence.clone();
        if let Some(registry) = self.registry.upgrade() {
            registry.set_presence(self.id, &presence);
        }
        if presence.online != was_online && self.shared_presence_changed(presence.online, ctx) {
            // Offline here: told once no other instance holds a socket (shared_presence.rs).
            return;
        }
        self.flush_presence(ctx);
    }

    /// Tells the classes the current presence, unless they were told one less than
    /// `presence_interval` ago: then once that interval is over (the state of that moment).
    pub(super) fn flush_presence(&mut self, ctx: &mut Context<Self>) {
        if self.presence_flush_scheduled {
            return;
        }
        if let Some(at) = self.presence_published_at {
            let since = at.elapsed();
            if since < self.presence_interval {
                self.presence_flush_scheduled = true;
                ctx.run_later(self.presence_interval - since, |act, ctx| {
                    act.presence_flush_scheduled = false;
                    act.flush_presence(ctx);
                });
                return;
            }
        }
        if self.presence == self.presence_published {
            return;
        }
        self.presence_published = self.presence.clone();
        self.presence_published_at = Some(Instant::now());
        self.publish(ClassEvent::PresenceChanged {
            student_id: self.id,
            presence: self.presence.clone(),
            at: now_ms(),
        });
    }

    pub(super) fn activity(
        &mut self,
        exercise_id: Option<ExerciseId>,
        running_tests: bool,
        ctx: &mut Context<Self>,
    ) {
        let since = match exercise_id {
            None => None,
            Some(_) if exercise_id == self.presence.exercise_id => self.presence.since,
            Some(_) => Some(now_ms()),
        };
        let presence = Presence {
            online: !self.sockets.is_empty(),
            exercise_id,
            running_tests: running_tests && exercise_id.is_some(),
            since,
        };
        self.set_presence(presence, ctx);
    }

    /// Pushes a newly stored attempt to the student's sockets but the one that sent it. A socket
    /// whose queue is full is dropped and closes as a slow consumer: the actor never waits on one.
    pub(super) fn push_answer(
        &mut self,
        answer: &SubmitAnswer,
        origin: Option<u64>,
        ctx: &mut Context<Self>,
    ) {
        if self.sockets.is_empty() {
            return;
        }
        let push = StudentPush::Answer(Arc::new(answer.clone()));
        self.sockets.retain(|id, sink| {
            if Some(*id) == origin {
                return true;
            }
            match sink.tx.try_send(push.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    sink.slow.store(true, Ordering::Release);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        if self.sockets.is_empty() {
            self.set_presence(Presence::default(), ctx);
        }
    }

    /// After a stored attempt: a pass clears "stuck"; enough failures report it (once).
    pub(super) fn check_stuck_after_attempt(&mut self, exercise_id: ExerciseId) {
        let Some(p) = self.progress.exercises.get(&exercise_id) else {
            return;
        };
        if p.passed {
            self.stuck_reported.remove(&exercise_id);
        } else if p.failed_attempts >= self.stuck_failed_attempts
            && self.stuck_reported.insert(exercise_id)
        {
            let failed_attempts = p.failed_attempts;
            self.publish(ClassEvent::StudentStuck {
                student_id: self.id,
                exercise_id,
                reason: StuckReason::FailedAttempts,
                failed_attempts,
                at: now_ms(),
            });
        }
    }

    /// Too long on the focused exercise without a pass: report it (once).
    pub(super) fn check_stuck_by_time(&mut self) {
        let (Some(exercise_id), Some(since)) = (self.presence.exercise_id, self.presence.since)
        else {
            return;
        };
        let now = now_ms();
        if !self.presence.online || now - since < self.stuck_after.as_millis() as i64 {
            return;
        }
        let p = self.progress.exercises.get(&exercise_id);
        if p.is_some_and(|p| p.passed) || !self.stuck_reported.insert(exercise_id) {
            return;
        }
        self.publish(ClassEvent::StudentStuck {
            student_id: self.id,
            exercise_id,
            reason: StuckReason::TimeOnExercise,
            failed_attempts: p.map_or(0, |p| p.failed_attempts),
            at: now,
        });
    }

    /// Sockets that ended without their `DetachSocket` reaching the actor (mailbox full, or
    /// timed out) go here, so the student does not stay "online" and the actor can passivate.
    pub(super) fn forget_closed_sockets(&mut self, ctx: &mut Context<Self>) {
        let before = self.sockets.len();
        self.sockets.retain(|_, sink| !sink.tx.is_closed());
        if before > 0 && self.sockets.is_empty() {
            self.set_presence(Presence::default(), ctx);
        }
    }
}
