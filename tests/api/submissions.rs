//! The submit path: rules, idempotency, rate limit, durability, shutdown and concurrency, on both
//! backends, checked against the database itself.

use std::collections::{BTreeSet, HashMap};

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, TestDb, TestUser, assert_error, eventually, metric};

/// (id, xp_reward) of every Python exercise, in catalogue order: these tests drive the rules with
/// chosen scores, which only a Python attempt carries (the browser's word, through the portal's
/// route). Server-graded types are tested in grading.rs.
pub(crate) async fn exercises(app: &TestApp) -> Vec<(i64, i64)> {
    app.listed_exercises()
        .await
        .into_iter()
        .filter(|e| e.kind == "python")
        .map(|e| (e.id, e.xp_reward))
        .collect()
}

pub(crate) fn new_attempt_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A body with a verdict (`passed`, `score`) goes to the portal's route, the only one that takes
/// the browser's verdict (Python); a body with `answer` to `POST /api/v1/exercises/{id}/attempts`.
pub(crate) async fn submit(user: &TestUser, exercise: i64, body: Value) -> (u16, Value) {
    let path = if body.get("answer").is_none() {
        format!("/exercises/{exercise}/submit/")
    } else {
        format!("/api/v1/exercises/{exercise}/attempts")
    };
    user.request(reqwest::Method::POST, &path, Some(&body))
        .await
}

/// A class with one teacher and `n` students.
pub(crate) async fn class_with_students(
    app: &TestApp,
    n: usize,
) -> (TestUser, crate::helpers::TestClassroom, Vec<TestUser>) {
    let teacher = app.signup_teacher().await;
    let classroom = app.create_classroom(&teacher).await;
    let mut students = Vec::new();
    for _ in 0..n {
        students.push(app.student_in(&classroom).await);
    }
    (teacher, classroom, students)
}

both_backends!(
    a_pass_is_stored_and_scored_by_the_rules,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (_teacher, _class, students) = class_with_students(&app, 1).await;
        let student = &students[0];
        let all = exercises(&app).await;
        let (ex, reward) = all[0];
        let attempt_id = new_attempt_id();
        let (status, answer) = submit(
        student,
        ex,
        json!({ "attempt_id": attempt_id, "passed": true, "score": 100, "code": "print(1)", "duration_ms": 4200 }),
    )
    .await;
        assert_eq!(status, 200, "{answer}");
        // First pass: the reward, FIRST_EXERCISE (+50) and PERFECT_SCORE (+75).
        let xp = reward + 50 + 75;
        assert_eq!(answer["success"], true);
        assert_eq!(answer["attempt_id"], attempt_id.as_str());
        assert_eq!(answer["passed"], true);
        assert_eq!(answer["score"], 100);
        assert_eq!(answer["xp_awarded"], xp);
        assert_eq!(answer["total_xp"], xp);
        assert_eq!(answer["level"], xp / 100 + 1);
        let achievements: BTreeSet<&str> = answer["new_achievements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(
            achievements,
            BTreeSet::from(["FIRST_EXERCISE", "PERFECT_SCORE"])
        );
        assert_eq!(answer["new_badges"], json!(["BEGINNER", "EXPLORER"]));

        // In the database, as answered.
        let db = &app.db;
        assert_eq!(
            db.scalar(&format!(
                "SELECT COUNT(*) FROM attempts WHERE attempt_id = '{attempt_id}'"
            ))
            .await,
            1
        );
        assert_eq!(
            db.scalar(&format!(
                "SELECT xp FROM student_stats WHERE student_id = {}",
                student.id
            ))
            .await,
            xp
        );
        assert_eq!(
            db.scalar(&format!(
                "SELECT COUNT(*) FROM student_badges WHERE student_id = {}",
                student.id
            ))
            .await,
            2
        );
        assert_eq!(
            db.scalar(&format!(
                "SELECT COUNT(*) FROM student_achievements WHERE student_id = {}",
                student.id
            ))
            .await,
            2
        );
        assert_eq!(
            db.scalar(&format!(
                "SELECT best_score FROM progress WHERE student_id = {} AND exercise_id = {ex}",
                student.id
            ))
            .await,
            100
        );

        // A second pass earns nothing.
        let (status, again) = submit(student, ex, json!({ "passed": true, "score": 90 })).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["xp_awarded"], 0);
        assert_eq!(again["total_xp"], xp);
        assert!(
            again["attempt_id"]
                .as_str()
                .is_some_and(|s| uuid::Uuid::parse_str(s).is_ok())
        );

        // Reads come from the hot state and agree with the database.
        let progress = student.get_json("/api/v1/me/progress", 200).await;
        assert_eq!(progress["xp"], xp);
        assert_eq!(progress["passed_count"], 1);
        assert_eq!(progress["streak"]["current"], 1);
        let cell = &progress["exercises"][0];
        assert_eq!(
            (
                cell["exercise_id"].as_i64(),
                cell["attempts"].as_i64(),
                cell["best_score"].as_i64()
            ),
            (Some(ex), Some(2), Some(100))
        );
        let badges = student.get_json("/api/v1/me/badges", 200).await;
        let earned: Vec<&str> = badges["badges"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["earned"] == true)
            .map(|b| b["code"].as_str().unwrap())
            .collect();
        assert_eq!(earned, vec!["BEGINNER", "EXPLORER"]);
    }
);

