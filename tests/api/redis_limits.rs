//! Limits counted across instances through Redis (issue 13): two app instances on one database
//! and the real Redis (`TEST_REDIS_URL`, default the local one), each test under its own key
//! prefix. The submission rate, the sign-in and join throttles and the per-user socket cap hold
//! for the instances together; a crashed instance's sockets stop counting; with Redis unreachable
//! each instance still applies its own limits and counts the fallbacks in `/metrics`.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::both_backends;
use crate::health::test_redis_url;
use crate::helpers::{OtherInstance, TestApp, TestDb, TestUser, assert_error, eventually, metric};
use crate::submissions::{class_with_students, exercises, new_attempt_id, submit};

const WAIT: Duration = Duration::from_secs(5);

/// Test settings on `db` with Redis under a prefix of this test's own.
fn with_redis(db: &TestDb) -> nsi_live::config::Settings {
    let mut settings = db.settings();
    settings.redis.url = secrecy::SecretString::from(test_redis_url());
    settings.redis.key_prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    settings
}

/// A wrong (`passed: false`) Python attempt through the portal's route, with a new attempt id.
fn attempt() -> Value {
    json!({ "attempt_id": new_attempt_id(), "passed": false, "score": 0 })
}

async fn attempts_stored(app: &TestApp, student: &TestUser) -> i64 {
    app.db
        .scalar(&format!(
            "SELECT COUNT(*) FROM attempts WHERE student_id = {}",
            student.id
        ))
        .await
}

both_backends!(
    the_rolling_hour_counts_the_submissions_of_every_instance,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let mut settings = with_redis(&db);
        settings.submissions.rate_limit_per_hour = 6;
        let a = TestApp::spawn_with(db, settings.clone()).await;
        let b = OtherInstance::start(settings).await;
        let (_teacher, _class, students) = class_with_students(&a, 1).await;
        let here = &students[0];
        let there = here.at(&b.address);
        let all = exercises(&a).await;
        let first = attempt();
        let mut answers = Vec::new();
        for (i, user) in [here, here, here, &there, &there, &there]
            .into_iter()
            .enumerate()
        {
            let body = if i == 0 { first.clone() } else { attempt() };
            let (status, answer) = submit(user, all[i].0, body).await;
            assert_eq!(status, 200, "submission {i}: {answer}");
            answers.push(answer);
        }
        assert_eq!(attempts_stored(&a, here).await, 6);
        // The seventh within the hour is refused on both instances, nothing stored; each
        // instance alone has seen only three.
        for user in [here, &there] {
            let (status, refused) = submit(user, all[6].0, attempt()).await;
            assert_eq!(status, 429, "{refused}");
            assert_error(&refused, "rate_limited");
        }
        assert_eq!(attempts_stored(&a, here).await, 6);
        // A resend of a counted attempt is never refused, even on the other instance: it gets the
        // stored answer, and nothing new is stored.
        let (status, resent) = submit(&there, all[0].0, first).await;
        assert_eq!(status, 200, "{resent}");
        assert_eq!(resent, answers[0]);
        assert_eq!(attempts_stored(&a, here).await, 6);
        assert!(
            metric(&a, "nsi_rate_limited_total{limit=\"submissions\"}").await >= 1.0,
            "the refusal on A is counted"
        );
        b.stop().await;
    }
);

