//! `cargo xtask bench`: the service against the database's own ceiling, in one run.
//!
//! 1. The raw ceiling: psql copies 1M generated rows (binary COPY, one connection),
//!    before and after the ingest runs; ratios use the mean.
//! 2. Ingest through the API with wrk at 1, 10, 100 and 1000 events per POST.
//! 3. GET of the first page and of a page 5M deep in a bulk-loaded 10M-event table.
//! 4. The server's peak RSS over the ingest runs.
//! 5. Sealing, proofs and the verifier (`bench_integrity`), large pages' memory.
//! 6. Writers while retention drops the read table's first partition
//!    (`bench_partitions`), and reads through a streaming replica (`bench_replicas`).
//! 7. The viewer's weight and time to first rows on the read table (`bench_viewer`).
//!
//! Every ingest and read figure is measured twice, with `auth.mode = "off"` and
//! `"tokens"` (the same requests, bearer header included, in both), and reads once
//! more as a reader scoped to one application: access control must cost nothing
//! measurable.
//!
//! wrk (Debian package) is the load client: it is a separate C process that costs
//! little CPU per request, which matters when server, client and PostgreSQL share two
//! cores. Every figure is also printed as a ratio to the ceiling of the same run.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::bench_search::wait_for_postings;
use crate::chart::{self, Bar, ChartData};
use crate::command::{cargo, last_output_line, render, run_checked, workspace_root};
use crate::cpu::{CpuPerRequest, CpuSample};
use crate::pgbench::{self, pgbench_command, run_pgbench};
use crate::wrk::{WrkResult, run_wrk, wrk_command_with_header};
use crate::{bench_integrity, bench_memory, bench_partitions, bench_replicas, bench_viewer};

const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432";
const INGEST_DATABASE: &str = "audit_bench_ingest";
const READ_DATABASE: &str = "audit_bench_read";
const CEILING_DATABASE: &str = "audit_bench_ceiling";
pub(crate) const PORT: u16 = 18_080;
/// Events per POST, with the concurrent clients of that run: clients that send each
/// event as it happens are many; clients that send large batches are few.
const INGEST_RUNS: [(usize, u32); 4] = [(1, 128), (10, 128), (100, 32), (1000, 32)];
/// The access-control modes each ingest and read figure is measured in.
const AUTH_MODES: [&str; 2] = ["off", "tokens"];
/// The application the scoped reader may read: one of the bulk loader's three.
const SCOPED_APPLICATION: &str = "cauliflower";
/// The optional index of scoped reads (README, "Securing it").
const CREATE_APPLICATION_INDEX: &str =
    "CREATE INDEX events_application_name_id ON events (application_name, id)";
/// The columns the encoders write, in order (`audit_core::copy::COPY_EVENTS`).
pub(crate) const COPY_COLUMNS: &str =
    "(event_ts, application_name, event_kind, payload, token_name, seal)";

/// How big and how long: the full run, or a smoke run that takes seconds.
pub struct BenchPlan {
    pub ceiling_rows: u64,
    pub read_rows: u64,
    pub run_seconds: u32,
    /// Divides the connections of every run (a smoke run uses fewer).
    pub connection_divisor: u32,
    /// How long after the memory load the server's RSS is read again.
    pub memory_settle: Duration,
    pub output: Option<PathBuf>,
}

impl BenchPlan {
    /// The full run whose figures BENCHMARKS.md reports.
    pub fn full(output: Option<PathBuf>) -> Self {
        Self {
            ceiling_rows: 1_000_000,
            read_rows: 10_000_000,
            run_seconds: 15,
            connection_divisor: 1,
            memory_settle: Duration::from_secs(60),
            output,
        }
    }

    /// Seconds long on small tables, to check that the benchmark works.
    pub fn smoke(output: Option<PathBuf>) -> Self {
        Self {
            ceiling_rows: 100_000,
            read_rows: 1_000_000,
            run_seconds: 2,
            connection_divisor: 4,
            memory_settle: Duration::from_secs(2),
            output,
        }
    }
}

pub(crate) struct BenchEnvironment {
    server_url: String,
    pub(crate) binaries: PathBuf,
    pub(crate) directory: PathBuf,
    /// The measuring commands, in order, for the report.
    commands: RefCell<Vec<String>>,
}

impl BenchEnvironment {
    /// Notes a measuring command for the report, with paths relative to the workspace.
    pub(crate) fn record(&self, command: &Command) {
        let root = format!("{}/", workspace_root().display());
        let line = redact_secrets(&render(command).replace(&root, ""));
        let mut commands = self.commands.borrow_mut();
        if !commands.contains(&line) {
            commands.push(line);
        }
    }

    /// Where every server the benchmark starts writes its log.
    pub(crate) fn server_log(&self) -> PathBuf {
        self.directory.join("server.log")
    }

