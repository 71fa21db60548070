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
//! are stored. A request's rows are never split across groups. Every wait is bounded:
//! the queue by `enqueue_timeout`, each group by the statement deadline, and the
//! caller's wait for its answer by twice that (it may wait behind one group).

mod health;
mod queue;
mod supervisor;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use crate::config::IngestSettings;
use crate::copy::{EncodedRows, SealColumn};
use crate::storage_error::{StorageError, call_deadline};
pub use crate::writer::health::WriterStatus;
use crate::writer::queue::{SharedQueue, WriteRequest};
use crate::writer::supervisor::Supervisor;

/// The bounds of a write.
#[derive(Clone, Copy, Debug)]
pub struct WriterLimits {
    /// How long a caller waits for room in a full queue before it gets `Overloaded`.
    pub enqueue_timeout: Duration,
    /// PostgreSQL's statement timeout, from which each group's deadline follows.
    pub statement_timeout: Duration,
}

/// Queues batches for the writer tasks; cheap to clone.
#[derive(Clone, Debug)]
pub struct EventWriter {
    sender: mpsc::Sender<WriteRequest>,
    queue: Arc<SharedQueue>,
    supervisor: Arc<Supervisor>,
    enqueue_timeout: Duration,
    answer_deadline: Duration,
}

impl EventWriter {
    /// Starts `settings.writers` writer tasks on a thread of their own, under a
    /// supervisor that restarts a task that dies. They stop when the last clone of the
    /// returned handle is dropped and the queue is empty.
    /// With `seal` [`SealColumn::Filled`] (where events are sealed), groups whose rows
    /// carry their seals are stored with a seal batch (`tree::batches`).
    pub fn start(
        pool: Pool,
        settings: &IngestSettings,
        limits: WriterLimits,
        seal: SealColumn,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(settings.queue_capacity.max(1));
        let write_deadline = call_deadline(limits.statement_timeout);
        let queue = Arc::new(SharedQueue::new(
            receiver,
            settings.max_group_events as u64,
            settings.parallel_group_events as u64,
            write_deadline,
            seal == SealColumn::Filled,
        ));
        let supervisor = Arc::new(Supervisor::new(
            Arc::clone(&queue),
            pool,
            settings.writers.max(1),
        ));
        supervisor.start_thread();
        Self {
            sender,
            queue,
            supervisor,
            enqueue_timeout: limits.enqueue_timeout,
            answer_deadline: write_deadline * 2,
        }
    }

    /// Stores the batch and returns how many rows were written, after the commit.
    /// A waiting request holds only its encoded rows (callers encode as they parse).
    pub async fn write(&self, rows: EncodedRows) -> Result<u64, StorageError> {
        if rows.count == 0 {
            return Ok(0);
        }
        if self.queue.health.running() == 0 && !self.supervisor.restart_if_down() {
            return Err(StorageError::unavailable("the event writer is not running"));
        }
        let count = rows.count;
        let (reply, answer) = oneshot::channel();
        let request = WriteRequest {
            rows: rows.bytes,
            count,
            seal: rows.seal,
            reply,
        };
        let counted = self.queue.count_queued(count);
        match tokio::time::timeout(self.enqueue_timeout, self.sender.send(request)).await {
            Ok(Ok(())) => counted.hand_over(),
            Ok(Err(_)) => return Err(StorageError::unavailable("the event writer has stopped")),
            Err(_) => return Err(StorageError::Overloaded),
        }
        match tokio::time::timeout(self.answer_deadline, answer).await {
            Ok(Ok(result)) => result,
            // The writer task died with this batch in its group, perhaps after the
            // commit: whether it is stored cannot be known here.
            Ok(Err(_)) => Err(StorageError::outcome_unknown(
                "the event writer stopped while writing this batch",
            )),
            // Dropping `answer` tells a writer that has not taken the batch yet to
            // leave it out; one that has may still commit it.
            Err(_) => Err(StorageError::outcome_unknown(
                "the event writer did not answer in time",
            )),
        }
    }

    /// What the recent writes say, for readiness.
    pub fn status(&self) -> WriterStatus {
        self.queue.health.status()
    }

    /// Test hook: the writer task that takes the next group panics, as a bug would
    /// make it. Used to show that a dead writer answers at once and is restarted.
    #[doc(hidden)]
    pub fn crash_next_group_for_test(&self) {
        self.queue.crash_next_group();
    }
}