both_backends!(
    the_portal_submit_path_answers_the_same_way,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (_t, _c, students) = class_with_students(&app, 1).await;
        let (ex, reward) = exercises(&app).await[1];
        let answer = students[0]
            .post_json(
                &format!("/exercises/{ex}/submit/"),
                &json!({ "passed": true, "score": 80, "attempt_data": { "code": "x = 1" } }),
                200,
            )
            .await;
        for key in [
            "success",
            "passed",
            "score",
            "xp_awarded",
            "total_xp",
            "level",
            "new_badges",
            "new_achievements",
            "attempt_id",
        ] {
            assert!(answer.get(key).is_some(), "{key} missing in {answer}");
        }
        assert_eq!(answer["xp_awarded"], reward + 50);
        let stored = app
            .db
            .scalar(&format!(
                "SELECT COUNT(*) FROM attempts WHERE student_id = {} AND code LIKE '%x = 1%'",
                students[0].id
            ))
            .await;
        assert_eq!(stored, 1);
    }
);

both_backends!(
    bad_submissions_get_a_clear_4xx_and_store_nothing,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (teacher, _c, students) = class_with_students(&app, 1).await;
        let student = &students[0];
        let (ex, _) = exercises(&app).await[0];
        let cases = [
            (
                json!({ "passed": true, "score": 101 }),
                400,
                "invalid_score",
            ),
            (json!({ "passed": true, "score": -1 }), 400, "invalid_score"),
            (
                json!({ "passed": true, "score": 50, "code": "x".repeat(64 * 1024 + 1) }),
                400,
                "code_too_large",
            ),
            (
                json!({ "passed": true, "score": 50, "attempt_id": "not-a-uuid" }),
                400,
                "invalid_attempt_id",
            ),
            (
                json!({ "passed": true, "score": 50, "duration_ms": -5 }),
                400,
                "invalid_duration",
            ),
            (json!({ "passed": "yes", "score": 50 }), 400, "invalid_body"),
            (json!({ "score": 50 }), 400, "invalid_answer"),
            // The new route takes an answer, never a verdict.
            (
                json!({ "answer": { "code": "", "tests": [] }, "extra": 1 }),
                400,
                "invalid_body",
            ),
            (
                json!({ "answer": { "code": "", "tests": [] }, "passed": true, "score": 100 }),
                400,
                "verdict_not_accepted",
            ),
            (
                json!({ "answer": { "code": "x = 1", "tests": [] } }),
                400,
                "invalid_answer",
            ),
        ];
        for (body, status, code) in cases {
            let (got, answer) = submit(student, ex, body.clone()).await;
            assert_eq!(got, status, "{body}: {answer}");
            assert_error(&answer, code);
        }
        let (got, answer) = submit(student, 999_999, json!({ "passed": true, "score": 50 })).await;
        assert_eq!(got, 404, "{answer}");
        let (got, _) = submit(&app.anonymous(), ex, json!({ "passed": true, "score": 50 })).await;
        assert_eq!(got, 401);
        let (got, _) = submit(&teacher, ex, json!({ "passed": true, "score": 50 })).await;
        assert_eq!(got, 403);
        // 64 KiB of code exactly is fine.
        let (got, answer) = submit(
            student,
            ex,
            json!({ "passed": false, "score": 0, "code": "x".repeat(64 * 1024) }),
        )
        .await;
        assert_eq!(got, 200, "{answer}");
        assert_eq!(app.db.scalar("SELECT COUNT(*) FROM attempts").await, 1);
    }
);

