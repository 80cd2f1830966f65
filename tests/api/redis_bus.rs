//! Two instances tied by Redis (issue 13, the bus): a teacher on one instance sees what students
//! do on the other, a logout on one ends the session on the other at once, and the instances
//! come back by themselves when their subscription is killed or Redis restarts (every dashboard
//! resyncs, nothing acknowledged is lost). Each test has its own key prefix; those that break
//! Redis start their own `redis-server` on a free port.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_tungstenite::client_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::both_backends;
use crate::health::test_redis_url;
use crate::helpers::{Backend, OtherInstance, TestApp, TestDb, eventually, new_client};
use crate::ws::{Ws, exercises, new_class, student, submit_msg, teacher_socket};

/// Settings of an instance on `db` tied to the Redis at `url`, under a key prefix of its own
/// (shared by the test's instances).
pub(crate) fn tied(db: &TestDb, url: &str, prefix: &str) -> nsi_live::config::Settings {
    let mut settings = db.settings();
    settings.redis.url = secrecy::SecretString::from(url.to_owned());
    settings.redis.key_prefix = prefix.to_owned();
    settings.redis.command_timeout_ms = 500;
    settings.redis.connect_timeout_ms = 500;
    settings.redis.reconnect_max_ms = 400;
    // Long enough that only the bus can make another instance forget a session in a test.
    settings.auth.session_cache_ttl_secs = 600;
    settings
}

pub(crate) fn new_prefix() -> String {
    format!("test-{}", uuid::Uuid::new_v4().simple())
}

/// Instance A (a `TestApp`) and instance B on the same database and Redis.
pub(crate) async fn two_instances(backend: Backend, url: &str) -> (TestApp, OtherInstance) {
    let db = TestDb::new(backend).await;
    let settings = tied(&db, url, &new_prefix());
    let a = TestApp::spawn_with(db, settings.clone()).await;
    let b = OtherInstance::start(settings).await;
    subscribed(&a.address).await;
    subscribed(&b.address).await;
    (a, b)
}

/// One series of an instance's `/metrics` (panics when absent).
pub(crate) async fn series(address: &str, name: &str) -> f64 {
    let text = new_client()
        .get(format!("{address}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} missing in /metrics:\n{text}"))
}

pub(crate) async fn subscribed(address: &str) {
    eventually("the bus subscription is up", || async {
        series(address, "nsi_bus_subscription_up").await == 1.0
    })
    .await;
}

async fn readyz(address: &str) -> Value {
    new_client()
        .get(format!("{address}/readyz"))
        .send()
        .await
        .expect("GET /readyz")
        .json()
        .await
        .unwrap()
}

/// A browser on instance `address` (our page's Origin, the session cookie).
pub(crate) async fn connect_at(address: &str, path: &str, token: &str) -> Ws {
    let host = address.trim_start_matches("http://");
    let mut request = format!("ws://{host}{path}").into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert(
        "cookie",
        HeaderValue::from_str(&format!("nsi_session={token}")).unwrap(),
    );
    headers.insert("origin", HeaderValue::from_str(address).unwrap());
    let tcp = tokio::net::TcpStream::connect(host).await.expect("tcp");
    let (stream, _) = tokio::time::timeout(Duration::from_secs(5), client_async(request, tcp))
        .await
        .expect("handshake in time")
        .expect("handshake");
    Ws { stream }
}

pub(crate) async fn student_socket_at(address: &str, token: &str) -> Ws {
    let mut ws = connect_at(address, "/ws", token).await;
    ws.expect("welcome").await;
    ws.expect("progress").await;
    ws
}

/// Submits over the socket; the answer's `result`.
pub(crate) async fn submit(ws: &mut Ws, exercise: i64, passed: bool) -> Value {
    let (attempt_id, msg) = submit_msg(exercise, passed);
    ws.send(msg).await;
    let result = ws.until("the result", |v| v["type"] == "result").await;
    assert_eq!(result["attempt_id"], attempt_id.as_str(), "{result}");
    result
}

