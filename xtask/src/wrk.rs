//! Running wrk and reading its report.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use crate::command::render;

#[derive(Clone, Debug, PartialEq)]
pub struct WrkResult {
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Responses outside 2xx and 3xx.
    pub non_success: u64,
}

impl WrkResult {
    /// `p50 .. ms, p99 .. ms, N non-2xx`, as every line of the report ends.
    pub fn latency_summary(&self) -> String {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, {} non-2xx",
            self.p50_ms, self.p99_ms, self.non_success
        )
    }
}

/// Two threads (one per core), `connections` connections, `seconds` long.
pub fn wrk_command(url: &str, script: Option<&Path>, connections: u32, seconds: u32) -> Command {
    wrk_command_with_header(url, script, connections, seconds, None)
}

/// The same, with one more request header (`Name: value`).
pub fn wrk_command_with_header(
    url: &str,
    script: Option<&Path>,
    connections: u32,
    seconds: u32,
    header: Option<&str>,
) -> Command {
    let mut command = Command::new("wrk");
    // Two threads, one per core; wrk refuses more threads than connections.
    let threads = connections.clamp(1, 2);
    command.args([
        "--threads",
        &threads.to_string(),
        "--connections",
        &connections.to_string(),
        "--duration",
        &format!("{seconds}s"),
        "--latency",
    ]);
    if let Some(script) = script {
        command.arg("--script").arg(script);
    }
    if let Some(header) = header {
        command.args(["--header", header]);
    }
    command.arg(url);
    command
}

pub fn run_wrk(command: &mut Command) -> anyhow::Result<WrkResult> {
    eprintln!("$ {}", render(command));
    let output = command
        .output()
        .context("failed to run wrk (Debian package wrk)")?;
    let report = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed: {report}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_report(&report)
}

pub fn parse_report(report: &str) -> anyhow::Result<WrkResult> {
    let mut result = WrkResult {
        requests_per_second: 0.0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        non_success: 0,
    };
    for line in report.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("50%"), Some(value)) => result.p50_ms = milliseconds(value)?,
            (Some("99%"), Some(value)) => result.p99_ms = milliseconds(value)?,
            (Some("Requests/sec:"), Some(value)) => result.requests_per_second = value.parse()?,
            _ => {}
        }
        if let Some(count) = line.strip_prefix("Non-2xx or 3xx responses:") {
            result.non_success = count.trim().parse()?;
        }
    }
    if result.requests_per_second == 0.0 {
        bail!("no requests/s in the wrk report:\n{report}");
    }
    Ok(result)
}

fn milliseconds(value: &str) -> anyhow::Result<f64> {
    let (number, factor) = if let Some(number) = value.strip_suffix("us") {
        (number, 0.001)
    } else if let Some(number) = value.strip_suffix("ms") {
        (number, 1.0)
    } else if let Some(number) = value.strip_suffix('s') {
        (number, 1000.0)
    } else {
        bail!("unknown latency unit in {value}");
    };
    Ok(number.parse::<f64>()? * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrk_report_is_read() {
        let report = "Running 10s test @ http://127.0.0.1:8080/api/event
  2 threads and 32 connections
  Latency Distribution
     50%  810.00us
     75%    1.20ms
     90%    2.00ms
     99%    1.50s
  12345 requests in 10.00s, 1.00MB read
  Non-2xx or 3xx responses: 7
Requests/sec:   1234.50
Transfer/sec:    100.00KB
";

        let result = parse_report(report).unwrap();

        assert_eq!(
            result,
            WrkResult {
                requests_per_second: 1234.5,
                p50_ms: 0.81,
                p99_ms: 1500.0,
                non_success: 7
            }
        );
    }
}
