//! Read replicas in the server: a probe every [`PROBE_INTERVAL`] decides which ones
//! reads may go to (`audit_core::replicas`), and the metrics and `/ready` show them.

use std::time::Duration;

use actix_web::web;
use audit_core::replicas::{ReplicaState, ReplicaStatus};
use audit_core::storage_error::call_deadline;
use metrics::{counter, gauge};
use serde_json::{Value, json};

use crate::metrics::{DB_REPLICA_LAG_SECONDS, DB_REPLICA_READS_TOTAL, DB_REPLICA_USABLE};
use crate::state::AppState;

/// How often each server checks its replicas: a replica that fails or falls behind is
/// skipped from the next probe on (a page read that meets a failed one retries on the
/// primary at once).
const PROBE_INTERVAL: Duration = Duration::from_millis(200);

pub async fn probe_replicas_periodically(state: web::Data<AppState>) {
    let mut interval = tokio::time::interval(PROBE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let runtime = state.runtime();
        let Some(replicas) = runtime.repository.replicas() else {
            continue;
        };
        let postgres = &runtime.settings.postgres;
        let deadline = call_deadline(postgres.statement_timeout());
        replicas
            .probe(
                &runtime.repository.pool(),
                deadline,
                postgres.max_read_lag(),
            )
            .await;
        for (index, status) in replicas.statuses().iter().enumerate() {
            let label = index.to_string();
            let usable = status.state == ReplicaState::Usable;
            gauge!(DB_REPLICA_USABLE, "replica" => label.clone()).set(if usable {
                1.0
            } else {
                0.0
            });
            if let Some(lag) = status.lag {
                gauge!(DB_REPLICA_LAG_SECONDS, "replica" => label.clone()).set(lag.as_secs_f64());
            }
            counter!(DB_REPLICA_READS_TOTAL, "replica" => label).absolute(status.reads);
        }
    }
}

/// The replicas as `/ready` lists them: by their place in `postgres.read_dsns` (their
/// addresses stay out of an unauthenticated answer), with state and lag.
pub fn describe(statuses: &[ReplicaStatus]) -> Value {
    let replicas: Vec<Value> = statuses
        .iter()
        .enumerate()
        .map(|(index, status)| {
            json!({
                "replica": index,
                "state": status.state.as_str(),
                "lag_ms": status.lag.map(|lag| lag.as_millis()),
            })
        })
        .collect();
    Value::from(replicas)
}
