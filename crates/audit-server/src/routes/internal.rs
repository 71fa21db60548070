//! Operational endpoints: liveness, readiness, metrics and reload. None of them is
//! subject to failure injection; `/reload` needs an admin (see `auth`), `/metrics` the
//! metrics token when one is set.

use actix_web::{HttpRequest, HttpResponse, web};
use audit_core::storage_error::{StorageError, cause_chain};
use audit_core::writer::WriterStatus;
use serde_json::json;

use crate::auth;
use crate::errors::ApiError;
use crate::metrics::{DATABASE_READY, DB_POOL_CONNECTIONS, DB_POOL_MAX_SIZE, DB_POOL_WAITING};
use crate::reload::{self, ReloadError};
use crate::settings::AuthMode;
use crate::state::AppState;

pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Why the service is not ready.
#[derive(Debug)]
pub enum NotReady {
    Database(StorageError),
    Writer(WriterStatus),
    /// Tokens are required and were never read: every API request would get 503.
    TokensNotLoaded,
}

#[tracing::instrument(name = "ready", skip_all)]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let replicas = (state.runtime_ref().repository.replicas())
        .map(|replicas| crate::replicas::describe(&replicas.statuses()));
    let Err(not_ready) = probe_readiness(&state).await else {
        let mut body = json!({ "status": "ready" });
        if let Some(replicas) = replicas {
            body["replicas"] = replicas;
        }
        return HttpResponse::Ok().json(body);
    };
    // The reason is a stable code and a fixed sentence: the database's own error text
    // can name hosts, users and schema, so it goes to the log only.
    let (reason, message) = match &not_ready {
        NotReady::Database(error @ StorageError::SchemaNotReady { .. }) => {
            tracing::warn!(error = %cause_chain(error), "not ready");
            (
                "migrations_pending",
                "the database schema is older than this build; run audit-migrate",
            )
        }
        NotReady::Database(error) => {
            tracing::warn!(error = %cause_chain(error), "not ready");
            ("database_unavailable", "the database does not answer")
        }
        NotReady::Writer(WriterStatus::Restarting) => (
            "writer_restarting",
            "an event writer died and is being restarted",
        ),
        NotReady::Writer(_) => (
            "writes_failing",
            "the most recent writes failed and none succeeded since",
        ),
        NotReady::TokensNotLoaded => (
            "tokens_not_loaded",
            "auth.mode is \"tokens\" and the tokens were not read yet",
        ),
    };
    let mut body = json!({
        "status": "not_ready",
        "error": reason,
        "message": message,
    });
    if let Some(replicas) = replicas {
        body["replicas"] = replicas;
    }
    HttpResponse::ServiceUnavailable()
        .insert_header(("Retry-After", "1"))
        .json(body)
}

/// Checks the database and the writer, and records the outcome in the
/// `database_ready` gauge. A database that answers but refuses every write is not
/// ready: only the writes can tell.
pub async fn probe_readiness(state: &AppState) -> Result<(), NotReady> {
    let runtime = state.runtime();
    let outcome = match runtime.repository.check_ready().await {
        Err(error) => Err(NotReady::Database(error)),
        Ok(()) => match runtime.writer.status() {
            WriterStatus::Healthy
                if runtime.settings.auth.mode == AuthMode::Tokens && !state.tokens.is_loaded() =>
            {
                Err(NotReady::TokensNotLoaded)
            }
            WriterStatus::Healthy => Ok(()),
            status => Err(NotReady::Writer(status)),
        },
    };
    metrics::gauge!(DATABASE_READY).set(if outcome.is_ok() { 1.0 } else { 0.0 });
    outcome
}

pub async fn metrics(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if let Some(expected) = &state.runtime_ref().settings.auth.metrics_token {
        auth::check_static_token(&request, expected)?;
    }
    // Pool gauges are read at scrape time: they describe the pool now.
    let status = state.runtime().repository.pool_status();
    let in_use = status.size.saturating_sub(status.available);
    metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "in_use").set(in_use as f64);
    metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(status.available as f64);
    metrics::gauge!(DB_POOL_WAITING).set(status.waiting as f64);
    metrics::gauge!(DB_POOL_MAX_SIZE).set(status.max_size as f64);
    crate::metrics::collect_process_metrics();
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.prometheus.render()))
}

pub async fn reload(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let mode = state.runtime_ref().settings.auth.mode;
    let actor = auth::admin_actor(&state.tokens, mode, &request)?;
    Ok(match reload::reload(&state, &actor).await {
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
    })
}

/// The OpenAPI 3 document of this API, kept in the repository beside the code.
const OPENAPI_DOCUMENT: &str = include_str!("../../openapi.json");

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI_DOCUMENT)
}
