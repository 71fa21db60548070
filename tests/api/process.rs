//! The real binary: SIGHUP reloads, SIGTERM and SIGINT stop it cleanly.

use std::collections::HashSet;
use std::time::Duration;

use audit_tests::server_process::ServerProcess;
use audit_tests::test_app::{test_settings, write_config};
use audit_tests::test_database::TestDatabase;
use serde_json::json;

async fn server_with_config(database: &TestDatabase) -> (ServerProcess, tempfile::NamedTempFile) {
    let mut config = tempfile::NamedTempFile::new().unwrap();
    write_config(&mut config, &test_settings(database));
    let server = ServerProcess::start(config.path()).await;
    (server, config)
}

#[tokio::test]
async fn sighup_reloads_the_config_file() {
    let database = TestDatabase::create_migrated().await;
    let (server, mut config) = server_with_config(&database).await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/event", server.address);
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);

    let mut settings = test_settings(&database);
    settings.failure.chance = 1.0;
    write_config(&mut config, &settings);
    server.signal("HUP");

    let mut status = 0;
    for _ in 0..100 {
        status = client.get(&url).send().await.unwrap().status().as_u16();
        if status == 500 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 500, "the reload did not take effect");
}

#[tokio::test]
async fn sigint_stops_the_server_with_exit_code_0() {
    let database = TestDatabase::create_migrated().await;
    let (mut server, _config) = server_with_config(&database).await;

    server.signal("INT");

    let status = server.wait_for_exit(Duration::from_secs(40)).await;
    assert_eq!(status.code(), Some(0));
}

/// Posts one-event batches with unique ids until the server stops answering; returns
/// the ids acknowledged with 201.
async fn post_until_stopped(url: String, client_number: u64) -> Vec<u64> {
    let client = reqwest::Client::new();
    let mut acknowledged = Vec::new();
    for n in 0..100_000u64 {
        let id = client_number * 1_000_000 + n;
        let body = json!([{
            "event_ts": "2023-12-05T12:55:52Z",
            "application_name": "a",
            "event_kind": "k",
            "payload": {"id": id},
        }]);
        match client.post(&url).json(&body).send().await {
            Ok(response) if response.status() == 201 => acknowledged.push(id),
            Ok(response) => assert!(
                response.status().is_server_error(),
                "unexpected {}",
                response.status()
            ),
            Err(_) => break,
        }
    }
    acknowledged
}

async fn stored_ids(database: &TestDatabase) -> Vec<u64> {
    database
        .client()
        .await
        .query("SELECT (payload->>'id')::bigint FROM events", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<_, i64>(0) as u64)
        .collect()
}

/// Runs four posting clients, sends `signal` after half a second, and returns the
/// acknowledged ids once every client has stopped.
async fn acknowledged_until_signal(server: &mut ServerProcess, signal: &str) -> HashSet<u64> {
    let url = format!("{}/api/event", server.address);
    let clients: Vec<_> = (0..4u64)
        .map(|client_number| tokio::spawn(post_until_stopped(url.clone(), client_number)))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.signal(signal);
    let mut acknowledged = HashSet::new();
    for client in clients {
        acknowledged.extend(client.await.unwrap());
    }
    assert!(
        !acknowledged.is_empty(),
        "no request succeeded before the {signal}"
    );
    acknowledged
}

#[tokio::test]
async fn sigterm_under_load_loses_no_acknowledged_event_and_exits_0() {
    let database = TestDatabase::create_migrated().await;
    let (mut server, _config) = server_with_config(&database).await;

    let acknowledged = acknowledged_until_signal(&mut server, "TERM").await;
    let status = server.wait_for_exit(Duration::from_secs(40)).await;

    assert_eq!(status.code(), Some(0));
    assert_every_acknowledged_event_stored_once(&database, &acknowledged, "TERM").await;
}

#[tokio::test]
async fn sigkill_under_load_loses_no_acknowledged_event() {
    let database = TestDatabase::create_migrated().await;
    let (mut server, config) = server_with_config(&database).await;

    let acknowledged = acknowledged_until_signal(&mut server, "KILL").await;
    server.wait_for_exit(Duration::from_secs(10)).await;
    let restarted = ServerProcess::start(config.path()).await;

    assert_every_acknowledged_event_stored_once(&database, &acknowledged, "KILL").await;
    assert_eq!(post_empty_batch(&restarted.address).await, 201);
}

/// Every acknowledged id is stored, and no id twice; prints the counts.
async fn assert_every_acknowledged_event_stored_once(
    database: &TestDatabase,
    acknowledged: &HashSet<u64>,
    signal: &str,
) {
    let stored: Vec<u64> = stored_ids(database).await;
    let unique: HashSet<u64> = stored.iter().copied().collect();
    assert_eq!(unique.len(), stored.len(), "an event was stored twice");
    let lost: Vec<_> = acknowledged.difference(&unique).collect();
    eprintln!(
        "SIG{signal}: {} acknowledged, {} found, {} lost, {} duplicated",
        acknowledged.len(),
        unique.len(),
        lost.len(),
        stored.len() - unique.len()
    );
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
}

