//! The socket scenarios. `classroom`: C users are the classes' dashboards
//! (`/ws/classrooms/{id}`, with the class teacher's token), the others students on `/ws`, each
//! submitting every `--period` seconds; submit → `result` and submit → dashboard `delta` are
//! recorded as goose requests (`WS submit → result`, `WS submit → delta`). `submit-burst`: every
//! user a student with one submission in flight, sent as soon as the last was answered.
//! `two-instances`: `classroom` with the dashboards on the first server and the students on the
//! second (`--host2`): their deltas cross instances through the bus.

use std::sync::Arc;
use std::time::{Duration, Instant};

use goose::prelude::*;
use serde_json::json;
use tokio::sync::Mutex;

use crate::tally::{self, Unacked};
use crate::ws::{self, Socket};
use crate::{Kind, config, next_dashboard, next_student};

/// How long a submission may wait for its answer before it counts as unacknowledged.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a student waits for its class's dashboard to open before its first submission.
const DASHBOARD_OPEN_WAIT: Duration = Duration::from_secs(15);
/// A dashboard reads its deltas in windows this long (a goose transaction must end now and
/// then for the user to notice the end of the test).
const DASHBOARD_WINDOW: Duration = Duration::from_secs(1);

#[derive(Clone)]
struct Live {
    host: String,
    path: String,
    token: String,
    socket: Arc<Mutex<Option<Socket>>>,
}

async fn record(user: &mut GooseUser, name: &str, took: Duration, error: Option<&str>) {
    let _ = user
        .record_custom_request_duration("WS", name, took, error.is_none(), None, error)
        .await;
}

/// Opens the user's socket; a student reads its `progress`, a dashboard its `snapshot`.
async fn open(live: &Live, dashboard: bool) -> anyhow::Result<Socket> {
    let mut socket = ws::open(&live.host, &live.path, &live.token).await?;
    let first = ws::next_json(&mut socket, Instant::now() + ws::OPEN_TIMEOUT).await?;
    let expected = if dashboard { "snapshot" } else { "progress" };
    anyhow::ensure!(
        first["type"] == expected,
        "expected {expected}, got {first}"
    );
    Ok(socket)
}

/// on_start of a dashboard user: the next class's dashboard, with its teacher's token.
pub async fn connect_dashboard(user: &mut GooseUser) -> TransactionResult {
    let c = config();
    let index = next_dashboard();
    let class = &c.fixture.classes[index];
    let live = Live {
        host: c.host.clone(),
        path: format!("/ws/classrooms/{}", class.id),
        token: c.fixture.teachers[class.teacher].token.clone(),
        socket: Arc::default(),
    };
    let socket = live.socket.clone();
    connect(user, live, true).await?;
    if socket.lock().await.is_some() {
        tally::dashboard_opened(index);
    }
    Ok(())
}