    pub(crate) fn run_recorded(&self, command: &mut Command) -> anyhow::Result<()> {
        self.record(command);
        run_checked(command)
    }
}

/// The report is committed: a token's secret becomes `$TOKEN`, so that no secret (even
/// of a dropped benchmark database) is published for scanners to flag.
fn redact_secrets(line: &str) -> String {
    let mut redacted = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find("aec_") {
        redacted.push_str(&rest[..start]);
        redacted.push_str("$TOKEN");
        let secret = &rest[start..];
        let end = secret
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(secret.len());
        rest = &secret[end..];
    }
    redacted.push_str(rest);
    redacted
}

impl BenchEnvironment {
    /// Builds the release binaries and makes the directory the runs write to.
    pub(crate) fn prepare() -> anyhow::Result<Self> {
        run_checked(cargo().args(["build", "--release", "--locked", "--bins"]))?;
        let context = Self {
            server_url: std::env::var("AUDIT_BENCH_DATABASE_URL")
                .unwrap_or_else(|_| DEFAULT_SERVER_URL.to_owned()),
            binaries: workspace_root().join("target").join("release"),
            directory: workspace_root().join("target").join("bench"),
            commands: RefCell::default(),
        };
        std::fs::create_dir_all(&context.directory)?;
        // Each run's servers append to it: one run's log only.
        if let Err(error) = std::fs::remove_file(context.server_log())
            && error.kind() != std::io::ErrorKind::NotFound
        {
            return Err(error.into());
        }
        Ok(context)
    }
}

