//! `ClassroomActor`: one per active class on each instance. Loads the roster and the class's
//! progress once, then folds the class's events into it (never polling, never waiting on I/O
//! after the load) and keeps a bounded ring of recent events with increasing offsets, from which
//! a reconnecting dashboard resumes. With Redis the offsets are the class's shared stream's (the
//! same on every instance), and a dashboard resumes from that stream what the ring lacks.
//!
//! Dashboards subscribe here: each event is serialised once and the same bytes are offered to
//! every dashboard's bounded queue without waiting. A dashboard whose queue is full is marked
//! lagging and skipped until it asks for a fresh snapshot: one slow dashboard never delays another.
//!
//! Its jobs, one module each: `data` (the roster and progress, and how an event folds into
//! them), `stream` (the ring of recent events, the epoch, the subscribers' fan-out), `reload`
//! (reloading from the database: again after a reload asked meanwhile, retried after a failure)
//! and `views` (the snapshot and the leaderboard).

mod data;
mod reload;
mod stream;
mod views;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::registry::Registry;
use crate::bus::{ClassEvent, StreamPos};
use crate::domain::ids::{ClassroomId, ExerciseId, UserId};
use crate::domain::progress::ExerciseProgress;
use crate::store::Store;

pub use data::{ClassroomData, Member};
pub use stream::{Delta, Subscriber};
pub use views::{ClassroomSnapshot, ExerciseAggregate, GridCell, LeaderboardEntry, StudentRow};

/// An event of the class, with its place in the class's shared stream when it has one.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Apply {
    pub event: Arc<ClassEvent>,
    pub pos: Option<StreamPos>,
}

#[derive(Message, Clone)]
#[rtype(result = "ClassroomSnapshot")]
pub struct GetSnapshot;

#[derive(Message, Clone)]
#[rtype(result = "Vec<LeaderboardEntry>")]
pub struct GetLeaderboard;

/// The events after `offset` of stream `epoch`, or `None` when some of them have left the ring or
/// the stream is another one (the actor restarted): take a snapshot then.
#[derive(Message, Clone)]
#[rtype(result = "Option<Vec<Delta>>")]
pub struct EventsSince {
    pub epoch: u64,
    pub offset: u64,
}

/// Reload roster and XP from the database (a student joined or left, a setting changed).
/// `applied`, if given, is answered once a reload that read the database after this message
/// arrived has been applied (not answered, but dropped, when more than `MAX_RELOAD_WAITERS`
/// wait, or when the class stops).
#[derive(Message, Default)]
#[rtype(result = "()")]
pub struct Reload {
    pub applied: Option<oneshot::Sender<()>>,
}

/// Registers a dashboard. Answers where it starts from: the missed events after `resume`
/// (epoch, offset) when the ring still has them all, those the ring has when the older ones are
/// to be read from the shared stream (`Behind`), else a snapshot. Every later event goes to the
/// subscriber's queue.
#[derive(Message, Clone)]
#[rtype(result = "Subscription")]
pub struct Subscribe {
    pub resume: Option<(u64, u64)>,
    pub subscriber: Subscriber,
}

#[derive(Debug, Clone)]
pub enum Subscription {
    /// `resume_failed`: a resume was asked for and the missed events are gone.
    Snapshot {
        snapshot: ClassroomSnapshot,
        resume_failed: bool,
    },
    Resumed {
        epoch: u64,
        missed: Vec<Delta>,
    },
    /// The events `after + 1 ..= upto` of the shared stream `epoch` have left the ring (or never
    /// were in it: the class loaded here later): read them from the stream, then send `then`.
    /// If the stream lacks them, ask `Resync` for a snapshot.
    Behind {
        epoch: u64,
        after: u64,
        upto: u64,
        then: Vec<Delta>,
    },
}

/// A lagging subscriber that has emptied its queue asks to start again from a snapshot; events
/// after it go to its queue again. `None` if the class does not know the subscriber.
#[derive(Message, Clone)]
#[rtype(result = "Option<ClassroomSnapshot>")]
pub struct Resync(pub u64);

#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Unsubscribe(pub u64);