both_backends!(
    a_resent_attempt_is_stored_once_with_the_same_answer,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (_t, _c, students) = class_with_students(&app, 2).await;
        let (ex, _) = exercises(&app).await[0];
        let attempt_id = new_attempt_id();
        let body = json!({ "attempt_id": attempt_id, "passed": true, "score": 70, "code": "ok" });
        let answers = join_all((0..5).map(|_| submit(&students[0], ex, body.clone()))).await;
        for (status, answer) in &answers {
            assert_eq!(*status, 200, "{answer}");
            assert_eq!(answer, &answers[0].1);
        }
        assert_eq!(
            app.db
                .scalar(&format!(
                    "SELECT COUNT(*) FROM attempts WHERE attempt_id = '{attempt_id}'"
                ))
                .await,
            1
        );
        assert!(answers[0].1["xp_awarded"].as_i64().unwrap() > 0);

        // Someone else's attempt id is refused, and leaks nothing.
        let (status, answer) = submit(&students[1], ex, body.clone()).await;
        assert_eq!(status, 409, "{answer}");
        assert_error(&answer, "attempt_id_conflict");

        // After a restart (the answer is no longer in memory) a resend still gets the same answer.
        let first = answers[0].1.clone();
        let app = app.restart().await;
        let student = app.same_browser(&students[0]);
        let (status, answer) = submit(&student, ex, body.clone()).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer, first);
        assert_eq!(app.db.scalar("SELECT COUNT(*) FROM attempts").await, 1);
        let progress = student.get_json("/api/v1/me/progress", 200).await;
        assert_eq!(progress["exercises"][0]["attempts"], 1);
    }
);

both_backends!(
    two_students_sending_one_attempt_id_in_one_batch_store_it_once,
    |backend| async move {
        // A long batch window puts both submissions in the same batch: the database sees the
        // same attempt id twice in one statement.
        let db = TestDb::new(backend).await;
        let mut settings = db.settings();
        settings.writer.batch_max_wait_ms = 400;
        let app = TestApp::spawn_with(db, settings).await;
        let (_t, _c, students) = class_with_students(&app, 2).await;
        let (ex, _) = exercises(&app).await[0];
        let body = json!({ "attempt_id": new_attempt_id(), "passed": true, "score": 100 });
        let (a, b) = tokio::join!(
            submit(&students[0], ex, body.clone()),
            submit(&students[1], ex, body.clone())
        );
        let mut statuses = [a.0, b.0];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "{a:?} {b:?}");
        let (winner, loser) = if a.0 == 200 {
            (&students[0], &students[1])
        } else {
            (&students[1], &students[0])
        };
        assert_eq!(app.db.scalar("SELECT COUNT(*) FROM attempts").await, 1);
        let owner = app.db.scalar("SELECT student_id FROM attempts").await;
        assert_eq!(owner, winner.id);
        // Nothing of the refused copy is stored: no progress, no XP, no achievement.
        for table in ["progress", "student_achievements", "student_badges"] {
            let n = app
                .db
                .scalar(&format!(
                    "SELECT COUNT(*) FROM {table} WHERE student_id = {}",
                    loser.id
                ))
                .await;
            assert_eq!(n, 0, "{table} holds a row of the refused copy");
        }
        let xp = app
            .db
            .scalar(&format!(
                "SELECT COALESCE(MAX(xp), 0) FROM student_stats WHERE student_id = {}",
                loser.id
            ))
            .await;
        assert_eq!(xp, 0);
        let progress = loser.get_json("/api/v1/me/progress", 200).await;
        assert_eq!(progress["xp"], 0, "{progress}");
    }
);

both_backends!(
    the_hundred_and_first_submission_in_an_hour_is_refused,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (_t, _c, students) = class_with_students(&app, 1).await;
        let (ex, _) = exercises(&app).await[0];
        for chunk in 0..10 {
            let results = join_all((0..10).map(|i| {
                submit(
                    &students[0],
                    ex,
                    json!({ "passed": false, "score": chunk * 10 + i }),
                )
            }))
            .await;
            for (status, answer) in results {
                assert_eq!(status, 200, "{answer}");
            }
        }
        let response = students[0]
            .builder(reqwest::Method::POST, &format!("/exercises/{ex}/submit/"))
            .json(&json!({ "passed": true, "score": 100 }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 429);
        let retry_after: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry_after > 0 && retry_after <= 3600, "{retry_after}");
        assert_error(&response.json().await.unwrap(), "rate_limited");
        assert_eq!(app.db.scalar("SELECT COUNT(*) FROM attempts").await, 100);
        assert_eq!(
            app.db
                .scalar("SELECT COUNT(*) FROM progress WHERE passed = TRUE")
                .await,
            0
        );

        // The window survives a restart (and an idle actor's stop): it is rebuilt from the
        // stored attempts when the student's actor starts again.
        let app = app.restart().await;
        let student = app.same_browser(&students[0]);
        let (status, answer) = submit(&student, ex, json!({ "passed": true, "score": 100 })).await;
        assert_eq!(status, 429, "{answer}");
        assert_eq!(app.db.scalar("SELECT COUNT(*) FROM attempts").await, 100);
    }
);

