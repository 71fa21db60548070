//! The group-commit writer's settings (`[ingest]`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, invalid};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IngestSettings {
    /// Writer tasks, each committing one group of queued batches at a time.
    pub writers: usize,
    /// Batches that may wait for a writer; when full, POSTs wait up to
    /// `enqueue_timeout_ms`, then fail with 503.
    pub queue_capacity: usize,
    /// How long a POST waits for room in a full write queue before 503.
    pub enqueue_timeout_ms: u64,
    /// Most events one group commit takes (a single larger batch still goes whole).
    pub max_group_events: usize,
    /// Events that must be waiting before a writer starts a COPY beside a group still
    /// being written; with fewer, it waits for that commit and takes them all at once.
    pub parallel_group_events: usize,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            writers: 2,
            queue_capacity: 1024,
            enqueue_timeout_ms: 2_000,
            max_group_events: 20_000,
            parallel_group_events: 256,
        }
    }
}

impl IngestSettings {
    pub fn enqueue_timeout(&self) -> Duration {
        Duration::from_millis(self.enqueue_timeout_ms)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.writers == 0 {
            return invalid("ingest.writers", "must be at least 1");
        }
        if self.queue_capacity == 0 {
            return invalid("ingest.queue_capacity", "must be at least 1");
        }
        if self.max_group_events == 0 {
            return invalid("ingest.max_group_events", "must be at least 1");
        }
        Ok(())
    }
}
