//! Security hardening (issue 8): text the databases cannot store, recovery-code resets across
//! teachers, look-alike pseudonyms, and the Origin check behind a proxy. (Sign-in memory has its
//! own test binary: tests/rss_signin.rs.)

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TEST_PASSWORD, TestApp, TestDb, assert_error, unique};

/// Rows of the tables a refused request must not have touched.
async fn counts(app: &TestApp) -> [i64; 4] {
    let mut out = [0; 4];
    for (i, table) in ["users", "enrollments", "classrooms", "attempts"]
        .iter()
        .enumerate()
    {
        out[i] = app
            .db
            .scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .await;
    }
    out
}

both_backends!(nul_characters_are_refused_with_400, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let teacher = app.signup_teacher().await;
    let classroom = app.create_classroom(&teacher).await;
    let student = app.student_in(&classroom).await;
    let exercise = app
        .listed_exercises()
        .await
        .into_iter()
        .find(|e| e.kind == "python")
        .expect("a Python exercise");
    let before = counts(&app).await;
    let anon = app.anonymous();
    let login = teacher.login.clone().unwrap();
    let attempt_id = uuid::Uuid::new_v4().to_string();
    let nul_answer = {
        let mut answer = crate::helpers::answer_for(&exercise.slug, true);
        answer["code"] = json!("print('a\u{0}b')");
        answer
    };
    let cases: Vec<(&crate::helpers::TestUser, String, Value)> = vec![
        (
            &anon,
            "/api/v1/auth/login".into(),
            json!({ "login": "ab\u{0}c", "password": "peu importe" }),
        ),
        (
            &anon,
            "/api/v1/auth/login".into(),
            json!({ "login": login, "password": "mot\u{0}de passe" }),
        ),
        (
            &anon,
            "/api/v1/auth/recover".into(),
            json!({ "join_code": classroom.join_code, "pseudonym": "él\u{0}ève",
                    "recovery_code": "ABCDE-FGH23" }),
        ),
        (
            &anon,
            "/api/v1/auth/join".into(),
            json!({ "join_code": classroom.join_code, "pseudonym": "Lé\u{0}a" }),
        ),
        (
            &anon,
            "/api/v1/auth/signup".into(),
            json!({ "login": unique("prof-"), "display_name": "M\u{0}me",
                    "password": TEST_PASSWORD }),
        ),
        (
            &teacher,
            "/api/v1/classrooms".into(),
            json!({ "name": "NSI\u{0}", "school": "Lycée" }),
        ),
        // A key holding NUL too.
        (
            &teacher,
            "/api/v1/classrooms".into(),
            json!({ "name": "NSI", "sch\u{0}ool": "Lycée" }),
        ),
        (
            &student,
            format!("/api/v1/exercises/{}/attempts", exercise.id),
            json!({ "attempt_id": attempt_id, "answer": nul_answer }),
        ),
        (
            &student,
            format!("/exercises/{}/submit/", exercise.id),
            json!({ "attempt_id": attempt_id, "passed": true, "score": 100,
                    "code": "print('\u{0}')" }),
        ),
    ];
    // Many in a row: each is a plain 400 (no 500, no ERROR log line, no throttle needed).
    for _ in 0..3 {
        for (user, path, body) in &cases {
            let answer = user.post_json(path, body, 400).await;
            assert_error(&answer, "invalid_text");
        }
    }
    assert_eq!(counts(&app).await, before, "nothing stored");

    // The same text without the NUL is fine (the check is not a blanket refusal of escapes).
    let mut fine = crate::helpers::answer_for(&exercise.slug, true);
    fine["code"] = json!("print('\\u0000 is written as an escape')");
    student
        .post_json(
            &format!("/api/v1/exercises/{}/attempts", exercise.id),
            &json!({ "attempt_id": attempt_id, "answer": fine }),
            200,
        )
        .await;

    // The writer's last guard: what PostgreSQL answers for NUL is a data error, not a transient
    // one, so an attempt that reached it would answer 400 `not_storable` rather than 503.
    if backend == Backend::Postgres {
        use sqlx::Connection;
        let url = app.db.url.clone().unwrap();
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        let err = sqlx::query("SELECT $1::text")
            .bind("a\u{0}b")
            .execute(&mut c)
            .await
            .expect_err("PostgreSQL refuses NUL in text");
        let err = anyhow::Error::from(err);
        assert!(
            nsi_live::actors::writer::is_data_error(&err),
            "{err:#} is a data error"
        );
    }
});

// The socket's `submit` goes through the same validation as HTTP (the JSON extractor does not see
// it): NUL in the answer is an `error` with `invalid_text`, nothing is stored, the socket stays.
both_backends!(a_socket_submit_with_nul_is_refused, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let (_teacher, _, class) = crate::ws::new_class(&app).await;
    let (_student, token) = crate::ws::student(&app, &class).await;
    let exercise = app
        .listed_exercises()
        .await
        .into_iter()
        .find(|e| e.kind == "python")
        .expect("a Python exercise");
    let before = counts(&app).await;
    let mut ws = crate::ws::student_socket(&app, &token).await;
    let attempt_id = uuid::Uuid::new_v4().to_string();
    let mut answer = crate::helpers::answer_for(&exercise.slug, true);
    answer["code"] = json!("print('a\u{0}b')");
    ws.send(json!({
        "type": "submit", "attempt_id": attempt_id, "exercise_id": exercise.id,
        "answer": answer, "duration_ms": 1200,
    }))
    .await;
    let error = ws.expect("error").await;
    assert_eq!(error["code"], "invalid_text", "{error}");
    assert_eq!(error["attempt_id"], attempt_id.as_str());
    assert_eq!(counts(&app).await, before, "nothing stored");
    ws.send(json!({"type": "get_progress"})).await;
    assert_eq!(
        ws.expect("progress").await["xp"],
        0,
        "the socket stays open"
    );
});

