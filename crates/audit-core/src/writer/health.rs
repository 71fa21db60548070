//! What the writer's recent groups say about the database, for `/ready`.
//!
//! A database that answers a readiness query may still refuse every write (a broken
//! constraint, a full disk, a dead writer); only the writes themselves can tell.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long one failed write keeps the writer "failing" when nothing succeeds after
/// it. Without new writes a failure must not keep an instance out of service forever;
/// a load balancer that stops sending writes gets the instance back after this.
const FAILURE_MEMORY: Duration = Duration::from_secs(10);

/// The writer as `/ready` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriterStatus {
    /// The last writes went through, or none failed recently.
    Healthy,
    /// The most recent write failed (a database error, not a refused batch) and none
    /// succeeded since.
    WritesFailing,
    /// A writer task died and is being restarted, or none is running.
    Restarting,
}

#[derive(Debug, Default)]
pub(crate) struct WriterHealth {
    /// Writer tasks running now.
    running: AtomicUsize,
    outcomes: Mutex<Outcomes>,
}

#[derive(Debug, Default)]
struct Outcomes {
    last_success: Option<Instant>,
    last_failure: Option<Instant>,
    last_death: Option<Instant>,
}

impl WriterHealth {
    pub(crate) fn tasks_started(&self, tasks: usize) {
        self.running.fetch_add(tasks, Ordering::AcqRel);
    }

    pub(crate) fn tasks_ended(&self, tasks: usize, died: bool) {
        self.running.fetch_sub(tasks, Ordering::AcqRel);
        if died {
            self.outcomes().last_death = Some(Instant::now());
        }
    }

    pub(crate) fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    pub(crate) fn record(&self, succeeded: bool) {
        let now = Some(Instant::now());
        let mut outcomes = self.outcomes();
        if succeeded {
            outcomes.last_success = now;
        } else {
            outcomes.last_failure = now;
        }
    }

    pub(crate) fn status(&self) -> WriterStatus {
        if self.running() == 0 {
            return WriterStatus::Restarting;
        }
        let outcomes = self.outcomes();
        let recent = |moment: Option<Instant>| {
            moment.is_some_and(|moment| moment.elapsed() < FAILURE_MEMORY)
        };
        let not_since = |moment: Option<Instant>| match (moment, outcomes.last_success) {
            (Some(failed), Some(succeeded)) => succeeded < failed,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if recent(outcomes.last_death) && not_since(outcomes.last_death) {
            return WriterStatus::Restarting;
        }
        if recent(outcomes.last_failure) && not_since(outcomes.last_failure) {
            return WriterStatus::WritesFailing;
        }
        WriterStatus::Healthy
    }

    fn outcomes(&self) -> std::sync::MutexGuard<'_, Outcomes> {
        // The data is a few timestamps: a panic elsewhere cannot leave it inconsistent.
        self.outcomes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_makes_the_writer_failing_until_a_success() {
        let health = WriterHealth::default();
        health.tasks_started(1);
        assert_eq!(health.status(), WriterStatus::Healthy);

        health.record(false);
        assert_eq!(health.status(), WriterStatus::WritesFailing);

        health.record(true);
        assert_eq!(health.status(), WriterStatus::Healthy);
    }

    #[test]
    fn a_death_or_no_task_at_all_is_restarting() {
        let health = WriterHealth::default();
        assert_eq!(health.status(), WriterStatus::Restarting);

        health.tasks_started(2);
        health.tasks_ended(1, true);
        assert_eq!(health.status(), WriterStatus::Restarting);

        health.record(true);
        assert_eq!(health.status(), WriterStatus::Healthy);
    }
}
