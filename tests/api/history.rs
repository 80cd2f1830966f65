//! A student's own attempts, the teacher's drill-down into one student's attempts and the class
//! CSV export: who may read them (401 / 403 / 404) and what they hold. Attempts are written
//! straight into the database here so that these reads are tested apart from the submit path.

use serde_json::Value;

use crate::both_backends;
use crate::helpers::{TestApp, TestUser};

/// Stores one attempt of `student` on `exercise` (and its progress row and XP) directly.
async fn store_attempt(app: &TestApp, student: &TestUser, exercise: i64, n: i64, score: i64) {
    let passed = if score == 100 { "TRUE" } else { "FALSE" };
    let at = 1_795_608_000_000_i64 + n;
    app.db
        .execute(&format!(
            "INSERT INTO attempts (attempt_id, student_id, exercise_id, passed, score, code, created_at)
             VALUES ('00000000-0000-4000-8000-{n:012}', {}, {exercise}, {passed}, {score},
                     'print({n})', {at})",
            student.id
        ))
        .await;
    app.db
        .execute(&format!(
            "INSERT INTO progress (student_id, exercise_id, attempts, failed_attempts, best_score,
                                   passed, first_passed_at, last_attempt_at)
             VALUES ({}, {exercise}, 1, 0, {score}, {passed}, NULL, {at})
             ON CONFLICT (student_id, exercise_id) DO UPDATE SET
                attempts = progress.attempts + 1,
                best_score = CASE WHEN progress.best_score > {score} THEN progress.best_score ELSE {score} END",
            student.id
        ))
        .await;
}

async fn set_xp(app: &TestApp, student: &TestUser, xp: i64) {
    app.db
        .execute(&format!(
            "INSERT INTO student_stats (student_id, xp, updated_at) VALUES ({}, {xp}, 0)",
            student.id
        ))
        .await;
}

fn attempt_codes(body: &Value) -> Vec<String> {
    body["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["code"].as_str().expect("code").to_owned())
        .collect()
}

both_backends!(
    a_student_reads_only_their_own_attempts,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let ex = app.listed_exercises().await;
        let (e1, e2) = (ex[0].id, ex[1].id);
        let teacher = app.signup_teacher().await;
        let class = app.create_classroom(&teacher).await;
        let ada = app.student_in(&class).await;
        let bob = app.student_in(&class).await;
        store_attempt(&app, &ada, e1, 1, 40).await;
        store_attempt(&app, &ada, e1, 2, 100).await;
        store_attempt(&app, &ada, e2, 3, 0).await;
        store_attempt(&app, &bob, e1, 4, 100).await;

        let all = ada.get_json("/api/v1/me/attempts", 200).await;
        assert_eq!(all["student_id"], ada.id);
        // Newest first, Bob's attempt absent.
        assert_eq!(attempt_codes(&all), ["print(3)", "print(2)", "print(1)"]);
        let first = &all["attempts"][1];
        assert_eq!(first["exercise_id"], e1);
        assert_eq!(first["passed"], true);
        assert_eq!(first["score"], 100);
        assert!(first["exercise_title"].is_string());

        let one = ada
            .get_json(&format!("/api/v1/me/attempts?exercise_id={e1}"), 200)
            .await;
        assert_eq!(attempt_codes(&one), ["print(2)", "print(1)"]);
        assert_eq!(
            attempt_codes(&bob.get_json("/api/v1/me/attempts", 200).await),
            ["print(4)"]
        );

        // Unknown exercise, bad filter, no session, a teacher.
        ada.get_json("/api/v1/me/attempts?exercise_id=999999", 404)
            .await;
        ada.get_json("/api/v1/me/attempts?exercise_id=abc", 404)
            .await;
        ada.get_json("/api/v1/me/attempts?student_id=1", 400).await;
        app.anonymous().get_json("/api/v1/me/attempts", 401).await;
        teacher.get_json("/api/v1/me/attempts", 403).await;
    }
);

