//! The catalogue tells right code from wrong: every Python and Parsons exercise's tests pass on
//! its reference solution and fail on its starter code (or on the shuffled lines as served), and
//! every SQL exercise's reference query runs on its data and differs from the starter query.
//! Tests run the way the browser runs them: the code once, then each test on its own.

use std::process::Stdio;
use std::time::Duration;

use nsi_live::content::load_dir;
use nsi_live::domain::catalogue::{ExerciseKind, TestCase, parsons_lines, parsons_shuffle};
use nsi_live::store::sql_sandbox;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::helpers::content_dir;

/// Reads {"code", "tests": [{name, code}]} on stdin; prints [{"name", "ok", "error"}].
const HARNESS: &str = r#"
import json, sys, traceback
job = json.load(sys.stdin)
ns = {"__name__": "__main__"}
results = []
try:
    exec(compile(job["code"], "<eleve>", "exec"), ns)
    loaded = None
except BaseException as e:
    loaded = "%s: %s" % (type(e).__name__, e)
for t in job["tests"]:
    if loaded is not None:
        results.append({"name": t["name"], "ok": False, "error": "code: " + loaded})
        continue
    try:
        exec(compile(t["code"], "<test>", "exec"), dict(ns))
        results.append({"name": t["name"], "ok": True, "error": None})
    except BaseException as e:
        results.append({"name": t["name"], "ok": False, "error": "%s: %s" % (type(e).__name__, e)})
print(json.dumps(results))
"#;

async fn run_tests(code: &str, tests: &[TestCase]) -> Vec<(String, bool, String)> {
    let mut child = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(HARNESS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("python3 is required by the content test and could not be started: {e}")
        });
    let job = json!({ "code": code, "tests": tests });
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(job.to_string().as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("python3 took more than 20 s")
        .unwrap();
    assert!(
        out.status.success(),
        "harness failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    results
        .into_iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["ok"].as_bool().unwrap(),
                r["error"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_exercise_tells_right_code_from_wrong() {
    let courses = load_dir(&content_dir()).expect("content loads");
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    let mut problems = Vec::new();
    for course in &courses {
        for chapter in &course.chapters {
            for ex in &chapter.exercises {
                let f = &ex.file;
                *counts.entry(f.kind.as_str()).or_default() += 1;
                let solution = f.solution.as_deref().unwrap_or_default();
                match f.kind {
                    ExerciseKind::Python | ExerciseKind::Parsons => {
                        for (name, ok, error) in run_tests(solution, &f.tests).await {
                            if !ok {
                                problems.push(format!(
                                    "{}: the solution fails test {name:?}: {error}",
                                    ex.slug
                                ));
                            }
                        }
                        let (wrong, what) = if f.kind == ExerciseKind::Python {
                            (f.starter_code.clone().unwrap_or_default(), "starter code")
                        } else {
                            let shuffled = parsons_shuffle(&ex.slug, &parsons_lines(solution));
                            (shuffled.join("\n"), "shuffled lines as served")
                        };
                        let results = run_tests(&wrong, &f.tests).await;
                        if results.iter().all(|(_, ok, _)| *ok) {
                            problems.push(format!("{}: the {what} passes every test", ex.slug));
                        }
                    }
                    ExerciseKind::Sql => {
                        let schema = f.schema.as_deref().unwrap();
                        let data = f.data.as_deref().unwrap();
                        match sql_sandbox::evaluate(schema, data, solution).await {
                            Ok(expected) => {
                                if expected.rows.is_empty() {
                                    problems.push(format!(
                                        "{}: the reference query returns no row",
                                        ex.slug
                                    ));
                                }
                                let starter = f.starter_code.as_deref().unwrap_or("").trim();
                                if !starter.is_empty()
                                    && let Ok(got) =
                                        sql_sandbox::evaluate(schema, data, starter).await
                                    && got == expected
                                {
                                    problems.push(format!(
                                        "{}: the starter query already gives the expected result",
                                        ex.slug
                                    ));
                                }
                            }
                            Err(e) => problems.push(format!("{}: {e:#}", ex.slug)),
                        }
                    }
                    ExerciseKind::Mcq => {
                        assert!(f.choices.iter().any(|c| c.correct), "{}", ex.slug);
                    }
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    let total: usize = counts.values().sum();
    assert!(total >= 40, "{counts:?}");
    for kind in ["python", "sql", "mcq", "parsons"] {
        assert!(
            counts.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} exercise: {counts:?}"
        );
    }
}

#[tokio::test]
async fn the_harness_itself_tells_pass_from_fail() {
    let tests = vec![
        TestCase {
            name: "un".into(),
            code: "assert double(2) == 4, 'double(2)'".into(),
        },
        TestCase {
            name: "deux".into(),
            code: "assert double(0) == 0".into(),
        },
    ];
    let ok = run_tests("def double(x):\n    return 2 * x", &tests).await;
    assert!(ok.iter().all(|(_, ok, _)| *ok), "{ok:?}");
    let bad = run_tests("def double(x):\n    return x + 2", &tests).await;
    assert_eq!(
        bad.iter().map(|(_, ok, _)| *ok).collect::<Vec<_>>(),
        vec![true, false]
    );
    let broken = run_tests("def double(x) return", &tests).await;
    assert!(
        broken
            .iter()
            .all(|(_, ok, e)| !*ok && e.contains("SyntaxError")),
        "{broken:?}"
    );
}
