//! Resident memory per connected student (issue 12): the release server binary as a child process,
//! N students in classes of `LIVE_RSS_CLASS_SIZE`, each with one live `/ws` socket (so one
//! `StudentActor`), plus each class's teacher dashboard; no traffic. The server's `VmRSS`
//! (/proc/<pid>/status) is read idle, after the dashboards, after the students, and after they
//! all left. Accounts and sessions are written straight into the database (no argon2 hash: its
//! 19 MiB working memory is a sign-in's cost, measured by `tests/rss_signin.rs`).
//!
//! Run: `cargo bench --bench live_rss` (SQLite, 5,000 students). Environment:
//! - `LIVE_RSS_STUDENTS` (5000), `LIVE_RSS_CLASS_SIZE` (30), `LIVE_RSS_IDLE_SECS` (10): how long
//!   the sockets stay idle before the reading;
//! - `LIVE_RSS_BACKENDS` (`sqlite`; `sqlite,postgres` for both; PostgreSQL from
//!   `TEST_DATABASE_URL`, default the local server);
//! - `LIVE_RSS_SERVER_BIN`: another build of the server to measure (default: this one's);
//! - `LIVE_RSS_WRAPPER`: a command line the server runs under, e.g. `heaptrack -o /tmp/live`
//!   (the server's own process is then found among the wrapper's descendants);
//! - `LIVE_RSS_KILL_CONNECTED=1`: kill the server (SIGKILL) while the students are connected, so
//!   that a heap profiler's "leaked" report is what they hold.
//!
//! The file-descriptor limit is raised to its hard limit (each socket is two descriptors here:
//! the client's and the server's). Figures: docs/benchmarks.md.

#[allow(dead_code, unused_imports, unused_macros)]
#[path = "../tests/api/helpers.rs"]
mod helpers;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use helpers::{Backend, TestDb};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

/// Sockets opened at once (each waits for its first messages).
const CONNECT_CONCURRENCY: usize = 32;
/// Rows per INSERT statement when seeding.
const CHUNK: usize = 500;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The process's resident memory, in KiB (`VmRSS` of /proc/<pid>/status).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The 1-minute load average (the machine's 2 cores are shared).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Raises the soft limit on open files to the hard one (the server inherits it).
fn raise_nofile() -> u64 {
    let out = Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .output()
        .expect("ulimit");
    let hard: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(1024);
    // util-linux's prlimit on our own process: no unsafe call here.
    let pid = std::process::id();
    let _ = Command::new("prlimit")
        .args([format!("--pid={pid}"), format!("--nofile={hard}:{hard}")])
        .status();
    hard
}

