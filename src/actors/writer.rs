//! `AttemptWriter`: the group commit. Every student actor hands its rows here; a batch closes at
//! `batch_max_rows` items or `batch_max_wait_ms` after its first, whichever comes first, and is
//! written in one transaction. Each submitter is answered only after its batch committed.
//!
//! Failure handling: while the database is unreachable (connection errors) a batch is retried
//! with backoff for `retry_window_ms`, the bounded queue filling meanwhile (full → 503 at once);
//! then its submitters get an error. A batch the database refuses (a constraint, a trigger) is
//! split and each item retried alone, so one bad row fails only its own submitter.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::WriterSettings;
use crate::store::Store;
use crate::store::progress::BatchReport;
use crate::store::progress::{ItemResult, WriteItem};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("the write queue is full")]
    QueueFull,
    #[error("the writer is shutting down")]
    Closed,
    #[error("the database did not commit the batch")]
    Failed,
    /// The database refused the item's data itself (SQLSTATE class 22, e.g. text it cannot
    /// store): sending it again cannot succeed, so it is not answered as "retry later".
    #[error("the database cannot store this item's data")]
    NotStorable,
}

type Reply = oneshot::Sender<Result<ItemResult, WriteError>>;

struct Job {
    item: WriteItem,
    reply: Reply,
}

/// Upper bounds of the batch-size histogram buckets (the last bucket is +Inf).
const BATCH_SIZE_BUCKETS: [f64; 8] = [1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 500.0];
/// Upper bounds, in seconds, of the flush-latency histogram buckets.
const FLUSH_SECONDS_BUCKETS: [f64; 9] = [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

/// The writer's instruments (in the app's metrics registry; read by `/metrics`, the tests and
/// the benchmark). Cheap to clone: every field shares its value.
#[derive(Debug, Clone)]
pub struct WriterMetrics {
    /// Items (attempts and hint reveals) handed to the writer's queue.
    pub items_accepted: Counter,
    /// Items (attempts and hint reveals) committed.
    pub items_written: Counter,
    /// Database rows inserted or updated by committed batches.
    pub rows_written: Counter,
    pub commits: Counter,
    pub failed_commits: Counter,
    /// Attempts found already stored (resends).
    pub duplicates: Counter,
    /// Items refused because the queue was full.
    pub rejected_queue_full: Counter,
    /// Items the database refused as computed on a stale base of their student (another
    /// instance changed the student meanwhile); their actor computes them again.
    pub stale: Counter,
    pub largest_batch: Gauge,
    /// Items per committed batch.
    pub batch_size: Histogram,
    /// Time to write and commit one batch.
    pub flush_seconds: Histogram,
    /// Time a batch waited for its pooled connection (and BEGIN).
    pub acquire_seconds: Histogram,
}

impl Default for WriterMetrics {
    fn default() -> Self {
        WriterMetrics {
            items_accepted: Counter::default(),
            items_written: Counter::default(),
            rows_written: Counter::default(),
            commits: Counter::default(),
            failed_commits: Counter::default(),
            duplicates: Counter::default(),
            rejected_queue_full: Counter::default(),
            stale: Counter::default(),
            largest_batch: Gauge::default(),
            batch_size: Histogram::new(BATCH_SIZE_BUCKETS),
            flush_seconds: Histogram::new(FLUSH_SECONDS_BUCKETS),
            acquire_seconds: Histogram::new(FLUSH_SECONDS_BUCKETS),
        }
    }
}

impl WriterMetrics {
    /// Adds every instrument to `registry` (counters get their `_total` suffix there).
    pub fn register(&self, registry: &mut Registry) {
        let counters = [
            (
                "nsi_writer_items_accepted",
                "Attempts and hint reveals handed to the writer's queue.",
                &self.items_accepted,
            ),
            (
                "nsi_writer_items_written",
                "Attempts and hint reveals committed by the writer.",
                &self.items_written,
            ),
            (
                "nsi_writer_rows_written",
                "Database rows inserted or updated by committed batches.",
                &self.rows_written,
            ),
            ("nsi_writer_commits", "Batches committed.", &self.commits),
            (
                "nsi_writer_failed_commits",
                "Batch commits that failed (each retry counts).",
                &self.failed_commits,
            ),
            (
                "nsi_writer_duplicates",
                "Resent attempts found already stored.",
                &self.duplicates,
            ),
            (
                "nsi_writer_rejected_queue_full",
                "Items refused because the write queue was full (answered 503).",
                &self.rejected_queue_full,
            ),
            (
                "nsi_writer_stale",
                "Items refused as computed on a stale base of their student (computed again).",
                &self.stale,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "nsi_writer_largest_batch",
            "Largest batch committed so far.",
            self.largest_batch.clone(),
        );
        registry.register(
            "nsi_writer_batch_size",
            "Items per committed batch.",
            self.batch_size.clone(),
        );
        registry.register(
            "nsi_writer_flush_seconds",
            "Time to write and commit one batch.",
            self.flush_seconds.clone(),
        );
        registry.register(
            "nsi_db_acquire_seconds",
            "Time the writer's batches waited for a pooled database connection (BEGIN included).",
            self.acquire_seconds.clone(),
        );
    }

    fn record_commit(&self, items: usize, report: &BatchReport, elapsed: Duration) {
        self.commits.inc();
        self.items_written.inc_by(items as u64);
        self.rows_written.inc_by(report.rows);
        self.acquire_seconds.observe(report.acquire.as_secs_f64());
        self.largest_batch
            .inner()
            .fetch_max(items as i64, Ordering::Relaxed);
        self.batch_size.observe(items as f64);
        self.flush_seconds.observe(elapsed.as_secs_f64());
    }

    /// Mean items per commit so far.
    pub fn mean_batch(&self) -> f64 {
        let commits = self.commits.get();
        if commits == 0 {
            0.0
        } else {
            self.items_written.get() as f64 / commits as f64
        }
    }
}

/// What actors hold to hand rows to the writer.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Job>,
    metrics: WriterMetrics,
}

impl std::fmt::Debug for WriterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterHandle")
            .field("queue_depth", &self.queue_depth())
            .finish()
    }
}

