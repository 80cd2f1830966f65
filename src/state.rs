//! What every request handler can reach: settings, the store, the catalogue and authentication.

use std::sync::Arc;

use crate::actors::registry::Registry;
use crate::auth::Auth;
use crate::config::Settings;
use crate::domain::catalogue::Catalogue;
use crate::http::catalogue::RenderedCatalogue;
use crate::store::Store;

#[derive(Debug)]
pub struct AppState {
    pub settings: Settings,
    pub store: Store,
    pub catalogue: Arc<Catalogue>,
    pub rendered: RenderedCatalogue,
    /// Sessions (with their cache) and the sign-in throttles.
    pub auth: Auth,
    /// Finds or starts the student and classroom actors.
    pub registry: Arc<Registry>,
    /// This instance's live sockets (counts per user, shutdown signal).
    pub ws: Arc<crate::ws::WsHub>,
}
