//! Filtered pages of `GET /api/event`, in both directions, against a SQL ground truth
//! written here: random events, random filters and page sizes, every walk taken to its
//! end while another client keeps writing. The scan window is small (`max_scan_rows`
//! 40), so that most walks cross short and empty pages.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use audit_core::search_index::SearchIndex;
use audit_tests::test_app::{TestApp, json_body, spawn_app_with, spawn_app_with_tokens};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};

const APPLICATIONS: [&str; 4] = ["billing", "login", "search", "rare"];
const KINDS: [&str; 3] = ["Created", "Deleted", "Viewed"];
const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
const TAGS: [&str; 3] = ["red", "green", "blue"];
pub(crate) const SCAN_ROWS: u32 = 40;

/// An event at a random time of January 2024; `rare` seldom.
pub(crate) fn random_event(rng: &mut StdRng) -> Value {
    let application = if rng.random_range(0..20) == 0 {
        "rare"
    } else {
        APPLICATIONS[rng.random_range(0..3)]
    };
    let tags: Vec<&str> = TAGS
        .iter()
        .copied()
        .filter(|_| rng.random_bool(0.4))
        .collect();
    json!({
        "event_ts": format!(
            "2024-01-{:02}T{:02}:{:02}:00Z",
            rng.random_range(1..=31),
            rng.random_range(0..24),
            rng.random_range(0..60)
        ),
        "application_name": application,
        "event_kind": KINDS[rng.random_range(0..KINDS.len())],
        "payload": {
            "user": USERS[rng.random_range(0..USERS.len())],
            "tags": tags,
            "n": rng.random_range(0..1000),
        },
    })
}

/// One filter, as query parameters and as the SQL condition that defines it.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    pub(crate) parameters: Vec<(&'static str, String)>,
    pub(crate) conditions: Vec<String>,
}

impl Filter {
    pub(crate) fn random(rng: &mut StdRng) -> Self {
        let mut filter = Self::default();
        if rng.random_bool(0.4) {
            let applications: Vec<&str> = (0..rng.random_range(1..=2))
                .map(|_| APPLICATIONS[rng.random_range(0..APPLICATIONS.len())])
                .collect();
            for application in &applications {
                filter
                    .parameters
                    .push(("application_name", (*application).to_owned()));
            }
            filter.conditions.push(format!(
                "application_name IN ('{}')",
                applications.join("', '")
            ));
        }
        if rng.random_bool(0.4) {
            let kind = KINDS[rng.random_range(0..KINDS.len())];
            filter.parameters.push(("event_kind", kind.to_owned()));
            filter.conditions.push(format!("event_kind = '{kind}'"));
        }
        if rng.random_bool(0.4) {
            let since = rng.random_range(1..=20);
            let until = since + rng.random_range(1..=11);
            // Offsets other than Z are the same instants.
            filter
                .parameters
                .push(("since", format!("2024-01-{since:02}T02:00:00+02:00")));
            filter
                .parameters
                .push(("until", format!("2024-01-{until:02}T00:00:00Z")));
            filter.conditions.push(format!(
                "event_ts >= '2024-01-{since:02}T00:00:00Z' AND event_ts < '2024-01-{until:02}T00:00:00Z'"
            ));
        }
        if rng.random_bool(0.4) {
            let contained = if rng.random_bool(0.5) {
                json!({"user": USERS[rng.random_range(0..USERS.len())]})
            } else {
                json!({"tags": [TAGS[rng.random_range(0..TAGS.len())]]})
            };
            filter
                .parameters
                .push(("payload_contains", contained.to_string()));
            filter
                .conditions
                .push(format!("payload::jsonb @> '{contained}'::jsonb"));
        }
        filter
    }

    fn query(&self, order: &str, page_size: u32, token: Option<i64>) -> String {
        let mut query = form_urlencoded_pairs(&self.parameters);
        query.push_str(&format!("&order={order}&page_size={page_size}"));
        if let Some(token) = token {
            query.push_str(&format!("&page_token={token}"));
        }
        query
    }

    fn sql_where(&self) -> String {
        if self.conditions.is_empty() {
            "true".to_owned()
        } else {
            self.conditions.join(" AND ")
        }
    }
}

fn form_urlencoded_pairs(pairs: &[(&str, String)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|byte| match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    char::from(byte).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect::<String>()
    };
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(name, value)| format!("{name}={}", encode(value)))
        .collect();
    format!("_=1&{}", encoded.join("&"))
}

/// Walks every page of a filter in one order; returns the ids in the order served.
/// With `full_pages`, every page but the last must be full.
pub(crate) async fn walk(
    app: &TestApp,
    filter: &Filter,
    order: &str,
    page_size: u32,
    full_pages: bool,
) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut token = None;
    for _ in 0..10_000 {
        let response = app
            .get_events(&format!("?{}", filter.query(order, page_size, token)))
            .await;
        assert_eq!(response.status(), 200);
        let page = json_body(response).await;
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= page_size as usize);
        ids.extend(data.iter().map(|event| event["id"].as_i64().unwrap()));
        if full_pages && !page["next_page"].is_null() {
            assert_eq!(
                data.len(),
                page_size as usize,
                "{filter:?} {order}: a short page"
            );
        }
        match page["next_page"].as_i64() {
            Some(next) => token = Some(next),
            None => return ids,
        }
    }
    panic!("the walk of {filter:?} did not end");
}

