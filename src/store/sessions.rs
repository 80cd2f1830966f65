//! Sessions, keyed by the SHA-256 of their token: any instance can check a token, and a stolen
//! database does not hold usable tokens.

use sqlx::Row;

use super::users::parse_role;
use super::{Store, on_pool};
use crate::domain::accounts::Role;
use crate::domain::ids::UserId;

/// A live session and who it belongs to.
#[derive(Debug, Clone, Copy)]
pub struct SessionRecord {
    pub user_id: UserId,
    pub role: Role,
    pub expires_at: i64,
    pub last_seen_at: i64,
}

impl Store {
    pub async fn insert_session(
        &self,
        token_hash: &str,
        user_id: UserId,
        now: i64,
        expires_at: i64,
    ) -> anyhow::Result<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, last_seen_at)
                 VALUES ($1, $2, $3, $4, $3)",
            )
            .bind(token_hash)
            .bind(user_id.0)
            .bind(now)
            .bind(expires_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The session if it exists, has not expired and its user is not disabled.
    pub async fn session(
        &self,
        token_hash: &str,
        now: i64,
    ) -> anyhow::Result<Option<SessionRecord>> {
        on_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT s.user_id, u.role, s.expires_at, s.last_seen_at
                 FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled_at IS NULL",
            )
            .bind(token_hash)
            .bind(now)
            .fetch_optional(pool)
            .await?;
            row.map(|r| -> anyhow::Result<SessionRecord> {
                Ok(SessionRecord {
                    user_id: UserId(r.try_get("user_id")?),
                    role: parse_role(&r.try_get::<String, _>("role")?)?,
                    expires_at: r.try_get("expires_at")?,
                    last_seen_at: r.try_get("last_seen_at")?,
                })
            })
            .transpose()
        })
    }

    pub async fn touch_session(&self, token_hash: &str, now: i64) -> anyhow::Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE token_hash = $2")
                .bind(now)
                .bind(token_hash)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn delete_session(&self, token_hash: &str) -> anyhow::Result<()> {
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                .bind(token_hash)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Ends every session of a user (password or recovery code reset, removal).
    pub async fn delete_user_sessions(&self, user_id: UserId) -> anyhow::Result<u64> {
        let n = on_pool!(self, pool => {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(user_id.0)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n)
    }

    pub async fn delete_expired_sessions(&self, now: i64) -> anyhow::Result<u64> {
        let n = on_pool!(self, pool => {
            sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n)
    }
}
