//! `POST /api/event`: every rejection is a 4xx with a JSON body saying what and where,
//! and a rejected batch stores nothing.

use audit_tests::test_app::{TestApp, event, json_body, spawn_app, spawn_app_with};
use serde_json::{Value, json};

/// Posts one event with `field` set to `value` (or removed when `None`) and returns
/// the 422 body, after checking that nothing was stored.
async fn rejection_of_field(app: &TestApp, field: &str, value: Option<Value>) -> Value {
    let mut bad = event("a", json!({}));
    match value {
        Some(value) => bad[field] = value,
        None => {
            bad.as_object_mut().unwrap().remove(field);
        }
    }
    let response = app.post_events(&json!([event("a", json!(1)), bad])).await;
    assert_eq!(response.status(), 422, "{field}");
    let body = json_body(response).await;
    assert_eq!(body["error"], "validation_failed");
    assert_eq!(app.database.count_events().await, 0);
    body
}

fn only_problem(body: &Value) -> (&Value, &str, &str) {
    let details = body["details"].as_array().unwrap();
    assert_eq!(details.len(), 1, "{body}");
    (
        &details[0]["index"],
        details[0]["field"].as_str().unwrap(),
        details[0]["problem"].as_str().unwrap(),
    )
}

#[tokio::test]
async fn bad_timestamps_are_rejected_with_index_and_field() {
    let app = spawn_app().await;
    for value in [
        json!("yesterday"),
        json!("2023-12-05"),
        json!("2023-13-05T12:00:00Z"),
        json!("2023-12-05T12:00:00+24:00"),
        json!("10000-01-01T00:00:00Z"),
        json!("9999-12-31T23:59:59-01:00"),
        json!(""),
        json!(1701780952),
        json!(null),
    ] {
        let body = rejection_of_field(&app, "event_ts", Some(value.clone())).await;
        let (index, field, _) = only_problem(&body);
        assert_eq!((index, field), (&json!(1), "event_ts"), "{value}");
    }
}

#[tokio::test]
async fn names_of_126_bytes_are_rejected_and_of_125_accepted() {
    let app = spawn_app().await;
    for field in ["application_name", "event_kind"] {
        let body = rejection_of_field(&app, field, Some(json!("a".repeat(126)))).await;
        let (_, rejected_field, problem) = only_problem(&body);
        assert_eq!(rejected_field, field);
        assert!(problem.contains("126"), "{problem}");
    }
    let mut longest = event("a".repeat(125).as_str(), json!(1));
    longest["event_kind"] = json!("k".repeat(125));
    assert_eq!(app.post_events(&json!([longest])).await.status(), 201);
}

#[tokio::test]
async fn sixty_three_cyrillic_letters_are_126_bytes_and_rejected() {
    let app = spawn_app().await;

    let body = rejection_of_field(&app, "application_name", Some(json!("ж".repeat(63)))).await;

    let (_, field, problem) = only_problem(&body);
    assert_eq!(field, "application_name");
    assert!(problem.contains("bytes"), "{problem}");
}

#[tokio::test]
async fn empty_names_and_names_that_are_not_strings_are_rejected() {
    let app = spawn_app().await;
    for field in ["application_name", "event_kind"] {
        for value in [
            json!(""),
            json!(5),
            json!(["a"]),
            json!({"a": 1}),
            json!(null),
            json!("a\u{0}b"),
        ] {
            let body = rejection_of_field(&app, field, Some(value.clone())).await;
            assert_eq!(only_problem(&body).1, field, "{value}");
        }
    }
}

#[tokio::test]
async fn every_missing_field_is_rejected_including_payload() {
    let app = spawn_app().await;
    for field in ["event_ts", "application_name", "event_kind", "payload"] {
        let body = rejection_of_field(&app, field, None).await;
        let (index, rejected_field, problem) = only_problem(&body);
        assert_eq!(
            (index, rejected_field, problem),
            (&json!(1), field, "is required")
        );
    }
}

