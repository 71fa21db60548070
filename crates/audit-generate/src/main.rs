//! `audit-generate`: realistic audit events as live HTTP traffic (`traffic`) or as bulk
//! loads straight into PostgreSQL (`bulk`).

mod bulk;
mod fake_events;
mod original_environment;
mod progress;
mod report;
mod traffic;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use argh::FromArgs;
use audit_core::config::{ConfigSource, DatabaseSettings};
use audit_core::timestamp::EventTimestamp;

use crate::fake_events::{
    DEFAULT_APPLICATIONS, DEFAULT_KINDS, EventFactory, Mix, PayloadStyle, Timestamps,
};
use crate::original_environment::TrafficDefaults;
use crate::traffic::{Pace, Stop, TrafficOptions};

/// Generate audit events: HTTP traffic against a server, or bulk loads into PostgreSQL.
#[derive(FromArgs)]
struct Arguments {
    #[argh(subcommand)]
    mode: Mode,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Mode {
    Traffic(TrafficArguments),
    Bulk(BulkArguments),
}

/// Send POST batches (and optionally GET pages) to a running server. The defaults
/// reproduce the original generator: 1000 batches of 10 events, 0.2 s apart.
#[derive(FromArgs)]
#[argh(subcommand, name = "traffic")]
struct TrafficArguments {
    /// server URL, with or without the /api/event path (default $APP_URL, else
    /// http://127.0.0.1:8080)
    #[argh(option)]
    url: Option<String>,
    /// events per POST (default $APP_BATCH_SIZE, else 10)
    #[argh(option)]
    batch_size: Option<usize>,
    /// requests to send (default $APP_ITERATIONS, else 1000); ignored with --duration
    #[argh(option)]
    iterations: Option<u64>,
    /// run for this long instead, e.g. 30s or 5m
    #[argh(option, from_str_fn(parse_duration))]
    duration: Option<Duration>,
    /// pause of each client after each request, seconds or e.g. 200ms (default
    /// $APP_DELAY_S, else 0.2)
    #[argh(option, from_str_fn(parse_duration))]
    delay: Option<Duration>,
    /// target requests per second over all clients; replaces --delay
    #[argh(option)]
    rate: Option<f64>,
    /// concurrent clients (default 1)
    #[argh(option, default = "1")]
    concurrency: usize,
    /// share of requests that GET a page instead of posting, 0 to 1 (default 0)
    #[argh(option, default = "0.0")]
    get_ratio: f64,
    /// page_size of the GETs (default 10)
    #[argh(option, default = "10")]
    page_size: u32,
    /// filters the GETs and tails ask with, as a query string, e.g.
    /// "application_name=billing&event_kind=UserLogin" (default: none)
    #[argh(option)]
    get_filter: Option<String>,
    /// live-tail consumers (GET /api/event/stream) to run alongside, reconnecting
    /// from their last position when a stream ends (default 0)
    #[argh(option, default = "0")]
    tail: usize,
    /// seed of the event stream (default: random, printed in the summary)
    #[argh(option)]
    seed: Option<u64>,
    /// comma-separated application names (default: the original's three)
    #[argh(option)]
    apps: Option<String>,
    /// comma-separated event kinds (default UserLogin,UserCreated,UserLogout)
    #[argh(option)]
    kinds: Option<String>,
    /// payload shape: rich (default) or original ({"username": ...} only)
    #[argh(option, from_str_fn(parse_style), default = "PayloadStyle::Rich")]
    payload: PayloadStyle,
}

/// Load events straight into PostgreSQL with binary COPY.
#[derive(FromArgs)]
#[argh(subcommand, name = "bulk")]
struct BulkArguments {
    /// how many events to load
    #[argh(option)]
    count: u64,
    /// config file whose postgres.dsn names the database (as the server's --config)
    #[argh(option)]
    config: Option<PathBuf>,
    /// database URL; overrides the config
    #[argh(option)]
    dsn: Option<String>,
    /// seed of the event stream (default: random, printed in the summary)
    #[argh(option)]
    seed: Option<u64>,
    /// earliest event_ts, RFC 3339 (default: 30 days before --to)
    #[argh(option)]
    from: Option<String>,
    /// latest event_ts, RFC 3339 (default: now)
    #[argh(option)]
    to: Option<String>,
    /// comma-separated application names (default: the original's three)
    #[argh(option)]
    apps: Option<String>,
    /// comma-separated event kinds (default UserLogin,UserCreated,UserLogout)
    #[argh(option)]
    kinds: Option<String>,
    /// payload shape: rich (default) or original
    #[argh(option, from_str_fn(parse_style), default = "PayloadStyle::Rich")]
    payload: PayloadStyle,
    /// how often each application is picked: uniform (default), or skewed (the n-th
    /// application 1/n as often as the first)
    #[argh(option, from_str_fn(parse_mix), default = "Mix::Uniform")]
    mix: Mix,
    /// rows per COPY statement, each its own transaction (default 1000000)
    #[argh(option, default = "1_000_000")]
    rows_per_copy: u64,
    /// write the rows as a binary COPY file here instead of loading them
    #[argh(option)]
    copy_file: Option<PathBuf>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).map_err(|error| error.to_string());
    }
    humantime::parse_duration(text).map_err(|error| error.to_string())
}

