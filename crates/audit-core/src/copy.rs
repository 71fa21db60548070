//! PostgreSQL's binary COPY format for the events table, and streaming it in.
//!
//! Encoding rows ourselves (rather than through a generic row writer) lets the bulk
//! loader write exactly the bytes a raw `COPY ... FROM file` would read, so the two can
//! be compared on the same rows.

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, Stream, StreamExt};
use time::OffsetDateTime;
use time::macros::datetime;
use tokio_postgres::{Client, CopyInSink, Statement, Transaction};

use crate::event::{EventRef, NewEvent};
use crate::storage_error::{StorageError, classify, classify_at_commit};

/// The COPY statement that reads what [`CopyEncoder`] writes.
pub const COPY_EVENTS: &str = "COPY events (event_ts, application_name, event_kind, payload) \
     FROM STDIN (FORMAT binary)";

/// The whole stream header: signature, flags 0, header extension length 0.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The end-of-data marker: a field count of -1.
const TRAILER: &[u8] = &[0xff, 0xff];
const FIELD_COUNT: i16 = 4;
/// PostgreSQL counts timestamps in microseconds from 2000-01-01 00:00 UTC.
const POSTGRES_EPOCH: OffsetDateTime = datetime!(2000-01-01 0:00 UTC);

/// Appends events to a buffer in binary COPY format.
#[derive(Debug, Default)]
pub struct CopyEncoder {
    buffer: BytesMut,
    /// Rows pushed since the encoder was made.
    rows: u64,
}

/// One batch's rows in binary COPY format, without header or trailer: what the
/// writer queues and one COPY reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodedRows {
    pub bytes: Bytes,
    pub count: u64,
}

impl CopyEncoder {
    /// Starts a stream with the COPY header.
    pub fn with_header() -> Self {
        let mut buffer = BytesMut::with_capacity(64 * 1024);
        buffer.put_slice(HEADER);
        Self { buffer, rows: 0 }
    }

    /// Rows only, in a buffer sized for exactly these events: a request's rows wait in
    /// the write queue until their commit, so a 1-event request should hold ~100 bytes,
    /// not a 64 KiB buffer.
    pub fn for_events(events: &[NewEvent]) -> Self {
        let bytes: usize = events
            .iter()
            .map(|event| encoded_length(event.as_event_ref()))
            .sum();
        let mut encoder = Self::with_capacity(bytes);
        for event in events {
            encoder.push(event.as_event_ref());
        }
        encoder
    }

    /// Rows only, in a buffer of the given initial capacity (it grows as needed).
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            buffer: BytesMut::with_capacity(bytes),
            rows: 0,
        }
    }

    pub fn push(&mut self, event: EventRef<'_>) {
        let micros = (event.event_ts.as_offset_date_time() - POSTGRES_EPOCH).whole_microseconds();
        self.buffer.put_i16(FIELD_COUNT);
        self.buffer.put_i32(8);
        // Years 0000-9999 are about ±2^48 microseconds from the epoch: always fits.
        self.buffer
            .put_i64(i64::try_from(micros).unwrap_or(i64::MAX));
        self.put_text(event.application_name.as_str());
        self.put_text(event.event_kind.as_str());
        self.put_text(event.payload.as_json_text());
        self.rows += 1;
    }

    fn put_text(&mut self, text: &str) {
        // Names are under 126 bytes and a payload under `MAX_PAYLOAD_BYTES` (1 GiB),
        // both enforced by the validated types this is fed from, so the length fits.
        self.buffer
            .put_i32(i32::try_from(text.len()).unwrap_or(i32::MAX));
        self.buffer.put_slice(text.as_bytes());
    }

    /// The stream header on its own, for streams assembled from row chunks.
    pub fn header() -> Bytes {
        Bytes::from_static(HEADER)
    }

    /// The end-of-data marker on its own.
    pub fn trailer() -> Bytes {
        Bytes::from_static(TRAILER)
    }

    /// Appends the end-of-data marker.
    pub fn finish(&mut self) {
        self.buffer.put_i16(-1);
    }

    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    /// The rows pushed, as one batch; for an encoder made without a header.
    pub fn into_rows(mut self) -> EncodedRows {
        EncodedRows {
            bytes: self.take(),
            count: self.rows,
        }
    }

    /// Takes the bytes written so far, leaving the encoder empty.
    pub fn take(&mut self) -> Bytes {
        self.buffer.split().freeze()
    }
}

/// A whole COPY stream made of row chunks: the header, the chunks, the trailer.
pub fn framed_rows(rows: impl IntoIterator<Item = Bytes>) -> impl Iterator<Item = Bytes> {
    std::iter::once(CopyEncoder::header())
        .chain(rows)
        .chain(std::iter::once(CopyEncoder::trailer()))
}

/// The exact size of one encoded row: field count, four length prefixes, the
/// timestamp and the three texts.
fn encoded_length(event: EventRef<'_>) -> usize {
    2 + 4 * 4
        + 8
        + event.application_name.as_str().len()
        + event.event_kind.as_str().len()
        + event.payload.as_json_text().len()
}