both_backends!(
    only_a_teacher_with_the_student_in_all_their_classes_resets_their_code,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let x = app.signup_teacher().await;
        let y = app.signup_teacher().await;
        let class_x = app.create_classroom(&x).await;
        let class_y = app.create_classroom(&y).await;
        let student = app.join(&class_x.join_code, "Camille").await;
        student
            .post_json(
                "/api/v1/auth/join",
                &json!({ "join_code": class_y.join_code, "pseudonym": "Camille",
                         "as_current_user": true }),
                201,
            )
            .await;
        let reset = |teacher: &crate::helpers::TestUser, class: i64| {
            let path = format!(
                "/api/v1/classrooms/{class}/students/{}/recovery-code",
                student.id
            );
            let teacher = teacher.client.clone();
            let url = format!("{}{path}", app.address);
            async move {
                let r = teacher
                    .post(url)
                    .header("content-type", "application/json")
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                (status, r.json::<Value>().await.unwrap())
            }
        };
        for (teacher, class) in [(&x, class_x.id), (&y, class_y.id)] {
            let (status, body) = reset(teacher, class).await;
            assert_eq!(status, 409, "{body}");
            assert_error(&body, "student_in_other_teachers_class");
        }
        // Nothing changed: the student's code and session still work.
        student.get_json("/api/v1/me", 200).await;
        app.anonymous()
            .post_json(
                "/api/v1/auth/recover",
                &json!({ "join_code": class_x.join_code, "pseudonym": "Camille",
                         "recovery_code": student.recovery_code.clone().unwrap() }),
                200,
            )
            .await;
        // Once only in X's class, X may reset.
        y.delete(
            &format!("/api/v1/classrooms/{}/students/{}", class_y.id, student.id),
            204,
        )
        .await;
        let (status, body) = reset(&x, class_x.id).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["recovery_code"].is_string(), "{body}");
    }
);

both_backends!(
    look_alike_pseudonyms_are_one_pseudonym_in_a_class,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let teacher = app.signup_teacher().await;
        let classroom = app.create_classroom(&teacher).await;
        app.join(&classroom.join_code, "Alice Martin").await;
        // A Cyrillic А (U+0410), then a Cyrillic а (U+0430) inside.
        for look_alike in ["\u{410}lice Martin", "Alice M\u{430}rtin"] {
            let body = app
                .anonymous()
                .post_json(
                    "/api/v1/auth/join",
                    &json!({ "join_code": classroom.join_code, "pseudonym": look_alike }),
                    409,
                )
                .await;
            assert_error(&body, "pseudonym_taken");
        }
        // A student already signed in, adding this class: the same rule.
        let other_class = app.create_classroom(&teacher).await;
        let student = app.join(&other_class.join_code, "\u{410}lice Martin").await;
        let body = student
            .post_json(
                "/api/v1/auth/join",
                &json!({ "join_code": classroom.join_code, "pseudonym": "\u{410}lice Martin",
                         "as_current_user": true }),
                409,
            )
            .await;
        assert_error(&body, "pseudonym_taken");
        assert_eq!(
            app.db
                .scalar(&format!(
                    "SELECT COUNT(*) FROM enrollments WHERE classroom_id = {}",
                    classroom.id
                ))
                .await,
            1
        );

        // Enrollments made before the skeleton column get theirs at start-up.
        app.join(&classroom.join_code, "Bob Dupont").await;
        app.db
            .execute("UPDATE enrollments SET pseudonym_skeleton = NULL")
            .await;
        let app = app.restart().await;
        assert_eq!(
            app.db
                .scalar("SELECT COUNT(*) FROM enrollments WHERE pseudonym_skeleton IS NULL")
                .await,
            0
        );
        let body = app
            .anonymous()
            .post_json(
                "/api/v1/auth/join",
                &json!({ "join_code": classroom.join_code, "pseudonym": "B0b Dupont" }),
                409,
            )
            .await;
        assert_error(&body, "pseudonym_taken");
    }
);

both_backends!(
    forwarded_hosts_count_for_the_origin_check_only_when_trusted,
    |backend| async move {
        for trust in [false, true] {
            let db = TestDb::new(backend).await;
            let mut settings = db.settings();
            settings.server.trust_forwarded_headers = trust;
            let app = TestApp::spawn_with(db, settings).await;
            let r = app
                .client
                .request(Method::POST, app.url("/api/v1/auth/logout"))
                .header("origin", "https://nsi.example.fr")
                .header("x-forwarded-host", "nsi.example.fr")
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            if trust {
                assert_eq!(status, 204);
            } else {
                assert_eq!(status, 403);
                assert_error(&r.json().await.unwrap(), "forbidden_origin");
            }
            app.stop().await;
        }
    }
);
