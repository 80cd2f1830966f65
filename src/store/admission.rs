//! Admission in front of the connection pool, for the reads that load state on demand (a
//! student's or a class's actor, a session not in the cache, an account view not in the cache).
//!
//! Without it, a burst of cold students (a whole school opening the app in the same seconds)
//! queued thousands of loads in sqlx's pool, inside each load's own time limit
//! (`actors.load_timeout_ms`). Once the queue held more than that limit's worth of work, every
//! load reached a connection with its time nearly spent and was cut in the middle of its reads:
//! the database worked for nobody and the server still answered 503 a minute after the burst
//! (the goose `catalogue` runs of 2026-12-02, docs/benchmarks.md). Here a load takes a turn
//! first, before its time limit starts: at most `database.max_waiting` wait, first come first
//! served, each at most `database.acquire_timeout_secs`, and past either bound the load is
//! refused at once (503 with Retry-After). What gets a turn has its whole time to finish, and
//! the queue drains.
//!
//! One pooled connection is left outside the admission for the attempt writer, so that
//! submissions never queue behind reads. No load takes a turn while holding one.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

#[derive(Debug)]
pub struct Admission {
    permits: Semaphore,
    waiting: AtomicUsize,
    max_waiting: usize,
    wait: Duration,
    /// Refused because `max_waiting` loads were already waiting.
    refused_full: AtomicU64,
    /// Refused because no turn came within `wait`.
    refused_late: AtomicU64,
}

/// The right to use the pool for one load; dropping it lets the next waiter in.
#[derive(Debug)]
pub struct Admitted<'a> {
    _permit: SemaphorePermit<'a>,
}

/// Leaves the waiting count when the waiter stops waiting, admitted, timed out or cancelled.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Admission {
    /// `connections`: the pool's size (one is kept for the writer); at most `max_waiting`
    /// loads wait, each at most `wait`.
    pub fn new(connections: u32, max_waiting: usize, wait: Duration) -> Admission {
        let permits = (connections as usize).saturating_sub(1).max(1);
        Admission {
            permits: Semaphore::new(permits),
            waiting: AtomicUsize::new(0),
            max_waiting,
            wait,
            refused_full: AtomicU64::new(0),
            refused_late: AtomicU64::new(0),
        }
    }

    /// Waits for a turn; `PoolTimedOut` (answered 503 with Retry-After) when too many already
    /// wait or the turn does not come within the wait.
    pub async fn admit(&self) -> Result<Admitted<'_>, sqlx::Error> {
        if let Ok(permit) = self.permits.try_acquire() {
            return Ok(Admitted { _permit: permit });
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            self.refused_full.fetch_add(1, Ordering::Relaxed);
            return Err(sqlx::Error::PoolTimedOut);
        }
        let _waiting = Waiting(&self.waiting);
        match tokio::time::timeout(self.wait, self.permits.acquire()).await {
            Ok(Ok(permit)) => Ok(Admitted { _permit: permit }),
            Ok(Err(_closed)) => Err(sqlx::Error::PoolClosed),
            Err(_elapsed) => {
                self.refused_late.fetch_add(1, Ordering::Relaxed);
                Err(sqlx::Error::PoolTimedOut)
            }
        }
    }

    /// Loads waiting for a turn now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Loads refused so far: (`max_waiting` already waiting, no turn within the wait).
    pub fn refused(&self) -> (u64, u64) {
        (
            self.refused_full.load(Ordering::Relaxed),
            self.refused_late.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_the_waiting_room_the_next_load_is_refused_at_once() {
        // A pool of 2 connections: one turn (the other connection is the writer's).
        let admission = std::sync::Arc::new(Admission::new(2, 1, Duration::from_secs(30)));
        let first = admission.admit().await.expect("a free turn");
        let waiter = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.admit().await.map(|_| ()) })
        };
        while admission.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        let started = std::time::Instant::now();
        let refused = admission.admit().await;
        assert!(matches!(refused, Err(sqlx::Error::PoolTimedOut)));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "refused without waiting"
        );
        assert_eq!(admission.refused(), (1, 0));
        drop(first);
        waiter
            .await
            .unwrap()
            .expect("the waiter gets the freed turn");
        assert_eq!(admission.waiting(), 0);
    }

    #[tokio::test]
    async fn a_wait_past_its_limit_is_refused_and_leaves_the_room() {
        let admission = Admission::new(1, 10, Duration::from_millis(20));
        let _held = admission.admit().await.expect("a free turn");
        assert!(matches!(
            admission.admit().await,
            Err(sqlx::Error::PoolTimedOut)
        ));
        assert_eq!(admission.waiting(), 0);
        assert_eq!(admission.refused(), (0, 1));
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaves_the_room() {
        let admission = Admission::new(1, 1, Duration::from_secs(30));
        let held = admission.admit().await.expect("a free turn");
        let cancelled = tokio::time::timeout(Duration::from_millis(10), admission.admit()).await;
        assert!(cancelled.is_err(), "still waiting when cancelled");
        assert_eq!(admission.waiting(), 0);
        drop(held);
        admission.admit().await.expect("the turn is free again");
    }
}
