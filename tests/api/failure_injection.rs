//! The original's deliberate 500s, drawn with probability `failure.chance`.

use audit_tests::test_app::{event, json_body, spawn_app_with};
use serde_json::json;

#[tokio::test]
async fn at_chance_1_every_event_request_fails_with_a_json_500_and_stores_nothing() {
    let app = spawn_app_with(|settings| settings.failure.chance = 1.0).await;

    for _ in 0..20 {
        let post = app.post_events(&json!([event("a", json!(1))])).await;
        assert_eq!(post.status(), 500);
        let body = json_body(post).await;
        assert_eq!(body["error"], "injected_failure");
        let get = app.get_events("").await;
        assert_eq!(get.status(), 500);
        assert_eq!(json_body(get).await["error"], "injected_failure");
    }

    assert_eq!(app.database.count_events().await, 0);
}

#[tokio::test]
async fn at_chance_1_internal_endpoints_never_fail() {
    let app = spawn_app_with(|settings| settings.failure.chance = 1.0).await;

    for _ in 0..10 {
        assert_eq!(app.get("/health").await.status(), 200);
        assert_eq!(app.get("/ready").await.status(), 200);
        assert_eq!(app.get("/metrics").await.status(), 200);
        assert_eq!(app.reload().await.status(), 200);
    }
}

#[tokio::test]
async fn at_chance_0_no_request_fails() {
    let app = spawn_app_with(|settings| settings.failure.chance = 0.0).await;

    for _ in 0..200 {
        assert_eq!(app.post_raw("[]").await.status(), 201);
        assert_eq!(app.get_events("").await.status(), 200);
    }
}

#[tokio::test]
async fn at_chance_one_tenth_about_one_request_in_ten_fails() {
    let app = spawn_app_with(|settings| settings.failure.chance = 0.1).await;
    let requests = 1000;

    let mut failures = 0;
    for _ in 0..requests {
        let status = app.get_events("").await.status();
        assert!(status == 200 || status == 500, "{status}");
        if status == 500 {
            failures += 1;
        }
    }

    // Binomial(1000, 0.1): mean 100, standard deviation 9.5. These bounds are more
    // than four deviations away, so a correct server fails this about once in 30,000
    // runs, while chance 0.05 or 0.15 fails it almost always.
    assert!(
        (60..=140).contains(&failures),
        "{failures} injected failures in {requests}"
    );
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(&format!(
            "injected_failures_total{{path_template=\"/api/event\"}} {failures}"
        )),
        "{metrics}"
    );
}

#[tokio::test]
async fn at_chance_1_a_malformed_request_is_still_refused_with_422_as_the_original_does() {
    let app = spawn_app_with(|settings| settings.failure.chance = 1.0).await;

    for _ in 0..50 {
        let malformed_body = app.post_raw("[{\"event_ts\": 5}]").await;
        assert_eq!(malformed_body.status(), 422);
        let malformed_query = app.get_events("?page_size=0").await;
        assert_eq!(malformed_query.status(), 422);
        let malformed_json = app.post_raw("[").await;
        assert_eq!(malformed_json.status(), 422);
    }
    assert_eq!(
        app.post_events(&json!([event("a", json!(1))]))
            .await
            .status(),
        500
    );
    assert_eq!(app.database.count_events().await, 0);
}
