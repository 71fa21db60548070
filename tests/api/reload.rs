//! `POST /reload`: each reloadable key takes effect; a bad config changes nothing.

use std::time::Duration;

use audit_tests::sealing::SealingKey;
use audit_tests::test_app::{event, json_body, spawn_app, spawn_app_with, write_config_text};
use audit_tests::test_database::TestDatabase;
use serde_json::json;

#[tokio::test]
async fn reloading_failure_chance_takes_effect_at_once() {
    let mut app = spawn_app().await;
    assert_eq!(app.get_events("").await.status(), 200);

    let response = app
        .reload_with(|settings| settings.failure.chance = 1.0)
        .await;

    assert_eq!(response.status(), 200);
    let summary = json_body(response).await;
    assert_eq!(
        summary["changed"]["failure.chance"],
        json!({"old": 0.0, "new": 1.0})
    );
    assert_eq!(app.get_events("").await.status(), 500);
}

#[tokio::test]
async fn reloading_the_batch_and_body_limits_takes_effect() {
    let mut app = spawn_app().await;
    let six: Vec<_> = (0..6).map(|n| event("a", json!(n))).collect();
    assert_eq!(app.post_events(&json!(six)).await.status(), 201);

    app.reload_with(|settings| settings.api.max_batch_events = 5)
        .await;
    assert_eq!(app.post_events(&json!(six)).await.status(), 413);

    app.reload_with(|settings| {
        settings.api.max_batch_events = 100;
        settings.api.max_body_bytes = 100;
    })
    .await;
    let response = app.post_events(&json!(six)).await;
    assert_eq!(response.status(), 413);
    assert_eq!(json_body(response).await["error"], "body_too_large");
}

#[tokio::test]
async fn a_body_limit_above_the_body_memory_in_force_is_refused_and_the_old_limit_kept() {
    let mut app = spawn_app().await;
    let budget = app.settings.http.max_inflight_body_bytes;

    let response = app
        .reload_with(|settings| {
            settings.api.max_body_bytes = 2 * budget;
            settings.http.max_inflight_body_bytes = 2 * budget;
        })
        .await;

    assert_eq!(response.status(), 422);
    let body = json_body(response).await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("max_inflight_body_bytes"),
        "{body}"
    );
    let runtime = app.state.runtime();
    assert_eq!(runtime.settings.api.max_body_bytes, 16 * 1024 * 1024);
}

#[tokio::test]
async fn reloading_page_sizes_takes_effect() {
    let mut app = spawn_app().await;
    let batch: Vec<_> = (0..8).map(|n| event("a", json!(n))).collect();
    app.post_events(&json!(batch)).await;

    app.reload_with(|settings| {
        settings.api.default_page_size = 3;
        settings.api.max_page_size = 5;
    })
    .await;

    let page = json_body(app.get_events("").await).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 3);
    assert_eq!(app.get_events("?page_size=5").await.status(), 200);
    assert_eq!(app.get_events("?page_size=6").await.status(), 422);
}

#[tokio::test]
async fn reloading_the_log_level_is_reported_and_a_bad_level_refused() {
    let mut app = spawn_app().await;

    let good = app
        .reload_with(|settings| settings.log.level = "debug".to_owned())
        .await;
    let bad = app
        .reload_with(|settings| settings.log.level = "audit_server=shouting".to_owned())
        .await;

    assert_eq!(good.status(), 200);
    assert_eq!(
        json_body(good).await["changed"]["log.level"],
        json!({"old": "info", "new": "debug"})
    );
    assert_eq!(bad.status(), 422);
    assert_eq!(json_body(bad).await["error"], "invalid_config");
}

#[tokio::test]
async fn reloading_the_dsn_moves_writes_to_the_new_database() {
    let mut app = spawn_app().await;
    let second = TestDatabase::create_migrated().await;
    app.post_events(&json!([event("first", json!(1))])).await;

    let response = app
        .reload_with(|settings| settings.postgres.dsn = second.settings.dsn.clone())
        .await;
    assert_eq!(response.status(), 200);
    assert!(json_body(response).await["changed"]["postgres.dsn"].is_object());
    app.post_events(&json!([event("second", json!(2))])).await;

    let events = "SELECT application_name || ' ' || event_kind FROM events ORDER BY id";
    assert_eq!(
        app.database.column::<String>(events).await,
        ["first UserLogin"]
    );
    // The reload itself is recorded in the log in force after it.
    assert_eq!(
        second.column::<String>(events).await,
        ["audit-collector ConfigReloaded", "second UserLogin"]
    );
}

