//! The partitioned events table: adopting an unpartitioned one, partitions kept ahead
//! of the writers, and retention dropping whole partitions (recorded, held by a legal
//! hold, and told apart from tampering by the verifier).

use std::future::Future;
use std::time::{Duration, Instant};

use audit_core::database;
use audit_core::migrations;
use audit_core::search_index::{self, SearchIndex};
use audit_server::settings::Settings;
use audit_tests::sealing::{SealingKey, run_verify};
use audit_tests::server_process::ServerProcess;
use audit_tests::test_app::{TestApp, event, json_body, spawn_app_on};
use audit_tests::test_database::TestDatabase;
use serde_json::{Value, json};

/// Small partitions, looked after every 50 ms, with the sequence moved past the first
/// partition the migration makes (a million ids, as if that many had been written), so
/// that the test's events land in partitions of `size`.
async fn spawn_partitioned(size: i64, customize: impl FnOnce(&mut Settings)) -> TestApp {
    let database = TestDatabase::create_migrated().await;
    (database.client().await)
        .batch_execute("SELECT setval('events_id_seq', 1000000)")
        .await
        .unwrap();
    let app = spawn_app_on(database, |settings| {
        settings.partitions.size = size;
        settings.partitions.ahead = 2;
        settings.partitions.maintenance_interval_ms = 50;
        customize(settings);
    })
    .await;
    wait_until("the server's first partitions", || async {
        scalar(&app, "SELECT max(end_id) FROM event_partitions").await > 1_000_001 + size
    })
    .await;
    app
}

/// Polls `check` until it holds, failing the test after 20 s.
async fn wait_until<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn scalar(app: &TestApp, query: &str) -> i64 {
    app.database.column::<i64>(query).await[0]
}

/// Posts `count` events in batches of `batch`, numbered from 0, each batch once the
/// maintenance has made room for it (these partitions are tiny: a busy writer would
/// outrun them).
async fn post_numbered(app: &TestApp, count: usize, batch: usize) {
    for start in (0..count).step_by(batch) {
        wait_until("room for the next batch", || async {
            scalar(
                app,
                "SELECT max(end_id) - (SELECT last_value + 1 FROM events_id_seq) \
                 FROM event_partitions",
            )
            .await
                >= 10
        })
        .await;
        let events: Vec<Value> = (start..(start + batch).min(count))
            .map(|n| event("billing", json!({ "n": n })))
            .collect();
        let response = app.post_events(&json!(events)).await;
        let status = response.status();
        assert_eq!(status, 201, "{}", response.text().await.unwrap());
    }
}

/// Every id `GET /api/event` serves, following `next_page`, in the order served.
async fn walk(app: &TestApp, extra: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut query = format!("?page_size=7{extra}");
    loop {
        let response = app.get_events(&query).await;
        assert_eq!(response.status(), 200);
        let page = json_body(response).await;
        let data = page["data"].as_array().unwrap();
        ids.extend(data.iter().map(|event| event["id"].as_i64().unwrap()));
        match page["next_page"].as_i64() {
            Some(token) => query = format!("?page_size=7{extra}&page_token={token}"),
            None => return ids,
        }
    }
}

async fn stored_ids(app: &TestApp, order: &str) -> Vec<i64> {
    app.database
        .column(&format!("SELECT id FROM events ORDER BY id {order}"))
        .await
}

