//! The checks every loaded `Settings` passes before the server starts: ranges, relations between
//! keys, URL schemes. Each error names the key; none echoes a secret.

use anyhow::bail;
use secrecy::ExposeSecret;

use super::*;

impl Settings {
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        let db = &self.database;
        if db.max_connections == 0 {
            bail!("configuration key `database.max_connections`: must be at least 1");
        }
        if db.min_connections > db.max_connections {
            bail!(
                "configuration key `database.min_connections`: {} is above database.max_connections ({})",
                db.min_connections,
                db.max_connections
            );
        }
        if db.acquire_timeout_secs == 0 {
            bail!("configuration key `database.acquire_timeout_secs`: must be at least 1");
        }
        if db.connect_timeout_secs == 0 {
            bail!("configuration key `database.connect_timeout_secs`: must be at least 1");
        }
        if let DatabaseTarget::Postgres(url) = db.target() {
            let url = url.expose_secret();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                // Never echo the URL: it may carry a password.
                bail!(
                    "configuration key `database.url` (DATABASE_URL): only postgres:// URLs are supported; leave it empty for the embedded SQLite file"
                );
            }
        }
        if self.redis.is_configured() {
            let url = self.redis.url.expose_secret();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                bail!(
                    "configuration key `redis.url` (REDIS_URL): must start with redis:// or rediss://"
                );
            }
            let prefix = &self.redis.key_prefix;
            if prefix.is_empty()
                || !prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                bail!(
                    "configuration key `redis.key_prefix`: must be non-empty letters, digits, '-', '_' or '.'"
                );
            }
            for (key, value) in [
                ("redis.pool_size", self.redis.pool_size as u64),
                ("redis.connect_timeout_ms", self.redis.connect_timeout_ms),
                ("redis.command_timeout_ms", self.redis.command_timeout_ms),
                ("redis.publish_queue", self.redis.publish_queue as u64),
                ("redis.publish_batch", self.redis.publish_batch as u64),
                ("redis.reconnect_max_ms", self.redis.reconnect_max_ms),
                (
                    "redis.class_stream_ttl_secs",
                    self.redis.class_stream_ttl_secs,
                ),
            ] {
                if value == 0 {
                    bail!("configuration key `{key}`: must be at least 1");
                }
            }
        }
        if !(0.0..=1.0).contains(&self.sentry.sample_rate) {
            bail!("configuration key `sentry.sample_rate`: must be between 0.0 and 1.0");
        }
        for (key, value) in [
            (
                "submissions.rate_limit_per_hour",
                self.submissions.rate_limit_per_hour as u64,
            ),
            (
                "submissions.max_code_bytes",
                self.submissions.max_code_bytes as u64,
            ),
            (
                "submissions.hint_reveals_per_minute",
                u64::from(self.submissions.hint_reveals_per_minute),
            ),
            (
                "classrooms.max_per_teacher",
                u64::from(self.classrooms.max_per_teacher),
            ),
            ("writer.batch_max_rows", self.writer.batch_max_rows as u64),
            ("writer.queue_capacity", self.writer.queue_capacity as u64),
            ("actors.arbiters", self.actors.arbiters as u64),
            (
                "actors.mailbox_capacity",
                self.actors.mailbox_capacity as u64,
            ),
            ("actors.request_timeout_ms", self.actors.request_timeout_ms),
            ("actors.load_timeout_ms", self.actors.load_timeout_ms),
            (
                "actors.classroom_ring_size",
                self.actors.classroom_ring_size as u64,
            ),
        ] {
            if value == 0 {
                bail!("configuration key `{key}`: must be at least 1");
            }
        }
        let g = &self.grading;
        for (key, value) in [
            ("sql_timeout_ms", g.sql_timeout_ms),
            ("sql_max_rows", g.sql_max_rows as u64),
            ("sql_max_result_bytes", g.sql_max_result_bytes as u64),
            ("sql_threads", g.sql_threads as u64),
            ("sql_queue", g.sql_queue as u64),
        ] {
            if value == 0 {
                bail!("configuration key `grading.{key}`: must be at least 1");
            }
        }
        let ws = &self.ws;
        for (key, value) in [
            ("heartbeat_interval_secs", ws.heartbeat_interval_secs),
            ("client_timeout_secs", ws.client_timeout_secs),
            ("messages_per_sec", u64::from(ws.messages_per_sec)),
            ("message_burst", u64::from(ws.message_burst)),
            ("max_sockets_per_user", ws.max_sockets_per_user as u64),
            ("outgoing_queue", ws.outgoing_queue as u64),
            (
                "stuck_failed_attempts",
                ws.stuck_failed_attempts.max(0) as u64,
            ),
            ("stuck_after_secs", ws.stuck_after_secs),
        ] {
            if value == 0 {
                bail!("configuration key `ws.{key}`: must be at least 1");
            }
        }
        if ws.client_timeout_secs <= ws.heartbeat_interval_secs {
            bail!(
                "configuration key `ws.client_timeout_secs`: must be longer than ws.heartbeat_interval_secs"
            );
        }
        if ws.max_frame_bytes < 1024 {
            bail!("configuration key `ws.max_frame_bytes`: must be at least 1024");
        }
        if self.server.max_body_bytes < 1024 {
            bail!("configuration key `server.max_body_bytes`: must be at least 1024");
        }
        let auth = &self.auth;
        for (key, value) in [
            ("session_lifetime_hours", auth.session_lifetime_hours),
            ("session_cache_ttl_secs", auth.session_cache_ttl_secs),
            ("login_max_failures", u64::from(auth.login_max_failures)),
            (
                "login_max_failures_global",
                u64::from(auth.login_max_failures_global),
            ),
            (
                "login_max_failures_per_ip",
                u64::from(auth.login_max_failures_per_ip),
            ),
            ("login_window_secs", auth.login_window_secs),
            ("join_max_failures", u64::from(auth.join_max_failures)),
            ("join_max_per_ip", u64::from(auth.join_max_per_ip)),
            ("join_window_secs", auth.join_window_secs),
            ("hash_slots", auth.hash_slots as u64),
            ("hash_queue", auth.hash_queue as u64),
            ("hash_wait_ms", auth.hash_wait_ms),
        ] {
            if value == 0 {
                bail!("configuration key `auth.{key}`: must be at least 1");
            }
        }
        if let Some(token) = self.metrics.token()
            && token.len() < 16
        {
            // Never echo the token.
            bail!("configuration key `metrics.bearer_token`: must be at least 16 characters");
        }
        if let Some(listen) = self.metrics.listen()
            && listen.parse::<std::net::SocketAddr>().is_err()
        {
            bail!(
                "configuration key `metrics.listen`: {listen:?} must look like 127.0.0.1:9100 (an IP address and a port)"
            );
        }
        for origin in &self.server.allowed_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.ends_with('/')
            {
                bail!(
                    "configuration key `server.allowed_origins`: {origin:?} must look like https://host[:port] (no trailing slash)"
                );
            }
        }
        Ok(())
    }
}
