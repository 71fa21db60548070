//! `GET /api/event/stream`: the live tail as Server-Sent Events, in the tree's order
//! (`audit_core::tail`). Each event is `id: <position>` and `data: <its JSON>`; a
//! client resumes after the last position it got (`Last-Event-ID`, or `after`). The
//! stream opens, and each heartbeat carries, an `id:` alone: the position read up to.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use audit_core::filter::EventFilter;
use audit_core::storage_error::{StorageError, connection_from};
use audit_core::tail::{self, ReadLimits};
use futures_util::stream;
use metrics::{counter, gauge};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::Instant;

use crate::auth;
use crate::errors::{ApiError, Detail};
use crate::metrics::{STREAM_CLIENTS, STREAM_DISCONNECTS_TOTAL, STREAM_EVENTS_SENT_TOTAL};
use crate::state::{AppState, Runtime};
use crate::wire::outgoing::render_event;
use crate::wire::page_query::parse_filtered_query;

/// What a stream reads at a time: at most 1,000 events (what a chunk holds), from at
/// most 8,192 leaves (256 KiB of leaf records) when the filter lets records rule
/// events out, so that a stream of one application keeps up with full ingest.
const READ_LIMITS: ReadLimits = ReadLimits {
    events: 1_000,
    leaves: 8_192,
};
/// Chunks waiting for the client: what a stream holds in memory.
const CHUNKS_AHEAD: usize = 4;
/// A comment line sent when nothing else was for this long, so that proxies and
/// clients see the stream alive.
const HEARTBEAT: Duration = Duration::from_secs(15);
const AFTER: &str = "after";
const LAST_EVENT_ID: &str = "Last-Event-ID";

/// The server's graceful shutdown, which ends every stream: a stream never ends by
/// itself, and the server waits for responses in flight.
pub struct ShuttingDown(pub actix_server::GracefulShutdownSignal);

