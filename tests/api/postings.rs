//! Filtered pages through the search postings (`audit_core::postings`): the sealer
//! writes them as it seals, pages read the events below their floor through them and
//! walk the primary key above it, and every walk matches the SQL ground truth in both
//! directions while another client writes. A tree sealed before the postings existed
//! gets them from its stored leaf records.

use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_core::database;
use audit_core::postings::{ids_of, text_key};
use audit_core::tree::Sealer;
use audit_tests::test_app::{TestApp, spawn_app_with};
use audit_tests::test_database::TestDatabase;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::Value;

use crate::filters::{
    Filter, SCAN_ROWS, matching, random_event, walk, walk_every_filter_under_writers,
};

async fn sealing_app() -> Arc<TestApp> {
    Arc::new(
        spawn_app_with(|settings| {
            settings.search.max_scan_rows = SCAN_ROWS;
            settings.integrity.enabled = Some(true);
            settings.integrity.seal_interval_ms = 20;
        })
        .await,
    )
}

/// Waits until the postings hold every event written so far.
pub(crate) async fn wait_for_postings(database: &TestDatabase) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let covered: Vec<bool> = database
            .column(
                "SELECT coalesce((SELECT id_floor FROM search_postings_state \
                     WHERE leaves = (SELECT size FROM tree_head)) \
                     >= (SELECT max(id) FROM events), false)",
            )
            .await;
        if covered == [true] {
            return;
        }
        assert!(Instant::now() < deadline, "the postings did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post_random(app: &TestApp, rng: &mut StdRng, batches: usize) {
    for _ in 0..batches {
        let events: Vec<Value> = (0..100).map(|_| random_event(rng)).collect();
        assert_eq!(app.post_events(&Value::Array(events)).await.status(), 201);
    }
}

#[tokio::test]
async fn walks_through_the_postings_match_the_sql_ground_truth_under_writers() {
    let app = sealing_app().await;
    let mut rng = StdRng::seed_from_u64(25);
    post_random(&app, &mut rng, 6).await;
    wait_for_postings(&app.database).await;
    let rows: Vec<i64> = app
        .database
        .column("SELECT count(*) FROM search_postings")
        .await;
    assert!(rows[0] > 0, "the sealer wrote postings");
    walk_every_filter_under_writers(app, false, rng).await;
}

/// With 40 ids a page to look at, a walk of the primary key finds two or three events
/// of an application that has one event in twenty: its pages would be short. Through
/// the postings every page is full.
#[tokio::test]
async fn a_rare_application_fills_every_page_from_the_postings() {
    let app = sealing_app().await;
    let mut rng = StdRng::seed_from_u64(26);
    post_random(&app, &mut rng, 10).await;
    wait_for_postings(&app.database).await;
    let filter = Filter {
        parameters: vec![("application_name", "rare".to_owned())],
        conditions: vec!["application_name = 'rare'".to_owned()],
    };
    let expected = matching(&app, &filter, None).await;
    assert!(expected.len() > 20, "{} rare events", expected.len());
    assert_eq!(walk(&app, &filter, "asc", 10, true).await, expected);
    let mut descending = walk(&app, &filter, "desc", 10, true).await;
    descending.reverse();
    assert_eq!(descending, expected);
}

/// A tree sealed before the postings existed (their state at zero leaves, as
/// migration V7 leaves an existing tree): the next sealer writes them from the stored
/// leaf records, and they hold each application's and day's ids.
#[tokio::test]
async fn a_tree_sealed_before_the_postings_gets_them_from_its_leaf_records() {
    let database = TestDatabase::create_migrated().await;
    let client = database.client().await;
    client
        .batch_execute(
            "INSERT INTO events (event_ts, application_name, event_kind, payload) \
             SELECT timestamptz '2024-01-01T00:00:00Z' + n * interval '1 hour', \
                    'app' || (n % 7), 'Kind' || (n % 3), '{}' \
             FROM generate_series(1, 3000) AS n",
        )
        .await
        .unwrap();
    let sealer = rounds_until_postings_hold(&database, 3000, None).await;
    assert_postings_hold_the_events(&database).await;

    client
        .batch_execute(
            "DELETE FROM search_postings; \
             UPDATE search_postings_state SET leaves = 0, id_floor = 0",
        )
        .await
        .unwrap();
    drop(sealer);
    rounds_until_postings_hold(&database, 3000, Some(3000)).await;
    assert_postings_hold_the_events(&database).await;
}

/// Takes over as the sealer and runs rounds until the postings hold `leaves` leaves
/// (with `tree`, the tree must have that size from the start).
async fn rounds_until_postings_hold(
    database: &TestDatabase,
    leaves: i64,
    tree: Option<u64>,
) -> Sealer {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sealer = loop {
        // The previous sealer's session may still hold the lock for a moment.
        let client = database::connect(&database.settings).await.unwrap();
        match Sealer::take_over(client, None).await {
            Ok(Ok(sealer)) => break sealer,
            _ => assert!(Instant::now() < deadline, "no sealer took over"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if let Some(size) = tree {
        assert_eq!(sealer.size(), size);
    }
    loop {
        sealer.round(false).await.unwrap();
        let held: Vec<i64> = database
            .column("SELECT leaves FROM search_postings_state")
            .await;
        if held == [leaves] {
            return sealer;
        }
        assert!(
            Instant::now() < deadline,
            "the postings hold {held:?} leaves"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn assert_postings_hold_the_events(database: &TestDatabase) {
    let client = database.client().await;
    let posted = async |field: i16, key: i64| {
        let mut ids: Vec<i64> = client
            .query(
                "SELECT first_id, ids FROM search_postings WHERE field = $1 AND key = $2",
                &[&field, &key],
            )
            .await
            .unwrap()
            .iter()
            .flat_map(|row| ids_of(row.get(0), row.get(1)).unwrap())
            .collect();
        ids.sort_unstable();
        ids
    };
    for n in 0..7 {
        let application = format!("app{n}");
        let expected: Vec<i64> = database
            .column(&format!(
                "SELECT id FROM events WHERE application_name = '{application}' ORDER BY id"
            ))
            .await;
        assert_eq!(
            posted(1, text_key(&application)).await,
            expected,
            "{application}"
        );
    }
    // 2024-01-02 is day 19,724 since 1970.
    let day: Vec<i64> = database
        .column(
            "SELECT id FROM events WHERE event_ts >= '2024-01-02T00:00:00Z' \
             AND event_ts < '2024-01-03T00:00:00Z' ORDER BY id",
        )
        .await;
    assert_eq!(day.len(), 24);
    assert_eq!(posted(3, 19_724).await, day);
}
