//! `audit-generate traffic`: HTTP load against a running server.
//!
//! Each worker owns an event factory seeded from the run's seed and its own number, so
//! a run with one worker sends exactly the same events for the same seed. Nothing is
//! retried: an injected 500 is what the dashboards are meant to show, so it is counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::fake_events::EventFactory;
use crate::original_environment::base_url;
use crate::progress::Progress;
use crate::report::{TrafficStats, TrafficSummary};

/// When the run stops.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    AfterIterations(u64),
    AfterDuration(Duration),
}

/// How requests are spaced.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// Each worker waits this long after each request (the original: 0.2 s).
    DelayBetween(Duration),
    /// All workers together aim at this many requests per second.
    RequestsPerSecond(f64),
}

pub struct TrafficOptions {
    pub url: String,
    pub batch_size: usize,
    pub stop: Stop,
    pub pace: Pace,
    pub concurrency: usize,
    pub get_ratio: f64,
    pub page_size: u32,
    /// Query parameters of every GET and tail (filters), without the leading `?`.
    pub get_filter: String,
    /// Live-tail consumers run alongside the workers.
    pub tails: usize,
    pub seed: u64,
    /// Builds the factory of worker `n` from a seed derived for it.
    pub factory: Arc<dyn Fn(u64) -> anyhow::Result<EventFactory> + Send + Sync>,
}

struct Shared {
    options: TrafficOptions,
    client: reqwest::Client,
    started: Instant,
    next_iteration: AtomicU64,
    completed: AtomicU64,
}

pub async fn run(options: TrafficOptions) -> anyhow::Result<TrafficSummary> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("failed to build the HTTP client")?;
    let base = base_url(&options.url).to_owned();
    client
        .get(format!("{base}/health"))
        .send()
        .await
        .with_context(|| format!("cannot reach the server at {base}"))?;

    let total = match options.stop {
        Stop::AfterIterations(count) => Some(count),
        Stop::AfterDuration(_) => None,
    };
    let concurrency = options.concurrency.max(1);
    let seed = options.seed;
    let shared = Arc::new(Shared {
        options,
        client,
        started: Instant::now(),
        next_iteration: AtomicU64::new(0),
        completed: AtomicU64::new(0),
    });
    let mut workers = Vec::with_capacity(concurrency);
    for worker in 0..concurrency as u64 {
        let factory = (shared.options.factory)(seed.wrapping_add(worker))?;
        workers.push(tokio::spawn(run_worker(
            Arc::clone(&shared),
            worker,
            factory,
            base.clone(),
        )));
    }

    let tail_events = Arc::new(AtomicU64::new(0));
    let tails: Vec<_> = (0..shared.options.tails)
        .map(|_| {
            tokio::spawn(follow_tail(
                Arc::clone(&shared),
                base.clone(),
                tail_events.clone(),
            ))
        })
        .collect();

    let mut progress = Progress::new("requests", total);
    while !workers.iter().all(|worker| worker.is_finished()) {
        progress.set_position(shared.completed.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    progress.finish();
    for tail in tails {
        tail.abort();
    }

    let mut stats = TrafficStats::default();
    for worker in workers {
        stats.merge(worker.await.context("a traffic worker panicked")?);
    }
    stats.tail_events = tail_events.load(Ordering::Relaxed);
    let summary = TrafficSummary {
        stats,
        elapsed: shared.started.elapsed(),
        seed,
    };
    if summary.stats.responses() == 0 && summary.stats.transport_errors > 0 {
        bail!("the server never answered:\n{summary}");
    }
    Ok(summary)
}

async fn run_worker(
    shared: Arc<Shared>,
    worker: u64,
    mut factory: EventFactory,
    base: String,
) -> TrafficStats {
    let options = &shared.options;
    let mut stats = TrafficStats::default();
    // A separate generator for the GET/POST choice keeps the event stream independent
    // of the get ratio.
    let mut chooser = StdRng::seed_from_u64(options.seed.wrapping_mul(31).wrapping_add(worker));
    let mut page_token: Option<i64> = None;
    let interval = match options.pace {
        Pace::RequestsPerSecond(rate) if rate > 0.0 => {
            Some(Duration::from_secs_f64(options.concurrency as f64 / rate))
        }
        _ => None,
    };
    let mut next_start = Instant::now();
    loop {
        let iteration = shared.next_iteration.fetch_add(1, Ordering::Relaxed);
        let more = match options.stop {
            Stop::AfterIterations(count) => iteration < count,
            Stop::AfterDuration(duration) => shared.started.elapsed() < duration,
        };
        if !more {
            return stats;
        }
        if let Some(interval) = interval {
            tokio::time::sleep_until(next_start.into()).await;
            next_start += interval;
        }

        let started = Instant::now();
        let outcome = if chooser.random_bool(options.get_ratio.clamp(0.0, 1.0)) {
            stats.gets += 1;
            let page = Page {
                size: options.page_size,
                filter: &options.get_filter,
            };
            get_page(&shared.client, &base, page, &mut page_token).await
        } else {
            stats.posts += 1;
            let batch = factory.batch(options.batch_size);
            stats.events_sent += batch.len() as u64;
            let result = shared
                .client
                .post(format!("{base}/api/event"))
                .json(&batch)
                .send()
                .await
                .map(|response| response.status().as_u16());
            if matches!(result, Ok(201)) {
                stats.events_acknowledged += batch.len() as u64;
            }
            result
        };
        stats
            .latencies_micros
            .push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        match outcome {
            Ok(status) => *stats.statuses.entry(status).or_default() += 1,
            Err(_) => stats.transport_errors += 1,
        }
        shared.completed.fetch_add(1, Ordering::Relaxed);

        if let Pace::DelayBetween(delay) = options.pace
            && !delay.is_zero()
        {
            tokio::time::sleep(delay).await;
        }
    }
}

/// What each GET asks for.
#[derive(Clone, Copy)]
struct Page<'a> {
    size: u32,
    filter: &'a str,
}

