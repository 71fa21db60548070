//! The events table's partitions in the server: every server runs the maintenance
//! loop, one at a time does a round (`audit_core::partitions`), and every server
//! reports what it reads of them as metrics. The settings are read each round, so a
//! reload changes retention (a legal hold, say) without a restart, and a reload to
//! another database moves the maintenance there with the requests.

use actix_web::web;
use audit_core::database;
use audit_core::partitions::{self, Maintenance};
use audit_core::storage_error::cause_chain;
use metrics::{counter, gauge};

use crate::dedicated_connection::DedicatedConnection;
use crate::metrics::{
    EVENTS_OLDEST_AGE_SECONDS, EVENTS_PARTITIONS, EVENTS_TABLE_BYTES,
    PARTITION_MAINTENANCE_ERRORS_TOTAL, RETENTION_DROPPED_PARTITIONS_TOTAL, RETENTION_HOLD,
    RETENTION_OVERDUE_PARTITIONS,
};
use crate::state::AppState;

/// Looks after the partitions until the server stops: a round at once (so that there
/// is room before the first writes), then one each `partitions.maintenance_interval_ms`.
pub async fn keep_partitions(state: web::Data<AppState>) {
    // A connection of its own: a round holds a session lock while it runs.
    let mut client = DedicatedConnection::default();
    loop {
        let runtime = state.runtime();
        let settings = &runtime.settings;
        let connection = client.current(&settings.postgres, database::connect).await;
        if let Some(connection) = connection {
            match partitions::maintain(connection, &settings.partitions, &settings.retention).await
            {
                Ok(Some(round)) => report(&round),
                Ok(None) => {}
                Err(error) => {
                    counter!(PARTITION_MAINTENANCE_ERRORS_TOTAL).increment(1);
                    tracing::error!(error = %cause_chain(&error), "partition maintenance failed");
                }
            }
            if let Ok(stats) = partitions::read_stats(connection, &settings.retention).await {
                gauge!(EVENTS_PARTITIONS).set(stats.partitions as f64);
                gauge!(EVENTS_TABLE_BYTES).set(stats.table_bytes as f64);
                gauge!(EVENTS_OLDEST_AGE_SECONDS)
                    .set(stats.oldest_arrival_age_seconds.unwrap_or(0.0));
                gauge!(RETENTION_OVERDUE_PARTITIONS).set(stats.overdue as f64);
            }
        }
        gauge!(RETENTION_HOLD).set(if settings.retention.hold { 1.0 } else { 0.0 });
        // Not held across the wait: a reload's old pools close once nothing holds them.
        let pause = settings.partitions.maintenance_interval();
        drop(runtime);
        tokio::time::sleep(pause).await;
    }
}

fn report(round: &Maintenance) {
    for name in &round.closed {
        tracing::debug!(partition = %name, "partition closed: no event can arrive in it any more");
    }
    counter!(RETENTION_DROPPED_PARTITIONS_TOTAL).increment(round.dropped.len() as u64);
}
