//! The sealer's side: the rows of a round's sealed leaves, and their write.

use std::collections::HashMap;

use tokio_postgres::GenericClient;

use super::ids::encode;
use super::{Field, MAX_IDS, MAX_SPAN, OPEN_BELOW, day_key, fingerprint_key};
use crate::storage_error::{StorageError, classify};
use crate::tree::records::LeafRecord;

/// Keys with an open row kept at most: past it the open rows are forgotten (they are
/// written; their keys' next ids start new rows), so that a flood of distinct names
/// cannot grow the sealer's memory.
const MAX_OPEN_KEYS: usize = 4096;

/// One row to write (insert, or replace the open row it continues).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostingRow {
    pub field: Field,
    pub key: i64,
    pub first_id: i64,
    pub last_id: i64,
    pub ids: Vec<u8>,
}

/// Turns sealed leaves into rows, keeping each key's last row open while it is small.
#[derive(Clone, Debug, Default)]
pub struct PostingBuilder {
    open: HashMap<(Field, i64), Vec<i64>>,
}

impl PostingBuilder {
    /// The rows that `records` add or change.
    pub fn add<'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a LeafRecord>,
    ) -> Vec<PostingRow> {
        let mut by_key: HashMap<(Field, i64), Vec<i64>> = HashMap::new();
        for record in records {
            let [application, kind, _, _] = record.fingerprints;
            for key in [
                (Field::Application, fingerprint_key(application)),
                (Field::Kind, fingerprint_key(kind)),
                (Field::Day, day_key(record.event_ts_micros)),
            ] {
                by_key.entry(key).or_default().push(record.id);
            }
        }
        if self.open.len() + by_key.len() > MAX_OPEN_KEYS {
            self.open.clear();
        }
        let mut rows = Vec::new();
        for ((field, key), mut ids) in by_key {
            ids.sort_unstable();
            ids.dedup();
            let open = self.open.remove(&(field, key)).unwrap_or_default();
            // Ids below the open row's last (a transaction that committed late) make
            // rows of their own: a row only ever grows at its end.
            let split = open
                .last()
                .map_or(0, |last| ids.partition_point(|id| id <= last));
            let (late, next) = ids.split_at(split);
            let mut push = |piece: &[i64]| rows.push(row_of(field, key, piece));
            pieces(late).for_each(&mut push);
            if next.is_empty() {
                self.open.insert((field, key), open);
                continue;
            }
            let mut joined = open;
            joined.extend_from_slice(next);
            let mut last = None;
            for piece in pieces(&joined) {
                push(piece);
                last = Some(piece);
            }
            if let Some(last) = last.filter(|last| last.len() < OPEN_BELOW) {
                self.open.insert((field, key), last.to_vec());
            }
        }
        rows
    }
}

fn row_of(field: Field, key: i64, ids: &[i64]) -> PostingRow {
    let first_id = ids[0];
    PostingRow {
        field,
        key,
        first_id,
        last_id: ids[ids.len() - 1],
        ids: encode(first_id, ids),
    }
}

/// Sorted `ids` cut into rows of at most [`MAX_IDS`] spanning less than [`MAX_SPAN`].
fn pieces(ids: &[i64]) -> impl Iterator<Item = &[i64]> {
    let mut rest = ids;
    std::iter::from_fn(move || {
        let first = *rest.first()?;
        let fits = rest[..rest.len().min(MAX_IDS)]
            .partition_point(|id| id.abs_diff(first) < MAX_SPAN.unsigned_abs());
        let (piece, after) = rest.split_at(fits);
        rest = after;
        Some(piece)
    })
}

