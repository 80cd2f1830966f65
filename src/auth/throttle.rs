//! Throttling of guesses: failed sign-ins per login and address, per login from every address,
//! and per client address; joins and recovery attempts per address, wrong recovery codes per class
//! and pseudonym.
//!
//! A login is locked first for the address that guesses (`auth.login_max_failures`), and for
//! everyone only past a higher count from all addresses together (`login_max_failures_global`):
//! one pupil guessing a teacher's password from home does not lock the teacher out at school,
//! while guesses spread over many addresses still meet a bound.
//!
//! With Redis (`redis.url`), every instance counts in the same windows (`cluster::limits`: one
//! atomic script checks and counts a guess in all its windows), so guesses spread over instances
//! behind a load balancer meet the same bounds; each instance also keeps its own in-process
//! windows, mirroring what it counted, and decides with them alone when Redis fails (counted in
//! `/metrics`). Without Redis the in-process windows are the only ones. Memory is bounded: a key
//! whose events are all out of the window is dropped, and past `MAX_KEYS` the keys idle the
//! longest go first.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cluster::limits::{Decision, SharedLimits, Window, retry_after_secs};
use crate::config::AuthSettings;
use crate::error::AppError;
use crate::metrics::{Limit, Refusals};

/// Keys one window may hold: 100 000 × (key + at most `max` instants) stays within a few MB.
const MAX_KEYS: usize = 100_000;
/// Prune out-of-window keys every this many calls.
const PRUNE_EVERY: u64 = 1024;

/// At most `max` events per key in any `window`.
#[derive(Debug)]
pub struct SlidingWindow {
    max: usize,
    window: Duration,
    max_keys: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    events: HashMap<String, VecDeque<Instant>>,
    calls: u64,
}

impl SlidingWindow {
    pub fn new(max: u32, window: Duration) -> SlidingWindow {
        Self::with_capacity(max, window, MAX_KEYS)
    }

    fn with_capacity(max: u32, window: Duration, max_keys: usize) -> SlidingWindow {
        SlidingWindow {
            max: max.max(1) as usize,
            window,
            max_keys: max_keys.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Records an event for `key`, unless it already has `max` in the window: then `Err(seconds
    /// to wait)`. Check and record happen under one lock, so parallel callers cannot all slip
    /// under `max`.
    pub fn check_and_hit(&self, key: &str) -> Result<(), u64> {
        let now = Instant::now();
        let mut inner = self.lock();
        self.check_locked(&mut inner, key, now)?;
        self.hit_locked(&mut inner, key, now);
        Ok(())
    }

    /// Records an event for `key` without checking (one counted by the shared windows, mirrored
    /// here for when Redis fails).
    pub fn hit(&self, key: &str) {
        let now = Instant::now();
        let mut inner = self.lock();
        self.hit_locked(&mut inner, key, now);
    }

    /// Takes back the newest event of `key` (a guess counted in advance that turned out right).
    pub fn unhit(&self, key: &str) {
        let mut inner = self.lock();
        if let Some(events) = inner.events.get_mut(key) {
            events.pop_back();
            if events.is_empty() {
                inner.events.remove(key);
            }
        }
    }

    /// Forgets `key` (a successful sign-in clears the failures of that login).
    pub fn clear(&self, key: &str) {
        self.lock().events.remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the map inconsistent: keep using it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn check_at(&self, key: &str, now: Instant) -> Result<(), u64> {
        let mut inner = self.lock();
        self.check_locked(&mut inner, key, now)
    }

    fn check_locked(&self, inner: &mut Inner, key: &str, now: Instant) -> Result<(), u64> {
        let Some(events) = inner.events.get_mut(key) else {
            return Ok(());
        };
        while events
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            events.pop_front();
        }
        if events.len() < self.max {
            return Ok(());
        }
        // Full: free again when the oldest event leaves the window. Round up, at least 1 s.
        let oldest = events.front().copied().unwrap_or(now);
        let wait = self.window.saturating_sub(now.duration_since(oldest));
        Err((wait.as_millis().div_ceil(1000) as u64).max(1))
    }

    #[cfg(test)]
    fn hit_at(&self, key: &str, now: Instant) {
        let mut inner = self.lock();
        self.hit_locked(&mut inner, key, now);
    }

    fn hit_locked(&self, inner: &mut Inner, key: &str, now: Instant) {
        inner.calls += 1;
        if inner.calls.is_multiple_of(PRUNE_EVERY)
            || (inner.events.len() >= self.max_keys && !inner.events.contains_key(key))
        {
            self.prune(inner, now);
        }
        let events = inner.events.entry(key.to_owned()).or_default();
        events.push_back(now);
        // Only the last `max` events can matter.
        while events.len() > self.max {
            events.pop_front();
        }
    }

    fn prune(&self, inner: &mut Inner, now: Instant) {
        let window = self.window;
        inner.events.retain(|_, events| {
            events
                .back()
                .is_some_and(|t| now.duration_since(*t) < window)
        });
        if inner.events.len() >= self.max_keys {
            // Still full of live keys (someone is spraying keys): drop the idlest tenth.
            let mut by_last: Vec<(Instant, String)> = inner
                .events
                .iter()
                .map(|(k, v)| (v.back().copied().unwrap_or(now), k.clone()))
                .collect();
            by_last.sort_unstable();
            let drop = (self.max_keys / 10).max(1) + inner.events.len() - self.max_keys;
            for (_, key) in by_last.into_iter().take(drop) {
                inner.events.remove(&key);
            }
        }
    }

    #[cfg(test)]
    fn key_count(&self) -> usize {
        self.lock().events.len()
    }
}

/// The throttles of the sign-in and join routes, built from `[auth]` settings.
#[derive(Debug)]
pub struct AuthThrottle {
    /// Keyed by login and address.
    login_failures_here: SlidingWindow,
    /// Keyed by login: every address together.
    login_failures: SlidingWindow,
    login_failures_by_ip: SlidingWindow,
    join_failures: SlidingWindow,
    join_attempts_by_ip: SlidingWindow,
    /// Counts what the windows refuse (`/metrics`).
    refusals: Refusals,
    /// The same windows counted by every instance, with Redis.
    shared: Option<Arc<SharedLimits>>,
}

/// One window a guess counts in, and the key it counts under there.
struct Slot<'a> {
    window: &'a SlidingWindow,
    /// The window's name in Redis keys.
    name: &'static str,
    key: &'a str,
}

/// How a guess was counted, to settle it once judged.
enum Counted {
    /// In this instance's windows only (no Redis, or Redis failed).
    Here,
    /// In the shared windows as this event, and mirrored here.
    Shared(String),
}

/// What becomes of a counted guess in one window once judged.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Settle {
    Keep,
    /// The guess does not count (it could not be judged, or others share the address).
    TakeBack,
    /// Every failure of the key is forgotten (a right guess).
    Clear,
}

