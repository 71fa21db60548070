//! The writing side: the rows of a poster step's events, ready to be inserted with one
//! statement.

use std::collections::HashMap;

use tokio_postgres::types::ToSql;

use super::ids::encode;
use super::{Field, MAX_IDS, MAX_SPAN, day_key, text_key};

/// Inserts [`PostingRows`] ([`PostingRows::parameters`]).
pub const INSERT_POSTINGS: &str = "INSERT INTO search_postings (field, key, first_id, last_id, ids) \
     SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bytea[])";

/// Gathers the ids of each key, event by event.
#[derive(Debug, Default)]
pub struct PostingCollector {
    by_key: HashMap<(Field, i64), Vec<i64>>,
}

impl PostingCollector {
    /// One event: its id, application, kind, and `event_ts` in microseconds since 1970.
    pub fn push(&mut self, id: i64, application: &str, kind: &str, event_ts_micros: i64) {
        for key in [
            (Field::Application, text_key(application)),
            (Field::Kind, text_key(kind)),
            (Field::Day, day_key(event_ts_micros)),
        ] {
            self.by_key.entry(key).or_default().push(id);
        }
    }

    /// The rows of every event pushed: each key's ids ascending, cut into rows of at
    /// most [`MAX_IDS`] spanning less than [`MAX_SPAN`].
    pub fn into_rows(self) -> PostingRows {
        let mut rows = PostingRows::default();
        for ((field, key), mut ids) in self.by_key {
            ids.sort_unstable();
            ids.dedup();
            for piece in pieces(&ids) {
                let first_id = piece[0];
                rows.fields.push(field.code());
                rows.keys.push(key);
                rows.first_ids.push(first_id);
                rows.last_ids.push(piece[piece.len() - 1]);
                rows.ids.push(encode(first_id, piece));
            }
        }
        rows
    }
}

/// Posting rows as the columns [`INSERT_POSTINGS`] takes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PostingRows {
    fields: Vec<i16>,
    keys: Vec<i64>,
    first_ids: Vec<i64>,
    last_ids: Vec<i64>,
    ids: Vec<Vec<u8>>,
}

impl PostingRows {
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The parameters of [`INSERT_POSTINGS`].
    pub fn parameters(&self) -> [&(dyn ToSql + Sync); 5] {
        [
            &self.fields,
            &self.keys,
            &self.first_ids,
            &self.last_ids,
            &self.ids,
        ]
    }

    /// Each row's field code, key and ids.
    #[cfg(test)]
    pub fn rows(&self) -> impl Iterator<Item = (i16, i64, Vec<i64>)> + '_ {
        (0..self.len()).map(|at| {
            let ids = super::ids_of(self.first_ids[at], &self.ids[at]).unwrap_or_default();
            (self.fields[at], self.keys[at], ids)
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000;

    fn rows_of(rows: &PostingRows, field: Field, key: i64) -> Vec<Vec<i64>> {
        let mut found: Vec<Vec<i64>> = (rows.rows())
            .filter(|(code, row_key, _)| *code == field.code() && *row_key == key)
            .map(|(_, _, ids)| ids)
            .collect();
        found.sort();
        found
    }

    #[test]
    fn each_key_gets_its_events_ids_ascending() {
        let mut collector = PostingCollector::default();
        collector.push(9, "billing", "Refund", 3 * DAY + 5);
        collector.push(2, "login", "Refund", 3 * DAY);
        collector.push(4, "billing", "Login", 4 * DAY - 1);
        let rows = collector.into_rows();

        assert_eq!(
            rows_of(&rows, Field::Application, text_key("billing")),
            vec![vec![4, 9]]
        );
        assert_eq!(
            rows_of(&rows, Field::Application, text_key("login")),
            vec![vec![2]]
        );
        assert_eq!(
            rows_of(&rows, Field::Kind, text_key("Refund")),
            vec![vec![2, 9]]
        );
        assert_eq!(rows_of(&rows, Field::Day, 3), vec![vec![2, 4, 9]]);
        assert_eq!(rows.len(), 5);
    }

    #[test]
    fn rows_are_cut_by_count_and_span() {
        let mut collector = PostingCollector::default();
        for id in 0..2500 {
            collector.push(id, "billing", "Kind", DAY);
        }
        let rows = collector.into_rows();
        let sizes: Vec<usize> = (rows_of(&rows, Field::Application, text_key("billing")).iter())
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, vec![MAX_IDS, MAX_IDS, 2500 - 2 * MAX_IDS]);

        let mut collector = PostingCollector::default();
        for id in [0, MAX_SPAN - 1, MAX_SPAN] {
            collector.push(id, "x", "Kind", DAY);
        }
        let rows = collector.into_rows();
        assert_eq!(
            rows_of(&rows, Field::Application, text_key("x")),
            vec![vec![0, MAX_SPAN - 1], vec![MAX_SPAN]]
        );
    }
}
