//! `cargo xtask bench-partitions`: ingest as the log grows, and writers while retention
//! drops a partition (issue 16).
//!
//! 1. 100-event POSTs (32 clients) into an empty partitioned table.
//! 2. `audit-generate bulk` loads the grown table (50M events; timed, with its size).
//! 3. 100-event POSTs again, on the grown table: the ratio to (1).
//! 4. A run during which the largest closed partition is aged past
//!    `retention.max_age_days`, so that the server detaches and drops it under the
//!    load: its p99 against (3)'s.
//!
//! Each measured run follows an unreported 5 s warm-up on the same server (the empty
//! table is emptied again after it). The raw COPY ceiling is measured before and
//! after, in the same run. The figures go
//! to BENCHMARKS.md between their own markers.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::bench::{
    BenchEnvironment, PORT, fresh_database, measure_ceiling, post_script, psql_value, start_server,
    write_report_section, write_server_config,
};
use crate::command::run_checked;
use crate::wrk::{WrkResult, run_wrk, wrk_command};

const DATABASE: &str = "audit_bench_partitions";
const CLIENTS: u32 = 32;
/// When, into the run under drop, the partition is aged.
const DROP_AFTER: Duration = Duration::from_secs(2);
/// The unreported run before each measured one.
const WARM_UP_SECONDS: u32 = 5;

pub struct PartitionPlan {
    pub grown_rows: u64,
    pub ceiling_rows: u64,
    pub ingest_seconds: u32,
    pub output: Option<PathBuf>,
}

impl PartitionPlan {
    pub fn full(output: Option<PathBuf>) -> Self {
        Self {
            grown_rows: 50_000_000,
            ceiling_rows: 1_000_000,
            ingest_seconds: 15,
            output,
        }
    }

    /// Seconds long: the first partition (a million ids) filled, then dropped.
    pub fn smoke() -> Self {
        Self {
            grown_rows: 1_000_000,
            ceiling_rows: 100_000,
            ingest_seconds: 4,
            output: None,
        }
    }
}

pub fn bench_partitions(plan: &PartitionPlan) -> anyhow::Result<()> {
    let context = BenchEnvironment::prepare()?;
    let ceiling_before = measure_ceiling(&context, plan.ceiling_rows)?;
    let dsn = fresh_database(&context, DATABASE)?;
    let config = retention_config(&context, &dsn)?;
    let script = post_script(&context.directory, 100)?;
    let load =
        |seconds: Option<u32>| post_load(&context, &script, seconds.unwrap_or(plan.ingest_seconds));
    let ingest = || run_load(load(None));

    let mut server = start_server(&context, &config)?;
    // Each measurement follows a warm-up run on the same server: the first seconds
    // after a start (and after a load) are not what a running service sees. The
    // empty table is emptied again after its warm-up.
    let empty = warm_up(&load).and_then(|()| {
        run_checked(Command::new("psql").args(["-q", &dsn, "-c", "TRUNCATE events"]))?;
        settle(&dsn)?;
        ingest()
    });
    let _ = server.kill();
    let _ = server.wait();
    let empty = empty?;

    let started = Instant::now();
    context.run_recorded(
        Command::new(context.binaries.join("audit-generate"))
            .args([
                "bulk",
                "--count",
                &plan.grown_rows.to_string(),
                "--seed",
                "5",
            ])
            .args(["--payload", "original", "--dsn", &dsn]),
    )?;
    let loaded = started.elapsed().as_secs_f64();
    run_checked(Command::new("psql").args(["-q", &dsn, "-c", "VACUUM ANALYZE events"]))?;
    settle(&dsn)?;
    let size = psql_value(
        &dsn,
        "SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) \
         FROM pg_inherits WHERE inhparent = 'events'::regclass",
    )?;
    let partitions = psql_value(
        &dsn,
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass",
    )?;

    let mut server = start_server(&context, &config)?;
    let measured = grown_and_dropping(&dsn, &load);
    let _ = server.kill();
    let _ = server.wait();
    let (grown, dropping, dropped) = measured?;
    let ceiling_after = measure_ceiling(&context, plan.ceiling_rows)?;
    let ceiling = (ceiling_before + ceiling_after) / 2.0;
    crate::bench::drop_database(&context, DATABASE)?;

    let events = |result: &WrkResult| result.requests_per_second * 100.0;
    let mut report = String::new();
    writeln!(
        report,
        "raw COPY ceiling: {ceiling:.0} rows/s ({ceiling_before:.0} before, {ceiling_after:.0} after)"
    )?;
    writeln!(
        report,
        "100-event POSTs, {CLIENTS} clients, {} s, empty table: {:.0} events/s ({:.2} of the ceiling), {}",
        plan.ingest_seconds,
        events(&empty),
        events(&empty) / ceiling,
        empty.latency_summary()
    )?;
    writeln!(
        report,
        "bulk load: {} events in {loaded:.0} s ({:.0}/s); the table is {size} in {partitions} partitions",
        plan.grown_rows,
        plan.grown_rows as f64 / loaded
    )?;
    writeln!(
        report,
        "100-event POSTs on the grown table: {:.0} events/s ({:.2} of the empty table, target 0.95; {:.2} of the ceiling), {}",
        events(&grown),
        events(&grown) / events(&empty),
        events(&grown) / ceiling,
        grown.latency_summary()
    )?;
    report.push_str(&drop_line(&grown, &dropping, &dropped));
    println!("{report}");
    if let Some(output) = &plan.output {
        write_report_section(&context, "bench-partitions", output, &report)?;
    }
    Ok(())
}

