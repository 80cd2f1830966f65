//! The rate limit's window: the accepted submissions of the last hour, rebuilt from the database
//! when the actor starts and at every reload.

use std::collections::VecDeque;

use super::{Pending, StudentActor};
use crate::metrics::Limit;

pub const HOUR_MS: i64 = 3_600_000;
const MINUTE_MS: i64 = 60_000;

impl StudentActor {
    /// Gives back the rate-limit slot of a submission the database did not store (writer full,
    /// refused, shutting down): the student will resend it, and must not be charged twice.
    pub(super) fn release_rate_slot(&mut self, at_ms: i64) {
        if let Some(i) = self.recent_submissions.iter().rposition(|t| *t == at_ms) {
            self.recent_submissions.remove(i);
        }
    }

    /// Seconds until the oldest submission of the window leaves it, if the window is full (a
    /// refusal, counted for `/metrics`).
    pub(super) fn rate_limited(&mut self, now: i64) -> Option<u64> {
        let limited = window_full(
            &mut self.recent_submissions,
            now,
            HOUR_MS,
            self.rate_limit_per_hour,
        );
        if limited.is_some() {
            self.refusals.count(Limit::Submissions);
        }
        limited
    }

    /// Seconds until a hint reveal is allowed again, if the student asked
    /// `hint_reveals_per_minute` of them in the last minute; otherwise counts this one. Every
    /// request counts, one already revealed too: each costs a turn of the actor.
    pub(super) fn hint_reveal_limited(&mut self, now: i64) -> Option<u64> {
        let max = self.hint_reveals_per_minute;
        let limited = window_full(&mut self.recent_reveals, now, MINUTE_MS, max);
        if limited.is_none() {
            self.recent_reveals.push_back(now);
        }
        limited
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

/// Seconds until the oldest time of a sliding window of `window_ms` leaves it, if the window
/// already holds `max` times (older times are dropped first).
fn window_full(times: &mut VecDeque<i64>, now: i64, window_ms: i64, max: u32) -> Option<u64> {
    while times.front().is_some_and(|t| now - t >= window_ms) {
        times.pop_front();
    }
    if times.len() >= max as usize {
        let oldest = times.front().copied().unwrap_or(now);
        Some(((oldest + window_ms - now).max(1000) / 1000) as u64)
    } else {
        None
    }
}
