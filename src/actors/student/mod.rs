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
//!
//! Its jobs, one module each: `messages` (what it is asked and answers), `changes` (a submission
//! or a hint reveal: rules, write, answer, events), `answers` (the answers kept for resends and
//! the requests waiting for one), `rate` (the rolling hour's window), `presence` (sockets,
//! presence, stuck reports) and `reload` (reloading from the database after a write that may have
//! committed, and telling what the reload reveals).

mod answers;
mod changes;
mod messages;
mod presence;
mod rate;
mod reload;
mod shared_presence;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::registry::Registry;
use super::writer::WriterHandle;
use crate::bus::{ClassEvent, Presence};
use crate::cluster::limits::SharedLimits;
use crate::domain::ids::{AttemptId, ClassroomId, ExerciseId, HintId, UserId};
use crate::domain::progress::StudentProgress;
use crate::domain::time::now_ms;
use crate::metrics::Refusals;

pub use messages::{
    ActorError, AttachSocket, DetachSocket, GetProgress, HintAnswer, ReloadClassrooms, RevealHint,
    SetActivity, SocketSink, StudentChanged, StudentPush, Submit, SubmitAnswer, SubmitAttempt,
};
pub use rate::HOUR_MS;

/// Answers kept per student for resends that arrive after the answer (the database keeps them all).
const RECENT_ANSWERS: usize = 256;
/// Changes one student may have waiting behind the one in flight (submissions and hint reveals
/// are also rate limited).
const MAX_QUEUED: usize = 64;
/// Requests waiting for one attempt's answer (its first sender and resends); more answer 503.
const MAX_WAITERS_PER_ATTEMPT: usize = 16;
/// A failed reload is tried again after this long, doubled each time up to `RELOAD_BACKOFF_MAX`.
const RELOAD_BACKOFF_MIN: Duration = Duration::from_millis(100);
const RELOAD_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Times one change is computed again after the database found its base stale (another instance
/// changed the student meanwhile); then it answers 503 and the client resends.
const MAX_STALE_TRIES: u8 = 3;

type AnswerTx = oneshot::Sender<Result<SubmitAnswer, ActorError>>;
type HintTx = oneshot::Sender<Result<HintAnswer, ActorError>>;

/// A change waiting its turn; `stale_tries`: how many times the database found it computed on a
/// stale base (see `MAX_STALE_TRIES`).
enum Pending {
    Attempt {
        attempt: SubmitAttempt,
        at_ms: i64,
        /// Counted in the shared (Redis) window by this actor: given back there if not stored.
        shared_slot: bool,
        stale_tries: u8,
    },
    Hint {
        hint_id: HintId,
        xp_cost: i32,
        reply: HintTx,
        stale_tries: u8,
    },
}

pub struct StudentActor {
    id: UserId,
    progress: StudentProgress,
    /// The version of the student's stored state `progress` is at (`StatsRow::version`).
    version: i64,
    /// Another instance changed the student's state: reload before the next change.
    refresh_wanted: bool,
    /// Offline here, but "offline" waits until no other instance holds a socket.
    offline_pending: bool,
    classrooms: Vec<ClassroomId>,
    writer: WriterHandle,
    registry: Weak<Registry>,
    rate_limit_per_hour: u32,
    /// Counts the submissions the rate limit refuses (`/metrics`).
    refusals: Refusals,
    idle_timeout: Duration,
    /// Accepted submissions of the last hour (their times), for the rate limit.
    recent_submissions: VecDeque<i64>,
    hint_reveals_per_minute: u32,
    /// Hint reveals asked in the last minute (their times), for theirs.
    recent_reveals: VecDeque<i64>,
    /// The same two limits counted by every instance (Redis), when configured.
    limits: Option<Arc<SharedLimits>>,
    /// Submissions and hint reveals waiting for the shared limits' answer.
    checking: usize,
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
    /// The last reload of the hot state failed: it is retried after `reload_backoff`, and changes
    /// are refused (503) until one succeeds.
    reload_failing: bool,
    reload_backoff: Duration,
    /// The presence the classes were last told, when, and whether a later one waits to be told
    /// (at most one publication per `presence_interval`; the last state wins).
    presence_published: Presence,
    presence_published_at: Option<Instant>,
    presence_flush_scheduled: bool,
    presence_interval: Duration,
}

pub struct StudentActorConfig {
    pub writer: WriterHandle,
    pub registry: Weak<Registry>,
    pub rate_limit_per_hour: u32,
    pub refusals: Refusals,
    pub hint_reveals_per_minute: u32,
    /// The rate limits counted by every instance (Redis), when configured.
    pub limits: Option<Arc<SharedLimits>>,
    pub idle_timeout: Duration,
    pub stuck_failed_attempts: i32,
    pub stuck_after: Duration,
    pub presence_interval: Duration,
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
            version: 0,
            refresh_wanted: false,
            offline_pending: false,
            classrooms,
            writer: config.writer,
            registry: config.registry,
            rate_limit_per_hour: config.rate_limit_per_hour,
            refusals: config.refusals,
            idle_timeout: config.idle_timeout,
            recent_submissions: recent_submissions.into(),
            hint_reveals_per_minute: config.hint_reveals_per_minute,
            recent_reveals: VecDeque::new(),
            limits: config.limits,
            checking: 0,
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
            reload_failing: false,
            reload_backoff: RELOAD_BACKOFF_MIN,
            presence_published: Presence::default(),
            presence_published_at: None,
            presence_flush_scheduled: false,
            presence_interval: config.presence_interval,
        }
    }

    /// The version of the stored state `progress` was loaded at (0 by default).
    pub fn at_version(mut self, version: i64) -> Self {
        self.version = version;
        self
    }

    /// Publishes an event to each of the student's classes.
    pub(super) fn publish(&self, event: ClassEvent) {
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let event = Arc::new(event);
        for classroom in &self.classrooms {
            registry.publish(*classroom, event.clone());
        }
    }

    /// Tells the other instances (through Redis, if any) that this student's state changed.
    pub(super) fn tell_others(&self, answer: Option<&SubmitAnswer>) {
        if let Some(registry) = self.registry.upgrade() {
            registry.tell_student_changed(self.id, answer);
        }
    }

    /// A reload that keeps failing does not keep an idle actor: a new one loads afresh.
    pub(super) fn has_unflushed_work(&self) -> bool {
        (self.busy && !self.reload_failing)
            || !self.queue.is_empty()
            || !self.waiting.is_empty()
            || self.checking > 0
            || self.offline_pending
    }
}

