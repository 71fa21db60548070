//! The queue between requests and writer tasks, and what one writer task does: gather
//! a group, write it as one COPY, answer its callers.
//!
//! A second group is written beside one still in flight only when enough events wait
//! (`ingest.parallel_group_events`); otherwise it waits for the first to commit and
//! goes out larger. Small batches so get fewer, larger commits, while large batches
//! still keep two COPYs busy.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::Pool;
use tokio::sync::{Mutex, Notify, mpsc, oneshot};

use crate::copy::{
    COPY_EVENTS, COPY_NUMBERED_EVENTS, CopyTarget, SealColumn, copy_in, framed_rows, number_rows,
};
use crate::storage_error::{StorageError, bounded, classify, classify_at_commit, connection_from};
use crate::tree::batches::INSERT_SEAL_BATCH;
use crate::writer::health::WriterHealth;

/// Draws a group's ids, after its transaction has its txid (the CASE asks for the
/// txid first), as the column default of migration V4 would: the sealer's order
/// relies on it (`tree::order`). One array, not a row per id: decoding a row per id
/// was the writer thread's largest cost of sealing (measured with perf).
const DRAW_IDS: &str = "SELECT array_agg(CASE WHEN pg_current_xact_id() IS NOT NULL \
     THEN nextval('events_id_seq') END) FROM generate_series(1, $1::int4)";

#[derive(Debug)]
pub(crate) struct WriteRequest {
    /// Rows in binary COPY format, without header or trailer.
    pub(crate) rows: Bytes,
    pub(crate) count: u64,
    pub(crate) seal: SealColumn,
    pub(crate) reply: oneshot::Sender<Result<u64, StorageError>>,
}

/// What the writer tasks share with each other and with `EventWriter::write`.
#[derive(Debug)]
pub(crate) struct SharedQueue {
    /// Held here, not by a task, so that a task that dies does not close the queue:
    /// its replacement takes over what is queued.
    receiver: Mutex<mpsc::Receiver<WriteRequest>>,
    /// Events queued or in a group being gathered, not yet in a group being written.
    queued_events: AtomicU64,
    /// Groups taken from the queue and not yet answered.
    groups_in_flight: AtomicUsize,
    /// Wakes a waiting writer: a group was answered, or enough events are queued.
    progress: Notify,
    max_group_events: u64,
    parallel_group_events: u64,
    /// Bound of one group's COPY and commit.
    write_deadline: Duration,
    /// Whether groups whose rows carry their seals are stored with a seal batch.
    seal_batches: bool,
    pub(crate) health: WriterHealth,
    /// Test hook: the next writer task to take a group panics.
    crash_next_group: AtomicBool,
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
        // A caller that gave up (timed out or disconnected) was not answered 201 and
        // will not be: its rows are not written.
        if !request.reply.is_closed() {
            self.requests.push(request);
        }
    }
}

/// Events counted as queued by a caller; the count is given back if the caller is
/// dropped before its request is in the queue, so the writers' waiting rule never
/// counts events that will not come.
pub(crate) struct QueuedCount<'a> {
    queue: &'a SharedQueue,
    events: u64,
}

impl Drop for QueuedCount<'_> {
    fn drop(&mut self) {
        self.queue.remove_queued(self.events);
    }
}

impl QueuedCount<'_> {
    /// The request is in the queue: from now on the writer that takes it uncounts it.
    pub(crate) fn hand_over(self) {
        std::mem::forget(self);
    }
}

impl SharedQueue {
    pub(crate) fn new(
        receiver: mpsc::Receiver<WriteRequest>,
        max_group_events: u64,
        parallel_group_events: u64,
        write_deadline: Duration,
        seal_batches: bool,
    ) -> Self {
        Self {
            receiver: Mutex::new(receiver),
            queued_events: AtomicU64::new(0),
            groups_in_flight: AtomicUsize::new(0),
            progress: Notify::new(),
            max_group_events,
            parallel_group_events,
            write_deadline,
            seal_batches,
            health: WriterHealth::default(),
            crash_next_group: AtomicBool::new(false),
        }
    }

    /// Counts events about to be queued; counted before they are queued, so a writer
    /// never takes more than was counted.
    pub(crate) fn count_queued(&self, events: u64) -> QueuedCount<'_> {
        let before = self.queued_events.fetch_add(events, Ordering::AcqRel);
        // Only the crossing wakes the waiting writer: small batches never do.
        if before < self.parallel_group_events && before + events >= self.parallel_group_events {
            self.progress.notify_waiters();
        }
        QueuedCount {
            queue: self,
            events,
        }
    }

    fn remove_queued(&self, events: u64) {
        self.queued_events.fetch_sub(events, Ordering::AcqRel);
    }

    pub(crate) fn crash_next_group(&self) {
        self.crash_next_group.store(true, Ordering::Release);
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

/// Gives the group back to the queue's accounting however the task ends: a panic
/// while writing must not leave a group counted in flight forever.
struct InFlight<'a>(&'a SharedQueue);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.finish_group();
    }
}