/// Makes the database refuse the transaction of one student's first pass, after the attempt and
/// the progress rows were already written in it (the achievement insert fails).
pub(crate) async fn poison(db: &TestDb, backend: Backend, student: i64) {
    match backend {
        Backend::Postgres => {
            db.execute(&format!(
                "CREATE FUNCTION nsi_poison() RETURNS trigger AS $$
                 BEGIN
                   IF NEW.student_id = {student} THEN RAISE EXCEPTION 'poisoned'; END IF;
                   RETURN NEW;
                 END $$ LANGUAGE plpgsql;
                 CREATE TRIGGER poison BEFORE INSERT ON student_achievements
                 FOR EACH ROW EXECUTE FUNCTION nsi_poison();"
            ))
            .await
        }
        Backend::Sqlite => {
            db.execute(&format!(
                "CREATE TRIGGER poison BEFORE INSERT ON student_achievements
                 WHEN NEW.student_id = {student}
                 BEGIN SELECT RAISE(ABORT, 'poisoned'); END;"
            ))
            .await
        }
    }
}

both_backends!(
    a_failed_commit_answers_an_error_and_leaves_nothing_half_written,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (_t, _c, students) = class_with_students(&app, 6).await;
        let all = exercises(&app).await;
        let victim = &students[0];
        poison(&app.db, backend, victim.id).await;
        // The victim's first pass and five others' first passes, all at once (same batches).
        let results = join_all(students.iter().map(|s| {
            submit(
                s,
                all[0].0,
                json!({ "attempt_id": new_attempt_id(), "passed": true, "score": 60 }),
            )
        }))
        .await;
        let (status, answer) = &results[0];
        assert_eq!(*status, 503, "{answer}");
        assert_error(answer, "unavailable");
        for (status, answer) in &results[1..] {
            assert_eq!(*status, 200, "{answer}");
        }
        let db = &app.db;
        let v = victim.id;
        for table in [
            "attempts",
            "progress",
            "student_stats",
            "student_badges",
            "student_achievements",
        ] {
            assert_eq!(
                db.scalar(&format!(
                    "SELECT COUNT(*) FROM {table} WHERE student_id = {v}"
                ))
                .await,
                0,
                "{table}"
            );
        }
        assert_eq!(db.scalar("SELECT COUNT(*) FROM attempts").await, 5);
        // The hot state shows nothing the database refused.
        let progress = victim.get_json("/api/v1/me/progress", 200).await;
        assert_eq!(progress["xp"], 0);
        assert_eq!(progress["exercises"], json!([]));
        // Once the database accepts again, the resent attempt goes through.
        db.execute(match backend {
            Backend::Postgres => "DROP TRIGGER poison ON student_achievements",
            Backend::Sqlite => "DROP TRIGGER poison",
        })
        .await;
        let (status, answer) =
            submit(victim, all[0].0, json!({ "passed": true, "score": 60 })).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["xp_awarded"], all[0].1 + 50);
    }
);

