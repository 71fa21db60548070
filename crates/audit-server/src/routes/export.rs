//! `GET /api/event/export`: every event the filters match, oldest first, streamed from
//! one snapshot at the pace the client reads (`audit_core::export`).

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use audit_core::export::{EventRows, ExportEnd, ExportRequest, export};
use audit_core::storage_error::{StorageError, call_deadline};
use futures_util::{StreamExt, stream};
use metrics::counter;
use tokio::sync::mpsc;

use crate::auth;
use crate::errors::ApiError;
use crate::metrics::{EVENTS_EXPORTED_TOTAL, EXPORTS_TOTAL};
use crate::state::AppState;
use crate::wire::export::{ExportFormat, parse_export_query};

/// Batches fetched ahead of the client: what an export holds in memory.
const BATCHES_AHEAD: usize = 2;

type Batch = Result<EventRows, StorageError>;

pub async fn export_events(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (runtime, caller) = auth::api_reader(&state, &request)?;
    let query = parse_export_query(request.query_string())?;
    let permit = state
        .exports
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Overloaded {
            what: "exports running",
        })?;
    let applications = query.filter.applications_within(caller.read_scope());
    let (sender, mut receiver) = mpsc::channel::<Batch>(BATCHES_AHEAD);
    let pool = runtime.repository.read_pool();
    let deadline = call_deadline(runtime.settings.postgres.statement_timeout());
    let (filter, after) = (query.filter, query.after);
    actix_web::rt::spawn(async move {
        let _permit = permit;
        let request = ExportRequest {
            applications: applications.as_deref(),
            filter: &filter,
            after,
        };
        let (outcome, events) = match export(&pool, deadline, request, &sender).await {
            Ok(ExportEnd::Complete { events }) => ("complete", events),
            Ok(ExportEnd::Abandoned { events }) => ("abandoned", events),
            Err(error) => {
                tracing::warn!(%error, "an export failed");
                let _ = sender.send(Err(error)).await;
                ("failed", 0)
            }
        };
        counter!(EXPORTS_TOTAL, "outcome" => outcome).increment(1);
        counter!(EVENTS_EXPORTED_TOTAL).increment(events);
    });
    // The first batch decides the status: an export that cannot start answers as any
    // read does (503 while the database is away), before a byte of the body is sent.
    let first = match receiver.recv().await {
        Some(Err(error)) => return Err(error.into()),
        other => other,
    };
    let format = query.format;
    let header = Bytes::from_static(format.header());
    let batches = stream::unfold(
        (first, receiver),
        move |(pending, mut receiver)| async move {
            let batch = match pending {
                Some(batch) => batch,
                None => receiver.recv().await?,
            };
            let chunk = batch.and_then(|rows| render(format, &rows));
            // A failure after the first byte can only break the response off: the
            // client sees an incomplete transfer, never a short export that looks whole.
            Some((chunk.map_err(ApiError::from), (None, receiver)))
        },
    );
    let body = stream::once(async move { Ok::<_, ApiError>(header) }).chain(batches);
    Ok(HttpResponse::Ok()
        .content_type(format.content_type())
        .streaming(body))
}

fn render(format: ExportFormat, rows: &EventRows) -> Result<Bytes, StorageError> {
    let mut body = Vec::with_capacity(rows.len() * 256);
    for event in rows.events() {
        format.render(&mut body, &event?);
    }
    Ok(Bytes::from(body))
}
