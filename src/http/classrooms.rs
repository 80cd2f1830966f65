//! Classrooms: a teacher creates and runs them (join code, archive, roster, recovery codes,
//! chapter assignments); their students may read the class and its assignments.
//! A classroom that is not the caller's answers 404, as if it did not exist.

use actix_web::{HttpResponse, delete, get, patch, post, put, web};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Identity, TeacherIdentity, password};
use crate::domain::accounts::{self, Invalid, Role, generate_recovery_code, normalize_code};
use crate::domain::ids::{ClassroomId, UserId};
use crate::domain::time::now_ms;
use crate::error::{AppError, Result};
use crate::http::json::Json;
use crate::http::views;
use crate::state::AppState;
use crate::store::assignments::AssignmentRecord;
use crate::store::classrooms::Classroom;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(create_classroom)
        .service(list_classrooms)
        .service(get_classroom)
        .service(update_classroom)
        .service(regenerate_join_code)
        .service(roster)
        .service(remove_student)
        .service(reset_recovery_code)
        .service(list_assignments)
        .service(assign_chapter)
        .service(unassign_chapter);
}

/// Earliest and latest accepted due dates (2000-01-01 and 2100-01-01, in ms): anything else is a
/// unit mistake (seconds instead of milliseconds).
const DUE_AT_RANGE: std::ops::RangeInclusive<i64> = 946_684_800_000..=4_102_444_800_000;

fn classroom_not_found() -> AppError {
    AppError::NotFound("Classe introuvable.")
}

fn student_not_found() -> AppError {
    AppError::NotFound("Élève introuvable dans cette classe.")
}

fn invalid(code: &'static str) -> impl FnOnce(Invalid) -> AppError {
    move |Invalid(message)| AppError::bad_request(code, message)
}

