//! `/metrics` read the way Prometheus reads it (a text-format parser, not string matching):
//! every family is there with sane values after traffic; the bearer token and the internal
//! listener keep it from the public; actors still loading are not counted as alive.

use std::collections::HashMap;

use prometheus_parse::{Sample, Scrape, Value};
use serde_json::{Value as Json, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, TestDb, TestUser, assert_error, new_client, unique};

const TOKEN: &str = "scrape-token-for-the-tests";

/// One scrape of `url`, parsed.
async fn scrape_at(url: &str, token: Option<&str>) -> Scrape {
    let mut request = new_client().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("scrape");
    assert_eq!(response.status().as_u16(), 200, "GET {url}");
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("content type")
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.expect("body");
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text format")
}

async fn scrape(app: &TestApp) -> Scrape {
    scrape_at(&app.url("/metrics"), None).await
}

/// The samples of `metric` whose labels include every pair of `labels`.
fn find<'a>(scrape: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect()
}

/// The value of the one counter, gauge or untyped sample of `metric` with `labels`.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found = find(scrape, metric, labels);
    assert_eq!(found.len(), 1, "{metric} {labels:?}: {found:?}");
    match found[0].value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        ref other => panic!("{metric} is not a single value: {other:?}"),
    }
}

/// A histogram's buckets (cumulative, by upper bound) for one label set; checks their shape:
/// bounds rising, counts never falling, the `+Inf` bucket equal to `_count`.
fn histogram(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
    let found = find(scrape, metric, labels);
    assert_eq!(
        found.len(),
        1,
        "{metric} {labels:?} among {:?}",
        find(scrape, metric, &[])
            .iter()
            .map(|s| &s.labels)
            .collect::<Vec<_>>()
    );
    let Value::Histogram(buckets) = &found[0].value else {
        panic!("{metric} is not a histogram: {:?}", found[0].value);
    };
    let buckets: Vec<(f64, f64)> = buckets.iter().map(|b| (b.less_than, b.count)).collect();
    assert!(
        buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "{metric}: {buckets:?}"
    );
    let (last_bound, last_count) = *buckets.last().expect("buckets");
    assert!(last_bound.is_infinite(), "{metric}: no +Inf bucket");
    assert_eq!(
        last_count,
        value(scrape, &format!("{metric}_count"), labels),
        "{metric}: +Inf bucket and _count differ"
    );
    buckets
}

/// The first Python exercise of the catalogue (its id).
async fn python_exercise(app: &TestApp) -> i64 {
    for e in app.listed_exercises().await {
        if e.kind == "python" {
            return e.id;
        }
    }
    panic!("the catalogue has no Python exercise");
}

async fn submit(user: &TestUser, exercise: i64) -> (u16, Json) {
    let body = json!({
        "attempt_id": uuid::Uuid::new_v4().to_string(),
        "passed": true,
        "score": 100,
        "code": "print('bonjour')",
    });
    user.request(
        reqwest::Method::POST,
        &format!("/exercises/{exercise}/submit/"),
        Some(&body),
    )
    .await
}

