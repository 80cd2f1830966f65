//! `StudentActor`: one per active student. Holds the student's progress hot (loaded once), applies
//! the rate limit and the rules, hands the rows to the writer and answers after the commit.
//!
//! One change at a time: submissions and hint reveals queue inside the actor and the next starts
//! when the previous batch has committed, so every change is computed from committed state. The
//! mailbox never stalls meanwhile (reads are answered from committed state), and a resend of an
//! attempt already queued, in flight or recently answered waits for, or gets, that same answer.
//!
//! The actor also owns the student's open sockets on this instance: it pushes each newly stored
//! attempt to them (whichever way it was submitted), derives the student's presence from them
//! (several tabs are one presence) and tells the classes when the student looks stuck.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::registry::Registry;
use super::writer::{WriteError, WriterHandle};
use crate::bus::{ClassEvent, Presence, StuckReason};
use crate::domain::ids::{AttemptId, ClassroomId, ExerciseId, HintId, UserId};
use crate::domain::progress::{StudentProgress, level_for};
use crate::domain::rules::{
    AttemptInput, AttemptOutcome, HintOutcome, evaluate_attempt, evaluate_hint,
};
use crate::domain::time::now_ms;
use crate::domain::verdict::CheckedBy;
use crate::store::progress::{AttemptRow, HintRow, ItemResult, StatsRow, WriteItem};

/// Answers kept per student for resends that arrive after the answer (the database keeps them all).
const RECENT_ANSWERS: usize = 256;
pub const HOUR_MS: i64 = 3_600_000;
/// Changes one student may have waiting behind the one in flight. Submissions are also rate
/// limited; hint reveals are not, so this is what bounds the actor's own queue.
const MAX_QUEUED: usize = 64;

/// A validated submission.
#[derive(Debug, Clone)]
pub struct SubmitAttempt {
    pub attempt_id: AttemptId,
    pub exercise_id: ExerciseId,
    pub xp_reward: i32,
    pub passed: bool,
    pub score: i32,
    pub code: String,
    pub duration_ms: Option<i64>,
    /// Who computed `passed` and `score`, what they said, and what the browser reported.
    pub checked_by: CheckedBy,
    pub feedback: Option<String>,
    pub details: Option<String>,
    /// The student's socket that sent it, if any: it gets the answer directly, so the push of the
    /// answer to the student's sockets skips it.
    pub origin_socket: Option<u64>,
}

/// The answer to a submission (the portal's shape, plus a few fields). Stored with the attempt:
/// a resend gets it back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitAnswer {
    pub success: bool,
    pub attempt_id: AttemptId,
    pub exercise_id: ExerciseId,
    pub passed: bool,
    pub score: i32,
    pub first_pass: bool,
    pub xp_awarded: i64,
    pub total_xp: i64,
    pub level: i64,
    pub level_up: bool,
    pub new_badges: Vec<String>,
    pub new_achievements: Vec<String>,
    /// Absent from answers stored before trusted grading: those were the browser's word.
    #[serde(default = "browser")]
    pub checked_by: CheckedBy,
    #[serde(default)]
    pub feedback: Option<String>,
}