/// The classroom `id` if `teacher` owns it; 404 otherwise (not found and not yours look alike).
async fn owned(state: &AppState, teacher: TeacherIdentity, id: &str) -> Result<Classroom> {
    let id = ClassroomId::parse(id).ok_or_else(classroom_not_found)?;
    state
        .store
        .classroom_for_teacher(id, teacher.user_id)
        .await?
        .ok_or_else(classroom_not_found)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewClassroom {
    name: String,
    #[serde(default)]
    school: String,
}

#[post("/classrooms")]
async fn create_classroom(
    state: web::Data<AppState>,
    teacher: TeacherIdentity,
    body: Json<NewClassroom>,
) -> Result<HttpResponse> {
    let name = accounts::validate_classroom_name(&body.name).map_err(invalid("invalid_name"))?;
    let school = accounts::validate_school(&body.school).map_err(invalid("invalid_school"))?;
    let max = state.settings.classrooms.max_per_teacher;
    let classroom = state
        .store
        .create_classroom(teacher.user_id, &name, &school, now_ms(), max)
        .await?
        .ok_or_else(|| AppError::Conflict {
            code: "too_many_classrooms",
            message: format!(
                "Vous avez déjà {max} classes : supprimez définitivement une ancienne classe \
                 avant d'en créer une nouvelle."
            ),
        })?;
    tracing::info!(
        user_id = teacher.user_id.0,
        classroom_id = classroom.id.0,
        "classroom created"
    );
    Ok(HttpResponse::Created().json(views::classroom(&classroom)))
}

#[get("/classrooms")]
async fn list_classrooms(
    state: web::Data<AppState>,
    teacher: TeacherIdentity,
) -> Result<HttpResponse> {
    let list: Vec<Value> = state
        .store
        .teacher_classrooms(teacher.user_id)
        .await?
        .iter()
        .map(views::classroom)
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

/// Its teacher gets the full classroom; one of its students gets the student's view of it.
#[get("/classrooms/{id}")]
async fn get_classroom(
    state: web::Data<AppState>,
    identity: Identity,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let id = ClassroomId::parse(&id).ok_or_else(classroom_not_found)?;
    if identity.role == Role::Student {
        let class = state
            .store
            .student_class(identity.user_id, id)
            .await?
            .ok_or_else(classroom_not_found)?;
        let records = state.store.assignments(id).await?;
        let assignments: Vec<Value> = records
            .iter()
            .filter_map(|a| views::assignment(a, &state.catalogue))
            .collect();
        return Ok(HttpResponse::Ok().json(views::student_class(&class, &assignments)));
    }
    let classroom = state
        .store
        .classroom_for_teacher(id, identity.user_id)
        .await?
        .ok_or_else(classroom_not_found)?;
    Ok(HttpResponse::Ok().json(views::classroom(&classroom)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassroomChanges {
    name: Option<String>,
    school: Option<String>,
    /// `true` archives the class (it refuses new students), `false` brings it back.
    archived: Option<bool>,
    /// `true`: the leaderboard counts only XP from server-checked attempts.
    leaderboard_server_checked_only: Option<bool>,
}

#[patch("/classrooms/{id}")]
async fn update_classroom(
    state: web::Data<AppState>,
    teacher: TeacherIdentity,
    id: web::Path<String>,
    body: Json<ClassroomChanges>,
) -> Result<HttpResponse> {
    let classroom = owned(&state, teacher, &id).await?;
    let name = body
        .name
        .as_deref()
        .map(accounts::validate_classroom_name)
        .transpose()
        .map_err(invalid("invalid_name"))?;
    let school = body
        .school
        .as_deref()
        .map(accounts::validate_school)
        .transpose()
        .map_err(invalid("invalid_school"))?;
    state
        .store
        .update_classroom(
            classroom.id,
            name.as_deref(),
            school.as_deref(),
            body.archived,
            now_ms(),
        )
        .await?;
    if let Some(on) = body.leaderboard_server_checked_only {
        state
            .store
            .set_leaderboard_server_checked_only(classroom.id, on)
            .await?;
    }
    let updated = owned(&state, teacher, &classroom.id.to_string()).await?;
    Ok(HttpResponse::Ok().json(views::classroom(&updated)))
}

/// A new join code; the old one stops working (students already in stay in).
#[post("/classrooms/{id}/join-code")]
async fn regenerate_join_code(
    state: web::Data<AppState>,
    teacher: TeacherIdentity,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let mut classroom = owned(&state, teacher, &id).await?;
    classroom.join_code = state.store.regenerate_join_code(classroom.id).await?;
    Ok(HttpResponse::Ok().json(views::classroom(&classroom)))
}

#[get("/classrooms/{id}/students")]
async fn roster(
    state: web::Data<AppState>,
    teacher: TeacherIdentity,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let classroom = owned(&state, teacher, &id).await?;
    let list: Vec<Value> = state
        .store
        .classroom_roster(classroom.id)
        .await?
        .iter()
        .map(views::roster_entry)
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

/// Removes a student from the class. If it was their last class, their account is closed and
/// every session of theirs ends.
#[delete("/classrooms/{id}/students/{student_id}")]
async fn remove_student(
    state: web::Data<AppState>,
    teacher: TeacherIdentity,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let (id, student) = path.into_inner();
    let classroom = owned(&state, teacher, &id).await?;
    let student = UserId::parse(&student).ok_or_else(student_not_found)?;
    let removal = state
        .store
        .remove_enrollment(classroom.id, student, now_ms())
        .await?
        .ok_or_else(student_not_found)?;
    state
        .registry
        .membership_changed(student, classroom.id)
        .await;
    if removal.was_last_class {
        // The database side (account closed, sessions deleted) is done; drop our cache too.
        state.auth.sessions.forget_user(student);
    }
    tracing::info!(
        user_id = teacher.user_id.0,
        classroom_id = classroom.id.0,
        student_id = student.0,
        "student removed from classroom"
    );
    Ok(HttpResponse::NoContent().finish())
}

/// A new recovery code for a student who lost theirs: shown to the teacher (to hand over), the old
/// code stops working and the student's sessions end (on every device).
#[post("/classrooms/{id}/students/{student_id}/recovery-code")]
async fn reset_recovery_code(
    state: web::Data<AppState>,
    teacher: TeacherIdentity,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let (id, student) = path.into_inner();
    let classroom = owned(&state, teacher, &id).await?;
    let student = UserId::parse(&student).ok_or_else(student_not_found)?;
    if !state.store.is_enrolled(classroom.id, student).await? {
        return Err(student_not_found());
    }
    // A new code signs the student in to all their classes: only a teacher who has them in all
    // of them may make one (docs/api.md), else a teacher could act as a student of another's class.
    if state
        .store
        .in_other_teachers_class(student, teacher.user_id)
        .await?
    {
        return Err(in_other_teachers_class());
    }
    let code = generate_recovery_code(&mut rand::rng());
    let hash = password::hash(normalize_code(&code)).await?;
    if !state
        .store
        .set_recovery_code_hash(student, teacher.user_id, &hash)
        .await?
    {
        // They joined another teacher's class meanwhile.
        return Err(in_other_teachers_class());
    }
    state.auth.sessions.end_all_for(student).await?;
    tracing::info!(
        user_id = teacher.user_id.0,
        classroom_id = classroom.id.0,
        student_id = student.0,
        "student recovery code reset"
    );
    Ok(HttpResponse::Ok().json(json!({ "student_id": student, "recovery_code": code })))
}

fn in_other_teachers_class() -> AppError {
    AppError::conflict(
        "student_in_other_teachers_class",
        "Cet élève est aussi dans la classe d'un autre enseignant : seul un enseignant qui l'a \
         dans toutes ses classes peut lui donner un nouveau code personnel.",
    )
}

/// The class's assigned chapters: for its teacher and its students.
#[get("/classrooms/{id}/assignments")]
async fn list_assignments(
    state: web::Data<AppState>,
    identity: Identity,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let id = ClassroomId::parse(&id).ok_or_else(classroom_not_found)?;
    let allowed = if identity.role == Role::Student {
        state.store.is_enrolled(id, identity.user_id).await?
    } else {
        state
            .store
            .teacher_owns_classroom(id, identity.user_id)
            .await?
    };
    if !allowed {
        return Err(classroom_not_found());
    }
    let list: Vec<Value> = state
        .store
        .assignments(id)
        .await?
        .iter()
        .filter_map(|a| views::assignment(a, &state.catalogue))
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Assignment {
    /// Milliseconds since the Unix epoch; absent or null for no due date.
    #[serde(default)]
    due_at: Option<i64>,
}

/// Assigns a chapter (by slug) to the class, or changes its due date.
#[put("/classrooms/{id}/assignments/{chapter}")]
async fn assign_chapter(
    state: web::Data<AppState>,
    teacher: TeacherIdentity,
    path: web::Path<(String, String)>,
    body: Json<Assignment>,
) -> Result<HttpResponse> {
    let (id, slug) = path.into_inner();
    let classroom = owned(&state, teacher, &id).await?;
    let chapter = state
        .catalogue
        .chapter(&slug)
        .ok_or(AppError::NotFound("Chapitre introuvable."))?;
    if let Some(due) = body.due_at
        && !DUE_AT_RANGE.contains(&due)
    {
        return Err(AppError::bad_request(
            "invalid_due_at",
            "La date limite doit être en millisecondes depuis 1970 (entre 2000 et 2100).",
        ));
    }
    let assigned_at = state
        .store
        .assign_chapter(classroom.id, chapter.id, body.due_at, now_ms())
        .await?;
    let record = AssignmentRecord {
        classroom_id: classroom.id,
        chapter_slug: chapter.slug.clone(),
        due_at: body.due_at,
        assigned_at,
    };
    let view = views::assignment(&record, &state.catalogue)
        .ok_or_else(|| anyhow::anyhow!("chapter {slug} left the catalogue"))?;
    Ok(HttpResponse::Ok().json(view))
}

#[delete("/classrooms/{id}/assignments/{chapter}")]
async fn unassign_chapter(
    state: web::Data<AppState>,
    teacher: TeacherIdentity,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let (id, slug) = path.into_inner();
    let classroom = owned(&state, teacher, &id).await?;
    let not_assigned = || AppError::NotFound("Ce chapitre n'est pas assigné à cette classe.");
    let chapter = state.catalogue.chapter(&slug).ok_or_else(not_assigned)?;
    if !state
        .store
        .unassign_chapter(classroom.id, chapter.id)
        .await?
    {
        return Err(not_assigned());
    }
    Ok(HttpResponse::NoContent().finish())
}
