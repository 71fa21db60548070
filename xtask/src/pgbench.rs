//! Running pgbench with a custom script, for the ceilings the service's requests are
//! measured against: PostgreSQL doing the same statement with no HTTP server between.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

/// pgbench running `script` over `connections` prepared-statement connections (two
/// threads, one per core), `seconds` long; its transactions per second.
pub fn pgbench_command(dsn: &str, script: &Path, connections: u32, seconds: u32) -> Command {
    let mut command = Command::new("pgbench");
    command
        .args([
            "--no-vacuum",
            "--protocol=prepared",
            "--client",
            &connections.to_string(),
            "--jobs",
            &connections.clamp(1, 2).to_string(),
            "--time",
            &seconds.to_string(),
            "--file",
        ])
        .arg(script)
        .arg(dsn);
    command
}

pub fn run_pgbench(command: &mut Command) -> anyhow::Result<f64> {
    let output = command.output().context("failed to run pgbench")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "pgbench failed: {}{}",
            text,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    transactions_per_second(&text)
}

/// `tps = 59012.345678 (without initial connection time)` from pgbench's report.
fn transactions_per_second(report: &str) -> anyhow::Result<f64> {
    report
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .context("pgbench reported no tps")
}

/// Writes a pgbench script of one statement.
pub fn script(directory: &Path, name: &str, statement: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = directory.join(format!("{name}.sql"));
    std::fs::write(&path, format!("{statement};\n"))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_read_from_a_pgbench_report() {
        let report = "transaction type: get.sql\nscaling factor: 1\n\
                      number of transactions actually processed: 885206\n\
                      latency average = 0.541 ms\n\
                      initial connection time = 12.881 ms\n\
                      tps = 59012.345678 (without initial connection time)\n";
        assert!((transactions_per_second(report).unwrap() - 59_012.345_678).abs() < 1e-6);
        assert!(transactions_per_second("nothing here").is_err());
    }
}
