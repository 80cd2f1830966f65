//! The instance's metrics for `/metrics`: one prometheus-client `Registry` per app (the tests run
//! many apps in one process), encoded in the Prometheus text format (0.0.4). Counters and
//! histograms are updated where things happen (the HTTP middleware, the writer, the limits);
//! levels (sockets, actors, pools, queues, the process) are read when Prometheus scrapes, by
//! [`Levels`]. Aggregates only: no label carries a user, a class or an address.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::actors::registry::Registry as ActorRegistry;
use crate::actors::writer::{WriterHandle, WriterMetrics};
use crate::sockets::{SocketKind, WsHub};
use crate::store::Store;

/// Upper bounds (seconds) of the HTTP latency histogram: from a cached page (1 ms) to a request
/// that waited for an actor's timeout.
const HTTP_SECONDS_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// One series of the HTTP latency histogram. `route` is the route template
/// (`/api/v1/exercises/{id}`), never the path itself: ids would make one series per student.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: &'static str,
    pub route: String,
    pub status: u16,
}

/// The HTTP middleware's instruments.
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    pub duration: Family<HttpLabels, Histogram, fn() -> Histogram>,
    pub in_flight: Gauge,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            duration: Family::new_with_constructor(|| Histogram::new(HTTP_SECONDS_BUCKETS)),
            in_flight: Gauge::default(),
        }
    }
}

/// A limit that refused something: which one (a bounded set of names).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Limit {
    /// `submissions.rate_limit_per_hour` (429 or a socket error).
    Submissions,
    /// Failed sign-ins per login or per address (429).
    Login,
    /// Joins and recoveries per address (429).
    Join,
    /// Wrong recovery codes per pseudonym (429).
    Recovery,
    /// Messages per socket (closed with 4002).
    WsMessages,
    /// Sockets per user (closed with 4009).
    WsSockets,
    /// `submissions.hint_reveals_per_minute` (429 or a socket error). Only its fallbacks are
    /// counted (its refusals never were).
    Hints,
}

impl Limit {
    pub fn name(self) -> &'static str {
        match self {
            Limit::Submissions => "submissions",
            Limit::Login => "login",
            Limit::Join => "join",
            Limit::Recovery => "recovery",
            Limit::WsMessages => "ws_messages",
            Limit::WsSockets => "ws_sockets",
            Limit::Hints => "hints",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

/// Counts refusals by the rate limits and throttles, and how the limits shared through Redis
/// fared (src/cluster/limits.rs); cheap to clone. A default one counts into nothing registered
/// (unit tests).
#[derive(Clone, Debug, Default)]
pub struct Refusals {
    refused: Family<LimitLabels, Counter>,
    fallbacks: Family<LimitLabels, Counter>,
    lost: Family<LimitLabels, Counter>,
}

impl Refusals {
    pub fn count(&self, limit: Limit) {
        Self::inc(&self.refused, limit);
    }

    /// A decision of a shared limit made by this instance alone, because Redis failed or was
    /// left alone after a failure.
    pub fn fallback(&self, limit: Limit) {
        Self::inc(&self.fallbacks, limit);
    }

    /// An update of a shared limit that Redis did not apply (an event taken back, failures
    /// cleared, a socket record refreshed or removed): it counts until it expires.
    pub fn lost(&self, limit: Limit) {
        Self::inc(&self.lost, limit);
    }

    fn inc(family: &Family<LimitLabels, Counter>, limit: Limit) {
        family
            .get_or_create(&LimitLabels {
                limit: limit.name(),
            })
            .inc();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    /// The commit the binary was built from, when the build set `NSI_GIT_SHA`.
    commit: &'static str,
}

/// Everything this app measures. Built before the parts it measures (they take their handles
/// from it), then [`Metrics::watch`] adds the levels read at scrape time.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http: HttpMetrics,
    pub writer: WriterMetrics,
    pub refusals: Refusals,
    /// Answers of `GET /api/v1/me` served from this instance's cache, and built from the store.
    pub account_view_hits: Counter,
    pub account_view_misses: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let http = HttpMetrics::default();
        registry.register(
            "nsi_http_request_duration_seconds",
            "Time to answer an HTTP request (until its response starts), by method, route \
             template and status code.",
            http.duration.clone(),
        );
        registry.register(
            "nsi_http_requests_in_flight",
            "HTTP requests being handled now.",
            http.in_flight.clone(),
        );
        let writer = WriterMetrics::default();
        writer.register(&mut registry);
        let refusals = Refusals::default();
        registry.register(
            "nsi_rate_limited",
            "Requests, submissions and socket messages refused by a rate limit or a throttle.",
            refusals.refused.clone(),
        );
        registry.register(
            "nsi_limit_fallbacks",
            "Decisions of a limit shared through Redis that this instance made alone because \
             Redis failed (timeout, refused, error), by limit.",
            refusals.fallbacks.clone(),
        );
        registry.register(
            "nsi_limit_updates_lost",
            "Updates of a limit shared through Redis that Redis did not apply (an event taken \
             back, failures cleared, a socket record refreshed or removed), by limit.",
            refusals.lost.clone(),
        );
        let account_view_hits = Counter::default();
        let account_view_misses = Counter::default();
        registry.register(
            "nsi_account_view_cache_hits",
            "Answers of GET /api/v1/me served from this instance's cache.",
            account_view_hits.clone(),
        );
        registry.register(
            "nsi_account_view_cache_misses",
            "Answers of GET /api/v1/me built from the database (none cached, or changed since).",
            account_view_misses.clone(),
        );
        registry.register(
            "nsi_build",
            "The running build (always 1).",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                commit: option_env!("NSI_GIT_SHA")
                    .filter(|sha| !sha.is_empty())
                    .unwrap_or("unknown"),
            }),
        );
        Metrics {
            registry,
            http,
            writer,
            refusals,
            account_view_hits,
            account_view_misses,
        }
    }

    /// The Redis bus's lag: receive time − publish time of each message (`nsi_bus_lag_seconds`).
    pub fn register_bus_lag(&mut self, lag: Histogram) {
        self.registry.register(
            "nsi_bus_lag_seconds",
            "Time from publishing a bus message to its receipt here (clocks of two instances), in \
             seconds.",
            lag,
        );
    }

    /// Adds the levels read at each scrape from the running parts.
    pub fn watch(&mut self, levels: Levels) {
        self.registry.register_collector(Box::new(levels));
    }

    /// The whole registry in the Prometheus text format (0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would be a bug in a collector.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!(error = %e, "encoding the metrics failed");
        }
        out
    }
}

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Password hashes refused because too many waited (answered 503), since the process started:
/// the hashing slots are shared by the whole process.
static HASH_REFUSALS: AtomicU64 = AtomicU64::new(0);

