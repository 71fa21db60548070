//! `GET /api/event/export` in `cargo xtask bench`: the whole read table as NDJSON to a
//! client that reads as fast as it can (curl to /dev/null), and the server's resident
//! memory during it against during an export of its last 10,000 events.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;

use crate::bench::{PORT, curl, rss_kib};

/// Events of the small export.
const SMALL_EXPORT: u64 = 10_000;

/// Exports the last 10,000 then all `rows` events of the table the server on `pid`
/// serves (the database at `dsn`), sampling its RSS during each, and has psql copy the
/// same rows in the same order to /dev/null, the ceiling; the report lines.
pub(crate) fn export_figures(pid: u32, dsn: &str, rows: u64) -> anyhow::Result<String> {
    let after = rows.saturating_sub(SMALL_EXPORT);
    let (small, small_rss) = timed_export(pid, &format!("after={after}"))?;
    let (whole, whole_rss) = timed_export(pid, "")?;
    let ceiling = copy_out_seconds(dsn)?;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let mut report = String::new();
    writeln!(
        report,
        "GET /api/event/export, all {rows} events as NDJSON to one client: {:.1} s, {:.0} events/s ({:.0} MiB/s)",
        whole.seconds,
        rows as f64 / whole.seconds,
        whole.bytes as f64 / 1_048_576.0 / whole.seconds
    )?;
    writeln!(
        report,
        "    ceiling: psql copying the same rows in id order to /dev/null (COPY ... TO STDOUT, text): {ceiling:.1} s, {:.0} rows/s; the export runs at {:.2} of that rate",
        rows as f64 / ceiling,
        ceiling / whole.seconds
    )?;
    writeln!(
        report,
        "    server RSS at most {:.1} MiB during it, {:.1} MiB during an export of the last {SMALL_EXPORT} ({:.2} s)",
        mib(whole_rss),
        mib(small_rss),
        small.seconds
    )?;
    Ok(report)
}

/// Seconds psql takes to copy the whole table, the export's columns in its order, to
/// /dev/null: PostgreSQL's own fastest way out for the same rows.
fn copy_out_seconds(dsn: &str) -> anyhow::Result<f64> {
    let copy = "\\copy (SELECT id, event_ts, application_name, event_kind, payload::text \
                FROM events ORDER BY id) TO '/dev/null'";
    let started = std::time::Instant::now();
    let status = std::process::Command::new("psql")
        .args(["-q", dsn, "-c", copy])
        .status()
        .context("failed to run psql")?;
    anyhow::ensure!(status.success(), "psql's copy of the table failed");
    Ok(started.elapsed().as_secs_f64())
}

struct Transfer {
    bytes: u64,
    seconds: f64,
}

/// One export through curl, with the server's largest RSS sampled every 50 ms.
fn timed_export(pid: u32, query: &str) -> anyhow::Result<(Transfer, u64)> {
    let done = Arc::new(AtomicBool::new(false));
    let largest = Arc::new(AtomicU64::new(rss_kib(pid)?));
    let sampler = {
        let (done, largest) = (done.clone(), largest.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Ok(rss) = rss_kib(pid) {
                    largest.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let written = curl(&[
        "-sf",
        "-o",
        "/dev/null",
        "-w",
        "%{size_download} %{time_total}",
        &format!("http://127.0.0.1:{PORT}/api/event/export?{query}"),
    ]);
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let written = written?;
    let (bytes, seconds) = written
        .split_once(' ')
        .context("curl wrote no size and time")?;
    let transfer = Transfer {
        bytes: bytes.parse().context("curl's size")?,
        seconds: seconds.trim().parse().context("curl's time")?,
    };
    Ok((transfer, largest.load(Ordering::Relaxed)))
}
