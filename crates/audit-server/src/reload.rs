//! Rereads the config file and environment and applies what can change at run time.
//!
//! Reload is all or nothing: the new settings are loaded and validated, a new pool is
//! connected if the database settings changed, and only then is anything swapped in.
//! `host` and `port` need a restart; a reload reports them but keeps the bound socket.

use std::collections::BTreeMap;

use audit_core::access::{self, AUTH_MODE_KEY, Actor, collector_event};
use audit_core::storage_error::cause_chain;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::metrics::CONFIG_RELOADS_TOTAL;
use crate::settings::Settings;
use crate::state::{AppState, Runtime};
use crate::telemetry;
use crate::tls::{NewCertificate, ReloadableCertificate};

/// Keys whose new value only takes effect after a restart.
const RESTART_KEYS: &[&str] = &[
    "host",
    "port",
    "log.format",
    "http.workers",
    "http.request_head_timeout_ms",
    "http.keep_alive_seconds",
    "http.max_connections_per_worker",
    "http.max_inflight_body_bytes",
    "http.backlog",
    "admin.listen",
    "integrity.enabled",
    "integrity.signing_key_file",
    "integrity.origin",
    "integrity.checkpoint_interval_ms",
    "integrity.seal_interval_ms",
    "integrity.checkpoint_log",
    "stream.max_clients",
];
/// Keys whose values never appear in a reload's answer, log line or event.
const SECRET_KEYS: &[&str] = &["postgres.dsn", "auth.metrics_token"];