pub fn bench(plan: &BenchPlan) -> anyhow::Result<()> {
    let context = BenchEnvironment::prepare()?;
    let mut report = String::new();

    let ceiling_before = measure_ceiling(&context, plan.ceiling_rows)?;

    let ingest_dsn = fresh_database(&context, INGEST_DATABASE)?;
    let config = write_server_config(&context, &ingest_dsn, "off")?;
    let ingest_tokens = BenchTokens::create(&context, &config)?;
    let mut server = start_server(&context, &config)?;
    let mut ingest = Vec::new();
    for (batch_size, connections) in INGEST_RUNS {
        for mode in AUTH_MODES {
            switch_auth_mode(&context, &ingest_dsn, mode, &ingest_tokens.all)?;
            // Each run starts from an empty table and a clean checkpoint.
            empty_events(&ingest_dsn)?;
            let script = post_script(&context.directory, batch_size)?;
            let connections = (connections / plan.connection_divisor).max(1);
            let (result, cpu) = run_wrk_measured(
                &context,
                server.id(),
                &format!("http://127.0.0.1:{PORT}/api/event"),
                Some(&script),
                connections,
                plan.run_seconds,
                &ingest_tokens.all,
            )?;
            ingest.push((batch_size, connections, mode, result, cpu));
        }
    }
    let peak_rss_kib = peak_rss_kib(server.id())?;
    let (insert_ceiling, insert_cpu) =
        measure_insert_ceiling(&context, &ingest_dsn, plan, server.id())?;
    // The ceiling moves with whatever else this shared machine does, so it is measured
    // before and after the ingest runs, and the ratios use the mean of the two.
    let ceiling_after = measure_ceiling(&context, plan.ceiling_rows)?;
    let ceiling = (ceiling_before + ceiling_after) / 2.0;
    let indexed_copy = measure_copy(&context, plan.ceiling_rows, true)?;
    writeln!(
        report,
        "raw COPY ceiling: {ceiling:.0} rows/s ({} rows; {ceiling_before:.0} before and {ceiling_after:.0} after the ingest runs)",
        plan.ceiling_rows
    )?;
    writeln!(
        report,
        "raw COPY into a table with the optional (application_name, id) index: {indexed_copy:.0} rows/s ({:.2} of the ceiling)",
        indexed_copy / ceiling
    )?;
    writeln!(
        report,
        "single-row INSERT ceiling (pgbench, one row per transaction, {} connections): {insert_ceiling:.0} rows/s",
        (INSERT_CONNECTIONS / plan.connection_divisor).max(1)
    )?;
    writeln!(report, "    {}", insert_cpu.summary_with_client("pgbench"))?;
    for (batch_size, connections, mode, result, cpu) in &ingest {
        let events = result.requests_per_second * *batch_size as f64;
        let versus_off = match (
            *mode,
            ingest
                .iter()
                .find(|run| run.0 == *batch_size && run.2 == "off"),
        ) {
            ("off", _) | (_, None) => String::new(),
            (_, Some(off)) => format!(
                "; {:.2} of auth off",
                result.requests_per_second / off.3.requests_per_second
            ),
        };
        let versus_insert = if *batch_size == 1 {
            format!(
                "; {:.2}x the single-row INSERT ceiling",
                events / insert_ceiling
            )
        } else {
            String::new()
        };
        writeln!(
            report,
            "POST {batch_size:>4} events, {connections:>3} clients, auth {mode:<6}: {events:>9.0} events/s ({:.2} of ceiling{versus_insert}{versus_off}), {}",
            events / ceiling,
            result.latency_summary()
        )?;
        writeln!(report, "    {}", cpu.summary())?;
    }
    writeln!(
        report,
        "server peak RSS over the ingest runs: {:.1} MiB",
        peak_rss_kib as f64 / 1024.0
    )?;

    let read_dsn = fresh_database(&context, READ_DATABASE)?;
    bulk_load(&context, &read_dsn, plan.read_rows)?;
    let read_config = write_server_config(&context, &read_dsn, "off")?;
    let read_tokens = BenchTokens::create(&context, &read_config)?;
    // The running server moves to the read database through its own reload, allowed by
    // the ingest database's admin token; it then reads the read database's tokens.
    switch_auth_mode(&context, &read_dsn, "off", &ingest_tokens.all)?;
    // The server's poster posts the bulk-loaded events to the search postings; the
    // pages are measured once it is done, not while it takes a core.
    let posted = wait_for_postings(&read_dsn)?;
    writeln!(
        report,
        "search postings of the {} bulk-loaded events, posted by the server: {posted:.1} s ({:.0} events/s)",
        plan.read_rows,
        plan.read_rows as f64 / posted.max(0.001)
    )?;
    std::thread::sleep(Duration::from_secs(1));
    let deep_token = token_at_depth(&read_dsn, None, plan.read_rows / 2)?;
    let scoped_deep_token =
        token_at_depth(&read_dsn, Some(SCOPED_APPLICATION), plan.read_rows / 6)?;
    let read_connections = (32 / plan.connection_divisor).max(1);
    let first_url = format!("http://127.0.0.1:{PORT}/api/event?page_size=10");
    let pages = PageRuns {
        first_url: &first_url,
        deep_token,
        connections: read_connections,
        seconds: plan.run_seconds,
    };
    let scoped_pages = PageRuns {
        deep_token: scoped_deep_token,
        ..pages
    };
    let mut reads = Vec::new();
    for mode in AUTH_MODES {
        switch_auth_mode(&context, &read_dsn, mode, &read_tokens.all)?;
        let suffix = format!(", auth {mode}");
        pages.measure(&context, server.id(), &read_tokens.all, &suffix, &mut reads)?;
    }
    // Scoped to one application: without the optional index (a bounded range of ids
    // per page), then with it (one keyset range of the index).
    for indexed in [false, true] {
        if indexed {
            context.run_recorded(Command::new("psql").args([
                "-q",
                &read_dsn,
                "-c",
                CREATE_APPLICATION_INDEX,
            ]))?;
            // The server looks for the index every 5 s.
            std::thread::sleep(Duration::from_secs(6));
        }
        let index = if indexed { "with" } else { "without" };
        let suffix = format!(", reader of one application, {index} the index");
        scoped_pages.measure(
            &context,
            server.id(),
            &read_tokens.one_reader,
            &suffix,
            &mut reads,
        )?;
    }
    let large_page_url = format!("http://127.0.0.1:{PORT}/api/event?page_size={LARGE_PAGE}");
    switch_auth_mode(&context, &read_dsn, "off", &read_tokens.all)?;
    let large_page = run_wrk_measured(
        &context,
        server.id(),
        &large_page_url,
        None,
        read_connections,
        plan.run_seconds,
        &read_tokens.all,
    )?;
    reads.push((format!("first page of {LARGE_PAGE}, auth off"), large_page));
    let read_ceilings = ReadCeilings::measure(
        &context,
        &read_dsn,
        deep_token,
        (read_connections, server.id()),
        plan,
    )?;
    writeln!(
        report,
        "pgbench ceilings of the server's own page queries (prepared, {read_connections} connections; the server idle):"
    )?;
    for (label, (rate, cpu)) in [
        ("first page", &read_ceilings.first),
        ("deep page", &read_ceilings.deep),
        ("first page of 100", &read_ceilings.large),
    ] {
        writeln!(report, "  {label}: {rate:.0} queries/s")?;
        writeln!(report, "      {}", cpu.summary_with_client("pgbench"))?;
    }
    for (label, (result, cpu)) in &reads {
        let events = if label.contains(&format!("of {LARGE_PAGE}")) {
            LARGE_PAGE
        } else {
            10
        };
        writeln!(
            report,
            "GET {label} ({events} events, table of {} rows): {:.0} requests/s ({:.3} of COPY ceiling; {:.2} of its pgbench ceiling), {}",
            plan.read_rows,
            result.requests_per_second,
            result.requests_per_second / ceiling,
            result.requests_per_second / read_ceilings.for_label(label),
            result.latency_summary()
        )?;
        writeln!(report, "    {}", cpu.summary())?;
    }
    let figure = |label: &str| -> &WrkResult {
        reads
            .iter()
            .find(|(found, _)| found == label)
            .map_or(&reads[0].1.0, |(_, (result, _))| result)
    };
    let (first, deep) = (
        figure("first page, auth off"),
        figure("page half-way deep, auth off"),
    );
    writeln!(
        report,
        "deep page p50 / first page p50: {:.2}",
        deep.p50_ms / first.p50_ms
    )?;
    writeln!(
        report,
        "auth tokens / off, requests/s: GET first page {:.2}, deep page {:.2}",
        figure("first page, auth tokens").requests_per_second / first.requests_per_second,
        figure("page half-way deep, auth tokens").requests_per_second / deep.requests_per_second,
    )?;
    writeln!(
        report,
        "GET first page vs the original's 1.9k requests/s: {:.1}x",
        first.requests_per_second / 1900.0
    )?;

    report.push_str(&bench_viewer::viewer_report(plan.read_rows)?);

    let _ = server.kill();
    let _ = server.wait();
    report.push_str(&sealing_report(&context, plan, &read_dsn, ceiling)?);
    report.push_str(&bench_memory::large_pages(&context, plan)?);
    // Last on the read table: the drop takes its first partition away.
    report.push_str(&bench_partitions::drop_under_load(
        &context,
        &read_dsn,
        plan.run_seconds,
    )?);
    report.push_str(&bench_replicas::replica_reads(&context, plan)?);
    for database in [
        INGEST_DATABASE,
        READ_DATABASE,
        CEILING_DATABASE,
        bench_integrity::SEALED_DATABASE,
    ] {
        drop_database(&context, database)?;
    }
    println!("{report}");
    let failed_runs = ingest
        .iter()
        .map(|(_, _, _, result, _)| result)
        .chain(reads.iter().map(|(_, (result, _))| result))
        .filter(|result| result.non_success > 0 || result.requests_per_second <= 0.0)
        .count();
    if failed_runs > 0 {
        bail!("{failed_runs} runs had error responses or none at all; nothing written");
    }
    let chart = ChartData {
        ingest: (ingest.iter())
            .filter(|run| run.2 == "off")
            .map(|(batch_size, _, _, result, _)| {
                let events = result.requests_per_second * *batch_size as f64;
                (*batch_size, events, result.p50_ms, result.p99_ms)
            })
            .collect(),
        copy_ceiling: ceiling,
        insert_ceiling,
        reads: [
            ("first page", "first page, auth off"),
            ("deep page", "page half-way deep, auth off"),
            ("page of 100", "first page of 100, auth off"),
        ]
        .iter()
        .filter_map(|(short, label)| {
            let (_, (result, _)) = reads.iter().find(|(found, _)| found == label)?;
            Some(Bar {
                label: (*short).to_owned(),
                service: result.requests_per_second,
                ceiling: read_ceilings.for_label(label),
                p50_ms: result.p50_ms,
                p99_ms: result.p99_ms,
            })
        })
        .collect(),
    };
    let chart_path = match &plan.output {
        Some(output) => output.with_extension("svg"),
        None => context.directory.join("chart.svg"),
    };
    chart::draw(&chart_path, &chart)?;
    if let Some(output) = &plan.output {
        write_report_section(&context, "bench", output, &report)?;
    }
    Ok(())
}

