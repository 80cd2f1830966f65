//! Trusted grading through the real app, on both backends: the server grades MCQ, Parsons and SQL
//! answers itself and refuses a client's verdict; SQL runs under guard (ATTACH, PRAGMA, writes,
//! runaway and huge queries refused, the server still answering); Python's score comes from the
//! browser's per-test results; every attempt says who checked it; resends get the stored answer;
//! a class may rank its leaderboard by server-checked XP only.

use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{TestApp, TestUser, answer_for, assert_error};

fn new_attempt_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// (id, slug) of the first exercise of this type, or of this slug.
async fn exercise(app: &TestApp, kind_or_slug: &str) -> (i64, String) {
    app.listed_exercises()
        .await
        .into_iter()
        .find(|e| e.kind == kind_or_slug || e.slug == kind_or_slug)
        .map(|e| (e.id, e.slug))
        .unwrap_or_else(|| panic!("no exercise {kind_or_slug}"))
}

async fn submit(user: &TestUser, exercise: i64, body: Value) -> (u16, Value) {
    user.request(
        reqwest::Method::POST,
        &format!("/api/v1/exercises/{exercise}/attempts"),
        Some(&body),
    )
    .await
}

async fn answer(user: &TestUser, exercise: i64, answer: Value) -> (u16, Value) {
    submit(
        user,
        exercise,
        json!({ "attempt_id": new_attempt_id(), "answer": answer }),
    )
    .await
}

async fn student(app: &TestApp) -> (TestUser, TestUser, i64) {
    let teacher = app.signup_teacher().await;
    let class = app.create_classroom(&teacher).await;
    let s = app.student_in(&class).await;
    (teacher, s, class.id)
}

async fn total_xp(user: &TestUser) -> i64 {
    user.get_json("/api/v1/me/progress", 200).await["xp"]
        .as_i64()
        .unwrap()
}

async fn attempts(app: &TestApp) -> i64 {
    app.db.scalar("SELECT COUNT(*) FROM attempts").await
}

async fn checked_by(app: &TestApp, attempt_id: &str) -> String {
    let server = app
        .db
        .scalar(&format!(
            "SELECT COUNT(*) FROM attempts WHERE attempt_id = '{attempt_id}' AND checked_by = 'server'"
        ))
        .await;
    let browser = app
        .db
        .scalar(&format!(
            "SELECT COUNT(*) FROM attempts WHERE attempt_id = '{attempt_id}' AND checked_by = 'browser'"
        ))
        .await;
    match (server, browser) {
        (1, 0) => "server".into(),
        (0, 1) => "browser".into(),
        other => panic!("attempt {attempt_id}: {other:?}"),
    }
}

both_backends!(mcq_answers_are_graded_by_the_server, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let (_t, s, _) = student(&app).await;
    let (ex, slug) = exercise(&app, "mcq").await;
    let (status, wrong) = answer(&s, ex, answer_for(&slug, false)).await;
    assert_eq!(status, 200, "{wrong}");
    assert_eq!(wrong["passed"], false);
    assert_eq!(wrong["score"], 0);
    assert_eq!(wrong["xp_awarded"], 0);
    assert_eq!(wrong["checked_by"], "server");
    assert!(wrong["feedback"].as_str().is_some_and(|f| !f.is_empty()));
    assert_eq!(total_xp(&s).await, 0);
    let (status, right) = answer(&s, ex, answer_for(&slug, true)).await;
    assert_eq!(status, 200, "{right}");
    assert_eq!(right["passed"], true);
    assert_eq!(right["score"], 100);
    assert_eq!(right["checked_by"], "server");
    assert!(right["xp_awarded"].as_i64().unwrap() > 0);
    assert_eq!(
        checked_by(&app, right["attempt_id"].as_str().unwrap()).await,
        "server"
    );
    // An unknown choice id is no answer at all.
    let before = attempts(&app).await;
    let (status, body) = answer(&s, ex, json!({ "choices": ["c99"] })).await;
    assert_eq!(status, 400, "{body}");
    assert_error(&body, "invalid_answer");
    let (status, body) = answer(&s, ex, json!({ "query": "SELECT 1" })).await;
    assert_eq!(status, 400, "{body}");
    assert_error(&body, "invalid_answer");
    assert_eq!(attempts(&app).await, before);
});

