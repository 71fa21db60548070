//! Streaming encoded rows into PostgreSQL with one COPY.

use bytes::Bytes;
use futures_util::{SinkExt, Stream, StreamExt};
use tokio_postgres::{Client, CopyInSink, Statement, Transaction};

use crate::copy::COPY_EVENTS;
use crate::storage_error::{StorageError, classify, classify_at_commit};

/// Whether the end of a COPY is also its commit, which decides what a connection lost
/// at the end means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// The COPY runs on its own: finishing it commits it.
    Commits,
    /// The COPY runs inside a transaction the caller commits later.
    InTransaction,
}

/// Where a COPY runs.
#[derive(Clone, Copy)]
pub enum CopyTarget<'a> {
    /// On a connection, as a statement of its own that commits when the COPY ends.
    /// The caller prepares [`COPY_EVENTS`] once per connection, which saves a parse
    /// round trip when many small COPYs run back to back.
    Alone {
        client: &'a Client,
        statement: &'a Statement,
    },
    /// Inside a transaction the caller commits.
    InTransaction(&'a Transaction<'a>),
    /// On a connection inside a transaction the caller began and commits itself
    /// (with its own statements, so that it can send them without waiting); the
    /// statement is a prepared COPY.
    InOpenTransaction {
        client: &'a Client,
        statement: &'a Statement,
    },
}

/// Runs one COPY that reads the given chunks of an encoded stream (header first,
/// trailer last) and returns the number of rows PostgreSQL wrote. If it fails before
/// its end was sent, or is dropped before then, nothing is stored.
pub async fn copy_in(
    target: CopyTarget<'_>,
    chunks: impl Stream<Item = Bytes>,
) -> Result<u64, StorageError> {
    match target {
        CopyTarget::Alone { client, statement } => {
            send(client.copy_in(statement).await, chunks, Ending::Commits).await
        }
        CopyTarget::InTransaction(transaction) => {
            let started = transaction.copy_in(COPY_EVENTS).await;
            send(started, chunks, Ending::InTransaction).await
        }
        CopyTarget::InOpenTransaction { client, statement } => {
            send(
                client.copy_in(statement).await,
                chunks,
                Ending::InTransaction,
            )
            .await
        }
    }
}

/// Streams the chunks into a COPY that was just started (`started`: the driver's
/// answer to the COPY statement).
async fn send(
    started: Result<CopyInSink<Bytes>, tokio_postgres::Error>,
    chunks: impl Stream<Item = Bytes>,
    ending: Ending,
) -> Result<u64, StorageError> {
    let sink = started.map_err(classify)?;
    futures_util::pin_mut!(sink);
    futures_util::pin_mut!(chunks);
    // `feed`, not `send`: the sink gathers small chunks (a 1-event request's rows are
    // ~100 bytes) into CopyData messages of 4 KiB, where `send` would flush each chunk
    // as a message and a socket write of its own. Until `finish` sends the end of the
    // data, a lost connection aborts the COPY: nothing is stored.
    while let Some(chunk) = chunks.next().await {
        sink.feed(chunk).await.map_err(classify)?;
    }
    sink.finish().await.map_err(|error| match ending {
        Ending::Commits => classify_at_commit(error),
        Ending::InTransaction => classify(error),
    })
}
