//! Exports: every event a filter matches, oldest first, read from one snapshot in
//! batches through a portal. A batch is fetched only once the receiver has room for
//! it, so memory stays a few batches however many events there are, and a receiver
//! that goes away (the client disconnected) ends the transaction, and the query with
//! it, at the next batch.

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;

use crate::database::read_snapshot;
use crate::event::StoredEvent;
use crate::filter::EventFilter;
use crate::repository::{FilterValues, SELECT_EVENTS_WHERE, stored_event_from_row};
use crate::storage_error::{StorageError, classify, connection_from};

/// Rows fetched at a time.
pub const EXPORT_BATCH_ROWS: i32 = 1_000;

/// One fetched batch of events.
#[derive(Debug)]
pub struct EventRows(Vec<tokio_postgres::Row>);

impl EventRows {
    pub fn events(&self) -> impl Iterator<Item = Result<StoredEvent<'_>, StorageError>> {
        self.0.iter().map(|row| stored_event_from_row(row, 0))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What to export: the filter, with its applications narrowed to the reader's scope
/// (none for any), and the id the export resumes after.
#[derive(Clone, Copy, Debug)]
pub struct ExportRequest<'a> {
    pub applications: Option<&'a [String]>,
    pub filter: &'a EventFilter,
    pub after: Option<i64>,
}

/// How an export ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportEnd {
    /// Every matching event was sent.
    Complete { events: u64 },
    /// The receiver went away first.
    Abandoned { events: u64 },
}

/// Sends the matching events to `sender`, a batch at a time, each fetch bounded by
/// `fetch_deadline`. Nothing is sent for an empty scope; a failure is returned, for
/// the caller to tell the receiver.
pub async fn export(
    pool: &Pool,
    fetch_deadline: Duration,
    request: ExportRequest<'_>,
    sender: &mpsc::Sender<Result<EventRows, StorageError>>,
) -> Result<ExportEnd, StorageError> {
    let Some(values) = FilterValues::new(request.applications, request.filter) else {
        return Ok(ExportEnd::Complete { events: 0 });
    };
    let mut client = connection_from(pool).await?;
    let transaction = read_snapshot(&mut client).await?;
    let after = request.after.unwrap_or(i64::MIN);
    let mut parameters: Vec<&(dyn ToSql + Sync)> = vec![&after];
    let mut query = format!("{SELECT_EVENTS_WHERE}id > $1");
    values.push_conditions(&mut query, &mut parameters);
    query.push_str(" ORDER BY id");
    let portal = transaction
        .bind_raw(query.as_str(), parameters)
        .await
        .map_err(classify)?;
    let mut events = 0;
    loop {
        let fetch = transaction.query_portal(&portal, EXPORT_BATCH_ROWS);
        let rows = tokio::time::timeout(fetch_deadline, fetch)
            .await
            .map_err(|_| StorageError::unavailable("an export batch was not read in time"))?
            .map_err(classify)?;
        let fetched = rows.len();
        if fetched > 0 {
            if sender.send(Ok(EventRows(rows))).await.is_err() {
                // Dropping the transaction rolls it back and closes the portal.
                return Ok(ExportEnd::Abandoned { events });
            }
            events += fetched as u64;
        }
        if fetched < usize::try_from(EXPORT_BATCH_ROWS).unwrap_or(usize::MAX) {
            transaction.commit().await.map_err(classify)?;
            return Ok(ExportEnd::Complete { events });
        }
    }
}
