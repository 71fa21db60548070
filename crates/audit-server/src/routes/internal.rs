//! Operational endpoints: liveness, readiness, metrics and reload. None of them is
//! subject to failure injection.

use actix_web::{HttpResponse, web};
use audit_core::repository::StorageError;
use serde_json::json;

use crate::errors::cause_chain;
use crate::metrics::{DATABASE_READY, DB_POOL_CONNECTIONS, DB_POOL_MAX_SIZE, DB_POOL_WAITING};
use crate::reload::{self, ReloadError};
use crate::state::AppState;

pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

#[tracing::instrument(name = "ready", skip_all)]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    match probe_readiness(&state).await {
        Ok(()) => HttpResponse::Ok().json(json!({ "status": "ready" })),
        Err(error) => {
            let reason = match &error {
                StorageError::SchemaNotReady { .. } => "migrations_pending",
                _ => "database_unavailable",
            };
            HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", "1"))
                .json(json!({
                    "status": "not_ready",
                    "error": reason,
                    "message": cause_chain(&error),
                }))
        }
    }
}

/// Checks the database and records the outcome in the `database_ready` gauge.
pub async fn probe_readiness(state: &AppState) -> Result<(), StorageError> {
    let outcome = state.runtime().repository.check_ready().await;
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
