//! Session tokens: 32 random bytes (base64url) held by the client in a cookie or a Bearer header,
//! stored as their SHA-256 so that any instance can check them and the database holds nothing
//! usable.
//!
//! Checked tokens are cached in memory for `session_cache_ttl_secs`, so that most requests do not
//! touch the database. Ending a session (logout, reset, removal) drops it from this instance's
//! cache and from the database at once, and publishes `SessionEnded` on the bus: the sockets bound
//! to it close at once, and every instance's cache drops it (`SessionSink`), on every instance.
//! A cache that may have missed an invalidation (the Redis subscription was lost) is emptied.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::Identity;
use crate::bus::{EventBus, SessionEnded, SessionSink};
use crate::config::AuthSettings;
use crate::domain::ids::UserId;
use crate::domain::time::now_ms;
use crate::store::Store;

/// Length of a token as sent by clients: base64url of 32 bytes, no padding.
pub const TOKEN_LEN: usize = 43;
/// Entries the cache may hold; past it, expired ones go, then everything (it is only a cache).
const CACHE_MAX: usize = 100_000;
/// `last_seen_at` is written at most this often per session (it is informative, not a lock).
const TOUCH_EVERY_MS: i64 = 10 * 60 * 1000;
/// Expired sessions are deleted from the database at most this often.
const PURGE_EVERY_MS: i64 = 60 * 60 * 1000;

/// A session just created: the token goes to the client once, only its hash is kept.
#[derive(Debug)]
pub struct NewSession {
    pub token: String,
    pub expires_at: i64,
}

#[derive(Debug, Clone, Copy)]
struct Cached {
    identity: Identity,
    expires_at: i64,
    checked_at: Instant,
}

#[derive(Debug)]
pub struct Sessions {
    store: Store,
    lifetime_ms: i64,
    cache_ttl: Duration,
    cache: Mutex<HashMap<String, Cached>>,
    /// Bumped by every invalidation: a lookup that read the database before one does not cache
    /// what it read (it may be the session just ended).
    invalidations: AtomicU64,
    last_purge_ms: AtomicI64,
    /// Where ended sessions are announced (to the sockets bound to them).
    bus: std::sync::Arc<dyn EventBus>,
}

