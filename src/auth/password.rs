//! Argon2id hashing for passwords and students' recovery codes. Hashing is slow and memory-hungry
//! on purpose (19 MiB, 2 passes: the OWASP baseline), so at most `auth.hash_slots` hashes run at
//! once, each in a working memory the server allocated at start-up and reuses: a flood of sign-ins
//! queues for a slot instead of taking 19 MiB each.
//!
//! Why the memory is ours: `Argon2::hash_password` allocates its 19 MiB per call. Once glibc's
//! dynamic mmap threshold has risen, those blocks land in malloc's arenas and are never given back:
//! 60 failed logins took the RSS from 19 MB to 600–900 MB. Here argon2 fills caller-provided blocks
//! (`hash_password_into_with_memory`), so hashing allocates nothing large. The PHC strings are the
//! same as argon2's `PasswordHasher` makes and reads (a unit test checks both ways).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context;
use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::{AppError, Result};

/// Slots, waiting requests and wait when `configure` was never called (admin commands, unit
/// tests): the defaults of `auth.hash_slots`, `auth.hash_queue` and `auth.hash_wait_ms`.
const DEFAULT_SLOTS: usize = 2;
const DEFAULT_MAX_WAITING: usize = 256;
const DEFAULT_WAIT_FOR_SLOT: Duration = Duration::from_secs(10);

/// The parameters of every new hash: argon2id v19, m = 19 MiB, t = 2, p = 1, 32-byte output.
fn params() -> Params {
    Params::DEFAULT
}

/// One slot's working memory: enough blocks for `params()`.
type Memory = Box<[Block]>;

/// The hashing slots of this process: a semaphore counts them, a stack holds their memory. A
/// permit guarantees a free buffer (there are as many buffers as permits).
struct Pool {
    /// Hashes that may run at once.
    slots: usize,
    /// Requests waiting for a slot, at most: past it the server is saturated with sign-ins (or
    /// someone floods them) and a quick 503 serves everyone better than a longer queue.
    max_waiting: usize,
    /// How long a request waits for a slot before giving up with a 503.
    wait_for_slot: Duration,
    permits: Semaphore,
    free: Mutex<Vec<Memory>>,
}

impl Pool {
    fn new(slots: usize, max_waiting: usize, wait_for_slot: Duration) -> Pool {
        let slots = slots.max(1);
        let blocks = params().block_count();
        // `vec![Block::new(); n]` writes every block: the memory is resident from start-up, so
        // the process's RSS does not grow when the first sign-ins arrive.
        let free = (0..slots)
            .map(|_| vec![Block::new(); blocks].into_boxed_slice())
            .collect();
        Pool {
            slots,
            max_waiting,
            wait_for_slot,
            permits: Semaphore::new(slots),
            free: Mutex::new(free),
        }
    }
}

static POOL: OnceLock<Pool> = OnceLock::new();

/// Allocates the hashing slots (`auth.hash_slots`) and bounds their queue (`auth.hash_queue`
/// requests waiting, each at most `auth.hash_wait_ms`). Called once at start-up; the pool is the
/// process's (memory is a process's), so a later call changes nothing.
pub fn configure(slots: usize, max_waiting: usize, wait_for_slot: Duration) {
    POOL.get_or_init(|| Pool::new(slots, max_waiting, wait_for_slot));
}

fn pool() -> &'static Pool {
    POOL.get_or_init(|| Pool::new(DEFAULT_SLOTS, DEFAULT_MAX_WAITING, DEFAULT_WAIT_FOR_SLOT))
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
        running: pool()
            .slots
            .saturating_sub(pool().permits.available_permits()),
    }
}

fn busy() -> AppError {
    crate::metrics::count_hash_refusal();
    AppError::Unavailable {
        message: "Le serveur est très sollicité ; réessayez dans quelques secondes.".into(),
        retry_after_secs: 5,
    }
}

/// A hashing slot: the wait is bounded in count (`auth.hash_queue`) and in time
/// (`auth.hash_wait_ms`).
async fn slot() -> Result<SemaphorePermit<'static>> {
    struct Waiting;
    impl Drop for Waiting {
        fn drop(&mut self) {
            WAITING.fetch_sub(1, Ordering::Relaxed);
        }
    }
    if WAITING.fetch_add(1, Ordering::Relaxed) >= pool().max_waiting {
        WAITING.fetch_sub(1, Ordering::Relaxed);
        return Err(busy());
    }
    let _waiting = Waiting;
    match tokio::time::timeout(pool().wait_for_slot, pool().permits.acquire()).await {
        Ok(permit) => Ok(permit.context("hash permits closed")?),
        Err(_) => Err(busy()),
    }
}

/// Runs `job` on the blocking pool with a slot's memory, and puts the memory back afterwards
/// (also when `job` fails). The caller holds a permit, so a buffer is free.
async fn with_memory<T: Send + 'static>(
    job: impl FnOnce(&mut [Block]) -> T + Send + 'static,
) -> Result<T> {
    let _permit = slot().await?;
    let mut memory = pool()
        .free
        .lock()
        .map_err(|_| anyhow::anyhow!("hash pool poisoned"))?
        .pop()
        // Only if a hashing thread panicked and took its buffer along: replace that buffer.
        .unwrap_or_else(|| vec![Block::new(); params().block_count()].into_boxed_slice());
    let (result, memory) = actix_web::web::block(move || {
        let result = job(&mut memory);
        (result, memory)
    })
    .await
    .context("hashing thread")?;
    if let Ok(mut free) = pool().free.lock() {
        free.push(memory);
    }
    Ok(result)
}

