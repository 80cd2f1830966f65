//! `ClassroomActor`: one per active class on each instance. Loads the roster and the class's
//! progress once, then folds the class's events into it (never polling, never waiting on I/O
//! after the load) and keeps a bounded ring of recent events with increasing offsets, from which
//! a reconnecting dashboard resumes.
//!
//! Dashboards subscribe here: each event is serialised once and the same bytes are offered to
//! every dashboard's bounded queue without waiting. A dashboard whose queue is full is marked
//! lagging and skipped until it asks for a fresh snapshot: one slow dashboard never delays another.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::registry::{LoadTimedOut, Registry, ReloadKind};
use crate::bus::{ClassEvent, Presence};
use crate::domain::ids::{ClassroomId, ExerciseId, UserId};
use crate::domain::progress::{ExerciseProgress, level_for};
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

/// An event with its place in the class's stream.
#[derive(Debug, Clone, Serialize)]
pub struct Delta {
    pub offset: u64,
    #[serde(flatten)]
    pub event: Arc<ClassEvent>,
}

/// The dashboards' `delta` message (docs/protocol.md): built here, below the socket layer, so
/// that the actor serialises each event once and hands the same bytes to every dashboard.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Frame<'a> {
    Delta {
        epoch: u64,
        offset: u64,
        #[serde(flatten)]
        event: &'a ClassEvent,
    },
}

impl Delta {
    /// This event as a dashboard receives it, in stream `epoch`.
    pub fn frame(&self, epoch: u64) -> Option<Arc<str>> {
        let frame = Frame::Delta {
            epoch,
            offset: self.offset,
            event: &self.event,
        };
        match serde_json::to_string(&frame) {
            Ok(s) => Some(Arc::from(s)),
            Err(e) => {
                tracing::error!(error = %e, "serialising a class event failed");
                None
            }
        }
    }
}

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
    /// Identifies this actor's event stream: offsets only compare within one epoch.
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

#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Apply(pub Arc<ClassEvent>);

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

/// A dashboard's socket as the class sees it: a bounded queue of serialised `delta` messages and
/// the flag raised when that queue was full.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub id: u64,
    pub tx: mpsc::Sender<Arc<str>>,
    pub lagging: Arc<AtomicBool>,
}

/// Registers a dashboard. Answers where it starts from: the missed events after `resume`
/// (epoch, offset) when the ring still has them all, else a snapshot. Every later event goes to
/// the subscriber's queue.
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
/// A failed reload is tried again after this long.
const RELOAD_RETRY: Duration = Duration::from_secs(1);
/// Requests waiting for one class's next reload (more are answered without waiting).
const MAX_RELOAD_WAITERS: usize = 256;

pub struct ClassroomActorConfig {
    pub store: Store,
    pub registry: Weak<Registry>,
    pub ring_capacity: usize,
    pub idle_timeout: Duration,
    pub load_timeout: Duration,
    pub dirty: Arc<AtomicBool>,
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
            next_offset: 1,
            epoch: crate::domain::time::now_ms() as u64,
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