/// SHA-256 of a token, in hex: the `sessions` primary key.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether a string can be a token at all: anything else is refused without a lookup.
pub fn looks_like_token(token: &str) -> bool {
    token.len() == TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Sessions {
    pub fn new(
        settings: &AuthSettings,
        store: Store,
        bus: std::sync::Arc<dyn EventBus>,
    ) -> Sessions {
        Sessions {
            bus,
            store,
            lifetime_ms: (settings.session_lifetime_hours as i64).saturating_mul(3_600_000),
            cache_ttl: Duration::from_secs(settings.session_cache_ttl_secs),
            cache: Mutex::new(HashMap::new()),
            invalidations: AtomicU64::new(0),
            last_purge_ms: AtomicI64::new(0),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        // Only a cache: a poisoned lock still holds valid entries.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn lifetime_secs(&self) -> i64 {
        self.lifetime_ms / 1000
    }

    /// Opens a session for `identity`.
    pub async fn create(&self, identity: Identity) -> anyhow::Result<NewSession> {
        let now = now_ms();
        self.purge_expired(now).await;
        let token = new_token();
        let hash = token_hash(&token);
        let expires_at = now.saturating_add(self.lifetime_ms);
        self.store
            .insert_session(&hash, identity.user_id, now, expires_at)
            .await?;
        self.remember(hash, identity, expires_at);
        Ok(NewSession { token, expires_at })
    }

    /// Who holds `token`, if it is a live session.
    pub async fn resolve(&self, token: &str) -> anyhow::Result<Option<Identity>> {
        if !looks_like_token(token) {
            return Ok(None);
        }
        self.resolve_hash(token_hash(token)).await
    }

    /// Who holds the session of this token hash, if it is live (cached like `resolve`). A socket
    /// keeps only its session's hash and checks it again on its heartbeats.
    pub async fn resolve_hash(&self, hash: String) -> anyhow::Result<Option<Identity>> {
        let now = now_ms();
        let invalidations = self.invalidations.load(Ordering::Acquire);
        if let Some(hit) = self.cache().get(&hash).copied()
            && hit.checked_at.elapsed() < self.cache_ttl
            && hit.expires_at > now
        {
            return Ok(Some(hit.identity));
        }
        // Not in the cache: one or two statements, after a turn at the pool (bounded waiting).
        let _turn = self.store.admit().await?;
        let Some(record) = self.store.session(&hash, now).await? else {
            self.cache().remove(&hash);
            return Ok(None);
        };
        if now - record.last_seen_at > TOUCH_EVERY_MS {
            self.store.touch_session(&hash, now).await?;
        }
        let identity = Identity {
            user_id: record.user_id,
            role: record.role,
        };
        if self.invalidations.load(Ordering::Acquire) == invalidations {
            self.remember(hash, identity, record.expires_at);
        }
        Ok(Some(identity))
    }

    fn remember(&self, hash: String, identity: Identity, expires_at: i64) {
        let mut cache = self.cache();
        if cache.len() >= CACHE_MAX {
            let now = now_ms();
            let ttl = self.cache_ttl;
            cache.retain(|_, c| c.expires_at > now && c.checked_at.elapsed() < ttl);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(
            hash,
            Cached {
                identity,
                expires_at,
                checked_at: Instant::now(),
            },
        );
    }

    /// Drops sessions from this instance's cache (`None`: all of them).
    fn forget_cached(&self, ended: Option<&SessionEnded>) {
        self.invalidations.fetch_add(1, Ordering::AcqRel);
        let mut cache = self.cache();
        match ended {
            Some(SessionEnded::Session { token_hash }) => {
                cache.remove(token_hash);
            }
            Some(SessionEnded::User { user_id }) => {
                cache.retain(|_, c| c.identity.user_id != *user_id);
            }
            Some(SessionEnded::AccountViews) => {}
            None => cache.clear(),
        }
    }

    /// Ends one session (logout, or a new sign-in in the same browser); its sockets close.
    pub async fn end(&self, token: &str) -> anyhow::Result<()> {
        let hash = token_hash(token);
        self.invalidations.fetch_add(1, Ordering::AcqRel);
        self.cache().remove(&hash);
        self.store.delete_session(&hash).await?;
        self.bus
            .publish_session_ended(SessionEnded::Session { token_hash: hash });
        Ok(())
    }

    /// Ends every session of a user (recovery code reset, password change); their sockets close.
    pub async fn end_all_for(&self, user_id: UserId) -> anyhow::Result<()> {
        self.invalidations.fetch_add(1, Ordering::AcqRel);
        self.cache().retain(|_, c| c.identity.user_id != user_id);
        self.store.delete_user_sessions(user_id).await?;
        self.bus
            .publish_session_ended(SessionEnded::User { user_id });
        Ok(())
    }

    /// A user's sessions were deleted in the database with their account (removal from their
    /// last class, leaving it, the class purged): drops them from this instance's cache and
    /// closes their sockets.
    pub fn forget_user(&self, user_id: UserId) {
        self.invalidations.fetch_add(1, Ordering::AcqRel);
        self.cache().retain(|_, c| c.identity.user_id != user_id);
        self.bus
            .publish_session_ended(SessionEnded::User { user_id });
    }

    async fn purge_expired(&self, now: i64) {
        let last = self.last_purge_ms.load(Ordering::Relaxed);
        if now - last < PURGE_EVERY_MS
            || self
                .last_purge_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        match self.store.delete_expired_sessions(now).await {
            Ok(n) if n > 0 => tracing::info!(sessions = n, "expired sessions deleted"),
            Ok(_) => {}
            // Not worth failing a sign-in over: the next purge tries again.
            Err(e) => tracing::warn!(error = format!("{e:#}"), "purging expired sessions"),
        }
    }
}

/// Sessions ended on any instance (the bus): dropped from this instance's cache at once.
impl SessionSink for Sessions {
    fn session_ended(&self, ended: &SessionEnded) {
        if *ended == SessionEnded::AccountViews {
            self.store.views_changed_elsewhere();
            return;
        }
        self.forget_cached(Some(ended));
    }

    fn sessions_unknown(&self) {
        self.forget_cached(None);
        // The news of account views changed elsewhere may have been missed too.
        self.store.views_changed_elsewhere();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_43_base64url_chars_and_hash_to_hex() {
        let t = new_token();
        assert!(looks_like_token(&t), "{t}");
        assert_ne!(t, new_token());
        let h = token_hash(&t);
        assert_eq!(h.len(), 64);
        assert!(h.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(!looks_like_token("short"));
        assert!(!looks_like_token(&format!("{}=", "a".repeat(42))));
    }
}
