//! The reader's side: whether postings can serve a page, which ones, and the ids they
//! name in a page's order ([`Candidates`]).

use std::collections::{BTreeSet, HashMap};

use tokio_postgres::types::ToSql;

use super::ids::decode;
use super::{Field, MAX_SPAN, day_key, text_key};
use crate::filter::{Direction, EventFilter};
use crate::merkle::unix_micros;
use crate::storage_error::{StorageError, classify};

/// The floor at or below which every committed event is posted (none before the
/// poster posted anything).
const POSTED_FLOOR: &str = "SELECT id_floor FROM search_postings_state WHERE id_floor > 0";

/// A window of at most this many days is read through its days' postings before any
/// other condition's (a day holds fewer events than an application, as a rule).
const NARROW_DAYS: i64 = 2;
/// A wider window than this is not read through day postings at all: it matches
/// densely, and a walk of the primary key fills a page sooner.
const WIDE_DAYS: i64 = 62;

/// Posting rows of a page's first read, over all of a plan's keys (at least two a
/// key); each read after it takes four times as many, up to the most. The most
/// bounds a page's memory: a row holds at most `MAX_IDS` ids, so a read decodes at
/// most 64 Ki ids (about a megabyte) for a plan of up to 32 keys.
const FIRST_ROWS: i64 = 4;
const MAX_ROWS_PER_READ: i64 = 64;

/// Each key's next rows (`$4` at most a key) holding ids below `$5`, newest first:
/// in the order of their last id, so that an id above the last one read is in no row
/// still unread. `$3` is where the last read stopped (at first, `$5` plus the span).
const ROWS_BELOW: &str = "SELECT k.key, p.last_id, p.first_id, p.ids \
     FROM unnest($1::bigint[]) AS k (key) \
     CROSS JOIN LATERAL ( \
         SELECT first_id, last_id, ids FROM search_postings \
         WHERE field = $2 AND key = k.key AND last_id < $3 AND first_id < $5 \
         ORDER BY last_id DESC LIMIT $4) AS p";
/// The same oldest first, for ids above `$5`: in the order of their first id.
const ROWS_ABOVE: &str = "SELECT k.key, p.first_id, p.first_id, p.ids \
     FROM unnest($1::bigint[]) AS k (key) \
     CROSS JOIN LATERAL ( \
         SELECT first_id, ids FROM search_postings \
         WHERE field = $2 AND key = k.key AND first_id > $3 AND last_id > $5 \
         ORDER BY first_id LIMIT $4) AS p";

/// Every committed event with an id at or below this is in the postings (none before
/// the poster posted anything).
pub async fn posted_floor(client: &deadpool_postgres::Client) -> Result<Option<i64>, StorageError> {
    let statement = client
        .prepare_cached(POSTED_FLOOR)
        .await
        .map_err(classify)?;
    let row = client.query_opt(&statement, &[]).await.map_err(classify)?;
    row.map(|row| row.try_get(0).map_err(classify)).transpose()
}

/// The postings a filtered page takes its candidates from: one field's, of any of
/// these keys; and those of a second condition, if the filter has one, which its
/// candidates must also be in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostingPlan {
    field: Field,
    keys: Vec<i64>,
    narrowing: Option<Narrowing>,
}

/// A second condition's postings, which a candidate must be in to be read at all
/// (an application's, within a day): a candidate that is not cannot match, since the
/// postings hold every event up to their floor under each of its keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Narrowing {
    field: Field,
    keys: Vec<i64>,
}

/// The rows of a narrowing's keys that can hold ids from `$3` to `$4` (a row spans
/// less than `MAX_SPAN`, so its last id lies below `$4` plus that).
const ROWS_OVERLAPPING: &str = "SELECT first_id, ids FROM search_postings \
     WHERE field = $1 AND key = ANY($2::bigint[]) AND last_id >= $3::bigint \
         AND last_id < $4::bigint + 65536 AND first_id <= $4::bigint";

impl Narrowing {
    /// `candidates` (in a page's order) less those in none of these postings.
    pub async fn retain(
        &self,
        client: &deadpool_postgres::Client,
        candidates: Vec<i64>,
    ) -> Result<Vec<i64>, StorageError> {
        let (Some(&low), Some(&high)) = (candidates.iter().min(), candidates.iter().max()) else {
            return Ok(candidates);
        };
        let statement = client
            .prepare_cached(ROWS_OVERLAPPING)
            .await
            .map_err(classify)?;
        let field = self.field.code();
        let rows = client
            .query(&statement, &[&field, &self.keys, &low, &high])
            .await
            .map_err(classify)?;
        let mut posted = BTreeSet::new();
        for row in &rows {
            let first_id: i64 = row.try_get(0).map_err(classify)?;
            let ids: &[u8] = row.try_get(1).map_err(classify)?;
            decode(first_id, ids, |id| {
                if (low..=high).contains(&id) {
                    posted.insert(id);
                }
            })
            .ok_or_else(|| StorageError::unavailable("a torn search posting"))?;
        }
        let mut kept = candidates;
        kept.retain(|id| posted.contains(id));
        Ok(kept)
    }
}

