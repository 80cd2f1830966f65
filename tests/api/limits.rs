//! Bounds on what one user may make the server do or keep: hint reveals per minute (HTTP and
//! sockets together), classrooms per teacher.

use serde_json::json;

use crate::both_backends;
use crate::helpers::{TestApp, TestDb, assert_error};
use crate::ws::{exercises, new_class, student, student_socket};

/// The first hint of the catalogue.
pub(crate) async fn a_hint(app: &TestApp) -> i64 {
    for ex in exercises(app, usize::MAX).await {
        let e = app.get_json(&format!("/api/v1/exercises/{ex}"), 200).await;
        if let Some(h) = e["hints"].as_array().and_then(|h| h.first()) {
            return h["id"].as_i64().expect("hint id");
        }
    }
    panic!("no exercise with a hint in content/");
}

both_backends!(
    hint_reveals_are_rate_limited_over_http_and_sockets_together,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let mut settings = db.settings();
        settings.submissions.hint_reveals_per_minute = 3;
        let app = TestApp::spawn_with(db, settings).await;
        let hint = a_hint(&app).await;
        let (_, _, class) = new_class(&app).await;
        let (user, token) = student(&app, &class).await;
        let path = format!("/api/v1/hints/{hint}/reveal");
        // Two over HTTP (the second one already revealed: it counts too), one over the socket.
        user.post_json(&path, &json!({}), 200).await;
        user.post_json(&path, &json!({}), 200).await;
        let mut ws = student_socket(&app, &token).await;
        ws.send(json!({"type": "hint_reveal", "hint_id": hint}))
            .await;
        ws.expect("hint_revealed").await;
        // The fourth within the minute is refused on both, with when to retry.
        ws.send(json!({"type": "hint_reveal", "hint_id": hint}))
            .await;
        let refused = ws.expect("error").await;
        assert_eq!(refused["code"], "rate_limited", "{refused}");
        assert_eq!(refused["hint_id"], hint);
        let wait = refused["retry_after_secs"]
            .as_u64()
            .expect("retry_after_secs");
        assert!((1..=60).contains(&wait), "{refused}");
        let body = user.post_json(&path, &json!({}), 429).await;
        assert_error(&body, "rate_limited");
        // The socket is still open.
        ws.send(json!({"type": "ping"})).await;
        ws.expect("pong").await;
    }
);

both_backends!(
    a_teacher_may_have_a_bounded_number_of_classrooms,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let mut settings = db.settings();
        settings.classrooms.max_per_teacher = 2;
        let app = TestApp::spawn_with(db, settings).await;
        let teacher = app.signup_teacher().await;
        let first = app.create_classroom(&teacher).await;
        app.create_classroom(&teacher).await;
        let body = json!({ "name": "Une de trop" });
        let refused = teacher.post_json("/api/v1/classrooms", &body, 409).await;
        assert_error(&refused, "too_many_classrooms");
        // Archived classes count; a purged one makes room.
        teacher
            .patch_json(
                &format!("/api/v1/classrooms/{}", first.id),
                &json!({ "archived": true }),
                200,
            )
            .await;
        teacher.post_json("/api/v1/classrooms", &body, 409).await;
        let name = first.json["name"].as_str().expect("name").to_owned();
        teacher
            .post_json(
                &format!("/api/v1/classrooms/{}/purge", first.id),
                &json!({ "confirm_name": name }),
                200,
            )
            .await;
        teacher.post_json("/api/v1/classrooms", &body, 201).await;
        // Another teacher has their own count.
        let other = app.signup_teacher().await;
        app.create_classroom(&other).await;
        let listed = teacher.get_json("/api/v1/classrooms", 200).await;
        assert_eq!(listed.as_array().map(Vec::len), Some(2));
    }
);
