//! What one socket can make the server hold (issue 8, hole 1): a frame header announcing 1 GiB,
//! then 8 MiB of it. A test binary of its own, with one test, so that the process's resident
//! memory is this app and this client only — no other test's server allocating meanwhile. The
//! accounts are written straight into the database: a password hash (argon2, 19 MiB of working
//! memory) before the measure would leave freed memory behind that the server's buffer could
//! reuse unseen.

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;
#[allow(dead_code)]
#[path = "../api/raw_client.rs"]
mod raw_client;

use helpers::{Backend, TestApp, TestDb};
use raw_client::{RawWs, TEXT, header};
use tokio::io::AsyncWriteExt;

/// The process's resident memory, in KiB (`VmRSS` of /proc/self/status).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A session token for a new user of `role`, written straight into the database.
async fn session_for(db: &TestDb, role: &str, n: u32) -> String {
    let token = format!("{:a>43}", format!("memtest{n}"));
    let hash = nsi_live::auth::session::token_hash(&token);
    let far = 4_000_000_000_000i64;
    db.execute(&format!(
        "INSERT INTO users (role, display_name, login, created_at)
         VALUES ('{role}', 'Mesure', 'mesure{n}', 0);
         INSERT INTO sessions (token_hash, user_id, created_at, expires_at, last_seen_at)
         SELECT '{hash}', id, 0, {far}, 0 FROM users WHERE login = 'mesure{n}';",
    ))
    .await;
    token
}

async fn measure(backend: Backend) {
    let db = TestDb::new(backend).await;
    let settings = db.settings();
    let app = TestApp::spawn_with(db, settings).await;
    let token = session_for(&app.db, "student", 1).await;
    let RawWs {
        mut reader,
        mut writer,
    } = RawWs::connect(&app.address, "/ws", &token).await;
    assert_eq!(reader.json().await["type"], "welcome");
    assert_eq!(reader.json().await["type"], "progress");

    let before = rss_kib();
    // The client keeps sending while the server is expected to close: a writer of its own, which
    // stops at the first failed write (the server may stop reading, or drop the connection).
    let sender = tokio::spawn(async move {
        let mut sent = 0usize;
        let _ = writer.write_all(&header(0x80 | TEXT, 1 << 30)).await;
        let chunk = vec![b'a'; 64 * 1024];
        while sent < 8 * 1024 * 1024 {
            let write = writer.write_all(&chunk);
            match tokio::time::timeout(std::time::Duration::from_secs(2), write).await {
                Ok(Ok(())) => sent += chunk.len(),
                _ => break,
            }
        }
        (writer, sent)
    });
    let (_writer, sent) = sender.await.expect("writer");
    let after = rss_kib();
    let grown = after.saturating_sub(before);
    eprintln!("{backend:?}: sent {sent} bytes after the header; RSS {before} → {after} KiB");
    assert!(
        grown < 1024,
        "{backend:?}: RSS grew by {grown} KiB while {sent} bytes of an announced GiB came in"
    );
    assert_eq!(reader.close_code().await, 1009, "{backend:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_gib_announced_then_8_mib_sent_grow_the_server_by_under_1_mib() {
    // One after the other: both in one process at once would measure each other.
    measure(Backend::Sqlite).await;
    measure(Backend::Postgres).await;
}
