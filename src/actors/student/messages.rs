//! What a student's actor is asked, and what it answers.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::domain::ids::{AttemptId, ClassroomId, ExerciseId, HintId};
use crate::domain::progress::StudentProgress;
use crate::domain::verdict::CheckedBy;

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
    /// The student's state is being reloaded from the database after a write that may have
    /// committed, and the reload failed: no change is computed on a stale base meanwhile.
    #[error("reloading")]
    Reloading,
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

/// Another instance committed a change of this student's state (through Redis,
/// `cluster::students`): the actor reloads before its next change, and pushes the attempt's
/// answer, if any, to the sockets it holds.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct StudentChanged {
    pub answer: Option<Arc<SubmitAnswer>>,
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
