//! Hostile input over HTTP: whatever a client sends, the answer is 201 or a 4xx with
//! a JSON body, never a 5xx, and the server keeps serving.

use audit_tests::test_app::{TestApp, spawn_app};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

/// Sends one body and checks the answer's status and shape.
async fn assert_handled(app: &TestApp, body: Vec<u8>) -> Result<(), String> {
    let response = app
        .http
        .post(app.url("/api/event"))
        .body(body.clone())
        .send()
        .await
        .map_err(|error| format!("no response: {error}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if status.is_server_error() {
        return Err(format!(
            "{status} for a body of {} bytes: {text}",
            body.len()
        ));
    }
    if status != 201 && serde_json::from_str::<serde_json::Value>(&text).is_err() {
        return Err(format!("{status} without a JSON body: {text}"));
    }
    Ok(())
}

fn nasty_bodies() -> Vec<Vec<u8>> {
    let event = |payload: &str| {
        format!(
            r#"[{{"event_ts":"2023-12-05T12:55:52Z","application_name":"a","event_kind":"k","payload":{payload}}}]"#
        )
        .into_bytes()
    };
    vec![
        vec![0xff, 0xfe, 0x00, 0x80],
        b"[\"\xc3\x28\"]".to_vec(),
        format!("{}{}", "[".repeat(200_000), "]".repeat(200_000)).into_bytes(),
        event(&format!("{}1{}", "[".repeat(5_000), "]".repeat(5_000))),
        event(&format!("{}1{}", "{\"a\":".repeat(5_000), "}".repeat(5_000))),
        event("1e999999999"),
        event(&"9".repeat(100_000)),
        event(r#""\u0000""#),
        event(r#"{"\u0000":1}"#),
        event(r#""\ud800""#),
        event(&format!("\"{}\"", "x".repeat(1_000_000))),
        event(r#"{"a":1,"a":2}"#),
        br#"[{"event_ts":"2023-12-05T12:55:52Z","event_ts":"x","application_name":"a","event_kind":"k","payload":1}]"#.to_vec(),
        br#"[{"event_ts":"2023-12-05T12:55:52Z","application_name":"\u0000","event_kind":"k","payload":1}]"#.to_vec(),
        br#"[{"event_ts":"99999-12-05T12:55:52Z","application_name":"a","event_kind":"k","payload":1}]"#.to_vec(),
        br#"[{"event_ts":"2023-12-05T12:55:52+99:99","application_name":"a","event_kind":"k","payload":1}]"#.to_vec(),
        b"[".to_vec(),
        Vec::new(),
        b"null".to_vec(),
        vec![b' '; 100_000],
    ]
}

#[tokio::test]
async fn hand_picked_hostile_bodies_get_client_errors_and_never_a_5xx() {
    let app = spawn_app().await;

    for body in nasty_bodies() {
        assert_handled(&app, body).await.unwrap();
    }

    assert_eq!(app.get("/health").await.status(), 200);
    assert_eq!(app.get_events("?page_size=1000").await.status(), 200);
}

#[tokio::test]
async fn generated_hostile_bodies_and_queries_never_get_a_5xx() {
    let app = spawn_app().await;
    let mut runner = TestRunner::new(Config {
        cases: 150,
        failure_persistence: None,
        ..Config::default()
    });
    let mut bodies = Vec::new();
    let mut queries = Vec::new();
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        "\\[\\{\"(event_ts|application_name|event_kind|payload|x)\":(\"[^\"]{0,30}\"|[0-9eE.+-]{1,30}|null|\\[\\]|\\{\\})(,\"(event_ts|application_name|event_kind|payload)\":\"[ -~]{0,30}\"){0,4}\\}\\]"
            .prop_map(String::into_bytes),
    ];
    let query = "[ -~]{0,60}";
    for _ in 0..150 {
        bodies.push(body.new_tree(&mut runner).unwrap().current());
        queries.push(query.new_tree(&mut runner).unwrap().current());
    }

    for body in bodies {
        assert_handled(&app, body).await.unwrap();
    }
    for query in queries {
        let response = app
            .http
            .get(format!("{}/api/event?{}", app.address, query))
            .send()
            .await
            .unwrap();
        assert!(
            !response.status().is_server_error(),
            "{} for ?{query}",
            response.status()
        );
    }
}