both_backends!(hints_cost_once_and_never_below_zero, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let (_t, _c, students) = class_with_students(&app, 1).await;
    let student = &students[0];
    // An exercise with at least one hint.
    let mut hint = None;
    for (ex, _) in exercises(&app).await {
        let e = app.get_json(&format!("/api/v1/exercises/{ex}"), 200).await;
        if let Some(h) = e["hints"].as_array().and_then(|h| h.first()) {
            hint = Some((
                ex,
                h["id"].as_i64().unwrap(),
                h["xp_cost"].as_i64().unwrap(),
            ));
            break;
        }
    }
    let (ex, hint_id, cost) = hint.expect("an exercise with a hint");
    assert!(cost > 0);
    // Earn some XP first: reward + 50.
    let (status, answer) = submit(student, ex, json!({ "passed": true, "score": 50 })).await;
    assert_eq!(status, 200, "{answer}");
    let xp = answer["total_xp"].as_i64().unwrap();
    let path = format!("/api/v1/hints/{hint_id}/reveal");
    let first = student.post_json(&path, &json!({}), 200).await;
    assert!(first["text"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(first["xp_spent"], cost.min(xp));
    assert_eq!(first["total_xp"], (xp - cost).max(0));
    assert_eq!(first["already_revealed"], false);
    let again = student.post_json(&path, &json!({}), 200).await;
    assert_eq!(again["xp_spent"], 0);
    assert_eq!(again["already_revealed"], true);
    assert_eq!(again["total_xp"], first["total_xp"]);
    assert_eq!(again["text"], first["text"]);
    let db = &app.db;
    assert_eq!(
        db.scalar(&format!(
            "SELECT COUNT(*) FROM hint_uses WHERE student_id = {}",
            student.id
        ))
        .await,
        1
    );
    assert_eq!(
        db.scalar(&format!(
            "SELECT xp FROM student_stats WHERE student_id = {}",
            student.id
        ))
        .await,
        first["total_xp"].as_i64().unwrap()
    );
    let (status, body) = student
        .request(
            reqwest::Method::POST,
            "/api/v1/hints/999999/reveal",
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, 404, "{body}");
});

both_backends!(
    a_class_sees_its_progress_and_leaderboard_from_hot_state,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (teacher, class, students) = class_with_students(&app, 3).await;
        let all = exercises(&app).await;
        // Make the class's actor exist before the attempts: it must fold them as events.
        let before = teacher
            .get_json(&format!("/api/v1/classrooms/{}/progress", class.id), 200)
            .await;
        assert_eq!(before["students"].as_array().unwrap().len(), 3);
        assert_eq!(before["grid"], json!([]));
        submit(
            &students[0],
            all[0].0,
            json!({ "passed": true, "score": 100 }),
        )
        .await;
        submit(
            &students[1],
            all[0].0,
            json!({ "passed": false, "score": 20 }),
        )
        .await;
        submit(
            &students[1],
            all[1].0,
            json!({ "passed": true, "score": 60 }),
        )
        .await;
        // Events are folded asynchronously: poll briefly.
        let mut snapshot = Value::Null;
        for _ in 0..50 {
            snapshot = teacher
                .get_json(&format!("/api/v1/classrooms/{}/progress", class.id), 200)
                .await;
            if snapshot["grid"].as_array().unwrap().len() == 3 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(snapshot["grid"].as_array().unwrap().len(), 3, "{snapshot}");
        let agg: HashMap<i64, &Value> = snapshot["exercises"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["exercise_id"].as_i64().unwrap(), e))
            .collect();
        assert_eq!(agg[&all[0].0]["tried"], 2);
        assert_eq!(agg[&all[0].0]["passed"], 1);
        assert_eq!(agg[&all[0].0]["mean_best_score"], 60.0);
        assert!(snapshot["offset"].as_u64().unwrap() >= 3);

        // Leaderboard: students of the class and its teacher; an opted-out student is left out.
        students[2]
            .patch_json("/api/v1/me", &json!({ "leaderboard_opt_out": true }), 200)
            .await;
        let mut board = Value::Null;
        for _ in 0..50 {
            board = students[1]
                .get_json(&format!("/api/v1/classrooms/{}/leaderboard", class.id), 200)
                .await;
            if board["entries"].as_array().unwrap().len() == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let entries = board["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 2, "{board}");
        assert_eq!(entries[0]["student_id"], students[0].id);
        assert_eq!(entries[0]["rank"], 1);
        teacher
            .get_json(&format!("/api/v1/classrooms/{}/leaderboard", class.id), 200)
            .await;

        // Others get 404: another teacher, a student of another class; students cannot see progress.
        let other_teacher = app.signup_teacher().await;
        let other_class = app.create_classroom(&other_teacher).await;
        let outsider = app.student_in(&other_class).await;
        for user in [&other_teacher, &outsider] {
            user.get_json(
                &format!("/api/v1/classrooms/{}/progress", class.id),
                if user.role == "student" { 403 } else { 404 },
            )
            .await;
            user.get_json(&format!("/api/v1/classrooms/{}/leaderboard", class.id), 404)
                .await;
        }
        students[0]
            .get_json(&format!("/api/v1/classrooms/{}/progress", class.id), 403)
            .await;
        teacher
            .get_json("/api/v1/classrooms/999999/progress", 404)
            .await;
    }
);

both_backends!(
    two_hundred_students_ten_submissions_each_all_at_once,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let all = exercises(&app).await;
        let ten = &all[..10];
        // Four classes of fifty.
        let mut students = Vec::new();
        for _ in 0..4 {
            let (_t, _c, mut s) = class_with_students(&app, 50).await;
            students.append(&mut s);
        }
        // Every student passes ten distinct exercises concurrently, the third one with 100. All
        // 2000 requests are issued at once; at most 400 connections are open at a time, so that
        // the test does not measure the kernel's accept queue on a small machine running the
        // other tests too.
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(400));
        let results = join_all(students.iter().flat_map(|s| {
            let gate = gate.clone();
            ten.iter().enumerate().map(move |(i, (ex, _))| {
                let score = if i == 2 { 100 } else { 50 + i as i64 };
                let gate = gate.clone();
                async move {
                    let _permit = gate.acquire().await.expect("semaphore");
                    let attempt_id = new_attempt_id();
                    let (status, answer) = submit(
                        s,
                        *ex,
                        json!({ "attempt_id": attempt_id, "passed": true, "score": score }),
                    )
                    .await;
                    (s.id, attempt_id, status, answer)
                }
            })
        }))
        .await;
        let mut acknowledged = BTreeSet::new();
        for (_, attempt_id, status, answer) in &results {
            assert_eq!(*status, 200, "{answer}");
            acknowledged.insert(attempt_id.clone());
        }
        assert_eq!(acknowledged.len(), 2000);
        let db = &app.db;
        assert_eq!(db.scalar("SELECT COUNT(*) FROM attempts").await, 2000);
        assert_eq!(
            db.scalar("SELECT COUNT(DISTINCT attempt_id) FROM attempts")
                .await,
            2000
        );
        // XP: every reward, FIRST_EXERCISE, TEN_EXERCISES and PERFECT_SCORE, for every student.
        let rewards: i64 = ten.iter().map(|(_, r)| r).sum();
        let xp = rewards + 50 + 100 + 75;
        let badges = [0, 100, 500, 1000, 2000, 5000]
            .iter()
            .filter(|t| xp >= **t)
            .count() as i64;
        assert_eq!(
            db.scalar(&format!(
                "SELECT COUNT(*) FROM student_stats WHERE xp = {xp}"
            ))
            .await,
            200
        );
        assert_eq!(db.scalar("SELECT COUNT(*) FROM student_stats").await, 200);
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM student_achievements").await,
            200 * 3
        );
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM student_badges").await,
            200 * badges
        );
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM progress WHERE passed = TRUE")
                .await,
            2000
        );
        // Each student's answers add up to the XP stored, and each achievement was announced once.
        // Badges too: the database's keys would hide a second award, the answers would not.
        let mut per_student: HashMap<i64, (i64, Vec<String>, Vec<String>)> = HashMap::new();
        let codes = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect()
        };
        for (id, _, _, answer) in &results {
            let e = per_student.entry(*id).or_default();
            e.0 += answer["xp_awarded"].as_i64().unwrap();
            e.1.extend(codes(&answer["new_achievements"]));
            e.2.extend(codes(&answer["new_badges"]));
        }
        // The writer's counters saw exactly these attempts.
        assert_eq!(metric(&app, "nsi_writer_items_written_total").await, 2000.0);
        assert!(metric(&app, "nsi_writer_rows_written_total").await >= 4000.0);
        let commits = metric(&app, "nsi_writer_commits_total").await;
        assert!(commits >= 1.0);
        assert_eq!(metric(&app, "nsi_writer_batch_size_count").await, commits);
        let mut expected_badges: Vec<&str> = [
            (0, "BEGINNER"),
            (100, "EXPLORER"),
            (500, "SCHOLAR"),
            (1000, "EXPERT"),
            (2000, "MASTER"),
            (5000, "LEGEND"),
        ]
        .iter()
        .filter(|(t, _)| xp >= *t)
        .map(|(_, b)| *b)
        .collect();
        expected_badges.sort();
        for (id, (awarded, mut achievements, mut badges_announced)) in per_student {
            badges_announced.sort();
            assert_eq!(
                badges_announced, expected_badges,
                "student {id}: each badge announced once"
            );
            assert_eq!(awarded, xp, "student {id}");
            achievements.sort();
            assert_eq!(
                achievements,
                vec!["FIRST_EXERCISE", "PERFECT_SCORE", "TEN_EXERCISES"],
                "student {id}"
            );
        }
    }
);