impl Actor for StudentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.start_shared_presence(ctx);
        let check_every = (self.idle_timeout / 4).max(Duration::from_millis(50));
        let stuck_every =
            (self.stuck_after / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        ctx.run_interval(stuck_every, |act, ctx| {
            act.forget_closed_sockets(ctx);
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
            if waiters.len() >= MAX_WAITERS_PER_ATTEMPT {
                return reply(Err(ActorError::Overloaded));
            }
            waiters.push(tx);
        } else {
            if self.reload_failing {
                return reply(Err(ActorError::Reloading));
            }
            if self.queue.len() + self.checking >= MAX_QUEUED {
                return reply(Err(ActorError::Overloaded));
            }
            if let Some(limits) = self.limits.clone() {
                self.waiting.insert(attempt.attempt_id.clone(), vec![tx]);
                self.check_shared_rate(limits, attempt, ctx);
            } else {
                let now = now_ms();
                if let Some(retry_after_secs) = self.rate_limited(now) {
                    return reply(Err(ActorError::RateLimited { retry_after_secs }));
                }
                self.waiting.insert(attempt.attempt_id.clone(), vec![tx]);
                self.queue_attempt(attempt, now, false, ctx);
            }
        }
        Box::pin(async move { rx.await.unwrap_or(Err(ActorError::ShuttingDown)) })
    }
}

impl Handler<RevealHint> for StudentActor {
    type Result = ResponseFuture<Result<HintAnswer, ActorError>>;

    fn handle(&mut self, msg: RevealHint, ctx: &mut Self::Context) -> Self::Result {
        self.last_active = Instant::now();
        if self.reload_failing {
            return Box::pin(async { Err(ActorError::Reloading) });
        }
        if self.queue.len() + self.checking >= MAX_QUEUED {
            return Box::pin(async { Err(ActorError::Overloaded) });
        }
        let (tx, rx) = oneshot::channel();
        if let Some(limits) = self.limits.clone() {
            self.check_shared_hint(limits, msg, tx, ctx);
        } else {
            if let Some(retry_after_secs) = self.hint_reveal_limited(now_ms()) {
                return Box::pin(async move { Err(ActorError::RateLimited { retry_after_secs }) });
            }
            self.queue.push_back(Pending::Hint {
                hint_id: msg.hint_id,
                xp_cost: msg.xp_cost,
                reply: tx,
                stale_tries: 0,
            });
            self.process_next(ctx);
        }
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
        ctx: &mut Self::Context,
    ) -> Self::Result {
        self.last_active = Instant::now();
        self.sockets.insert(sink.id, sink);
        let mut presence = self.presence.clone();
        presence.online = true;
        self.set_presence(presence, ctx);
        MessageResult(self.progress.clone())
    }
}

impl Handler<DetachSocket> for StudentActor {
    type Result = ();

    fn handle(&mut self, DetachSocket(id): DetachSocket, ctx: &mut Self::Context) {
        self.last_active = Instant::now();
        if self.sockets.remove(&id).is_some() && self.sockets.is_empty() {
            self.set_presence(Presence::default(), ctx);
        }
    }
}

impl Handler<StudentChanged> for StudentActor {
    type Result = ();

    fn handle(&mut self, msg: StudentChanged, ctx: &mut Self::Context) {
        if let Some(answer) = msg.answer
            && !self.recent_answers.contains_key(&answer.attempt_id)
        {
            // Its socket, if any, is on the other instance: every socket here gets it.
            self.push_answer(&answer, None, ctx);
            self.remember((*answer).clone());
        }
        self.refresh_wanted = true;
        self.process_next(ctx);
    }
}

impl Handler<SetActivity> for StudentActor {
    type Result = ();

    fn handle(&mut self, msg: SetActivity, ctx: &mut Self::Context) {
        self.last_active = Instant::now();
        if !self.sockets.is_empty() {
            self.activity(msg.exercise_id, msg.running_tests, ctx);
        }
    }
}