pub struct ClassroomActor {
    id: ClassroomId,
    teacher_id: UserId,
    members: BTreeMap<UserId, Member>,
    progress: HashMap<UserId, HashMap<ExerciseId, ExerciseProgress>>,
    ring: VecDeque<Delta>,
    ring_capacity: usize,
    next_offset: u64,
    epoch: u64,
    /// `epoch` is the class's shared stream's (Redis), not one of this actor's own.
    shared: bool,
    store: Store,
    registry: Weak<Registry>,
    /// Set by the registry when an event could not be delivered (mailbox full): reload.
    dirty: Arc<AtomicBool>,
    idle_timeout: Duration,
    last_active: Instant,
    load_timeout: Duration,
    reloading: bool,
    /// A reload was asked while one was running (which may have read the database before the
    /// change): run another one after it. `Some(lost_events)`.
    reload_again: Option<bool>,
    /// Waiting for the reload in flight, and for the next one.
    applied_now: Vec<oneshot::Sender<()>>,
    applied_next: Vec<oneshot::Sender<()>>,
    /// Events that arrived during the reload, folded again after it; at most `ring_capacity`
    /// (past it: dropped, and another reload with a new stream epoch follows).
    during_reload: Vec<Arc<ClassEvent>>,
    stuck: HashMap<UserId, BTreeSet<ExerciseId>>,
    subscribers: HashMap<u64, Subscriber>,
}

/// How often a class checks whether it must reload (an event could not be delivered).
const DIRTY_CHECK: Duration = Duration::from_secs(1);
/// Requests waiting for one class's next reload (more are answered without waiting).
const MAX_RELOAD_WAITERS: usize = 256;

pub struct ClassroomActorConfig {
    pub store: Store,
    pub registry: Weak<Registry>,
    pub ring_capacity: usize,
    pub idle_timeout: Duration,
    pub load_timeout: Duration,
    pub dirty: Arc<AtomicBool>,
    /// The class's shared stream before the load (with Redis, when subscribed).
    pub stream: Option<StreamPos>,
}
impl ClassroomActor {
    pub fn new(id: ClassroomId, data: ClassroomData, config: ClassroomActorConfig) -> Self {
        let mut actor = ClassroomActor {
            id,
            teacher_id: data.teacher_id,
            members: BTreeMap::new(),
            progress: HashMap::new(),
            ring: VecDeque::new(),
            ring_capacity: config.ring_capacity.max(1),
            next_offset: config.stream.map_or(1, |s| s.offset + 1),
            epoch: config
                .stream
                .map_or(crate::domain::time::now_ms() as u64, |s| s.epoch),
            shared: config.stream.is_some(),
            store: config.store,
            registry: config.registry,
            dirty: config.dirty,
            idle_timeout: config.idle_timeout,
            last_active: Instant::now(),
            load_timeout: config.load_timeout,
            reloading: false,
            reload_again: None,
            applied_now: Vec::new(),
            applied_next: Vec::new(),
            during_reload: Vec::new(),
            stuck: HashMap::new(),
            subscribers: HashMap::new(),
        };
        actor.replace_data(data);
        actor
    }
}

impl Actor for ClassroomActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Events that arrived while this actor was loading were not delivered: catch up.
        if self.dirty.swap(false, Ordering::AcqRel) {
            self.reload(ctx, true);
        }
        ctx.run_interval(DIRTY_CHECK, |act, ctx| {
            if act.dirty.swap(false, Ordering::AcqRel) {
                act.reload(ctx, true);
            }
        });
        let check_every = (self.idle_timeout / 4).max(Duration::from_millis(50));
        ctx.run_interval(check_every, |act, ctx| {
            // A dashboard keeps the class: it waits for its events. One whose socket ended
            // without its `Unsubscribe` arriving does not.
            act.subscribers.retain(|_, s| !s.tx.is_closed());
            if act.last_active.elapsed() >= act.idle_timeout && act.subscribers.is_empty() {
                if let Some(registry) = act.registry.upgrade() {
                    registry.forget_classroom(act.id, &ctx.address());
                }
                ctx.stop();
            }
        });
    }
}

