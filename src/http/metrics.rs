//! `/metrics` (the registry of `crate::metrics` in the Prometheus text format, behind the
//! optional bearer token) and the middleware that times every HTTP request by route template.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, ResponseError, get, web};
use prometheus_client::metrics::gauge::Gauge;
use sha2::{Digest, Sha256};

use crate::error::AppError;
use crate::metrics::{CONTENT_TYPE, HttpLabels};
use crate::state::AppState;

/// `/metrics` on the public port (when `metrics.listen` is empty).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(metrics);
}

/// The internal listener's routes: `/metrics`, and a JSON 404 for anything else.
pub fn configure_internal(cfg: &mut web::ServiceConfig) {
    cfg.service(metrics)
        .default_service(web::to(super::not_found));
}

#[get("/metrics")]
async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if let Some(token) = state.settings.metrics.token()
        && !bearer_matches(&req, token)
    {
        let mut refused = AppError::Unauthorized.error_response();
        refused.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return refused;
    }
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(state.metrics.encode())
}

/// Whether the request carries `Authorization: Bearer <token>`. Both sides are hashed first, so
/// the comparison takes the same time wherever they differ.
fn bearer_matches(req: &HttpRequest, token: &str) -> bool {
    let Some(given) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    Sha256::digest(given.trim().as_bytes()) == Sha256::digest(token.as_bytes())
}

/// Decrements the in-flight gauge however the request ends (answered, failed or dropped).
struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The method as a bounded label: anything unusual is `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A route template as a label: `/api/v1/exercises/{id}` → `/api/v1/exercises/:id`, and a
/// segment's regex dropped (`{file:.*}` → `:file`). Braces are legal in label values, but
/// several text-format parsers and log pipelines split on them.
fn route_label(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let inner = &rest[open + 1..open + close];
        out.push(':');
        out.push_str(inner.split(':').next().unwrap_or(inner));
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// Times each request until its response starts (a socket: until the upgrade is answered), and
/// counts those in flight. The route is the matched template (`/api/v1/exercises/{id}`), or
/// `unmatched` for paths no route knows (so scanners cannot create series).
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next.call(req).await;
    };
    let http = &state.metrics.http;
    let method = method_label(req.method());
    let route = req
        .match_pattern()
        .map_or_else(|| "unmatched".to_owned(), |pattern| route_label(&pattern));
    http.in_flight.inc();
    let _in_flight = InFlight(http.in_flight.clone());
    let started = Instant::now();
    let res = next.call(req).await;
    let status = match &res {
        Ok(res) => res.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    http.duration
        .get_or_create(&HttpLabels {
            method,
            route,
            status: status.as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    res
}

#[cfg(test)]
mod tests {
    use super::route_label;

    #[test]
    fn route_templates_become_labels_without_braces() {
        assert_eq!(
            route_label("/api/v1/exercises/{id}"),
            "/api/v1/exercises/:id"
        );
        assert_eq!(
            route_label("/api/v1/classrooms/{id}/students/{student}"),
            "/api/v1/classrooms/:id/students/:student"
        );
        assert_eq!(route_label("/assets/{file:.*}"), "/assets/:file");
        assert_eq!(route_label("/healthz"), "/healthz");
    }
}
