//! Metric names, their descriptions, and the Prometheus recorder.
//!
//! The HTTP metric names and labels are the original service's, so existing dashboards
//! keep working. Every label is bounded: methods outside the standard set are `other`,
//! paths are route patterns (all unmatched paths are one value), and the application
//! label of `events_inserted_total` holds at most a configured number of names.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, OnceLock};

use actix_web::http::Method;
use metrics::{Counter, Unit, counter, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::routes::EVENTS_PATH;

pub const HTTP_REQUESTS_TOTAL: &str = "http_requests_total";
pub const HTTP_RESPONSES_TOTAL: &str = "http_responses_total";
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "http_request_duration_seconds";
pub const HTTP_REQUESTS_IN_PROGRESS: &str = "http_requests_in_progress";
pub const HTTP_EXCEPTIONS_TOTAL: &str = "http_exceptions_total";
pub const EVENTS_INSERTED_TOTAL: &str = "events_inserted_total";
pub const DB_POOL_CONNECTIONS: &str = "db_pool_connections";
pub const DB_POOL_WAITING: &str = "db_pool_waiting_requests";
pub const DB_POOL_MAX_SIZE: &str = "db_pool_max_size";
pub const DB_STATEMENT_DURATION_SECONDS: &str = "db_statement_duration_seconds";
pub const INJECTED_FAILURES_TOTAL: &str = "injected_failures_total";
pub const CONFIG_RELOADS_TOTAL: &str = "config_reloads_total";
pub const BUILD_INFO: &str = "audit_collector_build_info";
pub const DATABASE_READY: &str = "database_ready";
pub const AUTH_FAILURES_TOTAL: &str = "auth_failures_total";
pub const EVENTS_EXPORTED_TOTAL: &str = "events_exported_total";
pub const EXPORTS_TOTAL: &str = "exports_total";
pub const STREAM_CLIENTS: &str = "stream_clients";
pub const STREAM_EVENTS_SENT_TOTAL: &str = "stream_events_sent_total";
pub const STREAM_DISCONNECTS_TOTAL: &str = "stream_disconnects_total";
pub const INTEGRITY_TREE_SIZE: &str = "integrity_tree_size";
pub const INTEGRITY_SEALED_EVENTS_TOTAL: &str = "integrity_sealed_events_total";
pub const INTEGRITY_READ_ROWS_TOTAL: &str = "integrity_read_rows_total";
pub const INTEGRITY_BATCHED_LEAVES_TOTAL: &str = "integrity_batched_leaves_total";
pub const INTEGRITY_CHECKPOINTS_TOTAL: &str = "integrity_checkpoints_total";
pub const INTEGRITY_SEALER_ACTIVE: &str = "integrity_sealer_active";
pub const INTEGRITY_REFUSED_EVENTS_TOTAL: &str = "integrity_refused_events_total";
pub const INTEGRITY_SEAL_ERRORS_TOTAL: &str = "integrity_seal_errors_total";
pub const DB_REPLICA_USABLE: &str = "db_replica_usable";
pub const DB_REPLICA_LAG_SECONDS: &str = "db_replica_lag_seconds";
pub const DB_REPLICA_READS_TOTAL: &str = "db_replica_reads_total";
pub const EVENTS_PARTITIONS: &str = "events_partitions";
pub const EVENTS_TABLE_BYTES: &str = "events_table_bytes";
pub const EVENTS_OLDEST_AGE_SECONDS: &str = "events_oldest_age_seconds";
pub const RETENTION_OVERDUE_PARTITIONS: &str = "retention_overdue_partitions";
pub const RETENTION_HOLD: &str = "retention_hold";
pub const RETENTION_DROPPED_PARTITIONS_TOTAL: &str = "retention_dropped_partitions_total";
pub const PARTITION_MAINTENANCE_ERRORS_TOTAL: &str = "partition_maintenance_errors_total";

/// The `path_template` of every request no route matched.
pub const UNMATCHED_PATH: &str = "__not_matched__";
/// The `scheme` label of the `http_*` series, as the original sets it: `http`, or
/// `https` on a TLS listener.
pub const SCHEME: &str = "http";
pub const TLS_SCHEME: &str = "https";
/// The `application` label once the configured number of names is reached.
pub const OTHER_APPLICATION: &str = "__other__";

/// Ours (from 0.5 ms) and every bucket of the Prometheus client the original uses
/// (0.005 ... 0.075 ... 0.75 ... 7.5, 10), so each `le` a query of the original names
/// exists here.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
    7.5, 10.0,
];

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();
/// The `process_*` series, read from the operating system at each scrape.
static PROCESS_METRICS: LazyLock<metrics_process::Collector> =
    LazyLock::new(metrics_process::Collector::default);

