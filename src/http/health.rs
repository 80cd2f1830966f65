//! `/healthz`: the process answers. `/readyz`: it can reach its database (503 otherwise), and,
//! when `REDIS_URL` is set, Redis: without Redis the instance still serves its own clients, so it
//! stays ready (200) and says `"status": "degraded"`.

use actix_web::{HttpResponse, get, web};
use serde_json::json;

use crate::error::{AppError, Result};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz).service(readyz);
}

#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse> {
    let ping = tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await;
    match ping {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(with_redis(&state).await)),
        Ok(Err(e)) => {
            tracing::warn!(error = format!("{e:#}"), "readiness: database unreachable");
            Err(not_ready())
        }
        Err(_) => {
            tracing::warn!("readiness: database ping timed out");
            Err(not_ready())
        }
    }
}

fn not_ready() -> AppError {
    AppError::Unavailable {
        message: "Base de données injoignable.".into(),
        retry_after_secs: 5,
    }
}

/// The ready answer, with Redis's state when a cluster is configured: degraded when Redis does
/// not answer, or when this instance's bus subscription is down (it hears nothing from the other
/// instances until it is back).
async fn with_redis(state: &AppState) -> serde_json::Value {
    let Some(cluster) = &state.cluster else {
        return json!({ "status": "ready", "database": "ok" });
    };
    let subscribed = state.registry.bus_stats().subscription_up != Some(false);
    let bus = if subscribed { "subscribed" } else { "down" };
    match cluster.ping().await {
        Ok(()) if subscribed => {
            json!({ "status": "ready", "database": "ok", "redis": "ok", "bus": bus })
        }
        Ok(()) => json!({ "status": "degraded", "database": "ok", "redis": "ok", "bus": bus }),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: Redis unreachable, serving this instance's clients only");
            json!({ "status": "degraded", "database": "ok", "redis": "unreachable", "bus": bus })
        }
    }
}