pub async fn stream_events(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (runtime, caller) = auth::api_reader(&state, &request)?;
    if !state.started_settings.integrity.is_enabled() {
        return Err(ApiError::Missing {
            code: "stream_unavailable",
            message: "the live tail follows the sealed order of events: it needs \
                      integrity on (integrity.signing_key_file, or integrity.enabled \
                      alone to seal without signing)"
                .to_owned(),
        });
    }
    let (filter, after) = parse_stream_query(&request)?;
    let permit = (state.streams.clone().try_acquire_owned()).map_err(|_| ApiError::Overloaded {
        what: "streams open",
    })?;
    let applications = filter.applications_within(caller.read_scope());
    // Where to start is settled before the answer, so that a database that is away
    // is a 503 rather than a stream that ends at once.
    let start = match after {
        Some(after) => after.saturating_add(1),
        None => {
            let client = connection_from(&runtime.repository.read_pool()).await?;
            tail::tree_size(&client).await?
        }
    };
    let shutdown = request
        .app_data::<web::Data<ShuttingDown>>()
        .map(|shutdown| shutdown.0.clone());
    let (sender, receiver) = mpsc::channel::<Bytes>(CHUNKS_AHEAD);
    actix_web::rt::spawn(follow(
        runtime,
        Follow {
            applications,
            filter,
            position: start,
        },
        sender,
        permit,
        shutdown,
    ));
    let body = stream::unfold(receiver, |mut receiver| async move {
        let chunk = receiver.recv().await?;
        Some((Ok::<_, ApiError>(chunk), receiver))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(body))
}

/// The filters, and the position to resume after: the `Last-Event-ID` header, else
/// `after`.
fn parse_stream_query(request: &HttpRequest) -> Result<(EventFilter, Option<u64>), ApiError> {
    let mut after = None;
    let filter = parse_filtered_query(request.query_string(), &[AFTER], |_, value| {
        after = Some(position(&value)?);
        Ok(())
    })?;
    if let Some(header) = request.headers().get(LAST_EVENT_ID) {
        let value = header.to_str().map_err(|_| invalid_header("is not text"))?;
        after = Some(position(value.trim()).map_err(|problem| invalid_header(&problem))?);
    }
    Ok((filter, after))
}

fn position(value: &str) -> Result<u64, String> {
    value
        .parse::<u64>()
        .map_err(|_| "must be a position: the id of the last event the stream sent".to_owned())
}

fn invalid_header(problem: &str) -> ApiError {
    ApiError::InvalidHeader(Detail {
        field: Some(LAST_EVENT_ID.to_owned()),
        problem: problem.to_owned(),
        ..Detail::default()
    })
}

/// What one stream follows, and where it is.
struct Follow {
    applications: Option<Vec<String>>,
    filter: EventFilter,
    /// The next leaf to read.
    position: u64,
}

/// Feeds one stream until its client leaves, stops taking events, or the database
/// fails (the client then resumes from the last position it got).
async fn follow(
    runtime: Arc<Runtime>,
    mut follow: Follow,
    sender: mpsc::Sender<Bytes>,
    _permit: OwnedSemaphorePermit,
    shutdown: Option<actix_server::GracefulShutdownSignal>,
) {
    gauge!(STREAM_CLIENTS).increment(1.0);
    let shutting_down = async {
        match &shutdown {
            Some(shutdown) => shutdown.notified().await,
            None => std::future::pending().await,
        }
    };
    let reason = tokio::select! {
        fed = feed(&runtime, &mut follow, &sender) => match fed {
            Ok(reason) => reason,
            Err(error) => {
                tracing::warn!(%error, "a stream ended: the database failed");
                "error"
            }
        },
        () = shutting_down => "shutdown",
    };
    counter!(STREAM_DISCONNECTS_TOTAL, "reason" => reason).increment(1);
    gauge!(STREAM_CLIENTS).decrement(1.0);
}

async fn feed(
    runtime: &Runtime,
    follow: &mut Follow,
    sender: &mpsc::Sender<Bytes>,
) -> Result<&'static str, StorageError> {
    let settings = &runtime.settings.stream;
    let mut last_sent = Instant::now();
    // Where the stream starts, as a position to resume after (an `id:` alone sets a
    // client's Last-Event-ID without an event), so that a client that drops before
    // its first event resumes here rather than at the tree's size by then.
    if let Some(before) = follow.position.checked_sub(1) {
        let start = Bytes::from(format!("id: {before}\n\n"));
        if sender.send(start).await.is_err() {
            return Ok("client_left");
        }
    }
    loop {
        let rows = {
            let client = connection_from(&runtime.repository.read_pool()).await?;
            tail::read_from(
                &client,
                follow.applications.as_deref(),
                &follow.filter,
                follow.position,
                READ_LIMITS,
            )
            .await?
        };
        let moved = rows.next > follow.position;
        follow.position = rows.next;
        let mut chunk = Vec::new();
        for event in rows.events() {
            let (position, event) = event?;
            // Writing into a Vec cannot fail.
            let _ = write!(chunk, "id: {position}\ndata: ");
            render_event(&mut chunk, &event);
            chunk.extend_from_slice(b"\n\n");
        }
        if chunk.is_empty() && last_sent.elapsed() >= HEARTBEAT {
            // With the position read up to: a filtered stream resumes past the leaves
            // it skipped.
            let _ = match follow.position.checked_sub(1) {
                Some(before) => write!(chunk, ": heartbeat\nid: {before}\n\n"),
                None => write!(chunk, ": heartbeat\n\n"),
            };
        }
        if !chunk.is_empty() {
            match tokio::time::timeout(settings.max_send_wait(), sender.send(Bytes::from(chunk)))
                .await
            {
                Err(_) => return Ok("slow"),
                Ok(Err(_)) => return Ok("client_left"),
                Ok(Ok(())) => {
                    counter!(STREAM_EVENTS_SENT_TOTAL).increment(rows.len() as u64);
                    last_sent = Instant::now();
                }
            }
        }
        if sender.is_closed() {
            return Ok("client_left");
        }
        if !moved {
            tokio::time::sleep(settings.poll_interval()).await;
        }
    }
}
