//! The memory part of `cargo xtask bench`: concurrent readers of maximum-size pages
//! and clients that never read their response, against the server's resident memory.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::bench::{
    BenchEnvironment, BenchPlan, PORT, drop_database, fresh_database, peak_rss_kib, rss_kib,
    start_server, write_server_config,
};
use crate::wrk::{run_wrk, wrk_command};

const MEMORY_DATABASE: &str = "audit_bench_memory";
/// 64 events of 256 KiB: a page of 64 is 16 MiB, so `api.max_page_bytes` (4 MiB)
/// is what ends each page.
const LARGE_EVENTS: u32 = 64;
const LARGE_EVENT_BYTES: u32 = 256 * 1024;
const READERS: u32 = 4;
const NON_READERS: usize = 4;
/// The bounds: peak RSS, and how close RSS must come back to its start.
const PEAK_TARGET_MIB: f64 = 256.0;
const RETURN_TARGET_MIB: f64 = 64.0;

/// Runs the memory part on a server of its own and returns its report lines.
pub fn large_pages(context: &BenchEnvironment, plan: &BenchPlan) -> anyhow::Result<String> {
    let dsn = fresh_database(context, MEMORY_DATABASE)?;
    let fill = format!(
        "INSERT INTO events (event_ts, application_name, event_kind, payload) \
         SELECT now(), 'bench', 'Large', to_json(repeat('x', {LARGE_EVENT_BYTES})) \
         FROM generate_series(1, {LARGE_EVENTS})"
    );
    context.run_recorded(Command::new("psql").args(["-q", &dsn, "-c", &fill]))?;
    let config = write_server_config(context, &dsn, "off")?;
    let mut server = start_server(context, &config)?;
    std::thread::sleep(Duration::from_secs(1));
    let before = rss_kib(server.id())?;

    let url = format!("http://127.0.0.1:{PORT}/api/event?page_size={LARGE_EVENTS}");
    // Each asks for the largest page and then never reads a byte of it.
    let mut non_readers = Vec::new();
    for _ in 0..NON_READERS {
        let mut stream = TcpStream::connect(("127.0.0.1", PORT))?;
        write!(
            stream,
            "GET /api/event?page_size={LARGE_EVENTS} HTTP/1.1\r\nHost: bench\r\n\r\n"
        )?;
        non_readers.push(stream);
    }
    let mut command = wrk_command(&url, None, READERS, plan.run_seconds);
    context.record(&command);
    let readers = run_wrk(&mut command)?;
    let peak = peak_rss_kib(server.id())?;
    drop(non_readers);
    std::thread::sleep(plan.memory_settle);
    let after = rss_kib(server.id())?;
    let _ = server.kill();
    let _ = server.wait();
    drop_database(context, MEMORY_DATABASE)?;
    if readers.non_success > 0 || readers.requests_per_second <= 0.0 {
        anyhow::bail!("the large-page readers got error responses or none at all");
    }

    let mib = |kib: u64| kib as f64 / 1024.0;
    let mut report = String::new();
    writeln!(
        report,
        "GET 4 MiB pages ({READERS} readers) + {NON_READERS} clients that never read: {:.1} pages/s ({:.0} MiB/s), {}",
        readers.requests_per_second,
        readers.requests_per_second * 4.0,
        readers.latency_summary()
    )?;
    writeln!(
        report,
        "    server peak RSS {:.1} MiB (target <= {PEAK_TARGET_MIB:.0}: {}); RSS {:.1} MiB before, {:.1} MiB {} s after the load (target within {RETURN_TARGET_MIB:.0}: {})",
        mib(peak),
        if mib(peak) <= PEAK_TARGET_MIB {
            "met"
        } else {
            "missed"
        },
        mib(before),
        mib(after),
        plan.memory_settle.as_secs(),
        if mib(after) - mib(before) <= RETURN_TARGET_MIB {
            "met"
        } else {
            "missed"
        },
    )?;
    Ok(report)
}