impl WriterHandle {
    /// Queues an item without waiting; the receiver resolves once its batch has committed (or
    /// failed). A full queue is refused at once: the caller answers 503 with `retry_after`.
    pub fn submit(
        &self,
        item: WriteItem,
    ) -> Result<oneshot::Receiver<Result<ItemResult, WriteError>>, WriteError> {
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Job { item, reply }) {
            Ok(()) => {
                self.metrics.items_accepted.inc();
                Ok(rx)
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.rejected_queue_full.inc();
                Err(WriteError::QueueFull)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(WriteError::Closed),
        }
    }

    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub fn metrics(&self) -> &WriterMetrics {
        &self.metrics
    }
}

/// The writer's phase. `Draining` (the server is stopping): batches no longer wait for more
/// items, so the requests still in flight get their answers quickly. `Closing`: no new items;
/// what is queued is committed, then the task ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Running,
    Draining,
    Closing,
}

pub struct AttemptWriter {
    handle: WriterHandle,
    phase: watch::Sender<Phase>,
    task: JoinHandle<()>,
}

/// Switches a running writer to draining (see [`Phase`]); cheap to clone.
#[derive(Clone)]
pub struct DrainSwitch(watch::Sender<Phase>);

impl DrainSwitch {
    pub fn drain(&self) {
        self.0.send_if_modified(|p| {
            let change = *p == Phase::Running;
            if change {
                *p = Phase::Draining;
            }
            change
        });
    }
}

impl AttemptWriter {
    /// Starts the writer's task; it counts into `metrics` (registered by the caller).
    pub fn start(store: Store, settings: WriterSettings, metrics: WriterMetrics) -> AttemptWriter {
        let (tx, rx) = mpsc::channel(settings.queue_capacity);
        let (phase, phase_rx) = watch::channel(Phase::Running);
        let worker = Worker {
            store,
            settings,
            metrics: metrics.clone(),
        };
        let task = tokio::spawn(worker.run(rx, phase_rx));
        AttemptWriter {
            handle: WriterHandle { tx, metrics },
            phase,
            task,
        }
    }

