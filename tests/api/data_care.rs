//! Data care: a class purged at the end of the year leaves nothing of its students (table by
//! table), a user downloads their own data, a backup taken under load holds every acknowledged
//! attempt, and a statement past `database.statement_timeout_ms` is cancelled and answered 503.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nsi_live::store::Store;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, TestDb, TestUser, assert_error};

/// The first Python exercise of the catalogue (its id).
async fn python_exercise(app: &TestApp) -> i64 {
    let listed = app.listed_exercises().await;
    for e in listed {
        let ex = app
            .get_json(&format!("/api/v1/exercises/{}", e.id), 200)
            .await;
        if ex["type"] == "python" {
            return e.id;
        }
    }
    panic!("the catalogue has no Python exercise");
}

/// A Python submission with `attempt_id` through the portal's route (the one that takes the
/// browser's verdict): (status, body).
async fn submit(user: &TestUser, exercise: i64, attempt_id: &str, passed: bool) -> (u16, Value) {
    let body = json!({
        "attempt_id": attempt_id,
        "passed": passed,
        "score": if passed { 100 } else { 0 },
        "code": format!("# tentative {attempt_id}"),
    });
    user.request(
        reqwest::Method::POST,
        &format!("/exercises/{exercise}/submit/"),
        Some(&body),
    )
    .await
}

fn new_attempt_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Rows of `table` whose `column` is `id`.
async fn rows(db: &TestDb, table: &str, column: &str, id: i64) -> i64 {
    db.scalar(&format!(
        "SELECT COUNT(*) FROM {table} WHERE {column} = {id}"
    ))
    .await
}

both_backends!(
    a_purged_class_leaves_nothing_of_its_students,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let teacher = app.signup_teacher().await;
        let class = app.create_classroom(&teacher).await;
        let other_teacher = app.signup_teacher().await;
        let other_class = app.create_classroom(&other_teacher).await;
        let leaving = app.student_in(&class).await;
        let staying = app.student_in(&class).await;
        // `staying` is also in another teacher's class: their work stays for it.
        let staying_elsewhere = app.same_browser(&staying);
        staying_elsewhere
            .post_json(
                "/api/v1/auth/join",
                &json!({"join_code": other_class.join_code, "pseudonym": "Reste", "as_current_user": true}),
                201,
            )
            .await;
        let ex = python_exercise(&app).await;
        for student in [&leaving, &staying] {
            for passed in [false, true] {
                let (status, body) = submit(student, ex, &new_attempt_id(), passed).await;
                assert_eq!(status, 200, "{body}");
            }
        }
        teacher
            .put_json(
                &format!(
                    "/api/v1/classrooms/{}/assignments/{}",
                    class.id, "nsi-1-python-bases"
                ),
                &json!({}),
                200,
            )
            .await;

        // A wrong confirmation deletes nothing; a stranger cannot purge; a student neither.
        let path = format!("/api/v1/classrooms/{}/purge", class.id);
        let refused = teacher
            .post_json(&path, &json!({"confirm_name": "pas le nom"}), 400)
            .await;
        assert_error(&refused, "confirmation_mismatch");
        let name = class.json["name"].as_str().expect("class name").to_owned();
        other_teacher
            .post_json(&path, &json!({"confirm_name": name}), 404)
            .await;
        leaving
            .post_json(&path, &json!({"confirm_name": name}), 403)
            .await;
        assert_eq!(rows(&app.db, "attempts", "student_id", leaving.id).await, 2);

        let report = teacher
            .post_json(&path, &json!({"confirm_name": name}), 200)
            .await;
        assert_eq!(report["students_deleted"], 1, "{report}");
        assert_eq!(report["students_kept"], 1, "{report}");
        assert_eq!(report["attempts_deleted"], 2, "{report}");

        // Table by table: nothing of the student whose only class it was.
        for (table, column) in [
            ("users", "id"),
            ("sessions", "user_id"),
            ("enrollments", "student_id"),
            ("attempts", "student_id"),
            ("progress", "student_id"),
            ("student_stats", "student_id"),
            ("student_badges", "student_id"),
            ("student_achievements", "student_id"),
            ("hint_uses", "student_id"),
        ] {
            assert_eq!(
                rows(&app.db, table, column, leaving.id).await,
                0,
                "{table} still holds the purged student"
            );
        }
        for (table, column) in [
            ("classrooms", "id"),
            ("enrollments", "classroom_id"),
            ("chapter_assignments", "classroom_id"),
        ] {
            assert_eq!(
                rows(&app.db, table, column, class.id).await,
                0,
                "{table} still holds the purged class"
            );
        }
        // The other student keeps their account, their work and their other class.
        assert_eq!(rows(&app.db, "attempts", "student_id", staying.id).await, 2);
        assert_eq!(
            rows(&app.db, "enrollments", "student_id", staying.id).await,
            1
        );
        staying.get_json("/api/v1/me", 200).await;
        // The purged student is signed out at once.
        leaving.get_json("/api/v1/me", 401).await;
        teacher
            .get_json(&format!("/api/v1/classrooms/{}", class.id), 404)
            .await;
    }
);

