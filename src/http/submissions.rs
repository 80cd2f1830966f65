//! Submitting an attempt: `POST /api/v1/exercises/{id}/attempts` and the portal's
//! `POST /exercises/{id}/submit/`: both parse their body and call `service::submit`, the path the
//! socket's `submit` takes too. Answered once the attempt is in the database.

use actix_web::middleware::from_fn;
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::auth::StudentIdentity;
use crate::error::{AppError, Result};
use crate::grading::Work;
use crate::http::json::Json;
use crate::service::submit::{AttemptBody, Submission, record_attempt};
use crate::state::AppState;

/// Registered at the top level: the portal's path lives outside `/api/v1`.
pub fn configure_legacy(cfg: &mut web::ServiceConfig) {
    for path in ["/exercises/{id}/submit/", "/exercises/{id}/submit"] {
        cfg.service(
            web::resource(path)
                .wrap(from_fn(crate::auth::origin::guard))
                .route(web::post().to(legacy_submit)),
        );
    }
}

/// Registered inside `/api/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/exercises/{id}/attempts", web::post().to(submit_attempt));
}

/// The portal's body: `{"passed", "score"}` and optionally `attempt_data` / `code` (Python
/// only), or the new `answer` object (any type).
#[derive(Debug, Deserialize)]
pub struct LegacyBody {
    #[serde(default)]
    pub passed: Option<bool>,
    #[serde(default)]
    pub score: Option<i64>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub attempt_data: Option<serde_json::Value>,
    #[serde(default)]
    pub attempt_id: Option<String>,
    #[serde(default)]
    pub duration_ms: Option<i64>,
    #[serde(default)]
    pub answer: Option<serde_json::Value>,
}

async fn submit_attempt(
    state: web::Data<AppState>,
    student: StudentIdentity,
    id: web::Path<String>,
    body: Json<AttemptBody>,
) -> Result<HttpResponse> {
    let submission = body.into_inner().into_submission()?;
    submit(&state, student, &id, submission).await
}

async fn legacy_submit(
    state: web::Data<AppState>,
    student: StudentIdentity,
    id: web::Path<String>,
    body: Json<LegacyBody>,
) -> Result<HttpResponse> {
    let LegacyBody {
        passed,
        score,
        code,
        attempt_data,
        attempt_id,
        duration_ms,
        answer,
    } = body.into_inner();
    let work = match (answer, passed, score) {
        (Some(answer), _, _) => Work::Answer(answer),
        (None, Some(passed), Some(score)) => {
            // The portal sent the student's work as `attempt_data`; keep it as the attempt's code.
            let code = code
                .or_else(|| {
                    attempt_data.map(|d| match d {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    })
                })
                .unwrap_or_default();
            Work::BrowserVerdict {
                passed,
                score,
                code,
            }
        }
        _ => {
            return Err(AppError::bad_request(
                "invalid_answer",
                "Envoyez `answer` (ou, pour un exercice Python, `passed` et `score`).",
            ));
        }
    };
    let submission = Submission {
        attempt_id,
        duration_ms,
        work,
    };
    submit(&state, student, &id, submission).await
}

/// The HTTP submission: the one path (`service::submit`), answered as JSON.
pub async fn submit(
    state: &AppState,
    student: StudentIdentity,
    exercise_id: &str,
    submission: Submission,
) -> Result<HttpResponse> {
    let answer = record_attempt(state, student.user_id, exercise_id, submission, None).await?;
    Ok(HttpResponse::Ok().json(answer))
}
