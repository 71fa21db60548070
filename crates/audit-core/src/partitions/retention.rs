//! Retention: partitions whose events all arrived longer ago than
//! `retention.max_age_days` leave whole, never row by row.
//!
//! A drop is three steps, each recorded so that a later round finishes one cut short:
//! detach (`CONCURRENTLY`, so writers never wait for it), then in one transaction the
//! `PartitionDropped` event (in the log itself, and so sealed: the verifier trusts the
//! ranges it names) with the marking of the partition as dropped and the removal of
//! its search postings, then `DROP TABLE`.

use std::time::Duration;

use serde_json::{Map, Value};
use tokio_postgres::Client;

use crate::access::{Actor, collector_event, write_in_transaction};
use crate::database::quote_identifier;
use crate::storage_error::{StorageError, classify};

/// The collector's event recording a drop.
pub const PARTITION_DROPPED: &str = "PartitionDropped";

/// A partition retention dropped: its ids (`first_id <= id < end_id`) and how many
/// events it held (none when the table was already gone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DroppedPartition {
    pub name: String,
    pub first_id: i64,
    pub end_id: i64,
    pub events: Option<i64>,
}

/// Drops every partition closed longer than `age` ago, oldest first.
pub(super) async fn drop_expired(
    client: &mut Client,
    age: Duration,
) -> Result<Vec<DroppedPartition>, StorageError> {
    let rows = client
        .query(
            "SELECT name, first_id, end_id FROM event_partitions \
             WHERE dropped_at IS NULL AND closed_at < now() - make_interval(secs => $1) \
             ORDER BY first_id",
            &[&age.as_secs_f64()],
        )
        .await
        .map_err(classify)?;
    let mut dropped = Vec::with_capacity(rows.len());
    for row in rows {
        let partition = DroppedPartition {
            name: row.try_get(0).map_err(classify)?,
            first_id: row.try_get(1).map_err(classify)?,
            end_id: row.try_get(2).map_err(classify)?,
            events: None,
        };
        dropped.push(drop_partition(client, partition).await?);
    }
    Ok(dropped)
}

async fn drop_partition(
    client: &mut Client,
    mut partition: DroppedPartition,
) -> Result<DroppedPartition, StorageError> {
    let table = quote_identifier(&partition.name);
    detach(client, &partition.name, &table).await?;
    // Detached, the partition no longer changes: its count needs no transaction.
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&partition.name])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(classify)?;
    if exists {
        partition.events = Some(count_in_steps(client, &table, &partition).await?);
    }

    let transaction = client.transaction().await.map_err(classify)?;
    let mut details = Map::new();
    details.insert("partition".to_owned(), Value::from(partition.name.clone()));
    details.insert("first_id".to_owned(), Value::from(partition.first_id));
    details.insert("end_id".to_owned(), Value::from(partition.end_id));
    details.insert("events".to_owned(), Value::from(partition.events));
    let event = collector_event(PARTITION_DROPPED, &Actor::Server, details);
    write_in_transaction(&transaction, &[event], &Actor::Server).await?;
    transaction
        .execute(
            "UPDATE event_partitions SET dropped_at = now(), dropped_events = $2 WHERE name = $1",
            &[&partition.name, &partition.events],
        )
        .await
        .map_err(classify)?;
    // The search postings whose ids now all lie in dropped partitions: those ending
    // in this one, also when they start in one dropped before (a poster step can post
    // ids of several partitions in one row). A row that also holds ids of a partition
    // kept stays (its dropped ids are candidates no row answers, never wrong).
    transaction
        .execute(
            "DELETE FROM search_postings s WHERE s.last_id >= $1 AND s.last_id < $2 \
                 AND s.first_id >= (SELECT min(first_id) FROM event_partitions \
                     WHERE dropped_at IS NOT NULL) \
                 AND NOT EXISTS (SELECT 1 FROM event_partitions p \
                     WHERE p.dropped_at IS NULL AND p.first_id <= s.last_id \
                         AND p.end_id > s.first_id)",
            &[&partition.first_id, &partition.end_id],
        )
        .await
        .map_err(classify)?;
    transaction.commit().await.map_err(classify)?;

    let drop = format!("DROP TABLE IF EXISTS {table}");
    client.batch_execute(&drop).await.map_err(classify)?;
    tracing::info!(
        partition = %partition.name,
        first_id = partition.first_id,
        end_id = partition.end_id,
        events = partition.events,
        "retention dropped a partition of events"
    );
    Ok(partition)
}

/// The events of a detached partition, counted along its primary key in
/// [`COUNT_STEPS`] ranges of ids, resting after each as long as it took.
///
/// One `count(*)` of a 10M-event partition is a parallel scan of 1.9 GB that takes
/// both cores from the writers for most of a second (measured: writers' p99 at 4x
/// its usual during the drop, in four runs of eight). In steps, the count takes one
/// core at most, half the time, and writers keep the rest.
async fn count_in_steps(
    client: &Client,
    table: &str,
    partition: &DroppedPartition,
) -> Result<i64, StorageError> {
    let statement = client
        .prepare(&format!(
            "SELECT count(*) FROM {table} WHERE id >= $1 AND id < $2"
        ))
        .await
        .map_err(classify)?;
    let span = (partition.end_id - partition.first_id).max(1);
    let step = (span / COUNT_STEPS).max(1);
    let mut events = 0;
    let mut from = partition.first_id;
    while from < partition.end_id {
        let to = from.saturating_add(step).min(partition.end_id);
        let started = std::time::Instant::now();
        events += client
            .query_one(&statement, &[&from, &to])
            .await
            .and_then(|row| row.try_get::<_, i64>(0))
            .map_err(classify)?;
        tokio::time::sleep(started.elapsed()).await;
        from = to;
    }
    Ok(events)
}

/// Into how many ranges of ids a dropped partition's count is split.
const COUNT_STEPS: i64 = 100;

/// Detaches the partition unless it is already; finishes a detach that was cut short.
async fn detach(client: &Client, name: &str, table: &str) -> Result<(), StorageError> {
    let pending: Option<bool> = client
        .query_opt(
            "SELECT inhdetachpending FROM pg_inherits \
             WHERE inhrelid = to_regclass($1) AND inhparent = 'events'::regclass",
            &[&name],
        )
        .await
        .map_err(classify)?
        .map(|row| row.try_get(0))
        .transpose()
        .map_err(classify)?;
    let statement = match pending {
        None => return Ok(()),
        Some(false) => format!("ALTER TABLE events DETACH PARTITION {table} CONCURRENTLY"),
        Some(true) => format!("ALTER TABLE events DETACH PARTITION {table} FINALIZE"),
    };
    client.batch_execute(&statement).await.map_err(classify)
}

/// Drops the tables of partitions recorded as dropped that a round cut short left.
pub(super) async fn finish_drops(client: &Client) -> Result<(), StorageError> {
    let rows = client
        .query(
            "SELECT name FROM event_partitions \
             WHERE dropped_at IS NOT NULL AND to_regclass(name) IS NOT NULL",
            &[],
        )
        .await
        .map_err(classify)?;
    for row in rows {
        let name: &str = row.try_get(0).map_err(classify)?;
        let drop = format!("DROP TABLE IF EXISTS {}", quote_identifier(name));
        client.batch_execute(&drop).await.map_err(classify)?;
    }
    Ok(())
}
