//! The publisher task: takes what is queued, sends it in one pipeline per turn (at most
//! `redis.publish_batch` messages), and on a failure drops the batch, counts it, and resyncs this
//! instance's classes it concerned (the other instances see the gap in the sequence). A class
//! event goes out as one call of the stream script (`stream.rs`: numbered, kept, published); a
//! class whose event was lost gets a new stream epoch at the head of the next pipeline, before
//! any later event of it (unless its stream began a new epoch meanwhile: Redis restarted).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use redis::{ErrorKind, ServerErrorKind};
use tokio::sync::{mpsc, watch};

use super::stream::STREAM_SCRIPT;
use super::{Channel, Outgoing, Shared};
use crate::domain::ids::ClassroomId;

pub(super) async fn run(
    shared: Arc<Shared>,
    mut queued: mpsc::Receiver<Outgoing>,
    batch_max: usize,
    mut stopped: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(batch_max);
    // The epoch each class's stream had at this instance's last event of it: the one a lost
    // event leaves a hole in.
    let mut epochs = HashMap::new();
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
                    send(&shared, &mut batch, &mut epochs).await;
                }
            }
            send(&shared, &mut batch, &mut epochs).await;
            return;
        };
        batch.push(first);
        while batch.len() < batch_max {
            match queued.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        send(&shared, &mut batch, &mut epochs).await;
    }
}

/// One pipeline: the new epochs owed, then a stream script call per class event and a `PUBLISH`
/// per ended session; empties `batch`.
async fn send(shared: &Shared, batch: &mut Vec<Outgoing>, epochs: &mut HashMap<ClassroomId, u64>) {
    if batch.is_empty() {
        return;
    }
    let restarts = shared.take_restarts();
    let mut pipe = redis::pipe();
    for &classroom in &restarts {
        let holed = epochs.get(&classroom).copied();
        pipe.add_command(shared.restart_cmd(classroom, holed))
            .ignore();
    }
    for item in batch.iter() {
        match item.channel {
            Channel::Class(classroom) => {
                pipe.add_command(shared.append_cmd(classroom, &item.payload));
            }
            Channel::Sessions => {
                pipe.cmd("PUBLISH")
                    .arg(shared.channel_name(item.channel))
                    .arg(&item.payload)
                    .ignore();
            }
        }
    }
    let sent = shared
        .cluster
        .run(|mut conn| async move {
            match pipe.query_async::<Vec<Option<String>>>(&mut conn).await {
                // Redis lost its scripts (a restart): load it, send again. Every script call
                // failed alike; the sessions' `PUBLISH`es that went out are dropped as duplicates.
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    STREAM_SCRIPT.load_async(&mut conn).await?;
                    pipe.query_async(&mut conn).await
                }
                other => other,
            }
        })
        .await;
    let n = batch.len() as u64;
    match sent {
        Ok(appended) => {
            shared.counters.published.fetch_add(n, Ordering::Relaxed);
            // Each class event's answer: its stream's epoch.
            let classes = batch.iter().filter_map(|item| match item.channel {
                Channel::Class(id) => Some(id),
                Channel::Sessions => None,
            });
            for (id, epoch) in classes.zip(appended) {
                if let Some(epoch) = epoch.and_then(|e| e.parse().ok()) {
                    epochs.insert(id, epoch);
                }
            }
        }
        Err(e) => {
            shared
                .counters
                .dropped_redis_error
                .fetch_add(n, Ordering::Relaxed);
            // Those classes' streams have a hole: resuming across it must fail.
            shared.owe_restarts(restarts.into_iter().chain(batch.iter().filter_map(|item| {
                match item.channel {
                    Channel::Class(id) => Some(id),
                    Channel::Sessions => None,
                }
            })));
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
