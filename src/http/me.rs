//! The signed-in user's own account: who am I and in which classes, preferences, a teacher's
//! password, leaving a class.

use actix_web::http::StatusCode;
use actix_web::http::header::ContentType;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use serde::Deserialize;
use serde_json::Value;

use crate::auth::{Identity, StudentIdentity, TeacherIdentity, password};
use crate::domain::accounts::{self, Invalid, PASSWORD_MAX_BYTES, Role};
use crate::domain::ids::{ClassroomId, UserId};
use crate::domain::time::now_ms;
use crate::error::{AppError, Result};
use crate::http::auth::signed_in_as;
use crate::http::json::Json;
use crate::http::views;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_me)
        .service(patch_me)
        .service(change_password)
        .service(my_classes)
        .service(leave_class);
}

/// A student's classes with their assignments, in the order joined.
pub async fn student_classes(state: &AppState, student: UserId) -> Result<Vec<Value>> {
    let classes = state.store.student_classes(student).await?;
    let assignments = state.store.student_assignments(student).await?;
    let mut by_class = views::assignments_by_class(&assignments, &state.catalogue);
    Ok(classes
        .iter()
        .map(|c| views::student_class(c, &by_class.remove(&c.id).unwrap_or_default()))
        .collect())
}

async fn me_view(state: &AppState, identity: Identity) -> Result<Value> {
    // A session can outlive its user by the cache TTL (disabled on another instance): 401 then.
    let user = state
        .store
        .user(identity.user_id)
        .await?
        .ok_or(AppError::Unauthorized)?;
    let classes: Vec<Value> = if user.role == Role::Student {
        student_classes(state, user.id).await?
    } else {
        state
            .store
            .teacher_classrooms(user.id)
            .await?
            .iter()
            .map(views::classroom)
            .collect()
    };
    let mut v = views::user(&user);
    if let Value::Object(map) = &mut v {
        map.insert("classes".into(), Value::Array(classes));
    }
    Ok(v)
}

/// Served from this instance's cache while nothing it shows changed (service/account_views.rs):
/// every page of the browser app asks for it first.
#[get("/me")]
async fn get_me(state: web::Data<AppState>, identity: Identity) -> Result<HttpResponse> {
    let version = state.store.views_version();
    let body = match state.account_views.get(identity.user_id, version) {
        Some(body) => body,
        None => {
            // Three reads: a turn at the pool first, like every load on demand.
            let _turn = state.store.admit().await.map_err(anyhow::Error::from)?;
            let view = me_view(&state, identity).await?;
            let body = web::Bytes::from(serde_json::to_vec(&view).map_err(anyhow::Error::from)?);
            state
                .account_views
                .put(identity.user_id, version, body.clone());
            body
        }
    };
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(body))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchMe {
    leaderboard_opt_out: Option<bool>,
    display_name: Option<String>,
}

#[patch("/me")]
async fn patch_me(
    state: web::Data<AppState>,
    identity: Identity,
    body: Json<PatchMe>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    if let Some(name) = &body.display_name {
        // A student is known by a pseudonym per class, chosen when joining.
        if !identity.role.is_teacher() {
            return Err(AppError::bad_request(
                "invalid_field",
                "Un élève ne change pas de nom ici : son pseudonyme est celui de sa classe.",
            ));
        }
        let name = accounts::validate_display_name(name)
            .map_err(|Invalid(m)| AppError::bad_request("invalid_display_name", m))?;
        state
            .store
            .set_display_name(identity.user_id, &name)
            .await?;
    }
    if let Some(opt_out) = body.leaderboard_opt_out {
        state
            .store
            .set_leaderboard_opt_out(identity.user_id, opt_out)
            .await?;
        // The leaderboards of the student's classes come from their actors: the answer waits
        // until they reloaded (bounded), so that a leaderboard read next shows the change.
        let classrooms = state.store.student_classroom_ids(identity.user_id).await?;
        futures_util::future::join_all(
            classrooms
                .into_iter()
                .map(|c| state.registry.classroom_changed_and_applied(c)),
        )
        .await;
    }
    Ok(HttpResponse::Ok().json(me_view(&state, identity).await?))
}

// No `Debug`: it holds a secret, which must never reach a log.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    current_password: String,
    new_password: String,
    #[serde(default)]
    bearer: bool,
}

/// A teacher changes their password. Every session of theirs ends (a stolen one too); the
/// caller gets a new one, as after a login. Wrong current passwords count as failed logins.
#[post("/me/password")]
async fn change_password(
    state: web::Data<AppState>,
    req: HttpRequest,
    teacher: TeacherIdentity,
    body: Json<NewPassword>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    let throttle = &state.auth.throttle;
    let key = format!("#{}", teacher.user_id);
    let ip = state.auth.client_ip(&req);
    accounts::validate_password(&body.new_password)
        .map_err(|Invalid(m)| AppError::bad_request("invalid_password", m))?;
    let typed = body.current_password;
    let checked = throttle.guess_login(&key, ip, async {
        let current = state.store.password_hash(teacher.user_id).await?;
        let ok = typed.len() <= PASSWORD_MAX_BYTES && password::verify(typed, current).await?;
        Ok(ok.then_some(()))
    });
    if checked.await?.is_none() {
        return Err(AppError::refused(
            "wrong_password",
            "Le mot de passe actuel est incorrect.",
        ));
    }
    let hash = password::hash(body.new_password).await?;
    if !state
        .store
        .set_password_hash(teacher.user_id, &hash)
        .await?
    {
        return Err(AppError::Unauthorized);
    }
    state.auth.sessions.end_all_for(teacher.user_id).await?;
    tracing::info!(user_id = teacher.user_id.0, "password changed");
    let user = state
        .store
        .user(teacher.user_id)
        .await?
        .ok_or(AppError::Unauthorized)?;
    signed_in_as(&state, &req, &user, body.bearer, StatusCode::OK).await
}

#[get("/me/classes")]
async fn my_classes(state: web::Data<AppState>, student: StudentIdentity) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(student_classes(&state, student.user_id).await?))
}

/// A student leaves a class. Leaving one's last class closes the account (there would be no way
/// back into it) and signs out.
#[delete("/me/classes/{id}")]
async fn leave_class(
    state: web::Data<AppState>,
    student: StudentIdentity,
    id: web::Path<String>,
) -> Result<HttpResponse> {
    let not_in = || AppError::NotFound("Classe introuvable.");
    let id = ClassroomId::parse(&id).ok_or_else(not_in)?;
    let removal = state
        .store
        .remove_enrollment(id, student.user_id, now_ms())
        .await?
        .ok_or_else(not_in)?;
    state.registry.membership_changed(student.user_id, id).await;
    tracing::info!(
        user_id = student.user_id.0,
        classroom_id = id.0,
        "student left a class"
    );
    let mut response = HttpResponse::NoContent();
    if removal.was_last_class {
        state.auth.sessions.forget_user(student.user_id);
        response.cookie(state.auth.removal_cookie());
    }
    Ok(response.finish())
}
