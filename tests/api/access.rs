//! Access control: `auth.mode = "tokens"`, scoped writers and readers, the admin
//! surface, revocation across servers, and the collector's records of all of it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use audit_core::access::TokenRequest;
use audit_core::search_index::SearchIndex;
use audit_tests::test_app::{
    TestApp, event, json_body, spawn_app, spawn_app_on, spawn_app_with_tokens,
};
use audit_tests::test_database::TestDatabase;
use serde_json::{Value, json};

/// An event of `application` numbered `n` in its payload.
fn numbered(application: &str, n: u64) -> Value {
    event(application, json!({ "n": n, "app": application }))
}

fn admin_request(name: &str) -> TokenRequest {
    TokenRequest {
        name: name.to_owned(),
        admin: true,
        ..TokenRequest::default()
    }
}

/// The collector's own events, oldest first, as `kind payload` pairs.
async fn collector_events(app: &TestApp) -> Vec<(String, Value)> {
    let rows: Vec<String> = app
        .database
        .column(
            "SELECT json_build_array(event_kind, payload)::text FROM events \
             WHERE application_name = 'audit-collector' ORDER BY id",
        )
        .await;
    rows.iter()
        .map(|row| {
            let pair: Value = serde_json::from_str(row).unwrap();
            (pair[0].as_str().unwrap().to_owned(), pair[1].clone())
        })
        .collect()
}

/// Events of the clients' applications: the collector's own are counted apart.
async fn client_events(app: &TestApp) -> i64 {
    let counts: Vec<i64> = app
        .database
        .column("SELECT count(*) FROM events WHERE application_name <> 'audit-collector'")
        .await;
    counts[0]
}

