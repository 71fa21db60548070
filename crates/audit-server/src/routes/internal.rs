//! Operational endpoints: liveness, readiness, metrics and reload. None of them is
//! subject to failure injection.

use actix_web::{HttpResponse, web};
use audit_core::storage_error::{StorageError, cause_chain};
use audit_core::writer::WriterStatus;
use serde_json::json;

use crate::metrics::{DATABASE_READY, DB_POOL_CONNECTIONS, DB_POOL_MAX_SIZE, DB_POOL_WAITING};
use crate::reload::{self, ReloadError};
use crate::state::AppState;

pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Why the service is not ready.
#[derive(Debug)]
pub enum NotReady {
    Database(StorageError),
    Writer(WriterStatus),
}

#[tracing::instrument(name = "ready", skip_all)]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let Err(not_ready) = probe_readiness(&state).await else {
        return HttpResponse::Ok().json(json!({ "status": "ready" }));
    };
    let (reason, message) = match &not_ready {
        NotReady::Database(error @ StorageError::SchemaNotReady { .. }) => {
            ("migrations_pending", cause_chain(error))
        }
        NotReady::Database(error) => ("database_unavailable", cause_chain(error)),
        NotReady::Writer(WriterStatus::Restarting) => (
            "writer_restarting",
            "an event writer died and is being restarted".to_owned(),
        ),
        NotReady::Writer(_) => (
            "writes_failing",
            "the most recent writes failed and none succeeded since".to_owned(),
        ),
    };
    HttpResponse::ServiceUnavailable()
        .insert_header(("Retry-After", "1"))
        .json(json!({
            "status": "not_ready",
            "error": reason,
            "message": message,
        }))
}

/// Checks the database and the writer, and records the outcome in the
/// `database_ready` gauge. A database that answers but refuses every write is not
/// ready: only the writes can tell.
pub async fn probe_readiness(state: &AppState) -> Result<(), NotReady> {
    let runtime = state.runtime();
    let outcome = match runtime.repository.check_ready().await {
        Err(error) => Err(NotReady::Database(error)),
        Ok(()) => match runtime.writer.status() {
            WriterStatus::Healthy => Ok(()),
            status => Err(NotReady::Writer(status)),
        },
    };
    metrics::gauge!(DATABASE_READY).set(if outcome.is_ok() { 1.0 } else { 0.0 });
    outcome
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    // Pool gauges are read at scrape time: they describe the pool now.
    let status = state.runtime().repository.pool().status();
    let in_use = status.size.saturating_sub(status.available);
    metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "in_use").set(in_use as f64);
    metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(status.available as f64);
    metrics::gauge!(DB_POOL_WAITING).set(status.waiting as f64);
    metrics::gauge!(DB_POOL_MAX_SIZE).set(status.max_size as f64);
    crate::metrics::collect_process_metrics();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.prometheus.render())
}

pub async fn reload(state: web::Data<AppState>) -> HttpResponse {
    match reload::reload(&state).await {
        Ok(summary) => HttpResponse::Ok().json(json!({
            "status": "reloaded",
            "changed": summary.changed,
            "restart_required": summary.restart_required,
        })),
        Err(error) => {
            let code = match error {
                ReloadError::Invalid(_) => "invalid_config",
                ReloadError::Database(_) => "database_unreachable",
            };
            HttpResponse::UnprocessableEntity().json(json!({
                "error": code,
                "message": error.to_string(),
                "details": [],
            }))
        }
    }
}

/// The OpenAPI 3 document of this API, kept in the repository beside the code.
const OPENAPI_DOCUMENT: &str = include_str!("../../openapi.json");

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI_DOCUMENT)
}
