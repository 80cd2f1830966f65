//! Reads from the hot state (the actors), never from the database once an actor is loaded:
//! a student's own progress and badges, a class's progress grid and leaderboard; and hint
//! reveals, which go through the student's actor like submissions.

use actix_web::{HttpResponse, get, post, web};
use serde_json::{Value, json};

use crate::actors::classroom::{Access, CheckAccess, GetLeaderboard, GetSnapshot};
use crate::actors::student::{GetProgress, RevealHint};
use crate::auth::{Identity, StudentIdentity, TeacherIdentity};
use crate::domain::ids::UserId;
use crate::domain::ids::{ClassroomId, HintId};
use crate::domain::progress::{Achievement, Badge, StudentProgress, paris_day};
use crate::domain::time::now_ms;
use crate::error::{AppError, Result};
use crate::http::submissions::actor_error;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(my_progress)
        .service(my_badges)
        .service(classroom_progress)
        .service(classroom_leaderboard)
        .service(reveal_hint);
}

#[get("/me/progress")]
async fn my_progress(state: web::Data<AppState>, student: StudentIdentity) -> Result<HttpResponse> {
    let p = state
        .registry
        .ask_student(student.user_id, GetProgress)
        .await?;
    Ok(HttpResponse::Ok().json(progress_view(&p)))
}

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

#[get("/me/badges")]
async fn my_badges(state: web::Data<AppState>, student: StudentIdentity) -> Result<HttpResponse> {
    let p = state
        .registry
        .ask_student(student.user_id, GetProgress)
        .await?;
    Ok(HttpResponse::Ok().json(json!({
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
    })))
}

fn classroom_id(raw: &str) -> Result<ClassroomId> {
    ClassroomId::parse(raw).ok_or(AppError::NotFound("Classe introuvable."))
}

/// The class's access for this user; anything but `wanted` answers 404 (a class that is not the
/// caller's does not exist for them).
async fn require(
    state: &AppState,
    id: ClassroomId,
    user: Identity,
    teacher_only: bool,
) -> Result<()> {
    let access = state
        .registry
        .ask_classroom(id, CheckAccess(user.user_id))
        .await?;
    match access {
        Access::Teacher => Ok(()),
        Access::Member if !teacher_only => Ok(()),
        _ => Err(AppError::NotFound("Classe introuvable.")),
    }
}

#[get("/classrooms/{id}/progress")]
async fn classroom_progress(
    state: web::Data<AppState>,
    teacher: TeacherIdentity,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let id = classroom_id(&id)?;
    let user = Identity {
        user_id: teacher.user_id,
        role: teacher.role,
    };
    require(&state, id, user, true).await?;
    let snapshot = state.registry.ask_classroom(id, GetSnapshot).await?;
    Ok(HttpResponse::Ok().json(snapshot))
}

#[get("/classrooms/{id}/leaderboard")]
async fn classroom_leaderboard(
    state: web::Data<AppState>,
    user: Identity,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let id = classroom_id(&id)?;
    require(&state, id, user, false).await?;
    let entries = state.registry.ask_classroom(id, GetLeaderboard).await?;
    Ok(HttpResponse::Ok().json(json!({ "classroom_id": id, "entries": entries })))
}

#[post("/hints/{id}/reveal")]
async fn reveal_hint(
    state: web::Data<AppState>,
    student: StudentIdentity,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let hint_id = HintId::parse(&id).ok_or(AppError::NotFound("Indice introuvable."))?;
    Ok(HttpResponse::Ok().json(reveal(&state, student.user_id, hint_id).await?))
}

/// Reveals a hint (HTTP and the socket's `hint_reveal`): the body both answer.
pub async fn reveal(state: &AppState, student: UserId, hint_id: HintId) -> Result<Value> {
    let (exercise, hint) = state
        .catalogue
        .hint(hint_id)
        .ok_or(AppError::NotFound("Indice introuvable."))?;
    let answer = state
        .registry
        .ask_student(
            student,
            RevealHint {
                hint_id: hint.id,
                xp_cost: hint.xp_cost,
            },
        )
        .await?
        .map_err(actor_error)?;
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
