//! The hot state: per-student and per-classroom actors on dedicated threads, the registry that
//! finds or starts them, and the writer that batches their rows into group commits.

pub mod classroom;
pub mod registry;
pub mod runtime;
pub mod student;
pub mod writer;

use std::sync::Arc;

use crate::bus::EventBus;
use crate::cluster::limits::SharedLimits;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::store::Store;
use registry::Registry;
use runtime::ActorRuntime;
use writer::AttemptWriter;

/// Everything the actor layer runs, started and stopped together.
pub struct ActorSystem {
    pub registry: Arc<Registry>,
    writer: AttemptWriter,
}

impl ActorSystem {
    /// Starts the writer and the actor threads; they count into `metrics`. `limits`: the rate
    /// limits shared with the other instances (Redis), when configured.
    pub fn start(
        store: Store,
        settings: &Settings,
        bus: Arc<dyn EventBus>,
        metrics: &Metrics,
        limits: Option<Arc<SharedLimits>>,
    ) -> anyhow::Result<ActorSystem> {
        let writer = AttemptWriter::start(
            store.clone(),
            settings.writer.clone(),
            metrics.writer.clone(),
        );
        let runtime = ActorRuntime::start(settings.actors.arbiters)?;
        let registry = Registry::new(
            runtime,
            store,
            writer.handle(),
            bus,
            settings,
            metrics.refusals.clone(),
            limits,
        );
        Ok(ActorSystem { registry, writer })
    }

    /// Lets the writer's batches close without waiting for more rows (the server is stopping).
    pub fn drain_switch(&self) -> writer::DrainSwitch {
        self.writer.drain_switch()
    }

    /// Commits every queued row, then stops the actors. Called after the HTTP server stopped:
    /// nothing new arrives, and each acknowledged attempt is already in the database.
    pub async fn shutdown(self, limit: std::time::Duration) {
        self.writer.shutdown(limit).await;
        // Joining the actor threads blocks: not on this runtime's worker, and not forever.
        let registry = self.registry;
        let stopping = tokio::task::spawn_blocking(move || registry.shutdown());
        match tokio::time::timeout(limit, stopping).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "stopping the actor threads failed"),
            Err(_) => tracing::error!("the actor threads did not stop in time"),
        }
    }
}
