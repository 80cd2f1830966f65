//! Student news between instances: when an instance commits a change of a student's state (an
//! attempt, a hint reveal), it says so on one Redis channel, `{prefix}:students`; every instance
//! listens, and the one that runs an actor for that student refreshes it from the database and
//! pushes the attempt's answer to the student's sockets it holds. So a student's HTTP submit on
//! A reaches their socket on B, and B's next change is computed on the current state.
//!
//! Correctness never depends on this channel: the database refuses a change computed on a stale
//! base (docs/architecture.md, "One writer per student"). What the channel buys is freshness:
//! reads and pushes on the other instances at once, and fewer changes computed twice.
//!
//! Bounded everywhere: news waits in a queue of `QUEUE` (full → dropped and counted), is published
//! in pipelines of at most `PIPELINE`, each bounded by `redis.command_timeout_ms` (failed → dropped
//! and counted); the listener reconnects with backoff (100 ms doubling to 5 s), and after a
//! reconnect every local student actor refreshes (it may have missed news meanwhile).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Cluster;

/// News waiting to be published.
const QUEUE: usize = 4096;
/// News published in one round trip.
const PIPELINE: usize = 256;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A change of one student's state committed by the instance `origin`. `answer`: the attempt's
/// answer as JSON (absent for a hint reveal), and the socket on `origin` that sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StudentNews {
    pub origin: String,
    pub student: i64,
    #[serde(default)]
    pub answer: Option<String>,
}

/// Who hears the news on this instance (the actor registry).
pub trait StudentNewsSink: Send + Sync {
    /// Another instance changed this student's state.
    fn student_news(&self, news: StudentNews);
    /// The listener (re)connected: news may have been missed, every local student refreshes.
    fn student_news_resync(&self);
}

/// What the link did so far (`/metrics`).
#[derive(Debug, Default)]
pub struct StudentLinkStats {
    pub published: AtomicU64,
    pub received: AtomicU64,
    pub dropped: AtomicU64,
    pub reconnects: AtomicU64,
}

pub struct StudentLink {
    cluster: Arc<Cluster>,
    tx: mpsc::Sender<String>,
    stats: Arc<StudentLinkStats>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for StudentLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StudentLink").finish_non_exhaustive()
    }
}

impl StudentLink {
    /// Starts the publisher and the listener (on the current tokio runtime); `sink` hears the
    /// news of the other instances.
    pub fn start(cluster: Arc<Cluster>, sink: Weak<dyn StudentNewsSink>) -> Arc<StudentLink> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(StudentLinkStats::default());
        let channel = cluster.key("students");
        let publisher = tokio::spawn(publish(cluster.clone(), channel.clone(), rx, stats.clone()));
        let listener = tokio::spawn(listen(cluster.clone(), channel, sink, stats.clone()));
        Arc::new(StudentLink {
            cluster,
            tx,
            stats,
            tasks: Mutex::new(vec![publisher, listener]),
        })
    }

    pub fn instance_id(&self) -> &str {
        self.cluster.instance_id()
    }

    /// Tells the other instances (never waits: a full queue drops the news, counted).
    pub fn tell(&self, student: i64, answer: Option<String>) {
        let news = StudentNews {
            origin: self.cluster.instance_id().to_owned(),
            student,
            answer,
        };
        let Ok(text) = serde_json::to_string(&news) else {
            return;
        };
        if self.tx.try_send(text).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records (`online`) or removes this instance among those holding the student's sockets:
    /// `{prefix}:online:{student}`, a sorted set of instance ids scored by when their record
    /// expires (`ttl` from now; refreshed while the sockets are open, so a crashed instance stops
    /// counting). Errors are returned to be ignored: presence then falls back to this instance.
    pub async fn mark_online(
        &self,
        student: i64,
        online: bool,
        ttl: Duration,
    ) -> Result<(), super::ClusterError> {
        let key = self.cluster.key(&format!("online:{student}"));
        let me = self.cluster.instance_id().to_owned();
        let expires = crate::domain::time::now_ms() + ttl.as_millis() as i64;
        self.cluster
            .run(|mut conn| async move {
                let mut pipe = redis::pipe();
                if online {
                    pipe.cmd("ZADD").arg(&key).arg(expires).arg(&me).ignore();
                    pipe.cmd("PEXPIRE")
                        .arg(&key)
                        .arg(ttl.as_millis() as u64)
                        .ignore();
                } else {
                    pipe.cmd("ZREM").arg(&key).arg(&me).ignore();
                }
                pipe.query_async::<()>(&mut conn).await
            })
            .await
    }

    /// Whether another instance holds a socket of the student (a record not expired).
    pub async fn online_elsewhere(&self, student: i64) -> Result<bool, super::ClusterError> {
        let key = self.cluster.key(&format!("online:{student}"));
        let now = crate::domain::time::now_ms();
        let holders: Vec<String> = self
            .cluster
            .run(|mut conn| async move {
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&key)
                    .arg(now)
                    .arg("+inf")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(holders.iter().any(|h| h != self.cluster.instance_id()))
    }

    pub fn stats(&self) -> &StudentLinkStats {
        &self.stats
    }

    /// Stops both tasks (at shutdown).
    pub fn stop(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            task.abort();
        }
    }
}

impl Drop for StudentLink {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn publish(
    cluster: Arc<Cluster>,
    channel: String,
    mut rx: mpsc::Receiver<String>,
    stats: Arc<StudentLinkStats>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < PIPELINE {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        let sent = cluster
            .run(|mut conn| {
                let mut pipe = redis::pipe();
                for text in &batch {
                    pipe.cmd("PUBLISH").arg(&channel).arg(text).ignore();
                }
                async move { pipe.query_async::<()>(&mut conn).await }
            })
            .await;
        match sent {
            Ok(()) => stats.published.fetch_add(n, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!(error = %e, news = n, "student news not published");
                stats.dropped.fetch_add(n, Ordering::Relaxed)
            }
        };
    }
}

async fn listen(
    cluster: Arc<Cluster>,
    channel: String,
    sink: Weak<dyn StudentNewsSink>,
    stats: Arc<StudentLinkStats>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut connected_before = false;
    loop {
        let subscribed = tokio::time::timeout(cluster.connect_timeout(), async {
            let mut pubsub = cluster.client().get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        match subscribed {
            Ok(Ok(pubsub)) => {
                backoff = BACKOFF_MIN;
                if connected_before {
                    stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("student news: listening again");
                }
                // The first subscription too: news committed before it may have been missed.
                match sink.upgrade() {
                    Some(sink) => sink.student_news_resync(),
                    None => return,
                }
                connected_before = true;
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    let Ok(text) = msg.get_payload::<String>() else {
                        continue;
                    };
                    let Ok(news) = serde_json::from_str::<StudentNews>(&text) else {
                        continue;
                    };
                    if news.origin == cluster.instance_id() {
                        continue;
                    }
                    stats.received.fetch_add(1, Ordering::Relaxed);
                    match sink.upgrade() {
                        Some(sink) => sink.student_news(news),
                        None => return,
                    }
                }
                tracing::warn!("student news: the subscription ended; reconnecting");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "student news: cannot subscribe"),
            Err(_) => tracing::warn!("student news: subscribing timed out"),
        }
        if sink.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}
