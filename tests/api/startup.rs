//! Start-up: stable ids across restarts and edits, and refusals that name what is wrong.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::both_backends;
use crate::helpers::{TestApp, TestDb, content_dir};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// slug → id of every exercise, from the API.
async fn exercise_ids(app: &TestApp) -> BTreeMap<String, i64> {
    app.listed_exercises()
        .await
        .into_iter()
        .map(|e| (e.slug, e.id))
        .collect()
}

/// The first exercise file of the first chapter of the first course, in a content tree.
fn first_exercise_file(root: &Path) -> std::path::PathBuf {
    let mut courses: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    courses.sort();
    let mut chapters: Vec<_> = std::fs::read_dir(&courses[0])
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    chapters.sort();
    let mut files: Vec<_> = std::fs::read_dir(&chapters[0])
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "chapter.toml")
        .collect();
    files.sort();
    files[0].clone()
}

both_backends!(ids_survive_restarts_and_edits, |backend| async move {
    let content = tempfile::tempdir().unwrap();
    copy_dir(&content_dir(), content.path());
    let db = TestDb::new(backend).await;
    let mut settings = db.settings();
    settings.content.dir = content.path().to_owned();

    let app = TestApp::spawn_with(db, settings.clone()).await;
    let before = exercise_ids(&app).await;
    assert!(before.len() >= 40);
    let db = app.stop().await;

    // Same files: same ids.
    let app = TestApp::spawn_with(db, settings.clone()).await;
    assert_eq!(exercise_ids(&app).await, before);
    let db = app.stop().await;

    // Edit an exercise's title and remove another file: the edited one keeps its id, the removed
    // one is gone from the API, every other id is unchanged.
    let edited = first_exercise_file(content.path());
    let slug = edited
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .split_once('-')
        .unwrap()
        .1
        .to_owned();
    let text = std::fs::read_to_string(&edited).unwrap();
    let new_text = text.replacen("title = \"", "title = \"(modifié) ", 1);
    assert_ne!(text, new_text);
    std::fs::write(&edited, new_text).unwrap();
    let removed = edited.with_file_name("zz-placeholder");
    let mut siblings: Vec<_> = std::fs::read_dir(edited.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "chapter.toml" && *p != edited)
        .collect();
    siblings.sort();
    let removed_file = siblings.pop().expect("a second exercise in the chapter");
    let removed_slug = removed_file
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .split_once('-')
        .unwrap()
        .1
        .to_owned();
    std::fs::rename(&removed_file, &removed).unwrap();

    let app = TestApp::spawn_with(db, settings.clone()).await;
    let after = exercise_ids(&app).await;
    assert_eq!(after[&slug], before[&slug]);
    let e = app
        .get_json(&format!("/api/v1/exercises/{}", before[&slug]), 200)
        .await;
    assert!(
        e["title"].as_str().unwrap().starts_with("(modifié) "),
        "{e}"
    );
    assert!(!after.contains_key(&removed_slug));
    app.get_json(&format!("/api/v1/exercises/{}", before[&removed_slug]), 404)
        .await;
    for (s, id) in &after {
        assert_eq!(before[s], *id, "{s}");
    }
    let db = app.stop().await;

    // Put it back: it comes back with its old id.
    std::fs::rename(&removed, &removed_file).unwrap();
    let app = TestApp::spawn_with(db, settings).await;
    assert_eq!(exercise_ids(&app).await, before);
});

fn run_binary(envs: &[(&str, &str)]) -> (bool, String) {
    let data = tempfile::tempdir().unwrap();
    let db_path = data.path().join("x.db");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nsi-live"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NSI__SERVER__PORT", "0")
        .env("NSI__DATABASE__SQLITE_PATH", db_path.to_str().unwrap())
        .env("NSI__CONTENT__DIR", content_dir().to_str().unwrap());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    // Every case below must refuse to start; a server that starts would hang, so bound it.
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            child.kill().ok();
            panic!("the server started instead of refusing: {envs:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn an_unknown_or_bad_config_key_stops_start_up_naming_it() {
    let (ok, out) = run_binary(&[("NSI__SERVER__PROT", "80")]);
    assert!(!ok);
    assert!(out.contains("server.prot"), "{out}");
    let (ok, out) = run_binary(&[("NSI__DATABASE__MAX_CONNECTIONS", "lots")]);
    assert!(!ok);
    assert!(out.contains("database.max_connections"), "{out}");
}

