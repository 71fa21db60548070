//! `POST /api/event`: what is accepted, and that it is stored exactly.

use audit_tests::test_app::{event, json_body, spawn_app, spawn_app_with};
use serde_json::json;

#[tokio::test]
async fn a_valid_batch_is_stored_and_answered_with_201_and_its_count() {
    let app = spawn_app().await;
    let batch = json!([event("a", json!({"n": 1})), event("b", json!({"n": 2}))]);

    let response = app.post_events(&batch).await;

    assert_eq!(response.status(), 201);
    assert_eq!(json_body(response).await, json!({"inserted": 2}));
    let rows = app
        .database
        .client()
        .await
        .query(
            "SELECT application_name, event_kind, payload::text FROM events ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let stored: Vec<(String, String, String)> = rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    assert_eq!(
        stored,
        vec![
            (
                "a".to_owned(),
                "UserLogin".to_owned(),
                r#"{"n":1}"#.to_owned()
            ),
            (
                "b".to_owned(),
                "UserLogin".to_owned(),
                r#"{"n":2}"#.to_owned()
            ),
        ]
    );
}

#[tokio::test]
async fn an_empty_array_is_answered_with_201_and_stores_nothing() {
    let app = spawn_app().await;

    let response = app.post_raw("[]").await;

    assert_eq!(response.status(), 201);
    assert_eq!(json_body(response).await, json!({"inserted": 0}));
    assert_eq!(app.database.count_events().await, 0);
}

#[tokio::test]
async fn the_body_is_accepted_whatever_its_content_type_says() {
    let app = spawn_app().await;
    let body = serde_json::to_vec(&json!([event("a", json!(1))])).unwrap();

    for content_type in [Some("text/plain"), Some("application/xml"), None] {
        let mut request = app.http.post(app.url("/api/event")).body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 201, "content type {content_type:?}");
    }
    assert_eq!(app.database.count_events().await, 3);
}

#[tokio::test]
async fn payloads_of_every_json_type_round_trip_exactly() {
    let app = spawn_app().await;
    let payloads = [
        "12345678901234567890123",
        "0.1",
        "1e300",
        "1e-400",
        "-0",
        r#""text with \"quotes\" and ü""#,
        "true",
        "null",
        r#"[1,"two",{"three":3.0}]"#,
        r#"{"z":1,"a":{"nested":[null,false]},"dup":1,"dup":2}"#,
    ];
    let events: Vec<String> = payloads
        .iter()
        .map(|payload| {
            format!(
                r#"{{"event_ts":"2023-12-05T12:55:52Z","application_name":"a","event_kind":"k","payload":{payload}}}"#
            )
        })
        .collect();
    let body = format!("[{}]", events.join(","));

    let response = app.post_raw(body).await;
    assert_eq!(response.status(), 201);

    let page = app.get_events("?page_size=100").await.text().await.unwrap();
    // Newest first, so the payloads come back in reverse order, each verbatim.
    for payload in payloads {
        assert!(
            page.contains(&format!(r#""payload":{payload}}}"#)),
            "{payload} not found verbatim in {page}"
        );
    }
    let stored: Vec<String> = app
        .database
        .client()
        .await
        .query("SELECT payload::text FROM events ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(stored, payloads);
}

#[tokio::test]
async fn timestamps_are_normalised_to_utc_with_microseconds() {
    let app = spawn_app().await;
    let cases = [
        (
            "2023-12-05T14:55:52.805022+02:00",
            "2023-12-05T12:55:52.805022Z",
        ),
        ("2023-12-05T12:55:52", "2023-12-05T12:55:52.000000Z"),
        ("2023-12-05T07:55:52.5-05:00", "2023-12-05T12:55:52.500000Z"),
        // PostgreSQL reads this as .805022 (the nearest double is just below the
        // half); the API stores the same instant as psql would.
        (
            "2023-12-05T12:55:52.8050225Z",
            "2023-12-05T12:55:52.805022Z",
        ),
    ];
    for (sent, _) in cases {
        let body =
            json!([{"event_ts": sent, "application_name": "a", "event_kind": "k", "payload": {}}]);
        assert_eq!(app.post_events(&body).await.status(), 201, "{sent}");
    }

    let page = json_body(app.get_events("?page_size=10").await).await;

    let returned: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|item| item["event_ts"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = cases.iter().map(|(_, utc)| *utc).collect();
    assert_eq!(returned, expected);
    let stored: String = app
        .database
        .client()
        .await
        .query_one(
            "SELECT to_char(event_ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM events ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, "2023-12-05 12:55:52.805022");
    let same_as_psql: bool = app
        .database
        .client()
        .await
        .query_one(
            "SELECT event_ts = '2023-12-05T12:55:52.8050225Z'::timestamptz \
             FROM events ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(same_as_psql, "the API and psql store different instants");
}

#[tokio::test]
async fn a_batch_of_exactly_the_event_limit_is_accepted() {
    let app = spawn_app_with(|settings| settings.api.max_batch_events = 5).await;
    let batch: Vec<_> = (0..5).map(|n| event("a", json!(n))).collect();

    let response = app.post_events(&json!(batch)).await;

    assert_eq!(response.status(), 201);
    assert_eq!(app.database.count_events().await, 5);
}

#[tokio::test]
async fn concurrent_small_batches_are_each_stored_exactly_once() {
    let app = std::sync::Arc::new(spawn_app().await);
    let mut clients = Vec::new();
    for client in 0..16u64 {
        let app = std::sync::Arc::clone(&app);
        clients.push(tokio::spawn(async move {
            for n in 0..25u64 {
                let id = client * 1000 + n;
                let response = app
                    .post_events(&json!([event("a", json!({ "id": id }))]))
                    .await;
                assert_eq!(response.status(), 201);
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }

    let ids: Vec<i64> = app
        .database
        .client()
        .await
        .query(
            "SELECT (payload->>'id')::bigint FROM events ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let expected: Vec<i64> = (0..16i64)
        .flat_map(|client| (0..25i64).map(move |n| client * 1000 + n))
        .collect();
    assert_eq!(ids, expected);
}
