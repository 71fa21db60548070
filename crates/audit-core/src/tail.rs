//! The live tail: events in the tree's order, the sealer's commit-safe order
//! (`tree::order`). An event's position is its leaf index, so a position names the
//! same event for every server and after every restart, and the events after a
//! position never change: a consumer that resumes from the last position it got
//! misses nothing and gets nothing twice, whatever committed in between and in
//! whichever order.

use std::collections::HashSet;

use deadpool_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::event::StoredEvent;
use crate::filter::EventFilter;
use crate::merkle::text_fingerprint;
use crate::repository::{FilterValues, SELECT_EVENTS_WHERE, stored_event_from_row};
use crate::storage_error::{StorageError, classify};
use crate::tree::records::LeafRecord;
use crate::tree::tiles::TILE_WIDTH;

const TREE_SIZE: &str = "SELECT coalesce((SELECT size FROM tree_head), 0)";
const LEAF_RECORDS: &str =
    "SELECT tile, records FROM tree_leaves WHERE tile BETWEEN $1 AND $2 ORDER BY tile";

/// Sealed events from a position on, each with its position.
#[derive(Debug, Default)]
pub struct TailRows {
    rows: Vec<(u64, tokio_postgres::Row)>,
    /// The position after the last leaf read: where the next read starts.
    pub next: u64,
}

impl TailRows {
    pub fn events(&self) -> impl Iterator<Item = Result<(u64, StoredEvent<'_>), StorageError>> {
        (self.rows.iter()).map(|(position, row)| Ok((*position, stored_event_from_row(row, 0)?)))
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// How many leaves the tree has: the position a tail that starts now starts from.
pub async fn tree_size(client: &Client) -> Result<u64, StorageError> {
    let statement = client.prepare_cached(TREE_SIZE).await.map_err(classify)?;
    let size: i64 = client
        .query_one(&statement, &[])
        .await
        .map_err(classify)?
        .try_get(0)
        .map_err(classify)?;
    Ok(u64::try_from(size).unwrap_or(0))
}

/// How many events one read hands on at most, and how many leaves it looks at when
/// their records can rule events out ([`RecordFilter`]): a stream of one application
/// reads a few hundred kilobytes of records per read, not every event's row.
#[derive(Clone, Copy, Debug)]
pub struct ReadLimits {
    pub events: u64,
    pub leaves: u64,
}

/// The conditions of a filter that a leaf record can rule out by itself: its
/// fingerprints of `application_name` and `event_kind` (`tree::records`). A record
/// that passes is only a candidate, whose row the query still checks exactly; a
/// record that fails cannot match, since an equal text has an equal fingerprint.
#[derive(Debug, Default)]
struct RecordFilter {
    applications: Option<HashSet<[u8; 4]>>,
    kinds: Option<HashSet<[u8; 4]>>,
}

impl RecordFilter {
    fn new(applications: Option<&[String]>, filter: &EventFilter) -> Self {
        let fingerprints =
            |texts: &[String]| texts.iter().map(|text| text_fingerprint(text)).collect();
        Self {
            applications: applications.map(fingerprints),
            kinds: (!filter.kinds.is_empty()).then(|| fingerprints(&filter.kinds)),
        }
    }

    /// Whether records can rule anything out.
    fn narrows(&self) -> bool {
        self.applications.is_some() || self.kinds.is_some()
    }

    fn may_match(&self, record: &LeafRecord) -> bool {
        let [application, kind, _, _] = &record.fingerprints;
        self.applications
            .as_ref()
            .is_none_or(|wanted| wanted.contains(application))
            && self
                .kinds
                .as_ref()
                .is_none_or(|wanted| wanted.contains(kind))
    }
}

/// The events at leaves `from..` that match the filter, `applications` being its own
/// narrowed to the reader's scope (none for any): at most `limits.events` of them,
/// from at most `limits.leaves` leaves when records narrow the filter, else from
/// `limits.events` leaves. An event no longer in the table (pruned) is skipped; the
/// positions go on.
pub async fn read_from(
    client: &Client,
    applications: Option<&[String]>,
    filter: &EventFilter,
    from: u64,
    limits: ReadLimits,
) -> Result<TailRows, StorageError> {
    let size = tree_size(client).await?;
    let records_filter = RecordFilter::new(applications, filter);
    let leaves = if records_filter.narrows() {
        limits.leaves.max(limits.events)
    } else {
        limits.events
    };
    let mut end = size.min(from.saturating_add(leaves));
    let values = FilterValues::new(applications, filter);
    let (Some(values), true) = (values, end > from) else {
        return Ok(TailRows {
            rows: Vec::new(),
            next: end.max(from),
        });
    };
    let (first_tile, last_tile) = (to_i64(from / TILE_WIDTH), to_i64((end - 1) / TILE_WIDTH));
    let statement = client
        .prepare_cached(LEAF_RECORDS)
        .await
        .map_err(classify)?;
    let mut ids = Vec::new();
    'tiles: for row in client
        .query(&statement, &[&first_tile, &last_tile])
        .await
        .map_err(classify)?
    {
        let tile: i64 = row.try_get(0).map_err(classify)?;
        let bytes: &[u8] = row.try_get(1).map_err(classify)?;
        let records = LeafRecord::parse_all(bytes)
            .ok_or_else(|| StorageError::unavailable("torn leaf records"))?;
        let start = u64::try_from(tile).unwrap_or(0) * TILE_WIDTH;
        for (offset, record) in records.iter().enumerate() {
            let position = start + offset as u64;
            if !(from..end).contains(&position) || !records_filter.may_match(record) {
                continue;
            }
            ids.push((position, record.id));
            if ids.len() as u64 >= limits.events {
                // The next read starts after the last candidate taken.
                end = position + 1;
                break 'tiles;
            }
        }
    }
    if ids.is_empty() {
        return Ok(TailRows {
            rows: Vec::new(),
            next: end,
        });
    }
    let wanted: Vec<i64> = ids.iter().map(|(_, id)| *id).collect();
    let mut parameters: Vec<&(dyn ToSql + Sync)> = vec![&wanted];
    let mut query = format!("{SELECT_EVENTS_WHERE}id = ANY($1)");
    values.push_conditions(&mut query, &mut parameters);
    let statement = client.prepare_cached(&query).await.map_err(classify)?;
    let mut found: std::collections::HashMap<i64, tokio_postgres::Row> = client
        .query(&statement, &parameters)
        .await
        .map_err(classify)?
        .into_iter()
        .map(|row| Ok((row.try_get(0).map_err(classify)?, row)))
        .collect::<Result<_, StorageError>>()?;
    let rows = (ids.into_iter())
        .filter_map(|(position, id)| found.remove(&id).map(|row| (position, row)))
        .collect();
    Ok(TailRows { rows, next: end })
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
