//! `cargo xtask bench-bulk`: the bulk loader against a raw COPY of the same rows.
//!
//! The generator first writes its rows as a binary COPY file; then, alternating, psql
//! copies that file into a fresh database (the ceiling) and `audit-generate bulk`
//! generates and loads the same rows into another. Medians and their ratio are printed.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::bench::COPY_COLUMNS;
use crate::command::{cargo, run_checked, workspace_root};

/// The server the benchmark uses; override with `AUDIT_BENCH_DATABASE_URL`.
const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432";
const DATABASE: &str = "audit_bench_bulk";

pub fn bench_bulk(count: u64, rounds: usize) -> anyhow::Result<()> {
    run_checked(cargo().args([
        "build",
        "--release",
        "--locked",
        "--bin",
        "audit-generate",
        "--bin",
        "audit-migrate",
    ]))?;
    let server =
        std::env::var("AUDIT_BENCH_DATABASE_URL").unwrap_or_else(|_| DEFAULT_SERVER_URL.to_owned());
    let binaries = workspace_root().join("target").join("release");
    let bench_directory = workspace_root().join("target").join("bench");
    std::fs::create_dir_all(&bench_directory)?;
    let copy_file = bench_directory.join("bulk-rows.bin");
    let count_text = count.to_string();
    let seed = "20231205";

    run_checked(
        Command::new(binaries.join("audit-generate"))
            .args([
                "bulk",
                "--count",
                &count_text,
                "--seed",
                seed,
                "--copy-file",
            ])
            .arg(&copy_file),
    )?;
    let dsn = format!("{server}/{DATABASE}");
    let copy_command = format!(
        "\\copy events {COPY_COLUMNS} FROM '{}' WITH (FORMAT binary)",
        copy_file.display()
    );

    let mut raw = Vec::new();
    let mut loader = Vec::new();
    for round in 1..=rounds {
        fresh_database(&server, &binaries, &dsn)?;
        raw.push(timed(Command::new("psql").args([
            "-q",
            &dsn,
            "-c",
            &copy_command,
        ]))?);
        fresh_database(&server, &binaries, &dsn)?;
        loader.push(timed(Command::new(binaries.join("audit-generate")).args(
            [
                "bulk",
                "--count",
                &count_text,
                "--seed",
                seed,
                "--rows-per-copy",
                &count_text,
                "--dsn",
                &dsn,
            ],
        ))?);
        eprintln!(
            "round {round}: raw COPY {:.2} s, audit-generate bulk {:.2} s",
            raw[round - 1].as_secs_f64(),
            loader[round - 1].as_secs_f64()
        );
    }
    drop_database(&server)?;
    std::fs::remove_file(&copy_file)?;

    let raw_rate = count as f64 / median(&mut raw).as_secs_f64();
    let loader_rate = count as f64 / median(&mut loader).as_secs_f64();
    println!("rows: {count}, rounds: {rounds} (medians)");
    println!("raw COPY of the same rows (psql \\copy, binary): {raw_rate:.0} rows/s");
    println!("audit-generate bulk (generate + COPY): {loader_rate:.0} rows/s");
    println!(
        "ratio: {:.2} (target at least 0.80)",
        loader_rate / raw_rate
    );
    Ok(())
}

fn fresh_database(server: &str, binaries: &std::path::Path, dsn: &str) -> anyhow::Result<()> {
    drop_database(server)?;
    let output = Command::new(binaries.join("audit-migrate"))
        .env("APP_POSTGRES__DSN", dsn)
        .output()
        .context("failed to run audit-migrate")?;
    anyhow::ensure!(output.status.success(), "audit-migrate failed: {output:?}");
    // Start each run from a clean checkpoint, so that no run pays for another's writes.
    run_checked(Command::new("psql").args(["-q", dsn, "-c", "CHECKPOINT"]))
}

fn drop_database(server: &str) -> anyhow::Result<()> {
    run_checked(Command::new("psql").args([
        "-q",
        &format!("{server}/postgres"),
        "-c",
        &format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"),
    ]))
}

fn timed(command: &mut Command) -> anyhow::Result<Duration> {
    let started = Instant::now();
    run_checked(command)?;
    Ok(started.elapsed())
}

fn median(values: &mut [Duration]) -> Duration {
    values.sort_unstable();
    values[values.len() / 2]
}
