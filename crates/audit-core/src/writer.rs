//! Group commit: concurrent batches are written by one COPY and one commit.
//!
//! A transaction per request costs a round trip and a WAL flush per request, which is
//! what limits small POSTs. Here callers encode their rows and queue them; writer tasks
//! take everything queued (up to a cap), write it as one binary COPY in one
//! transaction, and only then answer each caller. While one group commits, the next
//! one gathers, so the queue drains faster the busier it is.
//!
//! Architecture invariant: a caller is answered `Ok` only after the COPY holding its
//! rows committed; every caller of a failed group gets the error, and none of its rows
//! are stored. A request's rows are never split across groups.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::Pool;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::config::IngestSettings;
use crate::copy::{COPY_EVENTS, CopyEncoder, EncodedRows, copy_in_prepared};
use crate::repository::{StorageError, classify, connection_from};

/// Queues batches for the writer tasks; cheap to clone.
#[derive(Clone, Debug)]
pub struct EventWriter {
    sender: mpsc::Sender<WriteRequest>,
    enqueue_timeout: Duration,
}

#[derive(Debug)]
struct WriteRequest {
    /// Rows in binary COPY format, without header or trailer.
    rows: Bytes,
    count: u64,
    reply: oneshot::Sender<Result<u64, StorageError>>,
}

impl EventWriter {
    /// Starts `settings.writers` writer tasks on a thread of their own. They stop when
    /// the last clone of the returned handle is dropped and the queue is empty.
    pub fn start(pool: Pool, settings: &IngestSettings, enqueue_timeout: Duration) -> Self {
        let (sender, receiver) = mpsc::channel(settings.queue_capacity.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let writers = settings.writers.max(1);
        let max_group_events = settings.max_group_events as u64;
        let thread = std::thread::Builder::new()
            .name("event-writer".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        tracing::error!(%error, "cannot start the event writer");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let tasks: Vec<_> = (0..writers)
                        .map(|_| {
                            tokio::spawn(write_groups(
                                Arc::clone(&receiver),
                                pool.clone(),
                                max_group_events,
                            ))
                        })
                        .collect();
                    for task in tasks {
                        let _ = task.await;
                    }
                });
            });
        if let Err(error) = thread {
            // Without a writer every write answers Unavailable, which /ready also shows.
            tracing::error!(%error, "cannot spawn the event writer thread");
        }
        Self {
            sender,
            enqueue_timeout,
        }
    }

    /// Stores the batch and returns how many rows were written, after the commit.
    /// A waiting request holds only its encoded rows (callers encode as they parse).
    pub async fn write(&self, rows: EncodedRows) -> Result<u64, StorageError> {
        if rows.count == 0 {
            return Ok(0);
        }
        let (reply, answer) = oneshot::channel();
        let request = WriteRequest {
            rows: rows.bytes,
            count: rows.count,
            reply,
        };
        match tokio::time::timeout(self.enqueue_timeout, self.sender.send(request)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(writer_stopped()),
            Err(_) => return Err(StorageError::Overloaded),
        }
        answer.await.unwrap_or_else(|_| Err(writer_stopped()))
    }
}

fn writer_stopped() -> StorageError {
    StorageError::Unavailable(Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(
        "the event writer has stopped",
    )))
}

/// One writer task: gather a group, write it, answer its callers, repeat.
async fn write_groups(
    receiver: Arc<Mutex<mpsc::Receiver<WriteRequest>>>,
    pool: Pool,
    max_group_events: u64,
) {
    loop {
        let group = {
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            let mut events = first.count;
            let mut group = vec![first];
            while events < max_group_events {
                let Ok(next) = receiver.try_recv() else {
                    break;
                };
                events += next.count;
                group.push(next);
            }
            group
        };
        match write_group(&pool, &group).await {
            Ok(_) => answer_all(group, Ok),
            // One request's data failed the whole group: write each on its own, so
            // that only the guilty request is refused.
            Err(StorageError::DataRejected(_)) if group.len() > 1 => {
                for request in group {
                    let result = write_group(&pool, std::slice::from_ref(&request)).await;
                    let _ = request.reply.send(result.map(|_| request.count));
                }
            }
            Err(error) => answer_all(group, |_| Err(error.clone())),
        }
    }
}

fn answer_all(group: Vec<WriteRequest>, result: impl Fn(u64) -> Result<u64, StorageError>) {
    for request in group {
        // The caller may have gone away (client disconnected); its rows are stored.
        let _ = request.reply.send(result(request.count));
    }
}

/// Writes every request of the group with one COPY, in one transaction.
async fn write_group(pool: &Pool, group: &[WriteRequest]) -> Result<u64, StorageError> {
    let client = connection_from(pool).await?;
    let chunks = std::iter::once(CopyEncoder::header())
        .chain(group.iter().map(|request| request.rows.clone()))
        .chain(std::iter::once(CopyEncoder::trailer()));
    // Prepared once per pooled connection, not once per group.
    let statement = client.prepare_cached(COPY_EVENTS).await.map_err(classify)?;
    copy_in_prepared(&client, &statement, futures_util::stream::iter(chunks))
        .await
        .map_err(classify)
}
