//! Settings: embedded `config/default.toml`, then `config/<APP_ENV>.toml`, then `NSI__SECTION__KEY`
//! environment variables, then the platform variables `PORT`, `DATABASE_URL` and `REDIS_URL`.
//!
//! The files are compiled into the binary so that it runs from any directory. Unknown keys and bad
//! values stop start-up with an error that names the key.

use std::path::PathBuf;

use anyhow::{Context, bail};
use config::{Config, Environment, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

mod validate;

const DEFAULT_TOML: &str = include_str!("../../config/default.toml");
const PRODUCTION_TOML: &str = include_str!("../../config/production.toml");
const TEST_TOML: &str = include_str!("../../config/test.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub content: ContentSettings,
    pub log: LogSettings,
    pub auth: AuthSettings,
    pub submissions: SubmissionSettings,
    pub classrooms: ClassroomSettings,
    pub writer: WriterSettings,
    pub actors: ActorSettings,
    pub ws: WsSettings,
    pub grading: GradingSettings,
    pub metrics: MetricsSettings,
    pub sentry: SentrySettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    /// Origins (scheme://host[:port]) allowed besides the request's own Host.
    pub allowed_origins: Vec<String>,
    /// The Origin check takes the server's host from `X-Forwarded-Host`/`Forwarded` (set by a
    /// proxy in front) rather than from `Host`. Off: clients can send those headers themselves.
    pub trust_forwarded_headers: bool,
    pub max_body_bytes: usize,
    pub shutdown_timeout_secs: u64,
    /// HTTP worker threads; 0 means one per core. `WEB_CONCURRENCY` sets it on platforms.
    pub workers: usize,
    /// The built browser app (`web/build.mjs` writes it): page shell and assets.
    #[serde(default = "default_static_dir")]
    pub static_dir: PathBuf,
}

fn default_static_dir() -> PathBuf {
    PathBuf::from("static")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://…`; empty means the embedded SQLite file. Secret: it may hold a password.
    pub url: SecretString,
    pub sqlite_path: PathBuf,
    pub max_connections: u32,
    pub min_connections: u32,
    pub acquire_timeout_secs: u64,
    /// On-demand loads (an actor's state, a session, an account view) waiting for the pool at
    /// most; the next one is refused at once with 503 (store/admission.rs).
    pub max_waiting: usize,
    /// How long opening one database connection may take.
    pub connect_timeout_secs: u64,
    /// PostgreSQL cancels any statement running longer than this (set on every connection);
    /// 0 turns it off. SQLite has no statement timeout (its writes wait `busy_timeout`).
    pub statement_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://…`; empty means the in-process bus. Secret: it may hold a password.
    pub url: SecretString,
    /// Every key and channel this deployment uses starts with `{key_prefix}:` (several
    /// deployments, or parallel tests, can share one Redis).
    pub key_prefix: String,
    /// Connections in the command pool (publishes, scripts, leases); subscriptions use one
    /// dedicated connection per instance on top.
    pub pool_size: usize,
    /// How long opening a Redis connection may take.
    pub connect_timeout_ms: u64,
    /// How long one command (or pipeline) may take, waiting for a pooled connection included;
    /// past it the command fails and the caller degrades (docs/architecture.md).
    pub command_timeout_ms: u64,
    /// Bus messages waiting to be published (past it they are dropped and counted).
    pub publish_queue: usize,
    /// Messages sent in one pipeline at most.
    pub publish_batch: usize,
    /// A class's channel is left this long after its last actor here stopped.
    pub unsubscribe_after_secs: u64,
    /// The longest wait between two attempts to get the subscription back.
    pub reconnect_max_ms: u64,
    /// A class's shared stream in Redis (epoch, offset, recent events) expires this long after
    /// its last use.
    pub class_stream_ttl_secs: u64,
}

/// Error reporting (src/telemetry/sentry.rs): off while `dsn` is empty.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentrySettings {
    /// The project's DSN (SENTRY_DSN). Secret: it holds the project's key.
    pub dsn: SecretString,
    /// Shown in Sentry to tell deployments apart (SENTRY_ENVIRONMENT).
    pub environment: String,
    /// Share of error events sent, 0.0 to 1.0.
    pub sample_rate: f32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentSettings {
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub filter: String,
}

/// Accounts and sessions: who may sign up, how long a session lasts, how hard we throttle guesses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub signup: SignupMode,
    pub session_lifetime_hours: u64,
    /// How long an instance trusts a session it has checked in the database. A logout on another
    /// instance takes effect here within this delay.
    pub session_cache_ttl_secs: u64,
    /// Failed sign-ins per login from one address, then the login is locked for that address…
    pub login_max_failures: u32,
    /// …and per login from all addresses together, then it is locked for everyone.
    pub login_max_failures_global: u32,
    pub login_max_failures_per_ip: u32,
    pub login_window_secs: u64,
    pub join_max_failures: u32,
    pub join_max_per_ip: u32,
    pub join_window_secs: u64,
    pub cookie_secure: bool,
    /// Take the client address from the last `X-Forwarded-For` entry (set by the platform's proxy)
    /// rather than from the TCP peer, which is then the proxy for everyone.
    pub trust_forwarded_for: bool,
    /// Password/recovery-code hashes computed at once; each slot holds argon2's 19 MiB working
    /// memory from start-up to exit (src/auth/password.rs).
    pub hash_slots: usize,
    /// Sign-ins waiting for a hashing slot, at most (past it: 503 at once).
    pub hash_queue: usize,
    /// How long a sign-in waits for a hashing slot (then 503).
    pub hash_wait_ms: u64,
}

