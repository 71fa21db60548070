//! Slow, idle and greedy clients cannot exhaust the server.

use std::time::{Duration, Instant};

use audit_tests::test_app::{TestApp, event, json_body, spawn_app_with};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> String {
    let mut received = Vec::new();
    let result = tokio::time::timeout(limit, stream.read_to_end(&mut received)).await;
    assert!(
        result.is_ok(),
        "the server kept the connection open for {limit:?}"
    );
    String::from_utf8_lossy(&received).into_owned()
}

#[tokio::test]
async fn a_trickled_body_is_cut_off_with_408_after_the_body_timeout() {
    let app = spawn_app_with(|settings| settings.http.body_timeout_ms = 500).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"POST /api/event HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n[")
        .await
        .unwrap();
    let started = Instant::now();

    let trickle = async {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if stream.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    trickle.await;
    let response = read_until_closed(&mut stream, Duration::from_secs(5)).await;

    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("body_timeout"), "{response}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(app.database.count_events().await, 0);
}

/// Well above the 300 ms the head-timeout tests configure, well below actix's own
/// default of 5 s: a close in this time shows the configured value at work.
const HEAD_TIMEOUT_EVIDENCE: Duration = Duration::from_secs(2);

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_head_timeout() {
    let app = spawn_app_with(|settings| settings.http.request_head_timeout_ms = 300).await;
    let mut stream = connect(&app).await;

    let started = Instant::now();
    read_until_closed(&mut stream, Duration::from_secs(10)).await;

    assert!(
        started.elapsed() < HEAD_TIMEOUT_EVIDENCE,
        "closed after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_trickled_request_head_is_cut_off() {
    let app = spawn_app_with(|settings| settings.http.request_head_timeout_ms = 300).await;
    let mut stream = connect(&app).await;

    let started = Instant::now();
    for byte in b"GET /api/event HTTP/1.1\r\nHost: x\r\n".iter() {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    read_until_closed(&mut stream, Duration::from_secs(10)).await;

    // The whole head takes 1.75 s to trickle in: a close before that is the timeout.
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "closed after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn many_idle_connections_do_not_stop_real_requests() {
    // 32 connections at once in all; ten times as many idle ones arrive first, and
    // only the head timeout makes room for the real request: they leave in waves of
    // 32 every 500 ms (about 5 s for all), where with actix's default 5 s timeout
    // they would take about 50 s.
    let app = spawn_app_with(|settings| {
        settings.http.workers = 2;
        settings.http.max_connections_per_worker = 16;
        settings.http.request_head_timeout_ms = 500;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(connect(&app).await);
    }

    let response = app
        .http
        .post(app.url("/api/event"))
        .timeout(Duration::from_secs(15))
        .body(serde_json::to_vec(&json!([event("a", json!(1))])).unwrap())
        .send()
        .await
        .expect("the real request did not get through the idle connections");

    assert_eq!(response.status(), 201);
    drop(idle);
}

#[tokio::test]
async fn bodies_beyond_the_memory_budget_wait_then_get_503() {
    let app = spawn_app_with(|settings| {
        settings.api.max_body_bytes = 40 * 1024;
        settings.http.max_inflight_body_bytes = 64 * 1024;
        settings.http.body_memory_wait_ms = 300;
        settings.http.body_timeout_ms = 10_000;
    })
    .await;
    // The first request declares 40 KiB and sends it slowly, holding its share.
    let mut holder = connect(&app).await;
    holder
        .write_all(b"POST /api/event HTTP/1.1\r\nHost: x\r\nContent-Length: 40000\r\n\r\n[")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let body = format!("[{}]", vec![r#"{"x":1}"#; 4000].join(","));
    assert!(body.len() > 30_000 && body.len() < 40 * 1024);
    let response = app.post_raw(body).await;

    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(json_body(response).await["error"], "overloaded");
    drop(holder);
    assert_eq!(app.post_one_event().await, 201);
}

#[tokio::test]
async fn connections_declaring_huge_bodies_do_not_starve_a_small_post() {
    let app = spawn_app_with(|settings| settings.http.body_timeout_ms = 30_000).await;
    // 64 connections declare the largest body and send one byte of it: together they
    // declare 1 GiB, sixteen times the default body budget.
    let mut holders = Vec::new();
    for _ in 0..64 {
        let mut holder = connect(&app).await;
        holder
            .write_all(b"POST /api/event HTTP/1.1\r\nHost: x\r\nContent-Length: 16777216\r\n\r\n[")
            .await
            .unwrap();
        holders.push(holder);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = format!("[{}]", vec![r#"{"event_ts":"2023-12-05T12:55:52Z","application_name":"a","event_kind":"k","payload":1}"#; 13].join(","));
    assert!(body.len() > 1000);

    let response = app.post_raw(body).await;

    assert_eq!(response.status(), 201);
    drop(holders);
}

/// The peak resident memory of a process, from /proc.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib / 1024.0
}

#[tokio::test]
async fn a_flood_of_maximum_size_bodies_keeps_memory_bounded() {
    use audit_tests::server_process::ServerProcess;
    use audit_tests::test_app::{test_settings, write_config};
    use audit_tests::test_database::TestDatabase;

    let database = TestDatabase::create_migrated().await;
    let mut settings = test_settings(&database);
    settings.api.max_body_bytes = 16 * 1024 * 1024;
    settings.http.max_inflight_body_bytes = 32 * 1024 * 1024;
    settings.http.body_memory_wait_ms = 500;
    let mut config = tempfile::NamedTempFile::new().unwrap();
    write_config(&mut config, &settings);
    let server = ServerProcess::start(config.path()).await;
    let before = peak_rss_mib(server.child.id());
    // 16 MiB of JSON whitespace around an empty array: the largest body allowed.
    let mut body = vec![b' '; 16 * 1024 * 1024 - 2];
    body.extend_from_slice(b"[]");
    let body = bytes::Bytes::from(body);

    let requests: Vec<_> = (0..24)
        .map(|_| {
            let url = format!("{}/api/event", server.address);
            let body = body.clone();
            tokio::spawn(async move {
                reqwest::Client::new()
                    .post(url)
                    .body(body)
                    .send()
                    .await
                    .map(|response| response.status().as_u16())
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for request in requests {
        statuses.push(request.await.unwrap());
    }

    let peak = peak_rss_mib(server.child.id());
    let answered: Vec<u16> = statuses
        .iter()
        .filter_map(|status| status.as_ref().ok().copied())
        .collect();
    assert!(
        answered.iter().all(|status| matches!(status, 201 | 503)),
        "{statuses:?}"
    );
    assert!(answered.contains(&201), "{statuses:?}");
    // 24 bodies of 16 MiB are 384 MiB; the budget lets 32 MiB in at once. Without
    // the budget this grows by several hundred MiB.
    assert!(
        peak - before < 100.0,
        "peak RSS grew from {before:.0} to {peak:.0} MiB"
    );
}

/// The first bytes the server answers on `stream`, within five seconds.
async fn first_answer(stream: &mut TcpStream) -> String {
    let mut buffer = vec![0; 256];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .expect("no answer to the request head")
        .unwrap();
    String::from_utf8_lossy(&buffer[..read]).into_owned()
}

#[tokio::test]
async fn an_expectation_of_a_body_over_the_limit_gets_413_instead_of_100_continue() {
    let app = spawn_app_with(|_| {}).await;
    let mut stream = connect(&app).await;

    stream
        .write_all(
            b"POST /api/event HTTP/1.1\r\nHost: x\r\nContent-Length: 16777217\r\n\
              Expect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();

    let answer = first_answer(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
}

#[tokio::test]
async fn an_expectation_of_a_body_within_the_limit_gets_100_continue_then_201() {
    let app = spawn_app_with(|_| {}).await;
    let mut stream = connect(&app).await;
    let body = r#"[{"event_ts":"2023-12-05T12:55:52Z","application_name":"a","event_kind":"k","payload":1}]"#;
    let head = format!(
        "POST /api/event HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );

    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = first_answer(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 100 Continue"), "{answer}");
    stream.write_all(body.as_bytes()).await.unwrap();

    let answer = first_answer(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
}
