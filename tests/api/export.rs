//! `GET /api/event/export`: every matching event, oldest first, from one snapshot, in
//! NDJSON or RFC 4180 CSV; `after` resumes; a client that leaves ends the export.

use std::time::Duration;

use audit_tests::test_app::{TestApp, spawn_app_with};
use futures_util::StreamExt;
use serde_json::{Value, json};

fn event(n: usize, application: &str, payload: Value) -> Value {
    json!({
        "event_ts": format!("2024-03-01T00:{:02}:{:02}Z", n / 60 % 60, n % 60),
        "application_name": application,
        "event_kind": if n.is_multiple_of(3) { "Deleted" } else { "Viewed" },
        "payload": payload,
    })
}

async fn post_batch(app: &TestApp, range: std::ops::Range<usize>, application: &str) {
    let events: Vec<Value> = range
        .map(|n| {
            event(
                n,
                application,
                json!({"n": n, "note": "a, \"quoted\"\nline"}),
            )
        })
        .collect();
    assert_eq!(app.post_events(&Value::Array(events)).await.status(), 201);
}

async fn export_text(app: &TestApp, query: &str) -> (String, String) {
    let response = app.get(&format!("/api/event/export?{query}")).await;
    assert_eq!(response.status(), 200, "{query}");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (content_type, response.text().await.unwrap())
}

/// The ids and payloads the table holds for a condition, oldest first.
async fn ground_truth(app: &TestApp, condition: &str) -> Vec<(i64, Value)> {
    let rows: Vec<String> = app
        .database
        .column(&format!(
            "SELECT json_build_array(id, payload)::text FROM events WHERE {condition} ORDER BY id"
        ))
        .await;
    rows.iter()
        .map(|row| {
            let pair: Value = serde_json::from_str(row).unwrap();
            (pair[0].as_i64().unwrap(), pair[1].clone())
        })
        .collect()
}

/// Splits RFC 4180 CSV into records of fields (quoted fields, doubled quotes, line
/// breaks inside quotes), written here independently of the server.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {
                assert_eq!(chars.next(), Some('\n'), "a record ends with CRLF");
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        field.is_empty() && record.is_empty(),
        "the last record ends with CRLF"
    );
    records
}

#[tokio::test]
async fn an_export_holds_every_matching_event_oldest_first_in_either_format() {
    let app = spawn_app_with(|_| {}).await;
    // More than one fetched batch (1000 rows).
    for start in (0..2500).step_by(500) {
        post_batch(&app, start..start + 500, "billing").await;
    }
    post_batch(&app, 0..50, "login").await;

    let (content_type, ndjson) = export_text(&app, "").await;
    assert_eq!(content_type, "application/x-ndjson");
    let lines: Vec<Value> = ndjson
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let served: Vec<(i64, Value)> = (lines.iter())
        .map(|event| (event["id"].as_i64().unwrap(), event["payload"].clone()))
        .collect();
    assert_eq!(served, ground_truth(&app, "true").await);

    let (content_type, csv) = export_text(
        &app,
        "format=csv&application_name=billing&event_kind=Deleted",
    )
    .await;
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    let records = parse_csv(&csv);
    assert_eq!(
        records[0],
        [
            "id",
            "event_ts",
            "application_name",
            "event_kind",
            "payload"
        ]
    );
    let served: Vec<(i64, Value)> = (records[1..].iter())
        .map(|record| {
            assert_eq!(record[2], "billing");
            assert_eq!(record[3], "Deleted");
            (
                record[0].parse().unwrap(),
                serde_json::from_str(&record[4]).unwrap(),
            )
        })
        .collect();
    let expected = ground_truth(
        &app,
        "application_name = 'billing' AND event_kind = 'Deleted'",
    )
    .await;
    assert_eq!(served.len(), 834);
    assert_eq!(served, expected);

    // Resuming after an id gives the rest, and only the rest.
    let middle = expected[400].0;
    let (_, rest) = export_text(
        &app,
        &format!("format=csv&application_name=billing&event_kind=Deleted&after={middle}"),
    )
    .await;
    let rest_ids: Vec<i64> = (parse_csv(&rest)[1..].iter())
        .map(|record| record[0].parse().unwrap())
        .collect();
    let expected_ids: Vec<i64> = expected[401..].iter().map(|(id, _)| *id).collect();
    assert_eq!(rest_ids, expected_ids);

    // Nothing matches: the header alone; a bad parameter: 422 naming it.
    let (_, empty) = export_text(&app, "format=csv&application_name=nobody").await;
    assert_eq!(empty, "id,event_ts,application_name,event_kind,payload\r\n");
    let response = app.get("/api/event/export?format=xml").await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["details"][0]["field"], "format");
}

#[tokio::test]
async fn an_export_reads_one_snapshot_while_writers_go_on() {
    let app = spawn_app_with(|_| {}).await;
    for start in (0..5000).step_by(1000) {
        post_batch(&app, start..start + 1000, "early").await;
    }
    let response = app.get("/api/event/export").await;
    assert_eq!(response.status(), 200);
    // The snapshot was taken before the first batch was sent, so before the headers.
    post_batch(&app, 0..100, "late").await;
    let text = response.text().await.unwrap();

    let applications: Vec<String> = text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["application_name"].to_string())
        .collect();
    assert_eq!(applications.len(), 5000);
    assert!(applications.iter().all(|name| name == "\"early\""));
}

#[tokio::test]
async fn a_client_that_leaves_ends_its_export_and_frees_its_place() {
    // A pool of 4: one export at a time.
    let app = spawn_app_with(|settings| settings.postgres.pool_size = 4).await;
    for start in (0..20_000).step_by(2000) {
        let events: Vec<Value> = (start..start + 2000)
            .map(|n| event(n, "bulk", json!({"n": n, "padding": "x".repeat(500)})))
            .collect();
        app.post_events(&Value::Array(events)).await;
    }
    let first = app.get("/api/event/export").await;
    assert_eq!(first.status(), 200);
    let mut body = first.bytes_stream();
    assert!(body.next().await.is_some());

    let second = app.get("/api/event/export").await;
    assert_eq!(second.status(), 503);
    let error: Value = second.json().await.unwrap();
    assert_eq!(error["error"], "overloaded");

    // The reader of the first one leaves without reading on.
    drop(body);
    let mut admitted = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let again = app.get("/api/event/export?application_name=nobody").await;
        if again.status() == 200 {
            admitted = true;
            break;
        }
    }
    assert!(admitted, "the abandoned export kept its place");
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("exports_total{outcome=\"abandoned\"} 1"),
        "{metrics}"
    );
}