both_backends!(
    parsons_answers_are_graded_by_the_server,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (_t, s, _) = student(&app).await;
        let (ex, slug) = exercise(&app, "parsons").await;
        let served = s.get_json(&format!("/api/v1/exercises/{ex}"), 200).await;
        assert_eq!(served["indent"], true);
        // The lines as served (shuffled, no indentation) are not the answer.
        let as_served: Vec<Value> = served["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| json!({ "id": l["id"], "indent": 0 }))
            .collect();
        let (status, v) = answer(&s, ex, json!({ "lines": as_served })).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["passed"], false);
        let (_, v) = answer(&s, ex, answer_for(&slug, false)).await;
        assert_eq!(v["passed"], false);
        assert_eq!(v["checked_by"], "server");
        // The right order, every line flush left: indentation is part of the answer.
        let mut flat = answer_for(&slug, true);
        for l in flat["lines"].as_array_mut().unwrap() {
            l["indent"] = json!(0);
        }
        let (_, v) = answer(&s, ex, flat).await;
        assert_eq!(v["passed"], false);
        assert!(
            v["feedback"].as_str().unwrap().contains("indentation"),
            "{v}"
        );
        assert_eq!(total_xp(&s).await, 0);
        let (status, v) = answer(&s, ex, answer_for(&slug, true)).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["passed"], true);
        assert_eq!(v["score"], 100);
        // The teacher reads the program as placed.
        let code = app
            .db
            .scalar(&format!(
                "SELECT COUNT(*) FROM attempts WHERE attempt_id = '{}' AND code LIKE 'def %'",
                v["attempt_id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(code, 1);
    }
);

both_backends!(
    sql_answers_are_graded_in_the_guarded_sandbox,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (_t, s, _) = student(&app).await;
        // Solution: SELECT nom, population FROM communes; rows in any order.
        let (ex, slug) = exercise(&app, "snt-sql-liste-communes").await;
        let (_, v) = answer(&s, ex, json!({ "query": "SELECT nom FROM communes" })).await;
        assert_eq!(v["passed"], false);
        assert!(v["feedback"].as_str().unwrap().contains("colonne"), "{v}");
        let (_, v) = answer(
            &s,
            ex,
            json!({ "query": "SELECT nom, population FROM communes WHERE population > 100000" }),
        )
        .await;
        assert_eq!(v["passed"], false);
        assert!(
            v["feedback"].as_str().unwrap().contains("lignes attendues"),
            "{v}"
        );
        // Other column order: the statement names the order, so it is wrong, and said so.
        let (_, v) = answer(
            &s,
            ex,
            json!({ "query": "SELECT population, nom FROM communes" }),
        )
        .await;
        assert_eq!(v["passed"], false);
        assert!(v["feedback"].as_str().unwrap().contains("ordre"), "{v}");
        let (_, v) = answer(&s, ex, json!({ "query": "SELEC nom FROM communes" })).await;
        assert_eq!(v["passed"], false);
        assert!(
            v["feedback"].as_str().unwrap().starts_with("Erreur SQL"),
            "{v}"
        );
        assert_eq!(total_xp(&s).await, 0);
        // Other names and another row order are fine.
        let (status, v) = answer(
            &s,
            ex,
            json!({ "query": "select nom as n, population as p from communes order by nom desc;" }),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["passed"], true, "{v}");
        assert_eq!(v["checked_by"], "server");
        let (_, v) = answer(&s, ex, answer_for(&slug, true)).await;
        assert_eq!(v["passed"], true);
    }
);