async fn post_empty_batch(address: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{address}/api/event"))
        .body("[]")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn json_logs_have_one_line_per_request_with_its_id() {
    let database = TestDatabase::create_migrated().await;
    let mut config = tempfile::NamedTempFile::new().unwrap();
    write_config(&mut config, &test_settings(&database));
    let server = ServerProcess::start_with_environment(
        config.path(),
        &[
            ("APP_LOG__FORMAT", "json"),
            ("APP_LOG__LEVEL", "info"),
            ("APP_LOG__REQUESTS", "all"),
        ],
    )
    .await;

    let response = reqwest::Client::new()
        .get(format!("{}/api/event?page_size=1", server.address))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let log = server.log_text();
    let line = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["route"] == "/api/event")
        .unwrap_or_else(|| panic!("no JSON request line in {log}"));
    assert_eq!(line["method"], "GET");
    assert_eq!(line["status"], 200);
    assert!(line["duration_ms"].is_f64(), "{line}");
    // Rounded to microseconds: no float noise like 0.45691200000000004.
    let duration = line["duration_ms"].to_string();
    let decimals = duration.split('.').nth(1).map_or(0, str::len);
    assert!(decimals <= 3, "{duration}");
    assert_eq!(line["span"]["request_id"], "trace-me-42", "{line}");
}

#[tokio::test]
async fn a_flood_of_bad_requests_writes_a_few_log_lines_and_no_error() {
    let database = TestDatabase::create_migrated().await;
    let mut config = tempfile::NamedTempFile::new().unwrap();
    write_config(&mut config, &test_settings(&database));
    let server = ServerProcess::start_with_environment(
        config.path(),
        &[("APP_LOG__FORMAT", "json"), ("APP_LOG__LEVEL", "info")],
    )
    .await;
    let client = reqwest::Client::new();

    for request in 0..600 {
        let response = match request % 3 {
            0 => client
                .post(format!("{}/api/event", server.address))
                .body("[{")
                .send(),
            1 => client
                .get(format!("{}/no/such/path", server.address))
                .send(),
            _ => client
                .get(format!("{}/api/event?page_size=x", server.address))
                .send(),
        };
        assert!(response.await.unwrap().status().is_client_error());
    }
    for _ in 0..50 {
        let mut stream =
            tokio::net::TcpStream::connect(server.address.trim_start_matches("http://"))
                .await
                .unwrap();
        let _ =
            tokio::io::AsyncWriteExt::write_all(&mut stream, b"GARBAGE / NOT-HTTP\r\n\r\n").await;
        let mut answer = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let log = server.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let request_lines = lines.iter().filter(|line| line["status"].is_u64()).count();
    assert!(
        request_lines >= 1,
        "no client error was logged at all: {log}"
    );
    assert!(
        request_lines <= 40,
        "{request_lines} request lines for 650 bad requests"
    );
    let errors: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|line| line["level"] == "ERROR")
        .collect();
    assert!(
        errors.is_empty(),
        "client mistakes logged as errors: {:?}",
        errors.first()
    );
}

#[tokio::test]
async fn text_logs_written_to_a_file_carry_no_colour_codes() {
    let database = TestDatabase::create_migrated().await;
    let mut config = tempfile::NamedTempFile::new().unwrap();
    write_config(&mut config, &test_settings(&database));

    let server =
        ServerProcess::start_with_environment(config.path(), &[("APP_LOG__LEVEL", "info")]).await;

    let log = server.log_text();
    assert!(log.contains("listening"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape codes in a log file: {log:?}"
    );
}

#[tokio::test]
async fn the_originals_config_yml_and_dotenv_in_the_working_directory_are_read() {
    let database = TestDatabase::create_migrated().await;
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(
        directory.path().join("config.yml"),
        format!(
            "postgres:\n  dsn: {}\nfailure:\n  chance: 1.0\n",
            database.settings.dsn
        ),
    )
    .unwrap();
    let port = audit_tests::server_process::free_port();
    std::fs::write(
        directory.path().join(".env"),
        format!("APP_PORT={port}\nAPP_HOST=127.0.0.1\nAPP_FAILURE__CHANCE=1.0\n"),
    )
    .unwrap();
    // The process's own environment wins over .env (and .env over the file).
    let mut child = std::process::Command::new(audit_tests::server_process::workspace_binary(
        "audit-server",
    ))
    .env_clear()
    .env("APP_FAILURE__CHANCE", "0")
    .env("APP_LOG__LEVEL", "warn")
    .current_dir(directory.path())
    .stdout(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let client = reqwest::Client::new();
    let ready = format!("http://127.0.0.1:{port}/ready");
    let mut status = None;
    for _ in 0..100 {
        if let Ok(response) = client.get(&ready).send().await {
            status = Some(response.status().as_u16());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let page = client
        .get(format!("http://127.0.0.1:{port}/api/event"))
        .send()
        .await
        .map(|response| response.status().as_u16());
    let _ = child.kill();
    let _ = child.wait();

    assert_eq!(
        status,
        Some(200),
        "not listening on .env's APP_PORT, or not on config.yml's database"
    );
    assert_eq!(
        page.ok(),
        Some(200),
        "the environment's failure.chance should win"
    );
}

#[tokio::test]
async fn with_access_control_off_the_start_warns_what_is_open_and_with_tokens_it_does_not() {
    let database = TestDatabase::create_migrated().await;
    let mut config = tempfile::NamedTempFile::new().unwrap();
    let mut settings = test_settings(&database);
    write_config(&mut config, &settings);

    let open = ServerProcess::start(config.path()).await;
    settings.auth.mode = audit_server::settings::AuthMode::Tokens;
    write_config(&mut config, &settings);
    let closed = ServerProcess::start(config.path()).await;

    let log = open.log_text();
    assert!(log.contains(r#"auth.mode is "off""#), "{log}");
    assert!(log.contains("may write events as any application"), "{log}");
    assert!(
        !closed
            .log_text()
            .contains("may write events as any application")
    );
}