both_backends!(
    every_family_is_exposed_after_traffic,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let mut settings = db.settings();
        settings.auth.login_max_failures = 1;
        settings.submissions.rate_limit_per_hour = 1;
        let max_connections = settings.database.max_connections;
        let app = TestApp::spawn_with(db, settings).await;
        let teacher = app.signup_teacher().await;
        let class = app.create_classroom(&teacher).await;

        // A student with a bearer token, and their socket open.
        let mut student = app.anonymous();
        let joined = student
        .post_json(
            "/api/v1/auth/join",
            &json!({ "join_code": class.join_code, "pseudonym": unique("élève-"), "bearer": true }),
            201,
        )
        .await;
        student.id = joined["user"]["id"].as_i64().expect("id");
        student.role = "student".into();
        let token = joined["token"].as_str().expect("token").to_owned();
        student.token = Some(token.clone());
        let mut request = format!("{}/ws", app.address.replace("http://", "ws://"))
            .into_client_request()
            .expect("socket request");
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
        request.headers_mut().insert(
            "origin",
            HeaderValue::from_str(&app.address).expect("origin"),
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("socket opens");

        // One submission stored, the next refused by the rate limit (1 per hour here).
        let exercise = python_exercise(&app).await;
        let (status, body) = submit(&student, exercise).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = submit(&student, exercise).await;
        assert_eq!(status, 429, "{body}");
        // A wrong password, then the throttle (1 failure per login here).
        let login = teacher.login.clone().expect("login");
        for expected in [401, 429] {
            let anonymous = app.anonymous();
            let (status, body) = anonymous
                .request(
                    reqwest::Method::POST,
                    "/api/v1/auth/login",
                    Some(&json!({ "login": login, "password": "pas le bon mot de passe" })),
                )
                .await;
            assert_eq!(status, expected, "{body}");
        }
        for _ in 0..3 {
            app.get_json(&format!("/api/v1/exercises/{exercise}"), 200)
                .await;
        }
        assert_eq!(app.get("/api/v1/no-such-route/4242").await.status(), 404);

        let s = scrape(&app).await;
        let docs: HashMap<&str, &str> = s
            .docs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();

        // HTTP: by route template, never by path; the scrape itself is in flight.
        let route = [
            ("method", "GET"),
            ("route", "/api/v1/exercises/:id"),
            ("status", "200"),
        ];
        let buckets = histogram(&s, "nsi_http_request_duration_seconds", &route);
        assert!(buckets.last().unwrap().1 >= 3.0, "{buckets:?}");
        assert!(value(&s, "nsi_http_request_duration_seconds_sum", &route) > 0.0);
        let limited = [("route", "/api/v1/auth/login"), ("status", "429")];
        histogram(&s, "nsi_http_request_duration_seconds", &limited);
        for sample in find(&s, "nsi_http_request_duration_seconds", &[]) {
            let route = sample.labels.get("route").expect("route label");
            let id = exercise.to_string();
            assert!(
                !route.split('/').any(|part| part == "4242" || part == id),
                "a path became a series: {route}"
            );
        }
        assert!(value(&s, "nsi_http_requests_in_flight", &[]) >= 1.0);

        // Sockets, actors, the writer, the bus.
        assert_eq!(
            value(&s, "nsi_websockets_open", &[("kind", "student")]),
            1.0
        );
        assert_eq!(
            value(&s, "nsi_websockets_open", &[("kind", "dashboard")]),
            0.0
        );
        assert!(value(&s, "nsi_actors_alive", &[("kind", "student")]) >= 1.0);
        assert!(value(&s, "nsi_actors_alive", &[("kind", "classroom")]) >= 0.0);
        assert_eq!(value(&s, "nsi_writer_items_written_total", &[]), 1.0);
        assert!(value(&s, "nsi_writer_rows_written_total", &[]) >= 1.0);
        let commits = value(&s, "nsi_writer_commits_total", &[]);
        assert!(commits >= 1.0);
        assert_eq!(value(&s, "nsi_writer_failed_commits_total", &[]), 0.0);
        assert_eq!(value(&s, "nsi_writer_rejected_queue_full_total", &[]), 0.0);
        assert_eq!(value(&s, "nsi_writer_queue_depth", &[]), 0.0);
        assert_eq!(value(&s, "nsi_writer_largest_batch", &[]), 1.0);
        let sizes = histogram(&s, "nsi_writer_batch_size", &[]);
        assert_eq!(sizes.last().unwrap().1, commits);
        assert_eq!(sizes[0], (1.0, commits), "one item per batch: {sizes:?}");
        let flushes = histogram(&s, "nsi_writer_flush_seconds", &[]);
        assert_eq!(flushes.last().unwrap().1, commits);
        // Every committed batch waited some time for its connection, never longer than it took.
        let acquires = histogram(&s, "nsi_db_acquire_seconds", &[]);
        assert_eq!(acquires.last().unwrap().1, commits);
        let published = value(&s, "nsi_bus_published_total", &[]);
        assert!(published >= 1.0, "the attempt's class event");
        assert_eq!(value(&s, "nsi_bus_received_total", &[]), published);

        // The database pool.
        let open = value(&s, "nsi_db_pool_connections", &[]);
        let idle = value(&s, "nsi_db_pool_idle", &[]);
        let in_use = value(&s, "nsi_db_pool_in_use", &[]);
        assert_eq!(
            value(&s, "nsi_db_pool_max", &[]),
            f64::from(max_connections)
        );
        assert!(open >= 1.0 && open <= f64::from(max_connections), "{open}");
        assert_eq!(idle + in_use, open);

        // Refusals by limit, the hashing queue.
        assert_eq!(
            value(&s, "nsi_rate_limited_total", &[("limit", "submissions")]),
            1.0
        );
        assert_eq!(
            value(&s, "nsi_rate_limited_total", &[("limit", "login")]),
            1.0
        );
        assert!(find(&s, "nsi_rate_limited_total", &[("limit", "join")]).is_empty());
        assert!(value(&s, "nsi_password_hash_waiting", &[]) >= 0.0);
        assert!(value(&s, "nsi_password_hash_running", &[]) >= 0.0);
        assert!(value(&s, "nsi_password_hash_refused_total", &[]) >= 0.0);

        // The process and the build.
        if cfg!(target_os = "linux") {
            assert!(value(&s, "process_cpu_seconds_total", &[]) > 0.0);
            assert!(value(&s, "process_resident_memory_bytes", &[]) > 1e6);
            assert!(value(&s, "process_open_fds", &[]) >= 3.0);
            assert!(value(&s, "process_threads", &[]) >= 1.0);
            let started = value(&s, "process_start_time_seconds", &[]);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs_f64();
            assert!(started > 1.6e9 && started <= now + 1.0, "{started}");
        }
        assert_eq!(
            value(
                &s,
                "nsi_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))]
            ),
            1.0
        );

        // Every family says what it is.
        for family in [
            "nsi_http_request_duration_seconds",
            "nsi_writer_flush_seconds",
            "nsi_db_pool_in_use",
            "nsi_rate_limited_total",
            "process_resident_memory_bytes",
        ] {
            if family.starts_with("process_") && !cfg!(target_os = "linux") {
                continue;
            }
            assert!(
                docs.get(family).is_some_and(|d| !d.is_empty()),
                "{family} has no HELP"
            );
        }

        socket.close(None).await.ok();
    }
);