/// Writer latency while retention drops a partition, for `cargo xtask bench`: on a
/// table the bench has loaded (its first partition full and closed), 100-event POSTs
/// without a drop, then with one.
pub(crate) fn drop_under_load(
    context: &BenchEnvironment,
    dsn: &str,
    seconds: u32,
) -> anyhow::Result<String> {
    let config = retention_config(context, dsn)?;
    let script = post_script(&context.directory, 100)?;
    let load = |run: Option<u32>| post_load(context, &script, run.unwrap_or(seconds));
    let mut server = start_server(context, &config)?;
    let measured = grown_and_dropping(dsn, &load);
    let _ = server.kill();
    let _ = server.wait();
    let (grown, dropping, dropped) = measured?;
    Ok(format!(
        "100-event POSTs, {CLIENTS} clients, on the loaded table: {:.0} events/s, {}\n{}",
        grown.requests_per_second * 100.0,
        grown.latency_summary(),
        drop_line(&grown, &dropping, &dropped)
    ))
}

/// The server's config for `dsn`, with retention on (30 days): the runs age a
/// partition past it.
fn retention_config(context: &BenchEnvironment, dsn: &str) -> anyhow::Result<PathBuf> {
    let config = write_server_config(context, dsn, "off")?;
    let mut text = std::fs::read_to_string(&config)?;
    text.push_str("[retention]\nmax_age_days = 30\n");
    std::fs::write(&config, text)?;
    Ok(config)
}

/// wrk posting 100-event batches from [`CLIENTS`] clients, noted for the report.
fn post_load(context: &BenchEnvironment, script: &Path, seconds: u32) -> Command {
    let url = format!("http://127.0.0.1:{PORT}/api/event");
    let command = wrk_command(&url, Some(script), CLIENTS, seconds);
    context.record(&command);
    command
}

/// The report's line on the run during a drop, against the run without.
fn drop_line(grown: &WrkResult, dropping: &WrkResult, dropped: &Dropped) -> String {
    format!(
        "100-event POSTs while retention drops a partition of {} events ({} ids), dropped {:.1} s after it expired: {:.0} events/s, p99 {:.2} ms against {:.2} ms without ({:.2}x, target at most 2x), {}\n",
        dropped.events,
        dropped.ids,
        dropped.after.as_secs_f64(),
        dropping.requests_per_second * 100.0,
        dropping.p99_ms,
        grown.p99_ms,
        dropping.p99_ms / grown.p99_ms,
        dropping.latency_summary()
    )
}