/// The server's own process: `child` itself, or (under a wrapper) its descendant running `bin`.
fn server_pid(child: u32, bin: &str, wrapped: bool) -> u32 {
    if !wrapped {
        return child;
    }
    let bin = std::fs::canonicalize(bin).expect("server binary");
    let runs_bin =
        |pid: u32| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == bin);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut parents = vec![child];
        let mut found = Vec::new();
        // Descendants, from every process's parent id.
        while let Some(p) = parents.pop() {
            for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<u32>().ok())
                else {
                    continue;
                };
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let ppid = stat
                    .rsplit(')')
                    .next()
                    .and_then(|rest| rest.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u32>().ok());
                if ppid == Some(p) {
                    parents.push(pid);
                    found.push(pid);
                }
            }
        }
        if let Some(pid) = found.into_iter().find(|&pid| runs_bin(pid)) {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "no {} under the wrapper",
            bin.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

struct Server {
    child: Child,
    pid: u32,
    port: u16,
}

impl Drop for Server {
    /// A run that fails leaves no server behind (it would also hold our stderr open).
    fn drop(&mut self) {
        if self.child.try_wait().is_ok_and(|s| s.is_none()) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn start_server(db: &TestDb, port: u16) -> Server {
    let bin = std::env::var("LIVE_RSS_SERVER_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_nsi-live").to_owned());
    let wrapper = std::env::var("LIVE_RSS_WRAPPER")
        .ok()
        .filter(|w| !w.trim().is_empty());
    let mut cmd = match &wrapper {
        Some(wrapper) => {
            let mut parts = wrapper.split_whitespace();
            let mut cmd = Command::new(parts.next().expect("wrapper"));
            cmd.args(parts).arg(&bin);
            cmd
        }
        None => Command::new(&bin),
    };
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NSI__SERVER__PORT", port.to_string())
        .env("NSI__CONTENT__DIR", helpers::content_dir())
        // The rate limit on joins does not apply (accounts are written directly); the sockets
        // must not be refused for their number.
        .env("NSI__WS__MAX_SOCKETS_PER_USER", "8")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("PORT")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    match (&db.url, &db.sqlite_dir) {
        (Some(url), _) => {
            cmd.env("NSI__DATABASE__URL", url);
        }
        (None, Some(dir)) => {
            cmd.env("NSI__DATABASE__SQLITE_PATH", dir.path().join("test.db"));
        }
        (None, None) => unreachable!(),
    }
    let child = cmd.spawn().expect("starting the server");
    let pid = server_pid(child.id(), &bin, wrapper.is_some());
    Server { child, pid, port }
}

async fn wait_ready(port: u16) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ready = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        assert!(Instant::now() < deadline, "the server did not become ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A session token for seeded user `login` (43 characters, like the server's).
fn token(login: &str) -> String {
    format!("{login:a>43}")
}

/// Teachers `load-t{c}` with a class each (join code `L{c:07}`), students `load-s{i}` enrolled in
/// class `i / class_size`, and a session for everyone; in chunks of multi-row INSERTs.
async fn seed(db: &TestDb, students: usize, class_size: usize) -> usize {
    let classes = students.div_ceil(class_size);
    let far = 4_000_000_000_000i64;
    let mut sql = Vec::new();
    let users = |role: &str, logins: Vec<String>| {
        let rows: Vec<String> = logins
            .iter()
            .map(|l| format!("('{role}', '{l}', '{l}', 0)"))
            .collect();
        format!(
            "INSERT INTO users (role, display_name, login, created_at) VALUES {};",
            rows.join(",")
        )
    };
    let sessions = |logins: &[String]| {
        let rows: Vec<String> = logins
            .iter()
            .map(|l| {
                let hash = nsi_live::auth::session::token_hash(&token(l));
                format!("('{hash}', (SELECT id FROM users WHERE login = '{l}'), 0, {far}, 0)")
            })
            .collect();
        format!(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, last_seen_at) \
             VALUES {};",
            rows.join(",")
        )
    };
    let teachers: Vec<String> = (0..classes).map(|c| format!("load-t{c}")).collect();
    for chunk in teachers.chunks(CHUNK) {
        sql.push(users("teacher", chunk.to_vec()));
        sql.push(sessions(chunk));
        let rows: Vec<String> = chunk
            .iter()
            .map(|l| {
                let c = l.trim_start_matches("load-t");
                format!(
                    "((SELECT id FROM users WHERE login = '{l}'), 'Classe {c}', '', 'L{c:0>7}', 0)"
                )
            })
            .collect();
        sql.push(format!(
            "INSERT INTO classrooms (teacher_id, name, school, join_code, created_at) VALUES {};",
            rows.join(",")
        ));
    }
    let logins: Vec<String> = (0..students).map(|i| format!("load-s{i}")).collect();
    for (n, chunk) in logins.chunks(CHUNK).enumerate() {
        sql.push(users("student", chunk.to_vec()));
        sql.push(sessions(chunk));
        let rows: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(k, l)| {
                let i = n * CHUNK + k;
                let c = i / class_size;
                format!(
                    "((SELECT id FROM classrooms WHERE join_code = 'L{c:0>7}'), \
                     (SELECT id FROM users WHERE login = '{l}'), 'eleve{i}', 'eleve{i}', 0, 'eleve{i}')"
                )
            })
            .collect();
        sql.push(format!(
            "INSERT INTO enrollments (classroom_id, student_id, pseudonym, pseudonym_key, \
             joined_at, pseudonym_skeleton) VALUES {};",
            rows.join(",")
        ));
    }
    db.execute(&format!("BEGIN; {} COMMIT;", sql.join("\n")))
        .await;
    classes
}

/// Opens a socket with a bearer token and reads its first `first` messages. The client reads with
/// small buffers: its own memory is not what is measured, but it shares the machine.
async fn open(port: u16, path: &str, login: &str, first: usize) -> WebSocketStream<TcpStream> {
    let mut request = format!("ws://127.0.0.1:{port}{path}")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {}", token(login))).expect("header"),
    );
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("tcp connect");
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut ws, _) = client_async_with_config(request, tcp, Some(config))
        .await
        .unwrap_or_else(|e| panic!("{path} for {login}: {e}"));
    let mut got = 0;
    while got < first {
        let message = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .unwrap_or_else(|_| panic!("{path} for {login}: no message in 30 s"));
        match message {
            Some(Ok(Message::Text(_))) => got += 1,
            Some(Ok(_)) => {}
            other => panic!("{path} for {login}: {other:?}"),
        }
    }
    ws
}

