//! `GET /api/event`: newest first, keyset pages, and complete token walks.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use audit_tests::test_app::{TestApp, event, json_body, spawn_app};
use serde_json::{Value, json};

async fn post_numbered(app: &TestApp, from: u64, count: u64) {
    let batch: Vec<Value> = (from..from + count)
        .map(|n| event("a", json!({ "n": n })))
        .collect();
    assert_eq!(app.post_events(&json!(batch)).await.status(), 201);
}

fn numbers(page: &Value) -> Vec<u64> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["payload"]["n"].as_u64().unwrap())
        .collect()
}

/// Follows `next_page` from the newest event to the end, returning every number seen.
async fn walk(app: &TestApp, page_size: u32) -> Vec<u64> {
    let mut seen = Vec::new();
    let mut query = format!("?page_size={page_size}");
    loop {
        let response = app.get_events(&query).await;
        assert_eq!(response.status(), 200);
        let page = json_body(response).await;
        seen.extend(numbers(&page));
        match page["next_page"].as_i64() {
            Some(token) => query = format!("?page_size={page_size}&page_token={token}"),
            None => return seen,
        }
    }
}

#[tokio::test]
async fn the_first_page_has_the_newest_events_and_the_default_size() {
    let app = spawn_app().await;
    post_numbered(&app, 0, 15).await;

    let page = json_body(app.get_events("").await).await;

    assert_eq!(page["page_size"], 10);
    assert_eq!(numbers(&page), (5..15).rev().collect::<Vec<_>>());
    assert!(page["next_page"].is_i64());
    let item = &page["data"][0];
    let mut keys: Vec<&str> = item
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    // The original's four fields, and the id (additive, for proofs), which is what
    // the original's page tokens were made of.
    assert_eq!(
        keys,
        [
            "application_name",
            "event_kind",
            "event_ts",
            "id",
            "payload"
        ]
    );
    assert_eq!(item["event_ts"], "2023-12-05T12:55:52.805022Z");
    assert_eq!(page["next_page"], page["data"][9]["id"]);
}

#[tokio::test]
async fn next_page_is_null_on_the_last_page() {
    let app = spawn_app().await;
    post_numbered(&app, 0, 4).await;

    let full = json_body(app.get_events("?page_size=4").await).await;
    let empty_database = spawn_app().await;
    let nothing = json_body(empty_database.get_events("").await).await;

    assert_eq!(numbers(&full), [3, 2, 1, 0]);
    assert_eq!(full["next_page"], Value::Null);
    assert_eq!(
        nothing,
        json!({"next_page": null, "page_size": 10, "data": []})
    );
}

#[tokio::test]
async fn following_tokens_visits_every_event_once_in_order() {
    let app = spawn_app().await;
    post_numbered(&app, 0, 23).await;

    let seen = walk(&app, 5).await;

    assert_eq!(seen, (0..23).rev().collect::<Vec<_>>());
}

#[tokio::test]
async fn a_walk_sees_every_event_committed_before_it_once_while_others_write() {
    let app = Arc::new(spawn_app().await);
    post_numbered(&app, 0, 300).await;
    let writing = Arc::new(AtomicBool::new(true));
    let mut writers = Vec::new();
    for writer in 0..3u64 {
        let app = Arc::clone(&app);
        let writing = Arc::clone(&writing);
        writers.push(tokio::spawn(async move {
            let mut next = 1_000_000 * (writer + 1);
            while writing.load(Ordering::Relaxed) {
                post_numbered(&app, next, 7).await;
                next += 7;
            }
        }));
    }

    let seen = walk(&app, 13).await;
    writing.store(false, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }

    let unique: HashSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "an event was seen twice");
    for n in 0..300 {
        assert!(
            unique.contains(&n),
            "event {n} committed before the walk was missed"
        );
    }
    let before_walk: Vec<u64> = seen.iter().copied().filter(|n| *n < 300).collect();
    assert_eq!(before_walk, (0..300).rev().collect::<Vec<_>>());
}

#[tokio::test]
async fn page_size_is_echoed_and_bounded_by_the_maximum() {
    let app = spawn_app().await;
    post_numbered(&app, 0, 3).await;

    let page = json_body(app.get_events("?page_size=1000").await).await;

    assert_eq!(page["page_size"], 1000);
    assert_eq!(numbers(&page).len(), 3);
}

#[tokio::test]
async fn bad_query_values_are_422_with_the_parameter_named() {
    let app = spawn_app().await;
    for (query, parameter) in [
        ("?page_size=0", "page_size"),
        ("?page_size=1001", "page_size"),
        ("?page_size=-5", "page_size"),
        ("?page_size=abc", "page_size"),
        ("?page_token=-1", "page_token"),
        ("?page_token=x", "page_token"),
        ("?page_token=1e3", "page_token"),
        ("?page_token=9223372036854775808", "page_token"),
    ] {
        let response = app.get_events(query).await;
        assert_eq!(response.status(), 422, "{query}");
        let body = json_body(response).await;
        assert_eq!(body["error"], "invalid_query", "{query}");
        assert_eq!(body["details"][0]["field"], parameter, "{query}");
    }
}

#[tokio::test]
async fn tokens_mean_what_the_original_meant_the_last_id_of_a_page_and_below_it() {
    let app = spawn_app().await;
    post_numbered(&app, 0, 10).await;
    let ids: Vec<i64> = app
        .database
        .column("SELECT id FROM events ORDER BY id DESC")
        .await;

    let first = json_body(app.get_events("?page_size=3").await).await;
    // A token the original handed out (or a client computed from an id) is the id of
    // the last event seen: the next page holds the events below it, none repeated.
    let below_fourth = json_body(
        app.get_events(&format!("?page_size=3&page_token={}", ids[3]))
            .await,
    )
    .await;

    assert_eq!(first["next_page"], json!(ids[2]));
    assert_eq!(numbers(&below_fourth), [5, 4, 3]);
    for first_page in ["?page_size=3&page_token=0", "?page_size=3&page_token="] {
        let page = json_body(app.get_events(first_page).await).await;
        assert_eq!(numbers(&page), [9, 8, 7], "{first_page}");
    }
}
