//! The binary COPY format of the events table, in two encoders for its two uses:
//! [`RowEncoder`] writes rows only (a batch, framed later with others into one COPY),
//! [`StreamEncoder`] writes a whole stream (header, rows in chunks, trailer). Two
//! types, so that a batch can never carry a header and a stream never lacks one.

use bytes::{BufMut, Bytes, BytesMut};
use time::OffsetDateTime;
use time::macros::datetime;

use crate::event::{EventRef, NewEvent};
use crate::merkle::{LeafContent, SEAL_BYTES};

/// The whole stream header: signature, flags 0, header extension length 0.
pub(crate) const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The end-of-data marker: a field count of -1.
pub(crate) const TRAILER: &[u8] = &[0xff, 0xff];
const FIELD_COUNT: i16 = 6;
/// A field's length when it is NULL.
const NULL_LENGTH: i32 = -1;
/// The seal's length, as its field's length prefix.
const SEAL_LENGTH: i32 = 48;
/// PostgreSQL counts timestamps in microseconds from 2000-01-01 00:00 UTC.
const POSTGRES_EPOCH: OffsetDateTime = datetime!(2000-01-01 0:00 UTC);
/// The same epoch in microseconds since 1970-01-01 00:00 UTC.
pub(crate) const POSTGRES_EPOCH_UNIX_MICROS: i64 = POSTGRES_EPOCH.unix_timestamp() * 1_000_000;
/// The first buffer of a stream encoder.
const STREAM_BUFFER_BYTES: usize = 64 * 1024;

/// One batch's rows in binary COPY format, without header or trailer: what the
/// writer queues and one COPY reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodedRows {
    pub bytes: Bytes,
    pub count: u64,
    /// Whether every row carries its seal, which lets the writer store the rows'
    /// leaves as a seal batch (`copy::numbered`).
    pub seal: SealColumn,
}

/// Whether rows carry their seal (`events.seal`), the content digest the sealer
/// hashes instead of reading the texts back. Computing it costs the writer a hash of
/// each payload and the table 48 bytes a row, so a server that does not seal leaves
/// it NULL; a sealer elsewhere then reads such rows' texts instead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SealColumn {
    #[default]
    Filled,
    Null,
}

/// Encodes a batch's rows, without header or trailer.
#[derive(Debug, Default)]
pub struct RowEncoder {
    buffer: BytesMut,
    rows: u64,
    /// The token every row is written by (`token_name`); none when access control is
    /// off.
    token_name: Option<String>,
    seal: SealColumn,
}

/// Encodes a whole COPY stream: the header first, then rows, taken in chunks as they
/// grow, and the trailer when it is finished.
#[derive(Debug)]
pub struct StreamEncoder {
    buffer: BytesMut,
}

impl RowEncoder {
    /// Rows in a buffer of the given initial capacity (it grows as needed).
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            buffer: BytesMut::with_capacity(bytes),
            rows: 0,
            token_name: None,
            seal: SealColumn::Filled,
        }
    }

    /// Records `token_name` as the writer of every row pushed from now on.
    pub fn written_by(mut self, token_name: Option<&str>) -> Self {
        self.token_name = token_name.map(str::to_owned);
        self
    }

    /// Whether the rows pushed from now on carry their seal.
    pub fn sealed(mut self, seal: SealColumn) -> Self {
        self.seal = seal;
        self
    }

    /// These events' rows, in a buffer sized for exactly them: a request's rows wait
    /// in the write queue until their commit, so a 1-event request should hold ~100
    /// bytes, not a 64 KiB buffer.
    pub fn for_events(events: &[NewEvent]) -> Self {
        let bytes = events
            .iter()
            .map(|event| encoded_length(event.as_event_ref()))
            .sum();
        let mut encoder = Self::with_capacity(bytes);
        for event in events {
            encoder.push(event.as_event_ref());
        }
        encoder
    }

    pub fn push(&mut self, event: EventRef<'_>) {
        put_row(
            &mut self.buffer,
            event,
            self.token_name.as_deref(),
            self.seal,
        );
        self.rows += 1;
    }

    /// The rows pushed, as one batch.
    pub fn into_rows(self) -> EncodedRows {
        EncodedRows {
            bytes: self.buffer.freeze(),
            count: self.rows,
            seal: self.seal,
        }
    }
}

