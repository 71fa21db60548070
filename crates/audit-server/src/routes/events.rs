//! `POST /api/event` and `GET /api/event`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::time::Instant;

use actix_web::http::header::{ContentType, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use audit_core::batch::{BatchError, parse_batch};
use audit_core::copy::EncodedRows;
use audit_core::filter::Direction;
use audit_core::idempotency::{self, IdempotencyKey, InvalidKey, KeyedOutcome, KeyedWrite};
use audit_core::storage_error::call_deadline;
use metrics::{Counter, Histogram, counter, histogram};
use sha2::{Digest, Sha256};

use crate::auth;
use crate::body::{BodyLimits, read_limited};
use crate::errors::{ApiError, Detail};
use crate::metrics::{DB_STATEMENT_DURATION_SECONDS, INJECTED_FAILURES_TOTAL};
use crate::routes::EVENTS_PATH;
use crate::slow_readers::DeadlineBody;
use crate::state::{AppState, Runtime};
use crate::wire::outgoing::{PageBody, PageWriter};
use crate::wire::page_query::parse_page_query;

/// The header a client sets to make a POST safe to retry.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Set on a response that replays the first result of an idempotency key.
const REPLAYED_HEADER: &str = "idempotent-replayed";

#[tracing::instrument(name = "post_events", skip_all)]
pub async fn post_events(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let runtime = state.runtime();
    let caller = auth::api_caller(&state.tokens, runtime.settings.auth.mode, &request)?;
    caller.require_some_write()?;
    let key = idempotency_key(&request)?;
    let limits = BodyLimits {
        max_bytes: runtime.settings.api.max_body_bytes,
        timeout: runtime.settings.http.body_timeout(),
        budget_wait: runtime.settings.http.body_memory_wait(),
    };
    // The reservation lives until the response: the encoded rows take memory too.
    let (body, _reservation) = read_limited(&request, payload, limits, &state.body_budget).await?;
    let batch = parse_batch(
        &body,
        runtime.settings.api.batch_limits(),
        caller.write_grant(),
        state.started_settings.integrity.seal_column(),
    )
    .map_err(|error| match error {
        BatchError::Forbidden(refused) => {
            auth::forbidden_events(refused.into_iter().map(Detail::from).collect())
        }
        other => ApiError::from(other),
    })?;
    // As the original: a malformed request is refused every time, and only then is
    // the failure drawn; nothing is stored before the draw, so a retry stays safe.
    inject_failure(&runtime)?;
    let request_hash = key.as_ref().map(|_| Sha256::digest(&body));
    drop(body);
    let (rows, per_application) = batch.into_parts();
    let per_application = inserted_counters(&state, &runtime, &per_application);
    if let (Some(key), Some(request_hash)) = (key, request_hash) {
        return post_keyed(&runtime, &key, &request_hash, &rows, per_application).await;
    }
    let inserted = timed("insert_events", runtime.writer.write(rows)).await?;
    record_inserted(per_application);
    Ok(created(inserted))
}

fn created(inserted: u64) -> HttpResponse {
    // Written directly: the body is one number, not worth a JSON tree per request.
    HttpResponse::Created()
        .content_type(ContentType::json())
        .body(format!(r#"{{"inserted":{inserted}}}"#))
}

/// The optional `Idempotency-Key` header, validated.
/// The header given twice is refused rather than one of its values picked: the client
/// would not know which of its keys guards the batch.
fn idempotency_key(request: &HttpRequest) -> Result<Option<IdempotencyKey>, ApiError> {
    let mut values = request.headers().get_all(IDEMPOTENCY_KEY_HEADER);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let invalid = |problem: String| {
        ApiError::InvalidHeader(Detail {
            field: Some(IDEMPOTENCY_KEY_HEADER.to_owned()),
            problem,
            ..Detail::default()
        })
    };
    if values.next().is_some() {
        return Err(invalid("is given more than once".to_owned()));
    }
    value
        .to_str()
        .ok()
        .and_then(|text| IdempotencyKey::parse(text).ok())
        .map(Some)
        .ok_or_else(|| invalid(InvalidKey.to_string()))
}

/// A keyed batch: stored with its key in one transaction, or the first result replayed.
async fn post_keyed(
    runtime: &Runtime,
    key: &IdempotencyKey,
    request_hash: &[u8],
    rows: &EncodedRows,
    per_application: Vec<(Counter, u64)>,
) -> Result<HttpResponse, ApiError> {
    let ttl = runtime.settings.idempotency.ttl();
    let pool = &runtime.repository.pool();
    let write = KeyedWrite {
        key,
        request_hash,
        ttl,
        deadline: call_deadline(runtime.settings.postgres.statement_timeout()),
    };
    let outcome = timed(
        "insert_events_keyed",
        idempotency::write_keyed(pool, write, rows),
    )
    .await?;
    match outcome {
        KeyedOutcome::Stored(inserted) => {
            record_inserted(per_application);
            Ok(created(inserted))
        }
        KeyedOutcome::Replayed(inserted) => {
            let mut response = created(inserted);
            response.headers_mut().insert(
                HeaderName::from_static(REPLAYED_HEADER),
                HeaderValue::from_static("true"),
            );
            Ok(response)
        }
        KeyedOutcome::KeyReused => Err(ApiError::IdempotencyKeyReused),
    }
}

#[tracing::instrument(name = "get_events", skip_all)]
pub async fn get_events(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (runtime, caller) = auth::api_reader(&state, &request)?;
    let query = parse_page_query(request.query_string(), &runtime.settings.api)?;
    inject_failure(&runtime)?;
    // One row more than asked says whether a next page exists.
    let limit = i64::from(query.page_size) + 1;
    let mut page = PageWriter::new(query.page_size, runtime.settings.api.max_page_bytes);
    let max_scan_rows = i64::from(runtime.settings.search.max_scan_rows);
    let repository = &runtime.repository;
    // Without filters, newest first, the original's query: its statements, unchanged.
    let end = if query.filter.is_empty() && query.direction == Direction::Descending {
        let read = repository.read_page(
            caller.read_scope(),
            query.page_token,
            limit,
            max_scan_rows,
            |event| page.accept(event),
        );
        timed("select_page", read).await?
    } else {
        let applications = query.filter.applications_within(caller.read_scope());
        let read = repository.read_filtered_page(
            applications.as_deref(),
            &query.filter,
            query.direction,
            query.page_token,
            limit,
            max_scan_rows,
            |event| page.accept(event),
        );
        timed("select_filtered_page", read).await?
    };
    if let Some(token) = end.continue_at {
        page.continue_at(token);
    }
    let mut response = HttpResponse::Ok();
    response.content_type(ContentType::json());
    Ok(match page.finish() {
        PageBody::Whole(body) => response.body(body),
        PageBody::Chunks(chunks) => {
            let timeout = runtime.settings.http.response_timeout();
            response.body(DeadlineBody::new(chunks, timeout))
        }
    })
}

/// The original's deliberate failures, drawn after the request is validated (as the
/// original does) and before any database work, so an injected failure never stores
/// anything.
fn inject_failure(runtime: &Runtime) -> Result<(), ApiError> {
    let chance = runtime.settings.failure.chance;
    if chance > 0.0 && rand::random::<f64>() < chance {
        counter!(INJECTED_FAILURES_TOTAL, "path_template" => EVENTS_PATH).increment(1);
        return Err(ApiError::InjectedFailure);
    }
    Ok(())
}

async fn timed<T, E>(
    statement: &'static str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let result = call.await;
    statement_histogram(statement).record(started.elapsed().as_secs_f64());
    result
}

thread_local! {
    /// Statement -> its duration histogram, per worker thread: the statements are a
    /// fixed few, and a look-up in the recorder builds a key and hashes its labels.
    static STATEMENT_HISTOGRAMS: RefCell<HashMap<&'static str, Histogram>> =
        RefCell::default();
}

fn statement_histogram(statement: &'static str) -> Histogram {
    STATEMENT_HISTOGRAMS.with(|cache| {
        cache
            .borrow_mut()
            .entry(statement)
            .or_insert_with(|| histogram!(DB_STATEMENT_DURATION_SECONDS, "statement" => statement))
            .clone()
    })
}

/// The `events_inserted_total` counter of each application of the batch, with its
/// count.
fn inserted_counters(
    state: &AppState,
    runtime: &Runtime,
    per_application: &[(String, u64)],
) -> Vec<(Counter, u64)> {
    let limit = runtime.settings.metrics.max_application_labels;
    per_application
        .iter()
        .map(|(application, count)| {
            let counter = state
                .application_labels
                .inserted_counter(application, limit);
            (counter, *count)
        })
        .collect()
}

/// Counts committed events; called only after the commit.
fn record_inserted(per_application: Vec<(Counter, u64)>) {
    for (counter, count) in per_application {
        counter.increment(count);
    }
}
