//! A class-sized burst, many times over: 200 students each submit 5 attempts at the same moment
//! (1,000 concurrent `POST /api/v1/exercises/{id}/attempts`), through the real app over HTTP.
//! Criterion times one burst; afterwards the writer's counters (`/metrics`) give how many rows
//! each commit carried — the point of the group commit.
//!
//! Run: `cargo bench --bench submit_burst` (both backends; PostgreSQL from TEST_DATABASE_URL,
//! default the local server). `BENCH_BACKENDS=sqlite` runs only SQLite. Figures: docs/benchmarks.md.

#[allow(dead_code, unused_imports, unused_macros)]
#[path = "../tests/api/helpers.rs"]
mod helpers;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::future::join_all;
use helpers::{Backend, TestApp, TestDb};
use serde_json::json;

const STUDENTS: usize = 200;
const PER_STUDENT: usize = 5;

struct Bench {
    app: TestApp,
    http: reqwest::Client,
    tokens: Vec<String>,
    /// Python exercises: (id, test names).
    exercises: Vec<(i64, Vec<String>)>,
}

async fn setup(backend: Backend) -> Bench {
    let db = TestDb::new(backend).await;
    let mut settings = db.settings();
    // The burst repeats for minutes: lift the per-student and per-address limits.
    settings.submissions.rate_limit_per_hour = 1_000_000;
    settings.auth.join_max_per_ip = 1_000_000;
    settings.database.max_connections = 10;
    let app = TestApp::spawn_with(db, settings).await;
    let teacher = app.signup_teacher().await;
    let class = app.create_classroom(&teacher).await;
    let http = reqwest::Client::new();
    let mut tokens = Vec::new();
    for i in 0..STUDENTS {
        let body: serde_json::Value = http
            .post(app.url("/api/v1/auth/join"))
            .json(&json!({ "join_code": class.join_code, "pseudonym": format!("bench-{i}"), "bearer": true }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        tokens.push(body["token"].as_str().expect("token").to_owned());
    }
    let chapter = app
        .get_json("/api/v1/chapters/nsi-1-python-bases", 200)
        .await;
    // Python exercises: the browser's per-test results are the answer (the server grades the
    // other types itself; their cost is benches/sql_grading.rs's).
    let mut exercises = Vec::new();
    for e in chapter["exercises"].as_array().unwrap() {
        if e["type"] != "python" {
            continue;
        }
        let id = e["id"].as_i64().unwrap();
        let full = app.get_json(&format!("/api/v1/exercises/{id}"), 200).await;
        let names: Vec<String> = full["tests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        exercises.push((id, names));
    }
    Bench {
        app,
        http,
        tokens,
        exercises,
    }
}

async fn burst(b: &Bench) {
    let requests = b.tokens.iter().enumerate().flat_map(|(s, token)| {
        (0..PER_STUDENT).map(move |k| {
            let (exercise, names) = &b.exercises[(s + k) % b.exercises.len()];
            let tests: Vec<_> = names
                .iter()
                .map(|n| json!({ "name": n, "passed": k % 2 == 0 }))
                .collect();
            b.http
                .post(b.app.url(&format!("/api/v1/exercises/{exercise}/attempts")))
                .bearer_auth(token)
                .json(&json!({
                    "attempt_id": uuid::Uuid::new_v4().to_string(),
                    "answer": { "code": "def f(x):\n    return x\n", "tests": tests },
                }))
                .send()
        })
    });
    for response in join_all(requests).await {
        assert_eq!(response.unwrap().status().as_u16(), 200);
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(f64::NAN)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let wanted = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    for (name, backend) in [("sqlite", Backend::Sqlite), ("postgres", Backend::Postgres)] {
        if !wanted.split(',').any(|w| w.trim() == name) {
            continue;
        }
        let b = rt.block_on(setup(backend));
        let mut group = c.benchmark_group(format!("submit_burst_{name}"));
        group.sample_size(10);
        group.measurement_time(std::time::Duration::from_secs(20));
        group.bench_function(format!("{STUDENTS}x{PER_STUDENT}"), |bencher| {
            bencher.to_async(&rt).iter(|| burst(&b))
        });
        group.finish();
        let text = rt.block_on(async { b.app.get("/metrics").await.text().await.unwrap() });
        let items = metric(&text, "nsi_writer_items_written_total ");
        let rows = metric(&text, "nsi_writer_rows_written_total ");
        let commits = metric(&text, "nsi_writer_commits_total ");
        let flush = metric(&text, "nsi_writer_flush_seconds_sum ");
        println!(
            "{name}: {items} attempts in {commits} commits: {:.1} attempts and {:.1} rows per commit, \
             mean flush {:.2} ms, largest batch {}",
            items / commits,
            rows / commits,
            1000.0 * flush / commits,
            metric(&text, "nsi_writer_largest_batch "),
        );
        for line in text
            .lines()
            .filter(|l| l.starts_with("nsi_writer_batch_size_bucket"))
        {
            println!("  {line}");
        }
        rt.block_on(async { b.app.stop().await });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