impl StreamEncoder {
    /// A stream that starts with the COPY header.
    pub fn new() -> Self {
        let mut buffer = BytesMut::with_capacity(STREAM_BUFFER_BYTES);
        buffer.put_slice(HEADER);
        Self { buffer }
    }

    pub fn push(&mut self, event: EventRef<'_>) {
        put_row(&mut self.buffer, event, None, SealColumn::Filled);
    }

    /// Bytes encoded and not yet taken.
    pub fn pending_bytes(&self) -> usize {
        self.buffer.len()
    }

    /// Takes what is encoded so far, as the next chunk of the stream.
    pub fn take_chunk(&mut self) -> Bytes {
        self.buffer.split().freeze()
    }

    /// The last chunk: what is left, and the end-of-data marker.
    pub fn finish(mut self) -> Bytes {
        self.buffer.put_slice(TRAILER);
        self.buffer.freeze()
    }
}

impl Default for StreamEncoder {
    fn default() -> Self {
        Self::new()
    }
}

/// A whole COPY stream made of batches' rows: the header, the rows, the trailer.
pub fn framed_rows(rows: impl IntoIterator<Item = Bytes>) -> impl Iterator<Item = Bytes> {
    std::iter::once(Bytes::from_static(HEADER))
        .chain(rows)
        .chain(std::iter::once(Bytes::from_static(TRAILER)))
}

fn put_row(buffer: &mut BytesMut, event: EventRef<'_>, token_name: Option<&str>, seal: SealColumn) {
    let micros = (event.event_ts.as_offset_date_time() - POSTGRES_EPOCH).whole_microseconds();
    buffer.put_i16(FIELD_COUNT);
    buffer.put_i32(8);
    // Years 0000-9999 are about ±2^48 microseconds from the epoch: always fits.
    buffer.put_i64(i64::try_from(micros).unwrap_or(i64::MAX));
    put_text(buffer, event.application_name.as_str());
    put_text(buffer, event.event_kind.as_str());
    put_text(buffer, event.payload.as_json_text());
    match token_name {
        Some(name) => put_text(buffer, name),
        None => buffer.put_i32(NULL_LENGTH),
    }
    if seal == SealColumn::Null {
        buffer.put_i32(NULL_LENGTH);
        return;
    }
    // What the sealer hashes instead of reading the texts back (`merkle::leaf`).
    let content = LeafContent {
        event_ts: event.event_ts,
        application_name: event.application_name.as_str(),
        event_kind: event.event_kind.as_str(),
        payload: event.payload.as_json_text(),
        token_name,
    };
    buffer.put_i32(SEAL_LENGTH);
    buffer.put_slice(&content.seal());
}

fn put_text(buffer: &mut BytesMut, text: &str) {
    // Names are under 126 bytes and a payload under `MAX_PAYLOAD_BYTES` (1 GiB), both
    // enforced by the validated types this is fed from, so the length fits.
    buffer.put_i32(i32::try_from(text.len()).unwrap_or(i32::MAX));
    buffer.put_slice(text.as_bytes());
}

