//! Cross-instance events. Publishing goes only to the bus; local delivery comes back through the
//! bus's sink, so one instance and many run the same code. Two buses: `LocalBus`, in-process (one
//! instance, `redis.url` empty), and `RedisBus` (`redis`: several instances tied by Redis). Two
//! kinds of events: what happens in a class (`ClassEvent`, to the classroom actors) and sessions
//! that ended (`SessionEnded`, to the sockets bound to them and to the session caches).

pub mod redis;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::domain::ids::{AttemptId, ClassroomId, ExerciseId, UserId};
use crate::domain::progress::{Achievement, Badge, ExerciseProgress};

/// What happens in a class, as its `ClassroomActor`s (one per instance) fold it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ClassEvent {
    AttemptRecorded {
        student_id: UserId,
        exercise_id: ExerciseId,
        attempt_id: AttemptId,
        passed: bool,
        score: i32,
        at: i64,
        /// The student's progress on the exercise after this attempt (absolute, so applying it
        /// twice or late is harmless: the attempt count orders them).
        progress: ExerciseProgress,
        xp: i64,
    },
    BadgeAwarded {
        student_id: UserId,
        badge: Badge,
        at: i64,
    },
    AchievementUnlocked {
        student_id: UserId,
        achievement: Achievement,
        at: i64,
    },
    /// XP changed without an attempt (a hint revealed).
    XpChanged {
        student_id: UserId,
        xp: i64,
    },
    /// The student's sockets say where they are: online or not, on which exercise, running tests.
    PresenceChanged {
        student_id: UserId,
        #[serde(flatten)]
        presence: Presence,
        at: i64,
    },
    /// Published once per (student, exercise) until the student passes it.
    StudentStuck {
        student_id: UserId,
        exercise_id: ExerciseId,
        reason: StuckReason,
        failed_attempts: i32,
        at: i64,
    },
    StudentJoined {
        student_id: UserId,
        pseudonym: String,
        joined_at: i64,
        xp: i64,
    },
    StudentLeft {
        student_id: UserId,
    },
}

impl ClassEvent {
    /// The student the event is about.
    pub fn student_id(&self) -> UserId {
        match self {
            ClassEvent::AttemptRecorded { student_id, .. }
            | ClassEvent::BadgeAwarded { student_id, .. }
            | ClassEvent::AchievementUnlocked { student_id, .. }
            | ClassEvent::XpChanged { student_id, .. }
            | ClassEvent::PresenceChanged { student_id, .. }
            | ClassEvent::StudentStuck { student_id, .. }
            | ClassEvent::StudentJoined { student_id, .. }
            | ClassEvent::StudentLeft { student_id } => *student_id,
        }
    }
}

/// Where a student is, from their open sockets (several tabs count as one presence).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub online: bool,
    /// The exercise the student has open (the last one a tab focused).
    pub exercise_id: Option<ExerciseId>,
    /// The browser is running the exercise's tests.
    pub running_tests: bool,
    /// Since when (ms) the student has been on `exercise_id`.
    pub since: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StuckReason {
    /// `ws.stuck_failed_attempts` failed attempts on the exercise, none passed.
    FailedAttempts,
    /// `ws.stuck_after_secs` on the exercise without a pass.
    TimeOnExercise,
}

/// Sessions that ended (logout, a new sign-in in the same browser, a password change, a recovery
/// code reset, an account closed): every socket bound to them closes, on every instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SessionEnded {
    /// One session, by the SHA-256 of its token (`auth::session::token_hash`).
    Session { token_hash: String },
    /// Every session of a user.
    User { user_id: UserId },
    /// Not a session's end, but news for the same caches: a write on one instance changed what
    /// some users' own account views show (a class joined, renamed or archived, an assignment, a
    /// display name): every instance drops its cached `GET /api/v1/me` answers.
    AccountViews,
}

/// Receives the sessions that ended (this instance's sockets, and its session cache).
pub trait SessionSink: Send + Sync {
    fn session_ended(&self, ended: &SessionEnded);
    /// Ended sessions may have been missed (the Redis subscription was lost): whatever is cached
    /// about sessions must be checked again.
    fn sessions_unknown(&self) {}
}

/// An event's place in its class's shared stream (`RedisBus`): the same (epoch, offset) names the
/// same event on every instance. Events without one (`LocalBus`, or delivered directly while the
/// Redis subscription is down) are numbered by the instance's own actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPos {
    pub epoch: u64,
    /// 1, 2, 3… in the epoch; in a head (`EventBus::stream_head`), the last one given (0: none).
    pub offset: u64,
}

