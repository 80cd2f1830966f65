//! `TestApp`: one app on port 0 with its own database (a temporary SQLite file, or a fresh
//! PostgreSQL database dropped afterwards).

use std::path::{Path, PathBuf};
use std::sync::Once;

use nsi_live::config::{LogFormat, Settings};
use nsi_live::startup::Application;
use secrecy::SecretString;
use serde_json::Value;
use sqlx::Connection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs an async test body once per backend, naming the backend in any failure.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                ($body)($crate::helpers::Backend::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                ($body)($crate::helpers::Backend::Postgres).await
            }
        }
    };
}

pub fn test_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            nsi_live::telemetry::init(&nsi_live::config::LogSettings {
                format: LogFormat::Pretty,
                filter: "info,sqlx=warn".into(),
            });
        }
    });
}

pub fn content_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("content")
}

/// A database for one test: its settings, and what to remove when the test ends.
pub struct TestDb {
    pub url: Option<String>,
    pub sqlite_dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => TestDb {
                url: None,
                sqlite_dir: Some(tempfile::tempdir().expect("temp dir")),
                pg_name: None,
            },
            Backend::Postgres => {
                let admin_url = test_database_url();
                let mut admin = admin_connect(&admin_url).await.unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL is required for this test and is not reachable at \
                         TEST_DATABASE_URL={admin_url}: {e}. Start it (e.g. `pg_ctlcluster 15 main start`) \
                         or point TEST_DATABASE_URL at a server where this user may CREATE DATABASE."
                    )
                });
                let name = format!("nsi_test_{}", uuid::Uuid::new_v4().simple());
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .expect("CREATE DATABASE");
                admin.close().await.ok();
                let url = replace_db_name(&admin_url, &name);
                TestDb {
                    url: Some(url),
                    sqlite_dir: None,
                    pg_name: Some(name),
                }
            }
        }
    }

    /// Test settings pointing at this database and the real content.
    pub fn settings(&self) -> Settings {
        let env = vec![("APP_ENV".to_owned(), "test".to_owned())];
        let mut s = Settings::load_from(&env).expect("test settings");
        s.content.dir = content_dir();
        match (&self.url, &self.sqlite_dir) {
            (Some(url), _) => s.database.url = SecretString::from(url.clone()),
            (None, Some(dir)) => s.database.sqlite_path = dir.path().join("test.db"),
            (None, None) => unreachable!(),
        }
        s
    }
}

/// A connection for creating and dropping test databases: to `url`'s database, or, when that one
/// does not exist (a fresh server has no `test` database), to the server's `postgres` database.
pub async fn admin_connect(url: &str) -> Result<sqlx::PgConnection, sqlx::Error> {
    match sqlx::PgConnection::connect(url).await {
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
            sqlx::PgConnection::connect(&replace_db_name(url, "postgres")).await
        }
        other => other,
    }
}

fn replace_db_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl TestDb {
    /// Runs one SQL statement on the test database directly (to check or to break things).
    pub async fn execute(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match (&self.url, &self.sqlite_dir) {
            (Some(url), _) => {
                let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
                sqlx::raw_sql(sql).execute(&mut c).await.expect("execute");
            }
            (None, Some(dir)) => {
                let mut c = sqlx::SqliteConnection::connect(&format!(
                    "sqlite://{}",
                    dir.path().join("test.db").display()
                ))
                .await
                .expect("connect");
                sqlx::raw_sql(sql).execute(&mut c).await.expect("execute");
            }
            (None, None) => unreachable!(),
        }
    }

    /// The first column of the first row of a query, as an integer (`COUNT(*)`, `SUM(…)`).
    pub async fn scalar(&self, sql: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match (&self.url, &self.sqlite_dir) {
            (Some(url), _) => {
                let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
                let row = sqlx::query(sql).fetch_one(&mut c).await.expect("query");
                first_int(&row)
            }
            (None, Some(dir)) => {
                let mut c = sqlx::SqliteConnection::connect(&format!(
                    "sqlite://{}",
                    dir.path().join("test.db").display()
                ))
                .await
                .expect("connect");
                let row = sqlx::query(sql).fetch_one(&mut c).await.expect("query");
                first_int(&row)
            }
            (None, None) => unreachable!(),
        }
    }
}

