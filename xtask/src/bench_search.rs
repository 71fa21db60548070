//! `cargo xtask bench-search`: filtered pages on the table issue 15 describes, and what
//! each search index costs ingest.
//!
//! 1. `audit-generate bulk` loads 10M events: 100 applications, the n-th picked 1/n as
//!    often as the first; 50 kinds; `event_ts` over 2025; rich payloads.
//! 2. The application, kind and time indexes are built (timed). A server's poster
//!    posts the loaded table to the search postings (timed); wrk
//!    asks, two connections at a time, for the first page and a page half-way through
//!    the matches of each of: a rare application, a common one, one kind, a one-hour
//!    window, a one-month window, an application plus one day, read through the
//!    indexes; pgbench runs the first page's statement over two connections, the
//!    ceiling.
//! 3. The indexes are dropped, and the same pages read through the search postings.
//! 4. For each index set (none: the search postings alone, which every server posts;
//!    each index alone, the three, the payload's GIN, and sealing on): 100-event POSTs
//!    of varied events through a fresh server and database, and a raw COPY of 1M such
//!    rows into a table with the same indexes; ratios against the COPY without.
//!
//! The figures go to BENCHMARKS.md between their own markers.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::bench::{
    BenchEnvironment, PORT, copy_rate, curl, fresh_database, psql_value, start_server,
    write_report_section, write_server_config,
};
use crate::command::run_checked;
use crate::pgbench::{self, pgbench_command, run_pgbench};
use crate::wrk::{WrkResult, run_wrk, wrk_command};

const SEARCH_DATABASE: &str = "audit_bench_search";
const INGEST_DATABASE: &str = "audit_bench_search_ingest";
const APPLICATIONS: usize = 100;
const KINDS: usize = 50;
const YEAR_START: &str = "2025-01-01T00:00:00Z";
const YEAR_END: &str = "2026-01-01T00:00:00Z";
/// The B-tree indexes the filtered reads measured here need.
const READ_INDEXES: [&str; 3] = ["application", "kind", "time"];

/// How big and how long.
pub struct SearchPlan {
    pub rows: u64,
    pub copy_rows: u64,
    pub read_seconds: u32,
    pub ingest_seconds: u32,
    pub output: Option<PathBuf>,
}

impl SearchPlan {
    pub fn full(output: Option<PathBuf>) -> Self {
        Self {
            rows: 10_000_000,
            copy_rows: 1_000_000,
            read_seconds: 6,
            ingest_seconds: 15,
            output,
        }
    }

    pub fn smoke() -> Self {
        Self {
            rows: 100_000,
            copy_rows: 50_000,
            read_seconds: 1,
            ingest_seconds: 2,
            output: None,
        }
    }
}

fn application(n: usize) -> String {
    format!("app{n:03}")
}

fn kind(n: usize) -> String {
    format!("Kind{n:02}")
}

/// One filtered read: its query string and the SQL condition that defines it.
struct Query {
    label: &'static str,
    parameters: String,
    condition: String,
}

fn queries() -> Vec<Query> {
    let window = |label, since: &str, until: &str, application: Option<String>| {
        let mut parameters = format!("since={since}&until={until}");
        let mut condition = format!("event_ts >= '{since}' AND event_ts < '{until}'");
        if let Some(name) = application {
            parameters.push_str(&format!("&application_name={name}"));
            condition.push_str(&format!(" AND application_name = '{name}'"));
        }
        Query {
            label,
            parameters,
            condition,
        }
    };
    let equal = |label, column: &str, value: String| Query {
        label,
        parameters: format!("{column}={value}"),
        condition: format!("{column} = '{value}'"),
    };
    vec![
        equal(
            "rare application (the 100th)",
            "application_name",
            application(APPLICATIONS),
        ),
        equal(
            "common application (the 1st)",
            "application_name",
            application(1),
        ),
        equal("one kind", "event_kind", kind(7)),
        window(
            "one-hour window",
            "2025-06-15T12:00:00Z",
            "2025-06-15T13:00:00Z",
            None,
        ),
        window(
            "one-month window",
            "2025-06-01T00:00:00Z",
            "2025-07-01T00:00:00Z",
            None,
        ),
        window(
            "application (the 10th) + one day",
            "2025-06-15T00:00:00Z",
            "2025-06-16T00:00:00Z",
            Some(application(10)),
        ),
    ]
}