/// Whether the end of a COPY is also its commit, which decides what a connection lost
/// at the end means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// The COPY runs on its own: finishing it commits it.
    Commits,
    /// The COPY runs inside a transaction the caller commits later.
    InTransaction,
}

/// Runs one COPY that reads the given chunks of an encoded stream (header first,
/// trailer last) and returns the number of rows PostgreSQL wrote. The COPY is one
/// statement and its own transaction: if it fails before its end was sent, or is
/// dropped before then, nothing is stored.
pub async fn copy_in(
    client: &Client,
    chunks: impl Stream<Item = Bytes>,
) -> Result<u64, StorageError> {
    send(client.copy_in(COPY_EVENTS).await, chunks, Ending::Commits).await
}

/// [`copy_in`] with a statement the caller prepared once (see [`COPY_EVENTS`]): saves
/// the parse round trip, which matters when many small COPYs run back to back.
pub async fn copy_in_prepared(
    client: &Client,
    statement: &Statement,
    chunks: impl Stream<Item = Bytes>,
) -> Result<u64, StorageError> {
    send(client.copy_in(statement).await, chunks, Ending::Commits).await
}

/// [`copy_in`] inside a transaction the caller commits.
pub async fn copy_in_transaction(
    transaction: &Transaction<'_>,
    chunks: impl Stream<Item = Bytes>,
) -> Result<u64, StorageError> {
    send(
        transaction.copy_in(COPY_EVENTS).await,
        chunks,
        Ending::InTransaction,
    )
    .await
}

/// Streams the chunks into a COPY that was just started (`started`: the driver's
/// answer to the COPY statement).
async fn send(
    started: Result<CopyInSink<Bytes>, tokio_postgres::Error>,
    chunks: impl Stream<Item = Bytes>,
    ending: Ending,
) -> Result<u64, StorageError> {
    let sink = started.map_err(classify)?;
    futures_util::pin_mut!(sink);
    futures_util::pin_mut!(chunks);
    // `feed`, not `send`: the sink gathers small chunks (a 1-event request's rows are
    // ~100 bytes) into CopyData messages of 4 KiB, where `send` would flush each chunk
    // as a message and a socket write of its own. Until `finish` sends the end of the
    // data, a lost connection aborts the COPY: nothing is stored.
    while let Some(chunk) = chunks.next().await {
        sink.feed(chunk).await.map_err(classify)?;
    }
    sink.finish().await.map_err(|error| match ending {
        Ending::Commits => classify_at_commit(error),
        Ending::InTransaction => classify(error),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ApplicationName, EventKind, Payload};
    use crate::timestamp::EventTimestamp;

    /// An event one second after PostgreSQL's epoch.
    fn sample_event(application: &str, kind: &str, payload: &str) -> NewEvent {
        NewEvent {
            event_ts: EventTimestamp::parse("2000-01-01T00:00:01Z").unwrap(),
            application_name: ApplicationName::parse(application.to_owned()).unwrap(),
            event_kind: EventKind::parse(kind.to_owned()).unwrap(),
            payload: Payload::parse(payload).unwrap(),
        }
    }

    #[test]
    fn rows_for_events_fill_their_buffer_exactly() {
        let event = sample_event("app", "kind", r#"{"a":1}"#);
        let events = vec![event.clone(), event];

        let mut encoder = CopyEncoder::for_events(&events);

        let rows = encoder.take();
        assert_eq!(rows.len(), 2 * encoded_length(events[0].as_event_ref()));
        let one = CopyEncoder::for_events(&events[..1]).take();
        assert_eq!(&rows[..rows.len() / 2], one.as_ref());
    }

    #[test]
    fn header_and_trailer_follow_the_binary_copy_format() {
        // Signature, then 32-bit flags and 32-bit extension length, both zero.
        let mut expected_header = b"PGCOPY\n\xff\r\n\0".to_vec();
        expected_header.extend_from_slice(&0i32.to_be_bytes());
        expected_header.extend_from_slice(&0i32.to_be_bytes());
        let mut encoder = CopyEncoder::with_header();

        assert_eq!(CopyEncoder::header().as_ref(), expected_header.as_slice());
        assert_eq!(encoder.take(), CopyEncoder::header());
        encoder.finish();
        assert_eq!(encoder.take(), CopyEncoder::trailer());
        assert_eq!(CopyEncoder::trailer().as_ref(), (-1i16).to_be_bytes());
    }

    #[test]
    fn a_row_is_encoded_as_four_length_prefixed_fields() {
        let event = sample_event("a", "k", "1");

        let mut encoder = CopyEncoder::for_events(&[event]);
        encoder.finish();

        let mut expected = vec![0, 4, 0, 0, 0, 8];
        expected.extend_from_slice(&1_000_000i64.to_be_bytes());
        for text in ["a", "k", "1"] {
            expected.extend_from_slice(&1i32.to_be_bytes());
            expected.extend_from_slice(text.as_bytes());
        }
        expected.extend_from_slice(&(-1i16).to_be_bytes());
        assert_eq!(encoder.take().as_ref(), expected.as_slice());
    }
}