/// Rows per page of the larger GET.
const LARGE_PAGE: usize = 100;
/// Connections of the single-row INSERT ceiling.
const INSERT_CONNECTIONS: u32 = 64;

/// pgbench running the server's own page statements on the read table: queries/s,
/// and the CPU each query cost.
struct ReadCeilings {
    first: (f64, CpuPerRequest),
    deep: (f64, CpuPerRequest),
    large: (f64, CpuPerRequest),
}

impl ReadCeilings {
    /// `(connections, server_pid)`: pgbench's connections, and the idle server whose
    /// CPU the breakdown leaves apart.
    fn measure(
        context: &BenchEnvironment,
        dsn: &str,
        deep_token: i64,
        (connections, server_pid): (u32, u32),
        plan: &BenchPlan,
    ) -> anyhow::Result<Self> {
        // The statements of `audit_core::repository`, with the server's limit (one
        // more row than the page, to know whether a next page exists).
        const COLUMNS: &str =
            "SELECT id, event_ts, application_name, event_kind, payload::text FROM events";
        let run = |name: &str, statement: String| -> anyhow::Result<(f64, CpuPerRequest)> {
            let script = pgbench::script(&context.directory, name, &statement)?;
            let mut command = pgbench_command(dsn, &script, connections, plan.run_seconds);
            run_pgbench_measured(context, &mut command, server_pid, plan.run_seconds)
        };
        Ok(Self {
            first: run("first-page", format!("{COLUMNS} ORDER BY id DESC LIMIT 11"))?,
            deep: run(
                "deep-page",
                format!("{COLUMNS} WHERE id < {deep_token} ORDER BY id DESC LIMIT 11"),
            )?,
            large: run(
                "large-page",
                format!("{COLUMNS} ORDER BY id DESC LIMIT {}", LARGE_PAGE + 1),
            )?,
        })
    }

