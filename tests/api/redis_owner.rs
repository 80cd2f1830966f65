//! One student on two instances (issue 13, "One owner per student"): whatever instance computes a
//! change, the database takes it only on the state it was computed from (`student_stats.version`),
//! so two tabs on two instances submitting at once end with the XP one instance would compute,
//! each badge once and every acknowledged attempt stored once; with Redis, the answers reach the
//! student's sockets on every instance.

use futures_util::future::join_all;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};

use crate::both_backends;
use crate::helpers::{Backend, OtherInstance, TestApp, TestDb, TestUser, eventually, metric};
use crate::submissions::{class_with_students, exercises, new_attempt_id, submit};

/// Settings for one test: its own Redis key prefix (tests share the one Redis), or no Redis.
fn settings(db: &TestDb, redis: bool) -> nsi_live::config::Settings {
    let mut settings = db.settings();
    if redis {
        settings.redis.url = secrecy::SecretString::from(crate::health::test_redis_url());
        settings.redis.key_prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    }
    settings
}

/// Redis set but away: nothing listens on port 1.
fn settings_redis_away(db: &TestDb) -> nsi_live::config::Settings {
    let mut settings = db.settings();
    settings.redis.url = secrecy::SecretString::from("redis://127.0.0.1:1".to_owned());
    settings.redis.key_prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    settings
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Redis {
    Up,
    Unset,
    Away,
}

/// What the database holds of one student, checked against the rules: the XP is the sum of the
/// first-pass rewards and the achievements' bonuses (whatever order the attempts came in), equals
/// the sum of what the stored attempts awarded, and each exercise's counters count its attempts.
async fn assert_consistent(db: &TestDb, student: i64, rewards: &BTreeMap<i64, i64>) -> i64 {
    let xp = db
        .scalar(&format!(
            "SELECT COALESCE(MAX(xp), 0) FROM student_stats WHERE student_id = {student}"
        ))
        .await;
    let awarded = db
        .scalar(&format!(
            "SELECT CAST(COALESCE(SUM(xp_awarded), 0) AS BIGINT) FROM attempts WHERE student_id = {student}"
        ))
        .await;
    let bonuses = db
        .scalar(&format!(
            "SELECT CAST(COALESCE(SUM(xp_awarded), 0) AS BIGINT) FROM student_achievements
             WHERE student_id = {student}"
        ))
        .await;
    let mut first_passes = 0;
    for (exercise, reward) in rewards {
        let passed = db
            .scalar(&format!(
                "SELECT COUNT(*) FROM progress WHERE student_id = {student}
                 AND exercise_id = {exercise} AND passed"
            ))
            .await;
        first_passes += passed * reward;
        let counted = db
            .scalar(&format!(
                "SELECT COALESCE(MAX(attempts), 0) FROM progress
                 WHERE student_id = {student} AND exercise_id = {exercise}"
            ))
            .await;
        let stored = db
            .scalar(&format!(
                "SELECT COUNT(*) FROM attempts WHERE student_id = {student}
                 AND exercise_id = {exercise}"
            ))
            .await;
        assert_eq!(
            counted, stored,
            "exercise {exercise}: progress counts every attempt"
        );
    }
    assert_eq!(
        xp,
        first_passes + bonuses,
        "XP = first-pass rewards + bonuses"
    );
    assert_eq!(xp, awarded, "XP = what the stored attempts awarded");
    xp
}

/// `rounds` pairs of attempts, each pair sent at once, one on each instance (the same exercise
/// in every other pair). Returns the attempt ids answered 200 and their answers.
async fn submit_on_both(
    on_a: &TestUser,
    on_b: &TestUser,
    all: &[(i64, i64)],
    rounds: usize,
) -> Vec<(String, Value)> {
    let mut acknowledged = Vec::new();
    for round in 0..rounds {
        let first = all[round % all.len()].0;
        let second = if round % 2 == 0 {
            first
        } else {
            all[(round + 1) % all.len()].0
        };
        let passed = round % 3 != 2;
        let sends = [(on_a, first), (on_b, second)].map(|(user, exercise)| {
            let id = new_attempt_id();
            let body = json!({ "attempt_id": id, "passed": passed, "score": 100 });
            async move { (id, submit(user, exercise, body).await) }
        });
        for (id, (status, answer)) in join_all(sends).await {
            match status {
                200 => acknowledged.push((id, answer)),
                // A change computed again too often answers 503: the client resends.
                503 => assert_eq!(answer["error"], "unavailable", "{answer}"),
                _ => panic!("unexpected {status}: {answer}"),
            }
        }
    }
    acknowledged
}

async fn two_tabs_on_two_instances(backend: Backend, mode: Redis) {
    let db = TestDb::new(backend).await;
    let settings = match mode {
        Redis::Up => settings(&db, true),
        Redis::Unset => settings(&db, false),
        Redis::Away => settings_redis_away(&db),
    };
    let redis = mode == Redis::Up;
    let app = TestApp::spawn_with(db, settings.clone()).await;
    let other = OtherInstance::start(settings).await;
    let (_teacher, _class, students) = class_with_students(&app, 1).await;
    let on_a = &students[0];
    let mut on_b = app.same_browser(on_a);
    on_b.address = other.address.clone();
    let all: Vec<(i64, i64)> = exercises(&app).await.into_iter().take(6).collect();
    let rewards: BTreeMap<i64, i64> = all.iter().copied().collect();

    let acknowledged = submit_on_both(on_a, &on_b, &all, 24).await;
    assert!(acknowledged.len() >= 24, "most attempts acknowledged");

    // Every acknowledged attempt is stored, once, with the answer it got.
    for (id, answer) in &acknowledged {
        let stored = app
            .db
            .scalar(&format!(
                "SELECT COUNT(*) FROM attempts WHERE attempt_id = '{id}'"
            ))
            .await;
        assert_eq!(stored, 1, "{answer}");
    }
    // Each exercise passed once as a first pass, whatever instance said it.
    let mut first: HashSet<i64> = HashSet::new();
    for (_, answer) in &acknowledged {
        if answer["first_pass"] == true {
            let exercise = answer["exercise_id"].as_i64().unwrap();
            assert!(first.insert(exercise), "two first passes of {exercise}");
        }
    }
    let xp = assert_consistent(&app.db, on_a.id, &rewards).await;
    // The last answer on each side tells an XP the database had then; the highest is the total.
    let told = acknowledged
        .iter()
        .map(|(_, a)| a["total_xp"].as_i64().unwrap())
        .max()
        .unwrap();
    assert_eq!(told, xp);
    // Badges: each once (primary key), and the ones the XP earns.
    let badges = app
        .db
        .scalar(&format!(
            "SELECT COUNT(*) FROM student_badges WHERE student_id = {}",
            on_a.id
        ))
        .await;
    let announced: usize = acknowledged
        .iter()
        .map(|(_, a)| a["new_badges"].as_array().unwrap().len())
        .sum();
    assert_eq!(badges as usize, announced, "each badge announced once");

    // Both instances tell that XP (the other one after hearing of the change, or its next one).
    if redis {
        eventually("both instances show the stored XP", || async {
            let a = on_a.get_json("/api/v1/me/progress", 200).await;
            let b = on_b.get_json("/api/v1/me/progress", 200).await;
            a["xp"] == xp && b["xp"] == xp
        })
        .await;
    }
    let stale = metric(&app, STALE).await + metric_of(&other.address, STALE).await;
    eprintln!(
        "{backend:?} {mode:?}: {} attempts, {stale} computed again",
        acknowledged.len()
    );
    if mode == Redis::Away {
        // The news could not be published: dropped and counted, nothing waited.
        let dropped = "nsi_cluster_student_news_total{event=\"dropped\"}";
        eventually("the lost news is counted", || async {
            metric(&app, dropped).await >= 1.0
        })
        .await;
    }
    other.stop().await;
}

both_backends!(
    two_tabs_on_two_instances_make_one_xp_with_redis,
    |backend| async move {
        for _ in 0..3 {
            two_tabs_on_two_instances(backend, Redis::Up).await;
        }
    }
);

both_backends!(
    two_tabs_on_two_instances_make_one_xp_with_redis_away,
    |backend| async move { two_tabs_on_two_instances(backend, Redis::Away).await }
);

// A hint revealed on A, then on B whose actor still holds the state before it: B's reveal is
// refused as stale, computed again on the stored state, and costs nothing the second time.
both_backends!(
    a_hint_revealed_on_two_instances_costs_once,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let settings = settings(&db, false);
        let app = TestApp::spawn_with(db, settings.clone()).await;
        let other = OtherInstance::start(settings).await;
        let (_teacher, _class, students) = class_with_students(&app, 1).await;
        let on_a = &students[0];
        let mut on_b = app.same_browser(on_a);
        on_b.address = other.address.clone();
        let mut hint = None;
        for (ex, _) in exercises(&app).await {
            let e = app.get_json(&format!("/api/v1/exercises/{ex}"), 200).await;
            if let Some(h) = e["hints"].as_array().and_then(|h| h.first()) {
                hint = Some((ex, h["id"].as_i64().unwrap()));
                break;
            }
        }
        let (ex, hint_id) = hint.expect("an exercise with a hint");
        let body = json!({ "attempt_id": new_attempt_id(), "passed": true, "score": 50 });
        let (status, answer) = submit(on_a, ex, body).await;
        assert_eq!(status, 200, "{answer}");
        // B loads the student now (with the XP), then A reveals the hint.
        let progress = on_b.get_json("/api/v1/me/progress", 200).await;
        assert_eq!(progress["xp"], answer["total_xp"]);
        let path = format!("/api/v1/hints/{hint_id}/reveal");
        let first = on_a.post_json(&path, &json!({}), 200).await;
        assert_eq!(first["already_revealed"], false, "{first}");
        let again = on_b.post_json(&path, &json!({}), 200).await;
        assert_eq!(again["already_revealed"], true, "{again}");
        assert_eq!(again["xp_spent"], 0, "{again}");
        assert_eq!(again["total_xp"], first["total_xp"], "{again}");
        let xp = app
            .db
            .scalar(&format!(
                "SELECT xp FROM student_stats WHERE student_id = {}",
                on_a.id
            ))
            .await;
        assert_eq!(json!(xp), first["total_xp"]);
        assert!(metric_of(&other.address, STALE).await >= 1.0);
        other.stop().await;
    }
);

