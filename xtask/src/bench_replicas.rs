//! Reads from a streaming replica (issue 16), side by side with the same reads from
//! its primary, for `cargo xtask bench`.
//!
//! A private primary cluster is bulk-loaded, then copied by `pg_basebackup` into a
//! streaming replica on this machine. The same server binary serves GETs of the first
//! page twice over: without `postgres.read_dsns` (every read on the primary), then
//! with the replica in it, alternating, each after a short warm-up. The replica's
//! share of the reads comes from the server's own `db_replica_reads_total`, so the
//! figure cannot be the primary's under another name.

use std::fmt::Write as _;
use std::process::Command;

use anyhow::bail;
use private_cluster::PrivateCluster;

use crate::bench::{
    BenchEnvironment, BenchPlan, PORT, bulk_load, curl, migrate, start_server, write_server_config,
};
use crate::command::run_checked;
use crate::wrk::{WrkResult, run_wrk, wrk_command};

const DATABASE: &str = "audit";
const WARM_UP_SECONDS: u32 = 2;
/// Each way of reading is measured this many times, alternating with the other.
const ROUNDS: usize = 2;

pub(crate) fn replica_reads(
    context: &BenchEnvironment,
    plan: &BenchPlan,
) -> anyhow::Result<String> {
    let rows = plan.read_rows / 10;
    let primary = PrivateCluster::start()?;
    let dsn = primary.dsn(DATABASE);
    run_checked(Command::new("psql").args([
        "-q",
        &primary.dsn("postgres"),
        "-c",
        &format!("CREATE DATABASE {DATABASE}"),
    ]))?;
    migrate(context, &dsn)?;
    bulk_load(context, &dsn, rows)?;
    run_checked(Command::new("psql").args(["-q", &dsn, "-c", "CHECKPOINT"]))?;
    let replica = PrivateCluster::replica_of(&primary)?;

    let primary_only = write_server_config(context, &dsn, "off")?;
    let primary_only = std::fs::read_to_string(&primary_only)?;
    let with_replica = primary_only.replacen(
        &format!("dsn = \"{dsn}\"\n"),
        &format!(
            "dsn = \"{dsn}\"\nread_dsns = [\"{}\"]\n",
            replica.dsn(DATABASE)
        ),
        1,
    );
    let config = context.directory.join("server-replicas.toml");
    let url = format!("http://127.0.0.1:{PORT}/api/event?page_size=10");
    let connections = (32 / plan.connection_divisor).max(1);
    let mut from_primary = Vec::new();
    let mut from_replica = Vec::new();
    for _ in 0..ROUNDS {
        for (text, runs) in [
            (&primary_only, &mut from_primary),
            (&with_replica, &mut from_replica),
        ] {
            std::fs::write(&config, text)?;
            let mut server = start_server(context, &config)?;
            let measured = measure_reads(context, &url, connections, plan.run_seconds);
            let _ = server.kill();
            let _ = server.wait();
            runs.push(measured?);
        }
    }
    drop(replica);
    drop(primary);

    let mut report = String::new();
    writeln!(
        report,
        "GET first page (10 events, table of {rows} rows, {connections} clients), a private primary and its streaming replica, {ROUNDS} alternating runs each:"
    )?;
    for (label, runs) in [
        ("primary only", &from_primary),
        ("replica in read_dsns", &from_replica),
    ] {
        for run in runs {
            writeln!(
                report,
                "  {label}: {:.0} requests/s, {:.0}% of the page reads on the replica, {}",
                run.result.requests_per_second,
                run.replica_share * 100.0,
                run.result.latency_summary()
            )?;
        }
    }
    let mean = |runs: &[ReadRun]| {
        runs.iter()
            .map(|run| run.result.requests_per_second)
            .sum::<f64>()
            / runs.len() as f64
    };
    writeln!(
        report,
        "  reads through the replica / from the primary, mean requests/s: {:.2}",
        mean(&from_replica) / mean(&from_primary)
    )?;
    Ok(report)
}

struct ReadRun {
    result: WrkResult,
    /// The replica's page reads over the run's requests.
    replica_share: f64,
}

/// A warm-up, then the measured run; fails on any error response.
fn measure_reads(
    context: &BenchEnvironment,
    url: &str,
    connections: u32,
    seconds: u32,
) -> anyhow::Result<ReadRun> {
    run_wrk(&mut wrk_command(url, None, connections, WARM_UP_SECONDS))?;
    let before = ReadCounts::now()?;
    let mut command = wrk_command(url, None, connections, seconds);
    context.record(&command);
    let result = run_wrk(&mut command)?;
    if result.non_success > 0 || result.requests_per_second <= 0.0 {
        bail!("{} GETs failed", result.non_success);
    }
    let after = ReadCounts::now()?;
    Ok(ReadRun {
        replica_share: (after.on_replicas - before.on_replicas) / (after.gets - before.gets),
        result,
    })
}

/// The server's own counts: GETs of `/api/event`, and reads its replicas served.
struct ReadCounts {
    gets: f64,
    on_replicas: f64,
}

impl ReadCounts {
    fn now() -> anyhow::Result<Self> {
        let metrics = curl(&["-sf", &format!("http://127.0.0.1:{PORT}/metrics")])?;
        let sum = |wanted: &dyn Fn(&str) -> bool| -> f64 {
            metrics
                .lines()
                .filter(|line| wanted(line))
                .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        Ok(Self {
            gets: sum(&|line| {
                line.starts_with(r#"http_requests_total{method="GET",path_template="/api/event","#)
            }),
            on_replicas: sum(&|line| line.starts_with("db_replica_reads_total")),
        })
    }
}
