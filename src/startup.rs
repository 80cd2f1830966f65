//! Builds the application (for `main` and for tests alike): load the content, open and migrate the
//! database, sync the catalogue, bind the listener.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::DefaultHeaders;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use tracing_actix_web::TracingLogger;

use crate::auth::Auth;
use crate::config::Settings;
use crate::content;
use crate::domain::catalogue::{Catalogue, CourseSpec, ResultTable};
use crate::http;
use crate::http::catalogue::RenderedCatalogue;
use crate::state::AppState;
use crate::store::{Store, sql_sandbox};

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
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
        let state = web::Data::new(AppState {
            ws: Arc::new(crate::ws::WsHub::default()),
            rendered: RenderedCatalogue::render(&catalogue),
            auth: Auth::new(&settings.auth, store.clone()),
            settings,
            store,
            catalogue,
        });
        let server = build_server(listener, state.clone())?;
        tracing::info!(port, "listening");
        Ok(Application {
            port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server the way SIGTERM does (used by tests).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGINT/SIGTERM (or `handle().stop()`), then closes the database cleanly.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.server.await?;
        self.state.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

fn build_server(listener: TcpListener, state: web::Data<AppState>) -> anyhow::Result<Server> {
    let max_body = state.settings.server.max_body_bytes;
    let shutdown_timeout = state.settings.server.shutdown_timeout_secs;
    let server = HttpServer::new(move || {
        App::new()
            .wrap(
                DefaultHeaders::new()
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("Referrer-Policy", "same-origin")),
            )
            .wrap(TracingLogger::default())
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(max_body))
            .configure(http::configure(max_body))
    })
    .listen(listener)?
    .shutdown_timeout(shutdown_timeout)
    .client_request_timeout(Duration::from_secs(10))
    .run();
    Ok(server)
}

/// Syncs the specs to the database, computes each SQL exercise's expected result and builds the
/// in-memory catalogue.
pub async fn load_catalogue(
    store: &Store,
    specs: &[CourseSpec],
    settings: &Settings,
) -> anyhow::Result<Catalogue> {
    let ids = store.sync_catalogue(specs).await?;
    let mut expected: HashMap<String, ResultTable> = HashMap::new();
    for course in specs {
        for chapter in &course.chapters {
            for ex in &chapter.exercises {
                let f = &ex.file;
                if let (Some(schema), Some(data), Some(solution)) =
                    (&f.schema, &f.data, &f.solution)
                {
                    let table = sql_sandbox::evaluate(schema, data, solution)
                        .await
                        .with_context(|| {
                            format!(
                                "{}: SQL exercise {:?}",
                                settings.content.dir.display(),
                                ex.slug
                            )
                        })?;
                    expected.insert(ex.slug.clone(), table);
                }
            }
        }
    }
    Catalogue::build(specs, &ids, &expected).map_err(anyhow::Error::msg)
}