fn too_many(retry_after_secs: u64) -> AppError {
    AppError::TooManyRequests { retry_after_secs }
}

impl AuthThrottle {
    /// `shared`: the limits every instance counts in together (Redis), when configured.
    pub fn new(
        settings: &AuthSettings,
        refusals: Refusals,
        shared: Option<Arc<SharedLimits>>,
    ) -> AuthThrottle {
        let login_window = Duration::from_secs(settings.login_window_secs);
        let join_window = Duration::from_secs(settings.join_window_secs);
        AuthThrottle {
            login_failures_here: SlidingWindow::new(settings.login_max_failures, login_window),
            login_failures: SlidingWindow::new(settings.login_max_failures_global, login_window),
            login_failures_by_ip: SlidingWindow::new(
                settings.login_max_failures_per_ip,
                login_window,
            ),
            join_failures: SlidingWindow::new(settings.join_max_failures, join_window),
            join_attempts_by_ip: SlidingWindow::new(settings.join_max_per_ip, join_window),
            refusals,
            shared,
        }
    }

    /// Counts a guess in every slot, or refuses it (429) and counts it nowhere: in the shared
    /// windows when Redis answers, else in this instance's.
    async fn count(&self, limit: Limit, slots: &[Slot<'_>]) -> Result<Counted, AppError> {
        if let Some(shared) = &self.shared {
            let windows: Vec<Window> = slots
                .iter()
                .map(|s| Window {
                    key: shared.window_key(s.name, s.key),
                    max: s.window.max as u32,
                    length: s.window.window,
                })
                .collect();
            let event = uuid::Uuid::new_v4().simple().to_string();
            match shared.hit(limit, &windows, &event).await {
                Some(Decision::Admitted { .. }) => {
                    for s in slots {
                        s.window.hit(s.key);
                    }
                    return Ok(Counted::Shared(event));
                }
                Some(Decision::Refused { wait, .. }) => {
                    self.refusals.count(limit);
                    return Err(too_many(retry_after_secs(wait)));
                }
                // Redis failed (counted): this instance's windows decide.
                None => {}
            }
        }
        for (i, s) in slots.iter().enumerate() {
            if let Err(wait) = s.window.check_and_hit(s.key) {
                for earlier in &slots[..i] {
                    earlier.window.unhit(earlier.key);
                }
                self.refusals.count(limit);
                return Err(too_many(wait));
            }
        }
        Ok(Counted::Here)
    }

    /// Settles a counted guess in each slot (`settle[i]` for `slots[i]`), here and, if it was
    /// counted there, in the shared windows.
    async fn settle(&self, limit: Limit, slots: &[Slot<'_>], settle: &[Settle], counted: Counted) {
        for (s, what) in slots.iter().zip(settle) {
            match what {
                Settle::Keep => {}
                Settle::TakeBack => s.window.unhit(s.key),
                Settle::Clear => s.window.clear(s.key),
            }
        }
        let (Counted::Shared(event), Some(shared)) = (counted, &self.shared) else {
            return;
        };
        let keys = |wanted: Settle| -> Vec<String> {
            slots
                .iter()
                .zip(settle)
                .filter(|(_, what)| **what == wanted)
                .map(|(s, _)| shared.window_key(s.name, s.key))
                .collect()
        };
        let (back, clear) = (keys(Settle::TakeBack), keys(Settle::Clear));
        if !back.is_empty() {
            shared.take_back(limit, &back, &event).await;
        }
        if !clear.is_empty() {
            shared.clear(limit, &clear).await;
        }
    }

    /// One guess at a login's password, `check` answering `Some` when it is right. 429 before
    /// `check` runs once the login from this address, the login from all addresses, or the
    /// address has used up its failures. Otherwise the guess counts as a failure before `check`
    /// runs (guesses sent in parallel cannot all slip under the limit); a right guess clears the
    /// login's failures and takes back the address's count of it (not its other failures: others
    /// share the address); a guess `check` could not judge (`Err`: the server busy, the database
    /// failing) is taken back, so overload never locks anyone out.
    pub async fn guess_login<T>(
        &self,
        login: &str,
        ip: IpAddr,
        check: impl Future<Output = Result<Option<T>, AppError>>,
    ) -> Result<Option<T>, AppError> {
        let ip = ip.to_string();
        // An address holds no space: the last space of the key separates the two.
        let here = format!("{login} {ip}");
        let slots = [
            Slot {
                window: &self.login_failures_here,
                name: "login_here",
                key: &here,
            },
            Slot {
                window: &self.login_failures,
                name: "login",
                key: login,
            },
            Slot {
                window: &self.login_failures_by_ip,
                name: "login_ip",
                key: &ip,
            },
        ];
        let counted = self.count(Limit::Login, &slots).await?;
        let judged = check.await;
        let settle = match &judged {
            Ok(Some(_)) => [Settle::Clear, Settle::Clear, Settle::TakeBack],
            Ok(None) => [Settle::Keep; 3],
            Err(_) => [Settle::TakeBack; 3],
        };
        self.settle(Limit::Login, &slots, &settle, counted).await;
        judged
    }

    /// Every join or recovery attempt counts against the address.
    pub async fn join_attempt(&self, ip: IpAddr) -> Result<(), AppError> {
        let ip = ip.to_string();
        let slots = [Slot {
            window: &self.join_attempts_by_ip,
            name: "join_ip",
            key: &ip,
        }];
        self.count(Limit::Join, &slots).await.map(drop)
    }

    /// One guess at the recovery code of `account` (join code + pseudonym key), counted and
    /// settled like [`Self::guess_login`]'s.
    pub async fn guess_recovery<T>(
        &self,
        account: &str,
        check: impl Future<Output = Result<Option<T>, AppError>>,
    ) -> Result<Option<T>, AppError> {
        let slots = [Slot {
            window: &self.join_failures,
            name: "recovery",
            key: account,
        }];
        let counted = self.count(Limit::Recovery, &slots).await?;
        let judged = check.await;
        let settle = match &judged {
            Ok(Some(_)) => Settle::Clear,
            Ok(None) => Settle::Keep,
            Err(_) => Settle::TakeBack,
        };
        self.settle(Limit::Recovery, &slots, &[settle], counted)
            .await;
        judged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn the_event_past_max_is_refused_until_the_oldest_leaves_the_window() {
        let w = SlidingWindow::new(3, MIN);
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(w.check_at("a", t0 + Duration::from_secs(i)).is_ok());
            w.hit_at("a", t0 + Duration::from_secs(i));
        }
        // Fourth within the window: refused, told to wait until t0 + 60 s.
        assert_eq!(w.check_at("a", t0 + Duration::from_secs(10)), Err(50));
        // Other keys are not affected.
        assert!(w.check_at("b", t0 + Duration::from_secs(10)).is_ok());
        // Once the first event is a minute old there is room for one more.
        assert!(w.check_at("a", t0 + Duration::from_secs(60)).is_ok());
        w.hit_at("a", t0 + Duration::from_secs(60));
        assert_eq!(w.check_at("a", t0 + Duration::from_secs(60)), Err(1));
        w.clear("a");
        assert!(w.check_at("a", t0 + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn check_and_hit_lets_exactly_max_through_from_many_threads() {
        let w = SlidingWindow::new(10, MIN);
        let passed: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..50)
                .map(|_| scope.spawn(|| w.check_and_hit("login").is_ok()))
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().expect("thread")))
                .sum()
        });
        assert_eq!(passed, 10);
        // A guess taken back frees its place.
        w.unhit("login");
        assert!(w.check_and_hit("login").is_ok());
        assert!(w.check_and_hit("login").is_err());
    }

