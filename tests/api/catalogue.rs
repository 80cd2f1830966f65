use serde_json::Value;

use crate::both_backends;
use crate::helpers::{TestApp, assert_error};

/// Every exercise id listed by the chapters.
async fn all_exercise_ids(app: &TestApp) -> Vec<i64> {
    let courses = app.get_json("/api/v1/courses", 200).await;
    let mut ids = Vec::new();
    for course in courses.as_array().unwrap() {
        for chapter in course["chapters"].as_array().unwrap() {
            let slug = chapter["slug"].as_str().unwrap();
            let ch = app.get_json(&format!("/api/v1/chapters/{slug}"), 200).await;
            let exercises = ch["exercises"].as_array().unwrap();
            assert_eq!(
                exercises.len() as u64,
                chapter["exercise_count"].as_u64().unwrap(),
                "{slug}"
            );
            ids.extend(exercises.iter().map(|e| e["id"].as_i64().unwrap()));
        }
    }
    ids
}

both_backends!(
    courses_chapters_and_exercises_are_served,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        let courses = app.get_json("/api/v1/courses", 200).await;
        let courses = courses.as_array().unwrap();
        assert!(courses.len() >= 3, "{} courses", courses.len());
        let levels: Vec<&str> = courses
            .iter()
            .map(|c| c["level"].as_str().unwrap())
            .collect();
        for level in ["snt", "premiere", "terminale"] {
            assert!(levels.contains(&level), "no {level} course: {levels:?}");
        }
        for c in courses {
            for key in ["slug", "title", "description"] {
                assert!(
                    c[key].as_str().is_some_and(|s| !s.is_empty()),
                    "{key} in {c}"
                );
            }
        }
        let chapter = app
            .get_json("/api/v1/chapters/nsi-1-python-bases", 200)
            .await;
        assert_eq!(chapter["slug"], "nsi-1-python-bases");
        assert!(chapter["course"]["slug"].is_string());
        assert!(!chapter["blocks"].as_array().unwrap().is_empty());
        let exercises = chapter["exercises"].as_array().unwrap();
        assert!(!exercises.is_empty());
        for e in exercises {
            assert!(e["id"].as_i64().unwrap() > 0);
            assert!(["python", "sql", "mcq", "parsons"].contains(&e["type"].as_str().unwrap()));
            assert!(e["xp_reward"].as_i64().is_some());
        }
        let ids = all_exercise_ids(&app).await;
        assert!(ids.len() >= 40, "{} exercises", ids.len());
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "exercise ids repeat");
    }
);

both_backends!(
    exercises_carry_what_the_browser_needs_and_no_solution,
    |backend| async move {
        let app = TestApp::spawn(backend).await;
        // The files themselves: no reference solution or hint text may appear in an answer,
        // whatever key it would hide under.
        let specs = nsi_live::content::load_dir(&crate::helpers::content_dir()).unwrap();
        let files: std::collections::HashMap<String, nsi_live::domain::catalogue::ExerciseFile> =
            specs
                .into_iter()
                .flat_map(|c| c.chapters)
                .flat_map(|ch| ch.exercises)
                .map(|e| (e.slug, e.file))
                .collect();
        let mut seen_types = std::collections::HashSet::new();
        for id in all_exercise_ids(&app).await {
            let e: Value = app.get_json(&format!("/api/v1/exercises/{id}"), 200).await;
            assert_eq!(e["id"], id);
            assert!(e["statement"].as_str().is_some_and(|s| !s.is_empty()));
            let file = &files[e["slug"].as_str().unwrap()];
            let text = e.to_string();
            let served = collect_strings(&e);
            if file.kind != nsi_live::domain::catalogue::ExerciseKind::Parsons {
                // (A Parsons exercise shows its solution's lines, shuffled: that is the game.)
                let solution = file.solution.as_deref().unwrap_or_default().trim();
                assert!(
                    solution.is_empty() || !served.contains(solution),
                    "the reference solution of {} is served",
                    e["slug"]
                );
            }
            for hint in &file.hints {
                assert!(
                    !served.contains(hint.text.trim()),
                    "a hint text of {} is served before its reveal",
                    e["slug"]
                );
            }
            assert!(!text.contains("\"solution\""), "solution leaked: {text}");
            assert!(!text.contains("check_query"), "check query leaked: {text}");
            assert!(!text.contains("\"correct\""), "MCQ answer leaked: {text}");
            assert!(
                !text.contains("\"explanation\""),
                "MCQ explanation leaked: {text}"
            );
            for hint in e["hints"].as_array().unwrap() {
                assert!(
                    hint["id"].as_i64().is_some() && hint.get("text").is_none(),
                    "{hint}"
                );
            }
            let kind = e["type"].as_str().unwrap().to_owned();
            match kind.as_str() {
                "python" => {
                    assert!(e["starter_code"].is_string());
                    assert!(!e["tests"].as_array().unwrap().is_empty());
                }
                "parsons" => {
                    let lines = e["lines"].as_array().unwrap();
                    assert!(lines.len() >= 3);
                    assert!(!e["tests"].as_array().unwrap().is_empty());
                    assert!(e["indent"].is_boolean());
                    // Ids and text only: no indentation, no order, ids that are not positions.
                    for l in lines {
                        let text = l["text"].as_str().unwrap();
                        assert_eq!(text, text.trim_start(), "{l}");
                        let id = l["id"].as_str().unwrap();
                        assert!(
                            id.len() == 6 && id.bytes().all(|b| b.is_ascii_hexdigit()),
                            "{l}"
                        );
                    }
                    let served: Vec<&str> =
                        lines.iter().map(|l| l["text"].as_str().unwrap()).collect();
                    let solution: Vec<String> = file
                        .solution
                        .as_deref()
                        .unwrap_or_default()
                        .lines()
                        .filter(|l| !l.trim().is_empty())
                        .map(|l| l.trim().to_owned())
                        .collect();
                    assert_ne!(served, solution, "{} is served in order", e["slug"]);
                }
                "sql" => {
                    assert!(e["schema"].is_string() && e["data"].is_string());
                    assert!(!e["expected"]["columns"].as_array().unwrap().is_empty());
                    assert!(!e["expected"]["rows"].as_array().unwrap().is_empty());
                    assert!(e["order_matters"].is_boolean());
                }
                "mcq" => {
                    let choices = e["choices"].as_array().unwrap();
                    assert!(choices.len() >= 3);
                    assert!(e["multiple"].is_boolean());
                    for (i, c) in choices.iter().enumerate() {
                        assert_eq!(c["id"], format!("c{i}"), "{c}");
                        assert!(c["text"].is_string() && c.get("correct").is_none(), "{c}");
                    }
                }
                other => panic!("unexpected type {other}"),
            }
            seen_types.insert(kind);
        }
        assert_eq!(seen_types.len(), 4, "{seen_types:?}");
    }
);

both_backends!(unknown_slugs_and_ids_are_404, |backend| async move {
    let app = TestApp::spawn(backend).await;
    assert_error(
        &app.get_json("/api/v1/chapters/nope", 404).await,
        "not_found",
    );
    for id in ["999999", "0", "-1", "abc", "1e3", "99999999999999999999999"] {
        let body = app.get_json(&format!("/api/v1/exercises/{id}"), 404).await;
        assert_error(&body, "not_found");
    }
});

/// Every string of a JSON value, one per line (to search served text for file contents).
fn collect_strings(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s}\n"),
        Value::Array(items) => items.iter().map(collect_strings).collect(),
        Value::Object(map) => map.values().map(collect_strings).collect(),
        _ => String::new(),
    }
}