/// The background work that keeps a connection of its own follows the requests to
/// the new database: the sealer seals its events there, the poster posts them to its
/// search postings, and the partition maintenance looks after its partitions.
#[tokio::test]
async fn reloading_the_dsn_moves_sealing_postings_and_partitions_to_the_new_database() {
    let key = SealingKey::new("reload.test");
    let mut app = spawn_app_with(|settings| {
        key.apply(settings);
        settings.partitions.maintenance_interval_ms = 100;
    })
    .await;
    let second = TestDatabase::create_migrated().await;
    app.post_events(&json!([event("first", json!(1))])).await;
    app.wait_for_checkpoint(&key, 1).await;

    let response = app
        .reload_with(|settings| settings.postgres.dsn = second.settings.dsn.clone())
        .await;
    assert_eq!(response.status(), 200);
    app.post_events(&json!([event("second", json!(2))])).await;

    // ConfigReloaded and the event, sealed in the new database's tree: the checkpoint
    // served is the new database's.
    let events = u64::try_from(second.count_events().await).unwrap();
    assert!(events >= 2);
    app.wait_for_checkpoint(&key, events).await;
    assert!(
        second
            .holds_within(
                Duration::from_secs(30),
                "SELECT (SELECT id_floor FROM search_postings_state) \
                     >= (SELECT max(id) FROM events)"
            )
            .await,
        "the new database's events were not posted to its search postings"
    );
    assert!(
        second
            .holds_within(
                Duration::from_secs(30),
                "SELECT count(*) > 0 FROM event_partitions WHERE opened_at IS NOT NULL"
            )
            .await,
        "the new database's partitions were not looked after"
    );
}

/// A reload to another database closes the server's connections to the old one at
/// once, not when a background task's next turn comes: two such reloads in a row
/// must not hold three sets of pools open (PostgreSQL refuses connections past its
/// `max_connections`, and requests then get 503).
#[tokio::test]
async fn reloading_the_dsn_closes_the_connections_to_the_old_database() {
    let mut app = spawn_app().await;
    let second = TestDatabase::create_migrated().await;
    for _ in 0..8 {
        assert_eq!(app.get_events("").await.status(), 200);
    }
    let others = "SELECT count(*) FROM pg_stat_activity \
                  WHERE datname = current_database() AND pid <> pg_backend_pid()";
    assert!(app.database.column::<i64>(others).await[0] > 0);

    let response = app
        .reload_with(|settings| settings.postgres.dsn = second.settings.dsn.clone())
        .await;
    assert_eq!(response.status(), 200);

    let closed = format!("SELECT ({others}) = 0");
    assert!(
        app.database
            .holds_within(Duration::from_secs(10), &closed)
            .await,
        "connections to the old database were still open 10 s after the reload"
    );
}

#[tokio::test]
async fn a_dsn_that_does_not_answer_is_refused_and_the_old_pool_kept() {
    let mut app = spawn_app().await;

    let response = app
        .reload_with(|settings| {
            settings.postgres.dsn = "postgres://postgres@127.0.0.1:1/audit".to_owned();
        })
        .await;

    assert_eq!(response.status(), 422);
    assert_eq!(json_body(response).await["error"], "database_unreachable");
    assert_eq!(app.post_one_event().await, 201);
}

#[tokio::test]
async fn invalid_toml_and_invalid_values_are_refused_and_the_old_config_stays() {
    let mut app = spawn_app().await;

    for text in [
        "port = [",
        "[failure]\nchance = 2.0\n",
        "[api]\nmax_page_size = \"many\"\n",
    ] {
        write_config_text(&mut app.config_file, text);
        let response = app.reload().await;
        assert_eq!(response.status(), 422, "{text}");
        let body = json_body(response).await;
        assert_eq!(body["error"], "invalid_config", "{text}");
        assert!(body["message"].as_str().unwrap().len() > 10, "{body}");
    }

    assert_eq!(app.get_events("?page_size=1000").await.status(), 200);
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(r#"config_reloads_total{result="failure"} 3"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn reloading_pool_settings_swaps_in_a_new_pool() {
    let mut app = spawn_app().await;
    assert!(app.metrics_text().await.contains("db_pool_max_size 8"));

    let response = app
        .reload_with(|settings| {
            settings.postgres.pool_size = 3;
            settings.postgres.acquire_timeout_ms = 500;
            settings.postgres.connect_timeout_ms = 700;
        })
        .await;

    assert_eq!(response.status(), 200);
    let changed = json_body(response).await["changed"].clone();
    for key in [
        "postgres.pool_size",
        "postgres.acquire_timeout_ms",
        "postgres.connect_timeout_ms",
    ] {
        assert!(changed[key].is_object(), "{key} missing from {changed}");
    }
    assert_eq!(app.post_one_event().await, 201);
    assert!(app.metrics_text().await.contains("db_pool_max_size 3"));
}