pub fn bench_search(plan: &SearchPlan) -> anyhow::Result<()> {
    let context = BenchEnvironment::prepare()?;
    let mut report = String::new();

    let dsn = fresh_database(&context, SEARCH_DATABASE)?;
    let started = Instant::now();
    context.run_recorded(
        Command::new(context.binaries.join("audit-generate"))
            .args(["bulk", "--count", &plan.rows.to_string(), "--seed", "3"])
            .args(table_shape())
            .args(["--payload", "rich", "--dsn", &dsn]),
    )?;
    let loaded = started.elapsed().as_secs_f64();
    run_checked(Command::new("psql").args(["-q", &dsn, "-c", "VACUUM ANALYZE events"]))?;
    writeln!(
        report,
        "table: {} events ({APPLICATIONS} applications, skewed; {KINDS} kinds; event_ts over 2025; rich payloads), {}, loaded in {loaded:.0} s",
        plan.rows,
        table_size(&dsn)?
    )?;
    for index in READ_INDEXES {
        let started = Instant::now();
        context.run_recorded(
            Command::new(context.binaries.join("audit-migrate"))
                .env("APP_POSTGRES__DSN", &dsn)
                .env("APP_SEARCH__INDEXES", index),
        )?;
        writeln!(
            report,
            "    index {index}: built in {:.1} s, {}",
            started.elapsed().as_secs_f64(),
            index_size(&dsn, index)?
        )?;
    }
    let config = write_server_config(&context, &dsn, "off")?;
    let mut server = start_server(&context, &config)?;
    let measured = wait_for_postings(&dsn).and_then(|posted| {
        writeln!(
            report,
            "search postings posted in {posted:.0} s, {}",
            postings_size(&dsn)?
        )?;
        measure_reads(&context, &dsn, plan, None)
    });
    let _ = server.kill();
    let _ = server.wait();
    let (measured, ceilings) = measured?;
    report.push_str(&measured);

    // The same pages without the indexes, through the postings; PostgreSQL's ceiling
    // stays the indexed statement's.
    for index in READ_INDEXES {
        let name = index_name(index);
        context.run_recorded(Command::new("psql").args([
            "-q",
            &dsn,
            "-c",
            &format!("DROP INDEX {name}"),
        ]))?;
    }
    let mut server = start_server(&context, &config)?;
    let measured = measure_reads(&context, &dsn, plan, Some(&ceilings))
        .map(|(measured, _)| format!("search postings, B-tree indexes dropped:\n{measured}"));
    let _ = server.kill();
    let _ = server.wait();
    report.push_str(&measured?);

    report.push_str(&ingest_costs(&context, plan)?);
    crate::bench::drop_database(&context, SEARCH_DATABASE)?;
    crate::bench::drop_database(&context, INGEST_DATABASE)?;
    println!("{report}");
    if let Some(output) = &plan.output {
        write_report_section(&context, "bench-search", output, &report)?;
    }
    Ok(())
}

