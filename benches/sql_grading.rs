//! SQL grading, per query of the catalogue: the reference query of every SQL exercise graded the
//! way a submission is (a fresh guarded in-memory database with the exercise's schema and data,
//! the query, the comparison with the expected table), directly and through the grader's thread
//! pool. Prints the median and P99 of 1,000 gradings per exercise, then runs Criterion on each.
//!
//! Run: `cargo bench --bench sql_grading`. Figures: docs/benchmarks.md.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use nsi_live::domain::catalogue::{ExerciseFile, ResultTable};
use nsi_live::grading::sql::pool::GradingPool;
use nsi_live::grading::sql::{self, SqlLimits};

struct Case {
    slug: String,
    file: ExerciseFile,
    expected: ResultTable,
}

fn cases() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("content");
    let limits = SqlLimits::default();
    nsi_live::content::load_dir(&dir)
        .expect("content loads")
        .into_iter()
        .flat_map(|c| c.chapters)
        .flat_map(|ch| ch.exercises)
        .filter(|e| e.file.schema.is_some())
        .map(|e| {
            let f = &e.file;
            let expected = sql::expected_result(
                f.schema.as_deref().unwrap(),
                f.data.as_deref().unwrap(),
                f.solution.as_deref().unwrap(),
                f.check_query.as_deref(),
                limits,
            )
            .expect("reference query runs");
            Case {
                slug: e.slug,
                file: e.file,
                expected,
            }
        })
        .collect()
}

fn grade(case: &Case) -> bool {
    let f = &case.file;
    sql::grade(
        f.schema.as_deref().unwrap(),
        f.data.as_deref().unwrap(),
        f.check_query.as_deref(),
        f.order_matters.unwrap_or(false),
        &case.expected,
        f.solution.as_deref().unwrap(),
        SqlLimits::default(),
    )
    .is_ok_and(|v| v.passed)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(cases: &[Case]) {
    const RUNS: usize = 1000;
    println!("{:<40} {:>10} {:>10}", "exercise (direct)", "median", "p99");
    let mut all = Vec::new();
    for case in cases {
        let mut times: Vec<Duration> = (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                assert!(grade(case), "{} is not graded passed", case.slug);
                t.elapsed()
            })
            .collect();
        times.sort();
        all.extend_from_slice(&times);
        println!(
            "{:<40} {:>8.0}µs {:>8.0}µs",
            case.slug,
            percentile(&times, 0.5).as_secs_f64() * 1e6,
            percentile(&times, 0.99).as_secs_f64() * 1e6
        );
    }
    all.sort();
    println!(
        "{:<40} {:>8.0}µs {:>8.0}µs",
        "all queries",
        percentile(&all, 0.5).as_secs_f64() * 1e6,
        percentile(&all, 0.99).as_secs_f64() * 1e6
    );
    // Through the pool, from async callers: what a submission waits for.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let pool = GradingPool::start(2, 64).unwrap();
    let shared: std::sync::Arc<Vec<Case>> = std::sync::Arc::new(cases_again());
    let mut times = Vec::new();
    rt.block_on(async {
        for i in 0..RUNS {
            let cases = shared.clone();
            let t = Instant::now();
            let ok = pool
                .run(
                    move || grade(&cases[i % cases.len()]),
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
            times.push(t.elapsed());
            assert!(ok);
        }
    });
    times.sort();
    println!(
        "{:<40} {:>8.0}µs {:>8.0}µs",
        "all queries, through the pool",
        percentile(&times, 0.5).as_secs_f64() * 1e6,
        percentile(&times, 0.99).as_secs_f64() * 1e6
    );
}

fn cases_again() -> Vec<Case> {
    cases()
}

fn bench(c: &mut Criterion) {
    let cases = cases();
    report(&cases);
    let mut group = c.benchmark_group("sql_grading");
    for case in &cases {
        group.bench_function(&case.slug, |b| b.iter(|| grade(case)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
