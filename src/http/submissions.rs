//! Submitting an attempt: `POST /api/v1/exercises/{id}/attempts` and the portal's
//! `POST /exercises/{id}/submit/`, one code path. Validation here; the rules, the rate limit and
//! the group commit in the student's actor. Answered once the attempt is in the database.

use actix_web::middleware::from_fn;
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::actors::student::{ActorError, Submit, SubmitAnswer, SubmitAttempt};
use crate::auth::StudentIdentity;
use crate::domain::ids::{ExerciseId, UserId};
use crate::error::{AppError, Result};
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

/// One longest attempt we believe (a day); anything beyond is a client bug.
const MAX_DURATION_MS: i64 = 86_400_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttemptBody {
    /// Made by the client (a UUID) so that a resend is stored once; the server makes one if absent.
    pub attempt_id: Option<String>,
    pub passed: bool,
    pub score: i64,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub duration_ms: Option<i64>,
}

/// The portal's body: `{"passed", "score"}` and optionally `attempt_data` / `code`.
#[derive(Debug, Deserialize)]
pub struct LegacyBody {
    pub passed: bool,
    pub score: i64,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub attempt_data: Option<serde_json::Value>,
    #[serde(default)]
    pub attempt_id: Option<String>,
    #[serde(default)]
    pub duration_ms: Option<i64>,
}

async fn submit_attempt(
    state: web::Data<AppState>,
    student: StudentIdentity,
    id: web::Path<String>,
    body: web::Json<AttemptBody>,
) -> Result<HttpResponse> {
    submit(&state, student, &id, body.into_inner()).await
}

async fn legacy_submit(
    state: web::Data<AppState>,
    student: StudentIdentity,
    id: web::Path<String>,
    body: web::Json<LegacyBody>,
) -> Result<HttpResponse> {
    let LegacyBody {
        passed,
        score,
        code,
        attempt_data,
        attempt_id,
        duration_ms,
    } = body.into_inner();
    // The portal sent the student's work as `attempt_data`; keep it as the attempt's code.
    let code = code.or_else(|| {
        attempt_data.map(|d| match d {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        })
    });
    let body = AttemptBody {
        attempt_id,
        passed,
        score,
        code,
        duration_ms,
    };
    submit(&state, student, &id, body).await
}

/// The HTTP submission: the one path below, answered as JSON.
pub async fn submit(
    state: &AppState,
    student: StudentIdentity,
    exercise_id: &str,
    body: AttemptBody,
) -> Result<HttpResponse> {
    let answer = record_attempt(state, student.user_id, exercise_id, body, None).await?;
    Ok(HttpResponse::Ok().json(answer))
}

/// The one submission path, for HTTP and for the WebSocket's `submit`. `origin_socket` is the
/// student's socket that sent it: it gets this answer directly, their other sockets get it pushed.
pub async fn record_attempt(
    state: &AppState,
    student: UserId,
    exercise_id: &str,
    body: AttemptBody,
    origin_socket: Option<u64>,
) -> Result<SubmitAnswer> {
    let mut attempt = validate(state, exercise_id, body)?;
    attempt.origin_socket = origin_socket;
    state
        .registry
        .ask_student(student, Submit(attempt))
        .await?
        .map_err(actor_error)
}

/// Checks a submission against the catalogue and the limits; nothing is stored on error.
pub fn validate(state: &AppState, exercise_id: &str, body: AttemptBody) -> Result<SubmitAttempt> {
    let exercise = ExerciseId::parse(exercise_id)
        .and_then(|id| state.catalogue.exercise(id))
        .ok_or(AppError::NotFound("Exercice introuvable."))?;
    if !(0..=100).contains(&body.score) {
        return Err(AppError::bad_request(
            "invalid_score",
            "Le score doit être un entier entre 0 et 100.",
        ));
    }
    let code = body.code.unwrap_or_default();
    let limit = state.settings.submissions.max_code_bytes;
    if code.len() > limit {
        return Err(AppError::bad_request(
            "code_too_large",
            format!("Le code dépasse la taille maximale ({} Kio).", limit / 1024),
        ));
    }
    if let Some(d) = body.duration_ms
        && !(0..=MAX_DURATION_MS).contains(&d)
    {
        return Err(AppError::bad_request(
            "invalid_duration",
            "La durée doit être comprise entre 0 et 24 heures (en millisecondes).",
        ));
    }
    let attempt_id = match body.attempt_id {
        Some(raw) => uuid::Uuid::parse_str(raw.trim())
            .map_err(|_| {
                AppError::bad_request("invalid_attempt_id", "attempt_id doit être un UUID.")
            })?
            .hyphenated()
            .to_string(),
        None => uuid::Uuid::new_v4().hyphenated().to_string(),
    };
    Ok(SubmitAttempt {
        attempt_id,
        exercise_id: exercise.id,
        xp_reward: exercise.xp_reward,
        passed: body.passed,
        score: body.score as i32,
        code,
        duration_ms: body.duration_ms,
        origin_socket: None,
    })
}

/// What a refused submission answers.
pub fn actor_error(e: ActorError) -> AppError {
    match e {
        ActorError::RateLimited { retry_after_secs } => {
            AppError::TooManyRequests { retry_after_secs }
        }
        ActorError::Overloaded => AppError::Unavailable {
            message: "Trop de soumissions en attente ; réessayez dans un instant.".into(),
            retry_after_secs: 2,
        },
        ActorError::NotStored => AppError::Unavailable {
            message: "La tentative n'a pas pu être enregistrée ; réessayez.".into(),
            retry_after_secs: 5,
        },
        ActorError::ShuttingDown => AppError::Unavailable {
            message: "Le serveur redémarre ; réessayez dans un instant.".into(),
            retry_after_secs: 5,
        },
        ActorError::AttemptIdConflict => AppError::Conflict {
            code: "attempt_id_conflict",
            message: "Cet attempt_id désigne déjà une autre tentative.".into(),
        },
    }
}
