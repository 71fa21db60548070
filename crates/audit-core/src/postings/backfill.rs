//! Posting the events no writer posted: every event from before migration V8, and
//! those of each statement that inserted events without posting them, which the
//! trigger of V8 notes as a gap (`search_postings_gaps.below`: the postings may lack
//! events with ids below it).
//!
//! The backfill walks ids upwards from its floor, in the commit-safe order of
//! `tree::order`: it reads the id sequence, then takes a txid of its own, and stores
//! both (`settle_bound`, `settle_xid`). Once every transaction with a txid below
//! `settle_xid` has ended, every id up to `settle_bound` is committed or never will
//! be (an id is drawn after its transaction's txid), so the events up to there can be
//! posted once and for all. A gap whose statement has not committed cannot lie at or
//! below the floor for the same reason: its ids are below its `below`, drawn before the
//! bound was read by a transaction that has ended since.
//!
//! Servers may run it at once: each step locks the state row.

use tokio_postgres::Client;

use super::builder::{INSERT_POSTINGS, PostingCollector};
use crate::storage_error::{StorageError, classify};
use crate::tree::order::SEQUENCE_VALUE;

/// Events read and posted in one step (one transaction).
const STEP_EVENTS: i64 = 1 << 16;

const STATE: &str = "SELECT id_floor, settle_bound, settle_xid::text::bigint, \
         (SELECT max(below) FROM search_postings_gaps), \
         pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
     FROM search_postings_state FOR UPDATE";

const EVENTS_ABOVE: &str = "SELECT id, application_name, event_kind, \
         (extract(epoch FROM event_ts) * 1000000)::bigint \
     FROM events WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3";

/// What a step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backfilled {
    /// Nothing is missing: the postings hold every event (`coverage` says so too).
    Complete,
    /// Events are missing, and the transactions that may still write some of them
    /// have not all ended: a later step goes on.
    Waiting,
    /// Posted events up to this id; the next step goes on at once.
    PostedTo(i64),
}

/// One step of the backfill, in its own transaction.
pub async fn backfill(client: &mut Client) -> Result<Backfilled, StorageError> {
    let transaction = client.transaction().await.map_err(classify)?;
    let row = transaction.query_one(STATE, &[]).await.map_err(classify)?;
    let floor: i64 = row.try_get(0).map_err(classify)?;
    let settle_bound: Option<i64> = row.try_get(1).map_err(classify)?;
    let settle_xid: Option<i64> = row.try_get(2).map_err(classify)?;
    let gaps_below: Option<i64> = row.try_get(3).map_err(classify)?;
    let xmin: i64 = row.try_get(4).map_err(classify)?;
    let Some(target) = gaps_below
        .map(|below| below - 1)
        .filter(|&last| last > floor)
    else {
        forget_gaps_closed(&transaction, floor).await?;
        transaction.commit().await.map_err(classify)?;
        return Ok(Backfilled::Complete);
    };
    let settled = match settle_bound.zip(settle_xid) {
        Some((bound, xid)) if xid < xmin && bound > floor => Some(bound),
        Some((_, xid)) if xid >= xmin => {
            transaction.commit().await.map_err(classify)?;
            return Ok(Backfilled::Waiting);
        }
        _ => None,
    };
    let Some(settled) = settled else {
        // The sequence first, then this transaction's txid (`tree::order`).
        let bound: i64 = (transaction.query_one(SEQUENCE_VALUE, &[]).await)
            .and_then(|row| row.try_get(0))
            .map_err(classify)?;
        transaction
            .execute(
                "UPDATE search_postings_state \
                 SET settle_bound = $1, settle_xid = pg_current_xact_id()",
                &[&bound],
            )
            .await
            .map_err(classify)?;
        transaction.commit().await.map_err(classify)?;
        return Ok(Backfilled::Waiting);
    };
    let end = target.min(settled);
    let rows = transaction
        .query(EVENTS_ABOVE, &[&floor, &end, &STEP_EVENTS])
        .await
        .map_err(classify)?;
    let mut collector = PostingCollector::default();
    let mut last = floor;
    for row in &rows {
        let id: i64 = row.try_get(0).map_err(classify)?;
        let application: &str = row.try_get(1).map_err(classify)?;
        let kind: &str = row.try_get(2).map_err(classify)?;
        let event_ts_micros: i64 = row.try_get(3).map_err(classify)?;
        collector.push(id, application.as_bytes(), kind.as_bytes(), event_ts_micros);
        last = id;
    }
    let reached = if (rows.len() as i64) < STEP_EVENTS {
        end
    } else {
        last
    };
    let posted = collector.into_rows();
    if !posted.is_empty() {
        transaction
            .execute(INSERT_POSTINGS, &posted.parameters())
            .await
            .map_err(classify)?;
    }
    transaction
        .execute(
            "UPDATE search_postings_state SET id_floor = $1",
            &[&reached],
        )
        .await
        .map_err(classify)?;
    forget_gaps_closed(&transaction, reached).await?;
    transaction.commit().await.map_err(classify)?;
    // The postings may have grown many times over (a bulk load's, or a whole older
    // table's): until autovacuum analyzes them, the planner may read and sort a key's
    // every row to find its newest.
    if reached == target
        && let Err(error) = client.batch_execute("ANALYZE search_postings").await
    {
        tracing::warn!(%error, "could not analyze the search postings");
    }
    Ok(Backfilled::PostedTo(reached))
}

/// Deletes the gaps the postings no longer have, up to `floor`.
async fn forget_gaps_closed(
    transaction: &tokio_postgres::Transaction<'_>,
    floor: i64,
) -> Result<(), StorageError> {
    transaction
        .execute(
            "DELETE FROM search_postings_gaps WHERE below <= $1",
            &[&(floor + 1)],
        )
        .await
        .map_err(classify)?;
    Ok(())
}