both_backends!(
    the_hundred_and_first_of_an_hour_is_refused_when_all_arrive_at_once_on_two_instances,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let settings = with_redis(&db);
        assert_eq!(settings.submissions.rate_limit_per_hour, 100, "the default");
        let a = TestApp::spawn_with(db, settings.clone()).await;
        let b = OtherInstance::start(settings).await;
        let (_teacher, _class, students) = class_with_students(&a, 1).await;
        let here = &students[0];
        let there = here.at(&b.address);
        let all = exercises(&a).await;
        // 110 new attempts at once, 55 on each instance: exactly 100 are stored. One student
        // changing on two instances at once makes the database refuse changes computed on a
        // stale base; after three such refusals an attempt answers 503 (nothing stored, its slot
        // given back) and the client resends it with the same attempt id, as a browser does.
        let attempts: Vec<(&TestUser, i64, Value)> = (0..110)
            .map(|i| {
                let user = if i % 2 == 0 { here } else { &there };
                (user, all[i % all.len()].0, attempt())
            })
            .collect();
        let mut statuses = vec![503u16; attempts.len()];
        for _ in 0..20 {
            let pending: Vec<usize> = (0..attempts.len())
                .filter(|i| statuses[*i] == 503)
                .collect();
            if pending.is_empty() {
                break;
            }
            let sent = pending.iter().map(|&i| {
                let (user, exercise, body) = &attempts[i];
                submit(user, *exercise, body.clone())
            });
            let answers = futures_util::future::join_all(sent).await;
            for (&i, (status, _)) in pending.iter().zip(answers) {
                statuses[i] = status;
            }
        }
        let count = |wanted: u16| statuses.iter().filter(|s| **s == wanted).count();
        assert_eq!((count(200), count(429)), (100, 10), "{statuses:?}");
        assert_eq!(attempts_stored(&a, here).await, 100);
        b.stop().await;
    }
);

both_backends!(
    hint_reveals_are_counted_on_every_instance,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let mut settings = with_redis(&db);
        settings.submissions.hint_reveals_per_minute = 3;
        let a = TestApp::spawn_with(db, settings.clone()).await;
        let b = OtherInstance::start(settings).await;
        let hint = crate::limits::a_hint(&a).await;
        let (_teacher, _class, students) = class_with_students(&a, 1).await;
        let here = &students[0];
        let there = here.at(&b.address);
        let path = format!("/api/v1/hints/{hint}/reveal");
        here.post_json(&path, &json!({}), 200).await;
        there.post_json(&path, &json!({}), 200).await;
        here.post_json(&path, &json!({}), 200).await;
        // The fourth within the minute, on either: each instance alone saw one or two.
        let refused = there.post_json(&path, &json!({}), 429).await;
        assert_error(&refused, "rate_limited");
        here.post_json(&path, &json!({}), 429).await;
        b.stop().await;
    }
);

/// Signs in to `address` as `user` with `password`; the status.
async fn sign_in(user: &TestUser, address: &str, password: &str) -> u16 {
    let browser = user_anonymous(user).at(address);
    let body = json!({ "login": user.login.clone().unwrap(), "password": password });
    browser
        .request(reqwest::Method::POST, "/api/v1/auth/login", Some(&body))
        .await
        .0
}

/// A fresh browser (nobody signed in) for the same person.
fn user_anonymous(user: &TestUser) -> TestUser {
    TestUser {
        client: crate::helpers::new_client(),
        address: user.address.clone(),
        id: user.id,
        role: user.role.clone(),
        login: user.login.clone(),
        password: user.password.clone(),
        recovery_code: None,
        token: None,
    }
}