/// on_start of a student user: the next student's socket (on the second server in
/// `two-instances`), then, when submitting periodically, a random pause within one period so
/// that the class's submissions spread out.
pub async fn connect_student(user: &mut GooseUser) -> TransactionResult {
    let c = config();
    let host = match (&c.scenario, &c.host2) {
        (Kind::TwoInstances, Some(h2)) => h2.clone(),
        _ => c.host.clone(),
    };
    let student = &c.fixture.students[next_student()];
    let live = Live {
        host,
        path: "/ws".to_owned(),
        token: student.token.clone(),
        socket: Arc::default(),
    };
    connect(user, live, false).await?;
    if c.scenario != Kind::SubmitBurst {
        // The class's dashboard opens first (goose starts it first, but its snapshot may take
        // longer than a student's socket): an attempt made before it is in its snapshot, not a
        // delta, and would count as a delta that never arrived.
        let until = Instant::now() + DASHBOARD_OPEN_WAIT;
        while !tally::dashboard_is_open(student.class) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pause = rand::random_range(0..c.period.as_millis().max(1) as u64);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    Ok(())
}

async fn connect(user: &mut GooseUser, live: Live, dashboard: bool) -> TransactionResult {
    let started = Instant::now();
    let name = if dashboard {
        "open dashboard"
    } else {
        "open /ws"
    };
    match open(&live, dashboard).await {
        Ok(socket) => {
            record(user, name, started.elapsed(), None).await;
            *live.socket.lock().await = Some(socket);
        }
        Err(e) => record(user, name, started.elapsed(), Some(&format!("{e:#}"))).await,
    }
    user.set_session_data(live);
    Ok(())
}

/// Takes the user's socket, opening it again if it was lost.
async fn socket_of(
    user: &mut GooseUser,
    live: &Live,
    dashboard: bool,
) -> Option<tokio::sync::OwnedMutexGuard<Option<Socket>>> {
    let mut guard = live.socket.clone().lock_owned().await;
    if guard.is_none() {
        tally::count(&tally::RECONNECTS);
        let started = Instant::now();
        match open(live, dashboard).await {
            Ok(s) => *guard = Some(s),
            Err(e) => {
                let name = if dashboard {
                    "open dashboard"
                } else {
                    "open /ws"
                };
                record(user, name, started.elapsed(), Some(&format!("{e:#}"))).await;
                // Do not hammer a server that refuses: the next try is one transaction away.
                tokio::time::sleep(Duration::from_secs(1)).await;
                return None;
            }
        }
    }
    Some(guard)
}

enum Answer {
    Result,
    /// The server refused it (`error`), the socket stays open.
    Refused(String),
}

/// A student's transaction: one submission on the socket, until its answer.
pub async fn submit(user: &mut GooseUser) -> TransactionResult {
    let live = user.get_session_data_unchecked::<Live>().clone();
    let Some(mut guard) = socket_of(user, &live, false).await else {
        return Ok(());
    };
    let c = config();
    let exercise = &c.fixture.exercises[rand::random_range(0..c.fixture.exercises.len())];
    let answer = exercise.answer(rand::random_bool(0.7));
    let attempt_id = uuid::Uuid::new_v4().to_string();
    let message = json!({
        "type": "submit", "exercise_id": exercise.id, "attempt_id": attempt_id,
        "answer": answer, "duration_ms": 5000,
    });
    tally::count(&tally::SENT);
    let started = Instant::now();
    if c.scenario != Kind::SubmitBurst {
        tally::sent_at(&attempt_id, started);
    }
    let socket = guard.as_mut().expect("socket_of opened it");
    let outcome = async {
        ws::send(socket, &message).await?;
        let deadline = started + ANSWER_TIMEOUT;
        loop {
            let v = ws::next_json(socket, deadline).await?;
            if v["attempt_id"] != attempt_id.as_str() {
                continue;
            }
            match v["type"].as_str() {
                Some("result") => return anyhow::Ok(Answer::Result),
                Some("error") => return Ok(Answer::Refused(v["code"].to_string())),
                _ => {}
            }
        }
    }
    .await;
    let error = match outcome {
        Ok(Answer::Result) => None,
        Ok(Answer::Refused(code)) => Some(format!("error {code}")),
        Err(e) => {
            // A broken or silent socket: the next transaction opens a new one.
            *guard = None;
            Some(format!("{e:#}"))
        }
    };
    drop(guard);
    match &error {
        None => tally::count(&tally::ACKED),
        Some(_) => tally::unacked(Unacked {
            token: live.token.clone(),
            exercise_id: exercise.id,
            body: json!({ "attempt_id": attempt_id, "answer": answer }),
        }),
    }
    record(user, "submit → result", started.elapsed(), error.as_deref()).await;
    Ok(())
}

/// A dashboard's transaction: reads deltas for a second; each `attempt_recorded` of this run
/// records how long after its submission it arrived.
pub async fn watch(user: &mut GooseUser) -> TransactionResult {
    let live = user.get_session_data_unchecked::<Live>().clone();
    let Some(mut guard) = socket_of(user, &live, true).await else {
        return Ok(());
    };
    let until = Instant::now() + DASHBOARD_WINDOW;
    let mut seen = Vec::new();
    let mut failure = None;
    {
        let socket = guard.as_mut().expect("socket_of opened it");
        loop {
            match ws::next_json_until(socket, until).await {
                Ok(None) => break,
                Ok(Some(v)) => match (v["type"].as_str(), v["kind"].as_str()) {
                    (Some("delta"), Some("attempt_recorded")) => {
                        if let Some(took) = v["attempt_id"].as_str().and_then(tally::since_sent) {
                            // Counted on arrival: goose may end the run inside this window.
                            tally::count(&tally::DELTAS);
                            seen.push(took);
                        }
                    }
                    // Documented backpressure (docs/protocol.md), not an error: counted and
                    // reported; the deltas it skipped show in the summary's delta count.
                    (Some("snapshot"), _) => {
                        if v["reason"] == "lagged" {
                            tally::count(&tally::LAGGED);
                        }
                        tally::snapshot(v["reason"].as_str().unwrap_or("?"));
                    }
                    _ => {}
                },
                Err(e) => {
                    failure = Some(format!("{e:#}"));
                    break;
                }
            }
        }
    }
    if failure.is_some() {
        *guard = None;
    }
    drop(guard);
    for took in seen {
        record(user, "submit → delta", took, None).await;
    }
    if let Some(f) = failure {
        record(user, "dashboard", Duration::ZERO, Some(&f)).await;
    }
    Ok(())
}