    /// The ceiling a GET run of this label is compared with.
    fn for_label(&self, label: &str) -> f64 {
        if label.contains(&format!("of {LARGE_PAGE}")) {
            self.large.0
        } else if label.starts_with("page half-way deep") {
            self.deep.0
        } else {
            self.first.0
        }
    }
}

/// A pgbench run, with the CPU each transaction cost PostgreSQL and the rest (pgbench
/// and the kernel); the server on `server_pid` stays idle meanwhile.
fn run_pgbench_measured(
    context: &BenchEnvironment,
    command: &mut Command,
    server_pid: u32,
    seconds: u32,
) -> anyhow::Result<(f64, CpuPerRequest)> {
    context.record(command);
    let before = CpuSample::take(server_pid)?;
    let rate = run_pgbench(command)?;
    let after = CpuSample::take(server_pid)?;
    Ok((rate, before.per_request(&after, rate * f64::from(seconds))))
}

/// pgbench inserting one row per transaction into the emptied ingest table, over
/// [`INSERT_CONNECTIONS`] connections: what PostgreSQL commits with no grouping.
fn measure_insert_ceiling(
    context: &BenchEnvironment,
    dsn: &str,
    plan: &BenchPlan,
    server_pid: u32,
) -> anyhow::Result<(f64, CpuPerRequest)> {
    empty_events(dsn)?;
    let script = pgbench::script(
        &context.directory,
        "single-insert",
        "INSERT INTO events (event_ts, application_name, event_kind, payload) VALUES \
         ('2023-12-05T12:55:52.805022Z', 'grease_monkey', 'UserLogin', \
         '{\"username\":\"user_00000001\"}')",
    )?;
    let connections = (INSERT_CONNECTIONS / plan.connection_divisor).max(1);
    let mut command = pgbench_command(dsn, &script, connections, plan.run_seconds);
    run_pgbench_measured(context, &mut command, server_pid, plan.run_seconds)
}

/// Writes `figures` with the commands that measured them and the machine into the
/// generated section of `output` that `cargo xtask {task}` owns.
pub(crate) fn write_report_section(
    context: &BenchEnvironment,
    task: &str,
    output: &Path,
    figures: &str,
) -> anyhow::Result<()> {
    let commands = context.commands.borrow().join("\n");
    write_report(
        task,
        output,
        figures,
        &commands,
        &environment_description(&read_dsn_server(context))?,
    )
}

/// Tamper evidence's figures (`bench_integrity`), as report lines.
fn sealing_report(
    context: &BenchEnvironment,
    plan: &BenchPlan,
    read_dsn: &str,
    ceiling: f64,
) -> anyhow::Result<String> {
    let key = bench_integrity::BenchKey::create(context)?;
    let tree = bench_integrity::proofs_and_verifier(context, plan, read_dsn, &key)?;
    let sealed = bench_integrity::ingest_with_sealing(context, plan, &key)?;
    let mut report = sealed_ingest_lines(&sealed, ceiling)?;
    writeln!(
        report,
        "first round over a never-sealed table of {} events: {:.1} s ({:.0} events/s, server start included)",
        tree.rows,
        tree.seal_seconds,
        tree.rows as f64 / tree.seal_seconds
    )?;
    for (clients, run) in [
        (1, &tree.proof_alone),
        (bench_integrity::PROOF_CLIENTS, &tree.proof),
    ] {
        writeln!(
            report,
            "GET /api/event/{{id}}/proof, random events of the {}-leaf tree, {clients} client(s): {:.0} requests/s, {}",
            tree.rows,
            run.requests_per_second,
            run.latency_summary()
        )?;
    }
    writeln!(
        report,
        "audit-server verify on {} events: {:.0} events/s ({})",
        tree.rows, tree.verify_rate, tree.verify_line
    )?;
    report.push_str(&tree.export_report);
    Ok(report)
}