both_backends!(
    sql_the_guard_refuses_and_the_server_keeps_answering,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (_t, s, _) = student(&app).await;
        let (ex, slug) = exercise(&app, "snt-sql-liste-communes").await;
        let before = attempts(&app).await;
        for (query, code) in [
            (
                "ATTACH DATABASE '/tmp/nsi-live-attach.db' AS x",
                "sql_forbidden",
            ),
            ("ATTACH DATABASE ':memory:' AS x", "sql_forbidden"),
            ("PRAGMA table_info(communes)", "sql_forbidden"),
            (
                "SELECT * FROM pragma_table_info('communes')",
                "sql_forbidden",
            ),
            ("DELETE FROM communes", "sql_forbidden"),
            ("UPDATE communes SET population = 0", "sql_forbidden"),
            ("DROP TABLE communes", "sql_forbidden"),
            (
                "SELECT nom FROM communes; DELETE FROM communes",
                "sql_forbidden",
            ),
            ("VACUUM INTO '/tmp/nsi-live-vacuum.db'", "sql_forbidden"),
            ("SELECT load_extension('/tmp/x')", "sql_forbidden"),
            (
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) \
             SELECT i FROM n",
                "sql_too_many_rows",
            ),
            (
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n",
                "sql_timeout",
            ),
        ] {
            let (status, body) = answer(&s, ex, json!({ "query": query })).await;
            assert_eq!(status, 400, "{query}: {body}");
            assert_error(&body, code);
        }
        assert!(!std::path::Path::new("/tmp/nsi-live-attach.db").exists());
        assert!(!std::path::Path::new("/tmp/nsi-live-vacuum.db").exists());
        // Nothing stored, nothing earned, and the server answers at once afterwards.
        assert_eq!(attempts(&app).await, before);
        assert_eq!(total_xp(&s).await, 0);
        let health = tokio::time::timeout(Duration::from_secs(5), app.get("/healthz"))
            .await
            .expect("/healthz answers");
        assert_eq!(health.status().as_u16(), 200);
        // Several runaway queries at once hold only the grader's threads: others are served.
        let runaway = json!({ "query": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n" });
        let slow: Vec<_> = (0..4)
            .map(|_| {
                let s = app.same_browser(&s);
                let runaway = runaway.clone();
                tokio::spawn(async move { answer(&s, ex, runaway).await })
            })
            .collect();
        let courses = tokio::time::timeout(Duration::from_secs(5), app.get("/api/v1/courses"))
            .await
            .expect("the catalogue answers while SQL runs");
        assert_eq!(courses.status().as_u16(), 200);
        for t in slow {
            let (status, body) = t.await.unwrap();
            assert!(status == 400 || status == 503, "{status}: {body}");
        }
        let (status, v) = answer(&s, ex, answer_for(&slug, true)).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["passed"], true);
    }
);

both_backends!(
    a_forged_verdict_earns_nothing_for_server_graded_types,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (_t, s, _) = student(&app).await;
        for kind in ["mcq", "parsons", "sql"] {
            let (ex, slug) = exercise(&app, kind).await;
            let wrong = answer_for(&slug, false);
            // With the answer: the verdict is refused outright.
            let (status, body) = submit(
            &s,
            ex,
            json!({ "attempt_id": new_attempt_id(), "answer": wrong, "passed": true, "score": 100 }),
        )
        .await;
            assert_eq!(status, 400, "{kind}: {body}");
            assert_error(&body, "verdict_not_accepted");
            // Through the portal's route, a verdict alone is refused for these types…
            let (status, body) = s
                .request(
                    reqwest::Method::POST,
                    &format!("/exercises/{ex}/submit/"),
                    Some(&json!({ "passed": true, "score": 100 })),
                )
                .await;
            assert_eq!(status, 400, "{kind}: {body}");
            assert_error(&body, "invalid_answer");
            // …and with an answer, the verdict is the server's, whatever the body claims.
            let (status, body) = s
                .request(
                    reqwest::Method::POST,
                    &format!("/exercises/{ex}/submit/"),
                    Some(&json!({ "passed": true, "score": 100, "answer": wrong })),
                )
                .await;
            assert_eq!(status, 200, "{kind}: {body}");
            assert_eq!(body["passed"], false, "{kind}: {body}");
            assert_eq!(body["checked_by"], "server");
        }
        assert_eq!(total_xp(&s).await, 0);
        assert_eq!(
            app.db
                .scalar("SELECT COUNT(*) FROM attempts WHERE passed = TRUE OR xp_awarded <> 0")
                .await,
            0
        );
    }
);

