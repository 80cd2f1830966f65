//! Every Python and SQL exercise proves it tells right from wrong with answers written for it:
//! each of its `wrong_answers` (typical student mistakes) must be refused by its tests (Python)
//! or give a result other than the expected table (SQL), and each of its `alternatives` (other
//! correct ways) must be accepted. A wrong answer must be a real attempt: Python code that loads,
//! a SQL query that runs. The test prints, per chapter, how many wrong answers each exercise
//! carries (`cargo test --test api content_answers -- --nocapture`).

use std::collections::HashMap;

use nsi_live::content::load_dir;
use nsi_live::domain::catalogue::{ExerciseFile, ExerciseKind, ResultTable};
use nsi_live::grading::sql::{self, SqlLimits};
use serde_json::Value;

use crate::both_backends;
use crate::content::{TestResult, run_tests_on_each};
use crate::helpers::{TestApp, content_dir};

/// Each Python and SQL exercise carries at least this many known wrong answers.
const MIN_WRONG_ANSWERS: usize = 3;

/// What the tests say of one answer to a Python exercise: `Err` if its code does not even load,
/// else whether every test passed (and the first failure's message).
fn python_verdict(results: &[TestResult]) -> Result<(bool, String), String> {
    if let Some((_, _, e)) = results.iter().find(|(_, _, e)| e.starts_with("code: ")) {
        return Err(e.clone());
    }
    let failure = results
        .iter()
        .find(|(_, ok, _)| !*ok)
        .map(|(name, _, e)| format!("{name}: {e}"));
    Ok((failure.is_none(), failure.unwrap_or_default()))
}

/// What the server's own grader says of one answer to a SQL exercise: `Err` if it is refused or
/// does not run, else whether it is graded passed.
fn sql_verdict(f: &ExerciseFile, expected: &ResultTable, query: &str) -> Result<bool, String> {
    let schema = f.schema.as_deref().unwrap_or_default();
    let data = f.data.as_deref().unwrap_or_default();
    let verdict = sql::grade(
        schema,
        data,
        f.check_query.as_deref(),
        f.order_matters.unwrap_or(false),
        expected,
        query,
        SqlLimits::default(),
    )
    .map_err(|e| format!("{e:?}"))?;
    match verdict.feedback.as_deref() {
        Some(msg) if msg.starts_with("Erreur SQL") => Err(msg.to_owned()),
        _ => Ok(verdict.passed),
    }
}