#[tokio::test]
async fn the_bearer_token_guards_metrics() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = db.settings();
    settings.metrics.bearer_token = TOKEN.to_owned().into();
    let app = TestApp::spawn_with(db, settings).await;
    let url = app.url("/metrics");

    for token in [None, Some("not-the-scrape-token-at-all"), Some("")] {
        let mut request = new_client().get(&url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("scrape");
        assert_eq!(response.status().as_u16(), 401, "token {token:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body: Json = response.json().await.expect("JSON");
        assert_error(&body, "unauthorized");
    }
    let s = scrape_at(&url, Some(TOKEN)).await;
    assert!(!find(&s, "nsi_writer_commits_total", &[]).is_empty());
}

#[tokio::test]
async fn metrics_on_an_internal_listener_leave_the_public_port() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = db.settings();
    settings.metrics.listen = "127.0.0.1:0".into();
    let app = TestApp::spawn_with(db, settings).await;
    let internal = app
        .metrics_address
        .clone()
        .expect("an internal metrics listener");

    let response = app.get("/metrics").await;
    assert_eq!(response.status().as_u16(), 404);
    app.get_json("/api/v1/courses", 200).await;
    let s = scrape_at(&format!("{internal}/metrics"), None).await;
    // Requests to the public port are measured; the internal listener serves nothing else.
    let courses = [("route", "/api/v1/courses"), ("status", "200")];
    histogram(&s, "nsi_http_request_duration_seconds", &courses);
    let other = new_client()
        .get(format!("{internal}/api/v1/courses"))
        .send()
        .await
        .expect("request");
    assert_eq!(other.status().as_u16(), 404);
    app.stop().await;
}

#[tokio::test]
async fn an_actor_still_loading_is_not_counted_alive() {
    // PostgreSQL: another connection locks `attempts`, so loading the student's actor (it reads
    // their recent attempts) waits; meanwhile the registry has a slot but no actor.
    let app = TestApp::spawn(Backend::Postgres).await;
    let teacher = app.signup_teacher().await;
    let class = app.create_classroom(&teacher).await;
    let student = app.student_in(&class).await;
    let alive = [("kind", "student")];
    assert_eq!(value(&scrape(&app).await, "nsi_actors_alive", &alive), 0.0);

    let url = app.db.url.clone().expect("a PostgreSQL test database");
    let mut lock = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("connect");
    sqlx::raw_sql("BEGIN; LOCK TABLE attempts IN ACCESS EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .expect("lock");
    let progress = student.builder(reqwest::Method::GET, "/api/v1/me/progress");
    let loading = tokio::spawn(async move { progress.send().await.expect("progress").status() });
    let mut waited = 0;
    while app
        .db
        .scalar(
            "SELECT COUNT(*) FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND datname = current_database()",
        )
        .await
        == 0
    {
        waited += 1;
        assert!(waited < 500, "the actor's load never waited for the lock");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(value(&scrape(&app).await, "nsi_actors_alive", &alive), 0.0);

    sqlx::raw_sql("ROLLBACK")
        .execute(&mut lock)
        .await
        .expect("unlock");
    assert_eq!(loading.await.expect("request task").as_u16(), 200);
    assert_eq!(value(&scrape(&app).await, "nsi_actors_alive", &alive), 1.0);
}
