//! Where the CPU time of a benchmark run goes, from `/proc`: the server process, the
//! PostgreSQL processes, and the rest of the machine (the load client and the kernel's
//! work that is charged to no process). Requests/s moves with whatever else this
//! shared machine does; CPU time per request is steadier and says who pays.

use std::fs;

use anyhow::Context;

/// Clock ticks of the parts of the machine at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuSample {
    server: u64,
    postgres: u64,
    /// Every CPU's busy time, i.e. everything but idle and I/O wait.
    machine_busy: u64,
    machine_total: u64,
}

/// The difference between two samples, per request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CpuPerRequest {
    pub server_us: f64,
    pub postgres_us: f64,
    pub rest_us: f64,
    /// Share of all cores that was busy, 0..=1.
    pub machine_busy: f64,
}

impl CpuSample {
    pub fn take(server_pid: u32) -> anyhow::Result<Self> {
        let (machine_busy, machine_total) = machine_ticks(&fs::read_to_string("/proc/stat")?)?;
        Ok(Self {
            server: process_ticks(&fs::read_to_string(format!("/proc/{server_pid}/stat"))?)
                .context("unreadable /proc/<server>/stat")?,
            postgres: postgres_ticks()?,
            machine_busy,
            machine_total,
        })
    }

    /// CPU per request between `self` (before) and `after`, for `requests` requests.
    pub fn per_request(&self, after: &Self, requests: f64) -> CpuPerRequest {
        let micros = |ticks: u64| ticks as f64 / CLOCK_TICKS_PER_SECOND * 1e6 / requests;
        let server = after.server.saturating_sub(self.server);
        let postgres = after.postgres.saturating_sub(self.postgres);
        let busy = after.machine_busy.saturating_sub(self.machine_busy);
        let total = after.machine_total.saturating_sub(self.machine_total);
        CpuPerRequest {
            server_us: micros(server),
            postgres_us: micros(postgres),
            rest_us: micros(busy.saturating_sub(server + postgres)),
            machine_busy: if total == 0 {
                0.0
            } else {
                busy as f64 / total as f64
            },
        }
    }
}

impl CpuPerRequest {
    /// `CPU per request: server .. us, PostgreSQL .. us, rest .. us; machine ..% busy`.
    pub fn summary(&self) -> String {
        self.summary_with_client("wrk")
    }

    /// The summary, naming the load client whose CPU is in the rest.
    pub fn summary_with_client(&self, client: &str) -> String {
        format!(
            "CPU per request: server {:.1} us, PostgreSQL {:.1} us, rest ({client}, kernel) {:.1} us; cores {:.0}% busy",
            self.server_us,
            self.postgres_us,
            self.rest_us,
            self.machine_busy * 100.0
        )
    }
}

/// USER_HZ, the unit of `/proc` CPU times: 100 on every Linux architecture this runs on.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// utime + stime of a `/proc/<pid>/stat` line. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its closing parenthesis.
fn process_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// Busy and total ticks over all CPUs from the first line of `/proc/stat`.
fn machine_ticks(stat: &str) -> anyhow::Result<(u64, u64)> {
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("cpu "))
        .context("no cpu line in /proc/stat")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    Ok((total - idle, total))
}

/// utime + stime + cutime + cstime: the process's own time and that of its children
/// it has reaped.
fn process_and_children_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<u64> = (after_name.split_whitespace().skip(11).take(4))
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    (fields.len() == 4).then(|| fields.iter().sum())
}

/// Ticks of every process named `postgres` (the postmaster, backends and helpers),
/// with those of backends that have ended: the postmaster reaps them, so their time is
/// in its children's (a pgbench run opens and closes its connections within the run).
fn postgres_ticks() -> anyhow::Result<u64> {
    let mut ticks = 0;
    for entry in fs::read_dir("/proc")? {
        let path = entry?.path();
        // Processes come and go while we read; a vanished one simply does not count.
        let Ok(stat) = fs::read_to_string(path.join("stat")) else {
            continue;
        };
        if stat.contains(" (postgres) ") {
            ticks += process_and_children_ticks(&stat).unwrap_or(0);
        }
    }
    Ok(ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_ticks_count_fields_after_the_command_name() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        assert_eq!(process_ticks(stat), Some(300));
        let with_children = "42 (postgres) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 30 20 20 0 1 0";
        assert_eq!(process_and_children_ticks(with_children), Some(350));
    }

    #[test]
    fn machine_ticks_leave_out_idle_and_iowait() {
        let stat = "cpu  100 5 50 800 20 3 7 15 0 0\ncpu0 1 2 3\n";
        assert_eq!(machine_ticks(stat).unwrap(), (180, 1000));
    }

    #[test]
    fn per_request_figures_split_the_busy_time() {
        let before = CpuSample::default();
        let after = CpuSample {
            server: 100,
            postgres: 50,
            machine_busy: 190,
            machine_total: 200,
        };
        // 1000 requests: 100 ticks = 1 s = 1000 us each.
        let figures = before.per_request(&after, 1000.0);
        assert_eq!(figures.server_us, 1000.0);
        assert_eq!(figures.postgres_us, 500.0);
        assert_eq!(figures.rest_us, 400.0);
        assert_eq!(figures.machine_busy, 0.95);
    }
}