    pub fn handle(&self) -> WriterHandle {
        self.handle.clone()
    }

    pub fn drain_switch(&self) -> DrainSwitch {
        DrainSwitch(self.phase.clone())
    }

    /// Stops accepting items, commits everything already queued, and returns when done — or
    /// after `limit`, when the database hangs: the items left are then answered "not stored"
    /// (their senders are dropped), never acknowledged.
    pub async fn shutdown(self, limit: Duration) {
        let _ = self.phase.send(Phase::Closing);
        let mut task = self.task;
        match tokio::time::timeout(limit, &mut task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "attempt writer task failed"),
            Err(_) => {
                tracing::error!(
                    limit_secs = limit.as_secs(),
                    "attempt writer did not drain in time; its remaining items are not stored"
                );
                task.abort();
            }
        }
    }
}

/// The longest one batch's transaction may take before it counts as a lost connection: retried
/// within the retry window (its attempts are idempotent, so a commit that did happen comes back
/// as duplicates), else answered "not stored" — and since the commit may have happened all the
/// same, each submitter's actor then reloads its state from the database.
const BATCH_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
#[error("the batch's transaction took longer than {BATCH_TIMEOUT:?}")]
struct BatchTimedOut;

struct Worker {
    store: Store,
    settings: WriterSettings,
    metrics: WriterMetrics,
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<Job>, mut phase: watch::Receiver<Phase>) {
        let max_rows = self.settings.batch_max_rows.max(1);
        let max_wait = Duration::from_millis(self.settings.batch_max_wait_ms);
        let mut closed = false;
        loop {
            let current = *phase.borrow_and_update();
            if current == Phase::Closing && !closed {
                // No new items; what is queued is still received and committed below.
                rx.close();
                closed = true;
            }
            let first = if closed {
                rx.recv().await
            } else {
                tokio::select! {
                    biased;
                    changed = phase.changed() => {
                        if changed.is_err() {
                            // The AttemptWriter was dropped without shutdown: finish the queue.
                            rx.close();
                            closed = true;
                        }
                        continue;
                    }
                    job = rx.recv() => job,
                }
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + max_wait;
            while batch.len() < max_rows {
                // Whatever is already queued joins at once; then, while running, wait for more
                // until the deadline.
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        if *phase.borrow() != Phase::Running {
                            break;
                        }
                        tokio::select! {
                            job = rx.recv() => match job {
                                Some(job) => batch.push(job),
                                None => break,
                            },
                            _ = tokio::time::sleep_until(deadline) => break,
                            _ = phase.changed() => break,
                        }
                    }
                }
            }
            self.flush(batch).await;
        }
        tracing::info!("attempt writer stopped: every queued item was committed or answered");
    }

    async fn flush(&self, jobs: Vec<Job>) {
        let retry_deadline = Instant::now() + Duration::from_millis(self.settings.retry_window_ms);
        self.flush_until(jobs, retry_deadline).await
    }

    /// Commits `jobs`, retrying connection failures until `retry_deadline` (shared by the items
    /// of a refused batch retried one by one, so one bad batch cannot stall the writer for long).
    #[tracing::instrument(skip_all, fields(items = jobs.len()))]
    async fn flush_until(&self, jobs: Vec<Job>, retry_deadline: Instant) {
        let mut backoff = Duration::from_millis(25);
        let (items, replies): (Vec<WriteItem>, Vec<Reply>) =
            jobs.into_iter().map(|j| (j.item, j.reply)).unzip();
        loop {
            let started = Instant::now();
            let written = tokio::time::timeout(BATCH_TIMEOUT, self.store.write_batch(&items))
                .await
                .unwrap_or_else(|_| Err(BatchTimedOut.into()));
            match written {
                Ok((results, report)) => {
                    self.metrics
                        .record_commit(items.len(), &report, started.elapsed());
                    for (reply, result) in replies.into_iter().zip(results) {
                        match result {
                            ItemResult::Duplicate { .. } => self.metrics.duplicates.inc(),
                            ItemResult::Stale => self.metrics.stale.inc(),
                            ItemResult::Written => 0,
                        };
                        let _ = reply.send(Ok(result));
                    }
                    return;
                }
                Err(e) => {
                    self.metrics.failed_commits.inc();
                    let transient = is_transient(&e);
                    if transient && Instant::now() + backoff < retry_deadline {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            retry_in_ms = backoff.as_millis() as u64,
                            "batch commit failed; database unreachable, retrying"
                        );
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                    if !transient && items.len() > 1 {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "batch refused by the database; retrying its items one by one"
                        );
                        for (item, reply) in items.into_iter().zip(replies) {
                            if Instant::now() >= retry_deadline {
                                // A database that refuses, then hangs: do not try each of the
                                // remaining items for up to BATCH_TIMEOUT.
                                let _ = reply.send(Err(WriteError::Failed));
                                continue;
                            }
                            Box::pin(self.flush_until(vec![Job { item, reply }], retry_deadline))
                                .await;
                        }
                        return;
                    }
                    if is_data_error(&e) {
                        // The client's data, alone in its batch: a 400, not a server error. The
                        // database's message may quote the data, so it is not logged.
                        tracing::warn!(
                            items = items.len(),
                            "an item's data was refused by the database"
                        );
                        for reply in replies {
                            let _ = reply.send(Err(WriteError::NotStorable));
                        }
                        return;
                    }
                    tracing::error!(
                        error = format!("{e:#}"),
                        items = items.len(),
                        "batch not committed; its submitters get an error"
                    );
                    for reply in replies {
                        let _ = reply.send(Err(WriteError::Failed));
                    }
                    return;
                }
            }
        }
    }
}

