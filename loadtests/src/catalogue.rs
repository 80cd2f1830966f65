//! `catalogue`: the portal's study mix, per signed-in student — weight 3 the course list, weight 2
//! the chapter `nsi-1-python-bases`, weight 1 a submission through the portal's route
//! `POST /exercises/{id}/submit/`; 1–3 s between them. The browser app is a single-page app
//! (web/src/main.js): a student opens it once — the page shell (`index.html`; its hashed assets
//! are cached by then) and `GET /api/v1/me` — and each later page view is an in-app navigation
//! that fetches only the page's own calls (web/src/student.js: the course list
//! `GET /api/v1/courses`; a chapter `GET /api/v1/chapters/{slug}` and `GET /api/v1/me/progress`).
//! So each user's first transaction opens the app, and the weighted ones navigate in it. The
//! page's live socket is the `classroom` scenario's subject.
//! `signin`: each user signs in once with the school's recovery code (`POST /api/v1/auth/recover`).

use std::time::Duration;

use goose::goose::GooseResponse;
use goose::prelude::*;
use serde_json::json;

use crate::tally::{self, Unacked};
use crate::{config, next_student};

/// The fixture student a catalogue user is.
#[derive(Debug, Clone, Copy)]
struct Pupil(usize);

/// on_start: the next student of the fixture.
pub async fn pick(user: &mut GooseUser) -> TransactionResult {
    user.set_session_data(Pupil(next_student()));
    Ok(())
}

/// on_start (after `pick`): the student opens the app on the course list — the page shell and
/// `GET /api/v1/me`, which the app fetches once, when it starts (web/src/main.js).
pub async fn open_app(user: &mut GooseUser) -> TransactionResult {
    let r = call(
        user,
        GooseMethod::Get,
        "/courses/",
        "/courses/ (page)",
        None,
    )
    .await?;
    drain(r).await?;
    let r = call(user, GooseMethod::Get, "/api/v1/me", "/api/v1/me", None).await?;
    drain(r).await
}

fn token(user: &GooseUser) -> &str {
    &config().fixture.students[user.get_session_data_unchecked::<Pupil>().0].token
}

/// One request with the student's bearer token, named for the report.
async fn call(
    user: &mut GooseUser,
    method: GooseMethod,
    path: &str,
    name: &str,
    body: Option<&serde_json::Value>,
) -> Result<GooseResponse, Box<TransactionError>> {
    let mut builder = user
        .get_request_builder(&method, path)?
        .bearer_auth(token(user).to_owned());
    if let Some(body) = body {
        builder = builder.json(body);
    }
    let request = GooseRequest::builder()
        .method(method)
        .path(path)
        .name(name)
        .set_request_builder(builder)
        .build();
    user.request(request).await
}

/// Reads the whole body (a browser does), so that the timing includes it.
async fn drain(response: GooseResponse) -> Result<(), Box<TransactionError>> {
    if let Ok(r) = response.response {
        let _ = r.bytes().await;
    }
    Ok(())
}

/// The course list page: `/courses/`, reached in the app.
pub async fn course_list(user: &mut GooseUser) -> TransactionResult {
    let r = call(
        user,
        GooseMethod::Get,
        "/api/v1/courses",
        "/api/v1/courses",
        None,
    )
    .await?;
    drain(r).await
}

/// The chapter page: `/courses/chapter/nsi-1-python-bases/`, reached in the app (the browser
/// makes its two calls at once; a goose user makes them one after the other).
pub async fn chapter(user: &mut GooseUser) -> TransactionResult {
    let slug = config().fixture.chapter.clone();
    let r = call(
        user,
        GooseMethod::Get,
        &format!("/api/v1/chapters/{slug}"),
        "/api/v1/chapters/{slug}",
        None,
    )
    .await?;
    drain(r).await?;
    let r = call(
        user,
        GooseMethod::Get,
        "/api/v1/me/progress",
        "/api/v1/me/progress",
        None,
    )
    .await?;
    drain(r).await
}

/// A Python exercise's verdict through the portal's route, with a fresh `attempt_id`.
pub async fn submit(user: &mut GooseUser) -> TransactionResult {
    let fixture = &config().fixture;
    let exercise = &fixture.exercises[rand::random_range(0..fixture.exercises.len())];
    let (exercise_id, passed) = (exercise.id, rand::random_bool(0.7));
    let answer = exercise.answer(passed);
    let attempt_id = uuid::Uuid::new_v4().to_string();
    let body = json!({
        "passed": passed, "score": if passed { 100 } else { 0 },
        "code": "# charge", "attempt_id": attempt_id, "duration_ms": 5000,
    });
    tally::count(&tally::SENT);
    let response = call(
        user,
        GooseMethod::Post,
        &format!("/exercises/{exercise_id}/submit/"),
        "/exercises/{id}/submit/",
        Some(&body),
    )
    .await?;
    let acked = match response.response {
        Ok(r) if r.status().is_success() => r
            .json::<serde_json::Value>()
            .await
            .is_ok_and(|v| v["attempt_id"] == attempt_id.as_str()),
        _ => false,
    };
    if acked {
        tally::count(&tally::ACKED);
    } else {
        tally::unacked(Unacked {
            token: token(user).to_owned(),
            exercise_id,
            body: json!({ "attempt_id": attempt_id, "answer": answer }),
        });
    }
    Ok(())
}

/// `signin`: the user's student signs in on "another device" with the class code, their
/// pseudonym and the school's recovery code (one argon2 check each).
pub async fn sign_in(user: &mut GooseUser) -> TransactionResult {
    let fixture = &config().fixture;
    let student = &fixture.students[user.get_session_data_unchecked::<Pupil>().0];
    let body = json!({
        "join_code": fixture.classes[student.class].join_code,
        "pseudonym": student.pseudonym,
        "recovery_code": fixture.recovery_code,
        "bearer": true,
    });
    let builder = user
        .get_request_builder(&GooseMethod::Post, "/api/v1/auth/recover")?
        .json(&body)
        .timeout(Duration::from_secs(60));
    let request = GooseRequest::builder()
        .method(GooseMethod::Post)
        .path("/api/v1/auth/recover")
        .name("/api/v1/auth/recover")
        .set_request_builder(builder)
        .build();
    let response = user.request(request).await?;
    if response.response.is_ok_and(|r| r.status().is_success()) {
        tally::count(&tally::SIGNINS);
    }
    Ok(())
}