/// Sealing's cost to 100-event ingest and the lags it leaves, as report lines.
pub(crate) fn sealed_ingest_lines(
    sealed: &bench_integrity::SealedIngest,
    ceiling: f64,
) -> anyhow::Result<String> {
    let mut report = String::new();
    let events = |run: &bench_integrity::IngestRun| run.result.requests_per_second * 100.0;
    for (label, run) in [("off", &sealed.off), ("on ", &sealed.on)] {
        writeln!(
            report,
            "POST  100 events, sealing {label} (fresh server and database): {:>9.0} events/s ({:.2} of ceiling), {}",
            events(run),
            events(run) / ceiling,
            run.result.latency_summary()
        )?;
        writeln!(report, "    {}", run.cpu.summary())?;
    }
    writeln!(
        report,
        "sealing on / off, 100-event POSTs: {:.2}",
        events(&sealed.on) / events(&sealed.off)
    )?;
    writeln!(
        report,
        "commit-to-checkpoint lag under that load (201 to the first proof): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} probes)",
        bench_integrity::quantile(&sealed.lags_ms, 0.5),
        bench_integrity::quantile(&sealed.lags_ms, 0.99),
        bench_integrity::quantile(&sealed.lags_ms, 1.0),
        sealed.lags_ms.len()
    )?;
    writeln!(
        report,
        "rows the sealer read per event sealed: {:.2} (and leaves taken from seal batches: {:.2})",
        sealed.reads_per_sealed, sealed.batched_per_sealed
    )?;
    writeln!(
        report,
        "live tail under that load (201 to the event on GET /api/event/stream): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} of {} probes delivered)",
        bench_integrity::quantile(&sealed.tail_ms, 0.5),
        bench_integrity::quantile(&sealed.tail_ms, 0.99),
        bench_integrity::quantile(&sealed.tail_ms, 1.0),
        sealed.tail_ms.len(),
        sealed.tail_probes
    )?;
    Ok(report)
}

/// The two GET figures of a reader: the first page and a page deep in the table.
struct PageRuns<'a> {
    first_url: &'a str,
    /// The page token of the deep page.
    deep_token: i64,
    connections: u32,
    seconds: u32,
}

impl PageRuns<'_> {
    /// Measures both pages as `token`, labelled `first page{suffix}` and `page
    /// half-way deep{suffix}`.
    fn measure(
        &self,
        context: &BenchEnvironment,
        server_pid: u32,
        token: &str,
        suffix: &str,
        reads: &mut Vec<(String, (WrkResult, CpuPerRequest))>,
    ) -> anyhow::Result<()> {
        let deep_url = format!("{}&page_token={}", self.first_url, self.deep_token);
        for (label, url) in [
            ("first page", self.first_url),
            ("page half-way deep", deep_url.as_str()),
        ] {
            let measured = run_wrk_measured(
                context,
                server_pid,
                url,
                None,
                self.connections,
                self.seconds,
                token,
            )?;
            reads.push((format!("{label}{suffix}"), measured));
        }
        Ok(())
    }
}

/// A wrk run, with the CPU time each request cost the server, PostgreSQL and the rest.
fn run_wrk_measured(
    context: &BenchEnvironment,
    server_pid: u32,
    url: &str,
    script: Option<&Path>,
    connections: u32,
    seconds: u32,
    token: &str,
) -> anyhow::Result<(WrkResult, CpuPerRequest)> {
    let header = format!("Authorization: Bearer {token}");
    let mut command = wrk_command_with_header(url, script, connections, seconds, Some(&header));
    context.record(&command);
    let before = CpuSample::take(server_pid)?;
    let result = run_wrk(&mut command)?;
    let after = CpuSample::take(server_pid)?;
    if result.non_success > 0 {
        print_error_responses(&context.server_log());
    }
    let requests = result.requests_per_second * f64::from(seconds);
    Ok((result, before.per_request(&after, requests)))
}

/// What the server answered besides 2xx so far, from its own metrics, and the causes
/// its log gives for the failed requests, so that a failed run says which errors it
/// saw and why.
fn print_error_responses(server_log: &Path) {
    let metrics = curl(&["-s", &format!("http://127.0.0.1:{PORT}/metrics")]).unwrap_or_default();
    for line in metrics.lines().filter(|line| {
        line.starts_with("http_responses_total") && !line.contains("status_code=\"2")
    }) {
        eprintln!("error responses so far: {line}");
    }
    let log = std::fs::read_to_string(server_log).unwrap_or_default();
    let failures: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("request failed"))
        .collect();
    for line in &failures[failures.len().saturating_sub(10)..] {
        eprintln!("server log: {line}");
    }
}

fn read_dsn_server(context: &BenchEnvironment) -> String {
    format!("{}/postgres", context.server_url)
}

/// The machine and PostgreSQL settings the figures were measured on.
fn environment_description(dsn: &str) -> anyhow::Result<String> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")?
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|name| name.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(0);
    let memory = std::fs::read_to_string("/proc/meminfo")?
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    let query = "SELECT version() UNION ALL SELECT name || ' = ' || setting || coalesce(' ' || unit, '') \
                 FROM pg_settings WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync', \
                 'wal_level', 'max_wal_size', 'checkpoint_timeout', 'commit_delay', 'work_mem')";
    let output = Command::new("psql")
        .args(["-qtA", dsn, "-c", query])
        .output()?;
    let settings = String::from_utf8_lossy(&output.stdout);
    Ok(format!(
        "- CPU: {cores} cores, {cpu}\n- {memory}\n- Server, wrk and PostgreSQL share these cores.\n- PostgreSQL:\n{}",
        settings
            .lines()
            .map(|line| format!("  - {line}\n"))
            .collect::<String>()
    ))
}