both_backends!(
    two_tabs_on_two_instances_make_one_xp_without_redis,
    |backend| async move {
        for _ in 0..2 {
            two_tabs_on_two_instances(backend, Redis::Unset).await;
        }
    }
);

// The database refuses a change computed on a stale base: the instance that did not hear of
// the other's change computes it again from the stored state (no 503, no lost XP).
both_backends!(
    a_change_on_a_stale_base_is_computed_again,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let settings = settings(&db, false);
        let app = TestApp::spawn_with(db, settings.clone()).await;
        let other = OtherInstance::start(settings).await;
        let (_teacher, _class, students) = class_with_students(&app, 1).await;
        let on_a = &students[0];
        let mut on_b = app.same_browser(on_a);
        on_b.address = other.address.clone();
        let all = exercises(&app).await;
        let rewards: BTreeMap<i64, i64> = all.iter().take(2).copied().collect();
        // Both instances load the student (XP 0).
        on_a.get_json("/api/v1/me/progress", 200).await;
        on_b.get_json("/api/v1/me/progress", 200).await;
        let pass = |id: &str| json!({ "attempt_id": id, "passed": true, "score": 50 });
        let (status, first) = submit(on_a, all[0].0, pass(&new_attempt_id())).await;
        assert_eq!(status, 200, "{first}");
        let after_first = first["total_xp"].as_i64().unwrap();
        assert!(after_first >= all[0].1, "{first}");
        // B still holds XP 0; its change is refused by the database, then computed again.
        let (status, second) = submit(&on_b, all[1].0, pass(&new_attempt_id())).await;
        assert_eq!(status, 200, "{second}");
        // Computed on the stored state: A's first pass and its achievement are not given again.
        assert_eq!(second["total_xp"], after_first + all[1].1, "{second}");
        assert_eq!(second["new_achievements"], json!([]), "{second}");
        assert_eq!(
            assert_consistent(&app.db, on_a.id, &rewards).await,
            second["total_xp"]
        );
        let stale = metric_of(&other.address, STALE).await;
        assert!(stale >= 1.0, "the stale change was counted: {stale}");
        other.stop().await;
    }
);

