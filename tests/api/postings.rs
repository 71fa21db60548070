//! Filtered pages through the search postings (`audit_core::postings`): the poster
//! posts committed events, pages read the events below its floor through them and walk
//! the primary key above it, and every walk matches the SQL ground truth in both
//! directions while another client writes. Events inserted by hand are posted like
//! any others, and a transaction that commits late is waited for, never stepped past.

use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_core::database;
use audit_core::postings::{POSTER_LOCK, Posted, ids_of, post_step, text_key};
use audit_tests::test_app::{TestApp, spawn_app_with};
use audit_tests::test_database::TestDatabase;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::Value;

use crate::filters::{
    Filter, SCAN_ROWS, matching, random_event, walk, walk_every_filter_under_writers,
};

async fn app_scanning_few_rows() -> Arc<TestApp> {
    Arc::new(spawn_app_with(|settings| settings.search.max_scan_rows = SCAN_ROWS).await)
}

/// Runs posting steps (beside the server's, if one runs) until every event written so
/// far is posted.
pub(crate) async fn wait_for_postings(database: &TestDatabase) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut client = database::connect(&database.settings).await.unwrap();
    loop {
        let step = post_step(&mut client).await.unwrap();
        let posted: Vec<bool> = database
            .column(
                "SELECT coalesce((SELECT id_floor FROM search_postings_state) \
                     >= (SELECT max(id) FROM events), true)",
            )
            .await;
        if posted == [true] {
            return;
        }
        assert!(Instant::now() < deadline, "the poster did not catch up");
        if !matches!(step, Posted::PostedTo { more: true, .. }) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Makes the postings unusable to pages until the returned client is dropped: none
/// posted, and the poster held back by its lock.
pub(crate) async fn hold_postings_back(database: &TestDatabase) -> tokio_postgres::Client {
    let client = database.client().await;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&POSTER_LOCK])
        .await
        .unwrap();
    client
        .batch_execute(
            "DELETE FROM search_postings; \
             UPDATE search_postings_state \
             SET id_floor = 0, settle_bound = NULL, settle_xid = NULL",
        )
        .await
        .unwrap();
    client
}

async fn post_random(app: &TestApp, rng: &mut StdRng, batches: usize) {
    for _ in 0..batches {
        let events: Vec<Value> = (0..100).map(|_| random_event(rng)).collect();
        assert_eq!(app.post_events(&Value::Array(events)).await.status(), 201);
    }
}

#[tokio::test]
async fn walks_through_the_postings_match_the_sql_ground_truth_under_writers() {
    let app = app_scanning_few_rows().await;
    let mut rng = StdRng::seed_from_u64(25);
    post_random(&app, &mut rng, 6).await;
    wait_for_postings(&app.database).await;
    let rows: Vec<i64> = app
        .database
        .column("SELECT count(*) FROM search_postings")
        .await;
    assert!(rows[0] > 0, "the poster wrote postings");
    walk_every_filter_under_writers(app, false, rng).await;
}

/// With 40 ids a page to look at, a walk of the primary key finds two or three events
/// of an application that has one event in twenty: its pages would be short. Through
/// the postings every page is full.
#[tokio::test]
async fn a_rare_application_fills_every_page_from_the_postings() {
    let app = app_scanning_few_rows().await;
    let mut rng = StdRng::seed_from_u64(26);
    post_random(&app, &mut rng, 10).await;
    wait_for_postings(&app.database).await;
    let filter = Filter {
        parameters: vec![("application_name", "rare".to_owned())],
        conditions: vec!["application_name = 'rare'".to_owned()],
    };
    assert_full_pages_both_ways(&app, &filter, 10, 20).await;
}

/// Walks `filter` both ways in pages of `page_size`, each full but the last, and
/// finds its more than `more_than` matches, as SQL does.
async fn assert_full_pages_both_ways(
    app: &TestApp,
    filter: &Filter,
    page_size: u32,
    more_than: usize,
) {
    let expected = matching(app, filter, None).await;
    assert!(expected.len() > more_than, "{} matches", expected.len());
    assert_eq!(walk(app, filter, "asc", page_size, true).await, expected);
    let mut descending = walk(app, filter, "desc", page_size, true).await;
    descending.reverse();
    assert_eq!(descending, expected);
}