    #[tokio::test]
    async fn a_guess_counts_unless_it_could_not_be_judged_and_a_right_one_clears() {
        let settings = crate::config::Settings::load_from(&Vec::<(String, String)>::new())
            .expect("default settings")
            .auth;
        let max = settings.login_max_failures as usize;
        let t = AuthThrottle::new(&settings, Refusals::default(), None);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let busy = || async { Err::<Option<()>, _>(AppError::Unauthorized) };
        let wrong = || async { Ok::<Option<()>, AppError>(None) };
        let right = || async { Ok::<_, AppError>(Some(())) };
        // Guesses the server could not judge never use up the limit.
        for _ in 0..max * 2 {
            assert!(t.guess_login("a", ip, busy()).await.is_err());
        }
        // Wrong ones do; a right one clears them.
        for _ in 0..max - 1 {
            assert!(matches!(t.guess_login("a", ip, wrong()).await, Ok(None)));
        }
        assert!(matches!(
            t.guess_login("a", ip, right()).await,
            Ok(Some(()))
        ));
        for _ in 0..max {
            assert!(matches!(t.guess_login("a", ip, wrong()).await, Ok(None)));
        }
        // Used up: refused before the check runs, even a right one.
        assert!(matches!(
            t.guess_login("a", ip, right()).await,
            Err(AppError::TooManyRequests { .. })
        ));
        assert!(matches!(
            t.guess_login("b", ip, right()).await,
            Ok(Some(()))
        ));
        // The login is locked for this address, not for another one.
        let elsewhere: IpAddr = [10, 0, 0, 2].into();
        assert!(matches!(
            t.guess_login("a", elsewhere, right()).await,
            Ok(Some(()))
        ));
        // Recovery codes the same way.
        for _ in 0..max {
            assert!(matches!(t.guess_recovery("k", wrong()).await, Ok(None)));
        }
        assert!(matches!(
            t.guess_recovery("k", right()).await,
            Err(AppError::TooManyRequests { .. })
        ));
    }

