//! `cargo xtask`: the project's automation, in Rust so it needs nothing but cargo.
//!
//! - `cargo xtask ci`: formatting, lints and every test, as CI runs them.
//! - `cargo xtask run`: migrate the configured database, then serve.
//! - `cargo xtask bench`: the service against the database's own ceiling.
//! - `cargo xtask bench-bulk`: the bulk loader against a raw COPY of the same rows.
//! - `cargo xtask bench-search`: filtered pages on 10M events, and each search index's
//!   ingest cost.
//! - `cargo xtask bench-sealing`: 100-event ingest with sealing off and on, rounds
//!   side by side, with the lags of checkpoints and the live tail.
//! - `cargo xtask bench-partitions`: ingest on an empty and a 50M-event table, and
//!   writers while retention drops a partition.

mod api_fuzz;
mod bench;
mod bench_bulk;
mod bench_export;
mod bench_integrity;
mod bench_memory;
mod bench_partitions;
mod bench_replicas;
mod bench_search;
mod bench_viewer;
mod chart;
mod command;
mod cpu;
mod pgbench;
mod probe_client;
mod wrk;

use std::path::PathBuf;

use anyhow::Context;
use argh::FromArgs;

use crate::command::{cargo, run_checked, workspace_root};

/// Development tasks of the audit event collector.
#[derive(FromArgs)]
struct Arguments {
    #[argh(subcommand)]
    task: Task,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Task {
    Ci(Ci),
    Run(Run),
    Install(Install),
    Bench(Bench),
    BenchBulk(BenchBulk),
    BenchSearch(BenchSearch),
    BenchPartitions(BenchPartitions),
    BenchSealing(BenchSealing),
}

/// Benchmark 100-event ingest with sealing off and on, side by side, with the lags
/// sealing leaves (about a minute a round; prints, writes no report).
#[derive(FromArgs)]
#[argh(subcommand, name = "bench-sealing")]
struct BenchSealing {
    /// rounds of (off, on), each on fresh databases and servers
    #[argh(option, default = "3")]
    rounds: u32,
}

/// Benchmark ingest on an empty and a 50M-event table, and writers while retention
/// drops a partition (about 8 minutes; 10 GB of disk for a while).
#[derive(FromArgs)]
#[argh(subcommand, name = "bench-partitions")]
struct BenchPartitions {
    /// a run of seconds with a small table, to check that the benchmark works
    #[argh(switch)]
    smoke: bool,
    /// the report file whose generated section is replaced (default BENCHMARKS.md; the
    /// smoke run writes none)
    #[argh(option)]
    output: Option<PathBuf>,
}

/// Benchmark filtered pages on 10M events and each search index's ingest cost (about
/// 10 minutes).
#[derive(FromArgs)]
#[argh(subcommand, name = "bench-search")]
struct BenchSearch {
    /// a run of seconds with a small table, to check that the benchmark works
    #[argh(switch)]
    smoke: bool,
    /// the report file whose generated section is replaced (default BENCHMARKS.md; the
    /// smoke run writes none)
    #[argh(option)]
    output: Option<PathBuf>,
}

/// Benchmark ingest and reads against the raw COPY ceiling (about 3 minutes).
#[derive(FromArgs)]
#[argh(subcommand, name = "bench")]
struct Bench {
    /// a run of seconds with small tables, to check that the benchmark works
    #[argh(switch)]
    smoke: bool,
    /// the report file whose generated section is replaced (default BENCHMARKS.md; the
    /// smoke run writes none unless given)
    #[argh(option)]
    output: Option<PathBuf>,
}

/// Compare `audit-generate bulk` with a raw COPY of the same rows (minutes).
#[derive(FromArgs)]
#[argh(subcommand, name = "bench-bulk")]
struct BenchBulk {
    /// rows per run (default 5000000)
    #[argh(option, default = "5_000_000")]
    count: u64,
    /// runs of each, alternating; the medians are reported (default 3)
    #[argh(option, default = "3")]
    rounds: usize,
}

/// Check formatting, run clippy with warnings denied, run schemathesis against a live
/// server, run the benchmark's smoke run and every test; fail if the run changed the
/// work tree.
#[derive(FromArgs)]
#[argh(subcommand, name = "ci")]
struct Ci {}

/// Install audit-server, audit-migrate and audit-generate into cargo's bin directory
/// (usually ~/.cargo/bin, on PATH).
#[derive(FromArgs)]
#[argh(subcommand, name = "install")]
struct Install {}

/// Build the three binaries, migrate the configured database (creating it if needed),
/// then start the server.
#[derive(FromArgs)]
#[argh(subcommand, name = "run")]
struct Run {
    /// config file passed to audit-migrate and audit-server
    #[argh(option)]
    config: Option<PathBuf>,
    /// build in debug mode (faster to build, slower to serve)
    #[argh(switch)]
    debug: bool,
}

fn main() -> anyhow::Result<()> {
    let arguments = arguments_from_env();
    std::env::set_current_dir(workspace_root()).context("failed to enter the workspace root")?;
    match arguments.task {
        Task::Ci(_) => ci(),
        Task::Run(run) => serve(run),
        Task::Install(_) => install(),
        Task::Bench(bench) => bench::bench(&if bench.smoke {
            bench::BenchPlan::smoke(bench.output)
        } else {
            bench::BenchPlan::full(Some(
                bench
                    .output
                    .unwrap_or_else(|| workspace_root().join("BENCHMARKS.md")),
            ))
        }),
        Task::BenchSealing(bench) => bench_integrity::bench_sealing(bench.rounds.max(1)),
        Task::BenchBulk(bench) => bench_bulk::bench_bulk(bench.count, bench.rounds.max(1)),
        Task::BenchPartitions(bench) => bench_partitions::bench_partitions(&if bench.smoke {
            bench_partitions::PartitionPlan::smoke()
        } else {
            bench_partitions::PartitionPlan::full(Some(
                bench
                    .output
                    .unwrap_or_else(|| workspace_root().join("BENCHMARKS.md")),
            ))
        }),
        Task::BenchSearch(bench) => bench_search::bench_search(&if bench.smoke {
            bench_search::SearchPlan::smoke()
        } else {
            bench_search::SearchPlan::full(Some(
                bench
                    .output
                    .unwrap_or_else(|| workspace_root().join("BENCHMARKS.md")),
            ))
        }),
    }
}

/// The arguments, with `-h` read as `--help` as the project's binaries do (argh takes
/// only the long form).
fn arguments_from_env() -> Arguments {
    let words: Vec<String> = std::env::args()
        .skip(1)
        .map(|word| {
            if word == "-h" {
                "--help".to_owned()
            } else {
                word
            }
        })
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    Arguments::from_args(&["cargo xtask"], &words).unwrap_or_else(|exit| {
        if exit.status.is_ok() {
            println!("{}", exit.output);
            std::process::exit(0);
        }
        eprintln!("{}", exit.output);
        std::process::exit(1);
    })
}

fn ci() -> anyhow::Result<()> {
    let tree_before = tree_status();
    checks()?;
    // A check that writes into the work tree (a tool's cache, a generated file) would
    // leave every clone dirty after CI; such files belong in target/ or .gitignore.
    let tree_after = tree_status();
    if tree_after != tree_before {
        anyhow::bail!(
            "the run changed the work tree (git status --porcelain):\nbefore:\n{}\nafter:\n{}",
            tree_before.unwrap_or_default(),
            tree_after.unwrap_or_default()
        );
    }
    Ok(())
}

/// `git status --porcelain`, or `None` outside a git checkout.
fn tree_status() -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["status", "--porcelain"])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