both_backends!(
    a_teacher_on_one_instance_sees_a_student_on_the_other,
    |backend| async move {
        let (a, b) = two_instances(backend, &test_redis_url()).await;
        let (_teacher, teacher_token, class) = new_class(&a).await;
        let (student_user, student_token) = student(&a, &class).await;
        let ex = exercises(&a, 1).await[0];
        let (mut dash, _) = teacher_socket(&a, &class, &teacher_token).await;

        // The student's socket is on B: A's dashboard sees them come online.
        let started = Instant::now();
        let mut ws = student_socket_at(&b.address, &student_token).await;
        let online = dash
            .until("presence from B", |v| {
                v["kind"] == "presence_changed" && v["online"] == true
            })
            .await;
        assert_eq!(online["student_id"], student_user.id, "{online}");
        let presence_after = started.elapsed();

        // An attempt submitted on B reaches A's dashboard.
        let started = Instant::now();
        let result = submit(&mut ws, ex, true).await;
        let recorded = dash.delta("attempt_recorded").await;
        let attempt_after = started.elapsed();
        assert_eq!(recorded["attempt_id"], result["attempt_id"], "{recorded}");
        assert_eq!(recorded["student_id"], student_user.id);
        assert!(recorded["offset"].as_u64() > online["offset"].as_u64());
        eprintln!("presence B→A: {presence_after:?}, attempt B→A: {attempt_after:?}");

        // Each event once: nothing else about that attempt follows but its badges.
        while let Some(v) = dash.try_next(Duration::from_millis(300)).await {
            assert_ne!(v["kind"], "attempt_recorded", "{v}");
        }
        assert!(series(&a.address, "nsi_bus_received_total").await >= 2.0);
        assert!(series(&b.address, "nsi_bus_published_total").await >= 2.0);
        b.stop().await;
    }
);

both_backends!(
    a_logout_on_one_instance_ends_the_session_on_the_other_at_once,
    |backend| async move {
        let (a, b) = two_instances(backend, &test_redis_url()).await;
        let (_teacher, _, class) = new_class(&a).await;
        let (mut student_user, token) = student(&a, &class).await;
        let mut ws = student_socket_at(&b.address, &token).await;
        // B has the session in its cache (600 s).
        student_user.address = b.address.clone();
        student_user.get_json("/api/v1/me", 200).await;

        student_user.address = a.address.clone();
        let (status, _) = student_user
            .request(reqwest::Method::POST, "/api/v1/auth/logout", None)
            .await;
        assert_eq!(status, 204);
        assert_eq!(ws.close_code().await, 4010);
        // The same message dropped B's cache entry before it closed the socket.
        student_user.address = b.address.clone();
        let body = student_user.get_json("/api/v1/me", 401).await;
        assert_eq!(body["error"], "unauthorized", "{body}");
        b.stop().await;
    }
);

/// A `redis-server` of the test's own, on a free port, that it can kill and restart.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    async fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = PrivateRedis { port, child: None };
        redis.run().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn run(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir", "/tmp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (is it installed?)");
        self.child = Some(child);
        let url = self.url();
        eventually("the private Redis answers", || {
            let url = url.clone();
            async move { command(&url, &["PING"]).await.is_ok() }
        })
        .await;
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One command on a fresh connection.
pub(crate) async fn command(url: &str, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let client = redis::Client::open(url)?;
    let work = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query_async::<redis::Value>(&mut conn).await
    };
    tokio::time::timeout(Duration::from_secs(2), work)
        .await
        .unwrap_or_else(|_| Err(redis::RedisError::from(std::io::Error::other("timed out"))))
}

/// Reads until a snapshot arrives (a resync); answers it.
async fn resynced(dash: &mut Ws) -> Value {
    dash.until("a resync snapshot", |v| v["type"] == "snapshot")
        .await
}

