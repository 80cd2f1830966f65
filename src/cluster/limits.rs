//! Limits counted by all the instances together, in Redis: sliding windows (the submission rate,
//! hint reveals, the sign-in, join and recovery throttles) and each user's open sockets.
//!
//! A window is a sorted set of events scored by their time; an event is checked and counted by one
//! Lua script (atomic: callers on every instance at once cannot all slip under the limit), on
//! Redis's clock (the instances' clocks may differ). A user's sockets are records scored by when
//! they expire: the instance that holds a socket refreshes its record while it is open and removes
//! it on close, so the sockets of an instance that died stop counting when their records expire.
//! Every key is `{redis.key_prefix}:limit:…` or `…:sockets:…` and expires with its last event, so
//! Redis never keeps a counter nobody uses; keys name no login or address (they are hashed).
//!
//! Redis failing (timeout, refused, an error) never blocks past `redis.command_timeout_ms` and
//! never lets something through unchecked: the answer is `None`, the caller decides with its own
//! local limiter, and the fallback is counted in `/metrics` (`nsi_limit_fallbacks_total`). After a
//! failure Redis is left alone for `PAUSE_AFTER_FAILURE`, so an outage does not add its timeout to
//! every request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use redis::Script;
use sha2::{Digest, Sha256};

use super::{Cluster, ClusterError};
use crate::domain::ids::UserId;
use crate::metrics::{Limit, Refusals};

/// After a failed command, decisions are local for this long (then Redis is tried again).
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// A failure is logged at most this often (each one is counted in `/metrics`).
const WARN_EVERY: Duration = Duration::from_secs(30);
/// Socket records refreshed per script call.
const REFRESH_CHUNK: usize = 500;

/// Checks and counts one event in every window of `KEYS`, or in none.
static HIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- KEYS: sliding windows, sorted sets of events scored by their time (ms, Redis's clock).
-- ARGV[1]: the event (an attempt id, or a random id); ARGV[2i], ARGV[2i+1]: window i's max and
-- length in ms. An event already in a window (a resend of a counted attempt) is not counted again.
-- Returns {0, 1} counted, {0, 0} already counted everywhere, {i, wait_ms} window i full (nothing
-- counted).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local event = ARGV[1]
local known = 0
for i = 1, #KEYS do
  local max = tonumber(ARGV[2 * i])
  local window = tonumber(ARGV[2 * i + 1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  if redis.call('ZSCORE', KEYS[i], event) then
    known = known + 1
  elseif redis.call('ZCARD', KEYS[i]) >= max then
    local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    return {i, tonumber(oldest[2]) + window - now}
  end
end
if known == #KEYS then
  return {0, 0}
end
for i = 1, #KEYS do
  local window = tonumber(ARGV[2 * i + 1])
  redis.call('ZADD', KEYS[i], 'NX', now, event)
  if redis.call('PTTL', KEYS[i]) < window then
    redis.call('PEXPIRE', KEYS[i], window)
  end
end
return {0, 1}
",
    )
});

/// Records one socket unless its user already has `max` live records.
static ADMIT_SOCKET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- KEYS[1]: a user's open sockets, each scored by when its record expires (ms, Redis's clock).
-- ARGV: the socket, the max, the record's lifetime in ms. Returns 1 recorded, 0 refused.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
    and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
",
    )
});

/// Pushes back the expiry of sockets still open.
static REFRESH_SOCKETS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
-- KEYS[i]: a user's open sockets; ARGV[1]: the records' lifetime in ms; ARGV[i + 1]: the socket
-- of KEYS[i] that is still open. A record lost meanwhile (Redis restarted) is written again.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], now + ttl, ARGV[i + 1])
  if redis.call('PTTL', KEYS[i]) < ttl then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return #KEYS
",
    )
});

/// One sliding window: at most `max` events per `length`, under `key`.
#[derive(Debug, Clone)]
pub struct Window {
    pub key: String,
    pub max: u32,
    pub length: Duration,
}

