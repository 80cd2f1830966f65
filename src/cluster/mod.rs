//! The link between instances: one Redis (`REDIS_URL`), reached through a bounded pool of command
//! connections and, for pub/sub, dedicated connections opened from the same client. Absent
//! (`None` in `AppState::cluster`) when `redis.url` is empty: one instance, everything in-process.
//!
//! Every key and channel is `{redis.key_prefix}:…` (`Cluster::key`), every command is bounded by
//! `redis.command_timeout_ms` (the pool wait included), and an error never blocks a caller: what
//! uses Redis degrades to this instance's own view and says so (`/readyz`, `/metrics`).

pub mod limits;
pub mod students;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadpool_redis::{PoolConfig, Runtime, Timeouts};
use secrecy::ExposeSecret;

use crate::config::RedisSettings;

pub struct Cluster {
    pool: deadpool_redis::Pool,
    client: redis::Client,
    prefix: String,
    instance_id: String,
    connect_timeout: Duration,
    command_timeout: Duration,
}

impl std::fmt::Debug for Cluster {
    // Never the URL: it may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("prefix", &self.prefix)
            .field("instance_id", &self.instance_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("Redis did not answer within redis.command_timeout_ms")]
    Timeout,
    #[error("no Redis connection: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl Cluster {
    /// The cluster link when `redis.url` is set. Opens nothing yet (connections are made on first
    /// use), so an instance starts even while Redis is away.
    pub fn connect(settings: &RedisSettings) -> anyhow::Result<Option<Arc<Cluster>>> {
        if !settings.is_configured() {
            return Ok(None);
        }
        let url = settings.url.expose_secret();
        // The errors below never include the URL (it may carry a password).
        let client = redis::Client::open(url).map_err(|e| {
            anyhow::anyhow!(
                "redis.url (REDIS_URL) is not a valid Redis URL ({:?})",
                e.kind()
            )
        })?;
        let connect_timeout = Duration::from_millis(settings.connect_timeout_ms);
        let command_timeout = Duration::from_millis(settings.command_timeout_ms);
        let mut config = deadpool_redis::Config::from_url(url);
        config.pool = Some(PoolConfig {
            max_size: settings.pool_size,
            timeouts: Timeouts {
                wait: Some(command_timeout),
                create: Some(connect_timeout),
                recycle: Some(command_timeout),
            },
            ..PoolConfig::default()
        });
        let pool = config
            .create_pool(Some(Runtime::Tokio1))
            .context("creating the Redis connection pool")?;
        Ok(Some(Arc::new(Cluster {
            pool,
            client,
            prefix: settings.key_prefix.clone(),
            instance_id: uuid::Uuid::new_v4().simple().to_string(),
            connect_timeout,
            command_timeout,
        })))
    }

    /// `{key_prefix}:{rest}`: a key or channel of this deployment.
    pub fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// This process's id among the instances (random at each start).
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The client, to open dedicated connections (pub/sub) with `connect_timeout`.
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    pub fn command_timeout(&self) -> Duration {
        self.command_timeout
    }

    /// The command pool's size and idle connections (`/metrics`).
    pub fn pool_status(&self) -> deadpool_redis::Status {
        self.pool.status()
    }

    /// Runs `f` on a pooled connection; the wait for the connection and the commands together
    /// are bounded by `redis.command_timeout_ms`.
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T, ClusterError>
    where
        F: FnOnce(deadpool_redis::Connection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let work = async {
            let conn = self.pool.get().await?;
            Ok::<T, ClusterError>(f(conn).await?)
        };
        tokio::time::timeout(self.command_timeout, work)
            .await
            .map_err(|_| ClusterError::Timeout)?
    }

    /// `PING` (readiness).
    pub async fn ping(&self) -> Result<(), ClusterError> {
        self.run(|mut conn| async move {
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map(drop)
        })
        .await
    }
}