/// Reads the next page, following `next_page` and starting over after the last one.
async fn get_page(
    client: &reqwest::Client,
    base: &str,
    page: Page<'_>,
    page_token: &mut Option<i64>,
) -> Result<u16, reqwest::Error> {
    let mut url = format!("{base}/api/event?page_size={}", page.size);
    if !page.filter.is_empty() {
        url.push_str(&format!("&{}", page.filter));
    }
    if let Some(token) = page_token {
        url.push_str(&format!("&page_token={token}"));
    }
    let response = client.get(url).send().await?;
    let status = response.status().as_u16();
    if status == 200 {
        let body: serde_json::Value = response.json().await?;
        *page_token = body["next_page"].as_i64();
    }
    Ok(status)
}

/// One live-tail consumer: reads the stream, counting events, and reconnects from its
/// last position (`Last-Event-ID`) whenever it ends, until aborted.
async fn follow_tail(shared: Arc<Shared>, base: String, received: Arc<AtomicU64>) {
    use futures_util::StreamExt;
    // No overall timeout: a stream lasts as long as the run.
    let Ok(client) = reqwest::Client::builder().build() else {
        return;
    };
    let mut last: Option<String> = None;
    loop {
        let mut request = client.get(format!(
            "{base}/api/event/stream?{}",
            shared.options.get_filter
        ));
        if let Some(last) = &last {
            request = request.header("Last-Event-ID", last);
        }
        if let Ok(response) = request.send().await
            && response.status().is_success()
        {
            let mut body = response.bytes_stream();
            let mut text = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = text.find("\n\n") {
                    let message: String = text.drain(..end + 2).collect();
                    if let Some(id) = message.lines().find_map(|line| line.strip_prefix("id: ")) {
                        last = Some(id.to_owned());
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