/// Who may create a teacher account over the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignupMode {
    /// Anyone who reaches the server.
    Open,
    /// Only with a code made by `nsi-live admin create-invite`.
    InviteOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmissionSettings {
    pub rate_limit_per_hour: u32,
    pub max_code_bytes: usize,
    /// Hint reveals one student may ask for per rolling minute (over HTTP and sockets together).
    pub hint_reveals_per_minute: u32,
}

/// Bounds on what a teacher creates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassroomSettings {
    /// Classrooms one teacher may have, archived ones included (then 409 `too_many_classrooms`).
    pub max_per_teacher: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriterSettings {
    pub batch_max_rows: usize,
    pub batch_max_wait_ms: u64,
    pub queue_capacity: usize,
    pub retry_window_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorSettings {
    pub arbiters: usize,
    pub mailbox_capacity: usize,
    pub idle_timeout_secs: u64,
    pub request_timeout_ms: u64,
    pub classroom_ring_size: usize,
    /// Longest load of an actor's state from the database (then it fails, and is retried).
    pub load_timeout_ms: u64,
}

/// Live WebSockets (`docs/protocol.md`): heartbeats, limits, backpressure, and when a student is
/// shown as stuck on the teacher's dashboard.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsSettings {
    /// The server pings every socket this often.
    pub heartbeat_interval_secs: u64,
    /// A socket that sent nothing (not even a pong) for this long is closed; so is one whose
    /// outgoing writes stay blocked this long.
    pub client_timeout_secs: u64,
    /// Largest incoming message (a frame, or fragments put together), in bytes.
    pub max_frame_bytes: usize,
    /// Messages a socket may send per second on average, and in one burst.
    pub messages_per_sec: u32,
    pub message_burst: u32,
    /// Open sockets per user (tabs, devices) on one instance.
    pub max_sockets_per_user: usize,
    /// Messages waiting to be written to one socket at most.
    pub outgoing_queue: usize,
    /// A student is stuck after this many failed attempts on one exercise without a pass…
    pub stuck_failed_attempts: i32,
    /// …or after this long on one exercise (focused) without a pass.
    pub stuck_after_secs: u64,
    /// A student's presence reaches the dashboards at most once per this many milliseconds (the
    /// last state wins).
    pub presence_interval_ms: u64,
}