#[derive(Debug, Serialize)]
pub struct ReloadSummary {
    /// Changed keys, with old and new values (secrets redacted).
    pub changed: BTreeMap<String, Change>,
    /// Changed keys that need a restart to take effect.
    pub restart_required: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Change {
    pub old: Value,
    pub new: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the new configuration is invalid: {0}")]
    Invalid(String),
    #[error("the new database settings do not work: {0}")]
    Database(String),
}

/// Reloads and returns what changed; on error the old configuration stays in force.
/// A reload that changed something is recorded in the log as `ConfigReloaded`, and a
/// change of `auth.mode` as `AuthModeChanged`, both by `actor`.
pub async fn reload(state: &AppState, actor: &Actor) -> Result<ReloadSummary, ReloadError> {
    let outcome = apply(state, actor).await;
    if let Ok(summary) = &outcome
        && !summary.changed.is_empty()
    {
        record_in_log(state, summary, actor).await;
    }
    let result = if outcome.is_ok() {
        "success"
    } else {
        "failure"
    };
    metrics::counter!(CONFIG_RELOADS_TOTAL, "result" => result).increment(1);
    match &outcome {
        Ok(summary) => tracing::info!(changed = ?summary.changed.keys(), "configuration reloaded"),
        Err(error) => tracing::warn!(%error, "configuration reload refused"),
    }
    outcome
}

/// Writes the collector's events about a reload; a failure is logged, not returned:
/// the new settings are in force either way.
async fn record_in_log(state: &AppState, summary: &ReloadSummary, actor: &Actor) {
    let runtime = state.runtime();
    let mut details = Map::new();
    details.insert(
        "changed".to_owned(),
        serde_json::to_value(&summary.changed).unwrap_or(Value::Null),
    );
    details.insert(
        "restart_required".to_owned(),
        Value::from(summary.restart_required.clone()),
    );
    let event = collector_event("ConfigReloaded", actor, details);
    let rows = access::rows_of(std::slice::from_ref(&event), actor);
    if let Err(error) = runtime.writer.write(rows).await {
        tracing::warn!(error = %cause_chain(&error), "the reload could not be recorded in the log");
    }
}

async fn apply(state: &AppState, actor: &Actor) -> Result<ReloadSummary, ReloadError> {
    let _exclusive = state.reload_lock.lock().await;
    let (settings, unknown_keys) = state
        .config_source
        .load::<Settings>()
        .map_err(|error| ReloadError::Invalid(cause_chain(&error)))?;
    if !unknown_keys.is_empty() {
        tracing::warn!(?unknown_keys, "unknown configuration keys ignored");
    }
    let filter = telemetry::parse_filter(&settings.log.level)
        .map_err(|error| ReloadError::Invalid(error.to_string()))?;

    let current = state.runtime();
    // The body budget is sized at start-up; a larger body could never get its share
    // and would answer 503 until a restart.
    let budget = state.started_settings.http.max_inflight_body_bytes;
    if settings.api.max_body_bytes > budget {
        return Err(ReloadError::Invalid(format!(
            "api.max_body_bytes ({}) is larger than the request body memory in force \
             (http.max_inflight_body_bytes = {budget}, which needs a restart to change)",
            settings.api.max_body_bytes
        )));
    }
    let summary = summarize(&state.started_settings, &current.settings, &settings);
    let certificate = read_certificate(state, &settings)?;
    let storage_unchanged = settings.postgres == current.settings.postgres
        && settings.ingest == current.settings.ingest;
    let runtime = if storage_unchanged {
        current.with_settings(settings)
    } else {
        start_checked(settings).await?
    };
    state
        .log_control
        .apply(filter)
        .map_err(|error| ReloadError::Invalid(error.to_string()))?;
    if let (Some(in_force), Some(certificate)) = (&state.certificate, certificate) {
        in_force.replace(certificate);
    }
    // Recorded before the new mode is in force, so that the change is the actor's and
    // not `server`'s (the token upkeep records a mode it finds unrecorded); a failure
    // leaves it to the upkeep.
    if summary.changed.contains_key(AUTH_MODE_KEY) {
        let mode = runtime.settings.auth.mode.as_str();
        if let Err(error) = access::record_auth_mode(&runtime.repository.pool(), mode, actor).await
        {
            tracing::warn!(error = %cause_chain(&error), "the change of auth.mode could not be recorded in the log");
        }
    }
    state.replace_runtime(runtime);
    Ok(summary)
}

/// Rereads the TLS certificate and key, so that a renewed certificate can be served
/// to new connections once the reload succeeds; turning TLS on or off needs a restart.
fn read_certificate(
    state: &AppState,
    settings: &Settings,
) -> Result<Option<NewCertificate>, ReloadError> {
    match (
        &state.certificate,
        &settings.tls.cert_file,
        &settings.tls.key_file,
    ) {
        (Some(_), Some(cert_file), Some(key_file)) => {
            ReloadableCertificate::read(cert_file, key_file)
                .map(Some)
                .map_err(|error| ReloadError::Invalid(format!("{error:#}")))
        }
        (None, None, _) => Ok(None),
        _ => Err(ReloadError::Invalid(
            "turning TLS on or off needs a restart; nothing was changed".to_owned(),
        )),
    }
}

/// Starts new storage and proves it reaches a migrated database before it is used.
async fn start_checked(settings: Settings) -> Result<Runtime, ReloadError> {
    let runtime =
        Runtime::start(settings).map_err(|error| ReloadError::Invalid(cause_chain(&error)))?;
    runtime
        .repository
        .check_ready()
        .await
        .map_err(|error| ReloadError::Database(cause_chain(&error)))?;
    Ok(runtime)
}

/// What the new settings change against what runs: the settings in force for keys a
/// reload applies, the start-up settings for keys that need a restart (a reload only
/// records those, so restoring one to the value the process runs with changes nothing).
fn summarize(started: &Settings, old: &Settings, new: &Settings) -> ReloadSummary {
    let mut old_values = flatten(old);
    let started_values = flatten(started);
    for key in RESTART_KEYS {
        if let Some(running) = started_values.get(*key) {
            old_values.insert((*key).to_owned(), running.clone());
        }
    }
    let new_values = flatten(new);
    let mut changed = BTreeMap::new();
    for (key, new_value) in new_values {
        let old_value = old_values.get(&key).cloned().unwrap_or(Value::Null);
        if old_value == new_value {
            continue;
        }
        let change = if key == "postgres.dsn" {
            Change {
                old: Value::String(old.postgres.redacted_dsn()),
                new: Value::String(new.postgres.redacted_dsn()),
            }
        } else if SECRET_KEYS.contains(&key.as_str()) {
            Change {
                old: redacted(&old_value),
                new: redacted(&new_value),
            }
        } else {
            Change {
                old: old_value,
                new: new_value,
            }
        };
        changed.insert(key, change);
    }
    let restart_required = changed
        .keys()
        .filter(|key| RESTART_KEYS.contains(&key.as_str()))
        .cloned()
        .collect();
    ReloadSummary {
        changed,
        restart_required,
    }
}

/// A secret's value as a change shows it: whether it is set, never what it is.
fn redacted(value: &Value) -> Value {
    if value.is_null() {
        Value::Null
    } else {
        Value::from("[redacted]")
    }
}

/// `{"api": {"max_page_size": 5}}` becomes `{"api.max_page_size": 5}`.
fn flatten(settings: &Settings) -> BTreeMap<String, Value> {
    let mut flat = BTreeMap::new();
    let value = serde_json::to_value(settings).unwrap_or(Value::Null);
    flatten_into(&mut flat, String::new(), value);
    flat
}

fn flatten_into(flat: &mut BTreeMap<String, Value>, prefix: String, value: Value) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let key = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                flatten_into(flat, key, value);
            }
        }
        other => {
            flat.insert(prefix, other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_lists_changed_keys_and_redacts_the_dsn_and_metrics_token() {
        let old = Settings::default();
        let mut new = Settings::default();
        new.failure.chance = 0.5;
        new.port = 9999;
        new.postgres.dsn = "postgres://u:secret@other:5432/audit".to_owned();
        new.auth.metrics_token = Some("secret-scrape-token".to_owned());

        let summary = summarize(&old, &old, &new);

        assert_eq!(
            summary.changed.keys().collect::<Vec<_>>(),
            [
                "auth.metrics_token",
                "failure.chance",
                "port",
                "postgres.dsn"
            ]
        );
        assert_eq!(summary.changed["auth.metrics_token"].new, "[redacted]");
        assert_eq!(summary.changed["failure.chance"].new, 0.5);
        assert_eq!(summary.restart_required, ["port"]);
        let text = serde_json::to_string(&summary).unwrap();
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn a_restart_key_restored_to_the_running_value_is_no_change() {
        let started = Settings::default();
        let reloaded_once = Settings {
            port: 9999,
            ..Settings::default()
        };
        let restored = Settings::default();

        let summary = summarize(&started, &reloaded_once, &restored);

        assert!(summary.changed.is_empty(), "{:?}", summary.changed);
        assert!(summary.restart_required.is_empty());
        let again = summarize(&started, &reloaded_once, &reloaded_once);
        assert_eq!(again.restart_required, ["port"]);
    }
}
