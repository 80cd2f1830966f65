//! The one submit path, for `POST /api/v1/exercises/{id}/attempts`, the portal's
//! `POST /exercises/{id}/submit/` and the socket's `submit`: validation and grading here (one call
//! to `grading::Grader`); the rules, the rate limit and the group commit in the student's actor.
//! Answered once the attempt is stored.

use serde::Deserialize;

use crate::actors::student::{Submit, SubmitAnswer, SubmitAttempt};
use crate::domain::ids::{AttemptId, ExerciseId, UserId};
use crate::domain::text::{INVALID_TEXT, json_storable, storable};
use crate::error::{AppError, Result};
use crate::grading::Work;
use crate::state::AppState;

/// One longest attempt we believe (a day); anything beyond is a client bug.
const MAX_DURATION_MS: i64 = 86_400_000;

/// A submission as both adapters receive it (the HTTP body; the socket's `submit` fields): the
/// student's answer, never a verdict (docs/api.md). `passed` and `score` are read only to refuse
/// them clearly.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttemptBody {
    /// Made by the client (a UUID) so that a resend is stored once; the server makes one if absent.
    pub attempt_id: Option<String>,
    #[serde(default)]
    pub duration_ms: Option<i64>,
    #[serde(default)]
    pub answer: Option<serde_json::Value>,
    #[serde(default)]
    pub passed: Option<serde_json::Value>,
    #[serde(default)]
    pub score: Option<serde_json::Value>,
}

/// A submission once its adapter has read it.
#[derive(Debug)]
pub struct Submission {
    pub attempt_id: Option<String>,
    pub duration_ms: Option<i64>,
    pub work: Work,
}

impl AttemptBody {
    /// Refuses a verdict sent by the client (`verdict_not_accepted`) and a missing answer.
    pub fn into_submission(self) -> Result<Submission> {
        if self.passed.is_some() || self.score.is_some() {
            return Err(AppError::bad_request(
                "verdict_not_accepted",
                "Le serveur calcule lui-même `passed` et `score` : envoyez la réponse (`answer`).",
            ));
        }
        let answer = self.answer.ok_or_else(|| {
            AppError::bad_request(
                "invalid_answer",
                "Le champ `answer` (la réponse de l'élève) est obligatoire.",
            )
        })?;
        Ok(Submission {
            attempt_id: self.attempt_id,
            duration_ms: self.duration_ms,
            work: Work::Answer(answer),
        })
    }
}

/// Validates and grades, then hands the attempt to the student's actor and waits (bounded) for
/// its answer. `origin_socket` is the student's socket that sent it: it gets this answer
/// directly, their other sockets get it pushed.
pub async fn record_attempt(
    state: &AppState,
    student: UserId,
    exercise_id: &str,
    submission: Submission,
    origin_socket: Option<u64>,
) -> Result<SubmitAnswer> {
    let resend_of = submission.attempt_id.clone();
    let mut attempt = match validate(state, exercise_id, submission).await {
        Ok(attempt) => attempt,
        // A resend gets the stored answer, whatever it carries now.
        Err(e) => return stored_answer(state, student, exercise_id, resend_of, e).await,
    };
    attempt.origin_socket = origin_socket;
    Ok(state
        .registry
        .ask_student(student, Submit(attempt))
        .await??)
}

/// Checks a submission against the catalogue and the limits, and grades it; nothing is stored
/// on error.
pub async fn validate(
    state: &AppState,
    exercise_id: &str,
    submission: Submission,
) -> Result<SubmitAttempt> {
    let exercise = ExerciseId::parse(exercise_id)
        .and_then(|id| state.catalogue.exercise(id))
        .ok_or(AppError::NotFound("Exercice introuvable."))?;
    // The socket's messages do not go through the HTTP body check: every text of the answer is
    // checked here, for both adapters (PostgreSQL cannot store NUL).
    let text_ok = match &submission.work {
        Work::Answer(answer) => json_storable(answer),
        Work::BrowserVerdict { code, .. } => storable(code),
    };
    if !text_ok {
        return Err(AppError::bad_request("invalid_text", INVALID_TEXT));
    }
    if let Some(d) = submission.duration_ms
        && !(0..=MAX_DURATION_MS).contains(&d)
    {
        return Err(AppError::bad_request(
            "invalid_duration",
            "La durée doit être comprise entre 0 et 24 heures (en millisecondes).",
        ));
    }
    let attempt_id = match submission.attempt_id {
        Some(raw) => AttemptId::parse(&raw).ok_or_else(|| {
            AppError::bad_request("invalid_attempt_id", "attempt_id doit être un UUID.")
        })?,
        None => AttemptId::random(),
    };
    let graded = state.grader.grade_work(exercise, submission.work).await?;
    Ok(SubmitAttempt {
        attempt_id,
        exercise_id: exercise.id,
        xp_reward: exercise.xp_reward,
        passed: graded.verdict.passed,
        score: graded.verdict.score,
        code: graded.code,
        duration_ms: submission.duration_ms,
        checked_by: graded.verdict.checked_by,
        feedback: graded.verdict.feedback,
        details: graded.details,
        origin_socket: None,
    })
}

/// A submission refused before the actor (invalid answer, SQL refused…) that resends an attempt
/// id already stored for this student and exercise: answered with the stored answer, as the
/// actor would. Read only on this error path, so the hot path keeps no database read.
async fn stored_answer(
    state: &AppState,
    student: UserId,
    exercise_id: &str,
    attempt_id: Option<String>,
    refusal: AppError,
) -> Result<SubmitAnswer> {
    let Some(id) = attempt_id.as_deref().and_then(AttemptId::parse) else {
        return Err(refusal);
    };
    if !matches!(refusal, AppError::BadRequest { .. }) {
        return Err(refusal);
    }
    match state.store.stored_outcome(id.as_str()).await? {
        Some((owner, outcome)) if owner == student => {
            match serde_json::from_str::<SubmitAnswer>(&outcome) {
                Ok(answer) if answer.exercise_id.to_string() == exercise_id.trim() => Ok(answer),
                _ => Err(refusal),
            }
        }
        _ => Err(refusal),
    }
}