/// Writes `rows` and how far the postings now reach: the leaves `0..leaves` are in
/// them, and every committed event with an id up to `id_floor` is sealed.
pub async fn write_postings(
    client: &impl GenericClient,
    rows: &[PostingRow],
    leaves: i64,
    id_floor: i64,
) -> Result<(), StorageError> {
    // A row rewritten twice in one round (an open row that grew in two steps) is
    // written once, as it ended: one statement may not change a row twice.
    let mut latest: HashMap<(Field, i64, i64), &PostingRow> = HashMap::new();
    for row in rows {
        latest.insert((row.field, row.key, row.first_id), row);
    }
    let rows: Vec<&PostingRow> = latest.into_values().collect();
    if !rows.is_empty() {
        let fields: Vec<i16> = rows.iter().map(|row| row.field.code()).collect();
        let keys: Vec<i64> = rows.iter().map(|row| row.key).collect();
        let firsts: Vec<i64> = rows.iter().map(|row| row.first_id).collect();
        let lasts: Vec<i64> = rows.iter().map(|row| row.last_id).collect();
        let ids: Vec<&[u8]> = rows.iter().map(|row| row.ids.as_slice()).collect();
        client
            .execute(
                "INSERT INTO search_postings (field, key, first_id, last_id, ids) \
                 SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bigint[], \
                     $4::bigint[], $5::bytea[]) \
                 ON CONFLICT (field, key, first_id) DO UPDATE \
                     SET last_id = excluded.last_id, ids = excluded.ids",
                &[&fields, &keys, &firsts, &lasts, &ids],
            )
            .await
            .map_err(classify)?;
    }
    client
        .execute(
            "UPDATE search_postings_state SET leaves = $1, id_floor = $2",
            &[&leaves, &id_floor],
        )
        .await
        .map_err(classify)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::text_fingerprint;
    use crate::postings::ids::decode;

    fn record(id: i64, application: &str, day: i64) -> LeafRecord {
        LeafRecord {
            id,
            event_ts_micros: day * 86_400_000_000 + 5,
            fingerprints: [
                text_fingerprint(application),
                text_fingerprint("Kind"),
                [0; 4],
                [0; 4],
            ],
        }
    }

    fn ids_of(row: &PostingRow) -> Vec<i64> {
        let mut ids = Vec::new();
        decode(row.first_id, &row.ids, |id| ids.push(id)).unwrap();
        ids
    }

    fn rows_of(rows: &[PostingRow], field: Field, key: i64) -> Vec<Vec<i64>> {
        let mut found: Vec<&PostingRow> = (rows.iter())
            .filter(|row| row.field == field && row.key == key)
            .collect();
        found.sort_by_key(|row| row.first_id);
        found.into_iter().map(ids_of).collect()
    }

    #[test]
    fn each_key_gets_its_ids_and_a_small_row_grows_over_rounds() {
        let mut builder = PostingBuilder::default();
        let app = crate::postings::text_key("billing");
        let first = builder.add(&[record(1, "billing", 3), record(2, "login", 3)]);
        assert_eq!(rows_of(&first, Field::Application, app), vec![vec![1]]);
        assert_eq!(rows_of(&first, Field::Day, 3), vec![vec![1, 2]]);
        // The open row is rewritten whole, under the same first id.
        let second = builder.add(&[record(7, "billing", 4)]);
        assert_eq!(rows_of(&second, Field::Application, app), vec![vec![1, 7]]);
        assert_eq!(rows_of(&second, Field::Day, 4), vec![vec![7]]);
        assert!(rows_of(&second, Field::Day, 3).is_empty());
    }

    #[test]
    fn an_id_below_the_open_row_makes_a_row_of_its_own() {
        let mut builder = PostingBuilder::default();
        let app = crate::postings::text_key("billing");
        builder.add(&[record(10, "billing", 1), record(20, "billing", 1)]);
        let rows = builder.add(&[record(15, "billing", 1), record(30, "billing", 1)]);
        assert_eq!(
            rows_of(&rows, Field::Application, app),
            vec![vec![10, 20, 30], vec![15]]
        );
    }

    #[test]
    fn rows_are_cut_by_count_and_span() {
        let mut builder = PostingBuilder::default();
        let app = crate::postings::text_key("billing");
        let many: Vec<LeafRecord> = (0..2500).map(|id| record(id, "billing", 1)).collect();
        let rows = builder.add(&many);
        let sizes: Vec<usize> = (rows_of(&rows, Field::Application, app).iter())
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, vec![MAX_IDS, MAX_IDS, 2500 - 2 * MAX_IDS]);
        let far = [
            record(0, "x", 9),
            record(MAX_SPAN - 1, "x", 9),
            record(MAX_SPAN, "x", 9),
        ];
        let rows = builder.add(&far);
        assert_eq!(
            rows_of(&rows, Field::Application, crate::postings::text_key("x")),
            vec![vec![0, MAX_SPAN - 1], vec![MAX_SPAN]]
        );
    }

    #[test]
    fn a_row_that_reached_its_size_is_closed() {
        let mut builder = PostingBuilder::default();
        let app = crate::postings::text_key("billing");
        let full: Vec<LeafRecord> = (0..OPEN_BELOW as i64)
            .map(|id| record(id, "billing", 1))
            .collect();
        builder.add(&full);
        let rows = builder.add(&[record(500, "billing", 1)]);
        assert_eq!(rows_of(&rows, Field::Application, app), vec![vec![500]]);
    }
}
