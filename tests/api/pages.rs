//! The browser app's files: the page shell on page routes, assets with the right type, cache,
//! precompressed copy and security headers, and nothing outside the static folder.

use std::path::Path;

use crate::both_backends;
use crate::helpers::{TestApp, TestDb};

/// A static folder like the one `web/build.mjs` writes, with known bytes.
fn fake_build(dir: &Path) {
    let assets = dir.join("assets");
    let pyodide = dir.join("pyodide/314.0.8");
    std::fs::create_dir_all(&assets).expect("assets");
    std::fs::create_dir_all(&pyodide).expect("pyodide");
    std::fs::write(
        dir.join("index.html"),
        "<!doctype html><title>nsi-live</title>",
    )
    .expect("html");
    std::fs::write(assets.join("app-0123456789ab.js"), "console.log(1)").expect("js");
    std::fs::write(assets.join("app-0123456789ab.js.br"), "BROTLI").expect("br");
    std::fs::write(assets.join("app-0123456789ab.js.gz"), "GZIP").expect("gz");
    std::fs::write(pyodide.join("pyodide.asm.wasm"), b"\0asm\x01\0\0\0").expect("wasm");
    std::fs::write(dir.join("secret.toml"), "x = 1").expect("toml");
    std::fs::write(dir.join("assets/.hidden.js"), "x").expect("hidden");
}

async fn spawn_with_static(backend: crate::helpers::Backend, dir: &Path) -> TestApp {
    let db = TestDb::new(backend).await;
    let mut settings = db.settings();
    settings.server.static_dir = dir.to_owned();
    TestApp::spawn_with(db, settings).await
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .to_str()
        .expect("header text")
}

both_backends!(pages_and_assets_are_served_safely, |backend| async move {
    let dir = tempfile::tempdir().expect("tempdir");
    fake_build(dir.path());
    let app = spawn_with_static(backend, dir.path()).await;
    // The bodies are checked as sent: no transparent decompression (the workspace's reqwest may
    // have it on, through the load tests' goose).
    let client = reqwest::Client::builder()
        .no_gzip()
        .no_brotli()
        .no_deflate()
        .build()
        .expect("client");

    // Every page route answers the shell, revalidated at each load, with the security headers.
    for page in [
        "/",
        "/courses/",
        "/exercises/12/",
        "/teacher/classes/3/",
        "/join/",
    ] {
        let r = client.get(app.url(page)).send().await.expect("page");
        assert_eq!(r.status().as_u16(), 200, "{page}");
        assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&r, "cache-control"), "no-cache");
        let csp = header(&r, "content-security-policy").to_owned();
        assert!(
            csp.contains("script-src 'self' 'wasm-unsafe-eval'"),
            "{csp}"
        );
        assert!(csp.contains("worker-src 'self'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("'unsafe-eval'"),
            "{csp}"
        );
        assert_eq!(header(&r, "x-content-type-options"), "nosniff");
        assert!(r.text().await.expect("body").contains("nsi-live"));
    }

    // A hashed asset: immutable, its precompressed copy when the client takes it.
    let js = app.url("/assets/app-0123456789ab.js");
    let r = client.get(&js).send().await.expect("js");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(header(&r, "content-type"), "text/javascript; charset=utf-8");
    assert_eq!(
        header(&r, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(header(&r, "vary"), "Accept-Encoding");
    assert!(r.headers().get("content-encoding").is_none());
    assert_eq!(r.text().await.expect("body"), "console.log(1)");
    for (accept, coding, body) in [
        ("gzip, deflate, br", "br", "BROTLI"),
        ("gzip", "gzip", "GZIP"),
        ("br;q=0, gzip", "gzip", "GZIP"),
    ] {
        let r = client
            .get(&js)
            .header("accept-encoding", accept)
            .send()
            .await
            .expect("js");
        assert_eq!(header(&r, "content-encoding"), coding, "{accept}");
        assert_eq!(r.text().await.expect("body"), body, "{accept}");
    }

    // WebAssembly is served as application/wasm (streaming compilation needs it).
    let r = client
        .get(app.url("/pyodide/314.0.8/pyodide.asm.wasm"))
        .send()
        .await
        .expect("wasm");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(header(&r, "content-type"), "application/wasm");
    assert_eq!(
        header(&r, "cache-control"),
        "public, max-age=31536000, immutable"
    );

    // Nothing outside the folders, no hidden or unknown files, missing ones are 404.
    for path in [
        "/assets/../secret.toml",
        "/assets/%2e%2e/secret.toml",
        "/assets/..%2fsecret.toml",
        "/assets/.hidden.js",
        "/pyodide/../index.html",
        "/assets/missing-000.js",
        "/secret.toml",
        "/static/index.html",
    ] {
        let r = client.get(app.url(path)).send().await.expect("get");
        assert_eq!(r.status().as_u16(), 404, "{path}");
    }
    // The API's unknown paths stay JSON 404s.
    let r = client
        .get(app.url("/api/v1/nothing"))
        .send()
        .await
        .expect("api");
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(header(&r, "content-type"), "application/json");
});

both_backends!(an_unbuilt_app_says_how_to_build_it, |backend| async move {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_with_static(backend, dir.path()).await;
    let r = reqwest::get(app.url("/courses/")).await.expect("page");
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.text().await.expect("body").contains("scripts/run"));
});
