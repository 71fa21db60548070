//! Idempotent ingest: a batch sent with an idempotency key is stored once, however
//! often it is retried.
//!
//! The key is inserted in the same transaction as the events. A concurrent request
//! with the same key blocks on the uncommitted key row until the first commits, then
//! finds it and replays the first result, so two retries racing each other still
//! store the batch once. Keyed batches are committed on their own, outside the group
//! commit, because a key conflict must not fail other requests' batches.

use std::time::Duration;

use deadpool_postgres::{Object, Pool};

use crate::copy::{CopyTarget, EncodedRows, copy_in, framed_rows};
use crate::storage_error::{StorageError, bounded, classify, classify_at_commit, connection_from};

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 255;

/// A client-chosen key: 1 to 255 visible ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to {MAX_KEY_BYTES} visible ASCII characters")]
pub struct InvalidKey;

/// What became of a keyed batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyedOutcome {
    /// Stored now; this many events.
    Stored(u64),
    /// The key was used before with the same body; that request stored this many.
    Replayed(u64),
    /// The key was used before with a different body; nothing was stored.
    KeyReused,
}

impl IdempotencyKey {
    pub fn parse(value: &str) -> Result<Self, InvalidKey> {
        let visible = value.bytes().all(|byte| (0x21..=0x7e).contains(&byte));
        if value.is_empty() || value.len() > MAX_KEY_BYTES || !visible {
            return Err(InvalidKey);
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a keyed write needs besides the batch.
#[derive(Clone, Copy, Debug)]
pub struct KeyedWrite<'a> {
    pub key: &'a IdempotencyKey,
    /// Identifies the body, so that a reused key can be told from a retry.
    pub request_hash: &'a [u8],
    /// How long a key is remembered.
    pub ttl: Duration,
    /// Bound of the whole write; past it the outcome is unknown.
    pub deadline: Duration,
}

/// Stores `rows` under the key unless the key is known and younger than its time to
/// live.
pub async fn write_keyed(
    pool: &Pool,
    write: KeyedWrite<'_>,
    rows: &EncodedRows,
) -> Result<KeyedOutcome, StorageError> {
    let client = connection_from(pool).await?;
    bounded(client, write.deadline, timed_out, async |client| {
        write_keyed_on(client, write, rows).await
    })
    .await
}

/// The COMMIT may have been sent when the deadline passed.
fn timed_out() -> StorageError {
    StorageError::outcome_unknown("the database did not answer within the statement timeout")
}

async fn write_keyed_on(
    client: &mut Object,
    KeyedWrite {
        key,
        request_hash,
        ttl,
        ..
    }: KeyedWrite<'_>,
    rows: &EncodedRows,
) -> Result<KeyedOutcome, StorageError> {
    let ttl_seconds = ttl.as_secs_f64();
    // Dropping a Transaction rolls it back, so an early return or a cancelled request
    // never leaves a half-done transaction on a pooled connection.
    let transaction = client.transaction().await.map_err(classify)?;
    transaction
        .execute(
            "DELETE FROM idempotency_keys \
             WHERE key = $1 AND created_at < now() - make_interval(secs => $2)",
            &[&key.as_str(), &ttl_seconds],
        )
        .await
        .map_err(classify)?;
    let claimed = transaction
        .execute(
            "INSERT INTO idempotency_keys (key, request_hash, inserted) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO NOTHING",
            &[&key.as_str(), &request_hash, &row_count(rows.count)],
        )
        .await
        .map_err(classify)?;
    if claimed == 0 {
        let row = transaction
            .query_one(
                "SELECT request_hash, inserted FROM idempotency_keys WHERE key = $1",
                &[&key.as_str()],
            )
            .await
            .map_err(classify)?;
        let stored_hash: Vec<u8> = row.try_get(0).map_err(classify)?;
        let inserted: i64 = row.try_get(1).map_err(classify)?;
        if stored_hash != request_hash {
            return Ok(KeyedOutcome::KeyReused);
        }
        return Ok(KeyedOutcome::Replayed(inserted.unsigned_abs()));
    }
    let stored = if rows.count == 0 {
        0
    } else {
        let stream = framed_rows([rows.bytes.clone()]);
        copy_in(
            CopyTarget::InTransaction(&transaction),
            futures_util::stream::iter(stream),
        )
        .await?
    };
    transaction.commit().await.map_err(classify_at_commit)?;
    Ok(KeyedOutcome::Stored(stored))
}

/// A batch's event count as PostgreSQL's bigint; batches are far below 2^63 events.
fn row_count(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// Deletes keys older than `ttl`; returns how many.
pub async fn delete_expired(pool: &Pool, ttl: Duration) -> Result<u64, StorageError> {
    let client = connection_from(pool).await?;
    client
        .execute(
            "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
            &[&ttl.as_secs_f64()],
        )
        .await
        .map_err(classify)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        assert!(IdempotencyKey::parse("order-42:retry").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert_eq!(IdempotencyKey::parse(""), Err(InvalidKey));
        assert_eq!(IdempotencyKey::parse(&"k".repeat(256)), Err(InvalidKey));
        assert_eq!(IdempotencyKey::parse("has space"), Err(InvalidKey));
        assert_eq!(IdempotencyKey::parse("ключ"), Err(InvalidKey));
    }
}
