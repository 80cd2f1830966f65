//! Loads of state on demand wait for the pool in a bounded queue (store/admission.rs): past
//! `database.max_waiting` the next one answers 503 at once, nothing is stored or lost, and the
//! server serves everyone again as soon as the burst has passed.

use futures_util::future::join_all;

use crate::both_backends;
use crate::helpers::{TestApp, TestDb, TestUser, assert_error, metric};

/// Every student asks for their progress at the same moment: each needs its session (not in a
/// fresh instance's cache) and its actor (not running) from the database. Statuses and bodies.
async fn all_at_once(students: &[TestUser]) -> Vec<(u16, Option<String>, serde_json::Value)> {
    join_all(students.iter().map(|s| async move {
        let response = s
            .builder(reqwest::Method::GET, "/api/v1/me/progress")
            .send()
            .await
            .expect("progress request");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.json().await.expect("a JSON body");
        (status, retry_after, body)
    }))
    .await
}

both_backends!(
    a_burst_of_cold_students_past_the_waiting_room_gets_503_at_once_then_everyone_is_served,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let teacher = app.signup_teacher().await;
        let class = app.create_classroom(&teacher).await;
        let mut students = Vec::new();
        for _ in 0..30 {
            students.push(app.student_in(&class).await);
        }
        // A fresh instance on the same database: no session cached, no actor running. Two
        // connections (one turn for loads, the other kept for the writer), nobody may wait.
        let db: TestDb = app.stop().await;
        let mut settings = db.settings();
        settings.database.max_connections = 2;
        settings.database.min_connections = 1;
        settings.database.max_waiting = 0;
        let mut app = TestApp::spawn_with(db, settings.clone()).await;
        let mut refused = 0;
        for round in 0..5 {
            let here: Vec<TestUser> = students.iter().map(|s| app.same_browser(s)).collect();
            for (status, retry_after, body) in all_at_once(&here).await {
                match status {
                    200 => assert_eq!(body["xp"], 0, "a new student's progress: {body}"),
                    503 => {
                        assert_error(&body, "unavailable");
                        let secs: u64 = retry_after
                            .expect("Retry-After on a 503")
                            .parse()
                            .expect("Retry-After in seconds");
                        assert!(secs >= 1, "Retry-After {secs}");
                        refused += 1;
                    }
                    other => panic!("round {round}: {other} {body}"),
                }
            }
            if refused > 0 {
                break;
            }
            // Every load found the turn free: try again with everything cold.
            let db = app.stop().await;
            app = TestApp::spawn_with(db, settings.clone()).await;
        }
        assert!(
            refused > 0,
            "30 simultaneous loads never found the one turn taken"
        );
        assert_eq!(
            metric(&app, "nsi_db_admission_refused_total{reason=\"full\"}").await,
            refused as f64,
            "each 503 is one refused load"
        );
        assert_eq!(metric(&app, "nsi_db_admission_waiting").await, 0.0);
        // The burst is over: one after the other, everyone is served.
        for s in &students {
            let s = app.same_browser(s);
            let progress = s.get_json("/api/v1/me/progress", 200).await;
            assert_eq!(progress["xp"], 0, "{progress}");
        }
    }
);