fn browser() -> CheckedBy {
    CheckedBy::Browser
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HintAnswer {
    pub hint_id: HintId,
    pub already_revealed: bool,
    pub xp_spent: i64,
    pub total_xp: i64,
    pub level: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActorError {
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    #[error("write queue full")]
    Overloaded,
    #[error("not stored")]
    NotStored,
    /// The database refused the attempt's data (it will refuse a resend too).
    #[error("not storable")]
    NotStorable,
    #[error("attempt id used for another attempt")]
    AttemptIdConflict,
    #[error("shutting down")]
    ShuttingDown,
}

#[derive(Message, Clone)]
#[rtype(result = "Result<SubmitAnswer, ActorError>")]
pub struct Submit(pub SubmitAttempt);

#[derive(Message, Clone)]
#[rtype(result = "Result<HintAnswer, ActorError>")]
pub struct RevealHint {
    pub hint_id: HintId,
    pub xp_cost: i32,
}

/// The committed progress, for reads.
#[derive(Message, Clone)]
#[rtype(result = "StudentProgress")]
pub struct GetProgress;

/// The student joined or left a class: the classes their events go to, or `None` to load them
/// (retrying a second apart while the database fails, `tries_left` more times).
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct ReloadClassrooms {
    pub ids: Option<Vec<ClassroomId>>,
    pub tries_left: u32,
}

/// What the actor pushes to the student's sockets (each socket turns it into protocol messages).
#[derive(Debug, Clone)]
pub enum StudentPush {
    /// An attempt was stored (submitted over HTTP, or from another tab).
    Answer(Arc<SubmitAnswer>),
}

/// One open socket of the student, as the actor sees it: a bounded queue, and a flag the actor
/// raises when it drops the socket because that queue was full (the socket then closes as a slow
/// consumer rather than as "going away").
#[derive(Debug, Clone)]
pub struct SocketSink {
    pub id: u64,
    pub tx: mpsc::Sender<StudentPush>,
    pub slow: Arc<AtomicBool>,
}

/// A socket opened: the student is online. Answers the committed progress (sent on connect).
#[derive(Message, Clone)]
#[rtype(result = "StudentProgress")]
pub struct AttachSocket(pub SocketSink);

/// A socket closed (the last one: the student is offline).
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct DetachSocket(pub u64);

/// Where the student is: the exercise a tab shows (None: no exercise), running its tests or not.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct SetActivity {
    pub exercise_id: Option<ExerciseId>,
    pub running_tests: bool,
}

type AnswerTx = oneshot::Sender<Result<SubmitAnswer, ActorError>>;
type HintTx = oneshot::Sender<Result<HintAnswer, ActorError>>;

enum Pending {
    Attempt {
        attempt: SubmitAttempt,
        at_ms: i64,
    },
    Hint {
        hint_id: HintId,
        xp_cost: i32,
        reply: HintTx,
    },
}

pub struct StudentActor {
    id: UserId,
    progress: StudentProgress,
    classrooms: Vec<ClassroomId>,
    writer: WriterHandle,
    registry: Weak<Registry>,
    rate_limit_per_hour: u32,
    idle_timeout: Duration,
    /// Accepted submissions of the last hour (their times), for the rate limit.
    recent_submissions: VecDeque<i64>,
    queue: VecDeque<Pending>,
    busy: bool,
    /// Everyone waiting for an attempt's answer (the first sender and its resends).
    waiting: HashMap<AttemptId, Vec<AnswerTx>>,
    recent_answers: HashMap<AttemptId, SubmitAnswer>,
    recent_order: VecDeque<AttemptId>,
    last_active: Instant,
    sockets: HashMap<u64, SocketSink>,
    presence: Presence,
    /// Exercises the classes were told the student is stuck on (until a pass).
    stuck_reported: HashSet<ExerciseId>,
    stuck_failed_attempts: i32,
    stuck_after: Duration,
    /// Bumped at every change of `classrooms`: a load started before a newer change is dropped.
    classrooms_generation: u64,
}

pub struct StudentActorConfig {
    pub writer: WriterHandle,
    pub registry: Weak<Registry>,
    pub rate_limit_per_hour: u32,
    pub idle_timeout: Duration,
    pub stuck_failed_attempts: i32,
    pub stuck_after: Duration,
}

impl StudentActor {
    /// `recent_submissions`: when the student's stored attempts of the last hour were made, oldest
    /// first, so that the rate limit survives the actor stopping when idle, and restarts.
    pub fn new(
        progress: StudentProgress,
        classrooms: Vec<ClassroomId>,
        recent_submissions: Vec<i64>,
        config: StudentActorConfig,
    ) -> Self {
        StudentActor {
            id: progress.student_id,
            progress,
            classrooms,
            writer: config.writer,
            registry: config.registry,
            rate_limit_per_hour: config.rate_limit_per_hour,
            idle_timeout: config.idle_timeout,
            recent_submissions: recent_submissions.into(),
            queue: VecDeque::new(),
            busy: false,
            waiting: HashMap::new(),
            recent_answers: HashMap::new(),
            recent_order: VecDeque::new(),
            last_active: Instant::now(),
            sockets: HashMap::new(),
            presence: Presence::default(),
            stuck_reported: HashSet::new(),
            stuck_failed_attempts: config.stuck_failed_attempts,
            stuck_after: config.stuck_after,
            classrooms_generation: 0,
        }
    }

    /// Publishes an event to each of the student's classes.
    fn publish(&self, event: ClassEvent) {
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let event = Arc::new(event);
        for classroom in &self.classrooms {
            registry.publish(*classroom, event.clone());
        }
    }

    fn set_presence(&mut self, presence: Presence) {
        if presence == self.presence {
            return;
        }
        self.presence = presence.clone();
        if let Some(registry) = self.registry.upgrade() {
            registry.set_presence(self.id, &presence);
        }
        self.publish(ClassEvent::PresenceChanged {
            student_id: self.id,
            presence,
            at: now_ms(),
        });
    }

    fn activity(&mut self, exercise_id: Option<ExerciseId>, running_tests: bool) {
        let since = match exercise_id {
            None => None,
            Some(_) if exercise_id == self.presence.exercise_id => self.presence.since,
            Some(_) => Some(now_ms()),
        };
        self.set_presence(Presence {
            online: !self.sockets.is_empty(),
            exercise_id,
            running_tests: running_tests && exercise_id.is_some(),
            since,
        });
    }

    /// Pushes a newly stored attempt to the student's sockets but the one that sent it. A socket
    /// whose queue is full is dropped and closes as a slow consumer: the actor never waits on one.
    fn push_answer(&mut self, answer: &SubmitAnswer, origin: Option<u64>) {
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
            self.set_presence(Presence::default());
        }
    }

    /// After a stored attempt: a pass clears "stuck"; enough failures report it (once).
    fn check_stuck_after_attempt(&mut self, exercise_id: ExerciseId) {
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
    fn check_stuck_by_time(&mut self) {
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
    fn forget_closed_sockets(&mut self) {
        let before = self.sockets.len();
        self.sockets.retain(|_, sink| !sink.tx.is_closed());
        if before > 0 && self.sockets.is_empty() {
            self.set_presence(Presence::default());
        }
    }

    fn has_unflushed_work(&self) -> bool {
        self.busy || !self.queue.is_empty() || !self.waiting.is_empty()
    }

    fn remember(&mut self, answer: SubmitAnswer) {
        if self.recent_order.len() >= RECENT_ANSWERS
            && let Some(old) = self.recent_order.pop_front()
        {
            self.recent_answers.remove(&old);
        }
        self.recent_order.push_back(answer.attempt_id.clone());
        self.recent_answers
            .insert(answer.attempt_id.clone(), answer);
    }

    fn answer_waiters(&mut self, attempt_id: &AttemptId, result: Result<SubmitAnswer, ActorError>) {
        for tx in self.waiting.remove(attempt_id).unwrap_or_default() {
            let _ = tx.send(result.clone());
        }
    }

    /// Gives back the rate-limit slot of a submission the database did not store (writer full,
    /// refused, shutting down): the student will resend it, and must not be charged twice.
    fn release_rate_slot(&mut self, at_ms: i64) {
        if let Some(i) = self.recent_submissions.iter().rposition(|t| *t == at_ms) {
            self.recent_submissions.remove(i);
        }
    }

    /// Seconds until the oldest submission of the window leaves it, if the window is full.
    fn rate_limited(&mut self, now: i64) -> Option<u64> {
        while self
            .recent_submissions
            .front()
            .is_some_and(|t| now - t >= HOUR_MS)
        {
            self.recent_submissions.pop_front();
        }
        if self.recent_submissions.len() >= self.rate_limit_per_hour as usize {
            let oldest = self.recent_submissions.front().copied().unwrap_or(now);
            Some(((oldest + HOUR_MS - now).max(1000) / 1000) as u64)
        } else {
            None
        }
    }

    fn stats_after(
        &self,
        xp: i64,
        outcome_streak: Option<crate::domain::progress::Streak>,
    ) -> StatsRow {
        StatsRow {
            student_id: self.id,
            xp,
            streak: outcome_streak.unwrap_or(self.progress.streak),
        }
    }

    /// Starts the next queued change if none is in flight.
    fn process_next(&mut self, ctx: &mut Context<Self>) {
        while !self.busy {
            let Some(next) = self.queue.pop_front() else {
                return;
            };
            match next {
                Pending::Attempt { attempt, at_ms } => self.start_attempt(attempt, at_ms, ctx),
                Pending::Hint {
                    hint_id,
                    xp_cost,
                    reply,
                } => self.start_hint(hint_id, xp_cost, reply, ctx),
            }
        }
    }

    fn start_attempt(&mut self, attempt: SubmitAttempt, at_ms: i64, ctx: &mut Context<Self>) {
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
                self.release_rate_slot(at_ms);
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
                    if !matches!(result, Ok(ItemResult::Written)) {
                        // Not stored by this submission (refused, or already stored: then the
                        // window rebuilt from the database already counts it).
                        act.release_rate_slot(at_ms);
                    }
                    act.finish_attempt(result, outcome, answer, origin, ctx);
                    act.process_next(ctx);
                }),
        );
    }

    fn finish_attempt(
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
                self.progress.apply_attempt(&outcome);
                self.publish_attempt(&outcome, &answer);
                self.check_stuck_after_attempt(outcome.exercise_id);
                if self.presence.running_tests {
                    // The tests ran: their result is this attempt.
                    self.activity(self.presence.exercise_id, false);
                }
                self.push_answer(&answer, origin);
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
                        // Stored before this actor loaded, or by another instance: the hot state
                        // may lack it, so reload it from the database.
                        self.remember(stored.clone());
                        self.answer_waiters(&attempt_id, Ok(stored));
                        self.reload(ctx);
                    }
                    _ => self.answer_waiters(&attempt_id, Err(ActorError::AttemptIdConflict)),
                }
            }
            Err(e) => {
                self.reload_if_maybe_committed(&e, ctx);
                self.answer_waiters(&attempt_id, Err(write_error(e)));
            }
        }
    }

    /// A write that failed may still have committed (a connection lost after COMMIT was sent,
    /// a batch that timed out): the hot state is reloaded from the database before the next
    /// change is computed, so it never builds on a stale base.
    fn reload_if_maybe_committed(&mut self, e: &WriteError, ctx: &mut Context<Self>) {
        if matches!(e, WriteError::Failed) {
            self.reload(ctx);
        }
    }

    fn publish_attempt(&self, outcome: &AttemptOutcome, answer: &SubmitAnswer) {
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

    fn start_hint(
        &mut self,
        hint_id: HintId,
        xp_cost: i32,
        reply: HintTx,
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
                        Ok(_) => {
                            act.progress.apply_hint(&outcome);
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
                            act.reload_if_maybe_committed(&e, ctx);
                            Err(write_error(e))
                        }
                    };
                    let _ = reply.send(answer);
                    act.process_next(ctx);
                }),
        );
    }

    fn hint_answer(&self, o: &HintOutcome) -> HintAnswer {
        HintAnswer {
            hint_id: o.hint_id,
            already_revealed: o.already_revealed,
            xp_spent: o.xp_spent,
            total_xp: o.xp_after,
            level: level_for(o.xp_after),
        }
    }

    /// Replaces the hot state with the database's (after finding an attempt stored elsewhere).
    /// Queued changes wait for it: they must be computed from the reloaded state.
    fn reload(&mut self, ctx: &mut Context<Self>) {
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let store = registry.store().clone();
        let id = self.id;
        self.busy = true;
        ctx.spawn(
            async move { store.load_student_progress(id).await }
                .into_actor(self)
                .map(|result, act, ctx| {
                    act.busy = false;
                    match result {
                        Ok(progress) => act.progress = progress,
                        Err(e) => tracing::warn!(
                            error = format!("{e:#}"),
                            "reloading a student's progress failed"
                        ),
                    }
                    act.process_next(ctx);
                }),
        );
    }
}