/// The server's grader: SQL answers run on these threads under these limits (docs/api.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradingSettings {
    /// Wall time of one SQL statement (then `sql_timeout`).
    pub sql_timeout_ms: u64,
    /// Rows and bytes a query's result may have (then `sql_too_many_rows` / `sql_result_too_large`).
    pub sql_max_rows: usize,
    pub sql_max_result_bytes: usize,
    /// Threads that run SQL answers, and answers waiting for them (then 503).
    pub sql_threads: usize,
    pub sql_queue: usize,
}

impl GradingSettings {
    pub fn sql_limits(&self) -> crate::grading::sql::SqlLimits {
        crate::grading::sql::SqlLimits {
            timeout: std::time::Duration::from_millis(self.sql_timeout_ms),
            max_rows: self.sql_max_rows,
            max_result_bytes: self.sql_max_result_bytes,
        }
    }
}

/// Who may read `/metrics`: with a bearer token, and/or only on an internal listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// When set, `/metrics` answers 401 without `Authorization: Bearer <token>`. Secret.
    pub bearer_token: SecretString,
    /// `host:port` of a listener that serves `/metrics` alone (an internal address, e.g.
    /// `127.0.0.1:9100` or a private network's); the public port then answers 404 there. Empty:
    /// `/metrics` is on the public port.
    pub listen: String,
}

impl MetricsSettings {
    /// The token `/metrics` requires, if any.
    pub fn token(&self) -> Option<&str> {
        Some(self.bearer_token.expose_secret().trim()).filter(|t| !t.is_empty())
    }

    /// The internal listener's address, if `/metrics` has one.
    pub fn listen(&self) -> Option<&str> {
        Some(self.listen.trim()).filter(|l| !l.is_empty())
    }
}

/// Which storage backend the database settings select.
#[derive(Debug, Clone)]
pub enum DatabaseTarget {
    Sqlite(PathBuf),
    Postgres(SecretString),
}

impl DatabaseSettings {
    pub fn target(&self) -> DatabaseTarget {
        let url = self.url.expose_secret().trim();
        if url.is_empty() {
            DatabaseTarget::Sqlite(self.sqlite_path.clone())
        } else {
            DatabaseTarget::Postgres(SecretString::from(url.to_owned()))
        }
    }
}

impl RedisSettings {
    pub fn is_configured(&self) -> bool {
        !self.url.expose_secret().trim().is_empty()
    }
}

/// The process environment, abstracted so tests can load settings without touching real
/// environment variables (which are process-global).
pub trait EnvSource {
    fn var(&self, key: &str) -> Option<String>;
    fn vars(&self) -> Vec<(String, String)>;
}

pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
    fn vars(&self) -> Vec<(String, String)> {
        std::env::vars().collect()
    }
}

impl EnvSource for Vec<(String, String)> {
    fn var(&self, key: &str) -> Option<String> {
        self.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }
    fn vars(&self) -> Vec<(String, String)> {
        self.clone()
    }
}

impl Settings {
    /// Loads the settings from the real process environment.
    pub fn load() -> anyhow::Result<Settings> {
        Self::load_from(&ProcessEnv)
    }

