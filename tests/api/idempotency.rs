//! `Idempotency-Key`: a retried POST stores its events once.

use std::time::Duration;

use audit_tests::test_app::{TestApp, event, json_body, spawn_app, spawn_app_with};
use serde_json::{Value, json};

async fn post_keyed(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url("/api/event"))
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn stored_keys(app: &TestApp) -> i64 {
    app.database
        .client()
        .await
        .query_one("SELECT count(*) FROM idempotency_keys", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_retry_with_the_same_key_and_body_replays_the_result_and_stores_nothing() {
    let app = spawn_app().await;
    let batch = json!([event("a", json!(1)), event("a", json!(2))]);

    let first = post_keyed(&app, "order-1", &batch).await;
    let retry = post_keyed(&app, "order-1", &batch).await;

    assert_eq!(first.status(), 201);
    assert!(!first.headers().contains_key("idempotent-replayed"));
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(json_body(retry).await, json!({"inserted": 2}));
    assert_eq!(app.database.count_events().await, 2);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused_with_409() {
    let app = spawn_app().await;
    post_keyed(&app, "order-2", &json!([event("a", json!(1))])).await;

    let response = post_keyed(&app, "order-2", &json!([event("a", json!(999))])).await;

    assert_eq!(response.status(), 409);
    assert_eq!(json_body(response).await["error"], "idempotency_key_reused");
    assert_eq!(app.database.count_events().await, 1);
}

#[tokio::test]
async fn concurrent_retries_with_one_key_store_the_batch_once() {
    let app = std::sync::Arc::new(spawn_app().await);
    let batch = json!([event("a", json!({"n": 1})), event("a", json!({"n": 2}))]);

    let requests: Vec<_> = (0..10)
        .map(|_| {
            let app = std::sync::Arc::clone(&app);
            let batch = batch.clone();
            tokio::spawn(async move { post_keyed(&app, "race", &batch).await.status() })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap(), 201);
    }

    assert_eq!(app.database.count_events().await, 2);
}

#[tokio::test]
async fn an_invalid_key_is_422() {
    let app = spawn_app().await;

    for key in ["", "with space", &"k".repeat(256)] {
        let response = post_keyed(&app, key, &json!([])).await;
        assert_eq!(response.status(), 422, "{key:?}");
        let body = json_body(response).await;
        assert_eq!(body["error"], "invalid_header");
        assert_eq!(body["details"][0]["field"], "idempotency-key");
    }
}

#[tokio::test]
async fn a_rejected_batch_does_not_use_up_its_key() {
    let app = spawn_app().await;
    let mut bad = event("a", json!(1));
    bad["event_ts"] = json!("never");

    let rejected = post_keyed(&app, "order-3", &json!([bad])).await;
    let accepted = post_keyed(&app, "order-3", &json!([event("a", json!(1))])).await;

    assert_eq!(rejected.status(), 422);
    assert_eq!(accepted.status(), 201);
    assert!(!accepted.headers().contains_key("idempotent-replayed"));
    assert_eq!(app.database.count_events().await, 1);
}

#[tokio::test]
async fn an_expired_key_can_be_used_again() {
    let app = spawn_app_with(|settings| settings.idempotency.ttl_seconds = 1).await;
    post_keyed(&app, "order-4", &json!([event("a", json!(1))])).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let response = post_keyed(&app, "order-4", &json!([event("a", json!(2))])).await;

    assert_eq!(response.status(), 201);
    assert_eq!(app.database.count_events().await, 2);
}

#[tokio::test]
async fn expired_keys_are_cleaned_up() {
    let app = spawn_app_with(|settings| {
        settings.idempotency.ttl_seconds = 1;
        settings.idempotency.cleanup_interval_seconds = 1;
    })
    .await;
    post_keyed(&app, "order-5", &json!([])).await;
    assert_eq!(stored_keys(&app).await, 1);

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stored_keys(&app).await > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    assert_eq!(stored_keys(&app).await, 0);
}
