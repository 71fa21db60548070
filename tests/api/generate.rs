//! `audit-generate` against a real server and a real database.

use std::collections::HashSet;
use std::process::{Command, Output};

use audit_tests::sealing::SealingKey;
use audit_tests::server_process::workspace_binary;
use audit_tests::test_app::{json_body, spawn_app_with};
use audit_tests::test_database::TestDatabase;

fn generate(arguments: &[&str]) -> Output {
    generate_with(arguments, &[])
}

/// Runs the generator with only the given environment variables.
fn generate_with(arguments: &[&str], environment: &[(&str, &str)]) -> Output {
    Command::new(workspace_binary("audit-generate"))
        .args(arguments)
        .env_clear()
        .envs(environment.iter().copied())
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The number after `label` in the summary, e.g. `500: 37`.
fn figure(summary: &str, label: &str) -> u64 {
    let start = summary
        .find(label)
        .unwrap_or_else(|| panic!("{label} missing from {summary}"))
        + label.len();
    summary[start..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn traffic_counts_every_status_including_injected_failures() {
    let app = spawn_app_with(|settings| settings.failure.chance = 0.3).await;
    let url = app.address.clone();

    let output = tokio::task::spawn_blocking(move || {
        generate(&[
            "traffic",
            "--url",
            &url,
            "--iterations",
            "300",
            "--delay",
            "0",
            "--concurrency",
            "4",
            "--get-ratio",
            "0.2",
            "--seed",
            "7",
        ])
    })
    .await
    .unwrap();

    let summary = text(&output);
    assert!(output.status.success(), "{summary}");
    let created = figure(&summary, "201:");
    let ok = figure(&summary, "200:");
    let injected = figure(&summary, "500:");
    assert_eq!(created + ok + injected, 300, "{summary}");
    assert!(injected > 30, "{summary}");
    assert_eq!(figure(&summary, "transport errors):"), 0);
    let acknowledged = figure(&summary, "sent,");
    assert_eq!(acknowledged, created * 10, "{summary}");
    assert_eq!(app.database.count_events().await as u64, created * 10);
}

#[tokio::test]
async fn traffic_sends_filtered_gets_and_runs_tail_consumers() {
    let key = SealingKey::new("audit.test/log");
    let app = spawn_app_with(|settings| key.apply(settings)).await;
    let url = app.address.clone();

    let output = tokio::task::spawn_blocking(move || {
        generate(&[
            "traffic",
            "--url",
            &url,
            "--duration",
            "3s",
            "--rate",
            "40",
            "--concurrency",
            "2",
            "--get-ratio",
            "0.5",
            "--get-filter",
            "application_name=alpha&order=asc",
            "--apps",
            "alpha,beta",
            "--tail",
            "2",
            "--seed",
            "8",
        ])
    })
    .await
    .unwrap();

    let summary = text(&output);
    assert!(output.status.success(), "{summary}");
    assert!(figure(&summary, "200:") > 0, "{summary}");
    assert!(!summary.contains("422:"), "{summary}");
    // The tails follow application alpha only, each at most once per event.
    let alpha: Vec<i64> = app
        .database
        .column("SELECT count(*) FROM events WHERE application_name = 'alpha'")
        .await;
    let received = figure(&summary, "live tails:");
    assert!(received > 0, "{summary}");
    assert!(
        received <= 2 * u64::try_from(alpha[0]).unwrap(),
        "{summary}"
    );
}

#[tokio::test]
async fn traffic_exits_non_zero_when_the_server_cannot_be_reached() {
    let output = generate(&[
        "traffic",
        "--url",
        "http://127.0.0.1:1",
        "--iterations",
        "3",
    ]);

    assert!(!output.status.success());
    assert!(
        text(&output).contains("cannot reach the server"),
        "{}",
        text(&output)
    );
}

#[tokio::test]
async fn bulk_loads_exactly_count_events_which_then_page_through_the_api() {
    let app = spawn_app_with(|settings| settings.failure.chance = 0.0).await;
    let dsn = app.database.settings.dsn.clone();

    let output = tokio::task::spawn_blocking(move || {
        generate(&[
            "bulk",
            "--count",
            "2500",
            "--dsn",
            &dsn,
            "--seed",
            "3",
            "--rows-per-copy",
            "1000",
            "--from",
            "2024-01-01T00:00:00Z",
            "--to",
            "2024-02-01T00:00:00Z",
        ])
    })
    .await
    .unwrap();

    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("loaded 2500 rows"),
        "{}",
        text(&output)
    );
    assert_eq!(app.database.count_events().await, 2500);
    let mut seen = HashSet::new();
    let mut query = "?page_size=1000".to_owned();
    loop {
        let page = json_body(app.get_events(&query).await).await;
        for item in page["data"].as_array().unwrap() {
            let ts = item["event_ts"].as_str().unwrap();
            assert!(ts.starts_with("2024-01"), "{ts}");
            seen.insert(item.to_string());
        }
        match page["next_page"].as_i64() {
            Some(token) => query = format!("?page_size=1000&page_token={token}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 2500);
}

#[tokio::test]
async fn bulk_refuses_a_database_without_the_schema() {
    let database = TestDatabase::create_empty().await;

    let output = generate(&["bulk", "--count", "10", "--dsn", &database.settings.dsn]);

    assert!(!output.status.success());
    assert!(text(&output).contains("audit-migrate"), "{}", text(&output));
}

#[tokio::test]
async fn traffic_takes_the_originals_variables_and_its_endpoint_url() {
    let app = spawn_app_with(|_| {}).await;
    let endpoint = format!("{}/api/event", app.address);

    let output = tokio::task::spawn_blocking(move || {
        generate_with(
            &["traffic"],
            &[
                ("APP_URL", &endpoint),
                ("APP_BATCH_SIZE", "3"),
                ("APP_ITERATIONS", "4"),
                ("APP_DELAY_S", "0"),
            ],
        )
    })
    .await
    .unwrap();

    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(app.database.count_events().await, 12, "{}", text(&output));
}

#[tokio::test]
async fn a_traffic_flag_wins_over_the_originals_variable() {
    let app = spawn_app_with(|_| {}).await;
    let url = app.address.clone();

    let output = tokio::task::spawn_blocking(move || {
        generate_with(
            &["traffic", "--url", &url, "--batch-size", "2"],
            &[
                ("APP_URL", "http://127.0.0.1:1/api/event"),
                ("APP_BATCH_SIZE", "5"),
                ("APP_ITERATIONS", "3"),
                ("APP_DELAY_S", "0"),
            ],
        )
    })
    .await
    .unwrap();

    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(app.database.count_events().await, 6, "{}", text(&output));
}
