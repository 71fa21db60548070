//! A database outage under continuous load: fast failures with 503, no lost or
//! half-stored batch, and recovery without a restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use audit_core::database;
use audit_tests::private_cluster::{ClusterSettings, PrivateCluster};
use audit_tests::test_app::{TestApp, spawn_app_on};
use audit_tests::test_database::TestDatabase;
use serde_json::{Value, json};

const EVENTS_PER_BATCH: u64 = 10;

/// One POST as the client saw it.
struct Attempt {
    first_id: u64,
    status: u16,
    elapsed: Duration,
    /// A 503 with Retry-After and a JSON error body, or any other status.
    well_formed: bool,
    /// The `error` code of a refused batch.
    error_code: Option<String>,
}

async fn post_batches(
    app: Arc<TestApp>,
    client_number: u64,
    running: Arc<AtomicBool>,
) -> Vec<Attempt> {
    let mut attempts = Vec::new();
    let mut batch_number = 0;
    while running.load(Ordering::Relaxed) {
        let first_id = (client_number * 1_000_000 + batch_number) * EVENTS_PER_BATCH;
        let batch: Vec<Value> = (first_id..first_id + EVENTS_PER_BATCH)
            .map(|id| {
                json!({"event_ts": "2023-12-05T12:55:52Z", "application_name": "a",
                       "event_kind": "k", "payload": {"id": id}})
            })
            .collect();
        let started = Instant::now();
        let response = app.post_events(&json!(batch)).await;
        let status = response.status().as_u16();
        let has_retry_after = response.headers().contains_key("retry-after");
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let well_formed = status != 503 || (has_retry_after && body["error"].is_string());
        attempts.push(Attempt {
            first_id,
            status,
            elapsed: started.elapsed(),
            well_formed,
            error_code: body["error"].as_str().map(str::to_owned),
        });
        batch_number += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    attempts
}

async fn outage_under_load(shutdown_mode: &str) {
    let cluster = PrivateCluster::start().unwrap();
    let settings = cluster.settings("audit");
    database::migrate(&settings).await.unwrap();
    let database = TestDatabase::adopt("audit", settings.clone());
    let app = Arc::new(
        spawn_app_on(database, |app_settings| {
            app_settings.postgres.connect_timeout_ms = 1000;
            app_settings.postgres.acquire_timeout_ms = 1000;
        })
        .await,
    );
    let running = Arc::new(AtomicBool::new(true));
    let clients: Vec<_> = (0..4)
        .map(|client| tokio::spawn(post_batches(Arc::clone(&app), client, Arc::clone(&running))))
        .collect();

    tokio::time::sleep(Duration::from_millis(800)).await;
    cluster.stop_server(shutdown_mode).unwrap();
    app.wait_for_status("/ready", 503, Duration::from_secs(10))
        .await;
    assert_eq!(app.get("/health").await.status(), 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.start_server().unwrap();
    app.wait_for_status("/ready", 200, Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    running.store(false, Ordering::Relaxed);
    let mut attempts = Vec::new();
    for client in clients {
        attempts.extend(client.await.unwrap());
    }

    let statuses: Vec<u16> = attempts.iter().map(|attempt| attempt.status).collect();
    assert!(
        statuses.iter().all(|status| matches!(status, 201 | 503)),
        "{statuses:?}"
    );
    assert!(
        attempts.iter().all(|attempt| attempt.well_formed),
        "a 503 without Retry-After or JSON body"
    );
    assert!(statuses.contains(&503), "the outage was not seen");
    let slowest = attempts
        .iter()
        .map(|attempt| attempt.elapsed)
        .max()
        .unwrap();
    assert!(
        slowest < Duration::from_secs(5),
        "a request hung for {slowest:?}"
    );
    let recovered = attempts
        .iter()
        .rev()
        .take_while(|attempt| attempt.status == 201)
        .count();
    assert!(recovered > 0, "no request succeeded after the restart");

    let acknowledged = statuses.iter().filter(|status| **status == 201).count();
    let unknown = attempts
        .iter()
        .filter(|attempt| attempt.error_code.as_deref() == Some("outcome_unknown"))
        .count();
    eprintln!(
        "{shutdown_mode} shutdown: {} batches of {EVENTS_PER_BATCH} sent, {acknowledged} acknowledged (201), {} refused (503), {unknown} of them outcome_unknown, slowest {slowest:?}",
        attempts.len(),
        attempts.len() - acknowledged
    );
    let mut copies: HashMap<u64, i64> = HashMap::new();
    for row in app
        .database
        .client()
        .await
        .query(
            "SELECT (payload->>'id')::bigint, count(*) FROM events GROUP BY 1",
            &[],
        )
        .await
        .unwrap()
    {
        copies.insert(row.get::<_, i64>(0) as u64, row.get(1));
    }
    let stored_events: i64 = copies.values().sum();
    let duplicated = copies.values().filter(|count| **count > 1).count();
    eprintln!("{shutdown_mode} shutdown: {stored_events} events found, {duplicated} duplicated");
    for attempt in &attempts {
        let found: Vec<i64> = (attempt.first_id..attempt.first_id + EVENTS_PER_BATCH)
            .map(|id| copies.get(&id).copied().unwrap_or(0))
            .collect();
        if attempt.status == 201 {
            assert!(
                found.iter().all(|count| *count == 1),
                "acknowledged batch {} stored as {found:?}",
                attempt.first_id
            );
        } else if attempt.error_code.as_deref() == Some("outcome_unknown") {
            // Lost at the commit: stored whole or not at all, as the answer says.
            let whole_or_nothing =
                found.iter().all(|count| *count == 0) || found.iter().all(|count| *count == 1);
            assert!(
                whole_or_nothing,
                "batch {} of unknown outcome half-stored: {found:?}",
                attempt.first_id
            );
        } else {
            // database_unavailable and overloaded promise that nothing was stored.
            assert!(
                found.iter().all(|count| *count == 0),
                "batch {} refused with {:?} was stored: {found:?}",
                attempt.first_id,
                attempt.error_code
            );
        }
    }
}

#[tokio::test]
async fn a_fast_shutdown_of_the_database_loses_nothing_and_the_service_recovers() {
    outage_under_load("fast").await;
}

#[tokio::test]
async fn an_immediate_shutdown_of_the_database_loses_nothing_and_the_service_recovers() {
    outage_under_load("immediate").await;
}
