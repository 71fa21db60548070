//! The events table: reading pages newest first, and readiness. Writes go through
//! `writer::EventWriter`.

use std::ops::ControlFlow;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::{StreamExt, pin_mut};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use crate::access::Applications;
use crate::event::StoredEvent;
use crate::migrations;
use crate::storage_error::{StorageError, bounded, call_deadline, classify, connection_from};
use crate::timestamp::EventTimestamp;

/// The first page: no bound to check. (One statement for both, with the first page
/// read below the largest id, cost PostgreSQL 10-15 us more CPU per first page in four
/// side-by-side benchmark runs; see the commit that brought this back.)
const FIRST_PAGE: &str = "SELECT id, event_ts, application_name, event_kind, payload::text \
     FROM events ORDER BY id DESC LIMIT $1";
/// The pages after it: the events below the previous page's last id.
const PAGE_BELOW: &str = "SELECT id, event_ts, application_name, event_kind, payload::text \
     FROM events WHERE id < $1 ORDER BY id DESC LIMIT $2";

/// The pages of a reader scoped to some applications: one keyset range of the
/// `(application_name, id)` index per application, merged. A page reads at most
/// `limit` index entries per application, however rare its events are in the table,
/// and never an event of another application. The first page passes `i64::MAX`.
const SCOPED_PAGE_BELOW: &str = "SELECT page.id, page.event_ts, page.application_name, \
     page.event_kind, page.payload::text \
     FROM unnest($1::text[]) AS scope (application_name) \
     CROSS JOIN LATERAL ( \
         SELECT id, event_ts, application_name, event_kind, payload FROM events \
         WHERE events.application_name = scope.application_name AND id < $2 \
         ORDER BY id DESC LIMIT $3 \
     ) AS page \
     ORDER BY page.id DESC LIMIT $3";

/// The same for a reader of one application: a single range of the index, without
/// the merge (measured: about half the PostgreSQL CPU of the merged statement).
const ONE_APPLICATION_PAGE_BELOW: &str = "SELECT id, event_ts, application_name, event_kind, \
     payload::text FROM events WHERE application_name = $1 AND id < $2 \
     ORDER BY id DESC LIMIT $3";

/// Reads events through a connection pool.
#[derive(Clone, Debug)]
pub struct EventRepository {
    pool: Pool,
    /// Bound of every call, from the statement timeout: a frozen server cannot hang it.
    deadline: Duration,
}

impl EventRepository {
    pub fn new(pool: Pool, statement_timeout: Duration) -> Self {
        Self {
            pool,
            deadline: call_deadline(statement_timeout),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Hands up to `limit` events of the applications in `scope`, newest first, with
    /// ids below `below` (or from the newest event), to `accept` one at a time as they arrive from the
    /// database; `accept` stops the read by answering `Break`. Rows are never all held
    /// at once, so a page of large events takes the memory of what `accept` keeps.
    pub async fn read_page(
        &self,
        scope: &Applications,
        below: Option<i64>,
        limit: i64,
        mut accept: impl FnMut(StoredEvent<'_>) -> ControlFlow<()>,
    ) -> Result<(), StorageError> {
        let client = connection_from(&self.pool).await?;
        bounded(client, self.deadline, timed_out, async |client| {
            let rows = match (scope, below) {
                (Applications::Only(applications), below) if applications.len() == 1 => {
                    let statement = client
                        .prepare_cached(ONE_APPLICATION_PAGE_BELOW)
                        .await
                        .map_err(classify)?;
                    let below = below.unwrap_or(i64::MAX);
                    let parameters: [&(dyn ToSql + Sync); 3] = [&applications[0], &below, &limit];
                    client.query_raw(&statement, parameters).await
                }
                (Applications::Only(applications), below) => {
                    let statement = client
                        .prepare_cached(SCOPED_PAGE_BELOW)
                        .await
                        .map_err(classify)?;
                    let below = below.unwrap_or(i64::MAX);
                    let parameters: [&(dyn ToSql + Sync); 3] = [applications, &below, &limit];
                    client.query_raw(&statement, parameters).await
                }
                (Applications::All, None) => {
                    let statement = client.prepare_cached(FIRST_PAGE).await.map_err(classify)?;
                    let parameters: [&(dyn ToSql + Sync); 1] = [&limit];
                    client.query_raw(&statement, parameters).await
                }
                (Applications::All, Some(below)) => {
                    let statement = client.prepare_cached(PAGE_BELOW).await.map_err(classify)?;
                    let parameters: [&(dyn ToSql + Sync); 2] = [&below, &limit];
                    client.query_raw(&statement, parameters).await
                }
            }
            .map_err(classify)?;
            pin_mut!(rows);
            while let Some(row) = rows.next().await {
                let row = row.map_err(classify)?;
                if accept(stored_event_from_row(&row)?).is_break() {
                    // The rest of the rows are drained and dropped by the driver.
                    break;
                }
            }
            Ok(())
        })
        .await
    }

    /// Succeeds when the database answers and has every migration of this build.
    pub async fn check_ready(&self) -> Result<(), StorageError> {
        let client = connection_from(&self.pool).await?;
        bounded(client, self.deadline, timed_out, async |client| {
            check_schema(client).await
        })
        .await
    }
}

fn timed_out() -> StorageError {
    StorageError::unavailable("the database did not answer within the statement timeout")
}

/// Succeeds when the connected database has every migration of this build.
pub async fn check_schema(client: &tokio_postgres::Client) -> Result<(), StorageError> {
    let query = format!(
        "SELECT max(version)::bigint FROM {}",
        migrations::HISTORY_TABLE
    );
    let expected = migrations::latest_version();
    let found: Option<i64> = match client.query_one(&query, &[]).await {
        Ok(row) => row.try_get(0).map_err(classify)?,
        Err(error) if error.code() == Some(&SqlState::UNDEFINED_TABLE) => None,
        Err(error) => return Err(classify(error)),
    };
    match found {
        Some(version) if version >= expected => Ok(()),
        found => Err(StorageError::SchemaNotReady { found, expected }),
    }
}

/// One row as an event. A value this build cannot represent (a timestamp past year
/// 9999 written by another client, say) is a `CorruptRow` naming the id, never a panic.
fn stored_event_from_row(row: &tokio_postgres::Row) -> Result<StoredEvent<'_>, StorageError> {
    let id: i64 = row.try_get(0).map_err(classify)?;
    let corrupt = |problem: String| StorageError::CorruptRow { id, problem };
    let event_ts = row
        .try_get(1)
        .map_err(|error| corrupt(error.to_string()))
        .and_then(|value| {
            EventTimestamp::from_offset_date_time(value).map_err(|error| corrupt(error.to_string()))
        })?;
    let text = |index: usize| -> Result<&str, StorageError> {
        row.try_get(index)
            .map_err(|error| corrupt(error.to_string()))
    };
    Ok(StoredEvent {
        id,
        event_ts,
        application_name: text(2)?,
        event_kind: text(3)?,
        payload: text(4)?,
    })
}