both_backends!(
    instances_recover_by_themselves_when_redis_drops_them_or_restarts,
    |backend| async move {
        let mut redis = PrivateRedis::start().await;
        let (a, b) = two_instances(backend, &redis.url()).await;
        let (_teacher, teacher_token, class) = new_class(&a).await;
        let (student_user, student_token) = student(&a, &class).await;
        let all = exercises(&a, 4).await;
        let (mut dash, _) = teacher_socket(&a, &class, &teacher_token).await;
        let mut ws = student_socket_at(&b.address, &student_token).await;
        let mut acknowledged = vec![submit(&mut ws, all[0], true).await];
        dash.delta("attempt_recorded").await;

        // Every subscription is killed: both instances subscribe again, and A's dashboard
        // resyncs from the database.
        let killed = command(&redis.url(), &["CLIENT", "KILL", "TYPE", "pubsub"])
            .await
            .expect("CLIENT KILL");
        assert!(
            matches!(killed, redis::Value::Int(n) if n >= 2),
            "{killed:?}"
        );
        let fresh = resynced(&mut dash).await;
        assert_eq!(fresh["reason"], "lagged", "{fresh}");
        for address in [&a.address, &b.address] {
            subscribed(address).await;
            assert!(series(address, "nsi_bus_reconnects_total").await >= 1.0);
        }
        acknowledged.push(submit(&mut ws, all[1], false).await);
        let recorded = dash.delta("attempt_recorded").await;
        assert_eq!(recorded["attempt_id"], acknowledged[1]["attempt_id"]);

        // Redis goes away: each instance serves its own clients and says it is degraded.
        redis.kill();
        eventually("both instances see Redis gone", || async {
            readyz(&a.address).await["status"] == "degraded"
                && readyz(&b.address).await["status"] == "degraded"
        })
        .await;
        acknowledged.push(submit(&mut ws, all[2], true).await);
        assert_eq!(
            series(&a.address, "nsi_bus_subscription_up").await,
            0.0,
            "A's subscription is down"
        );

        // Redis returns (empty, on the same port): both instances come back, and A's dashboard
        // resyncs with what B stored meanwhile.
        redis.run().await;
        subscribed(&a.address).await;
        subscribed(&b.address).await;
        let fresh = dash
            .until("a snapshot with the attempt made during the outage", |v| {
                v["type"] == "snapshot"
                    && v["grid"].as_array().is_some_and(|cells| {
                        cells
                            .iter()
                            .any(|c| c["exercise_id"] == all[2] && c["passed"] == true)
                    })
            })
            .await;
        assert_eq!(fresh["reason"], "lagged", "{fresh}");
        assert_eq!(readyz(&a.address).await["status"], "ready");
        acknowledged.push(submit(&mut ws, all[3], true).await);
        let recorded = dash.delta("attempt_recorded").await;
        assert_eq!(recorded["attempt_id"], acknowledged[3]["attempt_id"]);

        // Every acknowledged attempt is stored.
        for result in &acknowledged {
            let id = result["attempt_id"].as_str().unwrap();
            let stored =
                a.db.scalar(&format!(
                    "SELECT COUNT(*) FROM attempts WHERE attempt_id = '{id}' AND student_id = {}",
                    student_user.id
                ))
                .await;
            assert_eq!(stored, 1, "attempt {id}");
        }
        b.stop().await;
    }
);

both_backends!(
    without_redis_an_instance_serves_its_own_clients,
    |backend| async move {
        let db = TestDb::new(backend).await;
        // Nothing listens on port 1.
        let settings = tied(&db, "redis://127.0.0.1:1", &new_prefix());
        let app = TestApp::spawn_with(db, settings).await;
        let (_teacher, teacher_token, class) = new_class(&app).await;
        let (student_user, student_token) = student(&app, &class).await;
        let ex = exercises(&app, 1).await[0];
        let (mut dash, _) = teacher_socket(&app, &class, &teacher_token).await;
        let mut ws = student_socket_at(&app.address, &student_token).await;
        let online = dash.delta("presence_changed").await;
        assert_eq!(online["student_id"], student_user.id, "{online}");
        let result = submit(&mut ws, ex, true).await;
        let recorded = dash.delta("attempt_recorded").await;
        assert_eq!(recorded["attempt_id"], result["attempt_id"], "{recorded}");
        let ready = readyz(&app.address).await;
        assert_eq!(ready["status"], "degraded", "{ready}");
        assert_eq!(ready["bus"], "down", "{ready}");
        let id = result["attempt_id"].as_str().unwrap();
        let stored = app
            .db
            .scalar(&format!(
                "SELECT COUNT(*) FROM attempts WHERE attempt_id = '{id}'"
            ))
            .await;
        assert_eq!(stored, 1);
        // What could not reach Redis was dropped and counted, never queued without bound.
        eventually("the dropped publishes are counted", || async {
            series(
                &app.address,
                "nsi_bus_dropped_total{reason=\"redis_error\"}",
            )
            .await
                >= 1.0
        })
        .await;
        assert_eq!(series(&app.address, "nsi_bus_subscription_up").await, 0.0);
    }
);

