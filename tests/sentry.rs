//! Error reporting to Sentry, in its own process (the Sentry client and the tracing subscriber are
//! global): a fake Sentry ingest endpoint receives what the server would send, and nothing
//! personal is in it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use nsi_live::config::{LogFormat, LogSettings, SentrySettings};
use secrecy::SecretString;

type Received = Arc<Mutex<Vec<String>>>;

/// A stand-in for Sentry's ingest: keeps every request body.
fn fake_sentry() -> (u16, Received, actix_web::dev::ServerHandle) {
    let received: Received = Arc::default();
    let sink = received.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let sink = sink.clone();
        App::new().default_service(web::to(move |body: web::Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
                HttpResponse::Ok().json(serde_json::json!({}))
            }
        }))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (port, received, handle)
}

async fn wait_for(received: &Received, needle: &str) -> String {
    for _ in 0..100 {
        let all = received.lock().unwrap().join("\n");
        if all.contains(needle) {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "Sentry never received {needle:?}; got: {:?}",
        received.lock().unwrap()
    );
}

#[actix_web::test]
async fn errors_and_panics_reach_sentry_without_personal_data() {
    let (port, received, server) = fake_sentry();
    let settings = SentrySettings {
        dsn: SecretString::from(format!("http://0123456789abcdef@127.0.0.1:{port}/42")),
        environment: "ci".into(),
        sample_rate: 1.0,
    };
    let guard = nsi_live::telemetry::sentry::init(&settings)
        .unwrap()
        .expect("a DSN turns reporting on");
    nsi_live::telemetry::init_with(
        &LogSettings {
            format: LogFormat::Pretty,
            filter: "info".into(),
        },
        true,
    );
    // Whatever code path would attach a person or a request, it must not leave the server.
    sentry::configure_scope(|scope| {
        scope.set_user(Some(sentry::User {
            username: Some("pseudo-eleve-42".into()),
            email: Some("eleve@example.fr".into()),
            ..Default::default()
        }));
    });
    tracing::info!(login = "pseudo-eleve-42", "a breadcrumb with a login field");
    tracing::error!(code = 7, "the attempt writer lost its database");

    let all = wait_for(&received, "the attempt writer lost its database").await;
    assert!(all.contains("\"environment\":\"ci\""), "{all}");
    assert!(all.contains("a breadcrumb with a login field"), "{all}");
    for personal in ["pseudo-eleve-42", "eleve@example.fr", "server_name"] {
        assert!(!all.contains(personal), "{personal} was sent: {all}");
    }

    // A panic anywhere (an actor, a handler) is reported with its message.
    let panicked = std::thread::spawn(|| panic!("a handler panicked on purpose")).join();
    assert!(panicked.is_err());
    let all = wait_for(&received, "a handler panicked on purpose").await;
    assert!(!all.contains("pseudo-eleve-42"), "{all}");

    drop(guard);
    server.stop(true).await;
}
