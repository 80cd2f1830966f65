//! Users (teachers, admins, pseudonymous students) and teacher invites.
//! Secrets arrive here already hashed; nothing in this file logs a name or a hash.

use sqlx::Row;

use super::{Store, in_transaction, is_unique_violation, on_pool};
use crate::domain::accounts::Role;
use crate::domain::ids::UserId;

/// A user as the API shows it to themselves.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub id: UserId,
    pub role: Role,
    pub display_name: String,
    pub login: Option<String>,
    pub leaderboard_opt_out: bool,
    pub created_at: i64,
}

/// What signing in with a login needs.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub id: UserId,
    pub role: Role,
    pub password_hash: Option<String>,
}

/// How an attempt to create a teacher or admin account ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewAccount {
    Created(UserId),
    LoginTaken,
    /// The invite code is unknown, used or expired.
    InvalidInvite,
}

pub(crate) fn parse_role(text: &str) -> anyhow::Result<Role> {
    Role::parse(text).ok_or_else(|| anyhow::anyhow!("unknown role {text:?} in users"))
}

impl Store {
    /// Creates a teacher or admin account. With `invite_code_hash`, the invite is used up in the
    /// same transaction: both happen or neither.
    #[tracing::instrument(skip_all, fields(role = role.as_str()))]
    pub async fn create_account(
        &self,
        role: Role,
        login: &str,
        display_name: &str,
        password_hash: &str,
        invite_code_hash: Option<&str>,
        now: i64,
    ) -> anyhow::Result<NewAccount> {
        let outcome = in_transaction!(self, tx => {
            // The write comes first: on SQLite the transaction takes the write lock at once
            // instead of failing to upgrade a read lock under concurrency.
            let inserted = sqlx::query(
                "INSERT INTO users (role, display_name, login, password_hash, created_at)
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(role.as_str())
            .bind(display_name)
            .bind(login)
            .bind(password_hash)
            .bind(now)
            .fetch_one(&mut *tx)
            .await;
            let id: i64 = match inserted {
                Ok(row) => row.try_get("id")?,
                Err(e) if is_unique_violation(&e) => return Ok(NewAccount::LoginTaken),
                Err(e) => return Err(e.into()),
            };
            if let Some(code_hash) = invite_code_hash {
                let used = sqlx::query(
                    "UPDATE teacher_invites SET used_at = $1, used_by = $2
                     WHERE code_hash = $3 AND used_at IS NULL
                       AND (expires_at IS NULL OR expires_at > $1)",
                )
                .bind(now)
                .bind(id)
                .bind(code_hash)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if used != 1 {
                    // Dropping the transaction rolls the new user back.
                    return Ok(NewAccount::InvalidInvite);
                }
            }
            NewAccount::Created(UserId(id))
        });
        Ok(outcome)
    }

    /// The credentials of an active (not disabled) account, by normalised login.
    pub async fn credentials_by_login(&self, login: &str) -> anyhow::Result<Option<Credentials>> {
        on_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT id, role, password_hash FROM users
                 WHERE login = $1 AND disabled_at IS NULL",
            )
            .bind(login)
            .fetch_optional(pool)
            .await?;
            row.map(|r| -> anyhow::Result<Credentials> {
                Ok(Credentials {
                    id: UserId(r.try_get("id")?),
                    role: parse_role(&r.try_get::<String, _>("role")?)?,
                    password_hash: r.try_get("password_hash")?,
                })
            })
            .transpose()
        })
    }

    /// An active user.
    pub async fn user(&self, id: UserId) -> anyhow::Result<Option<UserRecord>> {
        on_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT id, role, display_name, login, leaderboard_opt_out, created_at FROM users
                 WHERE id = $1 AND disabled_at IS NULL",
            )
            .bind(id.0)
            .fetch_optional(pool)
            .await?;
            row.map(|r| -> anyhow::Result<UserRecord> {
                Ok(UserRecord {
                    id: UserId(r.try_get("id")?),
                    role: parse_role(&r.try_get::<String, _>("role")?)?,
                    display_name: r.try_get("display_name")?,
                    login: r.try_get("login")?,
                    leaderboard_opt_out: r.try_get("leaderboard_opt_out")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .transpose()
        })
    }

    /// The password hash of an active account (`None` also for accounts without a password).
    pub async fn password_hash(&self, id: UserId) -> anyhow::Result<Option<String>> {
        on_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT password_hash FROM users WHERE id = $1 AND disabled_at IS NULL",
            )
            .bind(id.0)
            .fetch_optional(pool)
            .await?;
            match row {
                Some(r) => Ok(r.try_get("password_hash")?),
                None => Ok(None),
            }
        })
    }

    /// Replaces a teacher's or admin's password hash; `false` if there is no such account.
    pub async fn set_password_hash(&self, id: UserId, hash: &str) -> anyhow::Result<bool> {
        let n = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE users SET password_hash = $1
                 WHERE id = $2 AND role IN ('teacher', 'admin') AND disabled_at IS NULL",
            )
            .bind(hash)
            .bind(id.0)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    pub async fn set_leaderboard_opt_out(&self, id: UserId, opt_out: bool) -> anyhow::Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE users SET leaderboard_opt_out = $1 WHERE id = $2")
                .bind(opt_out)
                .bind(id.0)
                .execute(pool)
                .await?;
        });
        self.views_changed();
        Ok(())
    }

    pub async fn set_display_name(&self, id: UserId, display_name: &str) -> anyhow::Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE users SET display_name = $1 WHERE id = $2")
                .bind(display_name)
                .bind(id.0)
                .execute(pool)
                .await?;
        });
        self.views_changed();
        Ok(())
    }

    /// Records a teacher invite by the SHA-256 of its code (the code is shown once, never stored).
    pub async fn create_invite(
        &self,
        code_hash: &str,
        created_by: Option<UserId>,
        expires_at: Option<i64>,
        now: i64,
    ) -> anyhow::Result<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO teacher_invites (code_hash, created_by, created_at, expires_at)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(code_hash)
            .bind(created_by.map(|u| u.0))
            .bind(now)
            .bind(expires_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}