/// The exact size of one encoded row without a token: field count, six length
/// prefixes, the timestamp, the three texts and the seal.
fn encoded_length(event: EventRef<'_>) -> usize {
    2 + 6 * 4
        + 8
        + SEAL_BYTES
        + event.application_name.as_str().len()
        + event.event_kind.as_str().len()
        + event.payload.as_json_text().len()
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

    /// The sixth field's bytes for `event` written by `token_name`.
    fn seal_of(event: &NewEvent, token_name: Option<&str>) -> [u8; SEAL_BYTES] {
        LeafContent {
            event_ts: event.event_ts,
            application_name: event.application_name.as_str(),
            event_kind: event.event_kind.as_str(),
            payload: event.payload.as_json_text(),
            token_name,
        }
        .seal()
    }

    #[test]
    fn rows_for_events_fill_their_buffer_exactly() {
        let event = sample_event("app", "kind", r#"{"a":1}"#);
        let events = vec![event.clone(), event];

        let rows = RowEncoder::for_events(&events).into_rows();

        assert_eq!(rows.count, 2);
        assert_eq!(
            rows.bytes.len(),
            2 * encoded_length(events[0].as_event_ref())
        );
        let one = RowEncoder::for_events(&events[..1]).into_rows();
        assert_eq!(&rows.bytes[..rows.bytes.len() / 2], one.bytes.as_ref());
    }

    #[test]
    fn a_stream_has_the_binary_copy_header_and_trailer_around_its_rows() {
        // Signature, then 32-bit flags and 32-bit extension length, both zero.
        let mut expected_header = b"PGCOPY\n\xff\r\n\0".to_vec();
        expected_header.extend_from_slice(&0i32.to_be_bytes());
        expected_header.extend_from_slice(&0i32.to_be_bytes());
        let event = sample_event("a", "k", "1");
        let row = RowEncoder::for_events(std::slice::from_ref(&event)).into_rows();
        let mut stream = StreamEncoder::new();

        assert_eq!(stream.take_chunk().as_ref(), expected_header.as_slice());
        stream.push(event.as_event_ref());
        let last = stream.finish();

        let mut expected_last = row.bytes.to_vec();
        expected_last.extend_from_slice(&(-1i16).to_be_bytes());
        assert_eq!(last.as_ref(), expected_last.as_slice());
        let framed: Vec<u8> = framed_rows([row.bytes])
            .flat_map(|chunk| chunk.to_vec())
            .collect();
        let mut whole = expected_header;
        whole.extend_from_slice(&expected_last);
        assert_eq!(framed, whole);
    }

    #[test]
    fn a_row_is_encoded_as_six_length_prefixed_fields_with_a_null_token() {
        let event = sample_event("a", "k", "1");

        let rows = RowEncoder::for_events(std::slice::from_ref(&event)).into_rows();

        let mut expected = vec![0, 6, 0, 0, 0, 8];
        expected.extend_from_slice(&1_000_000i64.to_be_bytes());
        for text in ["a", "k", "1"] {
            expected.extend_from_slice(&1i32.to_be_bytes());
            expected.extend_from_slice(text.as_bytes());
        }
        expected.extend_from_slice(&(-1i32).to_be_bytes());
        expected.extend_from_slice(&48i32.to_be_bytes());
        expected.extend_from_slice(&seal_of(&event, None));
        assert_eq!(rows.bytes.as_ref(), expected.as_slice());
    }

    #[test]
    fn a_row_without_its_seal_ends_with_a_null_sixth_field() {
        let event = sample_event("a", "k", "1");
        let mut sealed = RowEncoder::default().written_by(Some("ci"));
        let mut unsealed = RowEncoder::default()
            .written_by(Some("ci"))
            .sealed(SealColumn::Null);
        sealed.push(event.as_event_ref());
        unsealed.push(event.as_event_ref());

        let (sealed, unsealed) = (sealed.into_rows().bytes, unsealed.into_rows().bytes);

        let without_seal = sealed.len() - 4 - SEAL_BYTES;
        assert_eq!(&unsealed[..without_seal], &sealed[..without_seal]);
        assert_eq!(&unsealed[without_seal..], &(-1i32).to_be_bytes());
    }

    #[test]
    fn rows_written_by_a_token_carry_its_name_as_the_fifth_field_and_in_the_seal() {
        let event = sample_event("a", "k", "1");
        let mut encoder = RowEncoder::default().written_by(Some("ci"));

        encoder.push(event.as_event_ref());

        let untokened = RowEncoder::for_events(std::slice::from_ref(&event)).into_rows();
        let mut expected = untokened.bytes[..untokened.bytes.len() - 4 - 4 - 48].to_vec();
        expected.extend_from_slice(&2i32.to_be_bytes());
        expected.extend_from_slice(b"ci");
        expected.extend_from_slice(&48i32.to_be_bytes());
        expected.extend_from_slice(&seal_of(&event, Some("ci")));
        assert_eq!(encoder.into_rows().bytes.as_ref(), expected.as_slice());
    }
}