both_backends!(
    sign_in_and_join_throttles_count_on_every_instance,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let mut settings = with_redis(&db);
        settings.auth.login_max_failures = 3;
        settings.auth.join_max_per_ip = 5;
        let a = TestApp::spawn_with(db, settings.clone()).await;
        let b = OtherInstance::start(settings).await;
        // Join attempt 1 (a sign-up counts against the address like a join).
        let teacher = a.signup_teacher().await;
        let right = teacher.password.clone().unwrap();
        let (addr_a, addr_b) = (a.address.clone(), b.address.clone());

        // Two failures on A, a right password on B: B clears the login's failures for both.
        assert_eq!(sign_in(&teacher, &addr_a, "mauvais-1").await, 401);
        assert_eq!(sign_in(&teacher, &addr_a, "mauvais-2").await, 401);
        assert_eq!(sign_in(&teacher, &addr_b, &right).await, 200);
        // So two more failures on A leave room for a right guess there (four would not).
        assert_eq!(sign_in(&teacher, &addr_a, "mauvais-3").await, 401);
        assert_eq!(sign_in(&teacher, &addr_a, "mauvais-4").await, 401);
        assert_eq!(sign_in(&teacher, &addr_a, &right).await, 200);
        // Three failures spread over A and B lock the login (from this address) on both, even
        // for the right password; B alone saw one.
        assert_eq!(sign_in(&teacher, &addr_a, "mauvais-5").await, 401);
        assert_eq!(sign_in(&teacher, &addr_b, "mauvais-6").await, 401);
        assert_eq!(sign_in(&teacher, &addr_a, "mauvais-7").await, 401);
        assert_eq!(sign_in(&teacher, &addr_b, &right).await, 429);
        assert_eq!(sign_in(&teacher, &addr_a, &right).await, 429);

        // Joins per address: the sign-up above was the first of five.
        let class = a.create_classroom(&teacher).await;
        let join = |address: &str| {
            let browser = a.anonymous().at(address);
            let body = json!({ "join_code": class.join_code, "pseudonym": crate::helpers::unique("élève-") });
            async move {
                browser
                    .request(reqwest::Method::POST, "/api/v1/auth/join", Some(&body))
                    .await
                    .0
            }
        };
        assert_eq!(join(&addr_a).await, 201);
        assert_eq!(join(&addr_b).await, 201);
        assert_eq!(join(&addr_b).await, 201);
        assert_eq!(join(&addr_a).await, 201);
        assert_eq!(join(&addr_b).await, 429);
        assert_eq!(join(&addr_a).await, 429);
        b.stop().await;
    }
);

both_backends!(
    wrong_recovery_codes_count_on_every_instance,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let mut settings = with_redis(&db);
        settings.auth.join_max_failures = 2;
        let a = TestApp::spawn_with(db, settings.clone()).await;
        let b = OtherInstance::start(settings).await;
        let teacher = a.signup_teacher().await;
        let class = a.create_classroom(&teacher).await;
        let pseudonym = crate::helpers::unique("élève-");
        let student = a.join(&class.join_code, &pseudonym).await;
        let code = student.recovery_code.clone().unwrap();
        let recover = |address: &str, code: &str| {
            let browser = a.anonymous().at(address);
            let body = json!({
                "join_code": class.join_code, "pseudonym": pseudonym, "recovery_code": code,
            });
            async move {
                browser
                    .request(reqwest::Method::POST, "/api/v1/auth/recover", Some(&body))
                    .await
                    .0
            }
        };
        let (addr_a, addr_b) = (a.address.clone(), b.address.clone());
        // A right code clears the failures, on every instance.
        assert_eq!(recover(&addr_a, "AAAA-AAAA").await, 401);
        assert_eq!(recover(&addr_b, &code).await, 200);
        assert_eq!(recover(&addr_a, "AAAA-AAAA").await, 401);
        assert_eq!(recover(&addr_a, &code).await, 200);
        // Two wrong ones, one on each: the right code is refused on both.
        assert_eq!(recover(&addr_a, "AAAA-AAAA").await, 401);
        assert_eq!(recover(&addr_b, "BBBB-BBBB").await, 401);
        assert_eq!(recover(&addr_a, &code).await, 429);
        assert_eq!(recover(&addr_b, &code).await, 429);
        b.stop().await;
    }
);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a student socket on `address` with a bearer token.
async fn open(address: &str, token: &str) -> Socket {
    let url = format!("{}/ws", address.replacen("http://", "ws://", 1));
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let (socket, _) = tokio::time::timeout(WAIT, connect_async(request))
        .await
        .expect("handshake in time")
        .expect("upgrade");
    socket
}

