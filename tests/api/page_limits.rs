//! GET pages are bounded in bytes, produced from the rows as they arrive, and a client
//! that does not read its response is cut off.

use std::time::Duration;

use audit_tests::test_app::{TestApp, event, json_body, spawn_app_with};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Posts `count` events, each with a string payload of `payload_bytes` characters.
async fn post_large_events(app: &TestApp, count: usize, payload_bytes: usize) {
    let payload = "x".repeat(payload_bytes);
    let batch: Vec<Value> = (0..count).map(|_| event("a", json!(payload))).collect();
    assert_eq!(app.post_events(&json!(batch)).await.status(), 201);
}

/// The payload length of each event of one GET, and its `next_page`.
async fn page(app: &TestApp, query: &str) -> (Vec<usize>, Value) {
    let body = json_body(app.get_events(query).await).await;
    let payload_lengths = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["payload"].as_str().unwrap().len())
        .collect();
    (payload_lengths, body["next_page"].clone())
}

#[tokio::test]
async fn a_page_ends_before_max_page_bytes_and_next_page_continues_after_its_last_event() {
    let app = spawn_app_with(|settings| settings.api.max_page_bytes = 10_000).await;
    // About 3.1 KB each once rendered: three fit in 10,000 bytes, four do not.
    post_large_events(&app, 10, 3_000).await;

    let (first, next_page) = page(&app, "?page_size=10").await;

    assert_eq!(first.len(), 3);
    let ids_newest_first: Vec<i64> = app
        .database
        .column("SELECT id FROM events ORDER BY id DESC")
        .await;
    assert_eq!(
        next_page,
        json!(ids_newest_first[2]),
        "the id of the last event sent: the next page holds those below it"
    );
    let mut seen = 3;
    let mut token = next_page;
    while let Some(next) = token.as_i64() {
        let query = format!("?page_size=10&page_token={next}");
        let (events, following) = page(&app, &query).await;
        assert!(!events.is_empty() && events.len() <= 3);
        seen += events.len();
        token = following;
    }
    assert_eq!(seen, 10, "a walk by tokens sees every event once");
}

#[tokio::test]
async fn an_event_larger_than_max_page_bytes_comes_alone_on_its_page() {
    let app = spawn_app_with(|settings| settings.api.max_page_bytes = 1_000).await;
    post_large_events(&app, 2, 5_000).await;

    let (events, next_page) = page(&app, "?page_size=10").await;

    assert_eq!(events, vec![5_000]);
    assert!(next_page.is_i64(), "the second event is on the next page");
}

#[tokio::test]
async fn an_event_over_max_event_bytes_is_refused_with_413_naming_its_index() {
    let app = spawn_app_with(|settings| settings.api.max_event_bytes = 2_000).await;
    let batch = json!([
        event("a", json!("small")),
        event("a", json!("x".repeat(2_000)))
    ]);

    let response = app.post_events(&batch).await;

    assert_eq!(response.status(), 413);
    let body = json_body(response).await;
    assert_eq!(body["error"], "event_too_large");
    assert_eq!(body["details"][0]["index"], 1);
    assert_eq!(app.database.count_events().await, 0);
}

#[tokio::test]
async fn a_client_that_does_not_read_its_response_is_cut_off_after_the_response_timeout() {
    let app = spawn_app_with(|settings| {
        settings.http.response_timeout_ms = 1_000;
        settings.api.max_page_bytes = 64 * 1024 * 1024;
    })
    .await;
    // 16 events of 1 MiB: a 16 MiB page, far more than the sockets' buffers hold.
    app.database
        .client()
        .await
        .batch_execute(
            "INSERT INTO events (event_ts, application_name, event_kind, payload) \
             SELECT now(), 'a', 'k', to_json(repeat('x', 1048576)) FROM generate_series(1, 16)",
        )
        .await
        .unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address = app.address.trim_start_matches("http://").parse().unwrap();
    let mut stream = socket.connect(address).await.unwrap();
    stream
        .write_all(b"GET /api/event?page_size=16 HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();

    // Not reading for several timeouts: the server must give up on this client.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut received = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut received)).await;

    assert!(read.is_ok(), "the connection stayed open");
    assert!(
        received.len() < 16 * 1024 * 1024,
        "the whole {} byte response was delivered after the timeout",
        received.len()
    );
    assert_eq!(app.post_one_event().await, 201, "the server serves others");
}

#[tokio::test]
async fn a_stored_timestamp_past_year_9999_answers_500_corrupt_row_naming_the_id() {
    let app = spawn_app_with(|_| {}).await;
    let client = app.database.client().await;
    let id: i64 = client
        .query_one(
            "INSERT INTO events (event_ts, application_name, event_kind, payload) \
             VALUES ('10000-01-01T00:00:00Z', 'a', 'k', '1') RETURNING id",
            &[],
        )
        .await
        .unwrap()
        .get(0);

    let response = app.get_events("").await;

    assert_eq!(response.status(), 500);
    let body = json_body(response).await;
    assert_eq!(body["error"], "corrupt_row");
    assert!(
        body["message"].as_str().unwrap().contains(&id.to_string()),
        "{body}"
    );
    assert_eq!(app.get("/health").await.status(), 200);
}

/// Pages are prepared with one of a few literal limits (11 ... 1001): a page size
/// between two of them, and one beyond the largest, give exactly the events asked for
/// and the token of the last.
#[tokio::test]
async fn every_page_size_gives_exactly_its_events_whatever_limit_the_statement_has() {
    let app = spawn_app_with(|settings| settings.api.max_page_size = 1_500).await;
    let batch: Vec<Value> = (0..1_200).map(|n| event("a", json!({ "n": n }))).collect();
    assert_eq!(app.post_events(&json!(batch)).await.status(), 201);
    let ids: Vec<i64> = app
        .database
        .column("SELECT id FROM events ORDER BY id DESC")
        .await;

    for size in [1, 7, 10, 33, 150, 1_000, 1_100] {
        let body = json_body(app.get_events(&format!("?page_size={size}")).await).await;
        let served: Vec<i64> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|event| event["id"].as_i64().unwrap())
            .collect();
        assert_eq!(served, ids[..size], "page_size={size}");
        assert_eq!(body["next_page"], json!(ids[size - 1]), "page_size={size}");
        let below = format!("?page_size={size}&page_token={}", ids[size - 1]);
        let body = json_body(app.get_events(&below).await).await;
        let next: Vec<i64> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|event| event["id"].as_i64().unwrap())
            .collect();
        let end = (2 * size).min(ids.len());
        assert_eq!(next, ids[size..end], "the page after, page_size={size}");
    }
}
