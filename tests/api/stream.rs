//! The live tail, `GET /api/event/stream`: every committed event once, in the sealed
//! order, across reconnects (`Last-Event-ID`), a server restart and two servers
//! writing with rolled-back transactions in between; filters; a client that stops
//! reading is let go; at most `stream.max_clients` at once.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use audit_tests::sealing::SealingKey;
use audit_tests::server_process::ServerProcess;
use audit_tests::test_app::{event, spawn_app_with};
use audit_tests::test_database::TestDatabase;
use futures_util::StreamExt;
use serde_json::{Value, json};

/// One Server-Sent Event: its id (the position) and its data.
#[derive(Debug)]
struct Sent {
    position: u64,
    event: Value,
}

/// Reads a stream until `wanted` events came or `patience` passed without one; what
/// came after the `wanted`th is dropped, as a client that left there would.
async fn read_stream(response: reqwest::Response, wanted: usize, patience: Duration) -> Vec<Sent> {
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let mut sent = Vec::new();
    while sent.len() < wanted {
        let Ok(Some(chunk)) = tokio::time::timeout(patience, body.next()).await else {
            break;
        };
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(end) = text.find("\n\n") {
            let message: String = text.drain(..end + 2).collect();
            let mut position = None;
            let mut data = None;
            for line in message.lines() {
                if let Some(id) = line.strip_prefix("id: ") {
                    position = Some(id.parse().unwrap());
                } else if let Some(json) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str(json).unwrap());
                }
            }
            if let (Some(position), Some(event)) = (position, data) {
                sent.push(Sent { position, event });
            }
        }
    }
    sent.truncate(wanted);
    sent
}

async fn open(
    http: &reqwest::Client,
    address: &str,
    query: &str,
    last: Option<u64>,
) -> reqwest::Response {
    let mut request = http.get(format!("{address}/api/event/stream?{query}"));
    if let Some(last) = last {
        request = request.header("Last-Event-ID", last.to_string());
    }
    request.send().await.unwrap()
}

