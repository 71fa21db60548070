//! Several servers on one primary with a streaming read replica (private clusters of
//! the test's own): reads go to the replica, fall back to the primary when it stops,
//! and go on from the replica when the primary stops; every acknowledged event is read
//! exactly once throughout.

use std::future::Future;
use std::time::Duration;

use audit_core::database;
use audit_tests::private_cluster::{ClusterSettings, PrivateCluster};
use audit_tests::test_app::{TestApp, event, json_body, spawn_app_on};
use audit_tests::test_database::TestDatabase;
use serde_json::{Value, json};

async fn wait_until<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every number `GET /api/event` serves, following `next_page`, sorted; every page
/// must answer 200.
async fn read_all(app: &TestApp) -> Vec<u64> {
    let mut numbers = Vec::new();
    let mut query = "?page_size=8".to_owned();
    loop {
        let response = app.get_events(&query).await;
        assert_eq!(response.status(), 200, "a read failed");
        let page = json_body(response).await;
        numbers.extend(
            (page["data"].as_array().unwrap().iter())
                .map(|event| event["payload"]["n"].as_u64().unwrap()),
        );
        match page["next_page"].as_i64() {
            Some(token) => query = format!("?page_size=8&page_token={token}"),
            None => break,
        }
    }
    numbers.sort_unstable();
    numbers
}

async fn replica_state(app: &TestApp) -> String {
    let ready: Value = json_body(app.get("/ready").await).await;
    ready["replicas"][0]["state"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// Reads this server sent to the replica (its own count: the metrics recorder is
/// shared by every server of a test process).
fn replica_reads(app: &TestApp) -> u64 {
    let runtime = app.state.runtime();
    let replicas = runtime.repository.replicas().expect("replicas configured");
    replicas.statuses()[0].reads
}

async fn post_number(app: &TestApp, n: u64) {
    let response = app
        .post_events(&json!([event("billing", json!({ "n": n }))]))
        .await;
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn servers_read_from_a_replica_fall_back_when_it_stops_and_keep_reading_when_the_primary_stops()
 {
    let primary = PrivateCluster::start().unwrap();
    let settings = primary.settings("audit");
    database::migrate(&settings).await.unwrap();
    let replica = PrivateCluster::replica_of(&primary).unwrap();
    let replica_dsn = replica.settings("audit").dsn;
    let mut servers = Vec::new();
    for _ in 0..2 {
        let database = TestDatabase::adopt("audit", settings.clone());
        let dsn = replica_dsn.clone();
        servers.push(
            spawn_app_on(database, move |settings| {
                settings.postgres.read_dsns = vec![dsn];
                settings.postgres.max_read_lag_ms = 5_000;
                settings.postgres.connect_timeout_ms = 500;
                settings.postgres.acquire_timeout_ms = 1_000;
            })
            .await,
        );
    }

    // Writes through both servers; both read all of them through the replica.
    for n in 0..20 {
        post_number(&servers[usize::from(n % 2 == 1)], n).await;
    }
    for server in &servers {
        wait_until("the replica usable", || async {
            replica_state(server).await == "usable"
        })
        .await;
        wait_until("every event read through the replica", || async {
            read_all(server).await == (0..20).collect::<Vec<_>>()
        })
        .await;
        assert!(replica_reads(server) > 0, "no read went to the replica");
    }

    // The replica stops: reads fall back to the primary, none fails or misses one.
    replica.stop_server("fast").unwrap();
    for n in 20..30 {
        post_number(&servers[usize::from(n % 2 == 1)], n).await;
        for server in &servers {
            assert_eq!(read_all(server).await, (0..=n).collect::<Vec<_>>());
        }
    }
    for server in &servers {
        wait_until("the replica seen down", || async {
            replica_state(server).await == "down"
        })
        .await;
    }

    // Back, it catches up and is read from again.
    replica.start_server().unwrap();
    for server in &servers {
        wait_until("the replica usable again", || async {
            replica_state(server).await == "usable"
        })
        .await;
        wait_until("the replica caught up", || async {
            read_all(server).await == (0..30).collect::<Vec<_>>()
        })
        .await;
    }

    // The primary stops: writes are refused with 503 and Retry-After, and reads go on
    // from the replica, every acknowledged event exactly once.
    primary.stop_server("fast").unwrap();
    for server in &servers {
        let response = (server.post_events(&json!([event("billing", json!({ "n": 99 }))]))).await;
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
        let before = replica_reads(server);
        assert_eq!(read_all(server).await, (0..30).collect::<Vec<_>>());
        assert!(replica_reads(server) > before);
    }
}