fn write_error(e: WriteError) -> ActorError {
    match e {
        WriteError::QueueFull => ActorError::Overloaded,
        WriteError::Closed => ActorError::ShuttingDown,
        WriteError::Failed => ActorError::NotStored,
        WriteError::NotStorable => ActorError::NotStorable,
    }
}

impl Actor for StudentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let check_every = (self.idle_timeout / 4).max(Duration::from_millis(50));
        let stuck_every =
            (self.stuck_after / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        ctx.run_interval(stuck_every, |act, _ctx| {
            act.forget_closed_sockets();
            act.check_stuck_by_time();
        });
        ctx.run_interval(check_every, |act, ctx| {
            // An open socket keeps the actor: it holds the socket's queue and the presence.
            if act.last_active.elapsed() >= act.idle_timeout
                && !act.has_unflushed_work()
                && act.sockets.is_empty()
            {
                // Leave the registry first: a request from now on starts a fresh actor, which
                // loads what this one committed.
                if let Some(registry) = act.registry.upgrade() {
                    registry.forget_student(act.id, &ctx.address());
                }
                ctx.stop();
            }
        });
    }
}

impl Handler<Submit> for StudentActor {
    type Result = ResponseFuture<Result<SubmitAnswer, ActorError>>;

    fn handle(&mut self, Submit(attempt): Submit, ctx: &mut Self::Context) -> Self::Result {
        self.last_active = Instant::now();
        let (tx, rx) = oneshot::channel();
        let reply =
            |r: Result<SubmitAnswer, ActorError>| -> Self::Result { Box::pin(async move { r }) };
        if let Some(answer) = self.recent_answers.get(&attempt.attempt_id) {
            return reply(if answer.exercise_id == attempt.exercise_id {
                Ok(answer.clone())
            } else {
                Err(ActorError::AttemptIdConflict)
            });
        }
        if let Some(waiters) = self.waiting.get_mut(&attempt.attempt_id) {
            // The same attempt is queued or in flight: wait for its answer.
            waiters.push(tx);
        } else {
            if self.queue.len() >= MAX_QUEUED {
                return reply(Err(ActorError::Overloaded));
            }
            let now = now_ms();
            if let Some(retry_after_secs) = self.rate_limited(now) {
                return reply(Err(ActorError::RateLimited { retry_after_secs }));
            }
            self.recent_submissions.push_back(now);
            self.waiting.insert(attempt.attempt_id.clone(), vec![tx]);
            self.queue.push_back(Pending::Attempt {
                attempt,
                at_ms: now,
            });
            self.process_next(ctx);
        }
        Box::pin(async move { rx.await.unwrap_or(Err(ActorError::ShuttingDown)) })
    }
}

