//! `nsi-live admin seed-load`: the load-test school is in the database, its fixture's tokens
//! open working sessions (HTTP and socket), its shared password and recovery code sign in, and a
//! second seed with the same prefix changes nothing.

use serde_json::{Value, json};

use crate::accounts::run_cli;
use crate::both_backends;
use crate::helpers::{Backend, TestApp, TestDb, content_dir};
use crate::ws;

fn seed(db: &TestDb, dir: &std::path::Path, args: &[&str]) -> (bool, Option<Value>, String) {
    let out = dir.join("fixture.json");
    let _ = std::fs::remove_file(&out);
    let mut all = vec!["admin", "seed-load", "--out", out.to_str().unwrap()];
    all.extend_from_slice(args);
    let content = content_dir();
    let (ok, _stdout, stderr) = run_cli(
        db,
        &all,
        "",
        &[("NSI__CONTENT__DIR", content.to_str().unwrap())],
    );
    let fixture = std::fs::read(&out)
        .ok()
        .map(|bytes| serde_json::from_slice(&bytes).expect("fixture is JSON"));
    (ok, fixture, stderr)
}

async fn get_bearer(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let response = app
        .client
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

both_backends!(
    seed_load_writes_a_working_school_and_its_fixture,
    |backend: Backend| async move {
        let db = TestDb::new(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let (ok, fixture, stderr) = seed(
            &db,
            dir.path(),
            &["--teachers", "2", "--classes", "3", "--students", "4"],
        );
        assert!(ok, "{stderr}");
        let f = fixture.expect("fixture written");
        assert_eq!(f["version"], 1);
        let teachers = f["teachers"].as_array().unwrap();
        let classes = f["classes"].as_array().unwrap();
        let students = f["students"].as_array().unwrap();
        assert_eq!((teachers.len(), classes.len(), students.len()), (2, 3, 12));
        assert_eq!(db.scalar("SELECT COUNT(*) FROM users").await, 14);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM sessions").await, 14);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM enrollments").await, 12);
        // Classes go round the teachers: teacher 0 has classes 0 and 2.
        assert_eq!(
            classes
                .iter()
                .map(|c| c["teacher"].as_u64().unwrap())
                .collect::<Vec<_>>(),
            [0, 1, 0]
        );
        let exercises = f["exercises"].as_array().unwrap();
        assert!(!exercises.is_empty());
        assert!(
            exercises
                .iter()
                .all(|e| !e["tests"].as_array().unwrap().is_empty())
        );

        let settings = db.settings();
        let app = TestApp::spawn_with(db, settings).await;

        // A student's token is a live session, in the class the fixture says.
        let student = &students[5];
        let class = &classes[student["class"].as_u64().unwrap() as usize];
        let token = student["token"].as_str().unwrap();
        let (status, me) = get_bearer(&app, token, "/api/v1/me").await;
        assert_eq!(status, 200, "{me}");
        assert_eq!(me["id"], student["id"]);
        assert_eq!(me["role"], "student");
        let (status, mine) = get_bearer(&app, token, "/api/v1/me/classes").await;
        assert_eq!(status, 200, "{mine}");
        assert_eq!(mine[0]["id"], class["id"], "{mine}");

        // A teacher's token sees their classes, and opens their dashboards.
        let teacher_token = teachers[0]["token"].as_str().unwrap();
        let (status, owned) = get_bearer(&app, teacher_token, "/api/v1/classrooms").await;
        assert_eq!(status, 200, "{owned}");
        let mut owned: Vec<i64> = owned
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_i64().unwrap())
            .collect();
        owned.sort_unstable();
        assert_eq!(
            owned,
            [
                classes[0]["id"].as_i64().unwrap(),
                classes[2]["id"].as_i64().unwrap()
            ]
        );
        let mut dash = ws::connect(&app, &format!("/ws/classrooms/{}", class["id"]), {
            teachers[class["teacher"].as_u64().unwrap() as usize]["token"]
                .as_str()
                .unwrap()
        })
        .await;
        dash.expect("welcome").await;
        dash.expect("snapshot").await;

        // The fixture's exercise and test names make an answer the server takes, on the socket.
        let exercise = &exercises[0];
        let tests: Vec<Value> = exercise["tests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|name| json!({ "name": name, "passed": true }))
            .collect();
        let mut socket = ws::student_socket(&app, token).await;
        let attempt_id = uuid::Uuid::new_v4().to_string();
        socket
            .send(json!({
                "type": "submit", "exercise_id": exercise["id"], "attempt_id": attempt_id,
                "answer": { "code": "pass", "tests": tests },
            }))
            .await;
        let result = socket.expect("result").await;
        assert_eq!(result["attempt_id"], attempt_id.as_str());
        assert_eq!(result["passed"], true, "{result}");
        let delta = dash.delta("attempt_recorded").await;
        assert_eq!(delta["attempt_id"], attempt_id.as_str());

        // The shared recovery code and password sign in (the sign-in phases' way).
        let recovered = app
            .client
            .post(app.url("/api/v1/auth/recover"))
            .json(&json!({
                "join_code": class["join_code"], "pseudonym": student["pseudonym"],
                "recovery_code": f["recovery_code"], "bearer": true,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(recovered.status().as_u16(), 200);
        let login = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({
                "login": teachers[1]["login"], "password": f["teacher_password"], "bearer": true,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status().as_u16(), 200);
        let db = app.stop().await;

        // Seeding again with the same prefix fails whole: nothing more in the database.
        let (ok, _, stderr) = seed(&db, dir.path(), &["--classes", "1", "--students", "1"]);
        assert!(!ok, "a second seed with the same logins must fail");
        assert!(stderr.contains("another --prefix"), "{stderr}");
        assert_eq!(db.scalar("SELECT COUNT(*) FROM users").await, 14);
        // Another prefix adds a second school beside the first.
        let (ok, fixture, stderr) = seed(
            &db,
            dir.path(),
            &["--classes", "1", "--students", "2", "--prefix", "other"],
        );
        assert!(ok, "{stderr}");
        assert_eq!(fixture.unwrap()["teachers"].as_array().unwrap().len(), 1);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM users").await, 17);
    }
);