/// Keeps reading a socket (tungstenite answers the server's pings while it reads) until `stop`.
fn keep(
    mut ws: WebSocketStream<TcpStream>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                m = ws.next() => match m {
                    Some(Ok(_)) => {}
                    other => panic!("a socket ended while measured: {other:?}"),
                },
            }
        }
        let _ = ws.send(Message::Close(None)).await;
        // Until the server's close comes back (bounded).
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    })
}

async fn open_all(
    port: u16,
    targets: Vec<(String, String)>,
    first: usize,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    futures_util::stream::iter(targets)
        .map(|(path, login)| async move { open(port, &path, &login, first).await })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .map(|ws| keep(ws, stop.clone()))
        .collect()
        .await
}

async fn settle(pid: u32, secs: u64) -> u64 {
    tokio::time::sleep(Duration::from_secs(secs)).await;
    rss_kib(pid)
}

async fn measure(backend: Backend, students: usize, class_size: usize, idle: u64) {
    let db = TestDb::new(backend).await;
    let port = free_port();
    let mut server = start_server(&db, port);
    wait_ready(server.port).await;
    let started = Instant::now();
    let classes = seed(&db, students, class_size).await;
    eprintln!(
        "{backend:?}: seeded {students} students in {classes} classes in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let idle_rss = settle(server.pid, 3).await;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);

    let dashboards: Vec<_> = (0..classes)
        .map(|c| (format!("/ws/classrooms/{}", c + 1), format!("load-t{c}")))
        .collect();
    // A dashboard's first messages: welcome, snapshot.
    let mut tasks = open_all(server.port, dashboards, 2, &stop).await;
    let dash_rss = settle(server.pid, 3).await;

    let started = Instant::now();
    let sockets: Vec<_> = (0..students)
        .map(|i| ("/ws".to_owned(), format!("load-s{i}")))
        .collect();
    // A student's first messages: welcome, progress.
    tasks.extend(open_all(server.port, sockets, 2, &stop).await);
    let connect_secs = started.elapsed().as_secs_f64();
    let live_rss = settle(server.pid, idle).await;
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", server.port))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let open_line = metrics
        .lines()
        .filter(|l| l.starts_with("nsi_websockets_open") || l.starts_with("nsi_actors_alive"))
        .collect::<Vec<_>>()
        .join("; ");

    if std::env::var("LIVE_RSS_KILL_CONNECTED").is_ok_and(|v| v == "1") {
        // For a heap profile: what is allocated now is what the connected students hold
        // (heaptrack reports it as "leaked").
        let _ = Command::new("kill")
            .args(["-KILL", &server.pid.to_string()])
            .status();
        let _ = server.child.wait();
        println!(
            "{backend:?}: idle {idle_rss} KiB → dashboards {dash_rss} KiB → students {live_rss} \
             KiB; server killed while connected"
        );
        stop_tx.send_replace(true);
        for t in tasks {
            t.abort();
        }
        return;
    }
    stop_tx.send_replace(true);
    for t in tasks {
        t.await.expect("socket task");
    }
    let after_rss = settle(server.pid, 3).await;

    let per_student = (live_rss as f64 - dash_rss as f64) / students as f64;
    let per_student_all = (live_rss as f64 - idle_rss as f64) / students as f64;
    println!(
        "{backend:?}: {students} students ({classes} classes, {classes} dashboards), sockets opened \
         in {connect_secs:.1} s, idle {idle} s; load average {}",
        loadavg()
    );
    println!(
        "  VmRSS: idle {idle_rss} KiB → dashboards {dash_rss} KiB → students {live_rss} KiB → \
         all closed {after_rss} KiB"
    );
    println!(
        "  per connected student: {per_student:.1} KiB (dashboards included: {per_student_all:.1} KiB)"
    );
    println!("  /metrics: {open_line}");

    // SIGTERM: the server shuts down as in production (and a heaptrack wrapper writes its file).
    let _ = Command::new("kill")
        .args(["-TERM", &server.pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = server.child.kill();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = server.child.wait();
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (`cargo test --benches`) only checks it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let nofile = raise_nofile();
    let students: usize = env_or("LIVE_RSS_STUDENTS", 5000);
    let class_size: usize = env_or("LIVE_RSS_CLASS_SIZE", 30).max(1);
    let idle: u64 = env_or("LIVE_RSS_IDLE_SECS", 10);
    assert!(
        (students as u64) * 2 + 1000 < nofile,
        "{students} sockets need more open files than the limit {nofile}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let wanted = std::env::var("LIVE_RSS_BACKENDS").unwrap_or_else(|_| "sqlite".into());
    for (name, backend) in [("sqlite", Backend::Sqlite), ("postgres", Backend::Postgres)] {
        if wanted.split(',').any(|w| w.trim() == name) {
            rt.block_on(measure(backend, students, class_size, idle));
        }
    }
}
