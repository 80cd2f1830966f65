//! `RedisBus`: the event bus of several instances tied by one Redis (`REDIS_URL`).
//!
//! - **Channels:** a class's events on `{prefix}:class:{id}`, ended sessions on
//!   `{prefix}:sessions` (`PUBLISH`/`SUBSCRIBE`; docs/architecture.md says how they map to Redis
//!   Cluster's sharded pub/sub).
//! - **Envelope:** every message carries its origin instance, a sequence per (origin, channel)
//!   and its publish time: a receiver drops duplicates, and a gap (messages lost on the way) makes
//!   the class reload from the database and restart its stream, so its dashboards take a
//!   snapshot (`order`).
//! - **Publishing** (`publisher`): `publish` never waits. It numbers the message and hands it to
//!   a bounded queue; one task sends what is queued in one pipeline per turn. Queue full or Redis
//!   failing → the message is dropped and counted, and this instance's class resyncs (the
//!   other instances see the gap in the sequence).
//! - **Shared streams** (`stream`): a class event is sent as one call of a Lua script that gives
//!   it the next offset of the class's shared stream, keeps it in a capped Redis stream and
//!   publishes it, atomically: every instance's actors number the class's events alike, and a
//!   dashboard resumes on any instance from what Redis kept.
//! - **Receiving** (`subscriber`): one dedicated pub/sub connection per instance, reconnected with
//!   exponential backoff and jitter; it listens to the sessions channel always, and to a class's
//!   channel while a local `ClassroomActor` for it runs (subscribed before the actor loads, left
//!   `redis.unsubscribe_after_secs` after it stopped).
//! - **One delivery path:** while subscribed, this instance's own events reach its actors only by
//!   coming back from Redis. While the subscription is down, `publish` also delivers to this
//!   instance directly (its clients keep being served, `/readyz` says degraded); when the
//!   subscription returns, every local class resyncs from the database (what the other instances
//!   published meanwhile was missed) and the session cache is emptied.
//! - **Ended sessions** are applied here at once (sockets closed, cache entry dropped) and
//!   published; each other instance applies them on receipt. An instance that may have missed
//!   some (a gap, a lost subscription) empties its session cache.

mod envelope;
mod order;
mod publisher;
mod stream;
mod subscriber;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{mpsc, oneshot, watch};

use super::{BusStats, ClassEvent, EventBus, EventSink, SessionEnded, SessionSink, StreamPos};
use crate::cluster::Cluster;
use crate::config::RedisSettings;
use crate::domain::ids::ClassroomId;
use envelope::Envelope;

/// Upper bounds (seconds) of the bus lag histogram (receive time − publish time).
pub const LAG_SECONDS_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Subscription requests waiting for the subscriber task (more: the class is subscribed at the
/// task's next check, and resyncs then).
const CONTROL_QUEUE: usize = 1024;

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Channel {
    Class(ClassroomId),
    Sessions,
}

/// A message numbered and serialised, waiting for the publisher.
#[derive(Debug)]
struct Outgoing {
    channel: Channel,
    payload: String,
    /// Delivered here already (no need to resync here if it is lost).
    direct: bool,
}

/// Asks the subscriber task to listen to a class's channel; answered once it does (or at once
/// when it cannot: the class loads anyway and resyncs when the subscription returns).
#[derive(Debug)]
struct Watch {
    classroom: ClassroomId,
    subscribed: oneshot::Sender<()>,
}

/// What the bus counts (`/metrics`).
#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    received: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_redis_error: AtomicU64,
    duplicates: AtomicU64,
    gaps: AtomicU64,
    reconnects: AtomicU64,
    resyncs: AtomicU64,
}

/// What the bus's handle and its two tasks share.
struct Shared {
    cluster: Arc<Cluster>,
    unsubscribe_after: Duration,
    reconnect_max: Duration,
    sink: OnceLock<Weak<dyn EventSink>>,
    sessions: Mutex<Vec<Weak<dyn SessionSink>>>,
    /// The last sequence number given per channel. Held while a message is numbered and queued,
    /// so that a channel's messages are queued in the order of their numbers.
    seqs: Mutex<HashMap<Channel, u64>>,
    /// Classes whose stream must begin a new epoch (an event of theirs was lost before reaching
    /// Redis): done at the head of the next pipeline. Written under `seqs` when a message is
    /// dropped, so that no later message of the class is queued before it.
    restarts: Mutex<BTreeSet<ClassroomId>>,
    /// The shared streams' cap (`actors.classroom_ring_size`) and their keys' time to live.
    stream_cap: usize,
    stream_ttl_ms: u64,
    /// The subscription is up (every needed channel subscribed).
    up: AtomicBool,
    /// Set once the first subscription attempt is over (up, or failed).
    first_try: watch::Sender<bool>,
    counters: Counters,
    lag: Histogram,
}

