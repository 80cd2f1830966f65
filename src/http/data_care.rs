//! Data care routes (students are minors; RGPD): a user downloads everything stored about them,
//! and a teacher purges a class at the end of the school year.

use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};
use actix_web::{HttpResponse, get, post, web};
use serde::Deserialize;

use crate::auth::{Identity, TeacherIdentity};
use crate::domain::ids::ClassroomId;
use crate::error::{AppError, Result};
use crate::http::json::Json;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(export_me).service(purge_classroom);
}

/// Everything stored about the signed-in user, as a JSON file to keep (right of access).
#[get("/me/export")]
async fn export_me(state: web::Data<AppState>, who: Identity) -> Result<HttpResponse> {
    let doc = state.store.export_user(who.user_id).await?;
    if doc.is_null() {
        return Err(AppError::Unauthorized);
    }
    Ok(HttpResponse::Ok()
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(
                "nsi-live-mes-donnees.json".into(),
            )],
        })
        .insert_header(("Cache-Control", "no-store"))
        .json(doc))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    /// The class's name, typed again: a purge cannot be undone.
    confirm_name: String,
}

/// Deletes the class and every student whose only class it was, with all their data; students
/// also in another class only leave this one. Their sessions end at once.
#[post("/classrooms/{id}/purge")]
async fn purge_classroom(
    state: web::Data<AppState>,
    teacher: TeacherIdentity,
    id: web::Path<String>,
    body: Json<PurgeBody>,
) -> Result<HttpResponse> {
    let not_found = || AppError::NotFound("Classe introuvable.");
    let id = ClassroomId::parse(&id).ok_or_else(not_found)?;
    let class = state
        .store
        .classroom_for_teacher(id, teacher.user_id)
        .await?
        .ok_or_else(not_found)?;
    if body.confirm_name.trim() != class.name.trim() {
        return Err(AppError::bad_request(
            "confirmation_mismatch",
            "Pour supprimer définitivement la classe, saisissez exactement son nom.",
        ));
    }
    let report = state.store.purge_classroom(id).await?;
    for &(student, deleted) in &report.students {
        if deleted {
            // Their sessions are gone from the database with the account; forget our cache too.
            state.auth.sessions.forget_user(student);
        }
        state.registry.membership_changed(student, id).await;
    }
    state.registry.classroom_changed(id);
    tracing::info!(
        user_id = teacher.user_id.0,
        classroom_id = id.0,
        students_deleted = report.students_deleted,
        students_kept = report.students_kept,
        attempts_deleted = report.attempts_deleted,
        "classroom purged"
    );
    Ok(HttpResponse::Ok().json(report))
}