fn checks() -> anyhow::Result<()> {
    run_checked(cargo().args(["fmt", "--all", "--check"]))?;
    run_checked(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The process tests and schemathesis start the real `audit-server` binary.
    run_checked(cargo().args(["build", "--workspace", "--bins", "--locked"]))?;
    api_fuzz::run()?;
    // Seconds long (after a release build): keeps the benchmark itself from rotting,
    // and fails on any error response under load.
    bench::bench(&bench::BenchPlan::smoke(None))?;
    bench_search::bench_search(&bench_search::SearchPlan::smoke())?;
    bench_partitions::bench_partitions(&bench_partitions::PartitionPlan::smoke())?;
    ensure_nextest()?;
    // nextest runs each test in its own process, which the tests rely on: the metrics
    // recorder is global to a process, and some tests count exact metric values.
    // The workspace has no doctests (nextest does not run them); its last line is the
    // summary of every test.
    run_checked(cargo().args([
        "nextest",
        "run",
        "--workspace",
        "--locked",
        "--no-fail-fast",
    ]))
}

fn ensure_nextest() -> anyhow::Result<()> {
    let present = cargo()
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if present {
        return Ok(());
    }
    eprintln!("cargo-nextest is missing; installing it from crates.io");
    run_checked(cargo().args(["install", "cargo-nextest", "--locked"]))
}

/// The binaries a user runs: their package directory and name.
const BINARIES: [(&str, &str); 3] = [
    ("crates/audit-server", "audit-server"),
    ("crates/audit-migrate", "audit-migrate"),
    ("crates/audit-generate", "audit-generate"),
];

fn install() -> anyhow::Result<()> {
    for (path, _) in BINARIES {
        run_checked(cargo().args(["install", "--locked", "--path", path]))?;
    }
    Ok(())
}

/// What `audit-migrate` says when no server answers at the DSN
/// (`DatabaseError::Connect`).
const NO_POSTGRESQL: &str = "failed to connect to PostgreSQL";

/// What to add to a failed `audit-migrate`'s own error (`stderr`), which already says
/// what failed (a missing file, a bad value, a role PostgreSQL refused...): only a
/// server that does not answer gets the hint on how to start one.
fn migrate_failure(stderr: &str) -> String {
    if stderr.contains(NO_POSTGRESQL) {
        return "no PostgreSQL answered at the configured DSN (postgres.dsn in the config \
                file, or APP_POSTGRES__DSN). Start one, e.g. on Debian:\n  \
                apt-get install postgresql && pg_ctlcluster --skip-systemctl-redirect \
                $(ls /etc/postgresql | sort -V | tail -n 1) main start\n\
                or point APP_POSTGRES__DSN at a server you have."
            .to_owned();
    }
    "audit-migrate could not prepare the database: see its error above".to_owned()
}

fn serve(run: Run) -> anyhow::Result<()> {
    let profile: &[&str] = if run.debug { &[] } else { &["--release"] };
    run_checked(
        cargo()
            .args(["build", "--locked"])
            .args(BINARIES.iter().flat_map(|(_, name)| ["--bin", name]))
            .args(profile),
    )?;
    let binaries =
        workspace_root()
            .join("target")
            .join(if run.debug { "debug" } else { "release" });
    eprintln!(
        "built {} in {}",
        BINARIES.map(|(_, name)| name).join(", "),
        binaries.display()
    );
    let config_arguments: Vec<std::ffi::OsString> = match &run.config {
        Some(path) => vec!["--config".into(), path.into()],
        None => Vec::new(),
    };
    let mut migrate = std::process::Command::new(binaries.join("audit-migrate"));
    migrate.args(&config_arguments);
    eprintln!("$ {}", command::render(&migrate));
    let output = migrate
        .stderr(std::process::Stdio::piped())
        .output()
        .context("failed to run audit-migrate")?;
    std::io::Write::write_all(&mut std::io::stdout(), &output.stdout)?;
    let error = String::from_utf8_lossy(&output.stderr);
    eprint!("{error}");
    if !output.status.success() {
        anyhow::bail!(migrate_failure(&error));
    }
    let mut server = std::process::Command::new(binaries.join("audit-server"));
    server.args(&config_arguments);
    run_checked(&mut server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_server_that_does_not_answer_gets_the_hint_to_start_one() {
        let no_answer = "Error: failed to prepare the database\n\
            Caused by:\n    0: failed to connect to PostgreSQL at postgres://x@h:5999/db";
        let refused = "Error: failed to prepare the database\n\
            Caused by:\n    0: PostgreSQL at postgres://x@h/db refused the connection\n\
            2: FATAL: role \"nosuchrole\" does not exist";
        let missing_file = "Error: failed to load the configuration\n\
            Caused by:\n    the config file /nope.toml does not exist";

        assert!(migrate_failure(no_answer).contains("pg_ctlcluster"));
        for other in [refused, missing_file] {
            assert!(!migrate_failure(other).contains("pg_ctlcluster"), "{other}");
        }
    }
}
