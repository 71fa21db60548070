//! How the group-commit writers share the queue: a small group waits for the group
//! being written instead of starting a second COPY beside it, and a large backlog
//! does start one; a batch the database refuses fails alone, not its whole group.

use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_tests::test_app::{TestApp, event, spawn_app_with};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// COPYs of the events table that PostgreSQL is running (here: waiting on a lock).
async fn copies_running(app: &TestApp) -> i64 {
    app.database
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND state = 'active' \
             AND query LIKE 'COPY events%'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

async fn wait_for_copies(app: &TestApp, expected: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while copies_running(app).await != expected {
        assert!(
            Instant::now() < deadline,
            "never saw {expected} COPYs running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn post_in_background(app: &Arc<TestApp>, body: Value) -> JoinHandle<u16> {
    let app = Arc::clone(app);
    tokio::spawn(async move { app.post_events(&body).await.status().as_u16() })
}

fn batch(size: usize) -> Value {
    Value::Array((0..size).map(|n| event("a", json!({ "n": n }))).collect())
}

#[tokio::test]
async fn small_groups_wait_for_the_group_in_flight_and_a_large_backlog_does_not() {
    let app = Arc::new(
        spawn_app_with(|settings| {
            settings.ingest.writers = 2;
            settings.ingest.parallel_group_events = 50;
        })
        .await,
    );
    // A COPY stays in flight until the lock is released.
    let lock = app.database.lock_events_table().await;
    let mut requests = vec![post_in_background(&app, batch(1))];
    wait_for_copies(&app, 1).await;

    // Five events wait: fewer than 50, so the second writer must not start a COPY.
    requests.extend((0..5).map(|_| post_in_background(&app, batch(1))));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(copies_running(&app).await, 1);

    // 65 events wait: the second writer starts its COPY beside the first.
    requests.push(post_in_background(&app, batch(60)));
    wait_for_copies(&app, 2).await;

    lock.release().await;
    for request in requests {
        assert_eq!(request.await.unwrap(), 201);
    }
    assert_eq!(app.database.count_events().await, 66);
}

#[tokio::test]
async fn a_batch_a_constraint_refuses_fails_alone_and_the_rest_of_its_group_commits() {
    let app = Arc::new(spawn_app_with(|settings| settings.ingest.writers = 1).await);
    app.database
        .client()
        .await
        .batch_execute(
            "ALTER TABLE events ADD CONSTRAINT no_guilty CHECK (application_name <> 'guilty')",
        )
        .await
        .unwrap();
    // The one writer's COPY waits on the lock; the next two batches queue behind it
    // and are taken together, as one group, once it commits.
    let lock = app.database.lock_events_table().await;
    let first = post_in_background(&app, batch(1));
    wait_for_copies(&app, 1).await;
    let innocent = post_in_background(&app, batch(3));
    let guilty = post_in_background(&app, json!([event("guilty", json!(1))]));
    tokio::time::sleep(Duration::from_millis(300)).await;

    lock.release().await;

    assert_eq!(first.await.unwrap(), 201);
    assert_eq!(
        innocent.await.unwrap(),
        201,
        "refused with the guilty batch"
    );
    assert_eq!(guilty.await.unwrap(), 503);
    assert_eq!(app.database.count_events().await, 4);
}