/// The type of the socket's first message (`welcome` when admitted), or its close code.
async fn first(socket: &mut Socket) -> Result<String, u16> {
    loop {
        match tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a message in time")
        {
            Some(Ok(Message::Text(text))) => {
                let v: Value = serde_json::from_str(&text).expect("JSON");
                return Ok(v["type"].as_str().unwrap_or_default().to_owned());
            }
            Some(Ok(Message::Close(Some(frame)))) => return Err(u16::from(frame.code)),
            Some(Ok(_)) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Opens a socket and answers whether it was admitted (else it was closed with 4009).
async fn admitted(address: &str, token: &str) -> bool {
    let mut socket = open(address, token).await;
    match first(&mut socket).await {
        Ok(kind) => {
            assert_eq!(kind, "welcome");
            let _ = socket.close(None).await;
            true
        }
        Err(code) => {
            assert_eq!(code, 4009, "refused with the socket cap's code");
            false
        }
    }
}

/// Keeps an admitted socket alive (reading answers the server's pings) until told to close it.
fn keep_open(mut socket: Socket) -> tokio::sync::oneshot::Sender<()> {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                frame = socket.next() => match frame {
                    Some(Ok(_)) => continue,
                    _ => return,
                },
                _ = &mut stopped => {
                    let _ = socket.close(None).await;
                    // Read until the server's close frame.
                    while let Ok(Some(Ok(_))) =
                        tokio::time::timeout(WAIT, socket.next()).await
                    {}
                    return;
                }
            }
        }
    });
    stop
}

/// Redis's clock, in milliseconds.
async fn redis_now_ms(conn: &mut redis::aio::MultiplexedConnection) -> i64 {
    let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(conn).await.expect("TIME");
    secs * 1000 + micros / 1000
}

both_backends!(
    a_users_sockets_are_capped_across_instances,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let mut settings = with_redis(&db);
        settings.ws.max_sockets_per_user = 2;
        // Records live 3 s (the client timeout) unless refreshed, every second.
        settings.ws.heartbeat_interval_secs = 1;
        settings.ws.client_timeout_secs = 3;
        let prefix = settings.redis.key_prefix.clone();
        let a = TestApp::spawn_with(db, settings.clone()).await;
        let b = OtherInstance::start(settings).await;
        let (_teacher, class, _) = class_with_students(&a, 0).await;
        let (student, token) = crate::ws::student(&a, &class).await;

        let mut on_a = open(&a.address, &token).await;
        assert_eq!(first(&mut on_a).await, Ok("welcome".to_owned()));
        let mut on_b = open(&b.address, &token).await;
        assert_eq!(first(&mut on_b).await, Ok("welcome".to_owned()));
        let keep_a = keep_open(on_a);
        let keep_b = keep_open(on_b);
        // One here and one there: a third is refused on either.
        assert!(!admitted(&a.address, &token).await);
        assert!(!admitted(&b.address, &token).await);
        // Past the records' lifetime they still count: their instances refresh them.
        tokio::time::sleep(Duration::from_millis(4500)).await;
        assert!(!admitted(&b.address, &token).await);

        // Closed on B: its record goes, and A admits one more.
        keep_b.send(()).expect("socket task");
        let mut tries = 0;
        while !admitted(&a.address, &token).await {
            tries += 1;
            assert!(tries < 50, "the closed socket still counts");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // An instance that died leaves its records behind: they stop counting when they expire.
        let client = redis::Client::open(test_redis_url()).expect("Redis URL");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis");
        let expires = redis_now_ms(&mut conn).await + 1500;
        let _: () = redis::cmd("ZADD")
            .arg(format!("{prefix}:sockets:{}", student.id))
            .arg(expires)
            .arg("crashed-instance:1")
            .query_async(&mut conn)
            .await
            .expect("ZADD");
        assert!(!admitted(&b.address, &token).await);
        eventually("the dead instance's socket stops counting", || async {
            admitted(&b.address, &token).await
        })
        .await;
        keep_a.send(()).expect("socket task");
        b.stop().await;
    }
);

