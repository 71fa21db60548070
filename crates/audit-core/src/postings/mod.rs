//! Search postings: for each application, kind and day of `event_ts`, the ids of its
//! sealed events, in rows of at most [`MAX_IDS`] ids spanning less than [`MAX_SPAN`]
//! (migration V7). The sealer writes them in each round's transaction from the leaf
//! records it sealed (`builder`), so ingest pays for them once per round and key
//! instead of once per event and index; a filtered page reads them newest or oldest
//! first (`read`).
//!
//! They rest on the commit-safe order (`tree::order`): every committed event with an
//! id at or below the stored `id_floor` is sealed, so its ids are in the postings;
//! above it a page walks the primary key, as it would without them. Postings are
//! candidates: a page reads the rows they name and checks every condition there, so a
//! fingerprint shared by two texts costs a read, never a wrong event.

mod builder;
mod ids;
mod read;

pub use builder::{PostingBuilder, PostingRow, write_postings};
pub use read::{Candidates, PostingPlan, usable_floor};

use crate::merkle::text_fingerprint;

/// Most ids in one row: a row stays near 2 KiB, read whole by a page.
pub const MAX_IDS: usize = 1024;

/// A row's ids lie in `first_id..first_id + MAX_SPAN`: where a page starts, the rows
/// that can hold its first ids are found within this distance of it (`read`).
pub const MAX_SPAN: i64 = 1 << 16;

/// A row with fewer ids stays open in the sealer's memory and takes the next rounds'
/// ids of its key (rewritten each time), so that a quiet log does not get a row per
/// key and round.
pub const OPEN_BELOW: usize = 64;

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
    fingerprint_key(text_fingerprint(text))
}

fn fingerprint_key(fingerprint: [u8; 4]) -> i64 {
    i64::from(u32::from_be_bytes(fingerprint))
}

/// The key of a timestamp, in microseconds since 1970: its day.
pub fn day_key(micros: i64) -> i64 {
    micros.div_euclid(DAY_MICROS)
}
