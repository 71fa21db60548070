//! `audit-migrate`: creates the database, applies the migrations once.

use std::process::Command;

use audit_tests::server_process::workspace_binary;
use audit_tests::test_database::TestDatabase;

fn run_migrate(database: &TestDatabase) -> (bool, String) {
    let output = Command::new(workspace_binary("audit-migrate"))
        .env_clear()
        .env("APP_POSTGRES__DSN", &database.settings.dsn)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test]
async fn migrate_creates_the_database_applies_migrations_and_is_idempotent() {
    let database = TestDatabase::reserve();

    let (first_ok, first) = run_migrate(&database);
    let (second_ok, second) = run_migrate(&database);

    assert!(first_ok, "{first}");
    assert!(first.contains("created database"), "{first}");
    assert!(first.contains("applied V1__create_events"), "{first}");
    assert!(second_ok, "{second}");
    assert!(second.contains("nothing to apply"), "{second}");
    assert_eq!(database.count_events().await, 0);
}

#[tokio::test]
async fn migrate_with_a_missing_config_file_fails_plainly() {
    let output = Command::new(workspace_binary("audit-migrate"))
        .args(["--config", "/nonexistent/audit.toml"])
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("does not exist"), "{stderr}");
}

#[tokio::test]
async fn migrate_reads_only_the_database_settings_of_a_shared_config_file() {
    let database = TestDatabase::reserve();
    let mut config = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(
        &mut config,
        format!(
            "[postgres]\ndsn = \"{}\"\n[failure]\nchance = \"not a number\"\n[api]\nmax_page_size = 0\n",
            database.settings.dsn
        )
        .as_bytes(),
    )
    .unwrap();

    let output = Command::new(workspace_binary("audit-migrate"))
        .arg("--config")
        .arg(config.path())
        .env_clear()
        .output()
        .unwrap();

    let text = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    assert_eq!(database.count_events().await, 0);
}