both_backends!(
    without_redis_each_instance_applies_its_own_limits,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let mut settings = db.settings();
        // Nothing listens on port 1.
        settings.redis.url = secrecy::SecretString::from("redis://127.0.0.1:1".to_owned());
        settings.redis.command_timeout_ms = 300;
        settings.submissions.rate_limit_per_hour = 2;
        settings.auth.login_max_failures = 2;
        settings.ws.max_sockets_per_user = 1;
        let app = TestApp::spawn_with(db, settings).await;
        let (teacher, class, students) = class_with_students(&app, 1).await;
        let student = &students[0];
        let all = exercises(&app).await;
        for (i, (exercise, _)) in all.iter().take(2).enumerate() {
            let (status, answer) = submit(student, *exercise, attempt()).await;
            assert_eq!(status, 200, "submission {i}: {answer}");
        }
        let (status, refused) = submit(student, all[2].0, attempt()).await;
        assert_eq!(status, 429, "{refused}");
        assert_eq!(attempts_stored(&app, student).await, 2);

        let address = app.address.clone();
        assert_eq!(sign_in(&teacher, &address, "mauvais-1").await, 401);
        assert_eq!(sign_in(&teacher, &address, "mauvais-2").await, 401);
        assert_eq!(
            sign_in(&teacher, &address, teacher.password.as_deref().unwrap()).await,
            429
        );

        let (_, token) = crate::ws::student(&app, &class).await;
        let mut one = open(&address, &token).await;
        assert_eq!(first(&mut one).await, Ok("welcome".to_owned()));
        assert!(!admitted(&address, &token).await);

        // Every decision made without Redis is counted.
        for limit in ["submissions", "login", "ws_sockets"] {
            let series = format!("nsi_limit_fallbacks_total{{limit=\"{limit}\"}}");
            assert!(metric(&app, &series).await >= 1.0, "{series}");
        }
    }
);

/// A Redis server of this test's own (to pause, kill and restart), on a free port.
struct PrivateRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    async fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = PrivateRedis { port, child: None };
        redis.restart().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (empty: nothing is saved) and waits until it answers.
    async fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server) is installed");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).expect("URL");
        for _ in 0..100 {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the private redis-server did not start");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn command(&self, args: &[&str]) {
        let client = redis::Client::open(self.url()).expect("URL");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("private Redis");
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        let _: redis::Value = cmd.query_async(&mut conn).await.expect("command");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

both_backends!(
    a_slow_dead_or_restarted_redis_never_blocks_nor_resets_the_hour,
    |backend| async move {
        let mut redis = PrivateRedis::start().await;
        let db = TestDb::new(backend).await;
        let mut settings = with_redis(&db);
        settings.redis.url = secrecy::SecretString::from(redis.url());
        settings.redis.command_timeout_ms = 300;
        settings.submissions.rate_limit_per_hour = 4;
        let app = TestApp::spawn_with(db, settings).await;
        let (_teacher, _class, students) = class_with_students(&app, 1).await;
        let student = &students[0];
        let all = exercises(&app).await;
        for (exercise, _) in &all[..2] {
            let (status, answer) = submit(student, *exercise, attempt()).await;
            assert_eq!(status, 200, "{answer}");
        }
        let fallbacks = "nsi_limit_fallbacks_total{limit=\"submissions\"}";
        let counted_before = app.get("/metrics").await.text().await.unwrap();
        assert!(!counted_before.contains(fallbacks), "no fallback yet");

        // Redis stops answering for 5 s: the submission is decided here, without waiting for it.
        redis.command(&["CLIENT", "PAUSE", "5000"]).await;
        let asked = std::time::Instant::now();
        let (status, answer) = submit(student, all[2].0, attempt()).await;
        assert_eq!(status, 200, "{answer}");
        assert!(
            asked.elapsed() < Duration::from_secs(4),
            "answered before Redis came back"
        );
        assert!(metric(&app, fallbacks).await >= 1.0);

        // Redis dies: this instance's own window still counts (4 of 4 now).
        redis.kill();
        let (status, answer) = submit(student, all[3].0, attempt()).await;
        assert_eq!(status, 200, "{answer}");
        let (status, refused) = submit(student, all[4].0, attempt()).await;
        assert_eq!(status, 429, "{refused}");

        // Redis comes back empty: it has counted nothing this hour, the student's actor has.
        redis.restart().await;
        eventually("/readyz sees Redis again", || async {
            app.get_json("/readyz", 200).await["redis"] == "ok"
        })
        .await;
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let fell_back = metric(&app, fallbacks).await;
        let (status, refused) = submit(student, all[4].0, attempt()).await;
        assert_eq!(status, 429, "{refused}");
        assert_eq!(
            metric(&app, fallbacks).await,
            fell_back,
            "decided with Redis"
        );
        assert_eq!(attempts_stored(&app, student).await, 4);
    }
);