    /// Past `login_max_failures_global` failures from all addresses together, the login is locked
    /// for everyone, each address having stayed under its own limit.
    #[tokio::test]
    async fn many_addresses_meet_the_global_lock() {
        let mut settings = crate::config::Settings::load_from(&Vec::<(String, String)>::new())
            .expect("default settings")
            .auth;
        settings.login_max_failures = 3;
        settings.login_max_failures_global = 7;
        let t = AuthThrottle::new(&settings, Refusals::default(), None);
        let wrong = || async { Ok::<Option<()>, AppError>(None) };
        let right = || async { Ok::<_, AppError>(Some(())) };
        let mut failures = 0;
        for host in 1..=3u8 {
            let ip: IpAddr = [10, 0, 0, host].into();
            for _ in 0..3 {
                if failures < 7 {
                    assert!(matches!(t.guess_login("a", ip, wrong()).await, Ok(None)));
                    failures += 1;
                }
            }
        }
        let fresh: IpAddr = [10, 0, 0, 9].into();
        assert!(matches!(
            t.guess_login("a", fresh, right()).await,
            Err(AppError::TooManyRequests { .. })
        ));
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        let w = SlidingWindow::new(1, Duration::from_millis(1500));
        let t0 = Instant::now();
        w.hit_at("a", t0);
        assert_eq!(w.check_at("a", t0 + Duration::from_millis(1499)), Err(1));
        assert_eq!(w.check_at("a", t0), Err(2));
    }

    #[test]
    fn memory_stays_bounded() {
        let w = SlidingWindow::with_capacity(5, MIN, 100);
        let t0 = Instant::now();
        for i in 0..1000 {
            w.hit_at(&format!("k{i}"), t0 + Duration::from_millis(i));
        }
        assert!(w.key_count() <= 100, "{}", w.key_count());
        // The most recent keys are the ones kept.
        assert!(w.check_at("k999", t0 + Duration::from_secs(1)).is_ok());
        assert!(w.lock().events.contains_key("k999"));
        // Keys out of the window go at the next prune even when under capacity.
        let w = SlidingWindow::with_capacity(5, MIN, 100_000);
        for i in 0..10 {
            w.hit_at(&format!("old{i}"), t0);
        }
        for i in 0..PRUNE_EVERY {
            w.hit_at("new", t0 + MIN * 2 + Duration::from_millis(i));
        }
        assert_eq!(w.key_count(), 1);
    }
}