pub(crate) async fn matching(app: &TestApp, filter: &Filter, ids: Option<&[i64]>) -> Vec<i64> {
    let within = match ids {
        Some(ids) => format!(
            "id IN ({})",
            ids.iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => "true".to_owned(),
    };
    if ids.is_some_and(<[i64]>::is_empty) {
        return Vec::new();
    }
    app.database
        .column(&format!(
            "SELECT id FROM events WHERE {} AND {within} ORDER BY id",
            filter.sql_where()
        ))
        .await
}

#[tokio::test]
async fn every_filter_walked_both_ways_matches_the_sql_ground_truth_under_writers() {
    walks_match_the_sql_ground_truth_under_writers(&[]).await;
}

/// With every search index, every filter reads through them: the same events, and
/// full pages however rare the matches.
#[tokio::test]
async fn with_every_search_index_the_walks_match_the_ground_truth_in_full_pages() {
    walks_match_the_sql_ground_truth_under_writers(&SearchIndex::ALL).await;
}

async fn walks_match_the_sql_ground_truth_under_writers(indexes: &[SearchIndex]) {
    let app = Arc::new(spawn_app_with(|settings| settings.search.max_scan_rows = SCAN_ROWS).await);
    app.build_search_indexes(indexes).await;
    let mut rng = StdRng::seed_from_u64(15);
    for _ in 0..6 {
        let events: Vec<Value> = (0..100).map(|_| random_event(&mut rng)).collect();
        assert_eq!(app.post_events(&Value::Array(events)).await.status(), 201);
    }
    walk_every_filter_under_writers(app, !indexes.is_empty(), rng).await;
}

/// Walks random filters both ways, to the end, while another client writes: each
/// walk in order, each event once, only matching ones, and every one that was there
/// before it began. With `full_pages`, no page but the last is short.
pub(crate) async fn walk_every_filter_under_writers(
    app: Arc<TestApp>,
    full_pages: bool,
    mut rng: StdRng,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (app, stop) = (app.clone(), stop.clone());
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(16);
            while !stop.load(Ordering::Relaxed) {
                let events: Vec<Value> = (0..5).map(|_| random_event(&mut rng)).collect();
                assert_eq!(app.post_events(&Value::Array(events)).await.status(), 201);
                // Slower than a walk of full pages reads, so that oldest-first walks
                // reach the newest event.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        })
    };

    for round in 0..24 {
        let filter = if round == 0 {
            Filter::default()
        } else {
            Filter::random(&mut rng)
        };
        for order in ["desc", "asc"] {
            let before = matching(&app, &filter, None).await;
            let page_size = rng.random_range(5..=25);
            let served = walk(&app, &filter, order, page_size, full_pages).await;
            let context = format!("{filter:?} {order} pages of {page_size}");
            // In the order asked for, each event once.
            let mut sorted = served.clone();
            sorted.sort_unstable();
            if order == "desc" {
                sorted.reverse();
            }
            assert_eq!(served, sorted, "{context}: out of order");
            let unique: BTreeSet<i64> = served.iter().copied().collect();
            assert_eq!(unique.len(), served.len(), "{context}: an event twice");
            // Only matching events, and every one that was there before the walk.
            let mut ascending = served.clone();
            ascending.sort_unstable();
            assert_eq!(
                matching(&app, &filter, Some(&ascending)).await,
                ascending,
                "{context}: an event that does not match"
            );
            let missing: Vec<i64> = before
                .iter()
                .filter(|id| !unique.contains(id))
                .copied()
                .collect();
            assert!(missing.is_empty(), "{context}: skipped {missing:?}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
}

#[tokio::test]
async fn a_filter_nothing_matches_reads_one_window_per_page_and_says_where_to_go_on() {
    let app = spawn_app_with(|settings| settings.search.max_scan_rows = SCAN_ROWS).await;
    let mut rng = StdRng::seed_from_u64(17);
    let events: Vec<Value> = (0..100).map(|_| random_event(&mut rng)).collect();
    app.post_events(&Value::Array(events)).await;
    let ids: Vec<i64> = app
        .database
        .column("SELECT id FROM events ORDER BY id")
        .await;
    let (lowest, highest) = (ids[0], ids[99]);
    crate::postings::wait_for_postings(&app.database).await;
    // Through the search postings the whole answer (none) comes at once.
    let page = json_body(app.get_events("?application_name=nobody").await).await;
    assert_eq!(
        (&page["data"], &page["next_page"]),
        (&json!([]), &Value::Null)
    );
    // Without them (as before the poster reaches the events), windows of ids.
    let _held = crate::postings::hold_postings_back(&app.database).await;

    let page = json_body(app.get_events("?application_name=nobody").await).await;
    assert_eq!(page["data"], json!([]));
    // The window was the 40 newest ids; the next page starts below it.
    assert_eq!(page["next_page"], highest - 39);
    let page = json_body(app.get_events("?application_name=nobody&order=asc").await).await;
    assert_eq!(page["next_page"], lowest + 39);
    let last = format!("?application_name=nobody&page_token={}", lowest + 20);
    assert_eq!(
        json_body(app.get_events(&last).await).await["next_page"],
        Value::Null
    );
    // 100 ids, 40 a page: three pages, the last one ending the walk.
    let filter = Filter {
        parameters: vec![("application_name", "nobody".to_owned())],
        conditions: vec!["false".to_owned()],
    };
    for order in ["desc", "asc"] {
        let mut pages = 0;
        let mut token = None;
        loop {
            pages += 1;
            let page = json_body(
                app.get_events(&format!("?{}", filter.query(order, 10, token)))
                    .await,
            )
            .await;
            match page["next_page"].as_i64() {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        assert_eq!(pages, 3, "{order}");
    }
}

#[tokio::test]
async fn a_condition_without_its_index_keeps_the_page_to_one_window() {
    let app = spawn_app_with(|settings| settings.search.max_scan_rows = SCAN_ROWS).await;
    let mut rng = StdRng::seed_from_u64(18);
    let events: Vec<Value> = (0..100).map(|_| random_event(&mut rng)).collect();
    app.post_events(&Value::Array(events)).await;
    let highest: i64 = app.database.column("SELECT max(id) FROM events").await[0];
    app.build_search_indexes(&[SearchIndex::Application, SearchIndex::Time])
        .await;
    // No search postings to fall back on (as before the poster reaches the events).
    let _held = crate::postings::hold_postings_back(&app.database).await;

    // Served by the application index: the whole answer (none) at once.
    let page = json_body(app.get_events("?application_name=nobody").await).await;
    assert_eq!(
        (&page["data"], &page["next_page"]),
        (&json!([]), &Value::Null)
    );
    // The payload has no index here: one window of 40 ids, and where to go on.
    for unserved in [
        r#"application_name=nobody&payload_contains={"n":-1}"#,
        "event_kind=Nothing&since=2024-01-01T00:00:00Z",
    ] {
        let page = json_body(app.get_events(&format!("?{unserved}")).await).await;
        assert_eq!(page["data"], json!([]), "{unserved}");
        assert_eq!(page["next_page"], highest - 39, "{unserved}");
    }
}

#[tokio::test]
async fn a_reader_filters_only_within_the_applications_it_may_read() {
    let app = spawn_app_with_tokens(|_| {}).await;
    let writer = app.writer_of("writer", &["*"]).await;
    let mut rng = StdRng::seed_from_u64(18);
    let events: Vec<Value> = (0..60).map(|_| random_event(&mut rng)).collect();
    app.post_events_as(&writer, &Value::Array(events)).await;
    let reader = app.reader_of("reader", &["billing", "rare"]).await;
    let page = |query: &str| {
        app.http
            .get(app.url(&format!("/api/event?page_size=1000&{query}")))
            .bearer_auth(&reader)
            .send()
    };

    let both = json_body(
        page("application_name=billing&application_name=login")
            .await
            .unwrap(),
    )
    .await;
    let applications: BTreeSet<&str> = (both["data"].as_array().unwrap().iter())
        .map(|event| event["application_name"].as_str().unwrap())
        .collect();
    assert_eq!(applications, BTreeSet::from(["billing"]));
    let expected: Vec<i64> = app
        .database
        .column("SELECT count(*) FROM events WHERE application_name = 'billing'")
        .await;
    assert_eq!(both["data"].as_array().unwrap().len() as i64, expected[0]);
    let none = json_body(page("application_name=login&order=asc").await.unwrap()).await;
    assert_eq!(
        none,
        json!({"next_page": null, "page_size": 1000, "data": []})
    );
    let kinds = json_body(page("event_kind=Viewed").await.unwrap()).await;
    assert!((kinds["data"].as_array().unwrap().iter()).all(|event| {
        ["billing", "rare"].contains(&event["application_name"].as_str().unwrap())
            && event["event_kind"] == "Viewed"
    }));
}

#[tokio::test]
async fn a_bad_filter_is_refused_naming_the_parameter_and_unknown_ones_are_ignored() {
    let app = spawn_app_with(|_| {}).await;
    for (query, field) in [
        ("order=sideways", "order"),
        (
            "since=2024-01-02T00:00:00Z&until=2024-01-01T00:00:00Z",
            "until",
        ),
        ("payload_contains=%5B1%5D", "payload_contains"),
        ("event_kind=", "event_kind"),
    ] {
        let response = app.get_events(&format!("?{query}")).await;
        assert_eq!(response.status(), 422, "{query}");
        let body = json_body(response).await;
        assert_eq!(body["error"], "invalid_query");
        assert_eq!(body["details"][0]["field"], field, "{query}");
    }
    assert_eq!(app.get_events("?colour=blue&order=asc").await.status(), 200);
}
