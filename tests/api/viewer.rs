//! The viewer at `/ui`, in a real browser (headless Chromium over WebDriver): what it
//! shows is what the API answers for the same query, page after page and filter by
//! filter; the page asks nothing of any other host; following shows every event once
//! across a server restart; a proof is checked in the browser and a tampered event
//! fails it; a read token sees only its applications.

use std::collections::BTreeSet;
use std::time::Duration;

use audit_tests::browser::Browser;
use audit_tests::sealing::SealingKey;
use audit_tests::server_process::ServerProcess;
use audit_tests::test_app::{TestApp, json_body, spawn_app, spawn_app_with, spawn_app_with_tokens};
use audit_tests::test_database::TestDatabase;
use fantoccini::Locator;
use fantoccini::key::Key;
use serde_json::{Value, json};

const APPLICATIONS: [&str; 3] = ["alpha", "beta", "gamma"];
const KINDS: [&str; 3] = ["Login", "Logout", "Upload"];

/// `count` events over three applications, three kinds, a month of days and four
/// users, in one batch.
fn varied_events(count: usize) -> Value {
    let events: Vec<Value> = (0..count)
        .map(|n| {
            json!({
                "event_ts": format!("2026-01-{:02}T{:02}:00:00.{:06}Z", 1 + n % 28, n % 24, n),
                "application_name": APPLICATIONS[n % 3],
                "event_kind": KINDS[(n / 3) % 3],
                "payload": {"user": format!("user_{}", n % 4), "n": n},
            })
        })
        .collect();
    Value::Array(events)
}

async fn api_ids(app_address: &str, query: &str, token: Option<&str>) -> Vec<i64> {
    let mut request = reqwest::Client::new().get(format!("{app_address}/api/event?{query}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let page = json_body(request.send().await.unwrap()).await;
    ids_of(&page)
}

fn ids_of(page: &Value) -> Vec<i64> {
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page}"))
        .iter()
        .map(|event| event["id"].as_i64().unwrap())
        .collect()
}

/// The query of a location or URL as sorted name-value pairs.
fn query_pairs(location: &str) -> Vec<(String, String)> {
    let url = reqwest::Url::parse(&format!("http://viewer{location}")).unwrap();
    let mut pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    pairs.sort();
    pairs
}

/// Forgets the last load's status, so that the next wait sees the next load.
async fn forget_status(browser: &Browser) {
    browser
        .run(
            "document.getElementById('status').textContent = '';",
            vec![],
        )
        .await;
}

#[tokio::test]
async fn the_viewer_pages_as_the_api_does_and_requests_nothing_from_another_host() {
    let app = spawn_app().await;
    assert_eq!(app.post_events(&varied_events(25)).await.status(), 201);
    let browser = Browser::start().await;

    browser.open(&app.url("/ui")).await;
    let first = api_ids(&app.address, "", None).await;
    assert_eq!(first.len(), 10);
    assert_eq!(browser.loaded_row_ids().await, first, "the first page");

    // Older, then back: the API's own tokens, in the page's URL.
    let page = json_body(app.get_events("").await).await;
    let token = page["next_page"].as_i64().unwrap();
    forget_status(&browser).await;
    browser.click("next").await;
    let second = api_ids(&app.address, &format!("page_token={token}"), None).await;
    assert_eq!(browser.loaded_row_ids().await, second, "the second page");
    assert_eq!(
        query_pairs(&browser.location().await),
        vec![("page_token".to_owned(), token.to_string())]
    );
    forget_status(&browser).await;
    browser.click("previous").await;
    assert_eq!(browser.loaded_row_ids().await, first, "back to the first");
    assert_eq!(browser.location().await, "/ui");

    // Keyboard only: a row opens with Enter, and Escape closes it.
    let row = browser
        .client
        .find(Locator::Css("#events tbody tr"))
        .await
        .unwrap();
    browser
        .run(
            "document.querySelector('#events tbody tr').focus();",
            vec![],
        )
        .await;
    row.send_keys(&char::from(Key::Enter).to_string())
        .await
        .unwrap();
    browser
        .wait_for(
            "the event opened",
            "return !document.getElementById('detail').hidden;",
        )
        .await;
    assert_eq!(browser.text_of("detail-id").await, first[0].to_string());
    let payload: Value = serde_json::from_str(&browser.text_of("detail-payload").await).unwrap();
    assert_eq!(payload, page["data"][0]["payload"]);
    assert!(
        browser
            .text_of("detail-curl")
            .await
            .starts_with(&format!("curl -s '{}/api/event", app.address))
    );
    let close = browser
        .client
        .find(Locator::Id("close-detail"))
        .await
        .unwrap();
    close
        .send_keys(&char::from(Key::Escape).to_string())
        .await
        .unwrap();
    browser
        .wait_for(
            "the event closed",
            "return document.getElementById('detail').hidden;",
        )
        .await;

    let requested = browser.requested_urls().await;
    for wanted in [
        "/ui",
        "/ui/viewer.js",
        "/ui/viewer.css",
        "/ui/settings.json",
    ] {
        assert!(
            requested.contains(&app.url(wanted)),
            "{wanted} was not requested: {requested:?}"
        );
    }
    assert!(
        requested
            .iter()
            .any(|url| url.contains("/api/event?page_token="))
    );
    let elsewhere: Vec<&String> = requested
        .iter()
        .filter(|url| !url.starts_with(&format!("{}/", app.address)))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "requests beyond the server: {elsewhere:?}"
    );

    if let Ok(path) = std::env::var("AUDIT_UI_SCREENSHOT") {
        browser.open(&app.url("/ui?page_size=20")).await;
        browser.loaded_row_ids().await;
        std::fs::write(path, browser.client.screenshot().await.unwrap()).unwrap();
    }
}

