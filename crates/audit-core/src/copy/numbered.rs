//! A group's rows given the ids drawn for them: the COPY that stores them with those
//! ids, the group's search postings (`postings`) and, when its rows are sealed, its
//! seal batch (`tree::batches`), which then holds the seals instead of the rows.
//!
//! The rows arrive as [`RowEncoder`](crate::copy::RowEncoder) wrote them (six fields,
//! the seal last), so this walks each row's fields once and copies its bytes; no
//! event is decoded again.

use bytes::{BufMut, Bytes, BytesMut};
use tokio_postgres::Transaction;

use crate::copy::encode::{HEADER, POSTGRES_EPOCH_UNIX_MICROS, TRAILER};
use crate::copy::{CopyTarget, copy_in};
use crate::merkle::SEAL_BYTES;
use crate::postings::{INSERT_POSTINGS, PostingCollector, PostingRows};
use crate::storage_error::{StorageError, classify};
use crate::tree::batches::{BATCH_LEAF_BYTES, push_batch_leaf};

/// The COPY of [`number_rows`]' output with [`Seals::Batched`]: the id first, and no
/// seal (the batch has it).
pub const COPY_NUMBERED_EVENTS: &str = "COPY events (id, event_ts, application_name, \
     event_kind, payload, token_name) FROM STDIN (FORMAT binary)";

/// The COPY of [`number_rows`]' output with [`Seals::InRows`]: the id first, the seal
/// (filled or NULL) last.
pub const COPY_NUMBERED_ROWS: &str = "COPY events (id, event_ts, application_name, \
     event_kind, payload, token_name, seal) FROM STDIN (FORMAT binary)";

/// Draws a group's ids, after its transaction has its txid (the CASE asks for the
/// txid first), as the column default of migration V4 would: the sealer's order
/// relies on it (`tree::order`). One array, not a row per id: decoding a row per id
/// was the writer thread's largest cost of sealing (measured with perf).
pub const DRAW_IDS: &str = "SELECT array_agg(CASE WHEN pg_current_xact_id() IS NOT NULL \
     THEN nextval('events_id_seq') END) FROM generate_series(1, $1::int4)";

/// Tells the trigger of migration V8 that this transaction posts its events itself
/// (without it, they are noted as a gap for the backfill).
pub const POSTED: &str = "SET LOCAL audit.posted = on";

/// A transaction begun with [`POSTED`] in one message.
pub const BEGIN_POSTED: &str = "BEGIN; SET LOCAL audit.posted = on";

/// Fields of a row as [`RowEncoder`](crate::copy::RowEncoder) writes it.
const FIELDS: i16 = 6;

/// Where the rows' seals go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seals {
    /// Into the seal batch (every row must have its seal).
    Batched,
    /// Into the rows, as they are (NULL when the rows are not sealed).
    InRows,
}

/// A group's rows with their ids, as one whole COPY stream, its postings, and its seal
/// batch (empty unless [`Seals::Batched`]).
#[derive(Debug)]
pub struct NumberedRows {
    pub stream: Bytes,
    pub postings: PostingRows,
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
    seals: Seals,
) -> Result<NumberedRows, MalformedRows> {
    let batches: Vec<&Bytes> = batches.into_iter().collect();
    let bytes: usize = batches.iter().map(|rows| rows.len()).sum();
    // Each row gains an id field (12 bytes).
    let mut numbered = Numbered {
        stream: BytesMut::with_capacity(HEADER.len() + bytes + 12 * ids.len() + 2),
        batch: match seals {
            Seals::Batched => Vec::with_capacity(BATCH_LEAF_BYTES * ids.len()),
            Seals::InRows => Vec::new(),
        },
        postings: PostingCollector::default(),
        seals,
    };
    numbered.stream.put_slice(HEADER);
    let mut ids = ids.iter();
    for rows in batches {
        let mut rest: &[u8] = rows;
        while !rest.is_empty() {
            let id = *ids.next().ok_or(MalformedRows("more rows than ids"))?;
            rest = numbered.row(rest, id)?;
        }
    }
    if ids.next().is_some() {
        return Err(MalformedRows("more ids than rows"));
    }
    numbered.stream.put_slice(TRAILER);
    Ok(NumberedRows {
        stream: numbered.stream.freeze(),
        postings: numbered.postings.into_rows(),
        batch: numbered.batch,
    })
}

/// Writes `count` rows, as [`RowEncoder`](crate::copy::RowEncoder) wrote them, inside
/// `transaction` as a writer's group is written: ids drawn first, the seals (filled or
/// NULL) in the rows, the postings beside them. Returns the rows stored.
pub async fn copy_posted_in(
    transaction: &Transaction<'_>,
    rows: &Bytes,
    count: u64,
) -> Result<u64, StorageError> {
    if count == 0 {
        return Ok(0);
    }
    let count =
        i32::try_from(count).map_err(|_| StorageError::unavailable("too many rows to number"))?;
    let (posted, drawn) = futures_util::future::join(
        transaction.batch_execute(POSTED),
        transaction.query_one(DRAW_IDS, &[&count]),
    )
    .await;
    posted.map_err(classify)?;
    let ids: Vec<i64> = drawn.map_err(classify)?.try_get(0).map_err(classify)?;
    let numbered = number_rows([rows], &ids, Seals::InRows)
        .map_err(|_| StorageError::unavailable("rows could not be numbered"))?;
    let target = CopyTarget::InTransaction {
        transaction,
        statement: COPY_NUMBERED_ROWS,
    };
    let stored = copy_in(target, futures_util::stream::iter([numbered.stream])).await?;
    transaction
        .execute(INSERT_POSTINGS, &numbered.postings.parameters())
        .await
        .map_err(classify)?;
    Ok(stored)
}

