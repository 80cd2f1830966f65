//! What a student reads about themselves, the same over HTTP and the socket: their progress
//! (`GET /me/progress`, the socket's `progress`), their badges, and a revealed hint.

use serde_json::{Value, json};

use crate::actors::student::RevealHint;
use crate::domain::ids::{HintId, UserId};
use crate::domain::progress::{Achievement, Badge, StudentProgress, paris_day};
use crate::domain::time::now_ms;
use crate::error::{AppError, Result};
use crate::state::AppState;

/// A student's progress as `GET /me/progress` and the socket's `progress` message show it.
pub fn progress_view(p: &StudentProgress) -> Value {
    let mut exercises: Vec<_> = p.exercises.iter().collect();
    exercises.sort_by_key(|(id, _)| **id);
    json!({
        "student_id": p.student_id,
        "xp": p.xp,
        "level": p.level(),
        "passed_count": p.passed_count(),
        "streak": {
            "current": p.streak.current_on(paris_day(now_ms())),
            "longest": p.streak.longest,
        },
        "hints_used": p.hints_used.len(),
        "exercises": exercises.into_iter().map(|(id, e)| json!({
            "exercise_id": id,
            "attempts": e.attempts,
            "failed_attempts": e.failed_attempts,
            "best_score": e.best_score,
            "passed": e.passed,
            "first_passed_at": e.first_passed_at,
            "last_attempt_at": e.last_attempt_at,
        })).collect::<Vec<_>>(),
    })
}

/// Every badge and achievement, earned or not (`GET /me/badges`).
pub fn badges_view(p: &StudentProgress) -> Value {
    json!({
        "xp": p.xp,
        "level": p.level(),
        "badges": Badge::ALL.iter().map(|b| json!({
            "code": b.code(),
            "title": b.title(),
            "xp_required": b.threshold(),
            "earned": p.badges.contains(b),
        })).collect::<Vec<_>>(),
        "achievements": Achievement::ALL.iter().map(|a| json!({
            "code": a.code(),
            "title": a.title(),
            "xp_bonus": a.xp_bonus(),
            "earned": p.achievements.contains(a),
        })).collect::<Vec<_>>(),
    })
}

/// Reveals a hint (HTTP and the socket's `hint_reveal`): the body both answer.
pub async fn reveal(state: &AppState, student: UserId, hint_id: HintId) -> Result<Value> {
    let (exercise, hint) = state
        .catalogue
        .hint(hint_id)
        .ok_or(AppError::NotFound("Indice introuvable."))?;
    let reveal = RevealHint {
        hint_id: hint.id,
        xp_cost: hint.xp_cost,
    };
    let answer = state.registry.ask_student(student, reveal).await??;
    Ok(json!({
        "hint_id": hint.id,
        "exercise_id": exercise.id,
        "position": hint.position,
        "text": hint.text,
        "xp_cost": hint.xp_cost,
        "xp_spent": answer.xp_spent,
        "already_revealed": answer.already_revealed,
        "total_xp": answer.total_xp,
        "level": answer.level,
    }))
}