async fn auth_failures(app: &TestApp, reason: &str) -> u64 {
    let metrics = app.metrics_text().await;
    let prefix = format!("auth_failures_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn without_a_usable_token_every_api_request_is_401_with_a_bearer_challenge() {
    let app = spawn_app_with_tokens(|_| {}).await;
    let revoked = app.writer_of("revoked", &["a"]).await;
    let expired = app.writer_of("expired", &["a"]).await;
    app.database
        .client()
        .await
        .batch_execute(
            "UPDATE api_tokens SET revoked_at = now(), revoked_by = 'cli' WHERE name = 'revoked'; \
             UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE name = 'expired'",
        )
        .await
        .unwrap();
    audit_server::auth::upkeep::reread_tokens(&app.state)
        .await
        .unwrap();
    let body = json!([event("a", json!(1))]);
    let cases: [(&str, Option<&str>); 6] = [
        ("missing", None),
        ("malformed", Some("Basic dXNlcjpwYXNz")),
        ("malformed", Some("Bearer ")),
        ("unknown", Some("Bearer aec_not-a-token-anybody-made")),
        ("revoked", Some(&format!("Bearer {revoked}"))),
        ("expired", Some(&format!("Bearer {expired}"))),
    ];

    for (reason, header) in cases {
        for method in ["GET", "POST"] {
            let mut request = if method == "GET" {
                app.http.get(app.url("/api/event"))
            } else {
                app.http.post(app.url("/api/event")).json(&body)
            };
            if let Some(header) = header {
                request = request.header("authorization", header);
            }
            let response = request.send().await.unwrap();

            assert_eq!(response.status(), 401, "{reason} {method}");
            let challenge = response.headers()["www-authenticate"].to_str().unwrap();
            assert!(challenge.starts_with("Bearer "), "{challenge}");
            assert_eq!(
                challenge.contains("invalid_token"),
                reason != "missing",
                "{challenge}"
            );
            let body = json_body(response).await;
            assert_eq!(body["error"], "unauthenticated", "{body}");
        }
    }

    assert_eq!(client_events(&app).await, 0);
    assert_eq!(auth_failures(&app, "missing").await, 2);
    assert_eq!(auth_failures(&app, "malformed").await, 4);
    assert_eq!(auth_failures(&app, "unknown").await, 2);
    assert_eq!(auth_failures(&app, "revoked").await, 2);
    assert_eq!(auth_failures(&app, "expired").await, 2);
}

#[tokio::test]
async fn a_writer_stores_only_its_applications_events_and_is_recorded_as_their_writer() {
    let app = spawn_app_with_tokens(|_| {}).await;
    let writer = app.writer_of("writer-a", &["a"]).await;
    let everything = app.writer_of("writer-all", &["*"]).await;

    let mixed = json!([
        numbered("a", 0),
        numbered("b", 1),
        numbered("a", 2),
        numbered("c", 3)
    ]);
    let refused = app.post_events_as(&writer, &mixed).await;

    assert_eq!(refused.status(), 403);
    let body = json_body(refused).await;
    assert_eq!(body["error"], "forbidden");
    let indexes: Vec<u64> = (body["details"].as_array().unwrap().iter())
        .map(|detail| detail["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [1, 3], "{body}");
    assert!(
        body["details"][0]["problem"]
            .as_str()
            .unwrap()
            .contains("\"b\"")
    );
    assert_eq!(
        client_events(&app).await,
        0,
        "part of a refused batch stored"
    );

    let own = app
        .post_events_as(&writer, &json!([numbered("a", 4)]))
        .await;
    assert_eq!(own.status(), 201);
    let any = app.post_events_as(&everything, &mixed).await;
    assert_eq!(any.status(), 201);
    let writers: Vec<String> = app
        .database
        .column(
            "SELECT token_name FROM events WHERE application_name <> 'audit-collector' ORDER BY id",
        )
        .await;
    assert_eq!(
        writers,
        [
            "writer-a",
            "writer-all",
            "writer-all",
            "writer-all",
            "writer-all"
        ]
    );

    // Writing is not reading.
    let read = app.get_events_as(&writer, "").await;
    assert_eq!(read.status(), 403);
    assert!(
        json_body(read).await["details"][0]["problem"]
            .as_str()
            .unwrap()
            .contains("read")
    );
    assert_eq!(auth_failures(&app, "forbidden").await, 2);
}

#[tokio::test]
async fn events_written_with_access_control_off_record_no_token() {
    let app = spawn_app().await;

    assert_eq!(
        app.post_events(&json!([numbered("a", 0)])).await.status(),
        201
    );

    let writers: Vec<Option<String>> = app.database.column("SELECT token_name FROM events").await;
    assert_eq!(writers, [None]);
}

/// Walks every page as `token`, returning the payloads seen, newest first.
async fn walk_as(app: &TestApp, token: &str, page_size: u32) -> Vec<Value> {
    let mut seen = Vec::new();
    let mut query = format!("?page_size={page_size}");
    loop {
        let response = app.get_events_as(token, &query).await;
        assert_eq!(response.status(), 200);
        let page = json_body(response).await;
        seen.extend((page["data"].as_array().unwrap().iter()).map(|item| item["payload"].clone()));
        match page["next_page"].as_i64() {
            Some(next) => query = format!("?page_size={page_size}&page_token={next}"),
            None => return seen,
        }
    }
}

#[tokio::test]
async fn a_reader_walks_every_event_of_its_applications_once_and_none_of_another() {
    let app = spawn_app_with_tokens(|_| {}).await;
    let writer = app.writer_of("writer", &["*"]).await;
    let reader_a = app.reader_of("reader-a", &["a"]).await;
    let reader_ac = app.reader_of("reader-ac", &["a", "c"]).await;
    // Interleaved: a and b alternate in every batch, c is rare.
    for batch in 0..20u64 {
        let mut events: Vec<Value> = (0..10)
            .map(|i| numbered(if i % 2 == 0 { "a" } else { "b" }, batch * 10 + i))
            .collect();
        if batch % 5 == 0 {
            events.push(numbered("c", 1000 + batch));
        }
        assert_eq!(
            app.post_events_as(&writer, &json!(events)).await.status(),
            201
        );
    }

    // Writers keep going while the readers walk: a walk sees what was committed below
    // its first page, whatever arrives above it.
    let writing = {
        let http = app.http.clone();
        let url = app.url("/api/event");
        let writer = writer.clone();
        tokio::spawn(async move {
            for n in 0..40u64 {
                let batch = json!([numbered("a", 5000 + n), numbered("b", 5000 + n)]);
                let response = http
                    .post(&url)
                    .bearer_auth(&writer)
                    .json(&batch)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201);
            }
        })
    };
    let seen_a = walk_as(&app, &reader_a, 7).await;
    let seen_ac = walk_as(&app, &reader_ac, 7).await;
    writing.await.unwrap();

    for (seen, allowed) in [(&seen_a, &["a"][..]), (&seen_ac, &["a", "c"][..])] {
        assert!(
            seen.iter()
                .all(|payload| allowed.contains(&payload["app"].as_str().unwrap())),
            "an event of another application was shown"
        );
        let numbers: Vec<u64> = seen
            .iter()
            .map(|payload| payload["n"].as_u64().unwrap())
            .collect();
        let unique: HashSet<u64> = numbers.iter().copied().collect();
        assert_eq!(unique.len(), numbers.len(), "an event was shown twice");
        // Every event of the scope up to the newest seen, in id order: the ids of the
        // database say which those are.
        let newest = seen[0]["n"].as_u64().unwrap();
        let apps = allowed
            .iter()
            .map(|app| format!("'{app}'"))
            .collect::<Vec<_>>()
            .join(",");
        let expected: Vec<i64> = app
            .database
            .column(&format!(
                "SELECT (payload->>'n')::bigint FROM events WHERE application_name IN ({apps}) \
                 AND id <= (SELECT id FROM events WHERE (payload->>'n')::bigint = {newest} \
                 AND application_name IN ({apps})) ORDER BY id DESC"
            ))
            .await;
        let numbers: Vec<i64> = numbers.iter().map(|n| i64::try_from(*n).unwrap()).collect();
        assert_eq!(numbers, expected);
    }
    assert!(seen_a.len() >= 100, "{}", seen_a.len());
    assert!(seen_ac.iter().any(|payload| payload["app"] == "c"));

    // Reading is not writing.
    let post = app
        .post_events_as(&reader_a, &json!([numbered("a", 9)]))
        .await;
    assert_eq!(post.status(), 403);
}

#[tokio::test]
async fn reload_and_token_management_need_an_admin_token() {
    let app = spawn_app_with_tokens(|_| {}).await;
    let writer = app.writer_of("writer", &["*"]).await;
    let admin = app.create_token(admin_request("root")).await;

    let reload_as = |token: &str| {
        app.http
            .post(app.url("/reload"))
            .bearer_auth(token.to_owned())
            .send()
    };
    assert_eq!(
        app.http
            .post(app.url("/reload"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(reload_as(&writer).await.unwrap().status(), 403);
    assert_eq!(reload_as(&admin).await.unwrap().status(), 200);
    let list_as = |token: &str| {
        app.http
            .get(app.url("/admin/tokens"))
            .bearer_auth(token.to_owned())
            .send()
    };
    assert_eq!(list_as(&writer).await.unwrap().status(), 403);

    // Create, use, list, revoke over HTTP.
    let created = app
        .http
        .post(app.url("/admin/tokens"))
        .bearer_auth(&admin)
        .json(&json!({"name": "team-b", "write": ["b"], "read": ["b"], "expires_in": "90d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created = json_body(created).await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("aec_"), "{created}");
    assert!(created["expires_at"].is_string(), "{created}");
    assert_eq!(
        app.post_events_as(&secret, &json!([event("b", json!(1))]))
            .await
            .status(),
        201
    );

    let listing = json_body(list_as(&admin).await.unwrap()).await;
    let text = listing.to_string();
    assert!(!text.contains(&secret) && !text.contains("hash"), "{text}");
    let team_b = (listing["tokens"].as_array().unwrap().iter())
        .find(|token| token["name"] == "team-b")
        .unwrap();
    assert_eq!(team_b["write"], json!(["b"]));
    assert_eq!(team_b["created_by"], "root");
    assert!(team_b["revoked_at"].is_null());

    let duplicate = app
        .http
        .post(app.url("/admin/tokens"))
        .bearer_auth(&admin)
        .json(&json!({"name": "team-b", "read": ["*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(duplicate.status(), 409);
    for bad in [
        json!({"name": "x y", "read": ["*"]}),
        json!({"name": "n"}),
        json!({"name": "n", "admin": true, "colour": 1}),
    ] {
        let response = app
            .http
            .post(app.url("/admin/tokens"))
            .bearer_auth(&admin)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{bad}");
    }

    let revoke = |name: &str| {
        app.http
            .delete(app.url(&format!("/admin/tokens/{name}")))
            .bearer_auth(admin.clone())
            .send()
    };
    assert_eq!(revoke("team-b").await.unwrap().status(), 200);
    assert_eq!(revoke("nobody").await.unwrap().status(), 404);
    let after = app
        .post_events_as(&secret, &json!([event("b", json!(2))]))
        .await;
    assert_eq!(after.status(), 401);
}

#[tokio::test]
async fn with_access_control_off_reload_and_admin_answer_callers_on_this_host() {
    // The tests connect over loopback; a remote peer is refused (see the unit test
    // of `admin_actor`).
    let app = spawn_app().await;

    assert_eq!(app.reload().await.status(), 200);
    let created = app
        .http
        .post(app.url("/admin/tokens"))
        .json(&json!({"name": "first-admin", "admin": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
}

#[tokio::test]
async fn a_revocation_reaches_a_second_server_within_a_second() {
    let first = spawn_app_with_tokens(|_| {}).await;
    let second_database =
        TestDatabase::adopt(&first.database.name, first.database.settings.clone());
    let second = spawn_app_on(second_database, |settings| {
        settings.auth.mode = audit_server::settings::AuthMode::Tokens;
    })
    .await;
    second.wait_for_tokens().await;
    let admin = first.create_token(admin_request("root")).await;
    let reader = first.reader_of("reader", &["*"]).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while second.get_events_as(&reader, "").await.status() != 200 {
        assert!(
            Instant::now() < deadline,
            "the second server never learnt the token"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let revoked = first
        .http
        .delete(first.url("/admin/tokens/reader"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let started = Instant::now();
    assert_eq!(
        first.get_events_as(&reader, "").await.status(),
        401,
        "the revoking server"
    );
    while second.get_events_as(&reader, "").await.status() != 401 {
        assert!(started.elapsed() < Duration::from_secs(5), "never revoked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();

    eprintln!("revocation reached the second server after {elapsed:?}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
}

#[tokio::test]
async fn the_collector_records_token_changes_reloads_and_mode_changes_in_its_own_log() {
    let mut app = spawn_app_with_tokens(|_| {}).await;
    let admin = app.create_token(admin_request("root")).await;
    let auditor = app.reader_of("auditor", &["audit-collector"]).await;
    app.writer_of("short-lived", &["a"]).await;
    app.database
        .client()
        .await
        .batch_execute("UPDATE api_tokens SET expires_at = now() WHERE name = 'short-lived'")
        .await
        .unwrap();
    let revoke = app
        .http
        .delete(app.url("/admin/tokens/auditor"))
        .bearer_auth(&admin)
        .send()
        .await;
    assert_eq!(revoke.unwrap().status(), 200);
    let auditor = {
        let _ = auditor;
        app.reader_of("auditor-2", &["audit-collector"]).await
    };
    // A reload by the admin that changes a setting and the metrics token.
    app.settings.api.max_page_size = 500;
    app.settings.auth.metrics_token = Some("scrape-token-0123456789".to_owned());
    let settings = app.settings.clone();
    audit_tests::test_app::write_config(&mut app.config_file, &settings);
    let reloaded = app
        .http
        .post(app.url("/reload"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(reloaded.status(), 200);
    let answer = json_body(reloaded).await.to_string();
    assert!(!answer.contains("scrape-token-0123456789"), "{answer}");

    // The expiry is recorded by the background task within about a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    let events = loop {
        let events = collector_events(&app).await;
        if events.iter().any(|(kind, _)| kind == "TokenExpired") {
            break events;
        }
        assert!(Instant::now() < deadline, "no TokenExpired in {events:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let find = |kind: &str, name: Option<&str>| {
        events
            .iter()
            .find(|(found, payload)| {
                found == kind && name.is_none_or(|name| payload["name"] == name)
            })
            .unwrap_or_else(|| panic!("no {kind} {name:?} in {events:?}"))
            .1
            .clone()
    };
    let mode = find("AuthModeChanged", None);
    assert_eq!(
        (
            mode["from"].as_str(),
            mode["to"].as_str(),
            mode["by"].as_str()
        ),
        (Some("off"), Some("tokens"), Some("server"))
    );
    let created = find("TokenCreated", Some("root"));
    assert_eq!(
        (created["by"].as_str(), created["admin"].as_bool()),
        (Some("cli"), Some(true))
    );
    assert_eq!(
        find("TokenCreated", Some("short-lived"))["write"],
        json!(["a"])
    );
    assert_eq!(find("TokenRevoked", Some("auditor"))["by"], "root");
    assert_eq!(find("TokenExpired", Some("short-lived"))["by"], "server");
    let reload = find("ConfigReloaded", None);
    assert_eq!(reload["by"], "root");
    assert_eq!(reload["changed"]["api.max_page_size"]["new"], 500);
    assert_eq!(reload["changed"]["auth.metrics_token"]["new"], "[redacted]");
    let everything = serde_json::to_string(&events).unwrap();
    assert!(!everything.contains("scrape-token-0123456789"));
    assert!(
        !everything.contains("aec_"),
        "a secret in the log: {everything}"
    );

    // The revocation's event names the admin token as its writer, and a reader of
    // the collector's application sees them through the API.
    let writer: Vec<Option<String>> = app
        .database
        .column("SELECT token_name FROM events WHERE event_kind = 'TokenRevoked'")
        .await;
    assert_eq!(writer, [Some("root".to_owned())]);
    let page = json_body(app.get_events_as(&auditor, "?page_size=100").await).await;
    assert_eq!(page["data"].as_array().unwrap().len(), events.len());
}

#[tokio::test]
async fn metrics_behind_a_token_answer_only_with_it() {
    let app = audit_tests::test_app::spawn_app_with(|settings| {
        settings.auth.metrics_token = Some("scrape-token-0123456789".to_owned());
    })
    .await;

    assert_eq!(app.get("/metrics").await.status(), 401);
    let wrong = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth("scrape-token-wrong-000")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth("scrape-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    assert!(right.text().await.unwrap().contains("auth_failures_total"));
    // /health stays open for load balancers.
    assert_eq!(app.get("/health").await.status(), 200);
}

#[tokio::test]
async fn turning_tokens_on_by_reload_is_recorded_as_the_reloaders_change() {
    let mut app = spawn_app().await;
    assert_eq!(app.post_one_event().await, 201);

    let response = app
        .reload_with(|settings| settings.auth.mode = audit_server::settings::AuthMode::Tokens)
        .await;

    assert_eq!(response.status(), 200);
    app.wait_for_tokens().await;
    assert_eq!(app.post_one_event().await, 401);
    // Give the token upkeep a few rounds: it must not record the change again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let changes: Vec<Value> = (collector_events(&app).await.into_iter())
        .filter(|(kind, _)| kind == "AuthModeChanged")
        .map(|(_, payload)| payload)
        .collect();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["from"], "off");
    assert_eq!(changes[0]["to"], "tokens");
    assert_eq!(changes[0]["by"], "loopback");
}

/// Walks every page as `token`, returning each page's payloads, newest first.
async fn pages_as(app: &TestApp, token: &str, page_size: u32) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut query = format!("?page_size={page_size}");
    loop {
        let response = app.get_events_as(token, &query).await;
        assert_eq!(response.status(), 200);
        let page = json_body(response).await;
        pages.push(page["data"].as_array().unwrap().clone());
        match page["next_page"].as_i64() {
            Some(next) => query = format!("?page_size={page_size}&page_token={next}"),
            None => return pages,
        }
        assert!(pages.len() < 10_000, "the walk does not end");
    }
}

/// 100 events: `c` every 25th, `a` the rest; returns the numbers of the `c` events,
/// newest first.
async fn post_with_rare_c(app: &TestApp, writer: &str) -> Vec<u64> {
    let events: Vec<Value> = (0..100u64)
        .map(|n| numbered(if n % 25 == 0 { "c" } else { "a" }, n))
        .collect();
    assert_eq!(
        app.post_events_as(writer, &json!(events)).await.status(),
        201
    );
    vec![75, 50, 25, 0]
}

#[tokio::test]
async fn without_the_index_a_rare_applications_pages_look_at_a_bounded_range_each() {
    let app = spawn_app_with_tokens(|settings| settings.search.max_scan_rows = 10).await;
    let writer = app.writer_of("writer", &["*"]).await;
    let reader = app.reader_of("reader-c", &["c"]).await;
    let expected = post_with_rare_c(&app, &writer).await;
    let indexes = app.state.runtime().repository.search_indexes();
    assert!(!indexes.contains(SearchIndex::Application));
    // Nor search postings to rely on (as before the poster reaches the events).
    let _held = crate::postings::hold_postings_back(&app.database).await;

    let pages = pages_as(&app, &reader, 3).await;

    let seen: Vec<u64> = (pages.iter().flatten())
        .map(|item| item["payload"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(seen, expected);
    // Ten ids a page over the 100 events (and the collector's few): short pages,
    // each continuing below the range the previous one looked at.
    assert!((10..=12).contains(&pages.len()), "{} pages", pages.len());
    assert!(pages.iter().all(|page| page.len() <= 1));
}

#[tokio::test]
async fn with_the_index_a_scoped_readers_pages_are_full() {
    let app = spawn_app_with_tokens(|settings| settings.search.max_scan_rows = 10).await;
    let writer = app.writer_of("writer", &["*"]).await;
    let reader = app.reader_of("reader-c", &["c", "x"]).await;
    let expected = post_with_rare_c(&app, &writer).await;
    app.build_search_indexes(&[SearchIndex::Application]).await;

    assert_full_pages_of_c(&app, &reader, &expected).await;
}

/// No index: the search postings fill a scoped reader's pages.
#[tokio::test]
async fn without_the_index_a_scoped_readers_pages_are_full_from_the_search_postings() {
    let app = spawn_app_with_tokens(|settings| settings.search.max_scan_rows = 10).await;
    let writer = app.writer_of("writer", &["*"]).await;
    let reader = app.reader_of("reader-c", &["c", "x"]).await;
    let expected = post_with_rare_c(&app, &writer).await;
    crate::postings::wait_for_postings(&app.database).await;
    let indexes = app.state.runtime().repository.search_indexes();
    assert!(!indexes.contains(SearchIndex::Application));

    assert_full_pages_of_c(&app, &reader, &expected).await;
}

/// Pages of 3 of the four `c` events: full ones, then the last one.
async fn assert_full_pages_of_c(app: &TestApp, reader: &str, expected: &[u64]) {
    let pages = pages_as(app, reader, 3).await;

    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [3, 1]);
    let seen: Vec<u64> = (pages.iter().flatten())
        .map(|item| item["payload"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(seen, expected);
}
