//! Payloads are accepted only when PostgreSQL's `jsonb` and default-configured readers
//! (serde_json, Python's `json`, `jq`) can take every page that holds them.

use std::io::Write;
use std::process::{Command, Stdio};

use audit_core::event::{MAX_NUMBER_CHARS, MAX_PAYLOAD_DEPTH};
use audit_tests::test_app::{json_body, spawn_app};

fn event_with_payload(payload: &str) -> String {
    format!(
        r#"{{"event_ts":"2023-12-05T12:55:52Z","application_name":"a","event_kind":"k","payload":{payload}}}"#
    )
}

fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// Feeds `input` to a command and answers whether it exited 0.
fn reads_cleanly(program: &str, arguments: &[&str], input: &[u8]) -> bool {
    let mut child = Command::new(program)
        .args(arguments)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait().unwrap().success()
}

#[tokio::test]
async fn payloads_a_reader_or_jsonb_cannot_take_are_refused_with_422_naming_the_event() {
    let app = spawn_app().await;
    let hundred_thousand_digits = "7".repeat(100_000);
    let too_deep = nested(MAX_PAYLOAD_DEPTH + 1);
    for payload in [
        too_deep.as_str(),
        r#""\ud800""#,
        "1e999999",
        hundred_thousand_digits.as_str(),
        "1e-20000",
    ] {
        let body = format!(
            "[{},{}]",
            event_with_payload("1"),
            event_with_payload(payload)
        );

        let response = app.post_raw(body).await;

        let status = response.status();
        let body = json_body(response).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["details"][0]["index"], 1, "{body}");
        assert_eq!(body["details"][0]["field"], "payload", "{body}");
    }
    assert_eq!(app.database.count_events().await, 0);
}

#[tokio::test]
async fn a_page_of_the_largest_accepted_payloads_is_read_by_serde_json_python_jq_and_jsonb() {
    let app = spawn_app().await;
    let longest_number = format!("0.{}", "3".repeat(MAX_NUMBER_CHARS - 2));
    let payloads = [
        nested(MAX_PAYLOAD_DEPTH),
        format!("[{longest_number}]"),
        "[12345678901234567890123,0.1,1e-400,-1.7976931348623157e308]".to_owned(),
        r#"{"z":"\ud83d\ude00","a":"\u00e9"}"#.to_owned(),
    ];
    let events: Vec<String> = payloads
        .iter()
        .map(|payload| event_with_payload(payload))
        .collect();
    let response = app.post_raw(format!("[{}]", events.join(","))).await;
    assert_eq!(response.status(), 201);

    let page = app.get_events("?page_size=10").await.bytes().await.unwrap();

    serde_json::from_slice::<serde_json::Value>(&page).expect("serde_json reads the page");
    let python = "import json, sys; json.load(sys.stdin)";
    assert!(
        reads_cleanly("python3", &["-c", python], &page),
        "Python's json"
    );
    assert!(
        reads_cleanly("jq", &["-e", ".data | length == 4"], &page),
        "jq"
    );
    let text = String::from_utf8(page.to_vec()).unwrap();
    for payload in &payloads {
        assert!(text.contains(payload.as_str()), "{payload} is not verbatim");
    }
    let as_jsonb: i64 = app
        .database
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM events WHERE jsonb_typeof(payload::jsonb) IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(as_jsonb, 4);
}

#[tokio::test]
async fn a_timestamp_with_twelve_fraction_digits_is_accepted_and_rounded() {
    let app = spawn_app().await;
    let body = r#"[{"event_ts":"2023-12-05T12:55:52.123456789012Z","application_name":"a","event_kind":"k","payload":1}]"#;

    assert_eq!(app.post_raw(body).await.status(), 201);

    let page = json_body(app.get_events("").await).await;
    assert_eq!(page["data"][0]["event_ts"], "2023-12-05T12:55:52.123457Z");
}

#[tokio::test]
async fn two_idempotency_key_headers_are_refused_with_422() {
    let app = spawn_app().await;
    let body = format!("[{}]", event_with_payload("1"));

    let response = app
        .http
        .post(app.url("/api/event"))
        .header("Idempotency-Key", "first")
        .header("Idempotency-Key", "second")
        .body(body)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 422);
    let body = json_body(response).await;
    assert_eq!(body["details"][0]["field"], "idempotency-key", "{body}");
    assert_eq!(app.database.count_events().await, 0);
}