#[tokio::test]
async fn each_filter_shows_the_api_answer_lives_in_the_url_and_exports_the_same() {
    let app = spawn_app().await;
    assert_eq!(app.post_events(&varied_events(60)).await.status(), 201);
    let browser = Browser::start().await;
    browser.open(&app.url("/ui")).await;
    browser.loaded_row_ids().await;

    // (field, typed text) in the form, and the API query they stand for.
    let cases: [(&[(&str, &str)], &str); 6] = [
        (
            &[("application_name", "alpha, gamma")],
            "application_name=alpha&application_name=gamma",
        ),
        (&[("event_kind", "Logout")], "event_kind=Logout"),
        (
            &[
                ("since", "2026-01-05T00:00:00Z"),
                ("until", "2026-01-12T00:00:00Z"),
            ],
            "since=2026-01-05T00%3A00%3A00Z&until=2026-01-12T00%3A00%3A00Z",
        ),
        (
            &[("payload_contains", r#"{"user":"user_2"}"#)],
            "payload_contains=%7B%22user%22%3A%22user_2%22%7D",
        ),
        (
            &[("application_name", "beta"), ("page_size", "25")],
            "application_name=beta&page_size=25",
        ),
        (
            &[("event_kind", "Upload"), ("order", "asc")],
            "event_kind=Upload&order=asc",
        ),
    ];
    for (fields, query) in cases {
        for field in [
            "application_name",
            "event_kind",
            "since",
            "until",
            "payload_contains",
            "page_size",
        ] {
            browser.fill(field, "").await;
        }
        browser
            .run("document.getElementById('order').value = 'desc';", vec![])
            .await;
        for (field, text) in fields {
            if *field == "order" {
                browser
                    .run(
                        "document.getElementById('order').value = arguments[0];",
                        vec![json!(text)],
                    )
                    .await;
            } else {
                browser.fill(field, text).await;
            }
        }
        forget_status(&browser).await;
        browser.click("apply").await;
        let expected = api_ids(&app.address, query, None).await;
        assert!(
            !expected.is_empty(),
            "{query} matches nothing: a useless case"
        );
        assert_eq!(browser.loaded_row_ids().await, expected, "rows for {query}");
        let location = browser.location().await;
        assert_eq!(
            query_pairs(&location),
            query_pairs(&format!("/ui?{query}")),
            "the URL of {query}"
        );

        // The link, opened afresh, is the same view.
        browser.open(&app.url(&location)).await;
        assert_eq!(
            browser.loaded_row_ids().await,
            expected,
            "{location} shared"
        );

        // The export link carries the same filters, and exports every match.
        let href = browser
            .run(
                "return document.getElementById('export-ndjson').getAttribute('href');",
                vec![],
            )
            .await;
        let href = href.as_str().unwrap().to_owned();
        let filters_only: Vec<(String, String)> = query_pairs(&format!("/ui?{query}"))
            .into_iter()
            .filter(|(name, _)| name != "order" && name != "page_size")
            .chain([("format".to_owned(), "ndjson".to_owned())])
            .collect();
        let mut filters_only = filters_only;
        filters_only.sort();
        assert!(href.starts_with("/api/event/export?"), "{href}");
        assert_eq!(query_pairs(&href), filters_only, "the export of {query}");
        let exported = app.get(&href).await.text().await.unwrap();
        let every_match = format!("{}&page_size=1000", query.replace("&page_size=25", ""));
        let all = api_ids(&app.address, &every_match, None).await;
        assert_eq!(exported.lines().count(), all.len(), "export of {query}");
    }

    // A bad filter is the API's own 422, said on the page.
    browser.fill("since", "yesterday").await;
    forget_status(&browser).await;
    browser.click("apply").await;
    browser
        .wait_for(
            "the invalid query",
            "return document.getElementById('status').textContent.includes('since');",
        )
        .await;
    assert!(browser.text_of("status").await.starts_with("422"));
}

/// A browser on the viewer at `url`, following the live tail.
async fn following(url: &str) -> Browser {
    let browser = Browser::start().await;
    browser.open(url).await;
    browser.loaded_row_ids().await;
    browser.click("follow").await;
    browser
        .wait_for(
            "following",
            "return document.body.dataset.follow === 'live';",
        )
        .await;
    browser
}

async fn post_batch(http: &reqwest::Client, address: &str, from: usize, count: usize) {
    let events: Vec<Value> = (from..from + count)
        .map(|n| {
            json!({
                "event_ts": time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap(),
                "application_name": APPLICATIONS[n % 3],
                "event_kind": "Login",
                "payload": {"n": n},
            })
        })
        .collect();
    let response = http
        .post(format!("{address}/api/event"))
        .json(&events)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn following_shows_every_event_once_across_a_server_restart() {
    let database = TestDatabase::create_migrated().await;
    let key = SealingKey::new("audit.test/log");
    let config = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(config.path(), key.config_text(&database.settings.dsn)).unwrap();
    let mut server = ServerProcess::start(config.path()).await;
    let writer = ServerProcess::start(config.path()).await;
    let http = reqwest::Client::new();
    // Events from before the viewer opened: on its first page, never twice.
    post_batch(&http, &writer.address, 0, 5).await;

    let browser = following(&format!("{}/ui", server.address)).await;

    let port = server.address.rsplit(':').next().unwrap().to_owned();
    let restart = async || {
        ServerProcess::start_with_environment(
            config.path(),
            &[("APP_LOG__LEVEL", "warn"), ("APP_PORT", &port)],
        )
        .await
    };
    let mut posted = 5;

    // A drop at once, likely before the first event reached the viewer: it resumes
    // from where its stream started, which the stream announced.
    post_batch(&http, &writer.address, posted, 7).await;
    posted += 7;
    server.signal("KILL");
    server.wait_for_exit(Duration::from_secs(10)).await;
    post_batch(&http, &writer.address, posted, 7).await;
    posted += 7;
    server = restart().await;

    for _ in 0..4 {
        post_batch(&http, &server.address, posted, 7).await;
        posted += 7;
    }
    let shown = format!("return document.querySelectorAll('#events tbody tr').length >= {posted};");
    browser.wait_for("the events posted so far", &shown).await;

    // The viewer's server goes away while another keeps taking events, then comes
    // back on the same address; the viewer resumes where it stopped.
    server.signal("TERM");
    server.wait_for_exit(Duration::from_secs(10)).await;
    browser
        .wait_for(
            "the viewer reconnecting",
            "return document.body.dataset.follow === 'reconnecting';",
        )
        .await;
    for _ in 0..3 {
        post_batch(&http, &writer.address, posted, 7).await;
        posted += 7;
    }
    server = restart().await;
    for _ in 0..3 {
        post_batch(&http, &server.address, posted, 7).await;
        posted += 7;
    }

    let stored = api_ids(&server.address, "page_size=1000", None).await;
    assert_eq!(stored.len(), posted);
    let wanted = stored.len();
    browser
        .wait_for(
            "every event",
            &format!("return document.querySelectorAll('#events tbody tr').length >= {wanted};"),
        )
        .await;
    // A moment more, for any duplicate to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let shown = browser.row_ids().await;
    let distinct: BTreeSet<i64> = shown.iter().copied().collect();
    assert_eq!(
        shown.len(),
        distinct.len(),
        "an event shown twice: {shown:?}"
    );
    assert_eq!(
        distinct,
        stored.iter().copied().collect(),
        "every event, once"
    );
    let status = browser.text_of("follow-status").await;
    assert!(status.contains("behind now"), "{status}");
}

#[tokio::test]
async fn verify_checks_an_event_in_the_browser_and_a_tampered_one_fails() {
    let key = SealingKey::new("audit.test/log");
    let app = spawn_app_with(|settings| {
        key.apply(settings);
        settings.integrity.verifier_key = Some(key.verifier.clone());
    })
    .await;
    assert_eq!(app.post_events(&varied_events(12)).await.status(), 201);
    app.wait_for_checkpoint(&key, 12).await;
    let id = api_ids(&app.address, "", None).await[3];
    let browser = Browser::start().await;

    let verify = async |verifier: Option<&str>| -> (String, String) {
        browser.open(&app.url("/ui")).await;
        browser.loaded_row_ids().await;
        browser
            .client
            .find(Locator::Css(&format!("#events tr[data-id='{id}']")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        if let Some(verifier) = verifier {
            browser.fill("verifier-key", verifier).await;
        }
        browser.click("verify").await;
        let class = browser
            .wait_for(
                "a verdict",
                "const c = document.getElementById('verify-result').className; \
                 return c === '' ? null : c;",
            )
            .await;
        (
            class.as_str().unwrap().to_owned(),
            browser.text_of("verify-result").await,
        )
    };

    let (verdict, report) = verify(None).await;
    assert_eq!(verdict, "verified", "{report}");
    assert!(report.starts_with("VERIFIED"), "{report}");
    assert_eq!(report.matches("PASS").count(), 4, "{report}");

    let stranger = SealingKey::new("audit.test/log");
    let (verdict, report) = verify(Some(&stranger.verifier)).await;
    assert_eq!(verdict, "failed", "another key: {report}");
    assert!(report.contains("FAIL  the checkpoint"), "{report}");

    app.database
        .client()
        .await
        .execute(
            &format!(
                "UPDATE events SET payload = jsonb_set(payload::jsonb, '{{user}}', '\"mallory\"')::json WHERE id = {id}"
            ),
            &[],
        )
        .await
        .unwrap();
    let (verdict, report) = verify(None).await;
    assert_eq!(verdict, "failed", "a tampered event: {report}");
    assert!(
        report.contains("FAIL  the event as stored hashes to the leaf sealed"),
        "{report}"
    );
    assert!(
        report.contains("PASS  the leaf content is the event shown"),
        "{report}"
    );
}

#[tokio::test]
async fn with_tokens_the_viewer_asks_for_one_and_shows_only_what_it_may_read() {
    let app: TestApp = spawn_app_with_tokens(|_| {}).await;
    let writer = app.writer_of("writer", &APPLICATIONS).await;
    let response = app.post_events_as(&writer, &varied_events(30)).await;
    assert_eq!(response.status(), 201);
    let reader = app.reader_of("viewer", &["beta"]).await;
    let browser = Browser::start().await;

    browser.open(&app.url("/ui")).await;
    browser
        .wait_for(
            "the token form",
            "return !document.getElementById('token-form').hidden \
             && document.getElementById('status').textContent.startsWith('401');",
        )
        .await;
    browser.fill("token", &reader).await;
    forget_status(&browser).await;
    browser.click("use-token").await;
    let expected = ids_of(&json_body(app.get_events_as(&reader, "").await).await);
    assert_eq!(expected.len(), 10);
    assert_eq!(browser.loaded_row_ids().await, expected);
    let applications = browser
        .run(
            "return [...document.querySelectorAll('#events tbody tr td:nth-child(2)')]\
             .map((cell) => cell.textContent);",
            vec![],
        )
        .await;
    assert!(
        applications
            .as_array()
            .unwrap()
            .iter()
            .all(|name| name == "beta"),
        "{applications}"
    );
    let stored = browser
        .run(
            "return [sessionStorage.getItem('audit-viewer-token'), localStorage.length, \
             document.cookie];",
            vec![],
        )
        .await;
    assert_eq!(stored, json!([reader, 0, ""]), "the token stays in the tab");
}

#[tokio::test]
async fn a_fast_stream_moves_nothing_in_view_and_keeps_at_most_500_rows() {
    let key = SealingKey::new("audit.test/log");
    let app = spawn_app_with(|settings| key.apply(settings)).await;
    assert_eq!(app.post_events(&varied_events(60)).await.status(), 201);
    let browser = following(&app.url("/ui?page_size=60")).await;

    // The reader has scrolled down to a row; a fast stream arrives above it.
    let anchor = browser
        .run(
            "window.scrollTo(0, 600); \
             const row = document.elementFromPoint(300, 450).closest('tr'); \
             return [Number(row.dataset.id), row.getBoundingClientRect().top];",
            vec![],
        )
        .await;
    let http = reqwest::Client::new();
    let mut posted = 60;
    for _ in 0..4 {
        post_batch(&http, &app.address, posted, 50).await;
        posted += 50;
    }
    browser
        .wait_for(
            "the new events",
            &format!("return document.querySelectorAll('#events tbody tr').length === {posted};"),
        )
        .await;
    let moved = browser
        .run(
            "const row = document.querySelector(`#events tr[data-id='${arguments[0]}']`); \
             return row.getBoundingClientRect().top;",
            vec![anchor[0].clone()],
        )
        .await;
    let (before, after) = (anchor[1].as_f64().unwrap(), moved.as_f64().unwrap());
    assert!(
        (before - after).abs() < 1.0,
        "the row in view moved from {before} to {after} px"
    );

    // Past 500 rows the oldest leave: the newest 500, newest first.
    for _ in 0..8 {
        post_batch(&http, &app.address, posted, 50).await;
        posted += 50;
    }
    let newest = api_ids(&app.address, "page_size=1", None).await[0];
    browser
        .wait_for(
            "the newest event on top",
            &format!(
                "const row = document.querySelector('#events tbody tr'); \
                 return row !== null && row.dataset.id === '{newest}';"
            ),
        )
        .await;
    let shown = browser.row_ids().await;
    assert_eq!(shown.len(), 500, "rows kept");
    let stored = api_ids(&app.address, "page_size=1000", None).await;
    let mut newest_500: Vec<i64> = stored[..500].to_vec();
    let mut shown_sorted = shown.clone();
    newest_500.sort_unstable();
    shown_sorted.sort_unstable();
    assert_eq!(shown_sorted, newest_500, "the newest 500");
}
