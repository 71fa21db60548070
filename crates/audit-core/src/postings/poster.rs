//! Posting committed events, whoever wrote them: each step walks the ids above the
//! stored `id_floor` and posts the events it finds, in the commit-safe order of
//! `tree::order`, sealing on or off.
//!
//! A step reads the id sequence, then takes a txid of its own, and stores both
//! (`settle_bound`, `settle_xid`). Once every transaction with a txid below
//! `settle_xid` has ended, every id up to `settle_bound` is committed or never will be
//! (an id is drawn after its transaction's txid), so a later step posts the events up
//! to there once and for all and moves the floor. Reading the rows back costs the
//! poster a primary-key range a step; the writers pay nothing.
//!
//! Servers may all run it: a step runs only under a transaction-level advisory lock,
//! and a server that finds it taken skips its turn.

use tokio_postgres::Client;

use super::builder::{INSERT_POSTINGS, PostingCollector};
use crate::merkle::unix_micros;
use crate::repository::event_ts_at;
use crate::storage_error::{StorageError, classify};
use crate::tree::order::SEQUENCE_VALUE;

/// The advisory lock of a posting step ("auditpst").
pub const POSTER_LOCK: i64 = 0x6175_6469_7470_7374;

/// Ids read and posted in one step (one transaction).
const STEP_IDS: i64 = 1 << 16;

const STATE: &str = "SELECT id_floor, settle_bound, settle_xid::text::bigint, \
         pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
     FROM search_postings_state";

const FIRST_ID_BETWEEN: &str = "SELECT min(id) FROM events WHERE id > $1 AND id <= $2";

/// The events of a step's ids, in no order: a range of the primary key, read without
/// a sort (an ORDER BY with a LIMIT made the planner sort every partition's rows,
/// 1.6 us a row against 0.4 measured), with `event_ts` decoded here rather than
/// through numeric arithmetic in SQL.
const EVENTS_BETWEEN: &str = "SELECT id, application_name, event_kind, event_ts \
     FROM events WHERE id > $1 AND id <= $2";

/// What a step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Posted {
    /// Another server holds the poster's lock.
    Busy,
    /// Nothing to post yet: no id was drawn above the floor, or the transactions that
    /// may still commit some have not all ended.
    Waiting,
    /// Posted the events up to `to` in `rows` posting rows; with `more`, a next step
    /// can go on at once.
    PostedTo { to: i64, rows: usize, more: bool },
}

/// One step, in its own transaction.
pub async fn post_step(client: &mut Client) -> Result<Posted, StorageError> {
    let transaction = client.transaction().await.map_err(classify)?;
    let locked: bool = (transaction
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&POSTER_LOCK]))
    .await
    .and_then(|row| row.try_get(0))
    .map_err(classify)?;
    if !locked {
        return Ok(Posted::Busy);
    }
    // The sequence first, then (if anything is to be done) this transaction's txid.
    let bound: i64 = (transaction.query_one(SEQUENCE_VALUE, &[]).await)
        .and_then(|row| row.try_get(0))
        .map_err(classify)?;
    let row = transaction.query_one(STATE, &[]).await.map_err(classify)?;
    let floor: i64 = row.try_get(0).map_err(classify)?;
    let settle_bound: Option<i64> = row.try_get(1).map_err(classify)?;
    let settle_xid: Option<i64> = row.try_get(2).map_err(classify)?;
    let xmin: i64 = row.try_get(3).map_err(classify)?;
    if bound <= floor {
        return Ok(Posted::Waiting);
    }
    let end = match settle_bound.zip(settle_xid) {
        // Waits for the stored bound rather than take a later one, which would only
        // settle later still.
        Some((_, xid)) if xid >= xmin => return Ok(Posted::Waiting),
        Some((settled, _)) if settled > floor => settled,
        _ => {
            store_settle(&transaction, bound).await?;
            transaction.commit().await.map_err(classify)?;
            return Ok(Posted::Waiting);
        }
    };
    // From the first id above the floor: ids may be far apart (a sequence set ahead).
    let first: Option<i64> = (transaction
        .query_one(FIRST_ID_BETWEEN, &[&floor, &end])
        .await)
        .and_then(|row| row.try_get(0))
        .map_err(classify)?;
    let reached = first.map_or(end, |first| end.min(first.saturating_add(STEP_IDS - 1)));
    let events = transaction
        .query(EVENTS_BETWEEN, &[&floor, &reached])
        .await
        .map_err(classify)?;
    let mut collector = PostingCollector::default();
    for row in &events {
        let id: i64 = row.try_get(0).map_err(classify)?;
        let application: &str = row.try_get(1).map_err(classify)?;
        let kind: &str = row.try_get(2).map_err(classify)?;
        let event_ts = unix_micros(event_ts_at(row, 3, id)?);
        collector.push(id, application, kind, event_ts);
    }
    let more = reached < end;
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
    if !more {
        // The stored bound is posted whole: the next step waits for this one.
        store_settle(&transaction, bound).await?;
    }
    transaction.commit().await.map_err(classify)?;
    Ok(Posted::PostedTo {
        to: reached,
        rows: posted.len(),
        more: more || bound > end,
    })
}

/// Stores `bound`, read from the sequence before this transaction took its txid, as
/// the next step's, with that txid.
async fn store_settle(
    transaction: &tokio_postgres::Transaction<'_>,
    bound: i64,
) -> Result<(), StorageError> {
    transaction
        .execute(
            "UPDATE search_postings_state \
             SET settle_bound = $1, settle_xid = pg_current_xact_id()",
            &[&bound],
        )
        .await
        .map_err(classify)?;
    Ok(())
}