/// A checkpoint, then the kernel's dirty pages written out: after loading gigabytes,
/// the write-back would otherwise run into the next measurement.
fn settle(dsn: &str) -> anyhow::Result<()> {
    run_checked(Command::new("psql").args(["-q", dsn, "-c", "CHECKPOINT"]))?;
    run_checked(&mut Command::new("sync"))
}

/// A few seconds of the same load, not reported.
fn warm_up(load: &dyn Fn(Option<u32>) -> Command) -> anyhow::Result<()> {
    run_load(load(Some(WARM_UP_SECONDS))).map(drop)
}

/// Runs one wrk load; any failed POST fails the benchmark.
fn run_load(mut command: Command) -> anyhow::Result<WrkResult> {
    let result = run_wrk(&mut command)?;
    if result.non_success > 0 {
        bail!("{} POSTs failed", result.non_success);
    }
    Ok(result)
}

struct Dropped {
    events: i64,
    ids: i64,
    /// From the partition's expiry to its being recorded as dropped.
    after: Duration,
}

/// Ingest on the grown table, then ingest while the largest closed partition expires
/// and the server drops it.
fn grown_and_dropping(
    dsn: &str,
    load: &dyn Fn(Option<u32>) -> Command,
) -> anyhow::Result<(WrkResult, WrkResult, Dropped)> {
    // The server closes the loaded partitions in its first rounds.
    let closed = "SELECT count(*) FROM event_partitions WHERE closed_at IS NOT NULL";
    let deadline = Instant::now() + Duration::from_secs(30);
    while psql_value(dsn, closed)? == "0" {
        if Instant::now() > deadline {
            bail!("no partition was closed after the load");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    warm_up(load)?;
    let grown = run_load(load(None))?;

    let victim = psql_value(
        dsn,
        "SELECT name FROM event_partitions WHERE closed_at IS NOT NULL AND dropped_at IS NULL \
         ORDER BY least(end_id, 9223372036854775807) - greatest(first_id, 0) DESC, first_id \
         LIMIT 1",
    )?;
    let events: i64 = psql_value(dsn, &format!("SELECT count(*) FROM {victim}"))?
        .parse()
        .context("count of the partition")?;
    let ids: i64 = psql_value(
        dsn,
        &format!(
            "SELECT end_id - greatest(first_id, 1) FROM event_partitions WHERE name = '{victim}'"
        ),
    )?
    .parse()
    .context("ids of the partition")?;
    let command = load(None);
    let (dropping, expired) = std::thread::scope(|scope| {
        let load = scope.spawn(move || run_load(command));
        std::thread::sleep(DROP_AFTER);
        let expired = Instant::now();
        let aged = psql_value(
            dsn,
            &format!(
                "UPDATE event_partitions SET closed_at = now() - interval '31 days' \
                 WHERE name = '{victim}' RETURNING name"
            ),
        );
        let dropping = load
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the load panicked")));
        (aged.and(dropping), expired)
    });
    let dropping = dropping?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let dropped_query = format!(
        "SELECT extract(epoch FROM dropped_at - now())::float8 \
         FROM event_partitions WHERE name = '{victim}' AND dropped_at IS NOT NULL"
    );
    let after = loop {
        let value = psql_value(dsn, &dropped_query)?;
        if !value.is_empty() {
            // How long before now it was dropped (negative), on the database's clock,
            // added to the time since it expired, on ours (one machine).
            let before_now: f64 = value.parse().context("dropped_at")?;
            let since_expiry = expired.elapsed().as_secs_f64();
            break Duration::from_secs_f64((since_expiry + before_now).max(0.0));
        }
        if Instant::now() > deadline {
            bail!("the expired partition {victim} was not dropped");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    Ok((grown, dropping, Dropped { events, ids, after }))
}
