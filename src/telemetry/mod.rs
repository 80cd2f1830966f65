//! Logging: readable lines locally, JSON lines in production, one span per request carrying a
//! request id (tracing-actix-web). `RUST_LOG` overrides the configured filter. With a Sentry DSN,
//! errors and panics are reported too (`sentry.rs`).

pub mod sentry;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. Safe to call more than once (tests): later calls do nothing.
pub fn init(settings: &LogSettings) {
    init_with(settings, false);
}

/// `init`, with Sentry's layer when error reporting is on (`sentry::init` returned a guard):
/// `error!` events become Sentry events, lower levels its breadcrumbs.
pub fn init_with(settings: &LogSettings, report_errors: bool) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Errors become Sentry events; info and warnings the breadcrumbs before them.
    let sentry_layers = report_errors.then(|| {
        use ::sentry::integrations::tracing::{BreadcrumbLayer, ErrorLayer};
        use tracing_subscriber::filter::LevelFilter;
        ErrorLayer::new()
            .with_filter(LevelFilter::ERROR)
            .and_then(BreadcrumbLayer::new().with_filter(LevelFilter::INFO))
    });
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(sentry_layers);
    let result = match settings.format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().compact()).try_init(),
    };
    // Already installed (a second app in the same test process): keep the first one.
    let _ = result;
}

/// The span of one request: method, route template (ids stay out of it), request id and status.
/// Unlike tracing-actix-web's default, it records neither the client's address nor its user
/// agent — personal data of minors that has no place in logs — nor the text of client errors,
/// which can echo what was typed. Server errors are logged where they happen (`AppError`).
pub struct RequestSpan;

impl tracing_actix_web::RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &actix_web::dev::ServiceRequest) -> tracing::Span {
        use actix_web::HttpMessage;
        let request_id = request
            .extensions()
            .get::<tracing_actix_web::RequestId>()
            .map(|id| id.to_string())
            .unwrap_or_default();
        tracing::info_span!(
            "request",
            method = %request.method(),
            route = request.match_pattern().as_deref().unwrap_or("unmatched"),
            request_id = %request_id,
            status = tracing::field::Empty,
        )
    }

    fn on_request_end<B: actix_web::body::MessageBody>(
        span: tracing::Span,
        outcome: &Result<actix_web::dev::ServiceResponse<B>, actix_web::Error>,
    ) {
        let status = match outcome {
            Ok(response) => response.status(),
            Err(error) => error.as_response_error().status_code(),
        };
        span.record("status", status.as_u16());
    }
}
