//! What every request handler can reach: settings, the store, the catalogue, authentication, the
//! actors and this instance's sockets. Holds no type of an adapter (`http/`, `ws/`): both read it.

use std::sync::Arc;

use crate::actors::registry::Registry;
use crate::auth::Auth;
use crate::cluster::Cluster;
use crate::config::Settings;
use crate::domain::catalogue::Catalogue;
use crate::metrics::Metrics;
use crate::sockets::WsHub;
use crate::store::Store;

#[derive(Debug)]
pub struct AppState {
    pub settings: Settings,
    pub store: Store,
    pub catalogue: Arc<Catalogue>,
    /// Sessions (with their cache) and the sign-in throttles; also registered as app data of
    /// its own for the identity extractors.
    pub auth: Arc<Auth>,
    /// Finds or starts the student and classroom actors.
    pub registry: Arc<Registry>,
    /// This instance's live sockets (counts per user, shutdown signal).
    pub ws: Arc<WsHub>,
    /// Grades MCQ, Parsons and SQL answers (SQL on its own threads).
    pub grader: crate::grading::Grader,
    /// This app's metrics registry (`/metrics`).
    pub metrics: Arc<Metrics>,
    /// The link to the other instances (Redis), when `redis.url` is set.
    pub cluster: Option<Arc<Cluster>>,
    /// This instance's cached answers of `GET /api/v1/me`.
    pub account_views: crate::service::account_views::AccountViews,
}
