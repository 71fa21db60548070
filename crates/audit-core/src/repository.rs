//! The events table: writing validated batches and reading pages newest first.
//!
//! Architecture invariant: a batch is written by one statement, so it is stored whole
//! or not at all, and `insert_batch` returns only after PostgreSQL has committed it.

use deadpool_postgres::{Object, Pool, PoolError};
use postgres_types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::error::SqlState;

use crate::event::{NewEvent, StoredEvent};
use crate::migrations;
use crate::timestamp::EventTimestamp;

// One statement per batch: UNNEST turns the column arrays back into rows.
const INSERT_BATCH: &str = "INSERT INTO events (event_ts, application_name, event_kind, payload) \
     SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::json[])";
const FIRST_PAGE: &str = "SELECT id, event_ts, application_name, event_kind, payload::text \
     FROM events ORDER BY id DESC LIMIT $1";
const PAGE_FROM: &str = "SELECT id, event_ts, application_name, event_kind, payload::text \
     FROM events WHERE id <= $1 ORDER BY id DESC LIMIT $2";

/// Why a storage call failed, sorted by what the caller should tell its client.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No connection could be had or it broke: retrying later may succeed.
    #[error("the database is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// PostgreSQL refused the data itself (a data exception, SQLSTATE class 22).
    #[error("the database refused the data: {0}")]
    DataRejected(#[source] tokio_postgres::Error),
    /// The schema is missing or older than this build expects.
    #[error("the schema is at version {found:?}, this build needs {expected}")]
    SchemaNotReady { found: Option<i64>, expected: i64 },
    /// Anything else: a bug or a broken database.
    #[error("a database statement failed")]
    Statement(#[source] tokio_postgres::Error),
    /// A stored row cannot be represented (e.g. a timestamp outside years 0000-9999).
    #[error("stored event {id} cannot be represented: {problem}")]
    CorruptRow { id: i64, problem: String },
}

/// Reads and writes events through a connection pool.
#[derive(Clone, Debug)]
pub struct EventRepository {
    pool: Pool,
}

/// JSON text handed to PostgreSQL as a `json` value without re-encoding; the binary
/// format of `json` is its text.
#[derive(Debug)]
struct JsonText<'a>(&'a str);

impl ToSql for JsonText<'_> {
    fn to_sql(
        &self,
        _type: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON
    }

    to_sql_checked!();
}

impl EventRepository {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Stores the whole batch in one statement and returns how many rows it wrote.
    pub async fn insert_batch(&self, events: &[NewEvent]) -> Result<u64, StorageError> {
        if events.is_empty() {
            return Ok(0);
        }
        let timestamps: Vec<_> = events
            .iter()
            .map(|event| event.event_ts.as_offset_date_time())
            .collect();
        let applications: Vec<&str> = events
            .iter()
            .map(|event| event.application_name.as_str())
            .collect();
        let kinds: Vec<&str> = events
            .iter()
            .map(|event| event.event_kind.as_str())
            .collect();
        let payloads: Vec<JsonText<'_>> = events
            .iter()
            .map(|event| JsonText(event.payload.as_json_text()))
            .collect();

        let client = self.connection().await?;
        let statement = client
            .prepare_cached(INSERT_BATCH)
            .await
            .map_err(classify)?;
        client
            .execute(&statement, &[&timestamps, &applications, &kinds, &payloads])
            .await
            .map_err(classify)
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
        self.pool.get().await.map_err(|error| match error {
            PoolError::Backend(error) => classify(error),
            other => StorageError::Unavailable(Box::new(other)),
        })
    }
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
fn classify(error: tokio_postgres::Error) -> StorageError {
    let Some(code) = error.code() else {
        return StorageError::Unavailable(Box::new(error));
    };
    if code.code().starts_with("22") {
        return StorageError::DataRejected(error);
    }
    if code.code().starts_with("08")
        || code.code().starts_with("57P")
        || *code == SqlState::TOO_MANY_CONNECTIONS
        || *code == SqlState::CANNOT_CONNECT_NOW
    {
        return StorageError::Unavailable(Box::new(error));
    }
    StorageError::Statement(error)
}
