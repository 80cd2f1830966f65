//! The publisher task: takes what is queued, sends it in one pipeline per turn (at most
//! `redis.publish_batch` messages), and on a failure drops the batch, counts it, and resyncs this
//! instance's classes it concerned (the other instances see the gap in the sequence).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, watch};

use super::{Channel, Outgoing, Shared};

pub(super) async fn run(
    shared: Arc<Shared>,
    mut queued: mpsc::Receiver<Outgoing>,
    batch_max: usize,
    mut stopped: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(batch_max);
    loop {
        let first = tokio::select! {
            first = queued.recv() => first,
            _ = stopped.changed() => None,
        };
        let Some(first) = first else {
            // Stopping: what is already queued goes out in a last pipeline (bounded by
            // `redis.command_timeout_ms`).
            queued.close();
            while let Ok(item) = queued.try_recv() {
                batch.push(item);
                if batch.len() >= batch_max {
                    send(&shared, &mut batch).await;
                }
            }
            send(&shared, &mut batch).await;
            return;
        };
        batch.push(first);
        while batch.len() < batch_max {
            match queued.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        send(&shared, &mut batch).await;
    }
}

/// One pipeline of `PUBLISH` (or `SPUBLISH`); empties `batch`.
async fn send(shared: &Shared, batch: &mut Vec<Outgoing>) {
    if batch.is_empty() {
        return;
    }
    let mut pipe = redis::pipe();
    for item in batch.iter() {
        pipe.cmd("PUBLISH")
            .arg(shared.channel_name(item.channel))
            .arg(&item.payload)
            .ignore();
    }
    let sent = shared
        .cluster
        .run(|mut conn| async move { pipe.query_async::<()>(&mut conn).await })
        .await;
    let n = batch.len() as u64;
    match sent {
        Ok(()) => {
            shared.counters.published.fetch_add(n, Ordering::Relaxed);
        }
        Err(e) => {
            shared
                .counters
                .dropped_redis_error
                .fetch_add(n, Ordering::Relaxed);
            tracing::warn!(error = %e, messages = n, "publishing to Redis failed; dropped");
            // Sent while subscribed, they would have come back here: those classes reload.
            // (Messages published while the subscription was down were delivered here already.)
            let classes: BTreeSet<_> = batch
                .iter()
                .filter_map(|item| match item.channel {
                    Channel::Class(id) if !item.direct => Some(id),
                    _ => None,
                })
                .collect();
            for id in classes {
                shared.resync(Some(id));
            }
        }
    }
    batch.clear();
}
