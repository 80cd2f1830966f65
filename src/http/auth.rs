//! Signing in and out: teacher sign-up and login, student join (class code + pseudonym) and
//! recovery on another device (class code + pseudonym + personal code), logout.
//!
//! A session goes to the browser as an HttpOnly cookie; a client that asks `"bearer": true` gets
//! the token in the JSON instead (API clients, load tests). Nothing here logs a login, pseudonym,
//! password, code or token.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Identity, password, request_token};
use crate::config::SignupMode;
use crate::domain::accounts::{
    self, Invalid, PASSWORD_MAX_BYTES, Role, generate_recovery_code, invite_hash, normalize_code,
    parse_join_code, pseudonym_key,
};
use crate::domain::time::now_ms;
use crate::error::{AppError, Result};
use crate::http::json::Json;
use crate::http::views;
use crate::state::AppState;
use crate::store::enrollments::JoinRefusal;
use crate::store::users::{NewAccount, UserRecord};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(sign_up)
        .service(log_in)
        .service(log_out)
        .service(join_class)
        .service(recover_session);
}

const BAD_LOGIN: &str = "Identifiant ou mot de passe incorrect.";
const BAD_RECOVERY: &str = "Code de classe, pseudonyme ou code personnel incorrect.";
const UNKNOWN_JOIN_CODE: &str = "Code de classe inconnu : vérifiez-le auprès de votre enseignant.";
/// Longest typed login or code looked at; longer input is a failure without further work.
const MAX_TYPED: usize = 64;

fn invalid(code: &'static str) -> impl FnOnce(Invalid) -> AppError {
    move |Invalid(message)| AppError::bad_request(code, message)
}

/// Opens a session for `identity` and answers `body` with it: a cookie, or with `bearer` the
/// token in the body. A session the request already carried is ended (one browser, one session).
pub(crate) async fn signed_in(
    state: &AppState,
    req: &HttpRequest,
    identity: Identity,
    mut body: Value,
    bearer: bool,
    status: StatusCode,
) -> Result<HttpResponse> {
    if let Some(old) = request_token(req) {
        state.auth.sessions.end(&old).await?;
    }
    let session = state.auth.sessions.create(identity).await?;
    let mut response = HttpResponse::build(status);
    if bearer {
        if let Value::Object(map) = &mut body {
            map.insert("token".into(), json!(session.token));
            map.insert("expires_at".into(), json!(session.expires_at));
        }
    } else {
        response.cookie(state.auth.session_cookie(&session.token));
    }
    Ok(response.json(body))
}

/// [`signed_in`] for a user just loaded: their own role, and `{"user": …}` as the body.
pub(crate) async fn signed_in_as(
    state: &AppState,
    req: &HttpRequest,
    user: &UserRecord,
    bearer: bool,
    status: StatusCode,
) -> Result<HttpResponse> {
    let identity = Identity {
        user_id: user.id,
        role: user.role,
    };
    let body = json!({ "user": views::user(user) });
    signed_in(state, req, identity, body, bearer, status).await
}

// No `Debug`: it holds a secret, which must never reach a log.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignupBody {
    login: String,
    display_name: String,
    password: String,
    #[serde(default)]
    invite_code: Option<String>,
    #[serde(default)]
    bearer: bool,
}

#[post("/auth/signup")]
async fn sign_up(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<SignupBody>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    // Account creation counts against the address like joins do.
    state
        .auth
        .throttle
        .join_attempt(state.auth.client_ip(&req))
        .await?;
    let login = accounts::validate_login(&body.login).map_err(invalid("invalid_login"))?;
    let display_name = accounts::validate_display_name(&body.display_name)
        .map_err(invalid("invalid_display_name"))?;
    accounts::validate_password(&body.password).map_err(invalid("invalid_password"))?;
    let invite = match state.settings.auth.signup {
        SignupMode::Open => None,
        SignupMode::InviteOnly => {
            let code = body.invite_code.as_deref().unwrap_or("").trim();
            if code.is_empty() {
                return Err(AppError::refused(
                    "invite_required",
                    "L'inscription se fait sur invitation : demandez un code à l'administrateur.",
                ));
            }
            Some(invite_hash(code))
        }
    };
    let hash = password::hash(body.password).await?;
    let created = state
        .store
        .create_account(
            Role::Teacher,
            &login,
            &display_name,
            &hash,
            invite.as_deref(),
            now_ms(),
        )
        .await?;
    let id = match created {
        NewAccount::Created(id) => id,
        NewAccount::LoginTaken => {
            return Err(AppError::conflict(
                "login_taken",
                "Cet identifiant est déjà pris.",
            ));
        }
        NewAccount::InvalidInvite => {
            return Err(AppError::refused(
                "invalid_invite",
                "Code d'invitation inconnu, déjà utilisé ou expiré.",
            ));
        }
    };
    tracing::info!(user_id = id.0, "teacher signed up");
    let user = state
        .store
        .user(id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("user {id} vanished after sign-up"))?;
    signed_in_as(&state, &req, &user, body.bearer, StatusCode::CREATED).await
}

