use crate::both_backends;
use crate::helpers::{TestApp, assert_error};

both_backends!(healthz_and_readyz_answer, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let body = app.get_json("/healthz", 200).await;
    assert_eq!(body["status"], "ok");
    let body = app.get_json("/readyz", 200).await;
    assert_eq!(body["database"], "ok");
});

both_backends!(unknown_route_is_a_json_404, |backend| async move {
    let app = TestApp::spawn(backend).await;
    let body = app.get_json("/api/v1/nothing-here", 404).await;
    assert_error(&body, "not_found");
});

#[tokio::test]
async fn readyz_reports_a_lost_database() {
    let app = TestApp::spawn(crate::helpers::Backend::Postgres).await;
    app.get_json("/readyz", 200).await;
    // Kill the app's database under it: readiness must say so, liveness must not.
    let mut admin = crate::helpers::admin_connect(&crate::helpers::test_database_url())
        .await
        .unwrap();
    let name = app
        .db
        .url
        .as_ref()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let response = app.get("/readyz").await;
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_error(&body, "unavailable");
    app.get_json("/healthz", 200).await;
}

/// The Redis URL the multi-instance tests use (`TEST_REDIS_URL`, default the local Redis).
pub fn test_redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

both_backends!(readyz_reports_redis, |backend| async move {
    let db = crate::helpers::TestDb::new(backend).await;
    let mut settings = db.settings();
    settings.redis.url = secrecy::SecretString::from(test_redis_url());
    settings.redis.key_prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let app = TestApp::spawn_with(db, settings).await;
    let body = app.get_json("/readyz", 200).await;
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["redis"], "ok", "{body}");
});

both_backends!(
    readyz_is_degraded_not_down_without_redis,
    |backend| async move {
        let db = crate::helpers::TestDb::new(backend).await;
        let mut settings = db.settings();
        // Nothing listens on port 1: the instance serves its own clients and says it is degraded.
        settings.redis.url = secrecy::SecretString::from("redis://127.0.0.1:1".to_owned());
        settings.redis.command_timeout_ms = 300;
        let app = TestApp::spawn_with(db, settings).await;
        let body = app.get_json("/readyz", 200).await;
        assert_eq!(body["status"], "degraded", "{body}");
        assert_eq!(body["redis"], "unreachable", "{body}");
        assert_eq!(body["database"], "ok", "{body}");
        app.get_json("/api/v1/courses", 200).await;
    }
);