/// Publishes a bus envelope by hand on a class's channel, as instance `origin` would, at
/// `(epoch, offset)` of the class's shared stream (as the stream script writes it).
async fn inject(
    url: &str,
    prefix: &str,
    class: i64,
    origin: &str,
    seq: u64,
    at: (u64, u64),
    event: Value,
) {
    let envelope = serde_json::json!({
        "E": at.0, "n": at.1, "o": origin, "s": seq, "t": chrono_now_ms(), "e": event,
    });
    let channel = format!("{prefix}:class:{class}");
    command(url, &["PUBLISH", &channel, &envelope.to_string()])
        .await
        .expect("PUBLISH");
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

both_backends!(
    duplicates_are_dropped_and_a_gap_resyncs_the_dashboards,
    |backend| async move {
        let url = test_redis_url();
        let db = TestDb::new(backend).await;
        let prefix = new_prefix();
        let settings = tied(&db, &url, &prefix);
        let app = TestApp::spawn_with(db, settings).await;
        subscribed(&app.address).await;
        let (_teacher, teacher_token, class) = new_class(&app).await;
        let (student_user, _) = student(&app, &class).await;
        let (mut dash, snapshot) = teacher_socket(&app, &class, &teacher_token).await;
        let epoch = snapshot["epoch"].clone();
        let e = epoch.as_u64().unwrap();
        let n = snapshot["offset"].as_u64().unwrap();
        let xp = |xp: i64| serde_json::json!({ "kind": "xp_changed", "student_id": student_user.id, "xp": xp });

        // Another instance's messages 1 and 2, then 2 again: two deltas, the copy dropped.
        inject(&url, &prefix, class.id, "elsewhere", 1, (e, n + 1), xp(10)).await;
        inject(&url, &prefix, class.id, "elsewhere", 2, (e, n + 2), xp(20)).await;
        inject(&url, &prefix, class.id, "elsewhere", 2, (e, n + 2), xp(20)).await;
        assert_eq!(dash.delta("xp_changed").await["xp"], 10);
        assert_eq!(dash.delta("xp_changed").await["xp"], 20);
        if let Some(v) = dash.try_next(Duration::from_millis(500)).await {
            panic!("the duplicate reached the dashboard: {v}");
        }
        assert_eq!(series(&app.address, "nsi_bus_duplicates_total").await, 1.0);

        // Message 4 without 3 (lost before Redis numbered it): delivered, and the class resyncs
        // (a snapshot). The shared stream's epoch stays: a new one is the origin's to begin.
        inject(&url, &prefix, class.id, "elsewhere", 4, (e, n + 3), xp(40)).await;
        assert_eq!(dash.delta("xp_changed").await["xp"], 40);
        let fresh = resynced(&mut dash).await;
        assert_eq!(fresh["reason"], "lagged", "{fresh}");
        assert_eq!(fresh["epoch"], epoch, "{fresh}");
        assert_eq!(series(&app.address, "nsi_bus_gaps_total").await, 1.0);
        assert!(series(&app.address, "nsi_bus_lag_seconds_count").await >= 4.0);

        // Message 5 in sequence, but with an offset skipped (lost between Redis and here):
        // delivered, and the class resyncs again.
        inject(&url, &prefix, class.id, "elsewhere", 5, (e, n + 5), xp(50)).await;
        assert_eq!(dash.delta("xp_changed").await["xp"], 50);
        let fresh = resynced(&mut dash).await;
        assert_eq!(fresh["reason"], "lagged", "{fresh}");
        assert_eq!(fresh["epoch"], epoch, "{fresh}");
        assert_eq!(fresh["offset"], n + 5, "{fresh}");
    }
);

both_backends!(
    a_class_channel_is_left_a_while_after_its_actor_stops,
    |backend| async move {
        let url = test_redis_url();
        let db = TestDb::new(backend).await;
        let prefix = new_prefix();
        let mut settings = tied(&db, &url, &prefix);
        settings.actors.idle_timeout_secs = 1;
        settings.redis.unsubscribe_after_secs = 1;
        let app = TestApp::spawn_with(db, settings).await;
        subscribed(&app.address).await;
        let (_teacher, teacher_token, class) = new_class(&app).await;
        let channel = format!("{prefix}:class:{}", class.id);
        let listeners = || {
            let (url, channel) = (url.clone(), channel.clone());
            async move {
                match command(&url, &["PUBSUB", "NUMSUB", &channel]).await {
                    Ok(redis::Value::Array(v)) => match v.get(1) {
                        Some(redis::Value::Int(n)) => *n,
                        other => panic!("{other:?}"),
                    },
                    other => panic!("{other:?}"),
                }
            }
        };
        let (dash, _) = teacher_socket(&app, &class, &teacher_token).await;
        // Subscribed before the class loaded.
        assert_eq!(listeners().await, 1);
        drop(dash);
        eventually("the channel is left once the class stopped", || async {
            listeners().await == 0
        })
        .await;
    }
);
