//! This instance's cache of users' own account views: the body of `GET /api/v1/me` (the user,
//! their classes with teachers and assignments, or a teacher's classes), which every page of the
//! browser app asks for first. Built from three queries, it changes rarely: an answer is kept with
//! the store's views version it was built at (`Store::views_version`, raised after every write
//! that can change such a view, and on news of one from another instance) and served while that
//! version is current and the answer is younger than [`MAX_AGE`] (the bound for what no news
//! reaches: another instance's write while Redis is away, an `admin` command's).
//!
//! Bounded: at most [`MAX_BYTES`] of answers are held (an answer above [`MAX_ENTRY_BYTES`] is
//! not kept); when full, stale answers go first, then all of them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use prometheus_client::metrics::counter::Counter;

use crate::domain::ids::UserId;

/// The most memory the cached answers take (their bodies).
pub const MAX_BYTES: usize = 32 * 1024 * 1024;
/// A larger answer (a teacher with very many classes) is built each time.
pub const MAX_ENTRY_BYTES: usize = 64 * 1024;
/// The oldest answer served, whatever the version says.
pub const MAX_AGE: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct AccountViews {
    entries: Mutex<Entries>,
    hits: Counter,
    misses: Counter,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<UserId, Entry>,
    bytes: usize,
}

#[derive(Debug)]
struct Entry {
    version: u64,
    built: Instant,
    body: Bytes,
}

impl Entry {
    fn fresh(&self, version: u64) -> bool {
        self.version == version && self.built.elapsed() < MAX_AGE
    }
}

impl AccountViews {
    /// A cache counting its hits and misses in these counters (`/metrics`).
    pub fn new(hits: Counter, misses: Counter) -> AccountViews {
        AccountViews {
            entries: Mutex::default(),
            hits,
            misses,
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Only a cache: a poisoned lock still holds valid entries.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The user's answer, if one built at `version` (the current one) is kept.
    pub fn get(&self, user: UserId, version: u64) -> Option<Bytes> {
        let found = self
            .entries()
            .map
            .get(&user)
            .filter(|e| e.fresh(version))
            .map(|e| e.body.clone());
        match found {
            Some(_) => self.hits.inc(),
            None => self.misses.inc(),
        };
        found
    }

    /// Keeps the user's answer built from what the store held at `version` (read before the
    /// queries: a write during them has raised the version, and this answer is never served).
    pub fn put(&self, user: UserId, version: u64, body: Bytes) {
        if body.len() > MAX_ENTRY_BYTES {
            return;
        }
        let mut entries = self.entries();
        if let Some(old) = entries.map.remove(&user) {
            entries.bytes -= old.body.len();
        }
        if entries.bytes + body.len() > MAX_BYTES {
            entries.map.retain(|_, e| e.fresh(version));
            entries.bytes = entries.map.values().map(|e| e.body.len()).sum();
            if entries.bytes + body.len() > MAX_BYTES {
                entries.map.clear();
                entries.bytes = 0;
            }
        }
        entries.bytes += body.len();
        entries.map.insert(
            user,
            Entry {
                version,
                built: Instant::now(),
                body,
            },
        );
    }

    /// Answers held now, and their bytes.
    pub fn size(&self) -> (usize, usize) {
        let entries = self.entries();
        (entries.map.len(), entries.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    #[test]
    fn serves_an_answer_only_at_its_version() {
        let cache = AccountViews::default();
        assert!(cache.get(UserId(1), 7).is_none());
        cache.put(UserId(1), 7, Bytes::from_static(b"{\"id\":1}"));
        assert_eq!(cache.get(UserId(1), 7).as_deref(), Some(&b"{\"id\":1}"[..]));
        assert!(
            cache.get(UserId(1), 8).is_none(),
            "a newer version: built again"
        );
        assert!(cache.get(UserId(2), 7).is_none());
        assert_eq!(cache.hits.get(), 1);
        assert_eq!(cache.misses.get(), 3);
    }

    #[test]
    fn replacing_an_answer_keeps_the_byte_count_right() {
        let cache = AccountViews::default();
        cache.put(UserId(1), 1, body(100));
        cache.put(UserId(1), 2, body(40));
        cache.put(UserId(2), 2, body(10));
        assert_eq!(cache.size(), (2, 50));
    }

    #[test]
    fn holds_at_most_max_bytes_dropping_stale_answers_first() {
        let cache = AccountViews::default();
        let each = MAX_ENTRY_BYTES;
        let fit = MAX_BYTES / each;
        // Half of the room taken by answers of an old version, half by current ones.
        for i in 0..fit / 2 {
            cache.put(UserId(i as i64), 1, body(each));
        }
        for i in fit / 2..fit {
            cache.put(UserId(i as i64), 2, body(each));
        }
        assert_eq!(cache.size(), (fit, MAX_BYTES));
        cache.put(UserId(-1), 2, body(each));
        let (n, bytes) = cache.size();
        assert!(bytes <= MAX_BYTES);
        assert_eq!(
            n,
            fit - fit / 2 + 1,
            "the stale answers went, the current ones stayed"
        );
        assert!(cache.get(UserId((fit - 1) as i64), 2).is_some());
        assert!(cache.get(UserId(0), 2).is_none());
        // Full of current answers: everything goes.
        for i in 0..fit {
            cache.put(UserId(1_000_000 + i as i64), 2, body(each));
        }
        assert!(cache.size().1 <= MAX_BYTES);
    }

    #[test]
    fn an_answer_too_large_is_not_kept() {
        let cache = AccountViews::default();
        cache.put(UserId(1), 1, body(MAX_ENTRY_BYTES + 1));
        assert_eq!(cache.size(), (0, 0));
        assert!(cache.get(UserId(1), 1).is_none());
    }
}
