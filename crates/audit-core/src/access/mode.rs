//! Records changes of `auth.mode` in the log, once, whichever server sees them first.

use deadpool_postgres::Pool;
use serde_json::{Map, Value};

use crate::access::trail::{Actor, collector_event, write_in_transaction};
use crate::storage_error::{StorageError, classify, classify_at_commit, connection_from};

/// The `collector_state` key of the mode last in force.
pub const AUTH_MODE_KEY: &str = "auth.mode";
/// The mode a database that never recorded one was run in: before access control
/// existed, everything was open.
const MODE_BEFORE_ACCESS_CONTROL: &str = "off";

/// Records `mode` as the one in force, with an `AuthModeChanged` event when it differs
/// from the one recorded before; returns whether it did.
pub async fn record_auth_mode(
    pool: &Pool,
    mode: &str,
    actor: &Actor,
) -> Result<bool, StorageError> {
    let mut client = connection_from(pool).await?;
    let transaction = client.transaction().await.map_err(classify)?;
    transaction
        .execute(
            "INSERT INTO collector_state (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&AUTH_MODE_KEY, &MODE_BEFORE_ACCESS_CONTROL],
        )
        .await
        .map_err(classify)?;
    // Locked, so that two servers starting in a new mode record the change once.
    let previous: String = transaction
        .query_one(
            "SELECT value FROM collector_state WHERE key = $1 FOR UPDATE",
            &[&AUTH_MODE_KEY],
        )
        .await
        .and_then(|row| row.try_get(0))
        .map_err(classify)?;
    if previous == mode {
        return Ok(false);
    }
    transaction
        .execute(
            "UPDATE collector_state SET value = $2 WHERE key = $1",
            &[&AUTH_MODE_KEY, &mode],
        )
        .await
        .map_err(classify)?;
    let mut details = Map::new();
    details.insert("from".to_owned(), Value::from(previous));
    details.insert("to".to_owned(), Value::from(mode));
    let event = collector_event("AuthModeChanged", actor, details);
    write_in_transaction(&transaction, &[event], actor).await?;
    transaction.commit().await.map_err(classify_at_commit)?;
    Ok(true)
}
