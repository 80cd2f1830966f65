//! Argon2id hashing for passwords and students' recovery codes. Hashing is slow and memory-hungry
//! on purpose (19 MiB, 2 passes: the OWASP baseline), so it runs on the blocking pool and at most
//! a few hashes run at once: a class of 35 joining in the same second queues for a moment instead
//! of taking 35 × 19 MiB.

use std::sync::OnceLock;

use anyhow::Context;
use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;

fn permits() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Semaphore::new(cores.max(2))
    })
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
pub async fn hash(secret: String) -> anyhow::Result<String> {
    let _permit = permits().acquire().await.context("hash permits closed")?;
    actix_web::web::block(move || hash_now(secret.as_bytes()))
        .await
        .context("hashing thread")?
}

/// Whether `secret` matches `hash`. With no hash (unknown account, or an account without a
/// password), checks against a decoy and answers `false`, in about the same time.
pub async fn verify(secret: String, hash: Option<String>) -> anyhow::Result<bool> {
    let _permit = permits().acquire().await.context("hash permits closed")?;
    actix_web::web::block(move || match hash {
        Some(hash) => Argon2::default()
            .verify_password(secret.as_bytes(), hash.as_str())
            .is_ok(),
        None => {
            let _ = Argon2::default().verify_password(secret.as_bytes(), decoy_hash());
            false
        }
    })
    .await
    .context("hashing thread")
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