impl PostingPlan {
    /// The postings that narrow `filter` most, as far as one can tell without counting:
    /// a window of a day or two, else the applications (`applications`, the filter's
    /// narrowed to the reader's scope), else the kinds, else a window of up to two
    /// months. None when no condition has postings worth reading.
    pub fn for_filter(applications: Option<&[String]>, filter: &EventFilter) -> Option<Self> {
        let days = match (filter.since, filter.until) {
            (Some(since), Some(until)) => {
                let first = day_key(unix_micros(since));
                let last = day_key(unix_micros(until) - 1);
                Some((first..=last).collect::<Vec<i64>>())
            }
            _ => None,
        };
        let texts =
            |texts: &[String]| -> Vec<i64> { texts.iter().map(|text| text_key(text)).collect() };
        let kinds = (!filter.kinds.is_empty()).then(|| texts(&filter.kinds));
        let applications = applications.map(texts);
        let narrowing = |field, keys| Narrowing {
            field,
            keys: deduplicated(keys),
        };
        let plan = |field, keys, narrowing| {
            Some(Self {
                field,
                keys: deduplicated(keys),
                narrowing,
            })
        };
        match (days, applications, kinds) {
            (Some(days), applications, kinds) if days.len() as i64 <= NARROW_DAYS => {
                let second = (applications.map(|keys| narrowing(Field::Application, keys)))
                    .or_else(|| kinds.map(|keys| narrowing(Field::Kind, keys)));
                plan(Field::Day, days, second)
            }
            (_, Some(applications), kinds) => plan(
                Field::Application,
                applications,
                kinds.map(|keys| narrowing(Field::Kind, keys)),
            ),
            (_, None, Some(kinds)) => plan(Field::Kind, kinds, None),
            (Some(days), None, None) if days.len() as i64 <= WIDE_DAYS => {
                plan(Field::Day, days, None)
            }
            _ => None,
        }
    }

    /// The second condition's postings, if any, for the page to apply itself (the
    /// plan goes to its [`Candidates`]).
    pub fn take_narrowing(&mut self) -> Option<Narrowing> {
        self.narrowing.take()
    }
}