/// Refreshes the `process_*` series; called before each scrape is rendered.
pub fn collect_process_metrics() {
    PROCESS_METRICS.collect();
}

/// Installs the process-wide recorder once and returns its handle. The `metrics` facade
/// has one global recorder, so servers built in one process (tests) share it.
pub fn install_recorder() -> Result<PrometheusHandle, BuildError> {
    if let Some(handle) = PROMETHEUS.get() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("duration_seconds".to_owned()),
            LATENCY_BUCKETS,
        )?
        .build_recorder();
    let handle = recorder.handle();
    // A second caller racing us loses here and uses the winner's handle.
    if metrics::set_global_recorder(recorder).is_ok() {
        describe_metrics();
        PROCESS_METRICS.describe();
        start_known_counters_at_zero();
        let _ = PROMETHEUS.set(handle.clone());
    }
    Ok(PROMETHEUS.get().cloned().unwrap_or(handle))
}

/// Server error codes the event routes can answer, counted in `http_exceptions_total`.
const EXPECTED_SERVER_ERRORS: [&str; 6] = [
    "injected_failure",
    "database_unavailable",
    "outcome_unknown",
    "overloaded",
    "internal_error",
    "corrupt_row",
];

/// Counters whose label values are known exist from the start, at 0, as Prometheus'
/// naming practice asks: a `rate()` or a dashboard panel over a counter that appears
/// only at its first increment shows nothing until then, and misses that increment.
fn start_known_counters_at_zero() {
    for result in ["success", "failure"] {
        counter!(CONFIG_RELOADS_TOTAL, "result" => result).absolute(0);
    }
    counter!(INJECTED_FAILURES_TOTAL, "path_template" => EVENTS_PATH).absolute(0);
    for reason in crate::auth::FAILURE_REASONS {
        counter!(AUTH_FAILURES_TOTAL, "reason" => *reason).absolute(0);
    }
    for method in ["GET", "POST"] {
        for code in EXPECTED_SERVER_ERRORS {
            counter!(
                HTTP_EXCEPTIONS_TOTAL,
                "method" => method,
                "path_template" => EVENTS_PATH,
                "scheme" => SCHEME,
                "exception_type" => code
            )
            .absolute(0);
        }
    }
}