/// What [`number_rows`] builds, row by row.
struct Numbered {
    stream: BytesMut,
    batch: Vec<u8>,
    postings: PostingCollector,
    seals: Seals,
}

impl Numbered {
    /// Copies the row at the start of `row` with `id` into the stream, and its leaf
    /// into the batch; returns what follows the row.
    fn row<'r>(&mut self, row: &'r [u8], id: i64) -> Result<&'r [u8], MalformedRows> {
        let (count, rest) = take(row, 2)?;
        if i16::from_be_bytes([count[0], count[1]]) != FIELDS {
            return Err(MalformedRows("a row without six fields"));
        }
        // event_ts, the three texts and the token: copied as they are.
        let fields_start = rest;
        let (event_ts, rest) = field_value(rest)?;
        let event_ts: [u8; 8] = event_ts
            .and_then(|value| value.try_into().ok())
            .ok_or(MalformedRows("a row without an 8-byte event_ts"))?;
        let event_ts = i64::from_be_bytes(event_ts).saturating_add(POSTGRES_EPOCH_UNIX_MICROS);
        let (application, rest) = field_value(rest)?;
        let (kind, mut rest) = field_value(rest)?;
        let texts = application.zip(kind);
        let (application, kind) = texts.ok_or(MalformedRows("a row without its names"))?;
        self.postings.push(id, application, kind, event_ts);
        for _ in 3..FIELDS - 1 {
            rest = field_value(rest)?.1;
        }
        let copied = &fields_start[..fields_start.len() - rest.len()];
        let (seal, after) = field_value(rest)?;
        let seal_field = &rest[..rest.len() - after.len()];
        match self.seals {
            Seals::Batched => {
                let seal: &[u8; SEAL_BYTES] = seal
                    .and_then(|seal| seal.try_into().ok())
                    .ok_or(MalformedRows("a row without its seal"))?;
                self.stream.put_i16(FIELDS);
                self.put_id_and(id, copied);
                push_batch_leaf(&mut self.batch, id, event_ts, seal);
            }
            Seals::InRows => {
                self.stream.put_i16(FIELDS + 1);
                self.put_id_and(id, copied);
                self.stream.put_slice(seal_field);
            }
        }
        Ok(after)
    }

    fn put_id_and(&mut self, id: i64, fields: &[u8]) {
        self.stream.put_i32(8);
        self.stream.put_i64(id);
        self.stream.put_slice(fields);
    }
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
    use crate::postings::text_key;
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

        let numbered = number_rows([&first, &second], &[7, 9], Seals::Batched).unwrap();

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
    fn rows_without_a_batch_keep_their_seal_and_give_their_postings() {
        let mut encoder = RowEncoder::default().sealed(crate::copy::SealColumn::Null);
        encoder.push(event(r#"{"a":1}"#).as_event_ref());
        let rows = encoder.into_rows().bytes;

        let numbered = number_rows([&rows], &[5], Seals::InRows).unwrap();

        let mut expected = HEADER.to_vec();
        expected.extend_from_slice(&7i16.to_be_bytes());
        expected.extend_from_slice(&8i32.to_be_bytes());
        expected.extend_from_slice(&5i64.to_be_bytes());
        expected.extend_from_slice(&rows[2..]);
        expected.extend_from_slice(TRAILER);
        assert_eq!(numbered.stream.as_ref(), expected.as_slice());
        assert!(numbered.batch.is_empty());
        let mut posted: Vec<(i16, i64, Vec<i64>)> = numbered.postings.rows().collect();
        posted.sort();
        // 2024-02-29 is day 19,782 since 1970.
        let (billing, refund) = (text_key("billing"), text_key("Refund"));
        assert_eq!(
            posted,
            [
                (1, billing, vec![5]),
                (2, refund, vec![5]),
                (3, 19_782, vec![5])
            ]
        );
    }

    #[test]
    fn ids_and_rows_must_match_one_for_one() {
        let mut encoder = RowEncoder::default();
        encoder.push(event("1").as_event_ref());
        let rows = encoder.into_rows().bytes;

        for seals in [Seals::Batched, Seals::InRows] {
            assert!(number_rows([&rows], &[], seals).is_err());
            assert!(number_rows([&rows], &[1, 2], seals).is_err());
            assert!(number_rows([&rows.slice(..rows.len() - 1)], &[1], seals).is_err());
        }
    }
}