fn deduplicated(mut keys: Vec<i64>) -> Vec<i64> {
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The ids the postings of a plan hold within a range, handed out in a page's order,
/// a few at a time, each once. An id is handed out only when no row still unread can
/// hold a further one before it.
pub struct Candidates {
    plan: PostingPlan,
    direction: Direction,
    /// The ids wanted lie strictly between these; the bound a page walks from moves
    /// past each id handed out.
    low: i64,
    high: i64,
    /// Where the last read stopped: the last id of the last row read when walking
    /// down, its first id when walking up (rows are read in that order).
    read_to: Option<i64>,
    reads: u32,
    exhausted: bool,
    pending: BTreeSet<i64>,
}

impl Candidates {
    /// The ids strictly between `low` and `high`, walked in `direction`.
    pub fn new(plan: PostingPlan, direction: Direction, low: i64, high: i64) -> Self {
        Self {
            plan,
            direction,
            low,
            high,
            read_to: None,
            reads: 0,
            exhausted: false,
            pending: BTreeSet::new(),
        }
    }

    /// Up to `wanted` more ids, in the walk's order; none once the range is walked.
    pub async fn next(
        &mut self,
        client: &deadpool_postgres::Client,
        wanted: usize,
    ) -> Result<Vec<i64>, StorageError> {
        while !self.exhausted && self.complete() < wanted {
            self.read_rows(client).await?;
        }
        let complete = self.complete().min(wanted);
        let taken: Vec<i64> = match self.direction {
            Direction::Descending => (0..complete)
                .filter_map(|_| self.pending.pop_last())
                .collect(),
            Direction::Ascending => (0..complete)
                .filter_map(|_| self.pending.pop_first())
                .collect(),
        };
        if let Some(&last) = taken.last() {
            match self.direction {
                Direction::Descending => self.high = last,
                Direction::Ascending => self.low = last,
            }
        }
        Ok(taken)
    }

    /// How many pending ids no unread row can precede in the walk.
    fn complete(&self) -> usize {
        match (self.exhausted, self.read_to, self.direction) {
            (true, _, _) => self.pending.len(),
            (false, None, _) => 0,
            // An unread row ends below the last one read.
            (false, Some(end), Direction::Descending) => self.pending.range(end..).count(),
            // An unread row starts above the last one read.
            (false, Some(start), Direction::Ascending) => self.pending.range(..=start).count(),
        }
    }

    /// Reads each key's next rows. What was read is a prefix of all the keys' rows in
    /// the walk's order up to the last row read of a key that may have more: the rows
    /// past it are dropped (read again next time), so that no row is skipped. Each
    /// read takes four times the rows of the one before: a page of a common key needs
    /// two rows, one of a rare key or of several keys more.
    async fn read_rows(&mut self, client: &deadpool_postgres::Client) -> Result<(), StorageError> {
        let (query, from, bound) = match self.direction {
            Direction::Descending => (
                ROWS_BELOW,
                (self.read_to).unwrap_or(self.high.saturating_add(MAX_SPAN)),
                self.high,
            ),
            Direction::Ascending => (
                ROWS_ABOVE,
                (self.read_to).unwrap_or(self.low.saturating_sub(MAX_SPAN)),
                self.low,
            ),
        };
        let rows_wanted = (FIRST_ROWS << (2 * self.reads.min(4))).min(MAX_ROWS_PER_READ);
        self.reads += 1;
        let keys = self.plan.keys.len().max(1) as i64;
        let per_key = (rows_wanted / keys).max(2);
        let statement = client.prepare_cached(query).await.map_err(classify)?;
        let field = self.plan.field.code();
        let parameters: [&(dyn ToSql + Sync); 5] =
            [&self.plan.keys, &field, &from, &per_key, &bound];
        let rows = client
            .query(&statement, &parameters)
            .await
            .map_err(classify)?;
        // (key, the walk's order, first id, ids)
        let mut read: Vec<(i64, i64, i64, &[u8])> = Vec::with_capacity(rows.len());
        for row in &rows {
            read.push((
                row.try_get(0).map_err(classify)?,
                row.try_get(1).map_err(classify)?,
                row.try_get(2).map_err(classify)?,
                row.try_get(3).map_err(classify)?,
            ));
        }
        let descending = self.direction == Direction::Descending;
        read.sort_unstable_by_key(|(_, order, _, _)| *order);
        if descending {
            read.reverse();
        }
        let mut last_of_key: HashMap<i64, (i64, i64)> = HashMap::new();
        for (key, order, _, _) in &read {
            let entry = last_of_key.entry(*key).or_insert((0, *order));
            *entry = (entry.0 + 1, *order);
        }
        let prefix_end = (last_of_key.values())
            .filter(|(count, _)| *count >= per_key)
            .map(|(_, order)| *order)
            .reduce(|a, b| if descending { a.max(b) } else { a.min(b) });
        if let Some(end) = prefix_end {
            read.retain(|(_, order, _, _)| {
                if descending {
                    *order >= end
                } else {
                    *order <= end
                }
            });
        }
        let (low, high) = (self.low, self.high);
        for (_, order, first_id, ids) in &read {
            let pending = &mut self.pending;
            decode(*first_id, ids, |id| {
                if low < id && id < high {
                    pending.insert(id);
                }
            })
            .ok_or_else(|| StorageError::unavailable("a torn search posting"))?;
            self.read_to = Some(*order);
        }
        let past_the_range = match (self.direction, self.read_to) {
            (Direction::Ascending, Some(start)) => start >= high,
            _ => false,
        };
        self.exhausted = prefix_end.is_none() || past_the_range;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timestamp::EventTimestamp;

    fn at(text: &str) -> Option<EventTimestamp> {
        Some(EventTimestamp::parse(text).unwrap())
    }

    #[test]
    fn a_narrow_window_goes_first_then_applications_kinds_and_wide_windows() {
        let day = EventFilter {
            since: at("2025-06-15T00:00:00Z"),
            until: at("2025-06-16T00:00:00Z"),
            kinds: vec!["Kind07".into()],
            ..EventFilter::default()
        };
        let apps = ["app010".to_owned()];
        let plan = PostingPlan::for_filter(Some(&apps), &day).unwrap();
        assert_eq!(plan.field, Field::Day);
        assert_eq!(plan.keys, vec![20_254]);
        let narrowing = Narrowing {
            field: Field::Application,
            keys: vec![text_key("app010")],
        };
        assert_eq!(plan.narrowing, Some(narrowing));
        let plan = PostingPlan::for_filter(None, &day).unwrap();
        let narrowing = Narrowing {
            field: Field::Kind,
            keys: vec![text_key("Kind07")],
        };
        assert_eq!((plan.field, plan.narrowing), (Field::Day, Some(narrowing)));

        let month = EventFilter {
            since: at("2025-06-01T00:00:00Z"),
            until: at("2025-07-01T00:00:00Z"),
            ..EventFilter::default()
        };
        let plan = PostingPlan::for_filter(Some(&apps), &month).unwrap();
        assert_eq!(
            (plan.field, plan.keys),
            (Field::Application, vec![text_key("app010")])
        );
        let plan = PostingPlan::for_filter(None, &month).unwrap();
        assert_eq!((plan.field, plan.keys.len()), (Field::Day, 30));

        let kinds = EventFilter {
            kinds: vec!["B".into(), "A".into(), "B".into()],
            ..month.clone()
        };
        let plan = PostingPlan::for_filter(None, &kinds).unwrap();
        assert_eq!(plan.field, Field::Kind);
        assert_eq!(plan.keys.len(), 2);

        let year = EventFilter {
            since: at("2025-01-01T00:00:00Z"),
            until: at("2026-01-01T00:00:00Z"),
            ..EventFilter::default()
        };
        assert_eq!(PostingPlan::for_filter(None, &year), None);
        let open_ended = EventFilter {
            since: at("2025-01-01T00:00:00Z"),
            ..EventFilter::default()
        };
        assert_eq!(PostingPlan::for_filter(None, &open_ended), None);
    }
}