const STALE: &str = "nsi_writer_stale_total";

/// `helpers::metric` for an `OtherInstance`.
async fn metric_of(address: &str, series: &str) -> f64 {
    let text = reqwest::get(format!("{address}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{series} missing in /metrics:\n{text}"))
}

/// A socket on any instance (`ws::connect` takes a `TestApp`).
async fn socket_at(address: &str, path: &str, token: &str) -> crate::ws::Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    let port: u16 = address.rsplit(':').next().unwrap().parse().unwrap();
    let mut request = format!("ws://127.0.0.1:{port}{path}")
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    let cookie = format!("nsi_session={token}");
    headers.insert("cookie", HeaderValue::from_str(&cookie).unwrap());
    headers.insert("origin", HeaderValue::from_str(address).unwrap());
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (stream, _) = tokio_tungstenite::client_async(request, tcp)
        .await
        .expect("socket opens");
    let mut ws = crate::ws::Ws { stream };
    ws.expect("welcome").await;
    ws
}

/// A student socket on any instance, its progress read.
async fn student_socket_at(address: &str, token: &str) -> crate::ws::Ws {
    let mut ws = socket_at(address, "/ws", token).await;
    ws.expect("progress").await;
    ws
}

both_backends!(
    a_submit_on_one_instance_reaches_the_socket_on_the_other,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let settings = settings(&db, true);
        let app = TestApp::spawn_with(db, settings.clone()).await;
        let other = OtherInstance::start(settings).await;
        let (_teacher, _token, class) = crate::ws::new_class(&app).await;
        let (student, token) = crate::ws::student(&app, &class).await;
        let all = exercises(&app).await;
        crate::ws::exercises(&app, usize::MAX).await; // the slugs, for socket submits
        let mut on_a = student_socket_at(&app.address, &token).await;
        let mut on_b = student_socket_at(&other.address, &token).await;

        // HTTP on A: the socket on B gets the result (and the one on A too).
        let id = new_attempt_id();
        let body = json!({ "attempt_id": id, "passed": true, "score": 100 });
        let (status, answer) = submit(&student, all[0].0, body).await;
        assert_eq!(status, 200, "{answer}");
        for ws in [&mut on_a, &mut on_b] {
            let result = ws
                .until("the result", |m| {
                    m["type"] == "result" && m["attempt_id"] == id
                })
                .await;
            assert_eq!(result["total_xp"], answer["total_xp"], "{result}");
        }

        // A socket submit on B: the socket on A gets it, B's answer is computed on A's change.
        let (id, msg) = crate::ws::submit_msg(all[1].0, false);
        on_b.send(msg).await;
        let mine = on_b
            .until("its answer", |m| {
                m["type"] == "result" && m["attempt_id"] == id
            })
            .await;
        assert_eq!(mine["total_xp"], answer["total_xp"], "{mine}");
        let pushed = on_a
            .until("the push", |m| {
                m["type"] == "result" && m["attempt_id"] == id
            })
            .await;
        assert_eq!(pushed, mine);

        // B hears of A's changes: its reads show the stored XP.
        let mut on_b_http = app.same_browser(&student);
        on_b_http.address = other.address.clone();
        let progress = on_b_http.get_json("/api/v1/me/progress", 200).await;
        assert_eq!(progress["xp"], answer["total_xp"], "{progress}");
        let received = metric_of(
            &other.address,
            "nsi_cluster_student_news_total{event=\"received\"}",
        )
        .await;
        assert!(received >= 1.0, "{received}");
        other.stop().await;
    }
);

