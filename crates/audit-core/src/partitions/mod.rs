//! The events table's partitions: ranges of ids (migration V5), kept ahead of the id
//! sequence, closed once no event can still arrive in them, and dropped whole when
//! retention says so (`retention`). What each server reports about them is `stats`.
//!
//! One server at a time looks after them: a round runs only while its connection holds
//! [`PARTITIONS_LOCK`], and every server tries each `partitions.maintenance_interval_ms`,
//! so when the one doing it dies another does the next round. Every step is recorded in
//! `event_partitions` and can be repeated, so a round cut short anywhere is finished
//! by the next.
//!
//! Why a partition is closed only after `full_xmax`: an event's id is drawn after its
//! transaction has its txid (migration V4), so once the sequence has handed out a
//! partition's last id, every transaction that can still write into it has a txid
//! below the xmax of a snapshot taken then; when the xmin of a later snapshot reaches
//! that xmax, they have all ended, and every event of the partition arrived before.

mod retention;
mod stats;

use tokio_postgres::Client;

use crate::config::{PartitionSettings, RetentionSettings};
use crate::database::quote_identifier;
use crate::storage_error::{StorageError, classify};

pub use crate::partitions::retention::{DroppedPartition, PARTITION_DROPPED};
pub use crate::partitions::stats::{PartitionStats, read_stats};

/// The session advisory lock a server holds while it looks after the partitions
/// ("auditprt").
pub const PARTITIONS_LOCK: i64 = 0x6175_6469_7470_7274;

/// What one round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Partitions created ahead of the sequence.
    pub created: Vec<String>,
    /// Partitions closed: no event can arrive in them any more.
    pub closed: Vec<String>,
    pub dropped: Vec<DroppedPartition>,
}

/// One maintenance round on `client`, a connection of its own (it holds a session
/// lock while the round runs); `None` when another server holds the lock.
pub async fn maintain(
    client: &mut Client,
    partitions: &PartitionSettings,
    retention: &RetentionSettings,
) -> Result<Option<Maintenance>, StorageError> {
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&PARTITIONS_LOCK])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(classify)?;
    if !locked {
        return Ok(None);
    }
    let round = maintain_locked(client, partitions, retention).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&PARTITIONS_LOCK])
        .await
        .map_err(classify);
    let round = round?;
    unlocked?;
    Ok(Some(round))
}

async fn maintain_locked(
    client: &mut Client,
    partitions: &PartitionSettings,
    retention: &RetentionSettings,
) -> Result<Maintenance, StorageError> {
    // A round waits for no lock for long: writers' locks are never in its way (it takes
    // SHARE UPDATE EXCLUSIVE on `events`), but someone's DDL may be. Nothing it reads
    // needs more than one core, and parallel workers would take the writers' cores.
    client
        .batch_execute("SET lock_timeout = '5s'; SET max_parallel_workers_per_gather = 0")
        .await
        .map_err(classify)?;
    let next_id = next_id(client).await?;
    let closed = note_progress(client, next_id).await?;
    let created = create_ahead(client, partitions, next_id).await?;
    let dropped = match retention.drop_after() {
        Some(age) => retention::drop_expired(client, age).await?,
        None => Vec::new(),
    };
    retention::finish_drops(client).await?;
    Ok(Maintenance {
        created,
        closed,
        dropped,
    })
}

/// The next id the sequence hands out.
async fn next_id(client: &Client) -> Result<i64, StorageError> {
    let row = client
        .query_one(
            "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END \
             FROM events_id_seq",
            &[],
        )
        .await
        .map_err(classify)?;
    row.try_get(0).map_err(classify)
}

/// Records which partitions have started to fill, which have handed out their last id
/// (with the snapshot's xmax, read after `next_id` was), and closes those whose
/// writers have all ended. Returns the partitions closed.
async fn note_progress(client: &Client, next_id: i64) -> Result<Vec<String>, StorageError> {
    client
        .execute(
            "UPDATE event_partitions SET opened_at = now() \
             WHERE opened_at IS NULL AND first_id < $1",
            &[&next_id],
        )
        .await
        .map_err(classify)?;
    client
        .execute(
            "UPDATE event_partitions SET full_xmax = pg_snapshot_xmax(pg_current_snapshot()) \
             WHERE full_xmax IS NULL AND end_id <= $1",
            &[&next_id],
        )
        .await
        .map_err(classify)?;
    let rows = client
        .query(
            "UPDATE event_partitions SET closed_at = now() \
             WHERE closed_at IS NULL AND full_xmax <= pg_snapshot_xmin(pg_current_snapshot()) \
             RETURNING name",
            &[],
        )
        .await
        .map_err(classify)?;
    rows.iter()
        .map(|row| row.try_get(0).map_err(classify))
        .collect()
}

/// Creates partitions of `size` ids after the last one until there is room for
/// `ahead` partitions' worth of ids past `next_id`.
async fn create_ahead(
    client: &Client,
    settings: &PartitionSettings,
    next_id: i64,
) -> Result<Vec<String>, StorageError> {
    let top: Option<i64> = client
        .query_one("SELECT max(end_id) FROM event_partitions", &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(classify)?;
    let room = settings.size.saturating_mul(settings.ahead);
    let wanted_end = next_id.saturating_add(room);
    // Contiguous ranges, even when the sequence outran them (ids refused for want of
    // a partition are simply never used).
    let mut first = top.unwrap_or(next_id);
    let mut created = Vec::new();
    while first < wanted_end {
        let end = first.saturating_add(settings.size);
        created.push(create_partition(client, first, end).await?);
        first = end;
    }
    Ok(created)
}

/// The name of the partition whose ids start at `first`.
pub fn partition_name(first: i64) -> String {
    format!("events_from_{first}")
}

/// Creates the partition of ids `first..end` and records it, in one transaction.
///
/// Not `CREATE TABLE ... PARTITION OF`, which locks `events` against writers (ACCESS
/// EXCLUSIVE): a table of the same shape attached afterwards takes only SHARE UPDATE
/// EXCLUSIVE, which writers' locks do not conflict with. It is empty, so attaching it
/// checks nothing and builds its indexes at once.
async fn create_partition(client: &Client, first: i64, end: i64) -> Result<String, StorageError> {
    let name = partition_name(first);
    let table = quote_identifier(&name);
    let statements = format!(
        "BEGIN; \
         CREATE TABLE {table} (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS \
             INCLUDING STORAGE); \
         ALTER TABLE events ATTACH PARTITION {table} FOR VALUES FROM ({first}) TO ({end}); \
         INSERT INTO event_partitions (name, first_id, end_id) \
             VALUES ('{name}', {first}, {end}); \
         COMMIT"
    );
    if let Err(error) = client.batch_execute(&statements).await {
        // Leave the session usable for the next statement.
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(classify(error));
    }
    tracing::info!(partition = %name, first, end, "created a partition of events");
    Ok(name)
}

/// Makes sure partitions hold `count` more ids past the sequence (a bulk load's), on
/// top of the room `settings` keep: a loader that writes faster than servers
/// maintain calls this first.
pub async fn make_room(
    client: &Client,
    settings: &PartitionSettings,
    count: i64,
) -> Result<Vec<String>, StorageError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&PARTITIONS_LOCK])
        .await
        .map_err(classify)?;
    let created = match next_id(client).await {
        Ok(next_id) => create_ahead(client, settings, next_id.saturating_add(count)).await,
        Err(error) => Err(error),
    };
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&PARTITIONS_LOCK])
        .await
        .map_err(classify)?;
    created
}