pub struct RedisBus {
    shared: Arc<Shared>,
    queue: mpsc::Sender<Outgoing>,
    control: mpsc::Sender<Watch>,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("instance", &self.shared.cluster.instance_id())
            .field("up", &self.shared.up.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl RedisBus {
    /// Starts the publisher and the subscriber tasks (on the current Tokio runtime). Nothing
    /// waits for Redis: while it is away, the instance serves its own clients.
    /// `stream_cap`: the events of each class kept in Redis (`actors.classroom_ring_size`).
    pub fn start(
        cluster: Arc<Cluster>,
        settings: &RedisSettings,
        stream_cap: usize,
    ) -> Arc<RedisBus> {
        let shared = Arc::new(Shared {
            cluster,
            unsubscribe_after: Duration::from_secs(settings.unsubscribe_after_secs),
            reconnect_max: Duration::from_millis(settings.reconnect_max_ms.max(1)),
            sink: OnceLock::new(),
            sessions: Mutex::new(Vec::new()),
            seqs: Mutex::new(HashMap::new()),
            restarts: Mutex::new(BTreeSet::new()),
            stream_cap: stream_cap.max(1),
            stream_ttl_ms: settings.class_stream_ttl_secs.max(1).saturating_mul(1000),
            up: AtomicBool::new(false),
            first_try: watch::Sender::new(false),
            counters: Counters::default(),
            lag: Histogram::new(LAG_SECONDS_BUCKETS),
        });
        let (queue, queued) = mpsc::channel(settings.publish_queue.max(1));
        let (control, watches) = mpsc::channel(CONTROL_QUEUE);
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(publisher::run(
            shared.clone(),
            queued,
            settings.publish_batch.max(1),
            stopped.clone(),
        ));
        tokio::spawn(subscriber::run(shared.clone(), watches, stopped));
        Arc::new(RedisBus {
            shared,
            queue,
            control,
            stop,
        })
    }

    /// Waits (at most `limit`) for the first subscription attempt: an instance that starts
    /// while Redis answers is subscribed before it serves, so its first requests already take
    /// the one delivery path (and `/readyz` says ready). `true` if subscribed.
    pub async fn first_subscription(&self, limit: Duration) -> bool {
        let mut tried = self.shared.first_try.subscribe();
        let _ = tokio::time::timeout(limit, tried.wait_for(|done| *done)).await;
        self.shared.up.load(Ordering::Acquire)
    }

    /// The lag histogram (receive time − publish time, in seconds), for `/metrics`.
    pub fn lag_histogram(&self) -> Histogram {
        self.shared.lag.clone()
    }

    /// Numbers the message of `channel` and queues it; `false` if the queue is full (the number
    /// is used all the same: receivers see the gap). `direct`: delivered here already.
    fn enqueue<B: serde::Serialize>(&self, channel: Channel, body: &B, direct: bool) -> bool {
        let mut seqs = self.shared.seqs.lock().unwrap_or_else(|p| p.into_inner());
        let seq = seqs.entry(channel).or_insert(0);
        *seq += 1;
        let envelope = Envelope {
            epoch: None,
            offset: None,
            origin: self.shared.cluster.instance_id().into(),
            seq: *seq,
            at: crate::domain::time::now_ms(),
            direct,
            body,
        };
        let payload = match serde_json::to_string(&envelope) {
            Ok(payload) => payload,
            Err(e) => {
                tracing::error!(error = %e, "serialising a bus message failed");
                return false;
            }
        };
        match self.queue.try_send(Outgoing {
            channel,
            payload,
            direct,
        }) {
            Ok(()) => true,
            Err(_) => {
                self.shared
                    .counters
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                if let Channel::Class(id) = channel {
                    // Still under `seqs`: no later message of the class is queued before this.
                    self.shared.owe_restarts([id]);
                }
                false
            }
        }
    }
}

impl Shared {
    fn channel_name(&self, channel: Channel) -> String {
        match channel {
            Channel::Class(id) => self.cluster.key(&format!("class:{}", id.0)),
            Channel::Sessions => self.cluster.key("sessions"),
        }
    }

    /// The class of a channel name of ours (`None` for the sessions channel or a stranger).
    fn class_of(&self, name: &str) -> Option<ClassroomId> {
        let rest = name.strip_prefix(self.cluster.prefix())?;
        let id = rest.strip_prefix(":class:")?;
        id.parse().ok().map(ClassroomId)
    }

    /// The classes whose stream begins a new epoch at the next pipeline.
    fn owe_restarts(&self, classes: impl IntoIterator<Item = ClassroomId>) {
        let mut restarts = self.restarts.lock().unwrap_or_else(|p| p.into_inner());
        restarts.extend(classes);
    }

    fn take_restarts(&self) -> BTreeSet<ClassroomId> {
        let mut restarts = self.restarts.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *restarts)
    }

    fn sink(&self) -> Option<Arc<dyn EventSink>> {
        self.sink.get().and_then(Weak::upgrade)
    }

    fn deliver(&self, classroom: ClassroomId, event: Arc<ClassEvent>, pos: Option<StreamPos>) {
        if let Some(sink) = self.sink() {
            self.counters.received.fetch_add(1, Ordering::Relaxed);
            sink.deliver(classroom, event, pos);
        }
    }

    /// The class (or every class, `None`) here reloads and restarts its stream.
    fn resync(&self, classroom: Option<ClassroomId>) {
        if let Some(sink) = self.sink() {
            self.counters.resyncs.fetch_add(1, Ordering::Relaxed);
            sink.resync(classroom);
        }
    }

    fn session_sinks(&self) -> Vec<Arc<dyn SessionSink>> {
        let sinks = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sinks.iter().filter_map(Weak::upgrade).collect()
    }

    fn sessions_ended(&self, ended: &SessionEnded) {
        for sink in self.session_sinks() {
            sink.session_ended(ended);
        }
    }

    /// Invalidations may have been missed: every session cache here is emptied.
    fn sessions_unknown(&self) {
        for sink in self.session_sinks() {
            sink.sessions_unknown();
        }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Release);
    }
}

