//! Two instances tied by Redis share each class's stream (issue 13, resume): the same (epoch,
//! offset) names the same event on both, and a dashboard that moves to the other instance
//! resumes from the class's shared stream in Redis — or gets a snapshot when the stream no longer
//! holds what it missed, or never had it. Each test has its own key prefix.

use std::time::Duration;

use serde_json::Value;

use crate::both_backends;
use crate::health::test_redis_url;
use crate::helpers::{
    Backend, OtherInstance, TestApp, TestClassroom, TestDb, TestUser, eventually,
};
use crate::redis_bus::{command, connect_at, new_prefix, subscribed, tied};
use crate::ws::{Ws, dashboard, exercises, http_submit, new_class, student, teacher_socket};

/// The stream keys' time to live in these tests.
const TTL_SECS: u64 = 120;

/// Instances A and B on one database and one Redis, under a key prefix of their own; `ring`: the
/// events each class keeps (in its actors and in Redis).
async fn pair(backend: Backend, ring: usize) -> (TestApp, OtherInstance, String) {
    let db = TestDb::new(backend).await;
    let prefix = new_prefix();
    let mut settings = tied(&db, &test_redis_url(), &prefix);
    // Only attempts and the first attempt's badge: the deltas a test expects are known.
    settings.ws.stuck_failed_attempts = 1000;
    settings.actors.classroom_ring_size = ring;
    settings.redis.class_stream_ttl_secs = TTL_SECS;
    let a = TestApp::spawn_with(db, settings.clone()).await;
    let b = OtherInstance::start(settings).await;
    subscribed(&a.address).await;
    subscribed(&b.address).await;
    (a, b, prefix)
}

/// A failing attempt submitted over HTTP on the instance at `address`; its id.
async fn attempt_on(address: &str, student: &mut TestUser, exercise: i64) -> Value {
    student.address = address.to_owned();
    http_submit(student, exercise, false).await["attempt_id"].clone()
}

/// The last offset the class's shared stream gave (its head in Redis).
async fn head_offset(prefix: &str, class: &TestClassroom) -> u64 {
    let key = format!("{prefix}:stream:{}:head", class.id);
    match command(&test_redis_url(), &["HGET", &key, "offset"]).await {
        Ok(redis::Value::BulkString(b)) => String::from_utf8(b).unwrap().parse().unwrap(),
        other => panic!("{key}: {other:?}"),
    }
}

/// Waits until the class's shared stream has given `offset`.
async fn stream_reaches(prefix: &str, class: &TestClassroom, offset: u64) {
    eventually("the events are in the shared stream", || async {
        head_offset(prefix, class).await >= offset
    })
    .await;
}

/// Opens a dashboard on `address` asking to resume after (epoch, offset); reads the welcome.
async fn resume_at(
    address: &str,
    class: &TestClassroom,
    token: &str,
    epoch: u64,
    offset: u64,
) -> Ws {
    let path = format!("{}?epoch={epoch}&offset={offset}", dashboard(class));
    let mut dash = connect_at(address, &path, token).await;
    dash.expect("welcome").await;
    dash
}

/// Reads every message that arrives within 300 ms; the last offset seen (or `last`).
async fn drain(dash: &mut Ws, mut last: u64) -> u64 {
    while let Some(v) = dash.try_next(Duration::from_millis(300)).await {
        last = v["offset"].as_u64().unwrap_or(last);
    }
    last
}