/// Every event's id with its content, in id order.
async fn every_event(client: &tokio_postgres::Client) -> Vec<(i64, String)> {
    (client.query(
        "SELECT id, event_ts::text || application_name || payload::text FROM events ORDER BY id",
        &[],
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| (row.get(0), row.get(1)))
    .collect()
}

#[tokio::test]
async fn adopting_an_unpartitioned_table_keeps_every_event_and_its_index() {
    let database = TestDatabase::create_empty().await;
    let mut client = database.client().await;
    migrations::run_up_to(&mut client, 4).await.unwrap();
    client
        .batch_execute(
            "INSERT INTO events (event_ts, application_name, event_kind, payload) \
             SELECT now() - n * interval '1 minute', 'app_' || n % 3, 'Kind', \
                    json_build_object('n', n) FROM generate_series(1, 500) AS n; \
             CREATE INDEX events_application_name_id ON events (application_name, id)",
        )
        .await
        .unwrap();
    let before = every_event(&client).await;

    database::migrate(&database.settings).await.unwrap();

    let after = every_event(&client).await;
    assert_eq!(after, before);
    let kind: i8 = client
        .query_one(
            "SELECT relkind FROM pg_class WHERE oid = 'events'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kind as u8, b'p', "events is not partitioned");
    let indexes = search_index::existing(&client).await.unwrap();
    assert!(indexes.contains(SearchIndex::Application));

    let app = spawn_app_on(database, |_| {}).await;
    let walked = walk(&app, "").await;
    assert_eq!(walked, stored_ids(&app, "DESC").await);
    assert_eq!(walked.len(), 500);
    let scoped = walk(&app, "&application_name=app_1").await;
    assert_eq!(scoped.len(), 167);
    post_numbered(&app, 1, 1).await;
    let (id, partition): (i64, String) = client
        .query_one(
            "SELECT id, tableoid::regclass::text FROM events ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .map(|row| (row.get(0), row.get(1)))
        .unwrap();
    assert_eq!(id, 501, "ids go on from the adopted table's");
    assert_eq!(partition, "events_from_501");
}

#[tokio::test]
async fn partitions_are_kept_ahead_of_writers_and_pages_cross_them() {
    let app = spawn_partitioned(10, |_| {}).await;

    post_numbered(&app, 45, 5).await;

    // Room for two partitions past the next id at all times.
    wait_until("partitions ahead of the sequence", || async {
        scalar(&app, "SELECT max(end_id) FROM event_partitions").await >= 1_000_046 + 20
    })
    .await;
    let attached = scalar(
        &app,
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass",
    )
    .await;
    assert!(attached >= 8, "{attached} partitions");
    // Each of the four filled partitions holds its ten ids, and is closed once no
    // transaction can still write into it.
    let counts: Vec<i64> = app
        .database
        .column(
            "SELECT count(*) FROM events WHERE id > 1000000 \
             GROUP BY tableoid ORDER BY min(id)",
        )
        .await;
    assert_eq!(counts, [10, 10, 10, 10, 5]);
    wait_until("the filled partitions closed", || async {
        scalar(
            &app,
            "SELECT count(*) FROM event_partitions \
             WHERE first_id > 1000000 AND end_id <= 1000041 AND closed_at IS NOT NULL",
        )
        .await
            == 4
    })
    .await;
    assert_eq!(
        scalar(
            &app,
            "SELECT count(*) FROM event_partitions WHERE closed_at IS NOT NULL AND end_id > 1000041"
        )
        .await,
        0,
        "a partition still being filled was closed"
    );

    assert_eq!(walk(&app, "").await, stored_ids(&app, "DESC").await);
    assert_eq!(
        walk(&app, "&order=asc").await,
        stored_ids(&app, "ASC").await
    );
}

/// Ages the closed partitions whose ids end at or below `end` past 30 days.
async fn age_closed_partitions(app: &TestApp, end: i64) {
    wait_until("the partitions to age closed", || async {
        scalar(
            app,
            &format!(
                "SELECT count(*) FROM event_partitions WHERE first_id > 1000000 \
                 AND end_id <= {end} AND closed_at IS NULL"
            ),
        )
        .await
            == 0
    })
    .await;
    (app.database.client().await)
        .execute(
            "UPDATE event_partitions SET closed_at = closed_at - interval '31 days' \
             WHERE first_id > 1000000 AND end_id <= $1",
            &[&end],
        )
        .await
        .unwrap();
}

/// Waits until retention has dropped `count` partitions in all.
async fn wait_for_drops(app: &TestApp, count: i64) {
    wait_until("the expired partitions dropped", || async {
        scalar(
            app,
            "SELECT count(*) FROM event_partitions WHERE dropped_at IS NOT NULL",
        )
        .await
            == count
    })
    .await;
}

#[tokio::test]
async fn retention_drops_expired_partitions_whole_unless_held_and_records_each_drop() {
    let mut app = spawn_partitioned(10, |settings| {
        settings.retention.max_age_days = Some(30);
        settings.retention.hold = true;
    })
    .await;
    post_numbered(&app, 35, 5).await;
    age_closed_partitions(&app, 1_000_021).await;

    // Held: many rounds pass, nothing leaves, and the metrics say what is overdue.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.database.count_events().await, 35);
    wait_until("the overdue partitions in the metrics", || async {
        let metrics = app.metrics_text().await;
        metrics.contains("retention_overdue_partitions 2") && metrics.contains("retention_hold 1")
    })
    .await;

    // Search postings beside the poster's (key 7, no application's): of a dropped
    // partition's ids only, and of ids on both sides of the last drop.
    crate::postings::wait_for_postings(&app.database).await;
    let client = app.database.client().await;
    client
        .batch_execute(
            "INSERT INTO search_postings (field, key, first_id, last_id, ids) VALUES \
             (1, 7, 1000001, 1000009, '\\x0008'), (1, 7, 1000015, 1000025, '\\x000a')",
        )
        .await
        .unwrap();

    // The hold lifted by a reload: the two expired partitions go, nothing else.
    let response = app
        .reload_with(|settings| settings.retention.hold = false)
        .await;
    assert_eq!(response.status(), 200);
    wait_for_drops(&app, 2).await;
    let dropped: Vec<String> = app
        .database
        .column("SELECT name FROM event_partitions WHERE dropped_at IS NOT NULL ORDER BY name")
        .await;
    assert_eq!(dropped, ["events_from_1000001", "events_from_1000011"]);
    let postings: Vec<i64> = app
        .database
        .column("SELECT first_id FROM search_postings WHERE key = 7")
        .await;
    assert_eq!(
        postings,
        [1_000_015],
        "the dropped ids' postings go, no others"
    );
    let (dropped_only, kept): (i64, i64) = {
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE last_id < 1000021), \
                        count(*) FILTER (WHERE last_id >= 1000021) \
                 FROM search_postings WHERE key <> 7",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(dropped_only, 0, "the poster's rows of dropped ids only go");
    assert!(kept > 0, "the poster's rows of kept ids stay");
    for name in &dropped {
        let gone: Vec<bool> = app
            .database
            .column(&format!("SELECT to_regclass('{name}') IS NULL"))
            .await;
        assert_eq!(gone, [true], "{name} still exists");
    }
    // Each drop is an event of the log, with its range and count.
    let page = json_body(
        app.get_events("?application_name=audit-collector&event_kind=PartitionDropped&order=asc")
            .await,
    )
    .await;
    let recorded: Vec<(i64, i64, i64)> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            let payload = &event["payload"];
            (
                payload["first_id"].as_i64().unwrap(),
                payload["end_id"].as_i64().unwrap(),
                payload["events"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        recorded,
        [(1_000_001, 1_000_011, 10), (1_000_011, 1_000_021, 10)]
    );
    // What is left is every event of the partitions kept, and the two records.
    let left = walk(&app, "&application_name=billing").await;
    assert_eq!(left.len(), 15);
    assert!(left.iter().all(|id| *id >= 1_000_021));
    wait_until("no partition overdue", || async {
        app.metrics_text()
            .await
            .contains("retention_overdue_partitions 0")
    })
    .await;
}

#[tokio::test]
async fn the_verifier_tells_events_retention_dropped_from_events_deleted() {
    let key = SealingKey::new("audit.test/retention");
    let app = spawn_partitioned(10, |settings| {
        key.apply(settings);
        settings.retention.max_age_days = Some(30);
    })
    .await;
    post_numbered(&app, 30, 10).await;
    app.wait_for_checkpoint(&key, 30).await;

    age_closed_partitions(&app, 1_000_011).await;
    wait_until("the first partition dropped", || async {
        app.database.count_events().await == 20 + 1
    })
    .await;
    app.wait_for_checkpoint(&key, 31).await;
    let verdict = run_verify(app.config_file.path(), &key.verifier, None);
    assert!(verdict.holds, "{}", verdict.output);
    assert!(
        verdict.output.contains("(10 pruned by retention)"),
        "{}",
        verdict.output
    );

    // A sealed event deleted by hand, then its partition dropped: the drop's count
    // gives the deletion away.
    (app.database.client().await)
        .batch_execute("DELETE FROM events WHERE id = 1000015")
        .await
        .unwrap();
    age_closed_partitions(&app, 1_000_021).await;
    wait_for_drops(&app, 2).await;
    app.wait_for_checkpoint(&key, 32).await;
    let verdict = run_verify(app.config_file.path(), &key.verifier, None);
    assert!(!verdict.holds, "{}", verdict.output);
    assert!(
        verdict.output.contains(
            "DELETED before a retention drop: 10 sealed events with ids in [1000011, 1000021) \
             are gone, the drop recorded 9"
        ),
        "{}",
        verdict.output
    );
}

/// Two server processes on one database share the partitions' upkeep, one round at a
/// time; when one is killed, the other keeps partitions ahead of the writers, each
/// batch finding room within 5 s.
#[tokio::test]
async fn when_a_server_dies_another_keeps_the_partitions() {
    let database = TestDatabase::create_migrated().await;
    let client = database.client().await;
    client
        .batch_execute("SELECT setval('events_id_seq', 1000000)")
        .await
        .unwrap();
    let config = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    let text = format!(
        "[postgres]\ndsn = \"{}\"\n[failure]\nchance = 0.0\n\
         [partitions]\nsize = 10\nahead = 2\nmaintenance_interval_ms = 100\n",
        database.settings.dsn
    );
    std::fs::write(config.path(), text).unwrap();
    let mut servers = Vec::new();
    for _ in 0..2 {
        servers.push(ServerProcess::start(config.path()).await);
    }
    let room = "SELECT max(end_id) - (SELECT last_value + 1 FROM events_id_seq) \
                FROM event_partitions";
    let room_left = async || -> i64 { client.query_one(room, &[]).await.unwrap().get(0) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while room_left().await < 20 {
        assert!(Instant::now() < deadline, "no room made by either server");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    servers[0].signal("KILL");
    servers[0].wait_for_exit(Duration::from_secs(5)).await;
    let http = reqwest::Client::new();
    for batch in 0..8 {
        let waited = Instant::now();
        while room_left().await < 10 {
            assert!(
                waited.elapsed() < Duration::from_secs(5),
                "batch {batch}: no room within 5 s of the other server's death"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let events: Vec<Value> = (0..10)
            .map(|n| event("billing", json!({ "batch": batch, "n": n })))
            .collect();
        let response = http
            .post(format!("{}/api/event", servers[1].address))
            .json(&events)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }

    // Every partition made once, in contiguous ranges, and every event in one.
    let gaps: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT end_id, lead(first_id) OVER (ORDER BY first_id) \
             AS next FROM event_partitions) AS ranges WHERE next IS NOT NULL AND next <> end_id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(gaps, 0);
    assert_eq!(database.count_events().await, 80);
}