    /// Replaces the roster and progress with freshly loaded ones; answers who joined and who left.
    fn replace_data(&mut self, data: ClassroomData) -> (Vec<Member>, Vec<UserId>) {
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

    fn push(&mut self, event: Arc<ClassEvent>) {
        if self.ring.len() >= self.ring_capacity {
            self.ring.pop_front();
        }
        let delta = Delta {
            offset: self.next_offset,
            event,
        };
        self.next_offset += 1;
        self.fan_out(&delta);
        self.ring.push_back(delta);
    }

    /// Offers the delta, serialised once, to every subscriber that keeps up. Never waits.
    fn fan_out(&mut self, delta: &Delta) {
        if self.subscribers.is_empty() {
            return;
        }
        let Some(frame) = delta.frame(self.epoch) else {
            return;
        };
        self.subscribers.retain(|_, s| {
            if s.tx.is_closed() {
                // Its socket ended (and its `Unsubscribe` may have been lost).
                return false;
            }
            if s.lagging.load(Ordering::Acquire) {
                return true;
            }
            match s.tx.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // Its backlog is dropped and it starts again from a snapshot (`Resync`).
                    s.lagging.store(true, Ordering::Release);
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    fn fold(&mut self, event: &ClassEvent) {
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

    /// Reloads roster and progress from the database. `lost_events`: events could not be
    /// delivered to this actor (its mailbox was full), so its stream has a gap: once reloaded it
    /// starts a new one (see `restart_stream`). A reload asked while one runs runs after it (the
    /// running one may have read the database before the change); a failed one is tried again a
    /// second later, until it succeeds or the class is deleted.
    fn reload(&mut self, ctx: &mut Context<Self>, lost_events: bool) {
        if self.reloading {
            self.reload_after_this_one(lost_events);
            return;
        }
        self.reloading = true;
        self.applied_now.append(&mut self.applied_next);
        let store = self.store.clone();
        let id = self.id;
        let limit = self.load_timeout;
        ctx.spawn(
            async move { ClassroomData::load_within(&store, id, limit).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    act.reloading = false;
                    if !matches!(result, Ok(Some(_))) {
                        act.during_reload.clear();
                    }
                    match result {
                        Ok(Some(data)) => {
                            let (joined, left) = act.replace_data(data);
                            for event in std::mem::take(&mut act.during_reload) {
                                act.fold(&event);
                            }
                            if lost_events {
                                act.restart_stream();
                            }
                            act.announce_roster_changes(joined, left);
                            for tx in act.applied_now.drain(..) {
                                let _ = tx.send(());
                            }
                        }
                        Ok(None) => {
                            // The class was deleted.
                            if let Some(registry) = act.registry.upgrade() {
                                registry.forget_classroom(act.id, &ctx.address());
                            }
                            ctx.stop();
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(
                                error = format!("{e:#}"),
                                "reloading a classroom failed; trying again in a second"
                            );
                            if let Some(registry) = act.registry.upgrade() {
                                registry.count_reload_failure(ReloadKind::Classroom);
                            }
                            // Its waiters wait for the next one.
                            act.applied_next.append(&mut act.applied_now);
                            ctx.run_later(RELOAD_RETRY, move |act, ctx| {
                                act.reload(ctx, lost_events)
                            });
                            return;
                        }
                    }
                    if let Some(lost_events) = act.reload_again.take() {
                        act.reload(ctx, lost_events);
                    }
                }),
        );
    }

    /// Another reload runs after the one in flight (which may have read the database before the
    /// change that asks for it).
    fn reload_after_this_one(&mut self, lost_events: bool) {
        if self.reload_again.is_none()
            && let Some(registry) = self.registry.upgrade()
        {
            registry.count_reload_queued();
        }
        self.reload_again = Some(self.reload_again.unwrap_or(false) || lost_events);
    }

    /// A stream with a gap must not be resumed across it: a new epoch turns every resume from
    /// the old one into a snapshot, and each live dashboard is flagged lagging and woken with an
    /// empty frame (never sent on), so that it asks for a fresh snapshot.
    fn restart_stream(&mut self) {
        self.epoch = (crate::domain::time::now_ms() as u64).max(self.epoch + 1);
        self.ring.clear();
        for s in self.subscribers.values() {
            s.lagging.store(true, Ordering::Release);
            let _ = s.tx.try_send(Arc::from(""));
        }
    }

    /// Roster changes found by a reload go through the bus like any event: the dashboards here
    /// get them as deltas, and other instances' actors fold them.
    fn announce_roster_changes(&self, joined: Vec<Member>, left: Vec<UserId>) {
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        for m in joined {
            let event = ClassEvent::StudentJoined {
                student_id: m.student_id,
                pseudonym: m.pseudonym,
                joined_at: m.joined_at,
                xp: m.xp,
            };
            registry.publish(self.id, Arc::new(event));
        }
        for student_id in left {
            registry.publish(self.id, Arc::new(ClassEvent::StudentLeft { student_id }));
        }
    }

    /// The events after `offset` of stream `epoch`, if the ring still has all of them.
    fn events_since(&self, epoch: u64, offset: u64) -> Option<Vec<Delta>> {
        let oldest = self
            .ring
            .front()
            .map(|d| d.offset)
            .unwrap_or(self.next_offset);
        if epoch != self.epoch || offset >= self.next_offset {
            // Another incarnation's offsets (a restart), or not ours at all.
            None
        } else if offset + 1 < oldest {
            // Some missed events have left the ring.
            None
        } else {
            Some(
                self.ring
                    .iter()
                    .filter(|d| d.offset > offset)
                    .cloned()
                    .collect(),
            )
        }
    }

    fn snapshot(&self) -> ClassroomSnapshot {
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

    fn handle(&mut self, Apply(event): Apply, _ctx: &mut Self::Context) {
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
        self.push(event);
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
        MessageResult(entries)
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
        let answer = match missed {
            Some(missed) => Subscription::Resumed {
                epoch: self.epoch,
                missed,
            },
            None => Subscription::Snapshot {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn deltas_serialise_flat() {
        let delta = Delta {
            offset: 12,
            event: Arc::new(ClassEvent::XpChanged {
                student_id: UserId(4),
                xp: 90,
            }),
        };
        let v: Value = serde_json::from_str(&delta.frame(77).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"type": "delta", "epoch": 77, "offset": 12, "kind": "xp_changed",
                   "student_id": 4, "xp": 90})
        );
        let presence = ClassEvent::PresenceChanged {
            student_id: UserId(4),
            presence: Presence {
                online: true,
                exercise_id: Some(ExerciseId(3)),
                running_tests: false,
                since: Some(5),
            },
            at: 6,
        };
        let delta = Delta {
            offset: 13,
            event: Arc::new(presence),
        };
        let v: Value = serde_json::from_str(&delta.frame(77).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"type": "delta", "epoch": 77, "offset": 13, "kind": "presence_changed",
                   "student_id": 4, "online": true, "exercise_id": 3, "running_tests": false,
                   "since": 5, "at": 6})
        );
    }
}
