//! The server's PostgreSQL sockets carry TCP_NODELAY. sqlx-core 0.9.0 stopped setting it
//! (transact-rs/sqlx#4335): Nagle then holds each large statement of a write batch until
//! PostgreSQL's delayed ACK, ~40 ms per statement, and acknowledged submissions over TCP fell to a
//! third of those over the Unix socket (docs/benchmarks.md). The project patches sqlx-core
//! (vendor/README.md); this test fails the day a dependency update brings the old behaviour back.

use std::os::fd::{BorrowedFd, OwnedFd};

use crate::helpers::{Backend, TestApp, test_database_url};

/// Every TCP socket of this process whose peer is the PostgreSQL port, with its TCP_NODELAY.
fn postgres_sockets(port: u16) -> Vec<(std::net::SocketAddr, bool)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd is readable") {
        let Ok(entry) = entry else { continue };
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if !target.to_string_lossy().starts_with("socket:") {
            continue;
        }
        let Ok(raw) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: `raw` was listed open a moment ago; it is duplicated at once and only the
        // duplicate is used. Another test closing it in between makes the dup fail (skipped) or,
        // if the number was reused, dup another socket, whose peer is then checked like any other.
        let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
        let Ok(owned): Result<OwnedFd, _> = borrowed.try_clone_to_owned() else {
            continue;
        };
        let socket = socket2::Socket::from(owned);
        let Some(peer) = socket.peer_addr().ok().and_then(|a| a.as_socket()) else {
            continue;
        };
        if peer.port() != port {
            continue;
        }
        let nodelay = socket
            .tcp_nodelay()
            .expect("TCP_NODELAY readable on a TCP socket");
        found.push((peer, nodelay));
    }
    found
}

fn postgres_port(url: &str) -> u16 {
    let options: sqlx::postgres::PgConnectOptions =
        url.parse().expect("TEST_DATABASE_URL is a PostgreSQL URL");
    assert!(
        !options.get_host().starts_with('/') && options.get_socket().is_none(),
        "this test checks the TCP path: TEST_DATABASE_URL must name a TCP host, not a Unix socket"
    );
    options.get_port()
}

#[tokio::test]
async fn postgres_sockets_are_opened_with_tcp_nodelay() {
    let port = postgres_port(&test_database_url());
    let app = TestApp::spawn(Backend::Postgres).await;
    // A sign-up and a class write through the app's pool and its writer.
    let teacher = app.signup_teacher().await;
    app.create_classroom(&teacher).await;

    let sockets = postgres_sockets(port);
    assert!(
        !sockets.is_empty(),
        "no TCP socket to PostgreSQL port {port} found in /proc/self/fd while the app runs"
    );
    let delayed: Vec<_> = sockets.iter().filter(|(_, nodelay)| !nodelay).collect();
    assert!(
        delayed.is_empty(),
        "{} of {} PostgreSQL sockets lack TCP_NODELAY (Nagle delays each statement): {delayed:?}",
        delayed.len(),
        sockets.len()
    );
    app.stop().await;
}
