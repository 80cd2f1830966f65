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