both_backends!(
    an_instance_that_stops_leaves_the_xp_right,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let settings = settings(&db, true);
        let app = TestApp::spawn_with(db, settings.clone()).await;
        let other = OtherInstance::start(settings).await;
        let (_teacher, _class, students) = class_with_students(&app, 1).await;
        let on_a = &students[0];
        let mut on_b = app.same_browser(on_a);
        on_b.address = other.address.clone();
        let all: Vec<(i64, i64)> = exercises(&app).await.into_iter().take(6).collect();
        let rewards: BTreeMap<i64, i64> = all.iter().copied().collect();
        let mut acknowledged = submit_on_both(on_a, &on_b, &all[..3], 6).await;
        // B goes away (as at a deploy); the student goes on on A.
        other.stop().await;
        for (exercise, _) in &all[3..] {
            let id = new_attempt_id();
            let body = json!({ "attempt_id": id, "passed": true, "score": 90 });
            let (status, answer) = submit(on_a, *exercise, body).await;
            assert_eq!(status, 200, "{answer}");
            acknowledged.push((id, answer));
        }
        let xp = assert_consistent(&app.db, on_a.id, &rewards).await;
        let last = &acknowledged.last().unwrap().1;
        assert_eq!(last["total_xp"], xp, "{last}");
        let progress = on_a.get_json("/api/v1/me/progress", 200).await;
        assert_eq!(progress["xp"], xp, "{progress}");
        for (id, _) in &acknowledged {
            let stored = app
                .db
                .scalar(&format!(
                    "SELECT COUNT(*) FROM attempts WHERE attempt_id = '{id}'"
                ))
                .await;
            assert_eq!(stored, 1);
        }
    }
);

/// A private redis-server on a free port, to stop and start again.
struct PrivateRedis {
    port: u16,
    child: std::process::Child,
}

