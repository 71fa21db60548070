//! A sealed group's rows given the ids drawn for them: the COPY that stores them with
//! those ids (and without their seals), and the group's seal batch (`tree::batches`),
//! which holds the seals instead.
//!
//! The rows arrive as [`RowEncoder`](crate::copy::RowEncoder) wrote them (six fields,
//! the seal last), so this walks each row's fields once and copies its bytes; no
//! event is decoded again.

use bytes::{BufMut, Bytes, BytesMut};

use crate::copy::encode::{HEADER, POSTGRES_EPOCH_UNIX_MICROS, TRAILER};
use crate::merkle::SEAL_BYTES;
use crate::tree::batches::{BATCH_LEAF_BYTES, push_batch_leaf};

/// The COPY of [`number_rows`]' output: the id first, and no seal (the batch has it).
pub const COPY_NUMBERED_EVENTS: &str = "COPY events (id, event_ts, application_name, \
     event_kind, payload, token_name) FROM STDIN (FORMAT binary)";

/// Fields of a row as [`RowEncoder`](crate::copy::RowEncoder) writes it, and as
/// [`COPY_NUMBERED_EVENTS`] reads it (the id in, the seal out).
const FIELDS: i16 = 6;

/// A group's rows with their ids, as one whole COPY stream, and its seal batch.
#[derive(Debug)]
pub struct NumberedRows {
    pub stream: Bytes,
    pub batch: Vec<u8>,
}

/// Rows that are not what the encoder writes, or more rows than ids: a bug here, not
/// bad input (requests' rows are encoded by this crate from validated events).
#[derive(Debug, thiserror::Error)]
#[error("rows to number are malformed: {0}")]
pub struct MalformedRows(&'static str);

/// Gives the rows of `batches`, in order, the ids of `ids`, one each.
pub fn number_rows<'a>(
    batches: impl IntoIterator<Item = &'a Bytes>,
    ids: &[i64],
) -> Result<NumberedRows, MalformedRows> {
    let batches: Vec<&Bytes> = batches.into_iter().collect();
    let bytes: usize = batches.iter().map(|rows| rows.len()).sum();
    // Each row gains an id field (12 bytes) and loses its seal (52).
    let mut stream = BytesMut::with_capacity(HEADER.len() + bytes + 12 * ids.len() + 2);
    let mut batch = Vec::with_capacity(BATCH_LEAF_BYTES * ids.len());
    stream.put_slice(HEADER);
    let mut ids = ids.iter();
    for rows in batches {
        let mut rest: &[u8] = rows;
        while !rest.is_empty() {
            let id = *ids.next().ok_or(MalformedRows("more rows than ids"))?;
            rest = number_row(rest, id, &mut stream, &mut batch)?;
        }
    }
    if ids.next().is_some() {
        return Err(MalformedRows("more ids than rows"));
    }
    stream.put_slice(TRAILER);
    Ok(NumberedRows {
        stream: stream.freeze(),
        batch,
    })
}

/// Copies the row at the start of `row` with `id` into `stream` and its leaf into
/// `batch`; returns what follows the row.
fn number_row<'r>(
    row: &'r [u8],
    id: i64,
    stream: &mut BytesMut,
    batch: &mut Vec<u8>,
) -> Result<&'r [u8], MalformedRows> {
    let (count, rest) = take(row, 2)?;
    if i16::from_be_bytes([count[0], count[1]]) != FIELDS {
        return Err(MalformedRows("a row without six fields"));
    }
    // event_ts, the three texts and the token: copied as they are.
    let fields_start = rest;
    let (event_ts, mut rest) = field_value(rest)?;
    let event_ts: [u8; 8] = event_ts
        .and_then(|value| value.try_into().ok())
        .ok_or(MalformedRows("a row without an 8-byte event_ts"))?;
    for _ in 1..FIELDS - 1 {
        rest = field_value(rest)?.1;
    }
    let copied = &fields_start[..fields_start.len() - rest.len()];
    let (seal, after) = field_value(rest)?;
    let seal: &[u8; SEAL_BYTES] = seal
        .and_then(|seal| seal.try_into().ok())
        .ok_or(MalformedRows("a row without its seal"))?;
    stream.put_i16(FIELDS);
    stream.put_i32(8);
    stream.put_i64(id);
    stream.put_slice(copied);
    let event_ts = i64::from_be_bytes(event_ts).saturating_add(POSTGRES_EPOCH_UNIX_MICROS);
    push_batch_leaf(batch, id, event_ts, seal);
    Ok(after)
}