    pub fn load_from(env: &dyn EnvSource) -> anyhow::Result<Settings> {
        let app_env = env.var("APP_ENV").unwrap_or_default();
        let mut builder =
            Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        match app_env.as_str() {
            "" | "local" | "development" => {}
            "production" => {
                builder = builder.add_source(File::from_str(PRODUCTION_TOML, FileFormat::Toml))
            }
            "test" => builder = builder.add_source(File::from_str(TEST_TOML, FileFormat::Toml)),
            other => bail!(
                "APP_ENV={other:?} is not one of local, production, test (leave it unset for local)"
            ),
        }
        // Only our prefixed variables: `NSI__SERVER__PORT=9000` sets server.port.
        let ours: config::Map<String, String> = env
            .vars()
            .into_iter()
            .filter(|(k, _)| k.starts_with("NSI__"))
            .collect();
        builder = builder.add_source(
            Environment::with_prefix("NSI")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                // `NSI__SERVER__ALLOWED_ORIGINS=https://a.fr,https://b.fr` is a list.
                .list_separator(",")
                .with_list_parse_key("server.allowed_origins")
                .source(Some(ours)),
        );
        // Platform variables (Railway, Heroku, Docker conventions) win over everything else.
        if let Some(port) = env.var("PORT").filter(|p| !p.trim().is_empty()) {
            let port: u16 = port
                .trim()
                .parse()
                .with_context(|| format!("PORT={port:?} is not a valid port number"))?;
            builder = builder.set_override("server.port", i64::from(port))?;
        }
        if let Some(workers) = env.var("WEB_CONCURRENCY").filter(|w| !w.trim().is_empty()) {
            let workers: u16 = workers.trim().parse().with_context(|| {
                format!("WEB_CONCURRENCY={workers:?} is not a number of worker threads")
            })?;
            builder = builder.set_override("server.workers", i64::from(workers))?;
        }
        if let Some(url) = env.var("DATABASE_URL").filter(|u| !u.trim().is_empty()) {
            builder = builder.set_override("database.url", url)?;
        }
        if let Some(url) = env.var("REDIS_URL").filter(|u| !u.trim().is_empty()) {
            builder = builder.set_override("redis.url", url)?;
        }
        if let Some(dsn) = env.var("SENTRY_DSN").filter(|d| !d.trim().is_empty()) {
            builder = builder.set_override("sentry.dsn", dsn)?;
        }
        if let Some(name) = env
            .var("SENTRY_ENVIRONMENT")
            .filter(|n| !n.trim().is_empty())
        {
            builder = builder.set_override("sentry.environment", name)?;
        }
        let config = builder.build().context("reading the configuration")?;
        // serde_path_to_error names the key (`database.max_connections`) in every error.
        let mut settings: Settings = serde_path_to_error::deserialize(config).map_err(|e| {
            let path = e.path().to_string();
            anyhow::anyhow!("configuration key `{path}`: {}", e.into_inner())
        })?;
        // "https://a.fr, https://b.fr" in the variable: spaces after the commas are fine.
        settings.server.allowed_origins = settings
            .server
            .allowed_origins
            .iter()
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        settings.validate()?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_select_sqlite() {
        let s = Settings::load_from(&env(&[])).unwrap();
        assert_eq!(s.server.port, 8080);
        assert!(matches!(s.database.target(), DatabaseTarget::Sqlite(_)));
        assert!(!s.redis.is_configured());
        assert_eq!(s.log.format, LogFormat::Pretty);
        assert_eq!(s.auth.signup, SignupMode::Open);
        assert!(!s.auth.cookie_secure);
        assert_eq!(s.auth.login_max_failures, 10);
    }

    #[test]
    fn production_layer_and_platform_variables() {
        let s = Settings::load_from(&env(&[
            ("APP_ENV", "production"),
            ("PORT", "9123"),
            ("DATABASE_URL", "postgres://u:hunter2@db/x"),
            ("NSI__DATABASE__MAX_CONNECTIONS", "33"),
        ]))
        .unwrap();
        assert_eq!(s.server.host, "0.0.0.0");
        assert_eq!(s.server.port, 9123);
        assert_eq!(s.database.max_connections, 33);
        assert_eq!(s.log.format, LogFormat::Json);
        assert!(matches!(s.database.target(), DatabaseTarget::Postgres(_)));
        assert!(s.auth.cookie_secure);
        // The password never shows in Debug output.
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn web_concurrency_sets_the_workers_and_timeouts_have_defaults() {
        let s = Settings::load_from(&env(&[("WEB_CONCURRENCY", "3")])).unwrap();
        assert_eq!(s.server.workers, 3);
        assert_eq!(s.database.connect_timeout_secs, 10);
        assert_eq!(s.database.statement_timeout_ms, 30_000);
        let defaults = Settings::load_from(&env(&[])).unwrap();
        assert_eq!(defaults.server.workers, 0, "0: one worker per core");
        let err = Settings::load_from(&env(&[("WEB_CONCURRENCY", "many")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("WEB_CONCURRENCY"), "{err}");
        let err = Settings::load_from(&env(&[("NSI__DATABASE__CONNECT_TIMEOUT_SECS", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("database.connect_timeout_secs"), "{err}");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Settings::load_from(&env(&[("NSI__SERVER__PROT", "1")])).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("server.prot"), "{msg}");
    }

    #[test]
    fn bad_value_is_named() {
        let err =
            Settings::load_from(&env(&[("NSI__DATABASE__MAX_CONNECTIONS", "many")])).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("database.max_connections"), "{msg}");
        let err = Settings::load_from(&env(&[("NSI__LOG__FORMAT", "xml")])).unwrap_err();
        assert!(format!("{err:#}").contains("log.format"), "{err:#}");
        let err = Settings::load_from(&env(&[("PORT", "eighty")])).unwrap_err();
        assert!(format!("{err:#}").contains("PORT"), "{err:#}");
    }

    #[test]
    fn bad_database_url_does_not_echo_secret() {
        let err =
            Settings::load_from(&env(&[("DATABASE_URL", "mysql://u:s3cret@h/db")])).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("database.url"), "{msg}");
        assert!(!msg.contains("s3cret"), "{msg}");
    }

    #[test]
    fn auth_settings_are_read_and_checked() {
        let s = Settings::load_from(&env(&[("NSI__AUTH__SIGNUP", "invite_only")])).unwrap();
        assert_eq!(s.auth.signup, SignupMode::InviteOnly);
        let err = Settings::load_from(&env(&[("NSI__AUTH__SIGNUP", "closed")])).unwrap_err();
        assert!(format!("{err:#}").contains("auth.signup"), "{err:#}");
        let err = Settings::load_from(&env(&[("NSI__AUTH__LOGIN_WINDOW_SECS", "0")])).unwrap_err();
        assert!(
            format!("{err:#}").contains("auth.login_window_secs"),
            "{err:#}"
        );
    }

    #[test]
    fn allowed_origins_come_from_one_comma_separated_variable() {
        let s = Settings::load_from(&env(&[(
            "NSI__SERVER__ALLOWED_ORIGINS",
            "https://nsi.example.fr, https://lycee.example.fr",
        )]))
        .unwrap();
        assert_eq!(
            s.server.allowed_origins,
            ["https://nsi.example.fr", "https://lycee.example.fr"]
        );
        // Other values are still parsed as scalars.
        let s = Settings::load_from(&env(&[("NSI__SERVER__PORT", "9000")])).unwrap();
        assert_eq!(s.server.port, 9000);
    }

    #[test]
    fn metrics_settings_are_read_and_checked() {
        let s = Settings::load_from(&env(&[])).unwrap();
        assert_eq!(s.metrics.token(), None);
        assert_eq!(s.metrics.listen(), None);
        let s = Settings::load_from(&env(&[
            ("NSI__METRICS__BEARER_TOKEN", "a-long-scrape-token-42"),
            ("NSI__METRICS__LISTEN", "127.0.0.1:9100"),
        ]))
        .unwrap();
        assert_eq!(s.metrics.token(), Some("a-long-scrape-token-42"));
        assert_eq!(s.metrics.listen(), Some("127.0.0.1:9100"));
        assert!(!format!("{s:?}").contains("a-long-scrape-token-42"));
        let err = Settings::load_from(&env(&[("NSI__METRICS__BEARER_TOKEN", "short")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("metrics.bearer_token") && !err.contains("short"),
            "{err}"
        );
        let err = Settings::load_from(&env(&[("NSI__METRICS__LISTEN", "localhost")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("metrics.listen"), "{err}");
    }

    #[test]
    fn unknown_app_env_is_refused() {
        assert!(Settings::load_from(&env(&[("APP_ENV", "prod")])).is_err());
    }
}