// No `Debug`: it holds a secret, which must never reach a log.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    login: String,
    password: String,
    #[serde(default)]
    bearer: bool,
}

#[post("/auth/login")]
async fn log_in(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<LoginBody>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    let login: String = accounts::normalize_login(&body.login)
        .chars()
        .take(MAX_TYPED)
        .collect();
    let ip = state.auth.client_ip(&req);
    let throttle = &state.auth.throttle;
    let password = body.password;
    let checked = throttle.guess_login(&login, ip, async {
        let credentials = state.store.credentials_by_login(&login).await?;
        let ok = password.len() <= PASSWORD_MAX_BYTES
            && password::verify(
                password,
                credentials.as_ref().and_then(|c| c.password_hash.clone()),
            )
            .await?;
        Ok(credentials.filter(|_| ok))
    });
    let Some(credentials) = checked.await? else {
        return Err(AppError::InvalidCredentials(BAD_LOGIN));
    };
    let user = state
        .store
        .user(credentials.id)
        .await?
        .ok_or(AppError::InvalidCredentials(BAD_LOGIN))?;
    signed_in_as(&state, &req, &user, body.bearer, StatusCode::OK).await
}

/// Ends the request's session (if any) and tells the browser to forget the cookie. Always 204.
#[post("/auth/logout")]
async fn log_out(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    if let Some(token) = request_token(&req) {
        state.auth.sessions.end(&token).await?;
    }
    Ok(HttpResponse::NoContent()
        .cookie(state.auth.removal_cookie())
        .finish())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    join_code: String,
    pseudonym: String,
    #[serde(default)]
    bearer: bool,
    /// Add the class to the signed-in student's account instead of creating a new one.
    #[serde(default)]
    as_current_user: bool,
}

