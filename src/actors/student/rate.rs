//! The rate limit's window: the accepted submissions of the last hour, rebuilt from the database
//! when the actor starts and at every reload.

use super::{Pending, StudentActor};

pub const HOUR_MS: i64 = 3_600_000;

impl StudentActor {
    /// Gives back the rate-limit slot of a submission the database did not store (writer full,
    /// refused, shutting down): the student will resend it, and must not be charged twice.
    pub(super) fn release_rate_slot(&mut self, at_ms: i64) {
        if let Some(i) = self.recent_submissions.iter().rposition(|t| *t == at_ms) {
            self.recent_submissions.remove(i);
        }
    }

    /// Seconds until the oldest submission of the window leaves it, if the window is full.
    pub(super) fn rate_limited(&mut self, now: i64) -> Option<u64> {
        while self
            .recent_submissions
            .front()
            .is_some_and(|t| now - t >= HOUR_MS)
        {
            self.recent_submissions.pop_front();
        }
        if self.recent_submissions.len() >= self.rate_limit_per_hour as usize {
            let oldest = self.recent_submissions.front().copied().unwrap_or(now);
            Some(((oldest + HOUR_MS - now).max(1000) / 1000) as u64)
        } else {
            None
        }
    }

    /// The rate window from the database's attempts of the last hour, plus the submissions
    /// accepted since and not yet written (queued).
    pub(super) fn rebuild_rate_window(&mut self, stored: Vec<i64>) {
        let mut window: Vec<i64> = stored;
        window.extend(self.queue.iter().filter_map(|p| match p {
            Pending::Attempt { at_ms, .. } => Some(*at_ms),
            Pending::Hint { .. } => None,
        }));
        window.sort_unstable();
        self.recent_submissions = window.into();
    }
}
