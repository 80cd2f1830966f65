//! A socket lives no longer than the session it was opened with: whatever ends the session
//! (logout, a recovery code reset, the last class left or removed or purged, a password change)
//! closes its sockets at once with 4010, and nothing sent on them afterwards is handled.

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::both_backends;
use crate::helpers::{Backend, TEST_PASSWORD, TestApp, TestClassroom, TestDb, unique};
use crate::ws::{
    Ws, exercises, new_class, student, student_socket, submit_msg, teacher, teacher_socket,
};

/// 4010: the session ended.
const SESSION_ENDED: u16 = 4010;

/// Reads the 4010 close, then tries a submit on the closed socket: it cannot be sent, and no
/// attempt of the student reaches the database.
async fn closed_for_good(app: &TestApp, ws: &mut Ws, exercise: i64, student_id: i64) {
    assert_eq!(ws.close_code().await, SESSION_ENDED);
    let (_, msg) = submit_msg(exercise, true);
    let sent = ws.stream.send(Message::text(msg.to_string())).await;
    assert!(sent.is_err(), "a closed socket took a message");
    let stored = app
        .db
        .scalar(&format!(
            "SELECT COUNT(*) FROM attempts WHERE student_id = {student_id}"
        ))
        .await;
    assert_eq!(stored, 0);
}

/// A class with a student (bearer token) whose socket is open.
async fn class_with_student(app: &TestApp) -> (String, TestClassroom, i64, String, Ws) {
    let (_teacher, teacher_token, class) = new_class(app).await;
    let (student_user, token) = student(app, &class).await;
    let ws = student_socket(app, &token).await;
    (teacher_token, class, student_user.id, token, ws)
}

fn bearer(app: &TestApp, token: &str) -> crate::helpers::TestUser {
    let mut user = app.anonymous();
    user.token = Some(token.to_owned());
    user
}

both_backends!(
    a_student_removed_from_their_last_class_is_disconnected,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let ex = exercises(&app, 1).await[0];
        let (teacher_token, class, id, _, mut ws) = class_with_student(&app).await;
        bearer(&app, &teacher_token)
            .delete(
                &format!("/api/v1/classrooms/{}/students/{id}", class.id),
                204,
            )
            .await;
        closed_for_good(&app, &mut ws, ex, id).await;
    }
);

both_backends!(
    a_recovery_code_reset_disconnects_every_socket_of_the_student,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let ex = exercises(&app, 1).await[0];
        let (teacher_token, class, id, token, mut ws) = class_with_student(&app).await;
        let mut second_tab = student_socket(&app, &token).await;
        bearer(&app, &teacher_token)
            .post_json(
                &format!(
                    "/api/v1/classrooms/{}/students/{id}/recovery-code",
                    class.id
                ),
                &json!({}),
                200,
            )
            .await;
        closed_for_good(&app, &mut ws, ex, id).await;
        closed_for_good(&app, &mut second_tab, ex, id).await;
    }
);

both_backends!(
    a_logout_closes_that_sessions_sockets_only,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let ex = exercises(&app, 1).await[0];
        let (_, _, class) = new_class(&app).await;
        // One student signed in on two devices: two sessions.
        let pseudonym = unique("élève-");
        let joined = app
            .anonymous()
            .post_json(
                "/api/v1/auth/join",
                &json!({ "join_code": class.join_code, "pseudonym": pseudonym, "bearer": true }),
                201,
            )
            .await;
        let id = joined["user"]["id"].as_i64().expect("id");
        let token = joined["token"].as_str().expect("token").to_owned();
        let recovered = app
            .anonymous()
            .post_json(
                "/api/v1/auth/recover",
                &json!({
                    "join_code": class.join_code, "pseudonym": pseudonym,
                    "recovery_code": joined["recovery_code"], "bearer": true,
                }),
                200,
            )
            .await;
        let other_token = recovered["token"].as_str().expect("token").to_owned();
        let mut ws = student_socket(&app, &token).await;
        let mut other_device = student_socket(&app, &other_token).await;

        bearer(&app, &token)
            .expect(reqwest::Method::POST, "/api/v1/auth/logout", None, 204)
            .await;
        closed_for_good(&app, &mut ws, ex, id).await;
        // The other device's session goes on, and so does its socket.
        other_device.send(json!({"type": "ping"})).await;
        other_device.expect("pong").await;
    }
);

both_backends!(
    leaving_the_last_class_and_a_purged_class_disconnect,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let ex = exercises(&app, 1).await[0];
        let (_, class, id, token, mut ws) = class_with_student(&app).await;
        bearer(&app, &token)
            .delete(&format!("/api/v1/me/classes/{}", class.id), 204)
            .await;
        closed_for_good(&app, &mut ws, ex, id).await;

        let (teacher_token, class, id, _, mut ws) = class_with_student(&app).await;
        let name = class.json["name"].as_str().expect("name").to_owned();
        bearer(&app, &teacher_token)
            .post_json(
                &format!("/api/v1/classrooms/{}/purge", class.id),
                &json!({ "confirm_name": name }),
                200,
            )
            .await;
        closed_for_good(&app, &mut ws, ex, id).await;
    }
);

both_backends!(
    a_password_change_or_a_logout_closes_the_teachers_dashboards,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (teacher_user, token, class) = new_class(&app).await;
        let (mut dash, _) = teacher_socket(&app, &class, &token).await;
        let login = teacher_user.login.clone().expect("login");
        teacher_user
            .post_json(
                "/api/v1/me/password",
                &json!({
                    "current_password": TEST_PASSWORD,
                    "new_password": "un autre mot de passe",
                }),
                200,
            )
            .await;
        assert_eq!(dash.close_code().await, SESSION_ENDED);

        let signed_in = app
            .anonymous()
            .post_json(
                "/api/v1/auth/login",
                &json!({ "login": login, "password": "un autre mot de passe", "bearer": true }),
                200,
            )
            .await;
        let token = signed_in["token"].as_str().expect("token").to_owned();
        let (mut dash, _) = teacher_socket(&app, &class, &token).await;
        bearer(&app, &token)
            .expect(reqwest::Method::POST, "/api/v1/auth/logout", None, 204)
            .await;
        assert_eq!(dash.close_code().await, SESSION_ENDED);
    }
);

/// A session ended where the bus does not reach (here: deleted in the database, as the command
/// line's `reset-password` does) is found by the socket's heartbeat.
#[tokio::test]
async fn a_session_ended_out_of_sight_is_found_at_the_next_heartbeat() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = db.settings();
    settings.ws.heartbeat_interval_secs = 1;
    settings.auth.session_cache_ttl_secs = 1;
    let app = TestApp::spawn_with(db, settings).await;
    let (_, token) = teacher(&app).await;
    let class = app.create_classroom(&bearer(&app, &token)).await;
    let (mut dash, _) = teacher_socket(&app, &class, &token).await;
    app.db.execute("DELETE FROM sessions").await;
    // At the next heartbeat past the cache's second; the close code says why.
    assert_eq!(dash.close_code().await, SESSION_ENDED);
}