/// What Redis decided about one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Counted in every window (`counted`), or already in all of them (`!counted`: a resend).
    Admitted { counted: bool },
    /// The window at `index` (in the order given) is full; nothing was counted. It has room
    /// again in `wait`.
    Refused { index: usize, wait: Duration },
}

/// The shared limits of one app: its Redis link and what it counts into `/metrics`.
pub struct SharedLimits {
    cluster: Arc<Cluster>,
    refusals: Refusals,
    /// Milliseconds since `epoch` before which Redis is not tried (after a failure).
    epoch: Instant,
    paused_until_ms: AtomicU64,
    last_warn_ms: AtomicU64,
}

impl std::fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimits")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

/// A key's part that names no one: the first 128 bits of its SHA-256, in hex.
fn hashed(part: &str) -> String {
    let digest = Sha256::digest(part.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

impl SharedLimits {
    pub fn new(cluster: Arc<Cluster>, refusals: Refusals) -> Arc<SharedLimits> {
        Arc::new(SharedLimits {
            cluster,
            refusals,
            epoch: Instant::now(),
            paused_until_ms: AtomicU64::new(0),
            last_warn_ms: AtomicU64::new(0),
        })
    }

    /// The limits of `cluster`, when there is one.
    pub fn of(cluster: Option<&Arc<Cluster>>, refusals: &Refusals) -> Option<Arc<SharedLimits>> {
        cluster.map(|c| SharedLimits::new(c.clone(), refusals.clone()))
    }

    /// An update that could not be sent at all (counted as lost).
    pub fn count_lost(&self, limit: Limit) {
        self.refusals.lost(limit);
    }

    /// This instance's id among the others (socket records carry it).
    pub fn instance_id(&self) -> &str {
        self.cluster.instance_id()
    }

    /// The key of the window `name` for `subject` (a login, an address, …: hashed).
    pub fn window_key(&self, name: &str, subject: &str) -> String {
        self.cluster
            .key(&format!("limit:{name}:{}", hashed(subject)))
    }

    /// The key of a student's window `name` (`submissions`, `hints`).
    pub fn user_window_key(&self, name: &str, user: UserId) -> String {
        self.cluster.key(&format!("limit:{name}:{}", user.0))
    }

    /// The key of a user's open sockets.
    pub fn sockets_key(&self, user: UserId) -> String {
        self.cluster.key(&format!("sockets:{}", user.0))
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn paused(&self) -> bool {
        self.now_ms() < self.paused_until_ms.load(Ordering::Relaxed)
    }

    fn failed(&self, what: &'static str, limit: Limit, error: &ClusterError) {
        let now = self.now_ms();
        self.paused_until_ms.store(
            now + PAUSE_AFTER_FAILURE.as_millis() as u64,
            Ordering::Relaxed,
        );
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= WARN_EVERY.as_millis() as u64)
            && self
                .last_warn_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                error = %error,
                limit = limit.name(),
                what,
                "Redis failed: shared limits decided by this instance alone for now \
                 (nsi_limit_fallbacks_total)"
            );
        }
    }

    /// Checks and counts `event` in every window, atomically: either all count it or none does.
    /// `None` when Redis could not decide (counted as a fallback for `limit`): decide locally.
    pub async fn hit(&self, limit: Limit, windows: &[Window], event: &str) -> Option<Decision> {
        if self.paused() {
            self.refusals.fallback(limit);
            return None;
        }
        let mut invocation = HIT.prepare_invoke();
        invocation.arg(event);
        for w in windows {
            invocation
                .key(&w.key)
                .arg(w.max.max(1))
                .arg((w.length.as_millis() as u64).max(1));
        }
        let answer =
            self.cluster
                .run(move |mut conn| async move {
                    invocation.invoke_async::<(i64, i64)>(&mut conn).await
                })
                .await;
        match answer {
            Ok((0, counted)) => Some(Decision::Admitted {
                counted: counted != 0,
            }),
            Ok((index, wait_ms)) => Some(Decision::Refused {
                index: (index.max(1) - 1) as usize,
                wait: Duration::from_millis(wait_ms.max(0) as u64),
            }),
            Err(e) => {
                self.failed("checking a limit", limit, &e);
                self.refusals.fallback(limit);
                None
            }
        }
    }

    /// Takes `event` back from `keys` (it turned out not to count). A failure is counted as a
    /// lost update (the event then counts until its window passes).
    pub async fn take_back(&self, limit: Limit, keys: &[String], event: &str) {
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("ZREM").arg(key).arg(event).ignore();
        }
        self.update(limit, "taking an event back", pipe).await;
    }

    /// Forgets every event of `keys` (a right guess clears the failures).
    pub async fn clear(&self, limit: Limit, keys: &[String]) {
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("DEL").arg(key).ignore();
        }
        self.update(limit, "clearing a limit", pipe).await;
    }

    async fn update(&self, limit: Limit, what: &'static str, pipe: redis::Pipeline) {
        if self.paused() {
            self.refusals.lost(limit);
            return;
        }
        let done = self
            .cluster
            .run(move |mut conn| async move { pipe.query_async::<()>(&mut conn).await })
            .await;
        if let Err(e) = done {
            self.failed(what, limit, &e);
            self.refusals.lost(limit);
        }
    }

    /// Records the socket `socket` of `user` for `ttl`, unless the user already has `max` live
    /// records. `None` when Redis could not decide (a fallback).
    pub async fn admit_socket(
        &self,
        user: UserId,
        socket: &str,
        max: usize,
        ttl: Duration,
    ) -> Option<bool> {
        if self.paused() {
            self.refusals.fallback(Limit::WsSockets);
            return None;
        }
        let mut invocation = ADMIT_SOCKET.prepare_invoke();
        invocation
            .key(self.sockets_key(user))
            .arg(socket)
            .arg(max.max(1))
            .arg((ttl.as_millis() as u64).max(1));
        let answer = self
            .cluster
            .run(move |mut conn| async move { invocation.invoke_async::<i64>(&mut conn).await })
            .await;
        match answer {
            Ok(recorded) => Some(recorded == 1),
            Err(e) => {
                self.failed("recording a socket", Limit::WsSockets, &e);
                self.refusals.fallback(Limit::WsSockets);
                None
            }
        }
    }

    /// Pushes back the expiry of these open sockets to `ttl` from now (written again if lost).
    pub async fn refresh_sockets(&self, sockets: &[(UserId, String)], ttl: Duration) {
        for chunk in sockets.chunks(REFRESH_CHUNK) {
            let mut invocation = REFRESH_SOCKETS.prepare_invoke();
            invocation.arg((ttl.as_millis() as u64).max(1));
            for (user, socket) in chunk {
                invocation.key(self.sockets_key(*user)).arg(socket);
            }
            let done = self
                .cluster
                .run(move |mut conn| async move { invocation.invoke_async::<i64>(&mut conn).await })
                .await;
            if let Err(e) = done {
                // Not paused by an outage: the records must come back as soon as Redis does.
                self.failed("refreshing socket records", Limit::WsSockets, &e);
                self.refusals.lost(Limit::WsSockets);
                return;
            }
        }
    }

    /// Removes a closed socket's record.
    pub async fn remove_socket(&self, user: UserId, socket: &str) {
        let mut pipe = redis::pipe();
        pipe.cmd("ZREM")
            .arg(self.sockets_key(user))
            .arg(socket)
            .ignore();
        self.update(Limit::WsSockets, "removing a socket record", pipe)
            .await;
    }
}

/// Seconds to tell the client to wait, as the local windows round: up, at least one.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_millis().div_ceil(1000) as u64).max(1)
}
