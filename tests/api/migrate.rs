//! `audit-migrate`: creates the database, applies the migrations once.

use std::process::Command;

use audit_tests::server_process::workspace_binary;
use audit_tests::test_database::TestDatabase;

/// Runs audit-migrate with `extra` arguments against the database; its success and output.
fn migrate_with(database: &TestDatabase, extra: &[&str]) -> (bool, String) {
    let output = Command::new(workspace_binary("audit-migrate"))
        .args(extra)
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

    let (first_ok, first) = migrate_with(&database, &[]);
    let (second_ok, second) = migrate_with(&database, &[]);

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

/// An empty database filled as the original service would have left it: ids with
/// gaps, jsonb payloads with a big number and unicode.
async fn original_database() -> TestDatabase {
    let database = TestDatabase::create_empty().await;
    database
        .client()
        .await
        .batch_execute(
            "CREATE TABLE audit_event (
                 event_id int8 GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                 event_ts timestamptz NOT NULL,
                 application_name text NOT NULL,
                 event_kind varchar(126) NOT NULL,
                 payload jsonb NOT NULL);
             CREATE TABLE migration_version (version int8);
             INSERT INTO migration_version VALUES (1);
             INSERT INTO audit_event
                 (event_id, event_ts, application_name, event_kind, payload)
             OVERRIDING SYSTEM VALUE
             SELECT id, '2023-12-05T12:55:52.805022Z'::timestamptz + id * interval '1 s',
                    'grease_monkey', 'UserLogin',
                    jsonb_build_object('n', id, 'big', 12345678901234567890123::numeric,
                                       'name', 'Ünïcødé ✓ ' || id)
             FROM unnest(ARRAY[5, 7, 10, 11, 20]) AS id;",
        )
        .await
        .unwrap();
    database
}

#[tokio::test]
async fn the_originals_database_is_taken_over_and_its_page_tokens_stay_valid() {
    let database = original_database().await;
    let expected_payloads: Vec<String> = database
        .column("SELECT payload::text FROM audit_event ORDER BY event_id DESC")
        .await;

    let (ok, output) = migrate_with(&database, &[]);

    assert!(ok, "{output}");
    assert!(output.contains("took over"), "{output}");
    let app = audit_tests::test_app::spawn_app_on(database, |_| {}).await;
    // The original's token for the page after [20, 11] is 11.
    let first = audit_tests::test_app::json_body(app.get_events("?page_size=2").await).await;
    assert_eq!(first["next_page"], 11);
    let second =
        audit_tests::test_app::json_body(app.get_events("?page_size=2&page_token=11").await).await;
    let ns: Vec<i64> = second["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["payload"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, [10, 7]);
    let page = app.get_events("?page_size=10").await.text().await.unwrap();
    for payload in &expected_payloads {
        assert!(
            page.contains(payload.as_str()),
            "{payload} not verbatim in {page}"
        );
    }
    assert_eq!(app.post_one_event().await, 201);
    let newest: i64 = app
        .database
        .client()
        .await
        .query_one("SELECT max(id) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        newest, 21,
        "the id sequence continues after the largest event_id"
    );
    let (again_ok, again) = migrate_with(&app.database, &[]);
    assert!(again_ok && again.contains("nothing to apply"), "{again}");
}

#[tokio::test]
async fn a_dry_run_says_what_it_would_do_and_changes_nothing() {
    let database = original_database().await;

    let (ok, output) = migrate_with(&database, &["--dry-run"]);

    assert!(ok, "{output}");
    assert!(output.contains("would take over"), "{output}");
    let still_original: bool = database
        .client()
        .await
        .query_one(
            "SELECT to_regclass('audit_event') IS NOT NULL AND to_regclass('events') IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(still_original);
}

#[tokio::test]
async fn both_schemas_or_an_unknown_original_version_are_refused_and_nothing_changes() {
    for setup in [
        "CREATE TABLE events (id int8)",
        "INSERT INTO migration_version VALUES (2)",
    ] {
        let database = original_database().await;
        database.client().await.batch_execute(setup).await.unwrap();

        let (ok, output) = migrate_with(&database, &[]);

        assert!(!ok, "{setup}: {output}");
        assert!(
            output.contains("Nothing was changed") || output.contains("nothing was changed"),
            "{output}"
        );
        let original_events: i64 = database
            .client()
            .await
            .query_one("SELECT count(*) FROM audit_event", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(original_events, 5, "{setup}");
    }
}

#[tokio::test]
async fn migrate_builds_the_search_indexes_the_settings_ask_for_once() {
    let database = TestDatabase::reserve();
    let migrate = |indexes: &str, payload: &str| {
        let output = Command::new(workspace_binary("audit-migrate"))
            .env_clear()
            .env("APP_POSTGRES__DSN", &database.settings.dsn)
            .env("APP_SEARCH__INDEXES", indexes)
            .env("APP_SEARCH__PAYLOAD_INDEX", payload)
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{text}");
        text
    };
    let valid_indexes = async || -> Vec<String> {
        database
            .column(
                "SELECT indexrelid::regclass::text FROM pg_index \
                 WHERE indrelid = 'events'::regclass AND indisvalid AND NOT indisprimary \
                 AND indexrelid::regclass::text LIKE 'events\\_%' ORDER BY 1",
            )
            .await
    };

    let first = migrate("kind,time", "true");
    let again = migrate("kind,time", "true");
    assert!(
        first.contains("built the search index events_event_ts_id"),
        "{first}"
    );
    assert!(!again.contains("built"), "{again}");
    let built = valid_indexes().await;
    for name in [
        "events_event_kind_id",
        "events_event_ts_id",
        "events_payload_jsonb",
    ] {
        assert!(built.contains(&name.to_owned()), "{name} in {built:?}");
    }
    assert!(!built.contains(&"events_application_name_id".to_owned()));

    let refused = Command::new(workspace_binary("audit-migrate"))
        .env_clear()
        .env("APP_POSTGRES__DSN", &database.settings.dsn)
        .env("APP_SEARCH__INDEXES", "kind,colour")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("colour"), "{stderr}");
}