/// Argon2id over `secret` and `salt` with `params`, in `memory`, into `out`.
fn compute(
    params: Params,
    algorithm: Algorithm,
    version: Version,
    secret: &[u8],
    salt: &[u8],
    out: &mut [u8],
    memory: &mut [Block],
) -> anyhow::Result<()> {
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(secret, salt, out, memory)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))
}

/// A new PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`) for `secret`, in `memory`.
fn hash_in(secret: &[u8], memory: &mut [Block]) -> anyhow::Result<String> {
    let params = params();
    let salt = Salt::new(&rand::random::<[u8; Salt::RECOMMENDED_LENGTH]>())
        .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let (algorithm, version) = (Algorithm::Argon2id, Version::V0x13);
    compute(
        params.clone(),
        algorithm,
        version,
        secret,
        &salt,
        &mut out,
        memory,
    )?;
    let phc = PasswordHash {
        algorithm: algorithm.ident(),
        version: Some(version.into()),
        params: ParamsString::try_from(&params).map_err(|e| anyhow::anyhow!("params: {e}"))?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("output: {e}"))?),
    };
    Ok(phc.to_string())
}

/// Whether `secret` matches the PHC string `hash`, computed in `memory`. A hash that is not an
/// argon2 PHC string, or that needs more memory than a slot has, matches nothing.
fn verify_in(secret: &[u8], hash: &str, memory: &mut [Block]) -> bool {
    let Ok(phc) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(phc.algorithm.as_str()),
        Params::try_from(&phc),
    ) else {
        return false;
    };
    let version = match phc.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    if params.block_count() > memory.len() {
        // Only hashes made with stronger parameters than ours (none are, today); allocating for
        // them would bring the unbounded memory back.
        tracing::warn!(
            m_cost = params.m_cost(),
            "a stored hash needs more memory than a hashing slot has: refused"
        );
        return false;
    }
    let mut out = vec![0u8; expected.len()];
    if compute(params, algorithm, version, secret, salt, &mut out, memory).is_err() {
        return false;
    }
    // `Output`'s equality is constant-time.
    Output::new(&out).is_ok_and(|computed| &computed == expected)
}

/// A fixed random salt for the decoy check, so that an unknown login costs one hash like a real one.
fn decoy_salt() -> &'static [u8; 16] {
    static SALT: OnceLock<[u8; 16]> = OnceLock::new();
    SALT.get_or_init(rand::random)
}

/// Hashes a password or code to a PHC string (`$argon2id$v=19$…`).
pub async fn hash(secret: String) -> Result<String> {
    Ok(with_memory(move |memory| hash_in(secret.as_bytes(), memory)).await??)
}

/// Whether `secret` matches `hash`. With no hash (unknown account, or an account without a
/// password), computes a decoy hash and answers `false`, in about the same time.
pub async fn verify(secret: String, hash: Option<String>) -> Result<bool> {
    with_memory(move |memory| match hash {
        Some(hash) => verify_in(secret.as_bytes(), &hash, memory),
        None => {
            let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
            let _ = compute(
                params(),
                Algorithm::Argon2id,
                Version::V0x13,
                secret.as_bytes(),
                decoy_salt(),
                &mut out,
                memory,
            );
            false
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::{PasswordHasher, PasswordVerifier};

    #[actix_web::test]
    async fn hash_then_verify() {
        let h = hash("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
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

    /// Hashes stored before the pool (argon2's own `PasswordHasher`) still verify, and ours verify
    /// with argon2's own `PasswordVerifier`: the PHC strings are the same format.
    #[actix_web::test]
    async fn compatible_with_argon2s_password_hasher_both_ways() {
        let theirs = Argon2::default()
            .hash_password(b"mot de passe")
            .unwrap()
            .to_string();
        assert!(
            verify("mot de passe".into(), Some(theirs.clone()))
                .await
                .unwrap()
        );
        assert!(!verify("mot de passe!".into(), Some(theirs)).await.unwrap());

        let ours = hash("mot de passe".into()).await.unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"mot de passe", ours.as_str())
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"mot de passe!", ours.as_str())
                .is_err()
        );
    }

    /// Other parameters and variants (argon2i, fewer passes, a longer output) are read from the
    /// string; a hash needing more memory than a slot is refused rather than allocated for.
    #[actix_web::test]
    async fn reads_other_parameters_and_refuses_bigger_memory() {
        let small = Params::new(1024, 3, 1, Some(48)).unwrap();
        let theirs = Argon2::new(Algorithm::Argon2i, Version::V0x13, small)
            .hash_password(b"code")
            .unwrap()
            .to_string();
        assert!(verify("code".into(), Some(theirs.clone())).await.unwrap());
        assert!(!verify("cod".into(), Some(theirs)).await.unwrap());

        let big = Params::new(2 * Params::DEFAULT_M_COST, 1, 1, None).unwrap();
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, big)
            .hash_password(b"code")
            .unwrap()
            .to_string();
        assert!(!verify("code".into(), Some(theirs)).await.unwrap());
    }
}