both_backends!(stopping_commits_every_pending_batch, |backend| async move {
    let db = TestDb::new(backend).await;
    let mut settings = db.settings();
    // A batch that would wait half a minute to fill: the stop must not wait for it.
    settings.writer.batch_max_wait_ms = 30_000;
    settings.writer.batch_max_rows = 10_000;
    let app = TestApp::spawn_with(db, settings).await;
    let (_t, _c, students) = class_with_students(&app, 5).await;
    let (ex, _) = exercises(&app).await[0];
    let submitted = tokio::spawn(async move {
        join_all(students.iter().map(|s| {
            let attempt_id = new_attempt_id();
            async move {
                let (status, answer) = submit(
                    s,
                    ex,
                    json!({ "attempt_id": attempt_id, "passed": true, "score": 80 }),
                )
                .await;
                (attempt_id, status, answer)
            }
        }))
        .await
    });
    // Once the five are in the writer's hands, stop the app as SIGTERM would.
    eventually("the five attempts reach the writer", || async {
        metric(&app, "nsi_writer_items_accepted_total").await == 5.0
    })
    .await;
    let db = app.stop().await;
    let results = submitted.await.unwrap();
    let mut acknowledged = 0;
    for (attempt_id, status, answer) in &results {
        if *status == 200 {
            acknowledged += 1;
            assert_eq!(
                db.scalar(&format!(
                    "SELECT COUNT(*) FROM attempts WHERE attempt_id = '{attempt_id}'"
                ))
                .await,
                1,
                "{answer}"
            );
        }
    }
    // All five were in flight when the stop came: all of them were answered after their commit.
    assert_eq!(acknowledged, 5, "{results:?}");
});

