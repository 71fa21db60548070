//! Why a storage call failed, sorted by what the caller can truthfully tell its client,
//! and the bounded waits every database call goes through.
//!
//! The writer, idempotent writes and the page reads all classify driver errors here,
//! so one SQLSTATE always means one answer.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Object, Pool, PoolError};
use tokio_postgres::error::SqlState;

/// Time beyond the statement timeout a call may take before the client gives up on
/// the server: PostgreSQL cancels a statement itself, so only a frozen server or a
/// lost network path needs this, and the round trip must still fit.
const CLIENT_GRACE: Duration = Duration::from_secs(1);

/// Why a storage call failed. Cloneable, because one failed group commit fails every
/// request in the group.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StorageError {
    /// Nothing was stored and retrying later may succeed: no connection, a lost one
    /// before the data was complete, a statement timeout or lock wait, a database that
    /// refuses writes for now (a constraint, a full disk, a shutdown).
    #[error("the database is unavailable")]
    Unavailable(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The connection was lost after the commit was asked for: the batch is stored
    /// whole or not at all, and only a retry with the same idempotency key can tell.
    #[error("the outcome of the write is unknown")]
    OutcomeUnknown(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The write path is saturated: retrying later may succeed.
    #[error("the write queue is full")]
    Overloaded,
    /// PostgreSQL refused the data itself (a data exception, SQLSTATE class 22).
    #[error("the database refused the data: {0}")]
    DataRejected(#[source] Arc<tokio_postgres::Error>),
    /// A constraint of the table refused the write (SQLSTATE class 23). Nothing was
    /// stored; whether the data or the constraint is at fault cannot be told, so the
    /// client is told to retry, as for `Unavailable`.
    #[error("a constraint of the database refused the write")]
    ConstraintRefused(#[source] Arc<tokio_postgres::Error>),
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

impl StorageError {
    /// An `Unavailable` with a reason of our own rather than a driver error.
    pub fn unavailable(reason: &'static str) -> Self {
        Self::Unavailable(Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(
            reason,
        )))
    }

    /// An `OutcomeUnknown` with a reason of our own.
    pub fn outcome_unknown(reason: &'static str) -> Self {
        Self::OutcomeUnknown(Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(
            reason,
        )))
    }

    /// Whether the database refused this data (or a constraint refused it), so that
    /// other batches of the same group may well succeed on their own.
    pub fn is_refusal_of_data(&self) -> bool {
        matches!(self, Self::DataRejected(_) | Self::ConstraintRefused(_))
    }
}

/// Sorts a driver error by what the client can be told. Class 22 (data exception) is
/// the request's fault; a constraint (class 23) may be either's; connection loss,
/// cancellation (the statement timeout), lock waits, resources, shutdowns and
/// transaction conflicts leave nothing stored and may pass on a retry; the rest is a
/// statement failure.
pub fn classify(error: tokio_postgres::Error) -> StorageError {
    let Some(code) = error.code() else {
        return StorageError::Unavailable(Arc::new(error));
    };
    let class = &code.code()[..2];
    if class == "22" {
        return StorageError::DataRejected(Arc::new(error));
    }
    if class == "23" {
        return StorageError::ConstraintRefused(Arc::new(error));
    }
    // 08 connection, 40 transaction rollback, 53 resources, 55 object state (lock not
    // available), 57 operator intervention (query canceled, shutdown), 58 system error.
    if matches!(class, "08" | "40" | "53" | "55" | "57" | "58")
        || *code == SqlState::TOO_MANY_CONNECTIONS
    {
        return StorageError::Unavailable(Arc::new(error));
    }
    StorageError::Statement(Arc::new(error))
}

/// A failure at a point where the commit may already have happened (the end of a
/// COPY that commits by itself, or a COMMIT): an error PostgreSQL sent means the
/// transaction rolled back, but a connection lost without one may have lost only the
/// answer, so the outcome is unknown.
pub fn classify_at_commit(error: tokio_postgres::Error) -> StorageError {
    if error.code().is_none() {
        return StorageError::OutcomeUnknown(Arc::new(error));
    }
    classify(error)
}

/// A pooled connection, or why none could be had.
pub async fn connection_from(pool: &Pool) -> Result<Object, StorageError> {
    pool.get().await.map_err(|error| match error {
        PoolError::Backend(error) => classify(error),
        other => StorageError::Unavailable(Arc::new(other)),
    })
}

/// `error: cause: cause ...`, for logs.
pub fn cause_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// How long a call on a connection may take in all, from the statement timeout.
pub fn call_deadline(statement_timeout: Duration) -> Duration {
    statement_timeout + CLIENT_GRACE
}

/// The answer to a call that passed its deadline where nothing can have been stored.
pub fn statement_timed_out() -> StorageError {
    StorageError::unavailable("the database did not answer within the statement timeout")
}

/// Runs `work` on a pooled connection within `limit`. Past it the connection is taken
/// out of the pool and closed (it may be mid-statement) and `on_timeout()` is the
/// answer: a frozen server or a lost network path cannot make a caller wait forever.
pub async fn bounded<T>(
    mut client: Object,
    limit: Duration,
    on_timeout: fn() -> StorageError,
    work: impl AsyncFnOnce(&mut Object) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    let outcome = tokio::time::timeout(limit, work(&mut client)).await;
    match outcome {
        Ok(result) => result,
        Err(_) => {
            drop(Object::take(client));
            Err(on_timeout())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_of_our_own_keeps_its_kind() {
        assert!(matches!(
            StorageError::unavailable("x"),
            StorageError::Unavailable(_)
        ));
        assert!(matches!(
            StorageError::outcome_unknown("x"),
            StorageError::OutcomeUnknown(_)
        ));
        assert!(!StorageError::unavailable("x").is_refusal_of_data());
    }
}
