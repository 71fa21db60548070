//! A saturated write path answers 503 with Retry-After quickly instead of queueing
//! without bound, and loses nothing it acknowledged.

use std::time::{Duration, Instant};

use audit_tests::test_app::{event, json_body, spawn_app_with};
use serde_json::json;

#[tokio::test]
async fn a_blocked_write_path_sheds_load_with_503_and_recovers() {
    let app = std::sync::Arc::new(
        spawn_app_with(|settings| {
            settings.ingest.writers = 1;
            settings.ingest.queue_capacity = 2;
            settings.ingest.enqueue_timeout_ms = 300;
        })
        .await,
    );
    // Another session holds the table: the writer's COPY waits behind it.
    let lock = app.database.lock_events_table().await;

    let started = Instant::now();
    let requests: Vec<_> = (0..12)
        .map(|n| {
            let app = std::sync::Arc::clone(&app);
            tokio::spawn(async move {
                let response = app.post_events(&json!([event("a", json!({"n": n}))])).await;
                let status = response.status().as_u16();
                let retry_after = response.headers().contains_key("retry-after");
                let body = json_body(response).await;
                (status, retry_after, body, started.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    lock.release().await;
    let mut outcomes = Vec::new();
    for request in requests {
        outcomes.push(request.await.unwrap());
    }

    let shed: Vec<_> = outcomes.iter().filter(|outcome| outcome.0 == 503).collect();
    assert!(shed.len() >= 8, "only {} of 12 were shed", shed.len());
    for (_, retry_after, body, elapsed) in &shed {
        assert!(retry_after);
        assert_eq!(body["error"], "overloaded");
        assert!(*elapsed < Duration::from_secs(1), "shed after {elapsed:?}");
    }
    let acknowledged = outcomes.iter().filter(|outcome| outcome.0 == 201).count() as i64;
    assert_eq!(acknowledged + shed.len() as i64, 12);
    assert_eq!(app.database.count_events().await, acknowledged);
    assert_eq!(app.post_one_event().await, 201);
}
