//! `/health`, `/ready`, `/metrics`, and answers for unknown routes and methods.

use audit_tests::test_app::{event, json_body, spawn_app, spawn_app_on, spawn_app_with};
use audit_tests::test_database::TestDatabase;
use serde_json::json;

#[tokio::test]
async fn health_and_ready_are_200_with_a_migrated_database() {
    let app = spawn_app().await;

    assert_eq!(app.get("/health").await.status(), 200);
    assert_eq!(app.get("/ready").await.status(), 200);
}

#[tokio::test]
async fn ready_is_503_without_migrations_while_health_stays_200() {
    let app = spawn_app_on(TestDatabase::create_empty().await, |_| {}).await;

    let ready = app.get("/ready").await;

    assert_eq!(ready.status(), 503);
    assert_eq!(json_body(ready).await["error"], "migrations_pending");
    assert_eq!(app.get("/health").await.status(), 200);
}

#[tokio::test]
async fn without_a_database_ready_and_events_are_503_and_health_is_200() {
    let app = spawn_app_with(|settings| {
        // Nothing listens on port 1; connecting fails at once.
        settings.postgres.dsn = "postgres://postgres@127.0.0.1:1/audit".to_owned();
    })
    .await;

    let ready = app.get("/ready").await;
    let post = app.post_events(&json!([event("a", json!(1))])).await;

    assert_eq!(ready.status(), 503);
    // A stable reason, never the driver's text (which names the host and the error).
    let ready = json_body(ready).await;
    assert_eq!(ready["error"], "database_unavailable", "{ready}");
    let text = ready.to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.to_lowercase().contains("refused"),
        "{text}"
    );
    assert_eq!(post.status(), 503);
    assert!(post.headers().contains_key("retry-after"));
    assert_eq!(json_body(post).await["error"], "database_unavailable");
    assert_eq!(app.get("/health").await.status(), 200);
    assert!(app.metrics_text().await.contains("database_ready 0"));
}

#[tokio::test]
async fn an_unknown_route_is_404_with_a_json_body() {
    let app = spawn_app().await;

    let response = app.get("/api/events/nope").await;

    assert_eq!(response.status(), 404);
    assert_eq!(json_body(response).await["error"], "not_found");
}

#[tokio::test]
async fn a_wrong_method_is_405_with_a_json_body() {
    let app = spawn_app().await;

    let delete = app.http.delete(app.url("/api/event")).send().await.unwrap();
    let post_health = app.http.post(app.url("/health")).send().await.unwrap();

    assert_eq!(delete.status(), 405);
    assert_eq!(json_body(delete).await["error"], "method_not_allowed");
    assert_eq!(post_health.status(), 405);
}

#[tokio::test]
async fn metrics_use_the_original_names_with_bounded_labels() {
    let app = spawn_app().await;
    app.post_events(&json!([
        event("billing", json!(1)),
        event("billing", json!(2))
    ]))
    .await;
    app.get_events("?page_size=1").await;
    app.get("/no/such/path/12345").await;
    app.get("/ready").await;

    let metrics = app.metrics_text().await;

    for expected in [
        r#"http_requests_total{method="POST",path_template="/api/event",scheme="http"}"#,
        r#"http_responses_total{method="POST",path_template="/api/event",scheme="http",status_code="201"}"#,
        r#"http_responses_total{method="GET",path_template="/api/event",scheme="http",status_code="200"}"#,
        // The original's histogram labels (status_code too) and its client's buckets.
        r#"http_request_duration_seconds_bucket{method="GET",path_template="/api/event",scheme="http",status_code="200",le="0.005"}"#,
        r#"http_request_duration_seconds_bucket{method="GET",path_template="/api/event",scheme="http",status_code="200",le="0.075"}"#,
        r#"http_request_duration_seconds_bucket{method="GET",path_template="/api/event",scheme="http",status_code="200",le="7.5"}"#,
        r#"http_requests_in_progress{method="GET",path_template="/metrics",scheme="http"} 1"#,
        r#"http_responses_total{method="GET",path_template="__not_matched__",scheme="http",status_code="404"}"#,
        "process_resident_memory_bytes ",
        "process_virtual_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
        r#"events_inserted_total{application="billing"} 2"#,
        r#"db_pool_connections{state="idle"}"#,
        r#"db_pool_waiting_requests "#,
        r#"db_statement_duration_seconds_count{statement="insert_events"}"#,
        r#"audit_collector_build_info{version=""#,
        "database_ready 1",
        "# TYPE http_request_duration_seconds histogram",
        "# HELP http_requests_total",
    ] {
        assert!(metrics.contains(expected), "missing {expected}\n{metrics}");
    }
    assert!(!metrics.contains("12345"), "a raw path leaked into a label");
}

#[tokio::test]
async fn server_errors_are_counted_as_exceptions() {
    let app = spawn_app_with(|settings| settings.failure.chance = 1.0).await;
    app.post_raw("[]").await;

    let metrics = app.metrics_text().await;

    assert!(
        metrics.contains(
            r#"http_exceptions_total{method="POST",path_template="/api/event",scheme="http",exception_type="injected_failure"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn application_labels_beyond_the_limit_are_counted_as_other() {
    let app = spawn_app_with(|settings| settings.metrics.max_application_labels = 2).await;
    let batch: Vec<_> = ["a", "b", "c", "d", "a"]
        .iter()
        .map(|application| event(application, json!(1)))
        .collect();
    app.post_events(&json!(batch)).await;

    let metrics = app.metrics_text().await;

    let labels: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("events_inserted_total{"))
        .collect();
    assert_eq!(labels.len(), 3, "{labels:?}");
    assert!(
        metrics.contains(r#"events_inserted_total{application="__other__"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn promtool_accepts_the_metrics_exposition() {
    let app = spawn_app_with(|settings| settings.failure.chance = 0.5).await;
    for _ in 0..10 {
        app.post_events(&json!([event("a", json!(1))])).await;
        app.get_events("").await;
    }
    let metrics = app.metrics_text().await;

    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed; .ci/run installs it");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), metrics.as_bytes()).unwrap();
    let output = promtool.wait_with_output().unwrap();

    assert!(
        output.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;

    let generated = app.get("/health").await;
    let not_found = app.get("/nowhere").await;

    let id = generated.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 32);
    assert!(not_found.headers().contains_key("x-request-id"));
    assert_ne!(not_found.headers()["x-request-id"].to_str().unwrap(), id);
}

#[tokio::test]
async fn counters_with_known_labels_are_exported_at_zero_before_anything_happens() {
    let app = spawn_app().await;

    let metrics = app.metrics_text().await;

    for series in [
        r#"config_reloads_total{result="success"} 0"#,
        r#"config_reloads_total{result="failure"} 0"#,
        r#"injected_failures_total{path_template="/api/event"} 0"#,
        r#"http_exceptions_total{method="POST",path_template="/api/event",scheme="http",exception_type="database_unavailable"} 0"#,
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing from:\n{metrics}"
        );
    }
}