#[test]
fn a_malformed_content_file_stops_start_up_naming_it() {
    let content = tempfile::tempdir().unwrap();
    copy_dir(&content_dir(), content.path());
    let file = first_exercise_file(content.path());
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("xp_reward", "xp_rewrad", 1)).unwrap();
    let (ok, out) = run_binary(&[("NSI__CONTENT__DIR", content.path().to_str().unwrap())]);
    assert!(!ok);
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(out.contains(name) && out.contains("xp_rewrad"), "{out}");
}

#[tokio::test]
async fn a_broken_sql_reference_query_stops_start_up() {
    let content = tempfile::tempdir().unwrap();
    copy_dir(&content_dir(), content.path());
    // Break every SQL exercise's reference query: start-up must refuse, naming one.
    let mut broke = 0;
    for course in std::fs::read_dir(content.path()).unwrap() {
        let course = course.unwrap().path();
        if !course.is_dir() {
            continue;
        }
        for chapter in std::fs::read_dir(&course).unwrap() {
            let chapter = chapter.unwrap().path();
            if !chapter.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&chapter).unwrap() {
                let file = file.unwrap().path();
                let text = std::fs::read_to_string(&file).unwrap();
                let mut table: toml::Table = toml::from_str(&text).unwrap();
                if table.get("type").and_then(|t| t.as_str()) == Some("sql") {
                    table.insert("solution".into(), "SELECT nope FROM nulle_part".into());
                    std::fs::write(&file, toml::to_string(&table).unwrap()).unwrap();
                    broke += 1;
                }
            }
        }
    }
    assert!(broke > 0);
    let db = TestDb::new(crate::helpers::Backend::Sqlite).await;
    let mut settings = db.settings();
    settings.content.dir = content.path().to_owned();
    let err = match nsi_live::startup::Application::build(settings).await {
        Ok(_) => panic!("start-up accepted a broken reference query"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("SQL exercise") && err.contains("solution"),
        "{err}"
    );
}

/// The real binary: SIGTERM makes it finish, flush and exit with status 0.
#[tokio::test]
async fn sigterm_stops_the_binary_cleanly() {
    use std::io::BufRead;
    let data = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nsi-live"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NSI__SERVER__PORT", "0")
        .env("NSI__LOG__FORMAT", "json")
        .env("NSI__LOG__FILTER", "info")
        .env(
            "NSI__DATABASE__SQLITE_PATH",
            data.path().join("x.db").to_str().unwrap(),
        )
        .env("NSI__CONTENT__DIR", content_dir().to_str().unwrap())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The port is in the "listening" log line.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut port = None;
    let mut lines = Vec::new();
    while port.is_none() {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no listening line: {lines:?}"));
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && v["message"] == "listening"
        {
            port = v["port"].as_u64();
        }
        lines.push(line);
    }
    let url = format!("http://127.0.0.1:{}/healthz", port.unwrap());
    assert_eq!(reqwest::get(&url).await.unwrap().status().as_u16(), 200);
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running 30 s after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let log: Vec<String> = rx.try_iter().collect();
    assert!(
        log.iter().any(|l| l.contains("attempt writer stopped")),
        "the writer did not report its final flush: {log:?}"
    );
}

/// The server binary allocates with jemalloc (docs/benchmarks.md, "jemalloc as the global
/// allocator": glibc's malloc kept twice the memory per connected student on PostgreSQL). Asked
/// through jemalloc's own variable, the process prints jemalloc's statistics when it exits; a
/// binary on glibc's malloc ignores the variable.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[test]
fn the_server_binary_allocates_with_jemalloc() {
    let out = Command::new(env!("CARGO_BIN_EXE_nsi-live"))
        .arg("--help")
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .expect("running nsi-live --help");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Begin jemalloc statistics"),
        "no jemalloc statistics on stderr: {stderr}"
    );
}