both_backends!(
    a_dashboard_that_moves_to_the_other_instance_resumes_from_the_shared_stream,
    |backend| async move {
        let (a, b, prefix) = pair(backend, 1000).await;
        let (_teacher, token, class) = new_class(&a).await;
        let (mut student_user, _) = student(&a, &class).await;
        let exs = exercises(&a, 6).await;

        // A dashboard on A follows the class; the first attempt (and its badge) reach it.
        let (mut dash, snapshot) = teacher_socket(&a, &class, &token).await;
        let epoch = snapshot["epoch"].as_u64().unwrap();
        attempt_on(&a.address, &mut student_user, exs[0]).await;
        dash.delta("attempt_recorded").await;
        let last = drain(&mut dash, snapshot["offset"].as_u64().unwrap()).await;
        dash.stream.close(None).await.expect("close");
        drop(dash);

        // Meanwhile, attempts on A and on B.
        let mut missed = Vec::new();
        for (address, ex) in [
            (&a.address, exs[1]),
            (&b.address, exs[2]),
            (&a.address, exs[3]),
        ] {
            missed.push(attempt_on(address, &mut student_user, ex).await);
        }
        stream_reaches(&prefix, &class, last + 3).await;

        // The dashboard comes back through the load balancer, to B, which had no copy of the
        // class: exactly the three missed deltas, from the shared stream, in its numbering.
        let mut dash = resume_at(&b.address, &class, &token, epoch, last).await;
        let resumed = dash.expect("resumed").await;
        assert_eq!(resumed["epoch"], epoch, "{resumed}");
        assert_eq!(resumed["after_offset"], last, "{resumed}");
        assert_eq!(resumed["count"], 3, "{resumed}");
        let mut got = Vec::new();
        for i in 1..=3 {
            let d = dash.expect("delta").await;
            assert_eq!(d["kind"], "attempt_recorded", "{d}");
            assert_eq!(d["epoch"], epoch, "{d}");
            assert_eq!(d["offset"], last + i, "{d}");
            got.push(d["attempt_id"].clone());
        }
        let sorted = |mut v: Vec<Value>| {
            v.sort_by_key(|id| id.to_string());
            v
        };
        assert_eq!(sorted(got), sorted(missed.clone()));
        if let Some(v) = dash.try_next(Duration::from_millis(300)).await {
            panic!("more than the missed deltas: {v}");
        }

        // Then the live ones, numbered alike on both instances: a second dashboard on A sees
        // each event under the same (epoch, offset).
        let (mut on_a, snapshot_a) = teacher_socket(&a, &class, &token).await;
        assert_eq!(snapshot_a["epoch"], epoch, "{snapshot_a}");
        for (i, (address, ex)) in [(&b.address, exs[4]), (&a.address, exs[5])]
            .into_iter()
            .enumerate()
        {
            let id = attempt_on(address, &mut student_user, ex).await;
            let on_b = dash.delta("attempt_recorded").await;
            let seen_on_a = on_a
                .until("the same attempt on A", |v| v["attempt_id"] == id)
                .await;
            assert_eq!(on_b["attempt_id"], id, "{on_b}");
            assert_eq!(on_b["offset"], last + 4 + i as u64, "{on_b}");
            for field in ["epoch", "offset", "attempt_id"] {
                assert_eq!(on_b[field], seen_on_a[field], "{on_b} / {seen_on_a}");
            }
        }

        // The stream's keys expire when the class goes quiet (Redis memory stays bounded).
        for key in [
            format!("{prefix}:stream:{}", class.id),
            format!("{prefix}:stream:{}:head", class.id),
        ] {
            match command(&test_redis_url(), &["TTL", &key]).await {
                Ok(redis::Value::Int(ttl)) => {
                    assert!(ttl > 0 && ttl <= TTL_SECS as i64, "{key}: TTL {ttl}")
                }
                other => panic!("{key}: {other:?}"),
            }
        }
        b.stop().await;
    }
);

both_backends!(
    a_resume_the_shared_stream_cannot_answer_gets_a_snapshot,
    |backend| async move {
        // Each class keeps 3 events.
        let (a, b, prefix) = pair(backend, 3).await;
        let (_teacher, token, class) = new_class(&a).await;
        let (mut student_user, _) = student(&a, &class).await;
        let exs = exercises(&a, 5).await;
        let (dash, snapshot) = teacher_socket(&a, &class, &token).await;
        let epoch = snapshot["epoch"].as_u64().unwrap();
        let offset = snapshot["offset"].as_u64().unwrap();
        drop(dash);
        // Five attempts (the first one with its badge): at least six events.
        for ex in &exs {
            attempt_on(&a.address, &mut student_user, *ex).await;
        }
        stream_reaches(&prefix, &class, offset + 6).await;
        let head = head_offset(&prefix, &class).await;

        // Older than the cap: a snapshot, with everything.
        let mut dash = resume_at(&b.address, &class, &token, epoch, offset).await;
        let fresh = dash.expect("snapshot").await;
        assert_eq!(fresh["reason"], "resume_unavailable", "{fresh}");
        assert_eq!(fresh["epoch"], epoch, "{fresh}");
        assert_eq!(fresh["offset"], head, "{fresh}");
        assert_eq!(fresh["grid"].as_array().unwrap().len(), 5, "{fresh}");
        drop(dash);

        // Within the cap, on B too (its copy loaded after them: from the stream).
        let mut dash = resume_at(&b.address, &class, &token, epoch, head - 2).await;
        let resumed = dash.expect("resumed").await;
        assert_eq!(resumed["count"], 2, "{resumed}");
        assert_eq!(dash.expect("delta").await["offset"], head - 1);
        assert_eq!(dash.expect("delta").await["offset"], head);
        drop(dash);

        // Another epoch, or an offset the stream has not given: a snapshot.
        for (e, n) in [(epoch + 1, head), (epoch - 1, 1), (epoch, head + 10)] {
            for address in [&a.address, &b.address] {
                let mut dash = resume_at(address, &class, &token, e, n).await;
                let fresh = dash.expect("snapshot").await;
                assert_eq!(fresh["reason"], "resume_unavailable", "({e}, {n}): {fresh}");
                assert_eq!(fresh["epoch"], epoch, "{fresh}");
            }
        }
        b.stop().await;
    }
);