impl PrivateRedis {
    async fn start(port: u16) -> PrivateRedis {
        let mut command = std::process::Command::new("redis-server");
        command
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null());
        // Owned at once: `Drop` kills and reaps it, even if it never listens.
        let redis = PrivateRedis {
            port,
            child: command.spawn().expect("redis-server starts"),
        };
        for _ in 0..250 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return redis;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("redis-server did not listen on {port}");
    }

    fn stop(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

both_backends!(
    pushes_come_back_after_a_redis_restart,
    |backend| async move {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let redis = PrivateRedis::start(port).await;
        let db = TestDb::new(backend).await;
        let mut settings = settings(&db, true);
        settings.redis.url = secrecy::SecretString::from(format!("redis://127.0.0.1:{port}"));
        let app = TestApp::spawn_with(db, settings.clone()).await;
        let other = OtherInstance::start(settings).await;
        let (_teacher, _token, class) = crate::ws::new_class(&app).await;
        let (student, token) = crate::ws::student(&app, &class).await;
        let all = exercises(&app).await;
        let mut on_b = student_socket_at(&other.address, &token).await;
        let reconnects = "nsi_cluster_student_news_total{event=\"reconnects\"}";

        // Redis goes away, and comes back on the same port.
        let port = redis.stop();
        let (status, answer) = submit(
            &student,
            all[0].0,
            json!({ "attempt_id": new_attempt_id(), "passed": true, "score": 100 }),
        )
        .await;
        assert_eq!(status, 200, "submissions go on without Redis: {answer}");
        let _redis = PrivateRedis::start(port).await;
        eventually("B listens again", || async {
            metric_of(&other.address, reconnects).await >= 1.0
        })
        .await;
        // B refreshed on reconnect: it shows the attempt it could not hear of.
        let mut on_b_http = app.same_browser(&student);
        on_b_http.address = other.address.clone();
        eventually("B shows the attempt it could not hear of", || async {
            let progress = on_b_http.get_json("/api/v1/me/progress", 200).await;
            progress["xp"] == answer["total_xp"]
        })
        .await;
        // A's news reaches B again (A's publisher gets a fresh connection).
        let mut pushed = false;
        for _ in 0..5 {
            let id = new_attempt_id();
            let body = json!({ "attempt_id": id, "passed": false, "score": 10 });
            let (status, answer) = submit(&student, all[1].0, body).await;
            assert_eq!(status, 200, "{answer}");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while let Some(m) = on_b
                .try_next(deadline.saturating_duration_since(std::time::Instant::now()))
                .await
            {
                pushed |= m["type"] == "result" && m["attempt_id"] == id;
            }
            if pushed {
                break;
            }
        }
        assert!(pushed, "a push reached B after the restart");
        other.stop().await;
    }
);

// Tabs on A and B, a dashboard on B: B's tab closing leaves the student online (A holds one);
// A's closing then makes them offline, on B's dashboard too.
both_backends!(
    a_student_online_on_any_instance_is_online,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let settings = settings(&db, true);
        let app = TestApp::spawn_with(db, settings.clone()).await;
        let other = OtherInstance::start(settings).await;
        let (_teacher, teacher_token, class) = crate::ws::new_class(&app).await;
        let (student, token) = crate::ws::student(&app, &class).await;
        let mut dash = socket_at(
            &other.address,
            &crate::ws::dashboard(&class),
            &teacher_token,
        )
        .await;
        dash.expect("snapshot").await;
        let mut on_b = student_socket_at(&other.address, &token).await;
        let online = dash.delta("presence_changed").await;
        assert_eq!(online["student_id"], student.id);
        assert_eq!(online["online"], true);
        let on_a = student_socket_at(&app.address, &token).await;
        // A's record is written when its tab opens (`eventually`: the write is not awaited).
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;

        on_b.stream.close(None).await.expect("close");
        drop(on_b);
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(2500);
        while let Some(m) = dash
            .try_next(deadline.saturating_duration_since(std::time::Instant::now()))
            .await
        {
            assert!(
                !(m["kind"] == "presence_changed" && m["online"] == false),
                "offline while a tab is open on A: {m}"
            );
        }

        let mut on_a = on_a;
        on_a.stream.close(None).await.expect("close");
        drop(on_a);
        let offline = dash.delta("presence_changed").await;
        assert_eq!(offline["student_id"], student.id);
        assert_eq!(offline["online"], false);
        other.stop().await;
    }
);
