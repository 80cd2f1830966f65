//! The threads that run the actors: a few dedicated arbiters inside their own actix `System`,
//! independent of the HTTP workers (which never own long-lived state) and of whatever runtime
//! built the app (the binary's, or a test's).

use std::hash::{Hash, Hasher};

use actix::{Arbiter, ArbiterHandle, System};
use anyhow::Context;

pub struct ActorRuntime {
    arbiters: Vec<ArbiterHandle>,
    system: System,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for ActorRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorRuntime")
            .field("arbiters", &self.arbiters.len())
            .finish()
    }
}

impl ActorRuntime {
    pub fn start(arbiters: usize) -> anyhow::Result<ActorRuntime> {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("nsi-actors".into())
            .spawn(move || {
                let system = System::new();
                system.block_on(async move {
                    let handles: Vec<ArbiterHandle> = (0..arbiters.max(1))
                        .map(|_| Arbiter::new().handle())
                        .collect();
                    let _ = tx.send((System::current(), handles));
                });
                // Runs until `System::stop`, which also stops the arbiters.
                if let Err(e) = system.run() {
                    tracing::error!(error = %e, "actor system failed");
                }
            })
            .context("starting the actor threads")?;
        let (system, arbiters) = rx.recv().context("the actor threads did not start")?;
        Ok(ActorRuntime {
            arbiters,
            system,
            thread: Some(thread),
        })
    }

    /// The arbiter for an id: the same id always lands on the same thread.
    pub fn arbiter_for(&self, key: impl Hash) -> &ArbiterHandle {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        &self.arbiters[(h.finish() % self.arbiters.len() as u64) as usize]
    }

    /// Stops every actor and joins the threads.
    pub fn stop(&mut self) {
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ActorRuntime {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.system.stop();
        }
    }
}
