//! The events table: reading pages newest first, readiness, and sorting driver errors.
//! Writes go through `writer::EventWriter`.

use std::sync::Arc;

use deadpool_postgres::{Object, Pool, PoolError};
use tokio_postgres::error::SqlState;

use crate::event::StoredEvent;
use crate::migrations;
use crate::timestamp::EventTimestamp;

const FIRST_PAGE: &str = "SELECT id, event_ts, application_name, event_kind, payload::text \
     FROM events ORDER BY id DESC LIMIT $1";
const PAGE_FROM: &str = "SELECT id, event_ts, application_name, event_kind, payload::text \
     FROM events WHERE id <= $1 ORDER BY id DESC LIMIT $2";

/// Why a storage call failed, sorted by what the caller should tell its client.
/// Cloneable, because one failed group commit fails every request in the group.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StorageError {
    /// No connection could be had or it broke: retrying later may succeed.
    #[error("the database is unavailable")]
    Unavailable(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The write path is saturated: retrying later may succeed.
    #[error("the write queue is full")]
    Overloaded,
    /// PostgreSQL refused the data itself (a data exception, SQLSTATE class 22).
    #[error("the database refused the data: {0}")]
    DataRejected(#[source] Arc<tokio_postgres::Error>),
    /// The schema is missing or older than this build expects.
    #[error("the schema is at version {found:?}, this build needs {expected}")]
    SchemaNotReady { found: Option<i64>, expected: i64 },
    /// Anything else: a bug or a broken database.
    #[error("a database statement failed")]
    Statement(#[source] Arc<tokio_postgres::Error>),
    /// A stored row cannot be represented (e.g. a timestamp outside years 0000-9999).
    #[error("stored event {id} cannot be represented: {problem}")]
    CorruptRow { id: i64, problem: String },
}

/// Reads and writes events through a connection pool.
#[derive(Clone, Debug)]
pub struct EventRepository {
    pool: Pool,
}

impl EventRepository {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Up to `limit` events, newest first, starting at id `from` (inclusive) or at the
    /// newest event.
    pub async fn page(
        &self,
        from: Option<i64>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StorageError> {
        let client = self.connection().await?;
        let rows = match from {
            None => {
                let statement = client.prepare_cached(FIRST_PAGE).await.map_err(classify)?;
                client.query(&statement, &[&limit]).await
            }
            Some(from) => {
                let statement = client.prepare_cached(PAGE_FROM).await.map_err(classify)?;
                client.query(&statement, &[&from, &limit]).await
            }
        }
        .map_err(classify)?;
        rows.iter().map(stored_event_from_row).collect()
    }

    /// Succeeds when the database answers and has every migration of this build.
    pub async fn check_ready(&self) -> Result<(), StorageError> {
        let client = self.connection().await?;
        check_schema(&client).await
    }

    async fn connection(&self) -> Result<Object, StorageError> {
        connection_from(&self.pool).await
    }
}

/// A pooled connection, or why none could be had.
pub(crate) async fn connection_from(pool: &Pool) -> Result<Object, StorageError> {
    pool.get().await.map_err(|error| match error {
        PoolError::Backend(error) => classify(error),
        other => StorageError::Unavailable(Arc::new(other)),
    })
}

/// Succeeds when the connected database has every migration of this build.
pub async fn check_schema(client: &tokio_postgres::Client) -> Result<(), StorageError> {
    let query = format!(
        "SELECT max(version)::bigint FROM {}",
        migrations::HISTORY_TABLE
    );
    let expected = migrations::latest_version();
    let found: Option<i64> = match client.query_one(&query, &[]).await {
        Ok(row) => row.get(0),
        Err(error) if error.code() == Some(&SqlState::UNDEFINED_TABLE) => None,
        Err(error) => return Err(classify(error)),
    };
    match found {
        Some(version) if version >= expected => Ok(()),
        found => Err(StorageError::SchemaNotReady { found, expected }),
    }
}

fn stored_event_from_row(row: &tokio_postgres::Row) -> Result<StoredEvent, StorageError> {
    let id: i64 = row.get(0);
    let event_ts = EventTimestamp::from_offset_date_time(row.get(1)).map_err(|error| {
        StorageError::CorruptRow {
            id,
            problem: error.to_string(),
        }
    })?;
    Ok(StoredEvent {
        id,
        event_ts,
        application_name: row.get(2),
        event_kind: row.get(3),
        payload: row.get(4),
    })
}

/// Sorts a driver error: lost connections are `Unavailable`, refused data is
/// `DataRejected`, the rest are statement failures.
pub(crate) fn classify(error: tokio_postgres::Error) -> StorageError {
    let Some(code) = error.code() else {
        return StorageError::Unavailable(Arc::new(error));
    };
    if code.code().starts_with("22") {
        return StorageError::DataRejected(Arc::new(error));
    }
    if code.code().starts_with("08")
        || code.code().starts_with("57P")
        || *code == SqlState::TOO_MANY_CONNECTIONS
        || *code == SqlState::CANNOT_CONNECT_NOW
    {
        return StorageError::Unavailable(Arc::new(error));
    }
    StorageError::Statement(Arc::new(error))
}
