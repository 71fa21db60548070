//! Group commit: concurrent batches are written by one COPY and one commit.
//!
//! A transaction per request costs a round trip and a WAL flush per request, which is
//! what limits small POSTs. Here callers encode their rows and queue them; writer tasks
//! take everything queued (up to a cap), write it as one binary COPY in one
//! transaction, and only then answer each caller. While one group commits, the next
//! one gathers, so the queue drains faster the busier it is.
//!
//! A second group is written beside one still in flight only when enough events wait
//! (`ingest.parallel_group_events`); otherwise it waits for the first to commit and
//! goes out larger. Small batches so get fewer, larger commits, while large batches
//! still keep two COPYs busy.
//!
//! Architecture invariant: a caller is answered `Ok` only after the COPY holding its
//! rows committed; every caller of a failed group gets the error, and none of its rows
//! are stored. A request's rows are never split across groups.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::Pool;
use tokio::sync::{Mutex, Notify, mpsc, oneshot};

use crate::config::IngestSettings;
use crate::copy::{COPY_EVENTS, EncodedRows, copy_in_prepared, framed_rows};
use crate::repository::{StorageError, classify, connection_from};

/// Queues batches for the writer tasks; cheap to clone.
#[derive(Clone, Debug)]
pub struct EventWriter {
    sender: mpsc::Sender<WriteRequest>,
    queue: Arc<SharedQueue>,
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
        let queue = Arc::new(SharedQueue {
            receiver: Mutex::new(receiver),
            queued_events: AtomicU64::new(0),
            groups_in_flight: AtomicUsize::new(0),
            progress: Notify::new(),
            max_group_events: settings.max_group_events as u64,
            parallel_group_events: settings.parallel_group_events as u64,
        });
        let writers = settings.writers.max(1);
        let writer_queue = Arc::clone(&queue);
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
                            tokio::spawn(write_groups(Arc::clone(&writer_queue), pool.clone()))
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
            queue,
            enqueue_timeout,
        }
    }

    /// Stores the batch and returns how many rows were written, after the commit.
    /// A waiting request holds only its encoded rows (callers encode as they parse).
    pub async fn write(&self, rows: EncodedRows) -> Result<u64, StorageError> {
        if rows.count == 0 {
            return Ok(0);
        }
        let count = rows.count;
        let (reply, answer) = oneshot::channel();
        let request = WriteRequest {
            rows: rows.bytes,
            count,
            reply,
        };
        // Counted before it is queued, so a writer never takes more than was counted.
        self.queue.add_queued(count);
        let sent = tokio::time::timeout(self.enqueue_timeout, self.sender.send(request)).await;
        if !matches!(sent, Ok(Ok(()))) {
            self.queue.remove_queued(count);
        }
        match sent {
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

/// What the writer tasks share with each other and with `EventWriter::write`.
#[derive(Debug)]
struct SharedQueue {
    receiver: Mutex<mpsc::Receiver<WriteRequest>>,
    /// Events queued or in a group being gathered, not yet in a group being written.
    queued_events: AtomicU64,
    /// Groups taken from the queue and not yet answered.
    groups_in_flight: AtomicUsize,
    /// Wakes a waiting writer: a group was answered, or enough events are queued.
    progress: Notify,
    max_group_events: u64,
    parallel_group_events: u64,
}

/// Requests taken from the queue to be written together.
#[derive(Default)]
struct Group {
    requests: Vec<WriteRequest>,
    events: u64,
}

impl Group {
    fn push(&mut self, request: WriteRequest) {
        self.events += request.count;
        self.requests.push(request);
    }
}

impl SharedQueue {
    fn add_queued(&self, events: u64) {
        let before = self.queued_events.fetch_add(events, Ordering::AcqRel);
        // Only the crossing wakes the waiting writer: small batches never do.
        if before < self.parallel_group_events && before + events >= self.parallel_group_events {
            self.progress.notify_waiters();
        }
    }

    fn remove_queued(&self, events: u64) {
        self.queued_events.fetch_sub(events, Ordering::AcqRel);
    }

    /// Adds what is already queued to the group, up to the group limit.
    fn take_queued(&self, group: &mut Group, receiver: &mut mpsc::Receiver<WriteRequest>) {
        while group.events < self.max_group_events {
            let Ok(next) = receiver.try_recv() else {
                return;
            };
            group.push(next);
        }
    }

    /// The next group, or `None` once every sender is gone and the queue is empty.
    async fn next_group(&self) -> Option<Group> {
        let mut receiver = self.receiver.lock().await;
        let mut group = Group::default();
        group.push(receiver.recv().await?);
        loop {
            let progress = self.progress.notified();
            tokio::pin!(progress);
            // Registered before the checks, so progress made in between still wakes us.
            progress.as_mut().enable();
            let in_flight = self.groups_in_flight.load(Ordering::Acquire);
            let waiting = self.queued_events.load(Ordering::Acquire);
            if in_flight == 0 || waiting >= self.parallel_group_events {
                break;
            }
            progress.await;
        }
        self.take_queued(&mut group, &mut receiver);
        // Both counted before the lock is released, so the next writer sees this group.
        self.remove_queued(group.events);
        self.groups_in_flight.fetch_add(1, Ordering::AcqRel);
        Some(group)
    }

    fn finish_group(&self) {
        self.groups_in_flight.fetch_sub(1, Ordering::AcqRel);
        self.progress.notify_waiters();
    }
}

/// One writer task: gather a group, write it, answer its callers, repeat.
async fn write_groups(queue: Arc<SharedQueue>, pool: Pool) {
    while let Some(group) = queue.next_group().await {
        let requests = group.requests;
        match write_group(&pool, &requests).await {
            Ok(_) => answer_all(requests, Ok),
            // One request's data failed the whole group: write each on its own, so
            // that only the guilty request is refused.
            Err(StorageError::DataRejected(_)) if requests.len() > 1 => {
                for request in requests {
                    let result = write_group(&pool, std::slice::from_ref(&request)).await;
                    let _ = request.reply.send(result.map(|_| request.count));
                }
            }
            Err(error) => answer_all(requests, |_| Err(error.clone())),
        }
        queue.finish_group();
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
    // Collected: a lazy iterator with a closure inside would make this future !Send.
    let chunks: Vec<Bytes> =
        framed_rows(group.iter().map(|request| request.rows.clone())).collect();
    // Prepared once per pooled connection, not once per group.
    let statement = client.prepare_cached(COPY_EVENTS).await.map_err(classify)?;
    copy_in_prepared(&client, &statement, futures_util::stream::iter(chunks))
        .await
        .map_err(classify)
}
