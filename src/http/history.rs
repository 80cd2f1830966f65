//! Stored attempts for people and the class CSV: a student's own attempts, the teacher's view of
//! one student's attempts (drill-down), and the class export (one row per student, best score per
//! exercise, XP and level; UTF-8 with BOM and `;` so that French spreadsheets open it right).

use std::collections::{BTreeSet, HashMap};

use actix_web::http::header;
use actix_web::{HttpResponse, get, web};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{StudentIdentity, TeacherIdentity};
use crate::domain::catalogue::Catalogue;
use crate::domain::ids::{ClassroomId, ExerciseId, UserId};
use crate::domain::progress::level_for;
use crate::error::{AppError, Result};
use crate::state::AppState;
use crate::store::history::AttemptRecord;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(my_attempts)
        .service(student_attempts)
        .service(export_csv);
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttemptsQuery {
    exercise_id: Option<String>,
}

fn exercise_filter(state: &AppState, q: &AttemptsQuery) -> Result<Option<ExerciseId>> {
    match &q.exercise_id {
        None => Ok(None),
        Some(raw) => ExerciseId::parse(raw)
            .filter(|id| state.catalogue.exercise(*id).is_some())
            .map(Some)
            .ok_or(AppError::NotFound("Exercice introuvable.")),
    }
}

fn attempts_view(catalogue: &Catalogue, student: UserId, attempts: &[AttemptRecord]) -> Value {
    json!({
        "student_id": student,
        "attempts": attempts.iter().map(|a| json!({
            "attempt_id": a.attempt_id,
            "exercise_id": a.exercise_id,
            "exercise_title": catalogue.exercise(a.exercise_id).map(|e| e.title.as_str()),
            "passed": a.passed,
            "score": a.score,
            "code": a.code,
            "duration_ms": a.duration_ms,
            "created_at": a.created_at,
        })).collect::<Vec<_>>(),
    })
}

#[get("/me/attempts")]
async fn my_attempts(
    state: web::Data<AppState>,
    student: StudentIdentity,
    query: web::Query<AttemptsQuery>,
) -> Result<HttpResponse> {
    let exercise = exercise_filter(&state, &query)?;
    let attempts = state
        .store
        .student_attempts(student.user_id, exercise)
        .await?;
    Ok(HttpResponse::Ok().json(attempts_view(&state.catalogue, student.user_id, &attempts)))
}

/// The classroom when the caller owns it; 404 otherwise (someone else's class does not exist).
async fn owned_classroom(
    state: &AppState,
    teacher: TeacherIdentity,
    raw: &str,
) -> Result<ClassroomId> {
    let id = ClassroomId::parse(raw).ok_or(AppError::NotFound("Classe introuvable."))?;
    if state
        .store
        .teacher_owns_classroom(id, teacher.user_id)
        .await?
    {
        Ok(id)
    } else {
        Err(AppError::NotFound("Classe introuvable."))
    }
}

#[get("/classrooms/{id}/students/{student_id}/attempts")]
async fn student_attempts(
    state: web::Data<AppState>,
    teacher: TeacherIdentity,
    path: web::Path<(String, String)>,
    query: web::Query<AttemptsQuery>,
) -> Result<HttpResponse> {
    let (class_raw, student_raw) = path.into_inner();
    let classroom = owned_classroom(&state, teacher, &class_raw).await?;
    let student = UserId::parse(&student_raw).ok_or(AppError::NotFound("Élève introuvable."))?;
    // A student of another class (or a former one) is not this teacher's to see.
    if !state.store.is_enrolled(classroom, student).await? {
        return Err(AppError::NotFound("Élève introuvable."));
    }
    let exercise = exercise_filter(&state, &query)?;
    let attempts = state.store.student_attempts(student, exercise).await?;
    Ok(HttpResponse::Ok().json(attempts_view(&state.catalogue, student, &attempts)))
}

#[get("/classrooms/{id}/export.csv")]
async fn export_csv(
    state: web::Data<AppState>,
    teacher: TeacherIdentity,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let classroom = owned_classroom(&state, teacher, &id).await?;
    let roster = state.store.classroom_roster(classroom).await?;
    let progress = state.store.classroom_progress(classroom).await?;
    let xp: HashMap<UserId, i64> = state
        .store
        .classroom_xp(classroom)
        .await?
        .into_iter()
        .collect();
    let assigned: BTreeSet<String> = state
        .store
        .assignments(classroom)
        .await?
        .into_iter()
        .map(|a| a.chapter_slug)
        .collect();
    let tried: BTreeSet<ExerciseId> = progress.iter().map(|(_, e, _)| *e).collect();
    // Columns: the exercises of the assigned chapters and any exercise someone tried, in the
    // catalogue's order.
    let columns: Vec<_> = state
        .catalogue
        .exercises()
        .filter(|e| assigned.contains(&e.chapter_slug) || tried.contains(&e.id))
        .collect();
    let best: HashMap<(UserId, ExerciseId), i32> = progress
        .iter()
        .filter(|(_, _, p)| p.attempts > 0)
        .map(|(s, e, p)| ((*s, *e), p.best_score))
        .collect();

    let mut out = Vec::from("\u{feff}".as_bytes());
    {
        let mut w = csv::WriterBuilder::new()
            .delimiter(b';')
            .terminator(csv::Terminator::CRLF)
            .from_writer(&mut out);
        let mut head = vec!["pseudonyme".to_owned()];
        head.extend(columns.iter().map(|e| cell_text(&e.title)));
        head.extend(["XP".to_owned(), "niveau".to_owned()]);
        w.write_record(&head).map_err(anyhow::Error::from)?;
        for s in &roster {
            let student_xp = xp.get(&s.student_id).copied().unwrap_or(0);
            let mut row = vec![cell_text(&s.pseudonym)];
            row.extend(columns.iter().map(|e| {
                best.get(&(s.student_id, e.id))
                    .map(|b| b.to_string())
                    .unwrap_or_default()
            }));
            row.push(student_xp.to_string());
            row.push(level_for(student_xp).to_string());
            w.write_record(&row).map_err(anyhow::Error::from)?;
        }
        w.flush().map_err(anyhow::Error::from)?;
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"classe-{classroom}.csv\""),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(out))
}

/// A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` as a formula: such text
/// (a pseudonym like `=HYPERLINK(…)`) is prefixed with an apostrophe so it stays text.
pub fn cell_text(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::cell_text;

    #[test]
    fn formulas_stay_text() {
        assert_eq!(cell_text("=1+1"), "'=1+1");
        assert_eq!(cell_text("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell_text("-2"), "'-2");
        assert_eq!(cell_text("Léa M"), "Léa M");
    }
}