/// A student joins a class. By default a new pseudonymous account is created and signed in (its
/// recovery code is in the answer, the only time it is shown), replacing whatever session the
/// browser had: on a shared classroom computer, the next student must never land in the previous
/// one's account. With `as_current_user`, the signed-in student's own account joins one more class.
#[post("/auth/join")]
async fn join_class(
    state: web::Data<AppState>,
    req: HttpRequest,
    current: Option<Identity>,
    body: Json<JoinBody>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    state
        .auth
        .throttle
        .join_attempt(state.auth.client_ip(&req))
        .await?;
    if current.is_some_and(|c| c.role != Role::Student) {
        return Err(AppError::refused(
            "signed_in_as_teacher",
            "Vous êtes connecté en tant qu'enseignant : déconnectez-vous pour rejoindre une classe comme élève.",
        ));
    }
    let pseudonym =
        accounts::validate_pseudonym(&body.pseudonym).map_err(invalid("invalid_pseudonym"))?;
    let key = pseudonym_key(&pseudonym);
    let code = parse_join_code(&body.join_code).ok_or(AppError::NotFound(UNKNOWN_JOIN_CODE))?;
    let target = state
        .store
        .classroom_by_join_code(&code)
        .await?
        .ok_or(AppError::NotFound(UNKNOWN_JOIN_CODE))?;
    if target.archived_at.is_some() {
        return Err(AppError::refused(
            "classroom_archived",
            "Cette classe est archivée : elle n'accepte plus de nouveaux élèves.",
        ));
    }
    let now = now_ms();
    let classroom = json!({
        "id": target.id,
        "name": target.name,
        "school": target.school,
        "teacher_name": target.teacher_name,
    });
    if body.as_current_user && current.is_none() {
        return Err(AppError::Unauthorized);
    }
    if let Some(student) = current.filter(|_| body.as_current_user) {
        state
            .store
            .enroll(target.id, student.user_id, &pseudonym, &key, now)
            .await?
            .map_err(refusal)?;
        // The student's actor (if running) now also feeds this class; the class's actor reloads.
        state
            .registry
            .membership_changed(student.user_id, target.id)
            .await;
        tracing::info!(
            user_id = student.user_id.0,
            classroom_id = target.id.0,
            "student joined"
        );
        let user = state
            .store
            .user(student.user_id)
            .await?
            .ok_or(AppError::Unauthorized)?;
        return Ok(HttpResponse::Created().json(json!({
            "user": views::user(&user),
            "classroom": classroom,
            "pseudonym": pseudonym,
        })));
    }
    let recovery_code = generate_recovery_code(&mut rand::rng());
    let hash = password::hash(normalize_code(&recovery_code)).await?;
    let student_id = state
        .store
        .join_as_new_student(target.id, &pseudonym, &key, &hash, now)
        .await?
        .map_err(refusal)?;
    state.registry.classroom_changed(target.id);
    tracing::info!(
        user_id = student_id.0,
        classroom_id = target.id.0,
        "student account created"
    );
    let user = state
        .store
        .user(student_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("student {student_id} vanished after joining"))?;
    let identity = Identity {
        user_id: student_id,
        role: Role::Student,
    };
    let body_json = json!({
        "user": views::user(&user),
        "classroom": classroom,
        "pseudonym": pseudonym,
        "recovery_code": recovery_code,
    });
    signed_in(
        &state,
        &req,
        identity,
        body_json,
        body.bearer,
        StatusCode::CREATED,
    )
    .await
}

fn refusal(r: JoinRefusal) -> AppError {
    match r {
        JoinRefusal::PseudonymTaken => AppError::conflict(
            "pseudonym_taken",
            "Ce pseudonyme est déjà pris dans cette classe : choisissez-en un autre.",
        ),
        JoinRefusal::AlreadyEnrolled => {
            AppError::conflict("already_enrolled", "Vous êtes déjà dans cette classe.")
        }
    }
}

// No `Debug`: it holds a secret, which must never reach a log.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoverBody {
    join_code: String,
    pseudonym: String,
    recovery_code: String,
    #[serde(default)]
    bearer: bool,
}

/// A student signs in on another device with class code + pseudonym + personal recovery code.
/// Works in archived classes too (to look back at one's work). Any mistake gets the same answer.
#[post("/auth/recover")]
async fn recover_session(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: Json<RecoverBody>,
) -> Result<HttpResponse> {
    let body = body.into_inner();
    let throttle = &state.auth.throttle;
    throttle.join_attempt(state.auth.client_ip(&req)).await?;
    let code = parse_join_code(&body.join_code);
    let key: String = pseudonym_key(&body.pseudonym)
        .chars()
        .take(MAX_TYPED)
        .collect();
    let account = format!("{}:{key}", code.as_deref().unwrap_or("?"));
    let typed = normalize_code(&body.recovery_code);
    let checked = throttle.guess_recovery(&account, async {
        let candidate = match &code {
            Some(code) => state.store.recovery_candidate(code, &key).await?,
            None => None,
        };
        let ok = typed.len() <= MAX_TYPED
            && password::verify(typed, candidate.as_ref().and_then(|(_, h)| h.clone())).await?;
        Ok(candidate.filter(|_| ok).map(|(id, _)| id))
    });
    let Some(student_id) = checked.await? else {
        return Err(AppError::InvalidCredentials(BAD_RECOVERY));
    };
    tracing::info!(user_id = student_id.0, "student recovered a session");
    let user = state
        .store
        .user(student_id)
        .await?
        .ok_or(AppError::InvalidCredentials(BAD_RECOVERY))?;
    signed_in_as(&state, &req, &user, body.bearer, StatusCode::OK).await
}