fn describe_metrics() {
    describe_counter!(HTTP_REQUESTS_TOTAL, "HTTP requests received.");
    describe_counter!(HTTP_RESPONSES_TOTAL, "HTTP responses sent, by status code.");
    describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time from receiving a request to having its response."
    );
    describe_gauge!(
        HTTP_REQUESTS_IN_PROGRESS,
        "HTTP requests being handled now."
    );
    describe_counter!(
        HTTP_EXCEPTIONS_TOTAL,
        "Requests that ended in a server error (5xx), by error type."
    );
    describe_counter!(EVENTS_INSERTED_TOTAL, "Events committed to the database.");
    describe_gauge!(
        DB_POOL_CONNECTIONS,
        "Database connections held by the pool, by state (in_use, idle)."
    );
    describe_gauge!(
        DB_POOL_WAITING,
        "Requests waiting for a database connection."
    );
    describe_gauge!(DB_POOL_MAX_SIZE, "Most connections the pool may open.");
    describe_histogram!(
        DB_STATEMENT_DURATION_SECONDS,
        Unit::Seconds,
        "Time spent on database statements, connection wait included."
    );
    describe_counter!(
        INJECTED_FAILURES_TOTAL,
        "Deliberate 500 responses made by failure.chance."
    );
    describe_counter!(CONFIG_RELOADS_TOTAL, "Configuration reloads, by result.");
    describe_counter!(
        AUTH_FAILURES_TOTAL,
        "Requests refused by access control (401 and 403), by reason."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the labels carry the build's version."
    );
    describe_gauge!(
        DATABASE_READY,
        "1 when the database answered the last readiness probe with every migration, else 0."
    );
    describe_counter!(
        EVENTS_EXPORTED_TOTAL,
        "Events sent by GET /api/event/export."
    );
    describe_counter!(
        EXPORTS_TOTAL,
        "Exports that ended, by outcome: complete, abandoned (the client left), failed."
    );
    describe_gauge!(STREAM_CLIENTS, "Live tails (GET /api/event/stream) open.");
    describe_counter!(STREAM_EVENTS_SENT_TOTAL, "Events sent by live tails.");
    describe_counter!(
        STREAM_DISCONNECTS_TOTAL,
        "Live tails that ended, by reason: client_left, shutdown, slow (took no event for \
         stream.max_send_wait_ms), error (the database failed)."
    );
    describe_gauge!(
        DB_REPLICA_USABLE,
        "1 while reads may go to this read replica (it answers, within \
         postgres.max_read_lag_ms), else 0."
    );
    describe_gauge!(
        DB_REPLICA_LAG_SECONDS,
        Unit::Seconds,
        "How far the read replica was behind the primary at the last probe."
    );
    describe_counter!(
        DB_REPLICA_READS_TOTAL,
        "Reads (pages, exports, tail polls) this server sent to the read replica."
    );
    describe_gauge!(EVENTS_PARTITIONS, "Partitions of the events table.");
    describe_gauge!(
        EVENTS_TABLE_BYTES,
        Unit::Bytes,
        "Bytes of every partition of the events table, indexes included."
    );
    describe_gauge!(
        EVENTS_OLDEST_AGE_SECONDS,
        Unit::Seconds,
        "How long ago the oldest partition still kept began to receive events."
    );
    describe_gauge!(
        RETENTION_OVERDUE_PARTITIONS,
        "Partitions older than retention.max_age_days that are still kept (a hold, or a \
         failing maintenance)."
    );
    describe_gauge!(
        RETENTION_HOLD,
        "1 while retention.hold stops every drop, else 0."
    );
    describe_counter!(
        RETENTION_DROPPED_PARTITIONS_TOTAL,
        "Partitions this server dropped for retention."
    );
    describe_counter!(
        PARTITION_MAINTENANCE_ERRORS_TOTAL,
        "Partition maintenance rounds of this server that failed."
    );
    describe_gauge!(
        INTEGRITY_TREE_SIZE,
        "Events sealed into the Merkle tree, as this server's sealer last saw it."
    );
    describe_counter!(
        INTEGRITY_SEALED_EVENTS_TOTAL,
        "Events this server's sealer appended to the tree."
    );
    describe_counter!(
        INTEGRITY_READ_ROWS_TOTAL,
        "Rows of events this server's sealer read to find what to seal, those no seal \
         batch gave it (a row still in a running transaction's range is read again by the \
         next round)."
    );
    describe_counter!(
        INTEGRITY_BATCHED_LEAVES_TOTAL,
        "Leaves this server's sealer took from seal batches, without reading their rows."
    );
    describe_counter!(
        INTEGRITY_CHECKPOINTS_TOTAL,
        "Checkpoints this server's sealer signed."
    );
    describe_gauge!(
        INTEGRITY_SEALER_ACTIVE,
        "1 while this server is the database's active sealer, else 0."
    );
    describe_counter!(
        INTEGRITY_REFUSED_EVENTS_TOTAL,
        "Events left unsealed because their ids were not drawn by the database (written by hand)."
    );
    describe_counter!(
        INTEGRITY_SEAL_ERRORS_TOTAL,
        "Sealing rounds that failed (the sealer then reconnects and takes over again)."
    );
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// The `method` label: standard methods by name, anything else as `other`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Hands out the `events_inserted_total` counter of each application, admitting new
/// names as labels until the limit (later names share `OTHER_APPLICATION`'s). The
/// handles are kept: a POST then looks up neither its label nor its counter in the
/// recorder, which would build a key and hash its labels each time.
#[derive(Debug, Default)]
pub struct ApplicationLabels {
    admitted: Mutex<HashMap<String, Counter>>,
}

impl ApplicationLabels {
    pub fn inserted_counter(&self, application: &str, limit: usize) -> Counter {
        let Ok(mut admitted) = self.admitted.lock() else {
            return inserted_counter(OTHER_APPLICATION);
        };
        if let Some(counter) = admitted.get(application) {
            return counter.clone();
        }
        // Once the limit is reached `OTHER_APPLICATION` joins the map, past the
        // limit, and nothing else is admitted after it.
        let label = if admitted.len() < limit {
            application
        } else {
            OTHER_APPLICATION
        };
        admitted
            .entry(label.to_owned())
            .or_insert_with(|| inserted_counter(label))
            .clone()
    }
}

fn inserted_counter(label: &str) -> Counter {
    counter!(EVENTS_INSERTED_TOTAL, "application" => label.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applications_beyond_the_limit_share_one_label() {
        let labels = ApplicationLabels::default();

        for application in ["a", "b", "c", "a", "d"] {
            let _counter = labels.inserted_counter(application, 2);
        }

        let mut admitted: Vec<String> = labels.admitted.lock().unwrap().keys().cloned().collect();
        admitted.sort();
        assert_eq!(admitted, ["__other__", "a", "b"]);
    }

    #[test]
    fn unknown_methods_are_other() {
        let custom = Method::from_bytes(b"BREW").unwrap();

        assert_eq!(method_label(&custom), "other");
        assert_eq!(method_label(&Method::POST), "POST");
    }
}
