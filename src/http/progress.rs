//! Reads from the hot state (the actors), never from the database once an actor is loaded:
//! a student's own progress and badges, a class's progress grid and leaderboard; and hint
//! reveals, which go through the student's actor like submissions. The views are
//! `service::views`, shared with the student's socket.

use actix_web::{HttpResponse, get, post, web};
use serde_json::{Value, json};

use crate::actors::classroom::{GetLeaderboard, GetSnapshot, LeaderboardEntry};
use crate::actors::student::GetProgress;
use crate::auth::{Identity, StudentIdentity, TeacherIdentity};
use crate::domain::ids::{ClassroomId, ExerciseId, HintId, UserId};
use crate::domain::progress::level_for;
use crate::error::{AppError, Result};
use crate::service::access::{Need, require_classroom};
use crate::service::views::{badges_view, progress_view, reveal};
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

#[get("/me/badges")]
async fn my_badges(state: web::Data<AppState>, student: StudentIdentity) -> Result<HttpResponse> {
    let p = state
        .registry
        .ask_student(student.user_id, GetProgress)
        .await?;
    Ok(HttpResponse::Ok().json(badges_view(&p)))
}

fn classroom_id(raw: &str) -> Result<ClassroomId> {
    ClassroomId::parse(raw).ok_or(AppError::NotFound("Classe introuvable."))
}

#[get("/classrooms/{id}/progress")]
async fn classroom_progress(
    state: web::Data<AppState>,
    teacher: TeacherIdentity,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let id = classroom_id(&id)?;
    require_classroom(&state, id, teacher.user_id, Need::Teacher).await?;
    let snapshot = state.registry.ask_classroom(id, GetSnapshot).await?;
    let mut body = serde_json::to_value(&snapshot).map_err(anyhow::Error::from)?;
    add_checked_by(&state, id, &mut body).await?;
    Ok(HttpResponse::Ok().json(body))
}

/// Each grid cell says how its attempts were checked: `{"server": n, "browser": m}` (read from
/// the database when a teacher opens the class's progress, not on the submission path).
async fn add_checked_by(state: &AppState, id: ClassroomId, body: &mut Value) -> Result<()> {
    let counts = state.store.classroom_checked_by(id).await?;
    if let Some(Value::Array(grid)) = body.get_mut("grid") {
        for cell in grid {
            let key = (
                cell.get("student_id").and_then(Value::as_i64),
                cell.get("exercise_id").and_then(Value::as_i64),
            );
            let (Some(student), Some(exercise)) = key else {
                continue;
            };
            let c = counts
                .get(&(UserId(student), ExerciseId(exercise)))
                .copied()
                .unwrap_or_default();
            if let Value::Object(map) = cell {
                map.insert(
                    "checked_by".into(),
                    json!({ "server": c.server, "browser": c.browser }),
                );
            }
        }
    }
    Ok(())
}

#[get("/classrooms/{id}/leaderboard")]
async fn classroom_leaderboard(
    state: web::Data<AppState>,
    user: Identity,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let id = classroom_id(&id)?;
    require_classroom(&state, id, user.user_id, Need::Member).await?;
    let entries = state.registry.ask_classroom(id, GetLeaderboard).await?;
    let entries = server_checked_only(&state, id, entries).await?;
    Ok(HttpResponse::Ok().json(json!({ "classroom_id": id, "entries": entries })))
}

/// With the class setting `leaderboard_server_checked_only`, the same students ranked by the XP
/// their server-checked attempts earned (read from the database: the hot state holds total XP).
async fn server_checked_only(
    state: &AppState,
    id: ClassroomId,
    entries: Vec<LeaderboardEntry>,
) -> Result<Vec<LeaderboardEntry>> {
    if !state.store.leaderboard_server_checked_only(id).await? {
        return Ok(entries);
    }
    let xp = state.store.server_checked_xp(id).await?;
    let mut out: Vec<LeaderboardEntry> = entries
        .into_iter()
        .map(|e| {
            let xp = xp.get(&e.student_id).copied().unwrap_or(0);
            LeaderboardEntry {
                xp,
                level: level_for(xp),
                ..e
            }
        })
        .collect();
    out.sort_by(|a, b| b.xp.cmp(&a.xp).then_with(|| a.pseudonym.cmp(&b.pseudonym)));
    for i in 0..out.len() {
        out[i].rank = if i > 0 && out[i - 1].xp == out[i].xp {
            out[i - 1].rank
        } else {
            i + 1
        };
    }
    Ok(out)
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