both_backends!(
    a_student_downloads_everything_stored_about_them,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let teacher = app.signup_teacher().await;
        let class = app.create_classroom(&teacher).await;
        let student = app.student_in(&class).await;
        let other = app.student_in(&class).await;
        let ex = python_exercise(&app).await;
        let mine = new_attempt_id();
        assert_eq!(submit(&student, ex, &mine, true).await.0, 200);
        assert_eq!(submit(&other, ex, &new_attempt_id(), true).await.0, 200);

        let response = student
            .builder(reqwest::Method::GET, "/api/v1/me/export")
            .send()
            .await
            .expect("export");
        assert_eq!(response.status(), 200);
        let disposition = response.headers()["content-disposition"]
            .to_str()
            .expect("header")
            .to_owned();
        assert!(disposition.starts_with("attachment"), "{disposition}");
        let doc: Value = response.json().await.expect("json");
        assert_eq!(doc["account"]["id"], student.id);
        assert_eq!(doc["classes"][0]["classroom_id"], class.id);
        let attempts = doc["attempts"].as_array().expect("attempts");
        assert_eq!(attempts.len(), 1, "only their own attempts: {doc}");
        assert_eq!(attempts[0]["attempt_id"], mine.as_str());
        assert_eq!(attempts[0]["code"], format!("# tentative {mine}"));
        assert_eq!(doc["progress"].as_array().expect("progress").len(), 1);
        assert!(doc["stats"]["xp"].as_i64().expect("xp") > 0, "{doc}");
        // No secret of the account is exported.
        let text = doc.to_string();
        assert!(!text.contains("argon2"), "{text}");
        assert!(!text.contains("password"), "{text}");

        let teacher_doc = teacher.get_json("/api/v1/me/export", 200).await;
        assert_eq!(teacher_doc["classes_taught"][0]["classroom_id"], class.id);
        app.anonymous().get_json("/api/v1/me/export", 401).await;
    }
);

#[tokio::test]
async fn a_backup_taken_under_load_holds_every_attempt_acknowledged_before_it() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let teacher = app.signup_teacher().await;
    let class = app.create_classroom(&teacher).await;
    let ex = python_exercise(&app).await;
    let mut students = Vec::new();
    for _ in 0..4 {
        students.push(app.student_in(&class).await);
    }
    // Each student submits in a loop until told to stop; acknowledged ids are collected.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut tasks = Vec::new();
    for student in &students {
        let user = app.same_browser(student);
        let (stop, acked) = (stop.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed) && sent < 90 {
                let id = new_attempt_id();
                let (status, body) = submit(&user, ex, &id, sent % 3 == 0).await;
                assert_eq!(status, 200, "{body}");
                acked.lock().expect("lock").push(id);
                sent += 1;
            }
        }));
    }
    // Let the load run, then note what is acknowledged and take the backup while it goes on.
    while acked.lock().expect("lock").len() < 40 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let before: Vec<String> = acked.lock().expect("lock").clone();
    let settings = app.db.settings();
    let store = Store::connect(&settings.database).await.expect("store");
    let dir = tempfile::tempdir().expect("dir");
    let backup = dir.path().join("backup.db");
    store.backup_to(&backup).await.expect("backup");
    // The same file again is refused rather than overwritten.
    assert!(store.backup_to(&backup).await.is_err());
    store.close().await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("submitter");
    }

    // Restore: a server started on the backup file holds every attempt acknowledged before it.
    let mut restored_settings = settings.clone();
    restored_settings.database.sqlite_path = backup.clone();
    let restored = Store::connect(&restored_settings.database)
        .await
        .expect("the backup opens as a database");
    restored.close().await;
    let mut copy = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        backup.display()
    ))
    .await
    .expect("open the backup");
    let stored: Vec<String> = sqlx::query_scalar("SELECT attempt_id FROM attempts")
        .fetch_all(&mut copy)
        .await
        .expect("attempts");
    let stored: std::collections::HashSet<String> = stored.into_iter().collect();
    for id in &before {
        assert!(
            stored.contains(id),
            "acknowledged attempt {id} is missing from the backup"
        );
    }
}