/// Called by `auth::password` when it answers 503.
pub fn count_hash_refusal() {
    HASH_REFUSALS.fetch_add(1, Ordering::Relaxed);
}

/// The levels read at scrape time: open sockets, actors alive, the writer's queue, the database
/// pool, the event bus, the password-hashing queue and the process itself.
#[derive(Debug)]
pub struct Levels {
    pub actors: Arc<ActorRegistry>,
    pub ws: Arc<WsHub>,
    pub store: Store,
    pub writer: WriterHandle,
}

type Fmt = Result<(), std::fmt::Error>;

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> Fmt {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> Fmt {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// One gauge with a label `label` taking each value of `series`.
fn gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    series: &[(&'static str, f64)],
) -> Fmt {
    labelled(encoder, name, help, label, series, MetricType::Gauge)
}

/// One counter with a label `label` taking each value of `series`.
fn counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    series: &[(&'static str, f64)],
) -> Fmt {
    labelled(encoder, name, help, label, series, MetricType::Counter)
}

fn labelled(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    series: &[(&'static str, f64)],
    kind: MetricType,
) -> Fmt {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (value, number) in series {
        let labels = [(label, *value)];
        let family = metric.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(*number).encode(family)?,
            _ => ConstGauge::new(*number).encode(family)?,
        }
    }
    Ok(())
}

impl Collector for Levels {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Fmt {
        let e = &mut encoder;
        gauges(
            e,
            "nsi_websockets_open",
            "Open WebSockets on this instance, by kind.",
            "kind",
            &[
                ("student", self.ws.open_sockets(SocketKind::Student) as f64),
                (
                    "dashboard",
                    self.ws.open_sockets(SocketKind::Dashboard) as f64,
                ),
            ],
        )?;
        let (students, classrooms) = self.actors.counts();
        gauges(
            e,
            "nsi_actors_alive",
            "Actors running on this instance, by kind (actors still loading not counted).",
            "kind",
            &[
                ("student", students as f64),
                ("classroom", classrooms as f64),
            ],
        )?;
        let (students, classrooms) = self.actors.reload_failures();
        counters(
            e,
            "nsi_actor_reload_failures",
            "Reloads of an actor's state from the database that failed (each retry counts), by \
             kind.",
            "kind",
            &[
                ("student", students as f64),
                ("classroom", classrooms as f64),
            ],
        )?;
        counter(
            e,
            "nsi_classroom_reloads_queued",
            "Class reloads asked while one was running (each runs again after it).",
            self.actors.reloads_queued() as f64,
        )?;
        if let Some(link) = self.actors.student_link() {
            let stats = link.stats();
            let read = |n: &AtomicU64| n.load(Ordering::Relaxed) as f64;
            counters(
                e,
                "nsi_cluster_student_news",
                "News of students' changes between instances (Redis): published, received from \
                 the other instances, dropped (queue full or Redis failing), listener reconnects.",
                "event",
                &[
                    ("published", read(&stats.published)),
                    ("received", read(&stats.received)),
                    ("dropped", read(&stats.dropped)),
                    ("reconnects", read(&stats.reconnects)),
                ],
            )?;
        }
        gauge(
            e,
            "nsi_writer_queue_depth",
            "Items waiting for the writer.",
            self.writer.queue_depth() as f64,
        )?;
        let bus = self.actors.bus_stats();
        counter(
            e,
            "nsi_bus_published",
            "Class events published to the event bus by this instance.",
            bus.published as f64,
        )?;
        counter(
            e,
            "nsi_bus_received",
            "Class events received from the event bus by this instance.",
            bus.received as f64,
        )?;
        counters(
            e,
            "nsi_bus_dropped",
            "Bus messages dropped by this instance: publish queue full, or Redis failing.",
            "reason",
            &[
                ("queue_full", bus.dropped_queue_full as f64),
                ("redis_error", bus.dropped_redis_error as f64),
            ],
        )?;
        counter(
            e,
            "nsi_bus_duplicates",
            "Bus messages received twice (the second dropped).",
            bus.duplicates as f64,
        )?;
        counter(
            e,
            "nsi_bus_gaps",
            "Bus messages that showed earlier ones of their origin were lost (the class resyncs).",
            bus.gaps as f64,
        )?;
        counter(
            e,
            "nsi_bus_resyncs",
            "Resyncs from the database asked of this instance's classes by the bus.",
            bus.resyncs as f64,
        )?;
        if let Some(up) = bus.subscription_up {
            gauge(
                e,
                "nsi_bus_subscription_up",
                "1 while this instance's Redis subscription is up.",
                if up { 1.0 } else { 0.0 },
            )?;
            counter(
                e,
                "nsi_bus_reconnects",
                "Times this instance's Redis subscription came back after being lost.",
                bus.reconnects as f64,
            )?;
        }
        let pool = self.store.pool_stats();
        gauge(
            e,
            "nsi_db_pool_connections",
            "Database connections open in the pool (idle or in use).",
            f64::from(pool.size),
        )?;
        gauge(
            e,
            "nsi_db_pool_idle",
            "Database connections open and idle.",
            pool.idle as f64,
        )?;
        gauge(
            e,
            "nsi_db_pool_in_use",
            "Database connections in use.",
            f64::from(pool.size).max(pool.idle as f64) - pool.idle as f64,
        )?;
        gauge(
            e,
            "nsi_db_pool_max",
            "The pool's limit (database.max_connections).",
            f64::from(pool.max),
        )?;
        let (waiting, (full, late)) = self.store.admission_stats();
        gauge(
            e,
            "nsi_db_admission_waiting",
            "On-demand loads (actor, session, account view) waiting for a turn at the pool.",
            waiting as f64,
        )?;
        counters(
            e,
            "nsi_db_admission_refused",
            "On-demand loads refused with 503: database.max_waiting already waiting (full), or no turn within database.acquire_timeout_secs (timed_out).",
            "reason",
            &[("full", full as f64), ("timed_out", late as f64)],
        )?;
        let hashing = crate::auth::password::queue();
        gauge(
            e,
            "nsi_password_hash_waiting",
            "Sign-ins and joins waiting for a password-hashing slot (whole process).",
            hashing.waiting as f64,
        )?;
        gauge(
            e,
            "nsi_password_hash_running",
            "Password hashes running now (whole process).",
            hashing.running as f64,
        )?;
        counter(
            e,
            "nsi_password_hash_refused",
            "Sign-ins and joins answered 503 because too many waited for a hashing slot.",
            HASH_REFUSALS.load(Ordering::Relaxed) as f64,
        )?;
        process(e)
    }
}

/// The standard process series (the names Prometheus client libraries use), from `/proc`.
#[cfg(target_os = "linux")]
fn process(e: &mut DescriptorEncoder) -> Fmt {
    use procfs::WithCurrentSystemInfo;
    let Ok(me) = procfs::process::Process::myself() else {
        return Ok(());
    };
    if let Ok(stat) = me.stat() {
        let ticks = procfs::ticks_per_second() as f64;
        counter(
            e,
            "process_cpu_seconds",
            "CPU time used by the process (user and system), in seconds.",
            (stat.utime + stat.stime) as f64 / ticks,
        )?;
        gauge(
            e,
            "process_resident_memory_bytes",
            "Resident memory of the process, in bytes.",
            stat.rss_bytes().get() as f64,
        )?;
        gauge(
            e,
            "process_threads",
            "Threads of the process.",
            stat.num_threads as f64,
        )?;
        if let Ok(boot) = procfs::boot_time_secs() {
            gauge(
                e,
                "process_start_time_seconds",
                "When the process started, in seconds since the Unix epoch.",
                boot as f64 + stat.starttime as f64 / ticks,
            )?;
        }
    }
    if let Ok(fds) = me.fd_count() {
        gauge(
            e,
            "process_open_fds",
            "Open file descriptors (sockets included).",
            fds as f64,
        )?;
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn process(_: &mut DescriptorEncoder) -> Fmt {
    Ok(())
}