#[tokio::test]
async fn every_wrong_answer_fails_and_every_alternative_passes() {
    let courses = load_dir(&content_dir()).expect("content loads");
    let mut problems = Vec::new();
    let mut report = Vec::new();
    let mut checked = 0usize;
    for course in &courses {
        for chapter in &course.chapters {
            let mut line = Vec::new();
            for ex in &chapter.exercises {
                let f = &ex.file;
                if !matches!(f.kind, ExerciseKind::Python | ExerciseKind::Sql) {
                    continue;
                }
                line.push(format!("{} {}", ex.slug, f.wrong_answers.len()));
                if f.wrong_answers.len() < MIN_WRONG_ANSWERS {
                    problems.push(format!(
                        "{}: {} wrong answers, at least {MIN_WRONG_ANSWERS} expected",
                        ex.slug,
                        f.wrong_answers.len()
                    ));
                }
                let solution = f.solution.as_deref().unwrap_or_default();
                match f.kind {
                    ExerciseKind::Python => {
                        let codes: Vec<&str> = f
                            .wrong_answers
                            .iter()
                            .chain(&f.alternatives)
                            .map(|a| a.code.as_str())
                            .collect();
                        let results = run_tests_on_each(&codes, &f.tests).await;
                        let (wrong, alternatives) = results.split_at(f.wrong_answers.len());
                        for (w, results) in f.wrong_answers.iter().zip(wrong) {
                            checked += 1;
                            match python_verdict(results) {
                                Err(e) => problems.push(format!(
                                    "{}: wrong answer {:?} does not even load ({e}): write a real attempt",
                                    ex.slug, w.why
                                )),
                                Ok((true, _)) => problems.push(format!(
                                    "{}: wrong answer {:?} passes every test",
                                    ex.slug, w.why
                                )),
                                Ok((false, _)) => {}
                            }
                        }
                        for (a, results) in f.alternatives.iter().zip(alternatives) {
                            checked += 1;
                            match python_verdict(results) {
                                Ok((true, _)) => {}
                                Ok((false, e)) | Err(e) => problems.push(format!(
                                    "{}: alternative {:?} is refused: {e}",
                                    ex.slug, a.why
                                )),
                            }
                        }
                    }
                    ExerciseKind::Sql => {
                        let schema = f.schema.as_deref().unwrap_or_default();
                        let data = f.data.as_deref().unwrap_or_default();
                        let expected = match sql::expected_result(
                            schema,
                            data,
                            solution,
                            f.check_query.as_deref(),
                            SqlLimits::default(),
                        ) {
                            Ok(t) => t,
                            Err(e) => {
                                problems.push(format!("{}: the solution fails: {e:?}", ex.slug));
                                continue;
                            }
                        };
                        for w in &f.wrong_answers {
                            checked += 1;
                            match sql_verdict(f, &expected, &w.code) {
                                Err(e) => problems.push(format!(
                                    "{}: wrong answer {:?} does not run ({e}): write a real attempt",
                                    ex.slug, w.why
                                )),
                                Ok(true) => problems.push(format!(
                                    "{}: wrong answer {:?} gives the expected result",
                                    ex.slug, w.why
                                )),
                                Ok(false) => {}
                            }
                        }
                        for a in &f.alternatives {
                            checked += 1;
                            match sql_verdict(f, &expected, &a.code) {
                                Ok(true) => {}
                                Ok(false) => problems.push(format!(
                                    "{}: alternative {:?} gives another result",
                                    ex.slug, a.why
                                )),
                                Err(e) => problems.push(format!(
                                    "{}: alternative {:?} does not run: {e}",
                                    ex.slug, a.why
                                )),
                            }
                        }
                    }
                    ExerciseKind::Mcq | ExerciseKind::Parsons => {}
                }
            }
            if !line.is_empty() {
                report.push(format!("{}: {}", chapter.slug, line.join(", ")));
            }
        }
    }
    println!(
        "wrong answers per exercise, by chapter:\n{}",
        report.join("\n")
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n{}\n\nwrong answers per exercise, by chapter:\n{}",
        problems.len(),
        problems.join("\n"),
        report.join("\n")
    );
    assert!(checked > 0, "no wrong answer or alternative was checked");
}

/// Every string of a JSON value, one per line.
fn strings(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s}\n"),
        Value::Array(items) => items.iter().map(strings).collect(),
        Value::Object(map) => map.values().map(strings).collect(),
        _ => String::new(),
    }
}

// Wrong answers and alternatives stay on the server: no exercise's JSON carries them.
both_backends!(known_answers_are_never_served, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let files: HashMap<String, ExerciseFile> = load_dir(&content_dir())
        .unwrap()
        .into_iter()
        .flat_map(|c| c.chapters)
        .flat_map(|ch| ch.exercises)
        .map(|e| (e.slug, e.file))
        .collect();
    let mut seen = 0;
    for listed in app.listed_exercises().await {
        let e: Value = app
            .get_json(&format!("/api/v1/exercises/{}", listed.id), 200)
            .await;
        let text = e.to_string();
        assert!(
            !text.contains("wrong_answers") && !text.contains("alternatives"),
            "{text}"
        );
        let served = strings(&e);
        let f = &files[&listed.slug];
        let starter = f.starter_code.as_deref().unwrap_or_default().trim();
        for a in f.wrong_answers.iter().chain(&f.alternatives) {
            let code = a.code.trim();
            if code == starter {
                continue;
            }
            seen += 1;
            assert!(
                !served.contains(code),
                "{}: a known answer ({:?}) is served",
                listed.slug,
                a.why
            );
        }
    }
    assert!(seen > 0, "no known answer in the catalogue");
});