#[tokio::test]
async fn a_statement_past_the_statement_timeout_is_cancelled_and_answered_503() {
    // PostgreSQL: another connection locks the attempts table, so the writer's INSERT waits;
    // the server's statement_timeout cancels it.
    let db = TestDb::new(Backend::Postgres).await;
    let mut settings = db.settings();
    settings.database.statement_timeout_ms = 300;
    settings.writer.retry_window_ms = 200;
    let app = TestApp::spawn_with(db, settings).await;
    let teacher = app.signup_teacher().await;
    let class = app.create_classroom(&teacher).await;
    let student = app.student_in(&class).await;
    let ex = python_exercise(&app).await;
    let url = app.db.url.clone().expect("a PostgreSQL test database");
    let mut lock = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("connect");
    sqlx::raw_sql("BEGIN; LOCK TABLE attempts IN EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .expect("lock");

    let id = new_attempt_id();
    let (status, body) = submit(&student, ex, &id, true).await;
    assert_eq!(status, 503, "{body}");
    assert_error(&body, "unavailable");
    // PostgreSQL cancelled the statement: nothing of ours still waits for the lock, which is
    // still held (without the timeout the writer's INSERT would wait behind it).
    let waiting = app
        .db
        .scalar(
            "SELECT COUNT(*) FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND datname = current_database()",
        )
        .await;
    assert_eq!(
        waiting, 0,
        "the writer's statement still waits for the lock"
    );

    sqlx::raw_sql("ROLLBACK")
        .execute(&mut lock)
        .await
        .expect("unlock");
    // Nothing half-written; the browser's resend is stored once.
    assert_eq!(rows(&app.db, "attempts", "student_id", student.id).await, 0);
    let (status, body) = submit(&student, ex, &id, true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(rows(&app.db, "attempts", "student_id", student.id).await, 1);
}

#[tokio::test]
async fn a_read_past_the_statement_timeout_is_answered_503_not_500() {
    // PostgreSQL: another connection locks `classrooms` entirely, so the teacher's list waits;
    // the server's statement_timeout cancels it (SQLSTATE 57014): overload, not a bug.
    let db = TestDb::new(Backend::Postgres).await;
    let mut settings = db.settings();
    settings.database.statement_timeout_ms = 300;
    let app = TestApp::spawn_with(db, settings).await;
    let teacher = app.signup_teacher().await;
    app.create_classroom(&teacher).await;
    let url = app.db.url.clone().expect("a PostgreSQL test database");
    let mut lock = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("connect");
    sqlx::raw_sql("BEGIN; LOCK TABLE classrooms IN ACCESS EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .expect("lock");

    let (status, body) = teacher
        .request(reqwest::Method::GET, "/api/v1/classrooms", None)
        .await;
    assert_eq!(status, 503, "{body}");
    assert_error(&body, "unavailable");
    assert!(body["retry_after"].as_u64().is_some(), "{body}");

    sqlx::raw_sql("ROLLBACK")
        .execute(&mut lock)
        .await
        .expect("unlock");
    let (status, body) = teacher
        .request(reqwest::Method::GET, "/api/v1/classrooms", None)
        .await;
    assert_eq!(status, 200, "{body}");
}
