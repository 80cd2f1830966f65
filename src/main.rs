use nsi_live::cli::{self, Command};
use nsi_live::config::Settings;
use nsi_live::startup::Application;
use nsi_live::telemetry;

/// jemalloc rather than glibc's malloc: glibc kept ~20 KiB per connected student of freed memory
/// stranded between the sockets' lasting allocations on PostgreSQL (48 KiB per student against
/// 26 KiB with jemalloc), and jemalloc spends less CPU per submission (docs/benchmarks.md,
/// "jemalloc as the global allocator").
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
