//! The events table's partitions (`[partitions]`) and how long events are kept
//! (`[retention]`); `partitions` (the module) does the work.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, invalid};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PartitionSettings {
    /// Ids in each new partition: what retention drops at once.
    pub size: i64,
    /// Partitions kept ready beyond the one being filled, so that writers never wait
    /// for one: at least `ahead * size` ids of room.
    pub ahead: i64,
    /// How often a server looks after the partitions (one at a time, under a lock).
    pub maintenance_interval_ms: u64,
}

impl Default for PartitionSettings {
    fn default() -> Self {
        Self {
            size: 10_000_000,
            ahead: 2,
            maintenance_interval_ms: 1000,
        }
    }
}

impl PartitionSettings {
    pub fn maintenance_interval(&self) -> Duration {
        Duration::from_millis(self.maintenance_interval_ms)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.size < 1 {
            return invalid("partitions.size", "must be at least 1");
        }
        if self.ahead < 1 {
            return invalid("partitions.ahead", "must be at least 1");
        }
        if self.maintenance_interval_ms == 0 {
            return invalid("partitions.maintenance_interval_ms", "must be at least 1");
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionSettings {
    /// Drop each partition whose events all arrived longer ago than this; unset keeps
    /// every event.
    pub max_age_days: Option<u32>,
    /// A legal hold: nothing is dropped while set, whatever `max_age_days` says.
    pub hold: bool,
}

impl RetentionSettings {
    /// The age past which partitions are dropped now: none under a hold or without
    /// `max_age_days`.
    pub fn drop_after(&self) -> Option<Duration> {
        let days = self.max_age_days.filter(|_| !self.hold)?;
        Some(Duration::from_secs(u64::from(days) * 86_400))
    }
}