async fn post(http: &reqwest::Client, address: &str, application: &str, count: usize, tag: &str) {
    let body: Vec<Value> = (0..count)
        .map(|n| event(application, json!({"tag": tag, "n": n})))
        .collect();
    let response = http
        .post(format!("{address}/api/event"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn a_consumer_that_reconnects_across_a_restart_gets_every_event_once_in_order() {
    let database = TestDatabase::create_migrated().await;
    let key = SealingKey::new("audit.test/log");
    let config = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(config.path(), key.config_text(&database.settings.dsn)).unwrap();
    let mut servers = [
        ServerProcess::start(config.path()).await,
        ServerProcess::start(config.path()).await,
    ];
    let http = reqwest::Client::new();
    // From the start of the tree: nothing is sealed yet.
    let first = open(&http, &servers[0].address, "", None).await;

    let addresses: Vec<String> = servers
        .iter()
        .map(|server| server.address.clone())
        .collect();
    let write = |round: usize| {
        let (http, addresses) = (http.clone(), addresses.clone());
        async move {
            for (at, address) in addresses.iter().enumerate() {
                post(
                    &http,
                    address,
                    &format!("app-{at}"),
                    1 + round % 5,
                    &round.to_string(),
                )
                .await;
            }
        }
    };
    let rolled_back = || async {
        database
            .client()
            .await
            .batch_execute(
                "BEGIN; INSERT INTO events (event_ts, application_name, event_kind, payload) \
                 VALUES (now(), 'rolled-back', 'k', '{}'); ROLLBACK",
            )
            .await
            .unwrap();
    };
    for round in 0..10 {
        futures_util::future::join(write(round), rolled_back()).await;
    }
    let mut got = read_stream(first, 20, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 20);

    // The consumer left; server 0 restarts while both keep being written through.
    servers[0].signal("TERM");
    servers[0].wait_for_exit(Duration::from_secs(10)).await;
    for round in 10..20 {
        post(
            &http,
            &servers[1].address,
            "app-1",
            1 + round % 5,
            &round.to_string(),
        )
        .await;
        rolled_back().await;
    }
    servers[0] = ServerProcess::start(config.path()).await;
    let last = got.last().unwrap().position;
    let resumed = open(&http, &servers[1].address, "", Some(last)).await;
    got.extend(read_stream(resumed, 15, Duration::from_secs(10)).await);
    let addresses: Vec<String> = servers
        .iter()
        .map(|server| server.address.clone())
        .collect();
    for round in 20..30 {
        for (at, address) in addresses.iter().enumerate() {
            post(&http, address, &format!("app-{at}"), 2, &round.to_string()).await;
        }
    }
    let total = usize::try_from(database.count_events().await).unwrap();
    let last = got.last().unwrap().position;
    let resumed = open(&http, &servers[0].address, "", Some(last)).await;
    got.extend(read_stream(resumed, total - got.len(), Duration::from_secs(10)).await);

    let positions: Vec<u64> = got.iter().map(|sent| sent.position).collect();
    assert_eq!(
        positions,
        (0..total as u64).collect::<Vec<_>>(),
        "every leaf once, in order"
    );
    let ids: BTreeSet<i64> = got
        .iter()
        .map(|sent| sent.event["id"].as_i64().unwrap())
        .collect();
    let committed: Vec<i64> = database.column("SELECT id FROM events ORDER BY id").await;
    assert_eq!(ids.into_iter().collect::<Vec<_>>(), committed);
    assert!(
        got.iter()
            .all(|sent| sent.event["application_name"] != "rolled-back")
    );
    // The order is the tree's: each position's event is that leaf's.
    let sealed: Vec<i64> = database
        .column(
            "SELECT ('x' || encode(substring(records FROM (p - 1) * 32 + 1 FOR 8), 'hex'))::bit(64)::bigint \
             FROM tree_leaves, generate_series(1, length(records) / 32) AS p ORDER BY tile, p",
        )
        .await;
    let streamed: Vec<i64> = got
        .iter()
        .map(|sent| sent.event["id"].as_i64().unwrap())
        .collect();
    assert_eq!(streamed, sealed);
}

#[tokio::test]
async fn a_filtered_stream_sends_only_matching_events_and_resumes_with_after() {
    let key = SealingKey::new("audit.test/log");
    let app = spawn_app_with(|settings| key.apply(settings)).await;
    let http = reqwest::Client::new();
    let stream = open(
        &http,
        &app.address,
        "application_name=b&event_kind=UserLogin",
        None,
    )
    .await;
    for round in 0..5 {
        post(&http, &app.address, "a", 3, &round.to_string()).await;
        post(&http, &app.address, "b", 2, &round.to_string()).await;
    }
    let got = read_stream(stream, 10, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 10);
    assert!(got.iter().all(|sent| sent.event["application_name"] == "b"));
    // `after` is the Last-Event-ID of clients that cannot send headers.
    let after = got[4].position;
    let again = open(
        &http,
        &app.address,
        &format!("application_name=b&after={after}"),
        None,
    )
    .await;
    let rest = read_stream(again, 5, Duration::from_secs(10)).await;
    let positions: Vec<u64> = rest.iter().map(|sent| sent.position).collect();
    let expected: Vec<u64> = got[5..].iter().map(|sent| sent.position).collect();
    assert_eq!(positions, expected);

    let bad = open(&http, &app.address, "after=minus-one", None).await;
    assert_eq!(bad.status(), 422);
    let bad = open(&http, &app.address, "", Some(0)).await;
    assert_eq!(bad.status(), 200);
}

/// A stream of rare events among many others: its reads look at many leaves but hand
/// on only candidates (`tail::ReadLimits`), so matches far apart, and more than one
/// read's worth of events, must all arrive once, in the tree's order; an unfiltered
/// stream over the same leaves gets every position, each once.
#[tokio::test]
async fn rare_matches_among_many_leaves_all_arrive_in_order() {
    let key = SealingKey::new("audit.test/log");
    let app = spawn_app_with(|settings| key.apply(settings)).await;
    let http = reqwest::Client::new();
    // From the start of the tree: nothing is sealed yet.
    let all = open(&http, &app.address, "", None).await;
    let rare = open(
        &http,
        &app.address,
        "application_name=rare&application_name=also-rare&event_kind=UserLogin",
        None,
    )
    .await;
    let mut expected = Vec::new();
    let mut total = 0;
    for round in 0..12 {
        // 900 others between matches: ten rounds are more leaves than a read scans.
        post(&http, &app.address, "noise", 900, &round.to_string()).await;
        let application = if round % 2 == 0 { "rare" } else { "also-rare" };
        let body = json!([
            {"event_ts": "2023-12-05T12:55:52.805022Z", "application_name": application,
             "event_kind": "UserLogin", "payload": {"tag": round}},
            {"event_ts": "2023-12-05T12:55:52.805022Z", "application_name": application,
             "event_kind": "UserLogout", "payload": {"tag": round}},
        ]);
        let response = http
            .post(format!("{}/api/event", app.address))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        expected.push((application.to_owned(), i64::from(round)));
        total += 902;
    }
    let got = read_stream(rare, expected.len() + 1, Duration::from_secs(3)).await;
    let found: Vec<(String, i64)> = got
        .iter()
        .map(|sent| {
            assert_eq!(sent.event["event_kind"], "UserLogin");
            (
                sent.event["application_name"].as_str().unwrap().to_owned(),
                sent.event["payload"]["tag"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(found, expected);
    assert!(
        got.windows(2)
            .all(|pair| pair[0].position < pair[1].position)
    );

    let every = read_stream(all, total + 1, Duration::from_secs(3)).await;
    assert_eq!(every.len(), total);
    let out_of_place = (every.iter().enumerate()).find(|(at, sent)| sent.position != *at as u64);
    assert!(out_of_place.is_none(), "{out_of_place:?}");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_let_go_and_streams_are_limited() {
    let key = SealingKey::new("audit.test/log");
    let app = spawn_app_with(|settings| {
        key.apply(settings);
        settings.stream.max_clients = 1;
        settings.stream.max_send_wait_ms = 300;
    })
    .await;
    let http = reqwest::Client::new();
    let stalled = open(&http, &app.address, "", None).await;
    assert_eq!(stalled.status(), 200);
    let second = open(&http, &app.address, "", None).await;
    assert_eq!(second.status(), 503);

    // Far more than the socket buffers and the stream's queue hold, never read.
    for start in (0..20_000).step_by(2_000) {
        let events: Vec<Value> = (start..start + 2_000)
            .map(|n| event("bulk", json!({"n": n, "padding": "x".repeat(1_000)})))
            .collect();
        app.post_events(&Value::Array(events)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = app.metrics_text().await;
        if metrics.contains("stream_disconnects_total{reason=\"slow\"} 1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled stream was kept: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(stalled);
    // Its place is free again.
    assert_eq!(open(&http, &app.address, "", None).await.status(), 200);

    let unsealed = spawn_app_with(|_| {}).await;
    let refused = open(&http, &unsealed.address, "", None).await;
    assert_eq!(refused.status(), 404);
}

#[tokio::test]
async fn integrity_on_without_a_key_seals_for_the_tail_and_signs_nothing() {
    let app = spawn_app_with(|settings| {
        settings.integrity.enabled = Some(true);
        settings.integrity.seal_interval_ms = 20;
    })
    .await;
    let http = reqwest::Client::new();
    let stream = open(&http, &app.address, "", None).await;
    post(&http, &app.address, "a", 3, "unsigned").await;

    let got = read_stream(stream, 3, Duration::from_secs(10)).await;
    let positions: Vec<u64> = got.iter().map(|sent| sent.position).collect();
    assert_eq!(positions, [0, 1, 2]);
    let checkpoint = app.get("/api/checkpoint").await;
    assert_eq!(checkpoint.status(), 404);
    let notes: Vec<i64> = app
        .database
        .column("SELECT count(*) FROM tree_checkpoints")
        .await;
    assert_eq!(notes, [0]);
}
