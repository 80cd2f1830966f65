//! The catalogue tells right code from wrong, judged by the server's own grader: every Python and
//! Parsons exercise's tests pass on its reference solution and fail on its starter code (or on
//! the shuffled lines as served), and the Python results are scored `passed` / not by the
//! server's rule; every Parsons solution order is graded `passed` and the served order not; every
//! MCQ's correct choices are graded `passed` and each single wrong choice not; every SQL
//! exercise's reference query is graded `passed` in the guarded sandbox and its starter query not.
//! Python tests run the way the browser runs them: the code once, then each test on its own.

use std::process::Stdio;
use std::time::Duration;

use nsi_live::content::load_dir;
use nsi_live::domain::catalogue::{
    ExerciseKind, TestCase, choice_id, parsons_items, parsons_lines, parsons_shuffle,
};
use nsi_live::grading::python::{PythonAnswer, TestResult as BrowserResult};
use nsi_live::grading::sql::{self, SqlLimits};
use nsi_live::grading::{mcq, parsons, python};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::helpers::content_dir;

/// Reads {"codes": [...], "tests": [{name, code}]} on stdin; runs each code in a fresh namespace
/// then each test on its own, and prints one list of [{"name", "ok", "error"}] per code (what the
/// code itself prints is kept out of the way).
const HARNESS: &str = r#"
import io, json, sys
job = json.load(sys.stdin)
out = sys.stdout
def run(code):
    sys.stdout = io.StringIO()
    ns = {"__name__": "__main__"}
    results = []
    try:
        exec(compile(code, "<eleve>", "exec"), ns)
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
    sys.setprofile(None)
    sys.settrace(None)
    return results
out.write(json.dumps([run(code) for code in job["codes"]]))
"#;

/// One test run: (test name, passed, error message).
pub(crate) type TestResult = (String, bool, String);

pub(crate) async fn run_tests(code: &str, tests: &[TestCase]) -> Vec<TestResult> {
    run_tests_on_each(&[code], tests).await.remove(0)
}