/// PostgreSQL made stuck on demand: another connection holding a lock that the writer's INSERT
/// into `attempts` waits behind.
pub(crate) struct AttemptsLock(sqlx::PgConnection);

impl AttemptsLock {
    pub(crate) async fn connect(db: &TestDb) -> AttemptsLock {
        let url = db.url.clone().expect("a PostgreSQL test database");
        AttemptsLock(
            <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                .await
                .expect("connect"),
        )
    }

    pub(crate) async fn hold(&mut self) {
        self.hold_table("attempts", "EXCLUSIVE").await
    }

    /// Locks another table in `mode` (`ACCESS EXCLUSIVE` stops its readers too).
    pub(crate) async fn hold_table(&mut self, table: &str, mode: &str) {
        let sql = format!("BEGIN; LOCK TABLE {table} IN {mode} MODE");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut self.0)
            .await
            .expect("lock");
    }

    pub(crate) async fn release(&mut self) {
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut self.0)
            .await
            .expect("unlock");
    }
}

/// Connections of this test's database waiting for a lock (the writer's, behind `AttemptsLock`).
pub(crate) async fn lock_waiters(db: &TestDb) -> i64 {
    db.scalar(
        "SELECT COUNT(*) FROM pg_stat_activity
         WHERE wait_event_type = 'Lock' AND datname = current_database()",
    )
    .await
}

/// Ends every connection of this test's database that waits for a lock; answers how many.
async fn kill_lock_waiters(db: &TestDb) -> i64 {
    db.scalar(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE wait_event_type = 'Lock' AND datname = current_database()",
    )
    .await
}

#[tokio::test]
async fn a_full_writer_queue_answers_503_and_the_queued_attempts_still_commit() {
    // PostgreSQL: another connection holds a lock the writer's INSERT waits for, so the writer is
    // stuck on its first batch while the queue (2 items) fills.
    let db = TestDb::new(Backend::Postgres).await;
    let mut settings = db.settings();
    settings.writer.queue_capacity = 2;
    settings.writer.batch_max_rows = 1;
    let app = TestApp::spawn_with(db, settings).await;
    let (_t, _c, students) = class_with_students(&app, 8).await;
    let (ex, _) = exercises(&app).await[0];
    let mut lock = AttemptsLock::connect(&app.db).await;
    lock.hold().await;
    let spawn_submit = |s: &TestUser| {
        let user = app.same_browser(s);
        tokio::spawn(async move { submit(&user, ex, json!({ "passed": true, "score": 90 })).await })
    };

    // The first one reaches the database and waits for the lock.
    let first = spawn_submit(&students[0]);
    eventually("the writer waits for the lock", || async {
        lock_waiters(&app.db).await == 1
    })
    .await;
    // Two more fill the queue.
    let queued: Vec<_> = students[1..3].iter().map(spawn_submit).collect();
    eventually("two items queued", || async {
        metric(&app, "nsi_writer_queue_depth").await == 2.0
    })
    .await;
    // The rest are refused at once, with a time to come back, and nothing of them is stored.
    for s in &students[3..] {
        let (status, answer) = submit(s, ex, json!({ "passed": true, "score": 90 })).await;
        assert_eq!(status, 503, "{answer}");
        assert_error(&answer, "unavailable");
        assert!(answer["retry_after"].as_u64().unwrap() >= 1, "{answer}");
    }
    assert_eq!(
        metric(&app, "nsi_writer_rejected_queue_full_total").await,
        5.0
    );

    // The database comes back: the three accepted attempts commit and are acknowledged.
    lock.release().await;
    for task in std::iter::once(first).chain(queued) {
        let (status, answer) = task.await.unwrap();
        assert_eq!(status, 200, "{answer}");
    }
    assert_eq!(app.db.scalar("SELECT COUNT(*) FROM attempts").await, 3);
    // A refused student resends later and is stored, scored as a first pass.
    let (status, answer) = submit(&students[3], ex, json!({ "passed": true, "score": 90 })).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["new_achievements"], json!(["FIRST_EXERCISE"]));
}