/// A field's value (none when NULL) and what follows it.
fn field_value(bytes: &[u8]) -> Result<(Option<&[u8]>, &[u8]), MalformedRows> {
    let (length, rest) = take(bytes, 4)?;
    let length = i32::from_be_bytes([length[0], length[1], length[2], length[3]]);
    if length < 0 {
        return Ok((None, rest));
    }
    let length = usize::try_from(length).map_err(|_| MalformedRows("a field length"))?;
    let (value, rest) = take(rest, length)?;
    Ok((Some(value), rest))
}

fn take(bytes: &[u8], length: usize) -> Result<(&[u8], &[u8]), MalformedRows> {
    if bytes.len() < length {
        return Err(MalformedRows("a row cut short"));
    }
    Ok(bytes.split_at(length))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::RowEncoder;
    use crate::event::{ApplicationName, EventKind, NewEvent, Payload, StoredEvent};
    use crate::merkle::LeafEvent;
    use crate::timestamp::EventTimestamp;
    use crate::tree::batches::parse_batch;
    use crate::tree::records::LeafRecord;

    fn event(payload: &str) -> NewEvent {
        NewEvent {
            event_ts: EventTimestamp::parse("2024-02-29T12:00:00.000001Z").unwrap(),
            application_name: ApplicationName::parse("billing".to_owned()).unwrap(),
            event_kind: EventKind::parse("Refund".to_owned()).unwrap(),
            payload: Payload::parse(payload).unwrap(),
        }
    }

    #[test]
    fn numbered_rows_start_with_their_id_and_leave_the_seal_to_the_batch() {
        let events = [event(r#"{"a":1}"#), event(r#"{"b":[2]}"#)];
        let mut first = RowEncoder::default().written_by(Some("ci"));
        first.push(events[0].as_event_ref());
        let mut second = RowEncoder::default();
        second.push(events[1].as_event_ref());
        let (first, second) = (first.into_rows().bytes, second.into_rows().bytes);

        let numbered = number_rows([&first, &second], &[7, 9]).unwrap();

        // The first row: header, field count, the id field, then the original row's
        // fields but its seal (a 4-byte length and 48 bytes).
        let mut expected = HEADER.to_vec();
        expected.extend_from_slice(&6i16.to_be_bytes());
        expected.extend_from_slice(&8i32.to_be_bytes());
        expected.extend_from_slice(&7i64.to_be_bytes());
        expected.extend_from_slice(&first[2..first.len() - 52]);
        expected.extend_from_slice(&6i16.to_be_bytes());
        expected.extend_from_slice(&8i32.to_be_bytes());
        expected.extend_from_slice(&9i64.to_be_bytes());
        expected.extend_from_slice(&second[2..second.len() - 52]);
        expected.extend_from_slice(TRAILER);
        assert_eq!(numbered.stream.as_ref(), expected.as_slice());
        let leaves = parse_batch(&numbered.batch).unwrap();
        for ((hash, record), (event, id, token)) in leaves
            .into_iter()
            .zip([(&events[0], 7, Some("ci")), (&events[1], 9, None)])
        {
            let leaf = LeafEvent {
                event: StoredEvent {
                    id,
                    event_ts: event.event_ts,
                    application_name: event.application_name.as_str(),
                    event_kind: event.event_kind.as_str(),
                    payload: event.payload.as_json_text(),
                },
                token_name: token,
            };
            assert_eq!((hash, record), (leaf.hash(), LeafRecord::of(&leaf)));
        }
    }

    #[test]
    fn ids_and_rows_must_match_one_for_one() {
        let mut encoder = RowEncoder::default();
        encoder.push(event("1").as_event_ref());
        let rows = encoder.into_rows().bytes;

        assert!(number_rows([&rows], &[]).is_err());
        assert!(number_rows([&rows], &[1, 2]).is_err());
        assert!(number_rows([&rows.slice(..rows.len() - 1)], &[1]).is_err());
    }
}
