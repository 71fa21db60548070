//! Counting what a traffic run did, and the closing summary.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// What one worker, or the whole run, observed.
#[derive(Debug, Default)]
pub struct TrafficStats {
    pub posts: u64,
    pub gets: u64,
    pub events_sent: u64,
    pub events_acknowledged: u64,
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no HTTP response at all (refused, reset, timed out).
    pub transport_errors: u64,
    pub latencies_micros: Vec<u64>,
    /// Events the live-tail consumers received (`--tail`).
    pub tail_events: u64,
}

impl TrafficStats {
    pub fn merge(&mut self, other: TrafficStats) {
        self.posts += other.posts;
        self.gets += other.gets;
        self.events_sent += other.events_sent;
        self.events_acknowledged += other.events_acknowledged;
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.transport_errors += other.transport_errors;
        self.tail_events += other.tail_events;
        self.latencies_micros.extend(other.latencies_micros);
    }

    pub fn responses(&self) -> u64 {
        self.statuses.values().sum()
    }
}

/// The summary printed at the end of a run.
pub struct TrafficSummary {
    pub stats: TrafficStats,
    pub elapsed: Duration,
    pub seed: u64,
}

/// The value below which `quantile` of the sorted values fall (nearest rank).
pub fn percentile(sorted: &[u64], quantile: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    // A quantile in [0, 1] times a length is a whole number within the length.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn milliseconds(micros: Option<u64>) -> String {
    match micros {
        Some(micros) => format!("{:.2} ms", micros as f64 / 1000.0),
        None => "-".to_owned(),
    }
}

impl fmt::Display for TrafficSummary {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stats = &self.stats;
        let seconds = self.elapsed.as_secs_f64().max(f64::EPSILON);
        let requests = stats.posts + stats.gets;
        writeln!(
            formatter,
            "requests: {requests} (POST {}, GET {}) in {seconds:.1} s, {:.1} requests/s",
            stats.posts,
            stats.gets,
            requests as f64 / seconds
        )?;
        writeln!(
            formatter,
            "events: {} sent, {} acknowledged with 201, {:.1} events/s acknowledged",
            stats.events_sent,
            stats.events_acknowledged,
            stats.events_acknowledged as f64 / seconds
        )?;
        let statuses: Vec<String> = stats
            .statuses
            .iter()
            .map(|(status, count)| format!("{status}: {count}"))
            .collect();
        writeln!(formatter, "responses by status: {}", statuses.join(", "))?;
        writeln!(
            formatter,
            "no response (transport errors): {}",
            stats.transport_errors
        )?;
        let mut sorted = stats.latencies_micros.clone();
        sorted.sort_unstable();
        writeln!(
            formatter,
            "latency: p50 {}, p90 {}, p99 {}",
            milliseconds(percentile(&sorted, 0.50)),
            milliseconds(percentile(&sorted, 0.90)),
            milliseconds(percentile(&sorted, 0.99))
        )?;
        if stats.tail_events > 0 {
            writeln!(
                formatter,
                "live tails: {} events received",
                stats.tail_events
            )?;
        }
        write!(formatter, "seed: {}", self.seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();

        assert_eq!(percentile(&values, 0.50), Some(50));
        assert_eq!(percentile(&values, 0.99), Some(99));
        assert_eq!(percentile(&values, 1.0), Some(100));
        assert_eq!(percentile(&[7], 0.5), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn merging_adds_counts_by_status() {
        let mut total = TrafficStats::default();
        let mut part = TrafficStats::default();
        part.statuses.insert(201, 3);
        part.statuses.insert(500, 1);
        total.merge(part);
        let mut more = TrafficStats::default();
        more.statuses.insert(201, 2);
        total.merge(more);

        assert_eq!(total.statuses[&201], 5);
        assert_eq!(total.responses(), 6);
    }
}
