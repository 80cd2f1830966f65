//! Cross-instance events. Publishing goes only to the bus; local delivery comes back through the
//! bus's sink, so one instance and many run the same code (the Redis bus, a later feature, will
//! implement the same trait). Today: `LocalBus`, in-process.

use std::sync::{Arc, OnceLock, Weak};

use serde::Serialize;

use crate::domain::ids::{ClassroomId, ExerciseId, UserId};
use crate::domain::progress::{Achievement, Badge, ExerciseProgress};

/// What happens in a class, as its `ClassroomActor`s (one per instance) fold it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ClassEvent {
    AttemptRecorded {
        student_id: UserId,
        exercise_id: ExerciseId,
        attempt_id: String,
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
    XpChanged { student_id: UserId, xp: i64 },
}

/// Receives the events published for classes (the actor registry, which hands them to the
/// classroom actors running on this instance).
pub trait EventSink: Send + Sync {
    fn deliver(&self, classroom: ClassroomId, event: Arc<ClassEvent>);
}

pub trait EventBus: Send + Sync + std::fmt::Debug {
    fn publish(&self, classroom: ClassroomId, event: Arc<ClassEvent>);
    /// Connects the bus to this instance's sink (once, at start-up).
    fn attach(&self, sink: Weak<dyn EventSink>);
}

/// The single-instance bus: delivers synchronously to this instance's sink.
#[derive(Default)]
pub struct LocalBus {
    sink: OnceLock<Weak<dyn EventSink>>,
}

impl std::fmt::Debug for LocalBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalBus")
    }
}

impl EventBus for LocalBus {
    fn publish(&self, classroom: ClassroomId, event: Arc<ClassEvent>) {
        if let Some(sink) = self.sink.get().and_then(Weak::upgrade) {
            sink.deliver(classroom, event);
        }
    }

    fn attach(&self, sink: Weak<dyn EventSink>) {
        let _ = self.sink.set(sink);
    }
}