impl Handler<RevealHint> for StudentActor {
    type Result = ResponseFuture<Result<HintAnswer, ActorError>>;

    fn handle(&mut self, msg: RevealHint, ctx: &mut Self::Context) -> Self::Result {
        self.last_active = Instant::now();
        if self.queue.len() >= MAX_QUEUED {
            return Box::pin(async { Err(ActorError::Overloaded) });
        }
        let (tx, rx) = oneshot::channel();
        self.queue.push_back(Pending::Hint {
            hint_id: msg.hint_id,
            xp_cost: msg.xp_cost,
            reply: tx,
        });
        self.process_next(ctx);
        Box::pin(async move { rx.await.unwrap_or(Err(ActorError::ShuttingDown)) })
    }
}

impl Handler<GetProgress> for StudentActor {
    type Result = MessageResult<GetProgress>;

    fn handle(&mut self, _: GetProgress, _ctx: &mut Self::Context) -> Self::Result {
        self.last_active = Instant::now();
        MessageResult(self.progress.clone())
    }
}

impl Handler<ReloadClassrooms> for StudentActor {
    type Result = ();

    fn handle(&mut self, msg: ReloadClassrooms, ctx: &mut Self::Context) {
        self.classrooms_generation += 1;
        if let Some(ids) = msg.ids {
            self.classrooms = ids;
            return;
        }
        let generation = self.classrooms_generation;
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let store = registry.store().clone();
        let id = self.id;
        ctx.spawn(
            async move { store.student_classroom_ids(id).await }
                .into_actor(self)
                .map(move |result, act, ctx| match result {
                    // A newer change arrived meanwhile: it wins.
                    Ok(_) if act.classrooms_generation != generation => {}
                    Ok(ids) => act.classrooms = ids,
                    Err(e) => {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            tries_left = msg.tries_left,
                            "reloading a student's classes failed"
                        );
                        if msg.tries_left > 0 {
                            let again = ReloadClassrooms {
                                ids: None,
                                tries_left: msg.tries_left - 1,
                            };
                            ctx.notify_later(again, Duration::from_secs(1));
                        }
                    }
                }),
        );
    }
}

impl Handler<AttachSocket> for StudentActor {
    type Result = MessageResult<AttachSocket>;

    fn handle(
        &mut self,
        AttachSocket(sink): AttachSocket,
        _ctx: &mut Self::Context,
    ) -> Self::Result {
        self.last_active = Instant::now();
        self.sockets.insert(sink.id, sink);
        let mut presence = self.presence.clone();
        presence.online = true;
        self.set_presence(presence);
        MessageResult(self.progress.clone())
    }
}

impl Handler<DetachSocket> for StudentActor {
    type Result = ();

    fn handle(&mut self, DetachSocket(id): DetachSocket, _ctx: &mut Self::Context) {
        self.last_active = Instant::now();
        if self.sockets.remove(&id).is_some() && self.sockets.is_empty() {
            self.set_presence(Presence::default());
        }
    }
}

impl Handler<SetActivity> for StudentActor {
    type Result = ();

    fn handle(&mut self, msg: SetActivity, _ctx: &mut Self::Context) {
        self.last_active = Instant::now();
        if !self.sockets.is_empty() {
            self.activity(msg.exercise_id, msg.running_tests);
        }
    }
}
