//! The search postings' poster in the server (`audit_core::postings`): every server
//! runs it unless `search.postings` is off; the advisory lock of a step lets one at a
//! time post. A step at once after one that left more to post, otherwise one every
//! `POSTING_INTERVAL`.

use std::time::Duration;

use actix_web::web;
use audit_core::database;
use audit_core::postings::{self, Posted};
use audit_core::storage_error::{
    StorageError, call_deadline, cause_chain, classify, statement_timed_out,
};
use deadpool_postgres::tokio_postgres::Client;

use crate::dedicated_connection::DedicatedConnection;
use crate::state::AppState;

/// How often the poster looks for committed events to post: a filtered page walks the
/// ids above what is posted, so this bounds the walk at rest.
const POSTING_INTERVAL: Duration = Duration::from_millis(250);
/// Posting rows written in one go past which the postings are analyzed.
const ANALYZE_AFTER_POSTING_ROWS: usize = 10_000;

/// Posts until the server stops.
///
/// The poster has a connection of its own, as the sealer has: catching up on a bulk
/// load is step after step, and a connection taken from a request pool for each would
/// leave the requests of that thread one fewer for as long. It follows a reload to
/// another database.
pub async fn keep_postings_posted(state: web::Data<AppState>) {
    let mut interval = tokio::time::interval(POSTING_INTERVAL);
    let mut client = DedicatedConnection::default();
    loop {
        interval.tick().await;
        let runtime = state.runtime();
        if !runtime.settings.search.postings {
            // Leaving the posting to other servers: no connection held for it.
            client.close();
            continue;
        }
        let postgres = &runtime.settings.postgres;
        let Some(connection) = client.current(postgres, database::connect_bounded).await else {
            continue;
        };
        let deadline = call_deadline(postgres.statement_timeout());
        match post_while_more(connection, deadline).await {
            Ok(rows) => {
                if rows >= ANALYZE_AFTER_POSTING_ROWS
                    && let Err(error) = analyze(connection, deadline).await
                {
                    tracing::warn!(
                        error = %cause_chain(&error),
                        "could not analyze the search postings"
                    );
                }
            }
            Err(error) => {
                tracing::warn!(
                    error = %cause_chain(&error),
                    "could not post events to the search postings"
                );
                // The connection may be mid-statement or broken: a new one next time.
                client.close();
            }
        }
    }
}

/// Steps until nothing is left to post now; returns the posting rows written.
async fn post_while_more(client: &mut Client, deadline: Duration) -> Result<usize, StorageError> {
    let mut rows = 0;
    loop {
        let step = tokio::time::timeout(deadline, postings::post_step(client))
            .await
            .map_err(|_| statement_timed_out())??;
        match step {
            Posted::PostedTo {
                rows: posted, more, ..
            } => {
                rows += posted;
                if !more {
                    return Ok(rows);
                }
            }
            Posted::Busy | Posted::Waiting => return Ok(rows),
        }
    }
}

/// Until autovacuum does, the planner may read and sort a key's every row to find its
/// newest after the poster wrote many at once (a whole table's).
async fn analyze(client: &Client, deadline: Duration) -> Result<(), StorageError> {
    tokio::time::timeout(deadline, client.batch_execute("ANALYZE search_postings"))
        .await
        .map_err(|_| statement_timed_out())?
        .map_err(classify)
}
