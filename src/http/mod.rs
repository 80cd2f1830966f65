//! HTTP routes: parse, call, render. Each module exposes `configure`.

pub mod auth;
pub mod catalogue;
pub mod classrooms;
pub mod data_care;
pub mod health;
pub mod history;
pub mod json;
pub mod me;
pub mod metrics;
pub mod pages;
pub mod progress;
pub mod submissions;
pub mod views;

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::middleware::from_fn;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::AppError;

/// Registers every HTTP route, the JSON/path/query error mapping and the JSON 404 for unknown
/// paths; `/metrics` only when `metrics_here` (it is not on an internal listener of its own).
/// (The socket routes are `ws::configure`, registered beside these by `startup`.)
pub fn configure(
    max_body_bytes: usize,
    metrics_here: bool,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(json_config(max_body_bytes))
            .app_data(web::PathConfig::default().error_handler(path_error))
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .configure(health::configure);
        if metrics_here {
            cfg.configure(metrics::configure);
        }
        cfg.service(
            web::scope("/api/v1")
                // Cross-site and non-JSON state-changing requests stop here.
                .wrap(from_fn(crate::auth::origin::guard))
                .configure(catalogue::configure)
                .configure(auth::configure)
                .configure(me::configure)
                .configure(classrooms::configure)
                .configure(data_care::configure)
                .configure(submissions::configure)
                .configure(progress::configure)
                .configure(history::configure),
        )
        .configure(submissions::configure_legacy)
        .configure(pages::configure)
        .default_service(web::to(not_found));
    }
}

/// Bodies over the limit answer 413, a wrong content type 415, bad JSON 400: always as JSON.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |err, _req| {
            let app = match &err {
                JsonPayloadError::OverflowKnownLength { .. }
                | JsonPayloadError::Overflow { .. } => AppError::PayloadTooLarge { limit },
                JsonPayloadError::ContentType => AppError::UnsupportedMediaType {
                    message: "Le corps doit être du JSON (Content-Type: application/json).".into(),
                },
                JsonPayloadError::Deserialize(e) => {
                    AppError::bad_request("invalid_body", format!("Corps JSON invalide : {e}"))
                }
                other => AppError::bad_request("invalid_body", format!("Corps invalide : {other}")),
            };
            app.into()
        })
}

fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    AppError::bad_request("invalid_path", format!("Chemin invalide : {err}")).into()
}

fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    AppError::bad_request("invalid_query", format!("Paramètres invalides : {err}")).into()
}

async fn not_found() -> HttpResponse {
    actix_web::ResponseError::error_response(&AppError::NotFound("Page introuvable."))
}