both_backends!(
    python_scores_come_from_the_browser_results,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (_t, s, _) = student(&app).await;
        let (ex, slug) = exercise(&app, "python").await;
        let served = s.get_json(&format!("/api/v1/exercises/{ex}"), 200).await;
        let names: Vec<&str> = served["tests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert!(names.len() >= 2, "{names:?}");
        // All but the first test passed: not a pass, the score is the share passed.
        let tests: Vec<Value> = names
            .iter()
            .enumerate()
            .map(|(i, n)| json!({ "name": n, "passed": i > 0, "output": "x".repeat(10_000) }))
            .collect();
        let (status, v) = answer(&s, ex, json!({ "code": "def f(): pass", "tests": tests })).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["passed"], false);
        let expected = ((names.len() - 1) * 100 / names.len()) as i64;
        assert_eq!(v["score"], expected);
        assert_eq!(v["checked_by"], "browser");
        assert_eq!(total_xp(&s).await, 0);
        // The per-test results are kept, outputs cut to 4 KiB.
        let kept = app
            .db
            .scalar(&format!(
                "SELECT COUNT(*) FROM attempts WHERE attempt_id = '{}' AND checked_by = 'browser' \
             AND details LIKE '%\"passed\":false%' AND LENGTH(details) < 6000 * {}",
                v["attempt_id"].as_str().unwrap(),
                names.len()
            ))
            .await;
        assert_eq!(kept, 1);
        // Missing or misnamed tests are no answer.
        for bad in [
            json!({ "code": "x", "tests": [] }),
            json!({ "code": "x", "tests": [{ "name": "inventé", "passed": true }] }),
        ] {
            let (status, body) = answer(&s, ex, bad).await;
            assert_eq!(status, 400, "{body}");
            assert_error(&body, "invalid_answer");
        }
        let (_, v) = answer(&s, ex, answer_for(&slug, true)).await;
        assert_eq!(v["passed"], true);
        assert_eq!(v["score"], 100);
        assert_eq!(v["checked_by"], "browser");
        // The portal's verdict is still taken for Python, but not a pass scored 0.
        let (status, body) = s
            .request(
                reqwest::Method::POST,
                &format!("/exercises/{ex}/submit/"),
                Some(&json!({ "passed": true, "score": 0 })),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_error(&body, "invalid_score");
    }
);

both_backends!(
    a_resend_gets_the_stored_answer_whatever_it_carries,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let (_t, s, _) = student(&app).await;
        let (ex, slug) = exercise(&app, "snt-sql-liste-communes").await;
        let attempt_id = new_attempt_id();
        let (_, first) = submit(
            &s,
            ex,
            json!({ "attempt_id": attempt_id, "answer": answer_for(&slug, true) }),
        )
        .await;
        assert_eq!(first["passed"], true);
        for resend in [
            answer_for(&slug, false),
            json!({ "query": "PRAGMA table_info(communes)" }),
            json!({ "choices": ["c0"] }),
        ] {
            let (status, again) = submit(
                &s,
                ex,
                json!({ "attempt_id": attempt_id, "answer": resend }),
            )
            .await;
            assert_eq!(status, 200, "{again}");
            assert_eq!(again, first);
        }
        assert_eq!(attempts(&app).await, 1);
    }
);

both_backends!(
    a_class_may_rank_by_server_checked_xp_only,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let teacher = app.signup_teacher().await;
        let class = app.create_classroom(&teacher).await;
        let by_browser = app.student_in(&class).await;
        let by_server = app.student_in(&class).await;
        let (py, py_slug) = exercise(&app, "python").await;
        let (mcq, mcq_slug) = exercise(&app, "mcq").await;
        let (_, v) = answer(&by_browser, py, answer_for(&py_slug, true)).await;
        let browser_xp = v["total_xp"].as_i64().unwrap();
        let (_, v) = answer(&by_server, mcq, answer_for(&mcq_slug, true)).await;
        let server_xp = v["total_xp"].as_i64().unwrap();
        assert!(browser_xp > 0 && server_xp > 0);
        let board = |user: TestUser| async move {
            let path = format!("/api/v1/classrooms/{}/leaderboard", class.id);
            let body = user.get_json(&path, 200).await;
            body["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e["student_id"].as_i64().unwrap(), e["xp"].as_i64().unwrap()))
                .collect::<Vec<_>>()
        };
        let all = board(app.same_browser(&teacher)).await;
        assert!(all.contains(&(by_browser.id, browser_xp)), "{all:?}");
        // Default off; the teacher turns it on.
        let view = teacher
            .get_json(&format!("/api/v1/classrooms/{}", class.id), 200)
            .await;
        assert_eq!(view["leaderboard_server_checked_only"], false);
        let view = teacher
            .patch_json(
                &format!("/api/v1/classrooms/{}", class.id),
                &json!({ "leaderboard_server_checked_only": true }),
                200,
            )
            .await;
        assert_eq!(view["leaderboard_server_checked_only"], true);
        let trusted = board(app.same_browser(&by_browser)).await;
        assert_eq!(
            trusted,
            vec![(by_server.id, server_xp), (by_browser.id, 0)],
            "{trusted:?}"
        );
        // The class's progress grid says who checked each cell's attempts.
        let progress = teacher
            .get_json(&format!("/api/v1/classrooms/{}/progress", class.id), 200)
            .await;
        let cell = progress["grid"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["student_id"] == by_server.id)
            .unwrap()
            .clone();
        assert_eq!(
            cell["checked_by"],
            json!({ "server": 1, "browser": 0 }),
            "{cell}"
        );
    }
);
