//! What the simulated users count beside goose's metrics: the submissions sent and acknowledged
//! (for the harness's database check), the ones left unacknowledged (resent at the end, as the
//! browser's outbox does), and when each socket submission left (for submit → dashboard).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Submissions sent (first sends, not resends).
pub static SENT: AtomicU64 = AtomicU64::new(0);
/// Submissions the server acknowledged during the run.
pub static ACKED: AtomicU64 = AtomicU64::new(0);
/// Dashboard deltas that arrived for a submission of this run.
pub static DELTAS: AtomicU64 = AtomicU64::new(0);
/// Dashboard snapshots sent with `"reason": "lagged"` (a dashboard fell behind).
pub static LAGGED: AtomicU64 = AtomicU64::new(0);
/// Sockets that closed under a user and were opened again.
pub static RECONNECTS: AtomicU64 = AtomicU64::new(0);
/// Sign-ins that worked (the `signin` phase).
pub static SIGNINS: AtomicU64 = AtomicU64::new(0);

/// Past this many entries, the oldest submit times are forgotten (a dashboard that never saw
/// them is counted by `DELTAS` falling short anyway).
const SENT_AT_MAX: usize = 2_000_000;

/// A submission sent without an acknowledgement: resent after the run with the same
/// `attempt_id`, through `POST /api/v1/exercises/{id}/attempts`.
#[derive(Debug, Clone)]
pub struct Unacked {
    pub token: String,
    pub exercise_id: i64,
    /// `{attempt_id, answer}`.
    pub body: Value,
}

static UNACKED: Mutex<Vec<Unacked>> = Mutex::new(Vec::new());
static SENT_AT: Mutex<Option<HashMap<String, Instant>>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

pub fn unacked(u: Unacked) {
    lock(&UNACKED).push(u);
}

/// Notes when a socket submission left, for the dashboards.
pub fn sent_at(attempt_id: &str, at: Instant) {
    let mut map = lock(&SENT_AT);
    let map = map.get_or_insert_with(HashMap::new);
    if map.len() >= SENT_AT_MAX {
        map.clear();
    }
    map.insert(attempt_id.to_owned(), at);
}

/// How long ago the submission left, if it is one of this run's (each is taken once: one
/// dashboard per class).
pub fn since_sent(attempt_id: &str) -> Option<Duration> {
    let at = lock(&SENT_AT).as_mut()?.remove(attempt_id)?;
    Some(at.elapsed())
}

static DASHBOARDS_OPEN: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

/// Notes that the dashboard of class `class` (an index into the fixture's classes) is open.
pub fn dashboard_opened(class: usize) {
    lock(&DASHBOARDS_OPEN)
        .get_or_insert_with(HashSet::new)
        .insert(class);
}

/// Whether the dashboard of class `class` has opened.
pub fn dashboard_is_open(class: usize) -> bool {
    lock(&DASHBOARDS_OPEN)
        .as_ref()
        .is_some_and(|open| open.contains(&class))
}

static SNAPSHOTS: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);

/// Counts a dashboard's snapshot after its first one, by `reason` (`lagged`, a resync, …).
pub fn snapshot(reason: &str) {
    *lock(&SNAPSHOTS)
        .get_or_insert_with(HashMap::new)
        .entry(reason.to_owned())
        .or_default() += 1;
}

/// The later snapshots' reasons and counts.
pub fn snapshots() -> HashMap<String, u64> {
    lock(&SNAPSHOTS).clone().unwrap_or_default()
}

/// Socket submissions no dashboard reported: how many seconds ago each left, oldest first
/// (taken when goose returns, to tell the ramp-up's from the ones the end of the run cut off).
pub fn undelivered_ages() -> Vec<f64> {
    let mut ages: Vec<f64> = lock(&SENT_AT)
        .as_ref()
        .map(|m| m.values().map(|at| at.elapsed().as_secs_f64()).collect())
        .unwrap_or_default();
    ages.sort_by(|a, b| b.total_cmp(a));
    ages
}

/// Resends every unacknowledged submission over HTTP until each is acknowledged or `deadline`
/// passes; returns (acknowledged by a resend, still unacknowledged).
pub async fn resend_unacked(host: &str, deadline: Duration) -> (u64, u64) {
    let pending: Vec<Unacked> = std::mem::take(&mut *lock(&UNACKED));
    if pending.is_empty() {
        return (0, 0);
    }
    eprintln!("resending {} unacknowledged submission(s)…", pending.len());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client");
    let until = Instant::now() + deadline;
    let mut acked = 0;
    let mut left = 0;
    for u in pending {
        let url = format!(
            "{}/api/v1/exercises/{}/attempts",
            host.trim_end_matches('/'),
            u.exercise_id
        );
        let mut ok = false;
        while !ok && Instant::now() < until {
            match client
                .post(&url)
                .bearer_auth(&u.token)
                .json(&u.body)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => ok = true,
                Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => break,
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
        if ok {
            acked += 1;
        } else {
            left += 1;
        }
    }
    (acked, left)
}