#[tokio::test]
async fn an_unknown_field_is_rejected() {
    let app = spawn_app().await;

    let body = rejection_of_field(&app, "user", Some(json!("alice"))).await;

    assert_eq!(only_problem(&body).1, "user");
}

#[tokio::test]
async fn a_payload_postgresql_cannot_store_is_422_not_500() {
    let app = spawn_app().await;

    let body = rejection_of_field(&app, "payload", Some(json!({"text": "nul \u{0} here"}))).await;

    let (_, field, problem) = only_problem(&body);
    assert_eq!(field, "payload");
    assert!(problem.contains("u0000"), "{problem}");
}

#[tokio::test]
async fn a_bad_event_anywhere_rejects_the_whole_batch() {
    let app = spawn_app().await;
    let mut batch: Vec<Value> = (0..50).map(|n| event("a", json!(n))).collect();
    batch[49]["event_ts"] = json!("not a time");

    let response = app.post_events(&json!(batch)).await;

    assert_eq!(response.status(), 422);
    assert_eq!(json_body(response).await["details"][0]["index"], 49);
    assert_eq!(app.database.count_events().await, 0);
}

#[tokio::test]
async fn bodies_that_are_not_an_array_of_objects_are_rejected() {
    let app = spawn_app().await;
    for body in [
        "",
        "{",
        "[{]",
        "not json",
        r#"{"event_ts": "2023-12-05T12:55:52Z"}"#,
        "[1, 2]",
        "[] trailing",
        "\u{feff}[]",
    ] {
        let response = app.post_raw(body).await;
        assert_eq!(response.status(), 422, "{body:?}");
        let json = json_body(response).await;
        assert!(
            json["error"] == "malformed_json" || json["error"] == "validation_failed",
            "{json}"
        );
        assert!(json["message"].is_string(), "{json}");
    }
    let response = app.post_raw(vec![b'[', 0xff, 0xfe, b']']).await;
    assert_eq!(response.status(), 422);
    assert_eq!(app.database.count_events().await, 0);
}

#[tokio::test]
async fn malformed_json_says_where() {
    let app = spawn_app().await;

    let response = app.post_raw("[\n  {\"event_ts\": }\n]").await;

    assert_eq!(response.status(), 422);
    let body = json_body(response).await;
    assert_eq!(body["error"], "malformed_json");
    assert_eq!(body["details"][0]["line"], 2);
}

#[tokio::test]
async fn more_events_than_the_limit_is_413_and_the_server_stays_healthy() {
    let app = spawn_app_with(|settings| settings.api.max_batch_events = 5).await;
    let batch: Vec<_> = (0..6).map(|n| event("a", json!(n))).collect();

    let response = app.post_events(&json!(batch)).await;

    assert_eq!(response.status(), 413);
    assert_eq!(json_body(response).await["error"], "too_many_events");
    assert_eq!(app.database.count_events().await, 0);
    assert_eq!(app.get("/health").await.status(), 200);
    assert_eq!(app.post_one_event().await, 201);
}

#[tokio::test]
async fn a_body_over_the_byte_limit_is_413_and_the_server_stays_healthy() {
    let app = spawn_app_with(|settings| settings.api.max_body_bytes = 1024).await;
    let batch: Vec<_> = (0..20).map(|n| event("a", json!(n))).collect();
    let body = serde_json::to_vec(&batch).unwrap();
    assert!(body.len() > 1024);

    let response = app.post_raw(body).await;

    assert_eq!(response.status(), 413);
    assert_eq!(json_body(response).await["error"], "body_too_large");
    assert_eq!(app.database.count_events().await, 0);
    assert_eq!(app.post_one_event().await, 201);
}

#[tokio::test]
async fn a_chunked_body_over_the_byte_limit_is_413() {
    let app = spawn_app_with(|settings| settings.api.max_body_bytes = 1024).await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![b' '; 200])).collect();
    let stream = futures_stream(chunks);

    let response = app.post_raw(reqwest::Body::wrap_stream(stream)).await;

    assert_eq!(response.status(), 413);
    assert_eq!(json_body(response).await["error"], "body_too_large");
}

fn futures_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    futures_util::stream::iter(chunks)
}