impl Handler<Apply> for ClassroomActor {
    type Result = ();

    fn handle(&mut self, Apply { event, pos }: Apply, ctx: &mut Self::Context) {
        self.fold(&event);
        if self.reloading {
            // Folded again after the reload, which may have read the database before this
            // event's commit (folding is idempotent: absolute values ordered by attempt count).
            if self.during_reload.len() < self.ring_capacity {
                self.during_reload.push(event.clone());
            } else {
                // Too many to keep: another reload follows this one, and the stream restarts.
                self.during_reload.clear();
                self.reload_after_this_one(true);
            }
        }
        if self.place(event, pos) {
            // Events were missed (or the stream is another one): reload what they changed.
            self.reload(ctx, true);
        }
    }
}

impl Handler<GetSnapshot> for ClassroomActor {
    type Result = MessageResult<GetSnapshot>;

    fn handle(&mut self, _: GetSnapshot, _ctx: &mut Self::Context) -> Self::Result {
        self.last_active = Instant::now();
        MessageResult(self.snapshot())
    }
}

impl Handler<GetLeaderboard> for ClassroomActor {
    type Result = MessageResult<GetLeaderboard>;

    fn handle(&mut self, _: GetLeaderboard, _ctx: &mut Self::Context) -> Self::Result {
        self.last_active = Instant::now();
        MessageResult(self.leaderboard())
    }
}

impl Handler<EventsSince> for ClassroomActor {
    type Result = MessageResult<EventsSince>;

    fn handle(&mut self, msg: EventsSince, _ctx: &mut Self::Context) -> Self::Result {
        let EventsSince { epoch, offset } = msg;
        self.last_active = Instant::now();
        MessageResult(self.events_since(epoch, offset))
    }
}

impl Handler<Reload> for ClassroomActor {
    type Result = ();

    fn handle(&mut self, msg: Reload, ctx: &mut Self::Context) {
        if let Some(tx) = msg.applied
            && self.applied_next.len() < MAX_RELOAD_WAITERS
        {
            self.applied_next.push(tx);
        }
        self.reload(ctx, false);
    }
}

impl Handler<Subscribe> for ClassroomActor {
    type Result = MessageResult<Subscribe>;

    fn handle(&mut self, msg: Subscribe, _ctx: &mut Self::Context) -> Self::Result {
        self.last_active = Instant::now();
        let missed = msg
            .resume
            .and_then(|(epoch, offset)| self.events_since(epoch, offset));
        let behind = match (&missed, msg.resume) {
            (None, Some((epoch, offset))) => self.behind(epoch, offset),
            _ => None,
        };
        let answer = match (missed, behind) {
            (Some(missed), _) => Subscription::Resumed {
                epoch: self.epoch,
                missed,
            },
            (None, Some(upto)) => Subscription::Behind {
                epoch: self.epoch,
                after: msg.resume.map_or(0, |(_, offset)| offset),
                upto,
                then: self.ring.iter().cloned().collect(),
            },
            (None, None) => Subscription::Snapshot {
                snapshot: self.snapshot(),
                resume_failed: msg.resume.is_some(),
            },
        };
        // Registered in the same turn as the answer is computed: no event falls in between.
        self.subscribers.insert(msg.subscriber.id, msg.subscriber);
        MessageResult(answer)
    }
}

impl Handler<Resync> for ClassroomActor {
    type Result = MessageResult<Resync>;

    fn handle(&mut self, Resync(id): Resync, _ctx: &mut Self::Context) -> Self::Result {
        self.last_active = Instant::now();
        let Some(subscriber) = self.subscribers.get(&id) else {
            return MessageResult(None);
        };
        subscriber.lagging.store(false, Ordering::Release);
        MessageResult(Some(self.snapshot()))
    }
}

impl Handler<Unsubscribe> for ClassroomActor {
    type Result = ();

    fn handle(&mut self, Unsubscribe(id): Unsubscribe, _ctx: &mut Self::Context) {
        self.last_active = Instant::now();
        self.subscribers.remove(&id);
    }
}
