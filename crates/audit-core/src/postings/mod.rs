//! Search postings: for each application, kind and day of `event_ts`, the ids of its
//! events, in rows of at most [`MAX_IDS`] ids spanning less than [`MAX_SPAN`]
//! (migrations V7, V8). Each writer stores the postings of its group's events in the
//! group's own transaction (`builder`), so ingest pays for them once per group and key
//! instead of once per event and index, and a committed event is in them as soon as
//! it is visible; a filtered page reads them newest or oldest first (`read`).
//!
//! Events inserted without postings (a bulk load, a row written by hand, every event
//! from before V8) are noted as gaps by a trigger, and `backfill` posts them, in the
//! commit-safe order of `tree::order`: it has posted every committed event with an id
//! at or below the stored `id_floor`. Pages use the postings for everything once no
//! gap lies above that floor, and below the floor only while one does ([`Coverage`]).
//! Postings are candidates: a page reads the rows they name and checks every condition
//! there, so a fingerprint shared by two texts, or an id posted twice, costs a read,
//! never a wrong event.

mod backfill;
mod builder;
mod ids;
mod read;

pub use backfill::{Backfilled, backfill};
pub use builder::{INSERT_POSTINGS, PostingCollector, PostingRows};
pub use read::{Candidates, Coverage, PostingPlan, coverage};

/// Most ids in one row: a row stays near 2 KiB, read whole by a page.
pub const MAX_IDS: usize = 1024;

/// A row's ids lie in `first_id..first_id + MAX_SPAN`: where a page starts, the rows
/// that can hold its first ids are found within this distance of it (`read`).
pub const MAX_SPAN: i64 = 1 << 16;

/// Microseconds in a day: `event_ts`'s key is its day.
const DAY_MICROS: i64 = 86_400_000_000;

/// What a posting indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Application,
    Kind,
    Day,
}

impl Field {
    /// The stored `field`.
    pub fn code(self) -> i16 {
        match self {
            Self::Application => 1,
            Self::Kind => 2,
            Self::Day => 3,
        }
    }
}

/// The ids of a stored row (`first_id`, `ids`); none when the bytes are torn.
pub fn ids_of(first_id: i64, bytes: &[u8]) -> Option<Vec<i64>> {
    let mut found = Vec::new();
    ids::decode(first_id, bytes, |id| found.push(id))?;
    Some(found)
}

/// The key of a text: its fingerprint, as leaf records keep it.
pub fn text_key(text: &str) -> i64 {
    bytes_key(text.as_bytes())
}

/// The key of a text's UTF-8 bytes (as a COPY row holds them).
fn bytes_key(bytes: &[u8]) -> i64 {
    i64::from(crc32fast::hash(bytes))
}

/// The key of a timestamp, in microseconds since 1970: its day.
pub fn day_key(micros: i64) -> i64 {
    micros.div_euclid(DAY_MICROS)
}
