use nsi_live::cli::{self, Command};
use nsi_live::config::Settings;
use nsi_live::startup::Application;
use nsi_live::telemetry;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    match cli::parse(std::env::args().skip(1))? {
        Command::Serve => serve().await,
        other => cli::run(other).await,
    }
}

async fn serve() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    // Held for the process's life: dropping it flushes the events not sent yet.
    let _reporting = telemetry::sentry::init(&settings.sentry)?;
    telemetry::init_with(&settings.log, _reporting.is_some());
    let app = Application::build(settings).await.inspect_err(|e| {
        tracing::error!(error = format!("{e:#}"), "start-up failed");
    })?;
    app.run_until_stopped().await
}