#[tokio::test]
async fn an_idle_student_actor_stops_and_its_state_comes_back() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = db.settings();
    settings.actors.idle_timeout_secs = 1;
    let app = TestApp::spawn_with(db, settings).await;
    let (_t, _c, students) = class_with_students(&app, 1).await;
    let all = exercises(&app).await;
    let first = submit(
        &students[0],
        all[0].0,
        json!({ "passed": true, "score": 100 }),
    )
    .await;
    assert_eq!(first.0, 200, "{}", first.1);
    assert!(metric(&app, "nsi_actors_alive{kind=\"student\"}").await >= 1.0);
    eventually("the idle student actor stops", || async {
        metric(&app, "nsi_actors_alive{kind=\"student\"}").await == 0.0
    })
    .await;
    // A new actor loads what the first committed: no second FIRST_EXERCISE, XP adds up.
    let (status, second) = submit(
        &students[0],
        all[1].0,
        json!({ "passed": true, "score": 80 }),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["new_achievements"], json!([]));
    assert_eq!(
        second["total_xp"].as_i64().unwrap(),
        first.1["total_xp"].as_i64().unwrap() + all[1].1
    );
    let progress = students[0].get_json("/api/v1/me/progress", 200).await;
    assert_eq!(progress["passed_count"], 2);
}

#[tokio::test]
async fn a_connection_lost_mid_batch_is_retried_then_refused_and_nothing_is_half_written() {
    // PostgreSQL: the writer's INSERT waits behind a lock, and its connection is killed under it
    // (as when the database restarts), again and again: first for less than the retry window
    // (the batch is retried and acknowledged), then for longer (its submitter gets 503).
    let db = TestDb::new(Backend::Postgres).await;
    let mut settings = db.settings();
    settings.writer.retry_window_ms = 1500;
    let app = TestApp::spawn_with(db, settings).await;
    let (_t, _c, students) = class_with_students(&app, 1).await;
    let student = &students[0];
    let all = exercises(&app).await;
    let mut lock = AttemptsLock::connect(&app.db).await;

    // 1. One connection lost, then the database is back: retried, stored once, acknowledged.
    lock.hold().await;
    let user = app.same_browser(student);
    let ex0 = all[0].0;
    let first =
        tokio::spawn(
            async move { submit(&user, ex0, json!({ "passed": true, "score": 100 })).await },
        );
    eventually("the writer's connection is killed", || async {
        kill_lock_waiters(&app.db).await == 1
    })
    .await;
    eventually("the writer retries and waits again", || async {
        lock_waiters(&app.db).await == 1
    })
    .await;
    lock.release().await;
    let (status, answer) = first.await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(metric(&app, "nsi_writer_failed_commits_total").await >= 1.0);
    assert_eq!(app.db.scalar("SELECT COUNT(*) FROM attempts").await, 1);

    // 2. The connection keeps dying for longer than the retry window: 503, nothing written.
    lock.hold().await;
    let attempt_id = new_attempt_id();
    let body = json!({ "attempt_id": attempt_id, "passed": true, "score": 100 });
    let user = app.same_browser(student);
    let (ex, body_again) = (all[1].0, body.clone());
    let second = tokio::spawn(async move { submit(&user, ex, body_again).await });
    while !second.is_finished() {
        kill_lock_waiters(&app.db).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, answer) = second.await.unwrap();
    assert_eq!(status, 503, "{answer}");
    assert_error(&answer, "unavailable");
    lock.release().await;
    let db = &app.db;
    let s = student.id;
    assert_eq!(db.scalar("SELECT COUNT(*) FROM attempts").await, 1);
    assert_eq!(
        db.scalar(&format!(
            "SELECT COUNT(*) FROM progress WHERE student_id = {s} AND exercise_id = {ex}"
        ))
        .await,
        0
    );
    // The hot state agrees with the database: one exercise passed, its XP only.
    let progress = student.get_json("/api/v1/me/progress", 200).await;
    assert_eq!(progress["passed_count"], 1, "{progress}");
    let stored_xp = db
        .scalar(&format!(
            "SELECT xp FROM student_stats WHERE student_id = {s}"
        ))
        .await;
    assert_eq!(progress["xp"], stored_xp, "{progress}");

    // The browser's outbox resends it: stored once, scored as the second pass it is.
    let (status, answer) = submit(student, ex, body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["attempt_id"], attempt_id.as_str());
    assert_eq!(answer["new_achievements"], json!([]));
    assert_eq!(db.scalar("SELECT COUNT(*) FROM attempts").await, 2);
}
