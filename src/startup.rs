//! Builds the application (for `main` and for tests alike): load the content, open and migrate the
//! database, sync the catalogue, bind the listener.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Weak};
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::{DefaultHeaders, from_fn};
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use tracing_actix_web::TracingLogger;

use crate::actors::ActorSystem;
use crate::actors::writer::DrainSwitch;
use crate::auth::Auth;
use crate::auth::origin::AllowedOrigins;
use crate::bus::redis::RedisBus;
use crate::bus::{EventBus, LocalBus, SessionEnded, SessionSink};
use crate::cluster::limits::SharedLimits;
use crate::config::Settings;
use crate::content;
use crate::domain::catalogue::{Catalogue, CourseSpec, ResultTable};
use crate::grading::Grader;
use crate::grading::sql::{self, SqlLimits};
use crate::http;
use crate::http::catalogue::RenderedCatalogue;
use crate::metrics::{Levels, Metrics};
use crate::service::account_views::AccountViews;
use crate::sockets::WsHub;
use crate::state::AppState;
use crate::store::Store;
use crate::ws;

pub struct Application {
    port: u16,
    server: Server,
    /// The internal `/metrics` listener (`metrics.listen`), with its port.
    metrics_server: Option<(u16, Server)>,
    state: web::Data<AppState>,
    actors: ActorSystem,
    bus: Arc<dyn EventBus>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        // The link to the other instances; nothing is opened yet, so Redis may be away.
        let cluster = crate::cluster::Cluster::connect(&settings.redis)?;
        if let Some(cluster) = &cluster {
            tracing::info!(
                instance = cluster.instance_id(),
                prefix = cluster.prefix(),
                "REDIS_URL is set: this instance joins the others through Redis"
            );
        }
        // The hashing slots' memory, allocated once for the process (src/auth/password.rs).
        crate::auth::password::configure(
            settings.auth.hash_slots,
            settings.auth.hash_queue,
            Duration::from_millis(settings.auth.hash_wait_ms),
        );
        let specs = content::load_dir(&settings.content.dir)?;
        let store = Store::connect(&settings.database).await?;
        let catalogue = Arc::new(load_catalogue(&store, &specs, &settings).await?);
        tracing::info!(
            backend = ?store.backend(),
            courses = catalogue.courses.len(),
            exercises = catalogue.exercise_count(),
            "catalogue loaded"
        );
        let listener = TcpListener::bind((settings.server.host.as_str(), settings.server.port))
            .with_context(|| {
                format!(
                    "cannot listen on {}:{}",
                    settings.server.host, settings.server.port
                )
            })?;
        let port = listener.local_addr()?.port();
        let mut metrics = Metrics::new();
        // One bus for the class events (to the actors) and the ended sessions (to the sockets and
        // the session cache): through Redis when a cluster is configured, else in-process.
        let bus: Arc<dyn EventBus> = match &cluster {
            Some(cluster) => {
                let bus = RedisBus::start(
                    cluster.clone(),
                    &settings.redis,
                    settings.actors.classroom_ring_size,
                );
                metrics.register_bus_lag(bus.lag_histogram());
                let limit = cluster.connect_timeout() + cluster.command_timeout();
                if !bus.first_subscription(limit).await {
                    tracing::warn!(
                        "Redis is not answering: serving this instance's clients alone until it does"
                    );
                }
                bus as Arc<dyn EventBus>
            }
            None => Arc::new(LocalBus::default()),
        };
        // This instance's changes of account views reach the other instances' caches.
        store.on_views_changed({
            let bus = bus.clone();
            move || bus.publish_session_ended(SessionEnded::AccountViews)
        });
        // The limits every instance counts together (Redis), when configured.
        let limits = SharedLimits::of(cluster.as_ref(), &metrics.refusals);
        let actors = ActorSystem::start(
            store.clone(),
            &settings,
            bus.clone(),
            &metrics,
            limits.clone(),
        )?;
        actors.registry.attach_cluster(cluster.as_ref());
        let grader = Grader::start(
            settings.grading.sql_threads,
            settings.grading.sql_queue,
            settings.grading.sql_limits(),
            Duration::from_millis(settings.actors.request_timeout_ms),
            settings.submissions.max_code_bytes,
        )
        .context("starting the SQL grading threads")?;
        let rendered = web::Data::new(RenderedCatalogue::render(&catalogue));
        // A socket's record in Redis lives as long as a silent client would.
        let ws = WsHub::new(
            limits.clone(),
            Duration::from_secs(settings.ws.client_timeout_secs),
        );
        let auth = Arc::new(Auth::new(
            &settings.auth,
            store.clone(),
            bus.clone(),
            metrics.refusals.clone(),
            limits,
        ));
        // The cache first: once a socket closes for an ended session, the session's token is
        // refused by every request too.
        bus.attach_sessions(auth.session_sink());
        bus.attach_sessions(Arc::downgrade(&ws) as Weak<dyn SessionSink>);
        metrics.watch(Levels {
            actors: actors.registry.clone(),
            ws: ws.clone(),
            store: store.clone(),
            writer: actors.registry.writer().clone(),
        });
        let metrics_listener = match settings.metrics.listen() {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .with_context(|| format!("cannot listen on {addr} (metrics.listen)"))?,
            ),
            None => {
                if settings.metrics.token().is_none() && settings.server.host != "127.0.0.1" {
                    tracing::warn!(
                        "/metrics is served on the public port without a token: set \
                         metrics.bearer_token or metrics.listen (docs/deploy.md)"
                    );
                }
                None
            }
        };
        let account_views = AccountViews::new(
            metrics.account_view_hits.clone(),
            metrics.account_view_misses.clone(),
        );
        let state = web::Data::new(AppState {
            account_views,
            registry: actors.registry.clone(),
            ws,
            auth,
            grader,
            metrics: Arc::new(metrics),
            cluster,
            settings,
            store,
            catalogue,
        });
        let metrics_here = metrics_listener.is_none();
        let server = build_server(listener, state.clone(), rendered, metrics_here)?;
        tracing::info!(port, "listening");
        let metrics_server = match metrics_listener {
            Some(listener) => {
                let port = listener.local_addr()?.port();
                tracing::info!(port, "serving /metrics on its own listener");
                Some((port, build_metrics_server(listener, state.clone())?))
            }
            None => None,
        };
        Ok(Application {
            port,
            server,
            metrics_server,
            state,
            actors,
            bus,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the internal `/metrics` listener, when `metrics.listen` set one.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_server.as_ref().map(|(port, _)| *port)
    }

    /// Stops the app the way SIGTERM does (used by tests).
    pub fn handle(&self) -> AppHandle {
        AppHandle {
            server: self.server.handle(),
            metrics_server: self.metrics_server.as_ref().map(|(_, s)| s.handle()),
            drain: self.actors.drain_switch(),
            ws: self.state.ws.clone(),
        }
    }

    /// Serves until SIGINT/SIGTERM (or `handle().stop()`). Then, in this order: the server has
    /// stopped accepting and finished its requests; the writer commits every queued row; the
    /// actors stop; the database closes.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.handle();
        let signals = tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("stop signal received: finishing requests and flushing writes");
            handle.stop().await;
        });
        let metrics_server = self.metrics_server.map(|(_, server)| tokio::spawn(server));
        let served = self.server.await;
        signals.abort();
        if let Some(task) = metrics_server {
            // Stopped by the same handle; a scrape in flight finishes.
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        let grace = Duration::from_secs(self.state.settings.server.shutdown_timeout_secs);
        self.actors.shutdown(grace).await;
        // After the actors: what they published last is flushed, then the bus's tasks stop.
        self.bus.shutdown();
        if tokio::time::timeout(grace, self.state.store.close())
            .await
            .is_err()
        {
            tracing::warn!("the database pool did not close in time");
        }
        served?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Stops a running app gracefully: the writer stops waiting to fill batches, the server stops
/// accepting and finishes its requests (their attempts commit), then `run_until_stopped`
/// flushes and closes the rest.
#[derive(Clone)]
pub struct AppHandle {
    server: ServerHandle,
    metrics_server: Option<ServerHandle>,
    drain: DrainSwitch,
    ws: Arc<WsHub>,
}

impl AppHandle {
    pub async fn stop(&self) {
        self.drain.drain();
        // Sockets close with "going away" (1001); their connections then end like requests do.
        self.ws.shutdown();
        self.server.stop(true).await;
        if let Some(metrics) = &self.metrics_server {
            metrics.stop(true).await;
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

fn build_server(
    listener: TcpListener,
    state: web::Data<AppState>,
    rendered: web::Data<RenderedCatalogue>,
    metrics_here: bool,
) -> anyhow::Result<Server> {
    let max_body = state.settings.server.max_body_bytes;
    let shutdown_timeout = state.settings.server.shutdown_timeout_secs;
    // What the layers below `AppState` read from a request: the identity extractors and the
    // Origin guard.
    let auth = web::Data::from(state.auth.clone());
    let origins = web::Data::new(AllowedOrigins {
        origins: state.settings.server.allowed_origins.clone(),
        trust_forwarded_headers: state.settings.server.trust_forwarded_headers,
    });
    // 0: one worker per core, as actix-web would choose (WEB_CONCURRENCY overrides it).
    let workers = match state.settings.server.workers {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let server = HttpServer::new(move || {
        App::new()
            .wrap(
                DefaultHeaders::new()
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("Referrer-Policy", "same-origin")),
            )
            .wrap(TracingLogger::<crate::telemetry::RequestSpan>::new())
            // Outermost: the latency counts everything the server does for the request.
            .wrap(from_fn(http::metrics::track))
            .app_data(state.clone())
            .app_data(auth.clone())
            .app_data(origins.clone())
            .app_data(rendered.clone())
            .app_data(web::PayloadConfig::new(max_body))
            .configure(ws::configure)
            .configure(http::configure(max_body, metrics_here))
    })
    .workers(workers)
    .listen(listener)?
    // Signals are ours (`run_until_stopped`): the writer must drain before the server waits.
    .disable_signals()
    .shutdown_timeout(shutdown_timeout)
    .client_request_timeout(Duration::from_secs(10))
    .run();
    Ok(server)
}

/// The internal listener of `metrics.listen`: `/metrics` alone, one worker.
fn build_metrics_server(
    listener: TcpListener,
    state: web::Data<AppState>,
) -> anyhow::Result<Server> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(http::metrics::configure_internal)
    })
    .workers(1)
    .listen(listener)?
    .disable_signals()
    .shutdown_timeout(5)
    .run();
    Ok(server)
}

/// Syncs the specs to the database, computes each SQL exercise's expected result (in the grader's
/// guarded private database: content is compiled under the same guard as students' queries) and
/// builds the in-memory catalogue.
pub async fn load_catalogue(
    store: &Store,
    specs: &[CourseSpec],
    settings: &Settings,
) -> anyhow::Result<Catalogue> {
    let ids = store.sync_catalogue(specs).await?;
    let limits = settings.grading.sql_limits();
    let specs_for_sql = specs.to_vec();
    let dir = settings.content.dir.clone();
    let expected = tokio::task::spawn_blocking(move || expected_results(&specs_for_sql, limits))
        .await
        .context("computing the SQL exercises' expected results")?
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    Catalogue::build(specs, &ids, &expected).map_err(anyhow::Error::msg)
}

/// Each SQL exercise's expected result by slug; the first failure names its exercise.
pub fn expected_results(
    specs: &[CourseSpec],
    limits: SqlLimits,
) -> Result<HashMap<String, ResultTable>, String> {
    let mut expected = HashMap::new();
    for ex in specs
        .iter()
        .flat_map(|c| &c.chapters)
        .flat_map(|ch| &ch.exercises)
    {
        let f = &ex.file;
        if let (Some(schema), Some(data), Some(solution)) = (&f.schema, &f.data, &f.solution) {
            let table =
                sql::expected_result(schema, data, solution, f.check_query.as_deref(), limits)
                    .map_err(|e| format!("SQL exercise {:?}: `solution`: {e}", ex.slug))?;
            expected.insert(ex.slug.clone(), table);
        }
    }
    Ok(expected)
}
