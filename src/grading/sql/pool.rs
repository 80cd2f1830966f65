//! The SQL grader's own threads: a few blocking threads fed by a bounded queue, so that a slow
//! query occupies one of them and never an actor's arbiter or an HTTP worker. A full queue is
//! answered at once (the caller answers 503), and a caller waits for its result with a timeout.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("the grading queue is full")]
    Busy,
    #[error("no answer from the grading threads in time")]
    TimedOut,
    #[error("the grading threads have stopped")]
    Stopped,
}

/// Dropping the last handle closes the queue: each thread finishes its job and exits.
#[derive(Debug, Clone)]
pub struct GradingPool {
    tx: SyncSender<Job>,
}

impl GradingPool {
    /// `threads` threads (at least one) and at most `queue` jobs waiting for them.
    pub fn start(threads: usize, queue: usize) -> std::io::Result<GradingPool> {
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("sql-grader-{i}"))
                .spawn(move || work(&rx))?;
        }
        Ok(GradingPool { tx })
    }

    /// Runs `f` on a grading thread; `Busy` at once when the queue is full, `TimedOut` when no
    /// result came within `wait` (queueing included). A job whose caller gave up is skipped.
    pub async fn run<T, F>(&self, f: F, wait: Duration) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            if reply.is_closed() {
                return;
            }
            let _ = reply.send(f());
        });
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(PoolError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(PoolError::Stopped),
        }
        match tokio::time::timeout(wait, answer).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(PoolError::Stopped),
            Err(_) => Err(PoolError::TimedOut),
        }
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job, not while running it.
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else {
            return;
        };
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!("a grading job panicked; the thread goes on");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_refuses_past_the_queue() {
        let pool = GradingPool::start(1, 1).unwrap();
        assert_eq!(pool.run(|| 2 + 2, Duration::from_secs(5)).await, Ok(4));
        // Hold the only thread, fill the one queue slot: the next job is refused at once.
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = oneshot::channel::<()>();
        let busy = pool.clone();
        let first = tokio::spawn(async move {
            busy.run(
                move || {
                    let _ = started_tx.send(());
                    let _ = hold.recv();
                    1
                },
                Duration::from_secs(30),
            )
            .await
        });
        started.await.unwrap();
        // This one takes the queue's only slot (and gives up waiting: it will be skipped)…
        let gave_up = pool.run(|| 3, Duration::from_millis(10)).await;
        assert_eq!(gave_up, Err(PoolError::TimedOut));
        // …so the next is refused at once.
        assert_eq!(
            pool.run(|| 4, Duration::from_secs(5)).await,
            Err(PoolError::Busy)
        );
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(1));
        // The thread still has to take the abandoned job out of the queue (and skip it) before
        // the slot is free again: until then a job is refused, after it one runs.
        let mut outcome = Err(PoolError::Busy);
        for _ in 0..500 {
            outcome = pool.run(|| 5, Duration::from_secs(5)).await;
            if outcome != Err(PoolError::Busy) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(outcome, Ok(5));
    }

    #[tokio::test]
    async fn a_caller_that_waits_too_long_gets_timed_out() {
        let pool = GradingPool::start(1, 4).unwrap();
        let r = pool
            .run(
                || std::thread::sleep(Duration::from_millis(300)),
                Duration::from_millis(20),
            )
            .await;
        assert_eq!(r, Err(PoolError::TimedOut));
        // The thread survives and serves the next job.
        assert_eq!(pool.run(|| 7, Duration::from_secs(5)).await, Ok(7));
    }

    #[tokio::test]
    async fn a_panicking_job_does_not_kill_the_thread() {
        let pool = GradingPool::start(1, 4).unwrap();
        let r: Result<(), _> = pool.run(|| panic!("boom"), Duration::from_secs(5)).await;
        assert_eq!(r, Err(PoolError::Stopped));
        assert_eq!(pool.run(|| 8, Duration::from_secs(5)).await, Ok(8));
    }
}