fn parse_mix(text: &str) -> Result<Mix, String> {
    match text {
        "uniform" => Ok(Mix::Uniform),
        "skewed" => Ok(Mix::Skewed),
        other => Err(format!("unknown mix {other:?}: use uniform or skewed")),
    }
}

fn parse_style(text: &str) -> Result<PayloadStyle, String> {
    match text {
        "rich" => Ok(PayloadStyle::Rich),
        "original" => Ok(PayloadStyle::Original),
        other => Err(format!(
            "unknown payload style {other:?}: use rich or original"
        )),
    }
}

fn names(list: Option<&str>, defaults: &[&str]) -> Vec<String> {
    match list {
        Some(list) => list.split(',').map(|name| name.trim().to_owned()).collect(),
        None => defaults.iter().map(|name| name.to_string()).collect(),
    }
}

fn main() -> anyhow::Result<()> {
    let arguments: Arguments = audit_core::cli::arguments_from_env();
    let runtime = tokio::runtime::Runtime::new().context("failed to start the async runtime")?;
    match arguments.mode {
        Mode::Traffic(traffic) => runtime.block_on(run_traffic(traffic)),
        Mode::Bulk(bulk) => runtime.block_on(run_bulk(bulk)),
    }
}

async fn run_traffic(arguments: TrafficArguments) -> anyhow::Result<()> {
    let seed = arguments.seed.unwrap_or_else(fake_events::random_seed);
    let applications = names(arguments.apps.as_deref(), DEFAULT_APPLICATIONS);
    let kinds = names(arguments.kinds.as_deref(), DEFAULT_KINDS);
    let style = arguments.payload;
    // Fail on bad names before sending anything.
    EventFactory::new(seed, &applications, &kinds, Timestamps::Now, style)?;
    // The original's variables are the defaults; flags win over them.
    let defaults = TrafficDefaults::from_variables(|name| std::env::var(name).ok())?;
    let options = TrafficOptions {
        url: arguments.url.unwrap_or(defaults.url),
        batch_size: arguments.batch_size.unwrap_or(defaults.batch_size),
        stop: match arguments.duration {
            Some(duration) => Stop::AfterDuration(duration),
            None => Stop::AfterIterations(arguments.iterations.unwrap_or(defaults.iterations)),
        },
        pace: match arguments.rate {
            Some(rate) => Pace::RequestsPerSecond(rate),
            None => Pace::DelayBetween(arguments.delay.unwrap_or(defaults.delay)),
        },
        concurrency: arguments.concurrency,
        get_ratio: arguments.get_ratio,
        page_size: arguments.page_size,
        get_filter: arguments.get_filter.unwrap_or_default(),
        tails: arguments.tail,
        seed,
        factory: Arc::new(move |worker_seed| {
            Ok(EventFactory::new(
                worker_seed,
                &applications,
                &kinds,
                Timestamps::Now,
                style,
            )?)
        }),
    };
    let summary = traffic::run(options).await?;
    println!("{summary}");
    Ok(())
}

async fn run_bulk(arguments: BulkArguments) -> anyhow::Result<()> {
    let seed = arguments.seed.unwrap_or_else(fake_events::random_seed);
    let to = match &arguments.to {
        Some(text) => EventTimestamp::parse(text).context("invalid --to")?,
        None => EventTimestamp::now(),
    };
    let from = match &arguments.from {
        Some(text) => EventTimestamp::parse(text).context("invalid --from")?,
        None => EventTimestamp::from_offset_date_time(
            to.as_offset_date_time() - time::Duration::days(30),
        )
        .context("--to is too early for the default --from")?,
    };
    if from >= to {
        bail!("--from must be earlier than --to");
    }
    let factory = EventFactory::new(
        seed,
        &names(arguments.apps.as_deref(), DEFAULT_APPLICATIONS),
        &names(arguments.kinds.as_deref(), DEFAULT_KINDS),
        Timestamps::Between(from, to),
        arguments.payload,
    )?
    .with_mix(arguments.mix);
    let options = bulk::BulkOptions {
        count: arguments.count,
        rows_per_copy: arguments.rows_per_copy,
        factory,
    };
    if let Some(path) = &arguments.copy_file {
        let rows = bulk::write_copy_file(options, path)?;
        println!("wrote {rows} rows to {} (seed {seed})", path.display());
        return Ok(());
    }

    let mut settings = ConfigSource::from_command_line(arguments.config)
        .load::<DatabaseSettings>()
        .context("failed to load the configuration")?
        .0
        .postgres;
    if let Some(dsn) = arguments.dsn {
        settings.dsn = dsn;
    }
    let summary = bulk::load(options, &settings).await?;
    let seconds = summary.elapsed.as_secs_f64().max(f64::EPSILON);
    println!(
        "loaded {} rows in {seconds:.2} s: {:.0} rows/s (seed {seed})",
        summary.rows,
        summary.rows as f64 / seconds
    );
    Ok(())
}
