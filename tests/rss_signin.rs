//! Failed sign-ins leave no lasting memory behind (issue 8, hole 3): the process's resident memory
//! after 60 failed logins stays within 50 MB of what it was before them. Its own test binary, so
//! that no other test's allocations move the figure; its two tests (one per database) run one
//! after the other for the same reason.

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use helpers::{Backend, TestApp, unique};
use serde_json::json;

/// Resident memory of this process in bytes (`VmRSS` in /proc/self/status; Linux only).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line");
    kb * 1024
}

/// One test at a time in this binary: both measure the whole process.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn failed_logins_leave_no_memory(backend: Backend) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let app = TestApp::spawn(backend).await;
    let teacher = app.signup_teacher().await;
    let login = teacher.login.clone().expect("login");
    // One hash done: whatever is allocated once for hashing is in the starting figure.
    let browser = app.anonymous();
    let before = rss_bytes();
    // 60 failed logins, 3 at a time, under every throttle (10 failures per login, 100 per
    // address): wrong passwords for the teacher and unknown logins, which check against a decoy.
    for round in 0..20 {
        let wrong = |login: String| {
            let browser = &browser;
            async move {
                let body = json!({ "login": login, "password": "pas le bon mot de passe" });
                browser.post_json("/api/v1/auth/login", &body, 401).await;
            }
        };
        let first = if round < 9 {
            login.clone()
        } else {
            unique("inconnu-")
        };
        futures_util::join!(
            wrong(first),
            wrong(unique("inconnu-")),
            wrong(unique("inconnu-"))
        );
    }
    let after = rss_bytes();
    let grown_mb = after.saturating_sub(before) / (1024 * 1024);
    // The figure in docs/benchmarks.md (`--nocapture` shows it).
    eprintln!(
        "{backend:?}: resident memory {} MB before 60 failed logins, {} MB after",
        before / (1024 * 1024),
        after / (1024 * 1024)
    );
    assert!(
        grown_mb < 50,
        "60 failed logins grew the resident memory by {grown_mb} MB ({} MB → {} MB)",
        before / (1024 * 1024),
        after / (1024 * 1024)
    );
    app.stop().await;
}

#[tokio::test]
async fn sqlite() {
    failed_logins_leave_no_memory(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres() {
    failed_logins_leave_no_memory(Backend::Postgres).await;
}