/// The first column as i64, whatever its integer width (PostgreSQL INTEGER is i32); NULL is 0.
fn first_int<R: sqlx::Row>(row: &R) -> i64
where
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i32>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    row.try_get::<Option<i64>, _>(0usize)
        .or_else(|_| {
            row.try_get::<Option<i32>, _>(0usize)
                .map(|v| v.map(i64::from))
        })
        .expect("an integer column")
        .unwrap_or(0)
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            let admin_url = test_database_url();
            // Drop runs outside any async context we could await in: use a short-lived runtime
            // on its own thread.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    if let Ok(mut admin) = admin_connect(&admin_url).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut admin)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

pub struct TestApp {
    pub address: String,
    /// `http://127.0.0.1:port` of the internal `/metrics` listener, when `metrics.listen` is set.
    pub metrics_address: Option<String>,
    pub client: reqwest::Client,
    pub handle: nsi_live::startup::AppHandle,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub db: TestDb,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        let db = TestDb::new(backend).await;
        let settings = db.settings();
        Self::spawn_with(db, settings).await
    }

    /// Starts the app on `db` with the given settings (`settings` usually from `db.settings()`).
    pub async fn spawn_with(db: TestDb, settings: Settings) -> TestApp {
        init_logs();
        let app = Application::build(settings).await.expect("app builds");
        let port = app.port();
        let metrics_address = app
            .metrics_port()
            .map(|port| format!("http://127.0.0.1:{port}"));
        let handle = app.handle();
        let task = tokio::spawn(app.run_until_stopped());
        TestApp {
            address: format!("http://127.0.0.1:{port}"),
            metrics_address,
            client: new_client(),
            handle,
            task,
            db,
        }
    }

    /// Stops the app as SIGTERM does, waits until it has flushed and closed everything, and
    /// gives back its database (to restart on it).
    pub async fn stop(self) -> TestDb {
        self.handle.stop().await;
        self.task
            .await
            .expect("app task")
            .expect("app stopped cleanly");
        self.db
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Stops the app as SIGTERM does and starts a new one on the same database (test settings).
    pub async fn restart(self) -> TestApp {
        let db = self.stop().await;
        let settings = db.settings();
        TestApp::spawn_with(db, settings).await
    }

    /// The same browser (cookies, token) as `user`, talking to this app.
    pub fn same_browser(&self, user: &TestUser) -> TestUser {
        user.at(&self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// GET, asserting the status, returning the JSON body.
    pub async fn get_json(&self, path: &str, status: u16) -> Value {
        let response = self.get(path).await;
        let got = response.status().as_u16();
        let body = response.text().await.expect("body");
        assert_eq!(got, status, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }
}

/// An exercise as the chapter listing shows it.
pub struct ListedExercise {
    pub id: i64,
    pub slug: String,
    pub xp_reward: i64,
    /// `python`, `sql`, `mcq` or `parsons`.
    pub kind: String,
}

/// The content files' exercises by slug, loaded once per test binary.
pub fn content_exercise(slug: &str) -> nsi_live::domain::catalogue::ExerciseFile {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    static FILES: OnceLock<HashMap<String, nsi_live::domain::catalogue::ExerciseFile>> =
        OnceLock::new();
    FILES
        .get_or_init(|| {
            nsi_live::content::load_dir(&content_dir())
                .expect("content loads")
                .into_iter()
                .flat_map(|c| c.chapters)
                .flat_map(|ch| ch.exercises)
                .map(|e| (e.slug, e.file))
                .collect()
        })
        .get(slug)
        .cloned()
        .unwrap_or_else(|| panic!("no exercise {slug:?} in content/"))
}

/// A right (`right`) or wrong answer for the exercise, in the submit body's `answer` shape, made
/// from the content files as a student who knows (or not) would: the correct MCQ choices or one
/// wrong one; the Parsons solution's order or its reverse; the reference SQL query or a wrong
/// one; for Python, every test reported passed or failed (the browser's word).
pub fn answer_for(slug: &str, right: bool) -> Value {
    use nsi_live::domain::catalogue::{ExerciseKind, choice_id, parsons_items};
    use serde_json::json;
    let f = content_exercise(slug);
    match f.kind {
        ExerciseKind::Mcq => {
            let ids: Vec<String> = (0..f.choices.len())
                .filter(|i| f.choices[*i].correct == right)
                .map(choice_id)
                .take(if right { usize::MAX } else { 1 })
                .collect();
            json!({ "choices": ids })
        }
        ExerciseKind::Parsons => {
            let mut lines = parsons_items(slug, f.solution.as_deref().unwrap_or_default());
            if !right {
                lines.reverse();
            }
            json!({ "lines": lines.iter().map(|l| json!({ "id": l.id, "indent": l.indent })).collect::<Vec<_>>() })
        }
        ExerciseKind::Sql => {
            let query = if right {
                f.solution.clone().unwrap_or_default()
            } else {
                "SELECT 1 AS faux".to_owned()
            };
            json!({ "query": query })
        }
        ExerciseKind::Python => json!({
            "code": if right { f.solution.clone().unwrap_or_default() } else { f.starter_code.clone().unwrap_or_default() },
            "tests": f.tests.iter().map(|t| json!({ "name": t.name, "passed": right })).collect::<Vec<_>>(),
        }),
    }
}

impl TestApp {
    /// Every exercise of the catalogue, in order, walked through the public API
    /// (courses → chapters → exercises).
    pub async fn listed_exercises(&self) -> Vec<ListedExercise> {
        let mut out = Vec::new();
        let courses = self.get_json("/api/v1/courses", 200).await;
        for course in courses.as_array().expect("courses") {
            for chapter in course["chapters"].as_array().expect("chapters") {
                let path = format!(
                    "/api/v1/chapters/{}",
                    chapter["slug"].as_str().expect("slug")
                );
                let chapter = self.get_json(&path, 200).await;
                for e in chapter["exercises"].as_array().expect("exercises") {
                    out.push(ListedExercise {
                        id: e["id"].as_i64().expect("id"),
                        slug: e["slug"].as_str().expect("slug").to_owned(),
                        xp_reward: e["xp_reward"].as_i64().expect("xp_reward"),
                        kind: e["type"].as_str().expect("type").to_owned(),
                    });
                }
            }
        }
        out
    }
}

/// Asserts the JSON error shape `{"error": code, "message": …}`.
pub fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

// ---------------------------------------------------------------------------------------------
// Accounts: typed helpers for tests that need signed-in teachers and students.
// ---------------------------------------------------------------------------------------------

/// The password every helper-made teacher gets.
pub const TEST_PASSWORD: &str = "correct horse battery";

/// A client with its own cookie jar: one browser. It drops idle connections well before the
/// server's keep-alive (5 s) closes them: reusing one the server is closing at that very moment
/// fails the request ("error sending request"), a race that busy tests would otherwise hit.
pub fn new_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .pool_idle_timeout(std::time::Duration::from_secs(2))
        .build()
        .expect("client")
}

/// Unique names within the test process.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(1);
    format!("{prefix}{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Someone using the API: a browser (cookie jar) or, with `token`, a Bearer client.
/// `id` is 0 and `role` "anonymous" for nobody signed in.
pub struct TestUser {
    pub client: reqwest::Client,
    pub address: String,
    pub id: i64,
    pub role: String,
    pub login: Option<String>,
    pub password: Option<String>,
    /// A student's recovery code as last shown (at join, or by a teacher's reset).
    pub recovery_code: Option<String>,
    /// Sent as `Authorization: Bearer …` when set.
    pub token: Option<String>,
}

/// A classroom made by `TestApp::create_classroom`.
#[derive(Debug, Clone)]
pub struct TestClassroom {
    pub id: i64,
    pub join_code: String,
    pub json: Value,
}

impl TestUser {
    /// The same browser (cookies, token), talking to the instance at `address`.
    pub fn at(&self, address: &str) -> TestUser {
        TestUser {
            client: self.client.clone(),
            address: address.to_owned(),
            id: self.id,
            role: self.role.clone(),
            login: self.login.clone(),
            password: self.password.clone(),
            recovery_code: self.recovery_code.clone(),
            token: self.token.clone(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// A request builder carrying this user's credentials.
    pub fn builder(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut b = self.client.request(method, self.url(path));
        if let Some(token) = &self.token {
            b = b.bearer_auth(token);
        }
        b
    }

    /// Sends a request (with a JSON body if given); returns the status and the JSON body
    /// (`Null` when empty, a JSON string when not JSON).
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut b = self.builder(method.clone(), path);
        if let Some(body) = body {
            b = b.json(body);
        }
        let response = b
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e:?}"));
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json)
    }

    /// Sends a request and asserts its status; returns the JSON body.
    pub async fn expect(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        status: u16,
    ) -> Value {
        let (got, json) = self.request(method.clone(), path, body).await;
        assert_eq!(
            got, status,
            "{method} {path} as {} #{}: {json}",
            self.role, self.id
        );
        json
    }

    pub async fn get_json(&self, path: &str, status: u16) -> Value {
        self.expect(reqwest::Method::GET, path, None, status).await
    }

    pub async fn post_json(&self, path: &str, body: &Value, status: u16) -> Value {
        self.expect(reqwest::Method::POST, path, Some(body), status)
            .await
    }

    pub async fn put_json(&self, path: &str, body: &Value, status: u16) -> Value {
        self.expect(reqwest::Method::PUT, path, Some(body), status)
            .await
    }

    pub async fn patch_json(&self, path: &str, body: &Value, status: u16) -> Value {
        self.expect(reqwest::Method::PATCH, path, Some(body), status)
            .await
    }

    pub async fn delete(&self, path: &str, status: u16) -> Value {
        self.expect(reqwest::Method::DELETE, path, None, status)
            .await
    }
}

impl TestApp {
    /// A fresh browser, signed in as nobody.
    pub fn anonymous(&self) -> TestUser {
        TestUser {
            client: new_client(),
            address: self.address.clone(),
            id: 0,
            role: "anonymous".into(),
            login: None,
            password: None,
            recovery_code: None,
            token: None,
        }
    }

    /// Signs up a new teacher (unique login, `TEST_PASSWORD`) in a fresh browser.
    pub async fn signup_teacher(&self) -> TestUser {
        let login = unique("prof-");
        self.signup_teacher_as(&login, "Mme Test").await
    }

    pub async fn signup_teacher_as(&self, login: &str, name: &str) -> TestUser {
        let mut user = self.anonymous();
        let body = user
            .post_json(
                "/api/v1/auth/signup",
                &serde_json::json!({
                    "login": login, "display_name": name, "password": TEST_PASSWORD,
                }),
                201,
            )
            .await;
        user.id = body["user"]["id"].as_i64().expect("user id");
        user.role = "teacher".into();
        user.login = Some(login.to_owned());
        user.password = Some(TEST_PASSWORD.to_owned());
        user
    }

    /// Logs in with a login and password in a fresh browser (asserting 200).
    pub async fn login(&self, login: &str, password: &str) -> TestUser {
        let mut user = self.anonymous();
        let body = user
            .post_json(
                "/api/v1/auth/login",
                &serde_json::json!({ "login": login, "password": password }),
                200,
            )
            .await;
        user.id = body["user"]["id"].as_i64().expect("user id");
        user.role = body["user"]["role"].as_str().expect("role").to_owned();
        user.login = Some(login.to_owned());
        user.password = Some(password.to_owned());
        user
    }

    /// Creates a classroom for `teacher` (asserting 201).
    pub async fn create_classroom(&self, teacher: &TestUser) -> TestClassroom {
        let json = teacher
            .post_json(
                "/api/v1/classrooms",
                &serde_json::json!({ "name": unique("NSI "), "school": "Lycée Test" }),
                201,
            )
            .await;
        TestClassroom {
            id: json["id"].as_i64().expect("classroom id"),
            join_code: json["join_code"].as_str().expect("join code").to_owned(),
            json,
        }
    }

    /// A new student joins with `join_code` and `pseudonym` in a fresh browser (asserting 201).
    pub async fn join(&self, join_code: &str, pseudonym: &str) -> TestUser {
        let mut user = self.anonymous();
        let body = user
            .post_json(
                "/api/v1/auth/join",
                &serde_json::json!({ "join_code": join_code, "pseudonym": pseudonym }),
                201,
            )
            .await;
        user.id = body["user"]["id"].as_i64().expect("user id");
        user.role = "student".into();
        user.recovery_code = Some(
            body["recovery_code"]
                .as_str()
                .expect("recovery code")
                .to_owned(),
        );
        user
    }

    /// A new student in `classroom` with a unique pseudonym.
    pub async fn student_in(&self, classroom: &TestClassroom) -> TestUser {
        self.join(&classroom.join_code, &unique("élève-")).await
    }
}

/// The value of one series in `/metrics`, e.g. `nsi_writer_queue_depth` or
/// `nsi_actors_alive{kind="student"}`.
pub async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{series} missing in /metrics:\n{text}"))
}

/// Polls `check` every 20 ms for up to 10 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("not within 10 s: {what}");
}

/// A second instance on the same database (as after a restart, or behind a load balancer).
pub struct OtherInstance {
    pub address: String,
    handle: nsi_live::startup::AppHandle,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl OtherInstance {
    pub async fn start(settings: nsi_live::config::Settings) -> OtherInstance {
        let app = nsi_live::startup::Application::build(settings)
            .await
            .expect("second instance builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let handle = app.handle();
        let task = tokio::spawn(app.run_until_stopped());
        OtherInstance {
            address,
            handle,
            task,
        }
    }

    /// Stops it as SIGTERM does, before the test's database goes.
    pub async fn stop(self) {
        self.handle.stop().await;
        self.task.await.unwrap().unwrap();
    }
}