/// `search.postings = false`: this server posts nothing, and its pages stay right,
/// walking ids; switched on by a reload, it posts what was written meanwhile.
#[tokio::test]
async fn a_server_with_postings_off_posts_nothing_until_they_are_on() {
    let mut app = spawn_app_with(|settings| {
        settings.search.max_scan_rows = SCAN_ROWS;
        settings.search.postings = false;
    })
    .await;
    let mut rng = StdRng::seed_from_u64(28);
    post_random(&app, &mut rng, 3).await;
    let filter = Filter {
        parameters: vec![("application_name", "rare".to_owned())],
        conditions: vec!["application_name = 'rare'".to_owned()],
    };
    let expected = matching(&app, &filter, None).await;
    assert!(!expected.is_empty());
    // The poster would have taken a step or two by now.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let floor: Vec<i64> = app
        .database
        .column("SELECT id_floor FROM search_postings_state")
        .await;
    assert_eq!(floor, [0]);
    assert_eq!(walk(&app, &filter, "asc", 10, false).await, expected);

    let response = app
        .reload_with(|settings| settings.search.postings = true)
        .await;
    assert_eq!(response.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let posted: Vec<bool> = app
            .database
            .column(
                "SELECT (SELECT id_floor FROM search_postings_state) \
                     >= (SELECT max(id) FROM events)",
            )
            .await;
        if posted == [true] {
            break;
        }
        assert!(Instant::now() < deadline, "the server did not post");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(walk(&app, &filter, "asc", 10, true).await, expected);
}

/// Events inserted by hand (as a bulk load does) are posted like those of the API:
/// until then pages walk their ids and stay right; then each application's and day's
/// postings are its ids, and pages are full.
#[tokio::test]
async fn events_inserted_by_hand_are_posted_too() {
    let app = app_scanning_few_rows().await;
    let mut rng = StdRng::seed_from_u64(27);
    post_random(&app, &mut rng, 2).await;
    let held = hold_postings_back(&app.database).await;
    insert_by_hand(&app.database, "", 1, 3000).await;
    let filter = Filter {
        parameters: vec![("application_name", "app3".to_owned())],
        conditions: vec!["application_name = 'app3'".to_owned()],
    };
    let expected = matching(&app, &filter, None).await;
    assert!(expected.len() > 400);
    assert_eq!(walk(&app, &filter, "asc", 10, false).await, expected);
    drop(held);

    wait_for_postings(&app.database).await;
    assert_postings_hold_the_events(&app.database).await;
    assert_eq!(walk(&app, &filter, "asc", 10, true).await, expected);
}

/// A transaction that inserts and commits only after the poster took its bound: the
/// poster waits for it rather than step past its ids, which would leave them out of
/// the postings for good.
#[tokio::test]
async fn the_poster_waits_for_a_transaction_that_commits_late() {
    let database = TestDatabase::create_migrated().await;
    let late = database.client().await;
    late.batch_execute("BEGIN").await.unwrap();
    insert_on(&late, "late", 1, 30).await;
    insert_by_hand(&database, "", 31, 60).await;

    let mut client = database::connect(&database.settings).await.unwrap();
    for _ in 0..3 {
        assert_eq!(post_step(&mut client).await.unwrap(), Posted::Waiting);
    }
    late.batch_execute("COMMIT").await.unwrap();

    wait_for_postings(&database).await;
    assert_postings_hold_the_events(&database).await;
}

/// An application within one day: candidates from the day's postings, only those in
/// the application's postings read; full pages both ways, equal to the ground truth.
#[tokio::test]
async fn an_application_within_a_day_reads_the_days_candidates_narrowed() {
    let app = app_scanning_few_rows().await;
    (app.database.client().await)
        .batch_execute(
            "INSERT INTO events (event_ts, application_name, event_kind, payload) \
             SELECT timestamptz '2024-01-01T00:00:00Z' + n * interval '5 minutes', \
                    'app' || (n % 7), 'Kind' || (n % 3), '{}' \
             FROM generate_series(1, 5000) AS n",
        )
        .await
        .unwrap();
    wait_for_postings(&app.database).await;
    let filter = Filter {
        parameters: vec![
            ("application_name", "app3".to_owned()),
            ("since", "2024-01-05T00:00:00Z".to_owned()),
            ("until", "2024-01-06T00:00:00Z".to_owned()),
        ],
        conditions: vec![
            "application_name = 'app3'".to_owned(),
            "event_ts >= '2024-01-05T00:00:00Z'".to_owned(),
            "event_ts < '2024-01-06T00:00:00Z'".to_owned(),
        ],
    };
    assert_full_pages_both_ways(&app, &filter, 3, 10).await;
}

/// Ids far apart (the sequence set ahead, as by hand or an adopted table's): the
/// poster steps from one event to the next rather than through the ids between.
#[tokio::test]
async fn the_poster_steps_over_ids_never_drawn() {
    let database = TestDatabase::create_migrated().await;
    insert_by_hand(&database, "", 1, 30).await;
    (database.client().await)
        .batch_execute("SELECT setval('events_id_seq', 900000)")
        .await
        .unwrap();
    insert_by_hand(&database, "", 31, 40).await;

    let mut client = database::connect(&database.settings).await.unwrap();
    let mut steps = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Posted::PostedTo { to, .. } = post_step(&mut client).await.unwrap() {
            steps += 1;
            if to >= 900_010 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "{steps} steps and not there");
    }
    assert!(steps <= 3, "{steps} steps");
    assert_postings_hold_the_events(&database).await;
}

/// Inserts events `from..=to` by hand: applications `app0`..`app6` (or `name` for all),
/// kinds `Kind0`..`Kind2`, an hour apart from 2024-01-01.
async fn insert_by_hand(database: &TestDatabase, name: &str, from: i64, to: i64) {
    insert_on(&database.client().await, name, from, to).await;
}

async fn insert_on(client: &tokio_postgres::Client, name: &str, from: i64, to: i64) {
    let application = match name {
        "" => "'app' || (n % 7)".to_owned(),
        name => format!("'{name}'"),
    };
    client
        .batch_execute(&format!(
            "INSERT INTO events (event_ts, application_name, event_kind, payload) \
             SELECT timestamptz '2024-01-01T00:00:00Z' + n * interval '1 hour', \
                    {application}, 'Kind' || (n % 3), '{{}}' \
             FROM generate_series({from}, {to}) AS n"
        ))
        .await
        .unwrap();
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
    let applications: Vec<String> = database
        .column("SELECT DISTINCT application_name FROM events")
        .await;
    for application in applications {
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
    assert!(!day.is_empty());
    assert_eq!(posted(3, 19_724).await, day);
}
