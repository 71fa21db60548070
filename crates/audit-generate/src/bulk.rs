//! `audit-generate bulk`: millions of events straight into PostgreSQL by binary COPY.
//!
//! A thread makes and encodes events while the async side streams the bytes to
//! PostgreSQL, so generation and COPY overlap on the two cores. Rows go in groups of
//! `rows_per_copy`, one COPY (one transaction) each.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use audit_core::config::{PartitionSettings, PostgresSettings};
use audit_core::copy::{COPY_EVENTS, CopyTarget, StreamEncoder, copy_in};
use audit_core::repository::check_schema;
use audit_core::storage_error::StorageError;
use audit_core::{database, partitions};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::fake_events::EventFactory;
use crate::progress::Progress;

/// Bytes per message from the encoding thread.
const CHUNK_BYTES: usize = 256 * 1024;
/// Messages in flight between the threads: bounds memory to a few MiB.
const CHANNEL_DEPTH: usize = 16;

pub struct BulkOptions {
    pub count: u64,
    pub rows_per_copy: u64,
    pub factory: EventFactory,
}

pub struct BulkSummary {
    pub rows: u64,
    pub elapsed: Duration,
}

enum Message {
    Chunk(Bytes),
    EndOfCopy,
}

/// Loads `count` events into the database and returns how many PostgreSQL wrote.
pub async fn load(
    options: BulkOptions,
    settings: &PostgresSettings,
) -> anyhow::Result<BulkSummary> {
    let client = database::connect(settings).await?;
    match check_schema(&client).await {
        Ok(()) => {}
        Err(StorageError::SchemaNotReady { .. }) => bail!(
            "the database {} has no events schema (or an old one): run `audit-migrate` first",
            settings.redacted_dsn()
        ),
        Err(error) => return Err(error).context("failed to check the schema"),
    }
    // The load writes faster than a server's maintenance keeps partitions ahead (and
    // may run with no server at all): room for all of it first.
    let count = i64::try_from(options.count).unwrap_or(i64::MAX);
    partitions::make_room(&client, &PartitionSettings::default(), count)
        .await
        .context("failed to create partitions for the load")?;

    let started = Instant::now();
    let total = options.count;
    let encoded = Arc::new(AtomicU64::new(0));
    let (sender, mut receiver) = mpsc::channel(CHANNEL_DEPTH);
    let producer = {
        let encoded = Arc::clone(&encoded);
        std::thread::spawn(move || produce(options, &sender, &encoded))
    };

    let reporter = tokio::spawn(report_progress(Arc::clone(&encoded), total));
    let statement = client
        .prepare(COPY_EVENTS)
        .await
        .context("failed to prepare the COPY")?;
    let mut rows = 0;
    loop {
        let Some(first) = receiver.recv().await else {
            break;
        };
        let chunks = futures_util::stream::unfold(
            (Some(first), &mut receiver),
            |(pending, receiver)| async move {
                let message = match pending {
                    Some(message) => Some(message),
                    None => receiver.recv().await,
                };
                match message {
                    Some(Message::Chunk(bytes)) => Some((bytes, (None, receiver))),
                    Some(Message::EndOfCopy) | None => None,
                }
            },
        );
        let target = CopyTarget::Alone {
            client: &client,
            statement: &statement,
        };
        rows += copy_in(target, chunks).await.context("COPY failed")?;
    }
    reporter.abort();
    producer
        .join()
        .map_err(|_| anyhow::anyhow!("the event generator panicked"))?;
    Ok(BulkSummary {
        rows,
        elapsed: started.elapsed(),
    })
}

/// Shows rows encoded so far; the channel keeps that within a few MiB of rows sent.
async fn report_progress(encoded: Arc<AtomicU64>, total: u64) {
    let mut progress = Progress::new("rows", Some(total));
    loop {
        let position = encoded.load(Ordering::Relaxed);
        progress.set_position(position);
        if position >= total {
            progress.finish();
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes the same rows as `load` would send, as one COPY stream, to a file; a raw
/// `COPY ... FROM` of that file is the ceiling `load` is measured against.
pub fn write_copy_file(mut options: BulkOptions, path: &PathBuf) -> anyhow::Result<u64> {
    let file = std::fs::File::create(path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    let mut writer = std::io::BufWriter::with_capacity(CHUNK_BYTES, file);
    let mut encoder = StreamEncoder::new();
    for _ in 0..options.count {
        encoder.push(options.factory.next_event().as_event_ref());
        if encoder.pending_bytes() >= CHUNK_BYTES {
            writer.write_all(&encoder.take_chunk())?;
        }
    }
    writer.write_all(&encoder.finish())?;
    writer.flush()?;
    Ok(options.count)
}

fn produce(mut options: BulkOptions, sender: &mpsc::Sender<Message>, encoded: &AtomicU64) {
    let mut remaining = options.count;
    while remaining > 0 {
        let rows = remaining.min(options.rows_per_copy.max(1));
        let mut encoder = StreamEncoder::new();
        for _ in 0..rows {
            encoder.push(options.factory.next_event().as_event_ref());
            // A closed channel means the loader failed; it reports why.
            if encoder.pending_bytes() >= CHUNK_BYTES
                && sender
                    .blocking_send(Message::Chunk(encoder.take_chunk()))
                    .is_err()
            {
                return;
            }
            encoded.fetch_add(1, Ordering::Relaxed);
        }
        if sender
            .blocking_send(Message::Chunk(encoder.finish()))
            .is_err()
            || sender.blocking_send(Message::EndOfCopy).is_err()
        {
            return;
        }
        remaining -= rows;
    }
}
