//! Cross-site request forgery guard for state-changing requests (POST, PUT, PATCH, DELETE):
//! - the `Origin` header (or, without it, the `Referer`) must be this server's own host or one of
//!   `server.allowed_origins`; a request with neither comes from a non-browser client and passes
//!   (browsers send `Origin` on every such request);
//! - a request authenticated by `Authorization: Bearer` passes the origin check: no browser adds
//!   that header on its own, so it carries no ambient credential to abuse;
//! - a body must be declared `application/json`, which an HTML form cannot send cross-site.
//!
//! "The server's own host" is the request's `Host` (or HTTP/2 authority); compared with the
//! Origin's host and port, not its scheme (a proxy may end TLS). `X-Forwarded-Host` and
//! `Forwarded: host=` are followed only with `server.trust_forwarded_headers` (off by default):
//! only a proxy that sets them itself may be believed.
//!
//! Refusals answer 403 `forbidden_origin` or 415 `unsupported_media_type`.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, ResponseError, web};

use crate::error::AppError;

/// `server.allowed_origins` and `server.trust_forwarded_headers`, registered as app data by
/// `startup` for the guard below and for `check_origin`.
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins {
    pub origins: Vec<String>,
    pub trust_forwarded_headers: bool,
}

/// The middleware: `web::scope(…).wrap(from_fn(origin::guard))`.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if is_state_changing(req.method()) {
        let allowed: &[String] = req
            .app_data::<web::Data<AllowedOrigins>>()
            .map_or(&[], |a| &a.origins);
        if let Err(refusal) = verdict(req.request(), allowed) {
            let response = refusal.error_response();
            return Ok(req.into_response(response).map_into_right_body());
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

fn is_state_changing(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

fn verdict(req: &HttpRequest, allowed: &[String]) -> Result<(), AppError> {
    if super::bearer_token(req).is_none() {
        check_origin(req, allowed)?;
    }
    check_content_type(req)
}

/// The Origin check alone (also used by the WebSocket upgrades, which are GETs).
pub fn check_origin(req: &HttpRequest, allowed: &[String]) -> Result<(), AppError> {
    let headers = req.headers();
    let claimed = match headers.get(header::ORIGIN) {
        Some(origin) => origin.to_str().ok().map(str::to_owned),
        None => match headers.get(header::REFERER) {
            Some(referer) => referer.to_str().ok().and_then(origin_of_url),
            // Neither: not sent by a browser.
            None => return Ok(()),
        },
    };
    match claimed {
        Some(origin) if origin_allowed(&origin, &own_host(req), allowed) => Ok(()),
        _ => Err(AppError::refused(
            "forbidden_origin",
            "Requête refusée : elle ne vient pas de ce site.",
        )),
    }
}

/// The host (and port) the client addressed: `Host` (or the HTTP/2 authority); behind a trusted
/// proxy (`server.trust_forwarded_headers`, read from the app's `AllowedOrigins`), the one
/// `Forwarded`/`X-Forwarded-Host` name. Without the setting those headers are ignored: anyone may
/// send them.
fn own_host(req: &HttpRequest) -> String {
    let trust = req
        .app_data::<web::Data<AllowedOrigins>>()
        .is_some_and(|a| a.trust_forwarded_headers);
    if trust {
        return req.connection_info().host().to_owned();
    }
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_default()
}

/// `scheme://host[:port]` of a URL, lower-cased; `None` if it is not an absolute http(s) URL.
fn origin_of_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}").to_ascii_lowercase())
}

/// Whether `origin` is the server's own `host` (as the client addressed it) or a configured one.
fn origin_allowed(origin: &str, host: &str, allowed: &[String]) -> bool {
    let origin = origin.trim().to_ascii_lowercase();
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(&origin)) {
        return true;
    }
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false; // includes the opaque origin "null"
    };
    if !matches!(scheme, "http" | "https") {
        return false;
    }
    without_default_port(authority, scheme)
        == without_default_port(&host.to_ascii_lowercase(), scheme)
}

fn without_default_port<'a>(authority: &'a str, scheme: &str) -> &'a str {
    let default = if scheme == "https" { ":443" } else { ":80" };
    authority.strip_suffix(default).unwrap_or(authority)
}

