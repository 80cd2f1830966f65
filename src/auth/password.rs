//! Argon2id hashing for passwords and students' recovery codes. Hashing is slow and memory-hungry
//! on purpose (19 MiB, 2 passes: the OWASP baseline), so it runs on the blocking pool and at most
//! a few hashes run at once: a class of 35 joining in the same second queues for a moment instead
//! of taking 35 × 19 MiB.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::{AppError, Result};

/// Requests waiting for a hashing slot, at most: past it the server is saturated with sign-ins
/// (or someone floods them) and a quick 503 serves everyone better than a longer queue.
const MAX_WAITING: usize = 256;
/// How long a request waits for a hashing slot before giving up with a 503.
const WAIT_FOR_SLOT: Duration = Duration::from_secs(10);

/// Hashes that may run at once: one per core, at least two.
fn slots() -> usize {
    static SLOTS: OnceLock<usize> = OnceLock::new();
    *SLOTS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .max(2)
    })
}

fn permits() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| Semaphore::new(slots()))
}

/// Requests waiting for a hashing slot now.
static WAITING: AtomicUsize = AtomicUsize::new(0);

/// The hashing queue of the whole process at one moment (`/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashQueue {
    pub waiting: usize,
    pub running: usize,
}

pub fn queue() -> HashQueue {
    HashQueue {
        waiting: WAITING.load(Ordering::Relaxed),
        running: slots().saturating_sub(permits().available_permits()),
    }
}

fn busy() -> AppError {
    crate::metrics::count_hash_refusal();
    AppError::Unavailable {
        message: "Le serveur est très sollicité ; réessayez dans quelques secondes.".into(),
        retry_after_secs: 5,
    }
}

/// A hashing slot: the wait is bounded in count (`MAX_WAITING`) and in time (`WAIT_FOR_SLOT`).
async fn slot() -> Result<SemaphorePermit<'static>> {
    struct Waiting;
    impl Drop for Waiting {
        fn drop(&mut self) {
            WAITING.fetch_sub(1, Ordering::Relaxed);
        }
    }
    if WAITING.fetch_add(1, Ordering::Relaxed) >= MAX_WAITING {
        WAITING.fetch_sub(1, Ordering::Relaxed);
        return Err(busy());
    }
    let _waiting = Waiting;
    match tokio::time::timeout(WAIT_FOR_SLOT, permits().acquire()).await {
        Ok(permit) => Ok(permit.context("hash permits closed")?),
        Err(_) => Err(busy()),
    }
}

fn hash_now(secret: &[u8]) -> anyhow::Result<String> {
    let hash: PasswordHash = Argon2::default()
        .hash_password(secret)
        .map_err(|e| anyhow::anyhow!("argon2 hash: {e}"))?;
    Ok(hash.to_string())
}

/// A hash of a random secret, verified against when there is no real hash to check (unknown
/// login), so that such a failure takes as long as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let secret: [u8; 16] = rand::random();
        // Hashing fixed-size input with default parameters cannot fail; if it ever did, an empty
        // decoy only makes the unknown-login path faster, never accepts anything.
        hash_now(&secret).unwrap_or_default()
    })
}

/// Hashes a password or code to a PHC string (`$argon2id$v=19$…`).
pub async fn hash(secret: String) -> Result<String> {
    let _permit = slot().await?;
    Ok(actix_web::web::block(move || hash_now(secret.as_bytes()))
        .await
        .context("hashing thread")??)
}

/// Whether `secret` matches `hash`. With no hash (unknown account, or an account without a
/// password), checks against a decoy and answers `false`, in about the same time.
pub async fn verify(secret: String, hash: Option<String>) -> Result<bool> {
    let _permit = slot().await?;
    Ok(actix_web::web::block(move || match hash {
        Some(hash) => Argon2::default()
            .verify_password(secret.as_bytes(), hash.as_str())
            .is_ok(),
        None => {
            let _ = Argon2::default().verify_password(secret.as_bytes(), decoy_hash());
            false
        }
    })
    .await
    .context("hashing thread")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn hash_then_verify() {
        let h = hash("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(
            verify("correct horse".into(), Some(h.clone()))
                .await
                .unwrap()
        );
        assert!(!verify("wrong horse".into(), Some(h.clone())).await.unwrap());
        assert!(!verify("correct horse".into(), None).await.unwrap());
        assert!(!verify("x".into(), Some("not a hash".into())).await.unwrap());
        // Salted: the same secret twice gives two hashes.
        assert_ne!(h, hash("correct horse".into()).await.unwrap());
    }
}