/// The non-blank lines of a text, trimmed and with runs of spaces collapsed.
fn lines_of(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

/// No lesson block gives away an exercise of its chapter: at most 3/4 of a reference solution's
/// lines (solutions of three lines or more; Parsons aside, whose lines are shown anyway) may
/// appear in any one block.
#[test]
fn no_lesson_block_holds_an_exercise_solution() {
    let courses = load_dir(&content_dir()).expect("content loads");
    let mut problems = Vec::new();
    for chapter in courses.iter().flat_map(|c| &c.chapters) {
        for ex in &chapter.exercises {
            if ex.file.kind == ExerciseKind::Parsons {
                continue;
            }
            let solution = lines_of(ex.file.solution.as_deref().unwrap_or_default());
            if solution.len() < 3 {
                continue;
            }
            for (i, block) in chapter.file.blocks.iter().enumerate() {
                let block_lines = lines_of(&block.body);
                let shown = solution.iter().filter(|l| block_lines.contains(l)).count();
                if shown * 4 > solution.len() * 3 {
                    problems.push(format!(
                        "{}: lesson block {i} shows {shown} of the {} lines of {}'s solution",
                        chapter.slug,
                        solution.len(),
                        ex.slug
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Where Markdown prose (outside code spans and fenced code) puts a plain space before `?`, `!`,
/// `;` or `:`, which French typography wants non-breaking (U+202F or U+00A0).
fn breaking_spaces(markdown: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut in_fence = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        for (i, prose) in line.split('`').enumerate() {
            if i % 2 == 1 {
                continue;
            }
            for mark in [" ?", " !", " ;", " :"] {
                if prose.contains(mark) {
                    found.push(line.trim().to_owned());
                }
            }
        }
    }
    found
}

#[test]
fn rendered_french_text_has_non_breaking_spaces_before_double_punctuation() {
    let courses = load_dir(&content_dir()).expect("content loads");
    let mut problems = Vec::new();
    let mut check = |place: String, text: &str| {
        for line in breaking_spaces(text) {
            problems.push(format!("{place}: {line}"));
        }
    };
    for course in &courses {
        check(course.slug.clone(), &course.file.title);
        check(course.slug.clone(), &course.file.description);
        for chapter in &course.chapters {
            check(chapter.slug.clone(), &chapter.file.title);
            check(chapter.slug.clone(), &chapter.file.description);
            for block in &chapter.file.blocks {
                if block.kind != nsi_live::domain::catalogue::BlockKind::Code {
                    check(chapter.slug.clone(), &block.body);
                }
            }
            for ex in &chapter.exercises {
                let f = &ex.file;
                check(ex.slug.clone(), &f.title);
                check(ex.slug.clone(), &f.statement);
                for h in &f.hints {
                    check(ex.slug.clone(), &h.text);
                }
                for t in &f.tests {
                    check(ex.slug.clone(), &t.name);
                }
                for c in &f.choices {
                    check(ex.slug.clone(), &c.text);
                }
                check(
                    ex.slug.clone(),
                    f.explanation.as_deref().unwrap_or_default(),
                );
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} lines want a non-breaking space (U+202F before ? ! ;, U+00A0 before :):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// XP follows difficulty within each type, and an MCQ or a Parsons puzzle is never worth more
/// than writing code (Python or SQL) at the same difficulty.
#[test]
fn xp_follows_difficulty_and_type() {
    let courses = load_dir(&content_dir()).expect("content loads");
    let mut by = std::collections::BTreeMap::<(bool, i32), Vec<(i32, String)>>::new();
    for ex in courses
        .iter()
        .flat_map(|c| &c.chapters)
        .flat_map(|ch| &ch.exercises)
    {
        let code = matches!(ex.file.kind, ExerciseKind::Python | ExerciseKind::Sql);
        by.entry((code, ex.file.difficulty))
            .or_default()
            .push((ex.file.xp_reward, ex.slug.clone()));
    }
    let mut problems = Vec::new();
    for ((code, difficulty), list) in &by {
        let (lo, _) = list.iter().min().unwrap();
        let (hi, _) = list.iter().max().unwrap();
        if *code {
            if let Some(easier) = by.get(&(true, difficulty - 1)) {
                let (easier_hi, slug) = easier.iter().max().unwrap();
                if easier_hi >= lo {
                    problems.push(format!("code: {slug} (difficulty {}) earns {easier_hi} XP, as much as difficulty {difficulty}", difficulty - 1));
                }
            }
        } else if let Some(code_list) = by.get(&(true, *difficulty)) {
            let (code_lo, _) = code_list.iter().min().unwrap();
            if hi > code_lo {
                let slug = &list.iter().max().unwrap().1;
                problems.push(format!("{slug} (MCQ/Parsons, difficulty {difficulty}) earns {hi} XP, more than code at that difficulty ({code_lo})"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