/// One writer task: gather a group, write it, answer its callers, repeat. Returns when
/// every sender is gone and the queue is empty.
pub(crate) async fn write_groups(queue: Arc<SharedQueue>, pool: Pool) {
    while let Some(group) = queue.next_group().await {
        let _in_flight = InFlight(&queue);
        if queue.crash_next_group.swap(false, Ordering::AcqRel) {
            // Dropping the group during the unwind answers its callers: a dead writer
            // never leaves a request waiting.
            panic!("writer crash requested by a test");
        }
        let requests = group.requests;
        if requests.is_empty() {
            continue;
        }
        let outcome = write_group(&pool, &requests, &queue).await;
        match outcome {
            Ok(_) => {
                queue.health.record(true);
                answer_all(requests, Ok);
            }
            // One request's data failed the whole group: write each on its own, so
            // that only the guilty request is refused.
            Err(error) if error.is_refusal_of_data() && requests.len() > 1 => {
                tracing::info!(
                    error = %crate::storage_error::cause_chain(&error),
                    batches = requests.len(),
                    "a group's data was refused; writing its batches one by one"
                );
                for request in requests {
                    let result = write_group(&pool, std::slice::from_ref(&request), &queue).await;
                    queue.health.record(leaves_writes_healthy(&result));
                    let _ = request.reply.send(result.map(|_| request.count));
                }
            }
            Err(error) => {
                queue
                    .health
                    .record(matches!(error, StorageError::DataRejected(_)));
                answer_all(requests, |_| Err(error.clone()));
            }
        }
    }
}

/// A batch refused for its own data (422) says nothing about the database; any other
/// failure, a constraint that refuses every write included, does.
fn leaves_writes_healthy(result: &Result<u64, StorageError>) -> bool {
    matches!(result, Ok(_) | Err(StorageError::DataRejected(_)))
}

fn answer_all(group: Vec<WriteRequest>, result: impl Fn(u64) -> Result<u64, StorageError>) {
    for request in group {
        // The caller may have gone away (client disconnected); its rows are stored.
        let _ = request.reply.send(result(request.count));
    }
}

/// Writes every request of the group with one COPY, in one transaction, within the
/// deadline; past it the connection is closed and the outcome is unknown. Where rows
/// carry their seals and seal batches are on, the ids are drawn first and the rows'
/// leaves stored as a seal batch in the same transaction (`tree::batches`).
async fn write_group(
    pool: &Pool,
    group: &[WriteRequest],
    queue: &SharedQueue,
) -> Result<u64, StorageError> {
    let client = connection_from(pool).await?;
    let sealed =
        queue.seal_batches && (group.iter()).all(|request| request.seal == SealColumn::Filled);
    if sealed {
        return bounded(client, queue.write_deadline, timed_out, async |client| {
            let written = write_numbered(client, group).await;
            if written.is_err() && !client.is_closed() {
                // Leaves the pooled connection outside any transaction; a COMMIT that
                // failed has ended it already, and this then only warns.
                let _ = client.batch_execute("ROLLBACK").await;
            }
            written
        })
        .await;
    }
    // Collected: a lazy iterator with a closure inside would make this future !Send.
    let chunks: Vec<Bytes> =
        framed_rows(group.iter().map(|request| request.rows.clone())).collect();
    bounded(client, queue.write_deadline, timed_out, async |client| {
        // Prepared once per pooled connection, not once per group.
        let statement = client.prepare_cached(COPY_EVENTS).await.map_err(classify)?;
        let target = CopyTarget::Alone {
            client,
            statement: &statement,
        };
        copy_in(target, futures_util::stream::iter(chunks)).await
    })
    .await
}

/// One transaction: draw the ids, COPY the rows with them, store the seal batch,
/// commit. Statements that need no answer before the next are sent together: BEGIN
/// with the draw, the batch with the COMMIT.
async fn write_numbered(
    client: &deadpool_postgres::Client,
    group: &[WriteRequest],
) -> Result<u64, StorageError> {
    let draw = client.prepare_cached(DRAW_IDS).await.map_err(classify)?;
    let copy = client
        .prepare_cached(COPY_NUMBERED_EVENTS)
        .await
        .map_err(classify)?;
    let insert = client
        .prepare_cached(INSERT_SEAL_BATCH)
        .await
        .map_err(classify)?;
    let count: u64 = group.iter().map(|request| request.count).sum();
    let count = i32::try_from(count)
        .map_err(|_| StorageError::unavailable("a group too large to number"))?;
    let (begun, drawn) = futures_util::future::join(
        client.batch_execute("BEGIN"),
        client.query_one(&draw, &[&count]),
    )
    .await;
    begun.map_err(classify)?;
    let ids: Vec<i64> = drawn.map_err(classify)?.try_get(0).map_err(classify)?;
    let numbered = number_rows(group.iter().map(|request| &request.rows), &ids)
        .map_err(|_| StorageError::unavailable("a group's rows could not be numbered"))?;
    let target = CopyTarget::InOpenTransaction {
        client,
        statement: &copy,
    };
    let stored = copy_in(target, futures_util::stream::iter([numbered.stream])).await?;
    let (inserted, committed) = futures_util::future::join(
        client.execute(&insert, &[&numbered.batch]),
        client.batch_execute("COMMIT"),
    )
    .await;
    // A COMMIT after a failed statement rolls back without an error: the insert's
    // failure is the group's.
    inserted.map_err(classify)?;
    committed.map_err(classify_at_commit)?;
    Ok(stored)
}

/// The COPY's end, and so its commit, may have been sent when the deadline passed.
fn timed_out() -> StorageError {
    StorageError::outcome_unknown("the database did not answer within the statement timeout")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> SharedQueue {
        let (_sender, receiver) = mpsc::channel(4);
        SharedQueue::new(receiver, 100, 10, Duration::from_secs(1), true)
    }

    #[test]
    fn a_count_dropped_before_its_request_is_queued_is_given_back() {
        let queue = queue();

        let counted = queue.count_queued(7);
        assert_eq!(queue.queued_events.load(Ordering::Acquire), 7);
        drop(counted);

        assert_eq!(queue.queued_events.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_count_handed_over_stays_until_a_writer_takes_the_request() {
        let queue = queue();

        queue.count_queued(7).hand_over();

        assert_eq!(queue.queued_events.load(Ordering::Acquire), 7);
    }
}