/// `audit-generate` options that shape the table and the ingested events alike.
fn table_shape() -> Vec<String> {
    let names =
        |name: fn(usize) -> String, count| (1..=count).map(name).collect::<Vec<_>>().join(",");
    [
        "--apps",
        &names(application, APPLICATIONS),
        "--kinds",
        &names(kind, KINDS),
        "--mix",
        "skewed",
        "--from",
        YEAR_START,
        "--to",
        YEAR_END,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// First and deep pages of every query, two connections; the report lines.
/// With `ceilings` (pgbench's rate of each query, as measured before), pgbench is not
/// run again; the rates measured are returned with the report.
fn measure_reads(
    context: &BenchEnvironment,
    dsn: &str,
    plan: &SearchPlan,
    ceilings: Option<&[f64]>,
) -> anyhow::Result<(String, Vec<f64>)> {
    let through = match ceilings {
        None => "through the three B-tree indexes",
        Some(_) => "through the search postings (no B-tree index)",
    };
    let mut measured_ceilings = Vec::new();
    // The server looks for the indexes when it starts and every 5 s after.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let mut report = String::new();
    let mut failed = 0;
    writeln!(
        report,
        "filtered pages of 10 {through}, newest first, 2 connections, {} s each (p50 / p99 latency, requests/s):",
        plan.read_seconds
    )?;
    for (at, query) in queries().into_iter().enumerate() {
        let matches: u64 = psql_value(
            dsn,
            &format!("SELECT count(*) FROM events WHERE {}", query.condition),
        )?
        .parse()?;
        let deep_token = psql_value(
            dsn,
            &format!(
                "SELECT id FROM events WHERE {} ORDER BY id DESC OFFSET {} LIMIT 1",
                query.condition,
                matches / 2
            ),
        )?;
        let first_url = format!(
            "http://127.0.0.1:{PORT}/api/event?page_size=10&{}",
            query.parameters
        );
        let deep_url = format!("{first_url}&page_token={deep_token}");
        let ceiling_script = pgbench::script(
            &context.directory,
            "filtered-page",
            &format!(
                "SELECT id, event_ts, application_name, event_kind, payload::text FROM events \
                 WHERE id < {} AND {} ORDER BY id DESC LIMIT 11",
                i64::MAX,
                query.condition
            ),
        )?;
        let ceiling = match ceilings.and_then(|known| known.get(at)) {
            Some(known) => *known,
            None => {
                let mut command = pgbench_command(dsn, &ceiling_script, 2, plan.read_seconds);
                context.record(&command);
                run_pgbench(&mut command)?
            }
        };
        measured_ceilings.push(ceiling);
        let first_events = events_on_page(&first_url)?;
        let deep_events = events_on_page(&deep_url)?;
        let mut line = format!("{:<34} {matches:>8} matches:", query.label);
        let mut results: Vec<WrkResult> = Vec::new();
        for url in [&first_url, &deep_url] {
            let mut command = wrk_command(url, None, 2, plan.read_seconds);
            context.record(&command);
            let result = run_wrk(&mut command)?;
            failed += usize::from(result.non_success > 0);
            results.push(result);
        }
        let [first, deep] = results.as_slice() else {
            bail!("two wrk runs expected");
        };
        write!(
            line,
            " first {:.2} / {:.2} ms {:.0}/s ({first_events} events; {:.2} of pgbench's {ceiling:.0}/s); deep {:.2} / {:.2} ms {:.0}/s ({deep_events} events); deep/first p50 {:.2}",
            first.p50_ms,
            first.p99_ms,
            first.requests_per_second,
            first.requests_per_second / ceiling,
            deep.p50_ms,
            deep.p99_ms,
            deep.requests_per_second,
            deep.p50_ms / first.p50_ms
        )?;
        writeln!(report, "  {line}")?;
    }
    if failed > 0 {
        bail!("{failed} read runs had error responses");
    }
    Ok((report, measured_ceilings))
}

fn events_on_page(url: &str) -> anyhow::Result<usize> {
    let body = curl(&["-sf", url])?;
    let page: serde_json::Value = serde_json::from_str(&body)?;
    page["data"]
        .as_array()
        .map(Vec::len)
        .context("a page without data")
}

/// The ingest cost of each index set: 100-event POSTs and a raw COPY; report lines.
fn ingest_costs(context: &BenchEnvironment, plan: &SearchPlan) -> anyhow::Result<String> {
    let copy_file = context.directory.join("search-rows.bin");
    context.run_recorded(
        Command::new(context.binaries.join("audit-generate"))
            .args([
                "bulk",
                "--count",
                &plan.copy_rows.to_string(),
                "--seed",
                "4",
            ])
            .args(table_shape())
            .args(["--payload", "original", "--copy-file"])
            .arg(&copy_file),
    )?;
    let script = varied_post_script(&context.directory)?;
    // (label, B-tree indexes, the payload's GIN, sealing); the search postings in all.
    let sets: [(&str, &str, &str, bool); 7] = [
        ("none (search postings)", "", "false", false),
        ("application", "application", "false", false),
        ("kind", "kind", "false", false),
        ("time", "time", "false", false),
        (
            "application + kind + time",
            "application,kind,time",
            "false",
            false,
        ),
        ("payload (GIN)", "", "true", false),
        ("sealing on", "", "false", true),
    ];
    let mut rows = Vec::new();
    for (label, indexes, payload, sealed) in sets {
        let copy = copy_with_indexes(context, &copy_file, plan.copy_rows, indexes, payload)?;
        let dsn = indexed_database(context, indexes, payload)?;
        let config = if sealed {
            sealing_server_config(context, &dsn)?
        } else {
            write_server_config(context, &dsn, "off")?
        };
        let mut server = start_server(context, &config)?;
        let mut command = wrk_command(
            &format!("http://127.0.0.1:{PORT}/api/event"),
            Some(&script),
            32,
            plan.ingest_seconds,
        );
        context.record(&command);
        let result = run_wrk(&mut command);
        let _ = server.kill();
        let _ = server.wait();
        let result = result?;
        if result.non_success > 0 {
            bail!("{label}: {} POSTs failed", result.non_success);
        }
        rows.push((label, result.requests_per_second * 100.0, copy, result));
    }
    std::fs::remove_file(&copy_file)?;
    let Some(&(_, bare_post, bare_copy, _)) = rows.first() else {
        bail!("no index set measured");
    };
    let mut report = String::new();
    writeln!(
        report,
        "ingest cost of each search index: 100-event POSTs of varied events, 32 clients, {} s, fresh database each; raw COPY of {} such rows into the same indexes:",
        plan.ingest_seconds, plan.copy_rows
    )?;
    for (label, events, copy, result) in &rows {
        writeln!(
            report,
            "  {label:<26} POST {events:>7.0} events/s ({:.2} of no index; {:.2} of the bare COPY ceiling; {:.2} of COPY into these indexes), COPY {copy:>7.0} rows/s ({:.2} of bare), {}",
            events / bare_post,
            events / bare_copy,
            events / copy,
            copy / bare_copy,
            result.latency_summary()
        )?;
    }
    Ok(report)
}

/// The bench's server config for `dsn`, sealing on without a key: it signs nothing.
fn sealing_server_config(context: &BenchEnvironment, dsn: &str) -> anyhow::Result<PathBuf> {
    let path = write_server_config(context, dsn, "off")?;
    let mut text = std::fs::read_to_string(&path)?;
    text.push_str("[integrity]\nenabled = true\n");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Waits until the postings hold every event of the table; the seconds it took.
pub(crate) fn wait_for_postings(dsn: &str) -> anyhow::Result<f64> {
    let started = Instant::now();
    loop {
        let covered = psql_value(
            dsn,
            "SELECT coalesce((SELECT id_floor FROM search_postings_state) \
                 >= (SELECT max(id) FROM events), true)",
        )?;
        if covered == "t" {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > std::time::Duration::from_secs(3600) {
            bail!("the poster did not post the table within an hour");
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

fn postings_size(dsn: &str) -> anyhow::Result<String> {
    psql_value(
        dsn,
        "SELECT count(*) || ' rows, ' || pg_size_pretty(pg_total_relation_size('search_postings')) \
         FROM search_postings",
    )
}

/// A fresh ingest database with `indexes` (and the payload's if `payload`) built.
fn indexed_database(
    context: &BenchEnvironment,
    indexes: &str,
    payload: &str,
) -> anyhow::Result<String> {
    let dsn = fresh_database(context, INGEST_DATABASE)?;
    context.run_recorded(
        Command::new(context.binaries.join("audit-migrate"))
            .env("APP_POSTGRES__DSN", &dsn)
            .env("APP_SEARCH__INDEXES", indexes)
            .env("APP_SEARCH__PAYLOAD_INDEX", payload),
    )?;
    run_checked(Command::new("psql").args(["-q", &dsn, "-c", "CHECKPOINT"]))?;
    Ok(dsn)
}

fn copy_with_indexes(
    context: &BenchEnvironment,
    copy_file: &Path,
    rows: u64,
    indexes: &str,
    payload: &str,
) -> anyhow::Result<f64> {
    let dsn = indexed_database(context, indexes, payload)?;
    copy_rate(context, &dsn, copy_file, rows)
}

/// A wrk script whose requests rotate through 64 bodies of 100 events each, of the
/// table's applications (skewed), kinds and year, so that each index takes keys all
/// over its range as it would in use.
fn varied_post_script(directory: &Path) -> anyhow::Result<PathBuf> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |bound: u64| {
        // xorshift64*: a fixed, reproducible stream is all this needs.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound
    };
    let weights: Vec<f64> = (1..=APPLICATIONS).map(|n| 1.0 / n as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut bodies = Vec::new();
    for _ in 0..64 {
        let events: Vec<String> = (0..100)
            .map(|n| {
                let mut pick = next(1_000_000) as f64 / 1_000_000.0 * total;
                let mut app = APPLICATIONS;
                for (index, weight) in weights.iter().enumerate() {
                    if pick < *weight {
                        app = index + 1;
                        break;
                    }
                    pick -= weight;
                }
                let day = next(365);
                let (month, day_of_month) = (day / 31 % 12 + 1, day % 28 + 1);
                format!(
                    r#"{{"event_ts":"2025-{month:02}-{day_of_month:02}T{:02}:{:02}:{:02}.{:06}Z","application_name":"{}","event_kind":"{}","payload":{{"username":"user_{n:08}","n":{}}}}}"#,
                    next(24),
                    next(60),
                    next(60),
                    next(1_000_000),
                    application(app),
                    kind(usize::try_from(next(KINDS as u64)).unwrap_or(0) + 1),
                    next(1_000_000)
                )
            })
            .collect();
        bodies.push(format!("[==[[{}]]==]", events.join(",")));
    }
    let script = format!(
        "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
         local bodies = {{{}}}\nlocal n = 0\n\
         request = function()\n  n = n % #bodies + 1\n  return wrk.format(nil, nil, nil, bodies[n])\nend\n",
        bodies.join(",\n")
    );
    let path = directory.join("post-varied-100.lua");
    std::fs::write(&path, script)?;
    Ok(path)
}

fn table_size(dsn: &str) -> anyhow::Result<String> {
    psql_value(
        dsn,
        "SELECT pg_size_pretty(sum(pg_table_size(relid))) || ' table, ' || \
         pg_size_pretty(sum(pg_indexes_size(relid))) || ' indexes' \
         FROM pg_partition_tree('events')",
    )
}

fn index_name(index: &str) -> &'static str {
    match index {
        "application" => "events_application_name_id",
        "kind" => "events_event_kind_id",
        _ => "events_event_ts_id",
    }
}

fn index_size(dsn: &str, index: &str) -> anyhow::Result<String> {
    let name = index_name(index);
    psql_value(
        dsn,
        &format!(
            "SELECT pg_size_pretty(sum(pg_relation_size(relid))) \
             FROM pg_partition_tree('{name}')"
        ),
    )
}