both_backends!(
    only_the_owner_drills_into_a_students_attempts,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let ex = app.listed_exercises().await;
        let owner = app.signup_teacher().await;
        let class = app.create_classroom(&owner).await;
        let ada = app.student_in(&class).await;
        let classmate = app.student_in(&class).await;
        let other_teacher = app.signup_teacher().await;
        let other_class = app.create_classroom(&other_teacher).await;
        let outsider = app.student_in(&other_class).await;
        store_attempt(&app, &ada, ex[0].id, 1, 100).await;
        store_attempt(&app, &outsider, ex[0].id, 2, 100).await;

        let path = format!(
            "/api/v1/classrooms/{}/students/{}/attempts",
            class.id, ada.id
        );
        let body = owner.get_json(&path, 200).await;
        assert_eq!(body["student_id"], ada.id);
        assert_eq!(attempt_codes(&body), ["print(1)"]);
        let filtered = owner
            .get_json(&format!("{path}?exercise_id={}", ex[1].id), 200)
            .await;
        assert_eq!(attempt_codes(&filtered), Vec::<String>::new());

        app.anonymous().get_json(&path, 401).await;
        ada.get_json(&path, 403).await;
        classmate.get_json(&path, 403).await;
        other_teacher.get_json(&path, 404).await;
        // The owner's class, a student of another class: not theirs to see.
        owner
            .get_json(
                &format!(
                    "/api/v1/classrooms/{}/students/{}/attempts",
                    class.id, outsider.id
                ),
                404,
            )
            .await;
        owner
            .get_json(
                &format!(
                    "/api/v1/classrooms/{}/students/{}/attempts",
                    other_class.id, outsider.id
                ),
                404,
            )
            .await;
        owner
            .get_json(
                &format!("/api/v1/classrooms/{}/students/abc/attempts", class.id),
                404,
            )
            .await;
    }
);

both_backends!(
    the_csv_export_has_one_row_per_student_and_a_bom,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let ex = app.listed_exercises().await;
        let owner = app.signup_teacher().await;
        let class = app.create_classroom(&owner).await;
        let ada = app.join(&class.join_code, "Ada; \"la\" 1re").await;
        let formula = app.join(&class.join_code, "=1+2").await;
        store_attempt(&app, &ada, ex[0].id, 1, 40).await;
        store_attempt(&app, &ada, ex[0].id, 2, 100).await;
        store_attempt(&app, &formula, ex[1].id, 3, 50).await;
        set_xp(&app, &ada, 135).await;

        let path = format!("/api/v1/classrooms/{}/export.csv", class.id);
        let response = owner
            .builder(reqwest::Method::GET, &path)
            .send()
            .await
            .expect("export");
        assert_eq!(response.status().as_u16(), 200);
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
        assert!(
            headers["content-disposition"]
                .to_str()
                .expect("disposition")
                .starts_with("attachment;")
        );
        let bytes = response.bytes().await.expect("body");
        assert_eq!(&bytes[..3], b"\xEF\xBB\xBF", "UTF-8 BOM first");
        let text = std::str::from_utf8(&bytes[3..]).expect("utf-8");
        let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 3, "header + one row per student: {text}");
        let header: Vec<&str> = lines[0].split(';').collect();
        assert_eq!(header[0], "pseudonyme");
        assert_eq!(header[header.len() - 2..], ["XP", "niveau"]);
        // Two exercises were tried: two exercise columns.
        assert_eq!(header.len(), 5, "{}", lines[0]);
        // Roster order is by pseudonym; quotes and `;` in a pseudonym are quoted, a formula
        // stays text.
        let ada_row = lines
            .iter()
            .find(|l| l.starts_with("\"Ada"))
            .expect("Ada's row");
        assert_eq!(*ada_row, "\"Ada; \"\"la\"\" 1re\";100;;135;2");
        let formula_row = lines
            .iter()
            .find(|l| l.starts_with("'=1+2"))
            .expect("the formula pseudonym kept as text");
        assert_eq!(*formula_row, "'=1+2;;50;0;1");

        app.anonymous().get_json(&path, 401).await;
        ada.get_json(&path, 403).await;
        app.signup_teacher().await.get_json(&path, 404).await;
    }
);
