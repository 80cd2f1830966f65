//! The browser app: the page shell for every page route and the built assets under `static/`
//! (made by `web/build.mjs`). Hashed and versioned assets are cached for a year; the shell is
//! revalidated on every load so a deploy is picked up at once.

use std::path::{Component, Path, PathBuf};

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::AppError;
use crate::state::AppState;

fn static_dir(state: &AppState) -> &Path {
    &state.settings.server.static_dir
}

/// What Pyodide and sql.js need (WebAssembly compilation, a worker from this origin, the socket
/// to this origin) and nothing else: no inline script, no other origin, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
worker-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; \
font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The page routes the browser app answers (the app's router picks the view).
const PAGES: &[&str] = &[
    "/",
    "/join/",
    "/recover/",
    "/classes/",
    "/courses/",
    "/courses/chapter/{slug}/",
    "/exercises/{id}/",
    "/progress/",
    "/leaderboard/",
    "/teacher/",
    "/teacher/login/",
    "/teacher/signup/",
    "/teacher/classes/{id}/",
    "/teacher/classes/{id}/students/{student}/",
];

pub fn configure(cfg: &mut web::ServiceConfig) {
    for page in PAGES {
        cfg.route(page, web::get().to(shell));
    }
    cfg.route("/assets/{path:.*}", web::get().to(asset))
        .route("/pyodide/{path:.*}", web::get().to(pyodide));
}

/// Security headers every answer of the browser app carries.
fn secure(mut res: HttpResponse) -> HttpResponse {
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

async fn shell(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let res = serve(&req, &static_dir(&state).join("index.html"), "no-cache").await;
    if res.status() == actix_web::http::StatusCode::NOT_FOUND {
        return secure(
            HttpResponse::ServiceUnavailable()
                .content_type("text/plain; charset=utf-8")
                .body(
                    "L'application n'est pas construite : lancez ./scripts/run \
                     (ou `npm ci && npm run build` dans web/).\n",
                ),
        );
    }
    res
}

/// `/assets/…`: every name carries a content hash, so it never changes.
async fn asset(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let dir = static_dir(&state).join("assets");
    file_under(&req, &dir, &path, "public, max-age=31536000, immutable").await
}

/// `/pyodide/<version>/…`: the version is in the path, so it never changes either.
async fn pyodide(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let dir = static_dir(&state).join("pyodide");
    file_under(&req, &dir, &path, "public, max-age=31536000, immutable").await
}

async fn file_under(req: &HttpRequest, dir: &Path, rel: &str, cache: &str) -> HttpResponse {
    match safe_relative(rel) {
        Some(rel) => serve(req, &dir.join(rel), cache).await,
        None => not_found(),
    }
}

/// A relative path of plain names only: no `..`, no root, no hidden files.
fn safe_relative(raw: &str) -> Option<PathBuf> {
    let path = Path::new(raw);
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(name) => {
                let name = name.to_str()?;
                if name.starts_with('.') {
                    return None;
                }
                out.push(name);
            }
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

fn not_found() -> HttpResponse {
    secure(actix_web::ResponseError::error_response(
        &AppError::NotFound("Fichier introuvable."),
    ))
}

/// The content type by extension; `None` for files the app does not serve.
pub fn mime(path: &Path) -> Option<&'static str> {
    Some(match path.extension()?.to_str()? {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "zip" => "application/zip",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "map" => "application/json",
        _ => return None,
    })
}

/// Which precompressed copy the client takes: brotli, then gzip, then none.
fn encodings(req: &HttpRequest) -> Vec<(&'static str, &'static str)> {
    let accept = req
        .headers()
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let takes = |name: &str| {
        accept.split(',').any(|part| {
            let mut it = part.split(';');
            let coding = it.next().unwrap_or("").trim();
            let refused = it.any(|p| {
                let p = p.trim().replace(' ', "");
                p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
            });
            coding.eq_ignore_ascii_case(name) && !refused
        })
    };
    let mut out = Vec::new();
    if takes("br") {
        out.push(("br", "br"));
    }
    if takes("gzip") {
        out.push(("gzip", "gz"));
    }
    out
}

async fn serve(req: &HttpRequest, path: &Path, cache: &str) -> HttpResponse {
    let Some(content_type) = mime(path) else {
        return not_found();
    };
    // The build writes `name.br` / `name.gz` beside files worth compressing (wasm included).
    for (coding, ext) in encodings(req) {
        let mut compressed = path.as_os_str().to_owned();
        compressed.push(".");
        compressed.push(ext);
        if let Ok(bytes) = tokio::fs::read(&compressed).await {
            return respond(bytes, content_type, cache, Some(coding));
        }
    }
    match tokio::fs::read(path).await {
        Ok(bytes) => respond(bytes, content_type, cache, None),
        Err(_) => not_found(),
    }
}

fn respond(
    bytes: Vec<u8>,
    content_type: &'static str,
    cache: &str,
    coding: Option<&'static str>,
) -> HttpResponse {
    let mut res = HttpResponse::Ok();
    res.insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CACHE_CONTROL, cache.to_owned()))
        .insert_header((header::VARY, "Accept-Encoding"));
    if let Some(coding) = coding {
        res.insert_header((header::CONTENT_ENCODING, coding));
    }
    secure(res.body(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_served() {
        assert_eq!(
            safe_relative("app-1234.js"),
            Some(PathBuf::from("app-1234.js"))
        );
        assert_eq!(
            safe_relative("314.0.8/pyodide.mjs"),
            Some(PathBuf::from("314.0.8/pyodide.mjs"))
        );
        assert_eq!(safe_relative("../Cargo.toml"), None);
        assert_eq!(safe_relative("a/../../etc/passwd"), None);
        assert_eq!(safe_relative("/etc/passwd"), None);
        assert_eq!(safe_relative(".env"), None);
        assert_eq!(safe_relative(""), None);
    }

    #[test]
    fn wasm_is_application_wasm_and_unknown_types_are_refused() {
        assert_eq!(
            mime(Path::new("x/pyodide.asm.wasm")),
            Some("application/wasm")
        );
        assert_eq!(
            mime(Path::new("a.mjs")),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(mime(Path::new("secret.toml")), None);
        assert_eq!(mime(Path::new("noext")), None);
    }
}