/// Replaces the generated part of the report file, keeping what was written around it.
fn write_report(
    task: &str,
    path: &Path,
    figures: &str,
    commands: &str,
    environment: &str,
) -> anyhow::Result<()> {
    let opening = format!("<!-- cargo xtask {task}: start -->");
    let closing = format!("<!-- cargo xtask {task}: end -->");
    let generated = format!(
        "{opening}\n## Figures (generated by `cargo xtask {task}`)\n\n```\n{figures}```\n\n\
         ### Commands\n\nIn the order they ran (databases created by `audit-migrate`, tables \
         truncated and checkpointed with psql in between). `server.toml` sets the DSN, \
         `log.level = \"warn\"` and `failure.chance = 0.0`; every other key is at its default.\n\n\
         ```\n{commands}\n```\n\n### Machine\n\n{environment}\n{closing}"
    );
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let text = match (existing.find(&opening), existing.find(&closing)) {
        (Some(start), Some(end)) => format!(
            "{}{generated}{}",
            &existing[..start],
            &existing[end + closing.len()..]
        ),
        _ => format!("{existing}\n{generated}\n"),
    };
    std::fs::write(path, text)?;
    Ok(())
}

pub(crate) fn measure_ceiling(context: &BenchEnvironment, rows: u64) -> anyhow::Result<f64> {
    measure_copy(context, rows, false)
}

/// A raw COPY of the same rows, into a table with the optional application index
/// (`with_index`) or without.
fn measure_copy(context: &BenchEnvironment, rows: u64, with_index: bool) -> anyhow::Result<f64> {
    let copy_file = context.directory.join("ceiling-rows.bin");
    context.run_recorded(
        Command::new(context.binaries.join("audit-generate"))
            .args([
                "bulk",
                "--count",
                &rows.to_string(),
                "--seed",
                "1",
                "--payload",
                "original",
                "--copy-file",
            ])
            .arg(&copy_file),
    )?;
    let dsn = fresh_database(context, CEILING_DATABASE)?;
    if with_index {
        context.run_recorded(Command::new("psql").args([
            "-q",
            &dsn,
            "-c",
            CREATE_APPLICATION_INDEX,
        ]))?;
    }
    let rate = copy_rate(context, &dsn, &copy_file, rows)?;
    std::fs::remove_file(&copy_file)?;
    Ok(rate)
}