/// Receives the events published for classes (the actor registry, which hands them to the
/// classroom actors running on this instance).
pub trait EventSink: Send + Sync {
    fn deliver(&self, classroom: ClassroomId, event: Arc<ClassEvent>, pos: Option<StreamPos>);
    /// Events of the class (of every class here, `None`) may have been lost on the way: its
    /// actor reloads from the database and starts a new stream, so its dashboards resync.
    fn resync(&self, classroom: Option<ClassroomId>);
    /// The classes whose events this instance needs (an actor runs or loads here).
    fn classes(&self) -> Vec<ClassroomId>;
}

pub trait EventBus: Send + Sync + std::fmt::Debug {
    fn publish(&self, classroom: ClassroomId, event: Arc<ClassEvent>);
    /// Connects the bus to this instance's sink (once, at start-up).
    fn attach(&self, sink: Weak<dyn EventSink>);
    /// Tells every instance, this one included, that sessions ended.
    fn publish_session_ended(&self, ended: SessionEnded);
    /// Adds a receiver of ended sessions (this instance's sockets, its session cache), at
    /// start-up.
    fn attach_sessions(&self, sink: Weak<dyn SessionSink>);
    /// A class's actor is about to load here: the bus starts listening to the class. Answers
    /// once it listens (the actor then loads what was committed before any event it will get),
    /// or `None` when there is nothing to wait for.
    fn watch_class(&self, _classroom: ClassroomId) -> Option<oneshot::Receiver<()>> {
        None
    }
    /// The class's shared stream as it is now: its epoch and the last offset given (the stream
    /// is created when there is none). `None`: no shared stream (`LocalBus`, the subscription is
    /// down, Redis failed or did not answer within `redis.command_timeout_ms`).
    fn stream_head(&self, _classroom: ClassroomId) -> BoxFuture<'static, Option<StreamPos>> {
        Box::pin(std::future::ready(None))
    }
    /// The events `after + 1 ..= upto` of the class's shared stream `epoch`, each with its
    /// offset, if the stream still holds every one of them (`None` otherwise, or on any error or
    /// timeout).
    fn recent_events(
        &self,
        _classroom: ClassroomId,
        _epoch: u64,
        _after: u64,
        _upto: u64,
    ) -> BoxFuture<'static, Option<Vec<(u64, ClassEvent)>>> {
        Box::pin(std::future::ready(None))
    }
    /// Stops the bus's tasks (the server is stopping).
    fn shutdown(&self) {}
    /// What this instance published and received so far (`/metrics`).
    fn stats(&self) -> BusStats;
}

/// Events counted by a bus since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Events this instance published (to Redis: sent).
    pub published: u64,
    /// Events delivered from the bus to this instance's sink.
    pub received: u64,
    /// Messages dropped because the publish queue was full.
    pub dropped_queue_full: u64,
    /// Messages dropped because Redis failed or did not answer in time.
    pub dropped_redis_error: u64,
    /// Messages received twice (dropped the second time).
    pub duplicates: u64,
    /// Messages that showed earlier ones of their origin were lost.
    pub gaps: u64,
    /// Times the subscription came back after being lost.
    pub reconnects: u64,
    /// Resyncs asked of this instance's classes (a class, or all of them).
    pub resyncs: u64,
    /// Whether the subscription is up (`None`: an in-process bus, nothing to subscribe to).
    pub subscription_up: Option<bool>,
}

/// The single-instance bus: delivers synchronously to this instance's sinks.
#[derive(Default)]
pub struct LocalBus {
    sink: OnceLock<Weak<dyn EventSink>>,
    sessions: std::sync::Mutex<Vec<Weak<dyn SessionSink>>>,
    published: AtomicU64,
    received: AtomicU64,
}

impl std::fmt::Debug for LocalBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalBus")
    }
}

impl EventBus for LocalBus {
    fn publish(&self, classroom: ClassroomId, event: Arc<ClassEvent>) {
        self.published.fetch_add(1, Ordering::Relaxed);
        if let Some(sink) = self.sink.get().and_then(Weak::upgrade) {
            self.received.fetch_add(1, Ordering::Relaxed);
            sink.deliver(classroom, event, None);
        }
    }

    fn attach(&self, sink: Weak<dyn EventSink>) {
        let _ = self.sink.set(sink);
    }

    fn publish_session_ended(&self, ended: SessionEnded) {
        let sinks: Vec<_> = {
            let sinks = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            sinks.iter().filter_map(Weak::upgrade).collect()
        };
        for sink in sinks {
            sink.session_ended(&ended);
        }
    }

    fn attach_sessions(&self, sink: Weak<dyn SessionSink>) {
        let mut sinks = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sinks.push(sink);
    }

    fn stats(&self) -> BusStats {
        BusStats {
            published: self.published.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            ..BusStats::default()
        }
    }
}