/// Connection-level failures are worth retrying; a statement the database refused is not.
/// PostgreSQL reports some connection losses as errors: a server shutting down or restarting
/// (SQLSTATE class 57P, e.g. `57P01` when a backend is terminated), connection exceptions (class
/// 08), too many connections (53300); a deadlock or serialization failure (40P01, 40001) also
/// passes on a retry.
fn is_transient(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.is::<BatchTimedOut>()
            || match cause.downcast_ref::<sqlx::Error>() {
                Some(
                    sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Protocol(_)
                    | sqlx::Error::WorkerCrashed,
                ) => true,
                Some(sqlx::Error::Database(db)) => db.code().is_some_and(|code| {
                    code.starts_with("08")
                        || code.starts_with("57P")
                        || matches!(code.as_ref(), "53300" | "40001" | "40P01")
                }),
                _ => false,
            }
    })
}

/// A refusal of the data itself, which no retry can cure: PostgreSQL's data exceptions (SQLSTATE
/// class 22: a character the encoding cannot hold, a value out of range…) and values sqlx could
/// not encode. Validation refuses such input first (`domain::text`); this is the last guard, so
/// that the browser's outbox is told to stop resending.
pub fn is_data_error(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|cause| match cause.downcast_ref::<sqlx::Error>() {
            Some(sqlx::Error::Encode(_)) => true,
            Some(sqlx::Error::Database(db)) => db.code().is_some_and(|code| code.starts_with("22")),
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connection_errors_are_transient() {
        assert!(is_transient(&anyhow::Error::from(
            sqlx::Error::PoolTimedOut
        )));
        assert!(!is_transient(&anyhow::Error::from(
            sqlx::Error::RowNotFound
        )));
        assert!(!is_transient(&anyhow::anyhow!("other")));
        assert!(is_transient(&anyhow::Error::from(BatchTimedOut)));
        let encode = sqlx::Error::Encode("bad value".into());
        assert!(!is_transient(&anyhow::Error::from(encode)));
    }

    #[test]
    fn data_errors_are_not_storable() {
        let encode = anyhow::Error::from(sqlx::Error::Encode("bad value".into()));
        assert!(is_data_error(&encode.context("writing a batch")));
        assert!(!is_data_error(&anyhow::Error::from(
            sqlx::Error::PoolTimedOut
        )));
        assert!(!is_data_error(&anyhow::anyhow!("other")));
    }
}