impl EventBus for RedisBus {
    fn publish(&self, classroom: ClassroomId, event: Arc<ClassEvent>) {
        let degraded = !self.shared.up.load(Ordering::Acquire);
        let queued = self.enqueue(Channel::Class(classroom), event.as_ref(), degraded);
        if degraded {
            // No subscription: this instance's clients are served directly (without a place in
            // the shared stream: the class numbers it in an epoch of its own); the class resyncs
            // when the subscription returns.
            self.shared.deliver(classroom, event, None);
        } else if !queued {
            // It will not come back from Redis: the class reloads what the database has.
            self.shared.resync(Some(classroom));
        }
    }

    fn attach(&self, sink: Weak<dyn EventSink>) {
        let _ = self.shared.sink.set(sink);
    }

    fn publish_session_ended(&self, ended: SessionEnded) {
        // Here at once, whatever Redis does; the others on receipt.
        self.shared.sessions_ended(&ended);
        self.enqueue(Channel::Sessions, &ended, true);
    }

    fn attach_sessions(&self, sink: Weak<dyn SessionSink>) {
        let mut sinks = self
            .shared
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        sinks.push(sink);
    }

    fn watch_class(&self, classroom: ClassroomId) -> Option<oneshot::Receiver<()>> {
        if !self.shared.up.load(Ordering::Acquire) {
            return None;
        }
        let (subscribed, rx) = oneshot::channel();
        self.control
            .try_send(Watch {
                classroom,
                subscribed,
            })
            .ok()?;
        Some(rx)
    }

    fn stream_head(&self, classroom: ClassroomId) -> BoxFuture<'static, Option<StreamPos>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            // Without the subscription the class would not receive the stream's events.
            if !shared.up.load(Ordering::Acquire) {
                return None;
            }
            shared.stream_head(classroom).await
        })
    }

    fn recent_events(
        &self,
        classroom: ClassroomId,
        epoch: u64,
        after: u64,
        upto: u64,
    ) -> BoxFuture<'static, Option<Vec<(u64, ClassEvent)>>> {
        let shared = self.shared.clone();
        Box::pin(async move { shared.recent_events(classroom, epoch, after, upto).await })
    }

    fn shutdown(&self) {
        self.stop.send_replace(true);
    }

    fn stats(&self) -> BusStats {
        let c = &self.shared.counters;
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        BusStats {
            published: load(&c.published),
            received: load(&c.received),
            dropped_queue_full: load(&c.dropped_queue_full),
            dropped_redis_error: load(&c.dropped_redis_error),
            duplicates: load(&c.duplicates),
            gaps: load(&c.gaps),
            reconnects: load(&c.reconnects),
            resyncs: load(&c.resyncs),
            subscription_up: Some(self.shared.up.load(Ordering::Acquire)),
        }
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Waits `delay`, or less if `stopped` says stop; `true` if it is time to stop.
async fn sleep_or_stop(delay: Duration, stopped: &mut watch::Receiver<bool>) -> bool {
    if *stopped.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = stopped.changed() => true,
    }
}
