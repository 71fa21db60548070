//! Runs the writer tasks on a thread of their own and keeps them running: a task that
//! dies is logged with its cause and replaced; a thread that cannot start is retried
//! when the next write comes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio::task::JoinSet;

use crate::writer::queue::{SharedQueue, write_groups};

/// Pause before a dead task is replaced, so a task that dies at once every time does
/// not spin.
const RESTART_PAUSE: Duration = Duration::from_millis(100);
/// Least time between two attempts to start a thread that failed to start.
const THREAD_RETRY_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct Supervisor {
    queue: Arc<SharedQueue>,
    pool: Pool,
    tasks: usize,
    /// Whether a supervisor thread is running (or starting).
    thread_running: Arc<AtomicBool>,
    last_thread_attempt: Mutex<Option<Instant>>,
}

impl Supervisor {
    pub(crate) fn new(queue: Arc<SharedQueue>, pool: Pool, tasks: usize) -> Self {
        Self {
            queue,
            pool,
            tasks,
            thread_running: Arc::new(AtomicBool::new(false)),
            last_thread_attempt: Mutex::new(None),
        }
    }

    /// Starts the writer thread; a failure is logged, `/ready` shows it and the next
    /// write tries again.
    pub(crate) fn start_thread(&self) {
        if self.thread_running.swap(true, Ordering::AcqRel) {
            return;
        }
        *self
            .last_thread_attempt
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        // Counted as running from now on, before the thread has spawned them: a write
        // that comes in the meantime is queued for them, not refused.
        self.queue.health.tasks_started(self.tasks);
        let queue = Arc::clone(&self.queue);
        let pool = self.pool.clone();
        let tasks = self.tasks;
        let running = Arc::clone(&self.thread_running);
        let spawned = std::thread::Builder::new()
            .name("event-writer".to_owned())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(supervise(queue, pool, tasks)),
                    Err(error) => {
                        tracing::error!(%error, "cannot start the event writer");
                        queue.health.tasks_ended(tasks, true);
                    }
                }
                running.store(false, Ordering::Release);
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot spawn the event writer thread");
            self.queue.health.tasks_ended(self.tasks, true);
            self.thread_running.store(false, Ordering::Release);
        }
    }

    /// Tries to start the thread again if none runs and the last try is old enough;
    /// answers whether writer tasks run now.
    pub(crate) fn restart_if_down(&self) -> bool {
        let due = self
            .last_thread_attempt
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none_or(|attempt| attempt.elapsed() >= THREAD_RETRY_INTERVAL);
        if due && !self.thread_running.load(Ordering::Acquire) {
            self.start_thread();
        }
        self.queue.health.running() > 0
    }
}

/// Keeps `tasks` writer tasks running until the queue closes; they were counted as
/// running when the thread was started.
async fn supervise(queue: Arc<SharedQueue>, pool: Pool, tasks: usize) {
    let mut running = JoinSet::new();
    for _ in 0..tasks {
        spawn_task(&mut running, &queue, &pool);
    }
    while let Some(ended) = running.join_next().await {
        match ended {
            // The queue closed: every handle is gone, nothing more will come.
            Ok(()) => queue.health.tasks_ended(1, false),
            Err(error) => {
                queue.health.tasks_ended(1, true);
                let cause = if error.is_panic() {
                    panic_message(error.into_panic())
                } else {
                    error.to_string()
                };
                tracing::error!(%cause, "an event writer task died; restarting it");
                tokio::time::sleep(RESTART_PAUSE).await;
                queue.health.tasks_started(1);
                spawn_task(&mut running, &queue, &pool);
            }
        }
    }
}

fn spawn_task(running: &mut JoinSet<()>, queue: &Arc<SharedQueue>, pool: &Pool) {
    running.spawn(write_groups(Arc::clone(queue), pool.clone()));
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        return (*text).to_owned();
    }
    if let Some(text) = payload.downcast_ref::<String>() {
        return text.clone();
    }
    "a panic without a message".to_owned()
}