/// Rows per second of psql copying `rows` rows of a binary COPY file into `dsn`.
pub(crate) fn copy_rate(
    context: &BenchEnvironment,
    dsn: &str,
    copy_file: &Path,
    rows: u64,
) -> anyhow::Result<f64> {
    let copy = format!(
        "\\copy events {COPY_COLUMNS} FROM '{}' WITH (FORMAT binary)",
        copy_file.display()
    );
    let started = Instant::now();
    context.run_recorded(Command::new("psql").args(["-q", dsn, "-c", &copy]))?;
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

/// Empties the events table and checkpoints, so that a run starts clean.
fn empty_events(dsn: &str) -> anyhow::Result<()> {
    run_checked(Command::new("psql").args(["-q", dsn, "-c", "TRUNCATE events"]))?;
    run_checked(Command::new("psql").args(["-q", dsn, "-c", "CHECKPOINT"]))
}

/// The one value a query answers, as psql prints it.
pub(crate) fn psql_value(dsn: &str, query: &str) -> anyhow::Result<String> {
    let output = Command::new("psql")
        .args(["-qtA", dsn, "-c", query])
        .output()?;
    if !output.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

pub(crate) fn fresh_database(context: &BenchEnvironment, name: &str) -> anyhow::Result<String> {
    drop_database(context, name)?;
    let dsn = format!("{}/{name}", context.server_url);
    migrate(context, &dsn)?;
    run_checked(Command::new("psql").args(["-q", &dsn, "-c", "CHECKPOINT"]))?;
    Ok(dsn)
}

/// Runs the built `audit-migrate` against `dsn`.
pub(crate) fn migrate(context: &BenchEnvironment, dsn: &str) -> anyhow::Result<()> {
    let output = Command::new(context.binaries.join("audit-migrate"))
        .env("APP_POSTGRES__DSN", dsn)
        .output()
        .context("failed to run audit-migrate")?;
    if !output.status.success() {
        bail!(
            "audit-migrate failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

pub(crate) fn drop_database(context: &BenchEnvironment, name: &str) -> anyhow::Result<()> {
    run_checked(Command::new("psql").args([
        "-q",
        &format!("{}/postgres", context.server_url),
        "-c",
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    ]))
}

pub(crate) fn write_server_config(
    context: &BenchEnvironment,
    dsn: &str,
    auth_mode: &str,
) -> anyhow::Result<PathBuf> {
    let path = context.directory.join("server.toml");
    let text = format!(
        "host = \"127.0.0.1\"\nport = {PORT}\n[postgres]\ndsn = \"{dsn}\"\n[log]\nlevel = \"warn\"\n[failure]\nchance = 0.0\n[auth]\nmode = \"{auth_mode}\"\n"
    );
    std::fs::write(&path, text)?;
    Ok(path)
}

pub(crate) fn start_server(context: &BenchEnvironment, config: &Path) -> anyhow::Result<Child> {
    let mut command = Command::new(context.binaries.join("audit-server"));
    // Its log (warnings and errors, with the cause of any failed request) goes to a
    // file, so that a run with error responses can say why.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(context.server_log())?;
    command.arg("--config").arg(config).stdout(log);
    context.record(&command);
    let child = command.spawn().context("failed to start audit-server")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if curl(&["-sf", &format!("http://127.0.0.1:{PORT}/ready")]).is_ok() {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("audit-server did not become ready")
}

/// The tokens the benchmark sends, made in one database with `audit-server token`.
struct BenchTokens {
    /// Every scope: writes, reads and reloads.
    all: String,
    /// Reads [`SCOPED_APPLICATION`] only.
    one_reader: String,
}

impl BenchTokens {
    fn create(context: &BenchEnvironment, config: &Path) -> anyhow::Result<Self> {
        let create = |arguments: &[&str]| -> anyhow::Result<String> {
            let mut command = Command::new(context.binaries.join("audit-server"));
            command
                .arg("--config")
                .arg(config)
                .args(["token", "create"])
                .args(arguments);
            context.record(&command);
            last_output_line(&mut command)
        };
        Ok(Self {
            all: create(&["--name", "bench", "--write", "*", "--read", "*", "--admin"])?,
            one_reader: create(&["--name", "bench-reader", "--read", SCOPED_APPLICATION])?,
        })
    }
}

/// Points the running server at `dsn` with `auth.mode = mode`, through a reload that
/// `admin` (an admin token of the database in force) allows.
fn switch_auth_mode(
    context: &BenchEnvironment,
    dsn: &str,
    mode: &str,
    admin: &str,
) -> anyhow::Result<()> {
    write_server_config(context, dsn, mode)?;
    curl(&[
        "-sf",
        "-X",
        "POST",
        "-H",
        &format!("Authorization: Bearer {admin}"),
        &format!("http://127.0.0.1:{PORT}/reload"),
    ])?;
    Ok(())
}

pub(crate) fn curl(arguments: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("curl")
        .args(arguments)
        .output()
        .context("failed to run curl")?;
    if !output.status.success() {
        bail!("curl {arguments:?} failed");
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

pub(crate) fn bulk_load(context: &BenchEnvironment, dsn: &str, rows: u64) -> anyhow::Result<()> {
    context.run_recorded(Command::new(context.binaries.join("audit-generate")).args([
        "bulk",
        "--count",
        &rows.to_string(),
        "--seed",
        "2",
        "--payload",
        "original",
        "--dsn",
        dsn,
    ]))?;
    run_checked(Command::new("psql").args(["-q", dsn, "-c", "VACUUM ANALYZE events"]))
}

/// The page token `depth` events down, among one application's events or all.
fn token_at_depth(dsn: &str, application: Option<&str>, depth: u64) -> anyhow::Result<i64> {
    let filter = application
        .map(|name| format!("WHERE application_name = '{name}'"))
        .unwrap_or_default();
    let query = format!("SELECT id FROM events {filter} ORDER BY id DESC OFFSET {depth} LIMIT 1");
    psql_value(dsn, &query)?
        .parse()
        .context("failed to find the deep page's token")
}

/// The most resident memory the process had so far.
pub(crate) fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    memory_kib(pid, "VmHWM:")
}

/// The process's resident memory now.
pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    memory_kib(pid, "VmRSS:")
}

fn memory_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/<pid>/status"))
}

/// A wrk script that posts a fixed batch of `batch_size` events.
pub(crate) fn post_script(directory: &Path, batch_size: usize) -> anyhow::Result<PathBuf> {
    let events: Vec<String> = (0..batch_size)
        .map(|n| {
            format!(
                r#"{{"event_ts":"2023-12-05T12:55:52.805022Z","application_name":"grease_monkey","event_kind":"UserLogin","payload":{{"username":"user_{n:08}"}}}}"#
            )
        })
        .collect();
    let body = format!("[{}]", events.join(","));
    let script = format!(
        "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = [==[{body}]==]\n"
    );
    let path = directory.join(format!("post-{batch_size}.lua"));
    std::fs::write(&path, script)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::redact_secrets;

    #[test]
    fn a_token_in_a_recorded_command_becomes_a_placeholder() {
        assert_eq!(
            redact_secrets("wrk --header 'Authorization: Bearer aec_aB-9_x' http://h/ aec_z"),
            "wrk --header 'Authorization: Bearer $TOKEN' http://h/ $TOKEN"
        );
    }
}