/// Runs the tests on each code in turn, in one python3 process (each code in its own namespace).
pub(crate) async fn run_tests_on_each(codes: &[&str], tests: &[TestCase]) -> Vec<Vec<TestResult>> {
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
    let job = json!({ "codes": codes, "tests": tests });
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(job.to_string().as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("python3 took more than 60 s")
        .unwrap();
    assert!(
        out.status.success(),
        "harness failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Vec<Value>> = serde_json::from_slice(&out.stdout).unwrap();
    results
        .into_iter()
        .map(|one| {
            one.into_iter()
                .map(|r| {
                    (
                        r["name"].as_str().unwrap().to_owned(),
                        r["ok"].as_bool().unwrap(),
                        r["error"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
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
                        let results = run_tests(solution, &f.tests).await;
                        for (name, ok, error) in &results {
                            if !ok {
                                problems.push(format!(
                                    "{}: the solution fails test {name:?}: {error}",
                                    ex.slug
                                ));
                            }
                        }
                        if f.kind == ExerciseKind::Python
                            && !python_verdict(solution, &f.tests, &results)
                        {
                            problems.push(format!(
                                "{}: the server does not grade the solution's results passed",
                                ex.slug
                            ));
                        }
                        if f.kind == ExerciseKind::Parsons {
                            problems.extend(check_parsons(&ex.slug, solution));
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
                        if f.kind == ExerciseKind::Python
                            && python_verdict(&wrong, &f.tests, &results)
                        {
                            problems.push(format!(
                                "{}: the server grades the {what}'s results passed",
                                ex.slug
                            ));
                        }
                    }
                    ExerciseKind::Sql => problems.extend(check_sql(&ex.slug, f)),
                    ExerciseKind::Mcq => problems.extend(check_mcq(&ex.slug, &f.choices)),
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

/// The server's verdict on the per-test results the browser would send.
fn python_verdict(code: &str, tests: &[TestCase], results: &[(String, bool, String)]) -> bool {
    let mut answer = PythonAnswer {
        code: code.to_owned(),
        tests: results
            .iter()
            .map(|(name, ok, error)| BrowserResult {
                name: name.clone(),
                passed: *ok,
                output: Some(error.clone()),
            })
            .collect(),
    };
    python::grade(tests, &mut answer).is_ok_and(|v| v.passed)
}

/// The solution's order and indentation pass; the order as served does not.
fn check_parsons(slug: &str, solution: &str) -> Vec<String> {
    let lines = parsons_items(slug, solution);
    let indented = lines.iter().any(|l| l.indent > 0);
    let placed = |order: &[usize]| parsons::ParsonsAnswer {
        lines: order
            .iter()
            .map(|i| parsons::PlacedLine {
                id: lines[*i].id.clone(),
                indent: lines[*i].indent,
            })
            .collect(),
    };
    let mut problems = Vec::new();
    let right: Vec<usize> = (0..lines.len()).collect();
    if !parsons::grade(&lines, indented, &placed(&right)).is_ok_and(|v| v.passed) {
        problems.push(format!(
            "{slug}: the server does not grade the solution's order passed"
        ));
    }
    let order: Vec<String> = right.iter().map(|i| i.to_string()).collect();
    let shown: Vec<usize> = parsons_shuffle(slug, &order)
        .iter()
        .map(|i| i.parse().unwrap())
        .collect();
    if parsons::grade(&lines, indented, &placed(&shown)).is_ok_and(|v| v.passed) {
        problems.push(format!(
            "{slug}: the server grades the order as served passed"
        ));
    }
    problems
}

/// The correct choices pass; each wrong choice alone does not.
fn check_mcq(slug: &str, choices: &[nsi_live::domain::catalogue::Choice]) -> Vec<String> {
    let ids = |pick: &dyn Fn(usize) -> bool| mcq::McqAnswer {
        choices: (0..choices.len())
            .filter(|i| pick(*i))
            .map(choice_id)
            .collect(),
    };
    let mut problems = Vec::new();
    if !mcq::grade(choices, &ids(&|i| choices[i].correct)).is_ok_and(|v| v.passed) {
        problems.push(format!("{slug}: the correct choices are not graded passed"));
    }
    for wrong in (0..choices.len()).filter(|i| !choices[*i].correct) {
        if mcq::grade(choices, &ids(&|i| i == wrong)).is_ok_and(|v| v.passed) {
            problems.push(format!("{slug}: wrong choice {wrong} is graded passed"));
        }
    }
    problems
}

/// The reference query is graded `passed` by the server's guarded grader; the starter is not.
fn check_sql(slug: &str, f: &nsi_live::domain::catalogue::ExerciseFile) -> Vec<String> {
    let (schema, data) = (f.schema.as_deref().unwrap(), f.data.as_deref().unwrap());
    let solution = f.solution.as_deref().unwrap_or_default();
    let check = f.check_query.as_deref();
    let order = f.order_matters.unwrap_or(false);
    let limits = SqlLimits::default();
    let expected = match sql::expected_result(schema, data, solution, check, limits) {
        Ok(t) => t,
        Err(e) => return vec![format!("{slug}: the reference query: {e}")],
    };
    let mut problems = Vec::new();
    if expected.rows.is_empty() {
        problems.push(format!("{slug}: the reference query returns no row"));
    }
    match sql::grade(schema, data, check, order, &expected, solution, limits) {
        Ok(v) if v.passed => {}
        other => problems.push(format!(
            "{slug}: the reference query is not graded passed: {other:?}"
        )),
    }
    let starter = f.starter_code.as_deref().unwrap_or("").trim();
    if !starter.is_empty()
        && sql::grade(schema, data, check, order, &expected, starter, limits)
            .is_ok_and(|v| v.passed)
    {
        problems.push(format!("{slug}: the starter query is graded passed"));
    }
    problems
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

/// The catalogue reaches the aim of issue 15: at least 150 exercises in at least 18 chapters, and
/// every chapter opens with a lesson (at least one block of text).
#[test]
fn the_catalogue_is_large_enough_for_a_school_year() {
    let courses = load_dir(&content_dir()).expect("content loads");
    let chapters: Vec<_> = courses.iter().flat_map(|c| &c.chapters).collect();
    let exercises: usize = chapters.iter().map(|ch| ch.exercises.len()).sum();
    assert!(
        chapters.len() >= 18 && exercises >= 150,
        "{exercises} exercises in {} chapters: at least 150 in 18 expected",
        chapters.len()
    );
    let without_lesson: Vec<&str> = chapters
        .iter()
        .filter(|ch| {
            !ch.file
                .blocks
                .iter()
                .any(|b| b.kind == nsi_live::domain::catalogue::BlockKind::Text)
        })
        .map(|ch| ch.slug.as_str())
        .collect();
    assert!(
        without_lesson.is_empty(),
        "chapters without a lesson: {without_lesson:?}"
    );
}