/// A request with a body must say it is JSON (parameters such as `charset` are fine).
fn check_content_type(req: &HttpRequest) -> Result<(), AppError> {
    let headers = req.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0);
    if !has_body {
        return Ok(());
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        Ok(())
    } else {
        Err(AppError::UnsupportedMediaType {
            message: "Le corps doit être du JSON (Content-Type: application/json).".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn allowed() -> Vec<String> {
        vec!["https://nsi.example.fr".to_owned()]
    }

    fn post() -> TestRequest {
        TestRequest::post()
            .uri("/api/v1/auth/logout")
            .insert_header((header::HOST, "127.0.0.1:8080"))
    }

    fn code(r: Result<(), AppError>) -> Option<&'static str> {
        r.err().map(|e| e.code())
    }

    #[test]
    fn same_host_configured_or_absent_origins_pass() {
        for origin in [
            "http://127.0.0.1:8080",
            "HTTP://127.0.0.1:8080",
            "https://nsi.example.fr",
        ] {
            let req = post()
                .insert_header((header::ORIGIN, origin))
                .to_http_request();
            assert_eq!(code(verdict(&req, &allowed())), None, "{origin}");
        }
        let req = post()
            .insert_header((header::REFERER, "http://127.0.0.1:8080/classe/3?x=1"))
            .to_http_request();
        assert_eq!(code(verdict(&req, &allowed())), None);
        assert_eq!(code(verdict(&post().to_http_request(), &allowed())), None);
    }

    #[test]
    fn other_origins_are_refused() {
        for origin in [
            "https://evil.example",
            "http://127.0.0.1:8081",
            "null",
            "http://127.0.0.1:8080.evil.example",
            "https://nsi.example.fr.evil.example",
        ] {
            let req = post()
                .insert_header((header::ORIGIN, origin))
                .to_http_request();
            assert_eq!(
                code(verdict(&req, &allowed())),
                Some("forbidden_origin"),
                "{origin}"
            );
        }
        let req = post()
            .insert_header((header::REFERER, "https://evil.example/page"))
            .to_http_request();
        assert_eq!(code(verdict(&req, &allowed())), Some("forbidden_origin"));
    }

    #[test]
    fn bearer_requests_skip_the_origin_check_but_not_the_content_type() {
        let req = post()
            .insert_header((header::ORIGIN, "https://evil.example"))
            .insert_header((header::AUTHORIZATION, "Bearer abc"))
            .to_http_request();
        assert_eq!(code(verdict(&req, &allowed())), None);
        let req = post()
            .insert_header((header::AUTHORIZATION, "Bearer abc"))
            .insert_header((header::CONTENT_TYPE, "text/plain"))
            .insert_header((header::CONTENT_LENGTH, "2"))
            .to_http_request();
        assert_eq!(
            code(verdict(&req, &allowed())),
            Some("unsupported_media_type")
        );
    }

    #[test]
    fn bodies_must_be_json() {
        let form = post()
            .insert_header((header::CONTENT_TYPE, "application/x-www-form-urlencoded"))
            .insert_header((header::CONTENT_LENGTH, "3"))
            .to_http_request();
        assert_eq!(
            code(verdict(&form, &allowed())),
            Some("unsupported_media_type")
        );
        let json = post()
            .insert_header((header::CONTENT_TYPE, "application/json; charset=utf-8"))
            .insert_header((header::CONTENT_LENGTH, "2"))
            .to_http_request();
        assert_eq!(code(verdict(&json, &allowed())), None);
        // No body, no content type needed.
        let empty = post()
            .insert_header((header::CONTENT_LENGTH, "0"))
            .to_http_request();
        assert_eq!(code(verdict(&empty, &allowed())), None);
    }

    /// An Origin that matches only the `X-Forwarded-Host`/`Forwarded` host passes only when the
    /// proxy is trusted.
    #[test]
    fn forwarded_host_counts_only_when_trusted() {
        for trust in [false, true] {
            let policy = web::Data::new(AllowedOrigins {
                origins: vec![],
                trust_forwarded_headers: trust,
            });
            for forwarded in [
                ("x-forwarded-host", "nsi.example.fr"),
                ("forwarded", "host=nsi.example.fr;proto=https"),
            ] {
                let req = post()
                    .app_data(policy.clone())
                    .insert_header((header::ORIGIN, "https://nsi.example.fr"))
                    .insert_header(forwarded)
                    .to_http_request();
                let expected = if trust {
                    None
                } else {
                    Some("forbidden_origin")
                };
                assert_eq!(code(verdict(&req, &[])), expected, "{trust} {forwarded:?}");
            }
            // The request's own Host passes either way.
            let req = post()
                .app_data(policy.clone())
                .insert_header((header::ORIGIN, "http://127.0.0.1:8080"))
                .to_http_request();
            assert_eq!(code(verdict(&req, &[])), None);
        }
    }

    #[test]
    fn origins_of_urls() {
        assert_eq!(
            origin_of_url("https://Nsi.fr:8443/a/b?c#d").as_deref(),
            Some("https://nsi.fr:8443")
        );
        assert_eq!(origin_of_url("/relative"), None);
        assert!(origin_allowed("https://nsi.fr", "nsi.fr:443", &[]));
        assert!(origin_allowed("http://nsi.fr", "nsi.fr", &[]));
        assert!(!origin_allowed("https://nsi.fr", "nsi.fr:8443", &[]));
    }
}
