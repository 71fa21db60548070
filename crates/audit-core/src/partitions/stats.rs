//! What a server reports about the partitions (its metrics), read by every server.

use tokio_postgres::Client;

use crate::config::RetentionSettings;
use crate::storage_error::{StorageError, classify};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct PartitionStats {
    /// Partitions attached to `events`.
    pub partitions: i64,
    /// The bytes of every partition, indexes and TOAST included.
    pub table_bytes: i64,
    /// How long ago the oldest partition still held began to receive events: the
    /// oldest event's arrival is no earlier.
    pub oldest_arrival_age_seconds: Option<f64>,
    /// Partitions retention should have dropped by now and has not (a hold keeps
    /// them, and so does a maintenance that is failing).
    pub overdue: i64,
}

pub async fn read_stats(
    client: &Client,
    retention: &RetentionSettings,
) -> Result<PartitionStats, StorageError> {
    let max_age = retention
        .max_age_days
        .map(|days| f64::from(days) * 86_400.0);
    let row = client
        .query_one(
            "SELECT \
               (SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass), \
               (SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::bigint \
                  FROM pg_inherits WHERE inhparent = 'events'::regclass), \
               (SELECT extract(epoch FROM now() - min(opened_at))::float8 \
                  FROM event_partitions WHERE dropped_at IS NULL), \
               (SELECT count(*) FROM event_partitions WHERE dropped_at IS NULL \
                  AND closed_at < now() - make_interval(secs => $1))",
            &[&max_age],
        )
        .await
        .map_err(classify)?;
    Ok(PartitionStats {
        partitions: row.try_get(0).map_err(classify)?,
        table_bytes: row.try_get(1).map_err(classify)?,
        oldest_arrival_age_seconds: row.try_get(2).map_err(classify)?,
        overdue: row.try_get(3).map_err(classify)?,
    })
}
