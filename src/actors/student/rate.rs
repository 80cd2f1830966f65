//! The rate limits: the accepted submissions of the last hour (rebuilt from the database when the
//! actor starts and at every reload) and the hint reveals of the last minute.
//!
//! With Redis the same windows are counted by every instance (`cluster::limits`): the shared
//! window decides first — it knows every instance's submissions, and which attempt ids it already
//! counted (a resend is never refused) —, then this actor's own window, which only holds what
//! this instance saw and the database had, so it refuses nothing the shared one would admit
//! unless Redis lost its count. The mailbox keeps turning while Redis answers; a resend arriving
//! meanwhile waits for the same answer. Redis failing leaves the decision to the actor's own
//! window (counted in `/metrics`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::{ActorError, HintTx, Pending, RevealHint, StudentActor, SubmitAttempt};
use crate::cluster::limits::{Decision, SharedLimits, Window};
use crate::domain::ids::AttemptId;
use crate::domain::time::now_ms;
use crate::metrics::Limit;

pub const HOUR_MS: i64 = 3_600_000;
const MINUTE_MS: i64 = 60_000;

/// Seconds to wait as the actor's windows say it: at least one.
fn wait_secs(wait: Duration) -> u64 {
    (wait.as_millis().max(1000) / 1000) as u64
}

impl StudentActor {
    /// Gives back the rate-limit slot of a submission the database did not store (writer full,
    /// refused, shutting down): the student will resend it, and must not be charged twice.
    /// `shared`: the attempt's id when this actor counted it in the shared window too.
    pub(super) fn release_rate_slot(&mut self, at_ms: i64, shared: Option<&AttemptId>) {
        if let Some(i) = self.recent_submissions.iter().rposition(|t| *t == at_ms) {
            self.recent_submissions.remove(i);
        }
        if let (Some(id), Some(limits)) = (shared, &self.limits) {
            self.take_back_shared(
                limits.clone(),
                "submissions",
                Limit::Submissions,
                id.as_str(),
            );
        }
    }

    /// Takes an event back from one of the student's shared windows, in the background.
    fn take_back_shared(&self, limits: Arc<SharedLimits>, window: &str, limit: Limit, event: &str) {
        let key = limits.user_window_key(window, self.id);
        let event = event.to_owned();
        actix::spawn(async move { limits.take_back(limit, &[key], &event).await });
    }

    /// Counts a new attempt in this actor's window and queues it.
    pub(super) fn queue_attempt(
        &mut self,
        attempt: SubmitAttempt,
        at_ms: i64,
        shared_slot: bool,
        ctx: &mut Context<Self>,
    ) {
        self.recent_submissions.push_back(at_ms);
        self.queue.push_back(Pending::Attempt {
            attempt,
            at_ms,
            shared_slot,
            stale_tries: 0,
        });
        self.process_next(ctx);
    }

    /// A new attempt under the shared rate limit (its waiter is registered): queued, or answered
    /// `RateLimited`, once Redis and this actor's window have decided.
    pub(super) fn check_shared_rate(
        &mut self,
        limits: Arc<SharedLimits>,
        attempt: SubmitAttempt,
        ctx: &mut Context<Self>,
    ) {
        self.checking += 1;
        let window = Window {
            key: limits.user_window_key("submissions", self.id),
            max: self.rate_limit_per_hour,
            length: Duration::from_millis(HOUR_MS as u64),
        };
        let event = attempt.attempt_id.as_str().to_owned();
        let shared = limits.clone();
        let decided = async move { shared.hit(Limit::Submissions, &[window], &event).await };
        ctx.spawn(decided.into_actor(self).map(move |decision, act, ctx| {
            act.checking -= 1;
            let now = now_ms();
            let id = attempt.attempt_id.clone();
            let (refused, counted) = match decision {
                Some(Decision::Refused { wait, .. }) => {
                    act.refusals.count(Limit::Submissions);
                    (Some(wait_secs(wait)), false)
                }
                // A resend of an attempt already counted (on any instance): the writer finds it
                // stored, or stores it once.
                Some(Decision::Admitted { counted: false }) => (None, false),
                Some(Decision::Admitted { counted: true }) => {
                    let local = act.rate_limited(now);
                    if local.is_some() {
                        act.take_back_shared(
                            limits,
                            "submissions",
                            Limit::Submissions,
                            id.as_str(),
                        );
                    }
                    (local, local.is_none())
                }
                None => (act.rate_limited(now), false),
            };
            if let Some(retry_after_secs) = refused {
                act.answer_waiters(&id, Err(ActorError::RateLimited { retry_after_secs }));
                return;
            }
            if act.reload_failing {
                if counted && let Some(limits) = act.limits.clone() {
                    act.take_back_shared(limits, "submissions", Limit::Submissions, id.as_str());
                }
                act.answer_waiters(&id, Err(ActorError::Reloading));
                return;
            }
            act.queue_attempt(attempt, now, counted, ctx);
        }));
    }

    /// A hint reveal under the shared limit: queued, or answered `RateLimited`, once Redis and
    /// this actor's window have decided.
    pub(super) fn check_shared_hint(
        &mut self,
        limits: Arc<SharedLimits>,
        msg: RevealHint,
        reply: HintTx,
        ctx: &mut Context<Self>,
    ) {
        self.checking += 1;
        let window = Window {
            key: limits.user_window_key("hints", self.id),
            max: self.hint_reveals_per_minute,
            length: Duration::from_millis(MINUTE_MS as u64),
        };
        let event = uuid::Uuid::new_v4().simple().to_string();
        let shared = limits.clone();
        let asked = event.clone();
        let decided = async move { shared.hit(Limit::Hints, &[window], &asked).await };
        ctx.spawn(decided.into_actor(self).map(move |decision, act, ctx| {
            act.checking -= 1;
            let now = now_ms();
            let limited = match decision {
                Some(Decision::Refused { wait, .. }) => Some(wait_secs(wait)),
                Some(Decision::Admitted { .. }) => {
                    let local = act.hint_reveal_limited(now);
                    if local.is_some() {
                        // Refusals do not count, there either.
                        act.take_back_shared(limits, "hints", Limit::Hints, &event);
                    }
                    local
                }
                None => act.hint_reveal_limited(now),
            };
            if let Some(retry_after_secs) = limited {
                let _ = reply.send(Err(ActorError::RateLimited { retry_after_secs }));
                return;
            }
            if act.reload_failing {
                let _ = reply.send(Err(ActorError::Reloading));
                return;
            }
            act.queue.push_back(Pending::Hint {
                hint_id: msg.hint_id,
                xp_cost: msg.xp_cost,
                reply,
                stale_tries: 0,
            });
            act.process_next(ctx);
        }));
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
