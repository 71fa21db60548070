//! Tokens managed with the real binary's `token` command, used against the real
//! server process, and no secret anywhere it could leak: logs, metrics, the database.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use audit_server::settings::AuthMode;
use audit_tests::server_process::{ServerProcess, workspace_binary};
use audit_tests::test_app::{event, test_settings, write_config};
use audit_tests::test_database::TestDatabase;
use serde_json::json;
use sha2::{Digest, Sha256};

const METRICS_TOKEN: &str = "metrics-secret-0123456789";

/// Runs `audit-server --config FILE <arguments>` and returns its standard output.
fn audit_server(config: &Path, arguments: &[&str]) -> String {
    let output = Command::new(workspace_binary("audit-server"))
        .arg("--config")
        .arg(config)
        .args(arguments)
        .env_clear()
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{arguments:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `token create`: the secret is alone on the last line.
fn create_token(config: &Path, arguments: &[&str]) -> String {
    let mut all = vec!["token", "create"];
    all.extend_from_slice(arguments);
    let stdout = audit_server(config, &all);
    let secret = stdout.lines().last().unwrap().to_owned();
    assert!(
        secret.starts_with("aec_") && !secret.contains(' '),
        "{stdout}"
    );
    secret
}

async fn status_of(request: reqwest::RequestBuilder) -> u16 {
    request.send().await.unwrap().status().as_u16()
}

/// Polls until `request` answers `wanted`, within a second.
async fn await_status(make: impl Fn() -> reqwest::RequestBuilder, wanted: u16) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while status_of(make()).await != wanted {
        assert!(Instant::now() < deadline, "not {wanted} within 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn tokens_from_the_command_line_work_and_no_secret_reaches_logs_metrics_or_the_database() {
    let database = TestDatabase::create_migrated().await;
    let mut settings = test_settings(&database);
    settings.auth.mode = AuthMode::Tokens;
    settings.auth.metrics_token = Some(METRICS_TOKEN.to_owned());
    let mut config = tempfile::NamedTempFile::new().unwrap();
    write_config(&mut config, &settings);
    let server = ServerProcess::start_with_environment(
        config.path(),
        &[("APP_LOG__LEVEL", "debug"), ("APP_LOG__REQUESTS", "all")],
    )
    .await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", server.address);

    let admin = create_token(config.path(), &["--name", "root", "--admin"]);
    let writer = create_token(
        config.path(),
        &[
            "--name",
            "ci",
            "--write",
            "a,b",
            "--read",
            "a",
            "--expires",
            "90d",
        ],
    );
    let listing = audit_server(config.path(), &["token", "list"]);
    assert!(
        listing.contains("ci\twrite=a,b\tread=a\tadmin=false"),
        "{listing}"
    );
    assert!(
        listing.contains("root\twrite=\tread=\tadmin=true"),
        "{listing}"
    );
    assert!(!listing.contains("aec_"), "{listing}");

    // The server learns tokens made elsewhere within its reread interval.
    let batch = json!([event("a", json!({"n": 1}))]);
    await_status(
        || {
            http.post(url("/api/event"))
                .bearer_auth(&writer)
                .json(&batch)
        },
        201,
    )
    .await;
    assert_eq!(
        status_of(http.get(url("/api/event")).bearer_auth(&writer)).await,
        200
    );
    assert_eq!(
        status_of(http.get(url("/api/event")).bearer_auth(&admin)).await,
        403
    );
    assert_eq!(
        status_of(
            http.get(url("/api/event"))
                .bearer_auth(format!("{writer}x"))
        )
        .await,
        401
    );
    assert_eq!(
        status_of(http.post(url("/reload")).bearer_auth(&admin)).await,
        200
    );
    let created = http
        .post(url("/admin/tokens"))
        .bearer_auth(&admin)
        .json(&json!({"name": "over-http", "read": ["*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let over_http = created.json::<serde_json::Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        status_of(http.get(url("/api/event")).bearer_auth(&over_http)).await,
        200
    );

    let revoked = audit_server(config.path(), &["token", "revoke", "ci"]);
    assert!(revoked.contains("revoked token ci"), "{revoked}");
    await_status(|| http.get(url("/api/event")).bearer_auth(&writer), 401).await;
    let listing = audit_server(config.path(), &["token", "list"]);
    let ci = listing
        .lines()
        .find(|line| line.starts_with("ci\t"))
        .unwrap();
    assert!(ci.contains("revoked "), "{ci}");

    let metrics = http
        .get(url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().await.unwrap();
    let dump = Command::new("pg_dump")
        .arg("--data-only")
        .arg(&database.settings.dsn)
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8(dump.stdout).unwrap();
    let log = server.log_text();
    assert!(log.contains("auth.mode"), "the log holds little: {log}");
    for secret in [&admin, &writer, &over_http, &METRICS_TOKEN.to_owned()] {
        // The part after the prefix: not even a fragment may appear.
        let random = &secret[secret.len() - 20..];
        assert!(!log.contains(random), "a secret in the log");
        assert!(!metrics.contains(random), "a secret in the metrics");
        assert!(!dump.contains(random), "a secret in the database");
    }
    // The database holds the hashes: the dump was the right place to look.
    let hash: String = (Sha256::digest(writer.as_bytes()).iter())
        .map(|byte| format!("{byte:02x}"))
        .collect();
    assert!(dump.contains(&hash), "the writer's hash is not in the dump");
}
