//! The version of what users' own account views show (`GET /api/v1/me`: the user, their classes
//! with their teachers and assignments, a teacher's classes with their counts). Every store write
//! that can change such a view raises it after the write returned (so after its commit); a cache
//! of those views keeps an answer only while the version it was built at is the current one.
//! Another instance's writes arrive through the bus (`views_changed_elsewhere`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

type Hook = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
pub struct ViewsVersion {
    version: AtomicU64,
    /// Told of this instance's changes (the bus publishes them to the other instances).
    on_change: OnceLock<Hook>,
}

impl std::fmt::Debug for ViewsVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewsVersion")
            .field("version", &self.version.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl super::Store {
    /// The current version of the users' account views.
    pub fn views_version(&self) -> u64 {
        self.views.version.load(Ordering::Acquire)
    }

    /// A write of this instance changed some account views: raises the version and tells the
    /// hook (once per write, after it returned).
    pub(crate) fn views_changed(&self) {
        self.views.version.fetch_add(1, Ordering::AcqRel);
        if let Some(hook) = self.views.on_change.get() {
            hook();
        }
    }

    /// Another instance changed some account views, or this one may have missed such news (its
    /// bus subscription was down): raises the version without telling anyone.
    pub fn views_changed_elsewhere(&self) {
        self.views.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Sets what to do on this instance's changes (start-up sets it once; later calls are ignored).
    pub fn on_views_changed(&self, hook: impl Fn() + Send + Sync + 'static) {
        let _ = self.views.on_change.set(Box::new(hook));
    }
}

pub(super) fn new() -> Arc<ViewsVersion> {
    Arc::new(ViewsVersion::default())
}
