//! The tree as C2SP tlog-tiles publishes it, so that any tiles client can check the
//! log without this project's code: hash tiles `tile/<L>/<N>[.p/<W>]` straight from
//! the stored tiles, and entry bundles `tile/entries/<N>[.p/<W>]` holding each leaf's
//! bytes (`merkle::leaf`), recomputed from the events as they are stored now (so a
//! changed event shows as an entry whose hash is not the tile's).

use deadpool_postgres::Client;

use crate::merkle::{LeafEvent, leaf_bytes};
use crate::repository::stored_event_from_row;
use crate::storage_error::{StorageError, classify};
use crate::tree::records::{LeafRecord, RECORD_BYTES};

/// Levels a tree of up to 2^64 leaves can have tiles at.
const MAX_LEVEL: u8 = 7;
/// A full tile's width ([`TILE_WIDTH`]).
const FULL_WIDTH: u16 = 256;

/// A tile path, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TilePath {
    /// Hashes, or (none) an entry bundle.
    pub level: Option<u8>,
    pub index: u64,
    /// 1..=256; below 256 a partial tile, the first `width` of the tile's entries.
    pub width: u16,
}

impl TilePath {
    /// Parses what follows `tile/`: `<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`, where
    /// `<N>` is written in groups of three digits, each but the last prefixed `x`
    /// (1234067 is `x001/x234/067`). The error says what is wrong.
    pub fn parse(path: &str) -> Result<Self, &'static str> {
        let (level, rest) = path.split_once('/').ok_or("a tile path is <L>/<N>")?;
        let level = match level {
            "entries" => None,
            digits => Some(
                digits
                    .parse::<u8>()
                    .ok()
                    .filter(|level| *level <= MAX_LEVEL && digits == level.to_string())
                    .ok_or("the level is not one of 0 to 7, or entries")?,
            ),
        };
        let (index, width) = match rest.split_once(".p/") {
            None => (rest, FULL_WIDTH),
            Some((index, width)) => (
                index,
                width
                    .parse::<u16>()
                    .ok()
                    .filter(|w| (1..FULL_WIDTH).contains(w) && width == w.to_string())
                    .ok_or("a partial tile's width is one of 1 to 255")?,
            ),
        };
        Ok(Self {
            level,
            index: parse_index(index)
                .ok_or("the index is groups of three digits, each but the last prefixed x")?,
            width,
        })
    }

    /// The path, as a client writes it.
    pub fn to_path(self) -> String {
        let mut groups = Vec::new();
        let mut rest = self.index;
        loop {
            groups.push(rest % 1000);
            rest /= 1000;
            if rest == 0 {
                break;
            }
        }
        let last = groups.len() - 1;
        let index: Vec<String> = (groups.iter().rev().enumerate())
            .map(|(at, group)| {
                if at == last {
                    format!("{group:03}")
                } else {
                    format!("x{group:03}")
                }
            })
            .collect();
        let level = self
            .level
            .map_or_else(|| "entries".to_owned(), |level| level.to_string());
        let partial = if self.width == FULL_WIDTH {
            String::new()
        } else {
            format!(".p/{}", self.width)
        };
        format!("{level}/{}{partial}", index.join("/"))
    }
}

fn parse_index(text: &str) -> Option<u64> {
    let groups: Vec<&str> = text.split('/').collect();
    let last = groups.len() - 1;
    let mut index: u64 = 0;
    for (at, group) in groups.into_iter().enumerate() {
        let digits = if at == last {
            group
        } else {
            group.strip_prefix('x')?
        };
        if digits.len() != 3 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        index = index
            .checked_mul(1000)?
            .checked_add(digits.parse::<u64>().ok()?)?;
    }
    Some(index)
}

const TILE: &str = "SELECT substring(hashes FROM 1 FOR $3) FROM tree_tiles \
     WHERE level = $1 AND tile = $2 AND octet_length(hashes) >= $3";
const RECORDS: &str = "SELECT substring(records FROM 1 FOR $2) FROM tree_leaves \
     WHERE tile = $1 AND octet_length(records) >= $2";
const EVENTS: &str = "SELECT id, event_ts, application_name, event_kind, payload::text, \
     token_name FROM events WHERE id = ANY($1)";

/// What a tile path names, when the tree has it.
pub enum Published {
    Bytes(Vec<u8>),
    /// The tree has no such tile (not that many leaves yet).
    Missing,
    /// The tree has the entries, but these events are gone from the table.
    EventsGone(Vec<i64>),
}

/// The bytes of a hash tile or entry bundle.
pub async fn read(client: &Client, path: TilePath) -> Result<Published, StorageError> {
    let index = i64::try_from(path.index).unwrap_or(i64::MAX);
    let width = usize::from(path.width);
    let Some(level) = path.level else {
        return read_entries(client, index, width).await;
    };
    let statement = client.prepare_cached(TILE).await.map_err(classify)?;
    let bytes = i32::from(path.width) * 32;
    let row = client
        .query_opt(&statement, &[&i16::from(level), &index, &bytes])
        .await
        .map_err(classify)?;
    Ok(match row {
        Some(row) => Published::Bytes(row.try_get(0).map_err(classify)?),
        None => Published::Missing,
    })
}

/// An entry bundle: each leaf's bytes, with a big-endian 16-bit length before it.
async fn read_entries(client: &Client, tile: i64, width: usize) -> Result<Published, StorageError> {
    let statement = client.prepare_cached(RECORDS).await.map_err(classify)?;
    let length = i32::try_from(width * RECORD_BYTES).unwrap_or(i32::MAX);
    let Some(row) = client
        .query_opt(&statement, &[&tile, &length])
        .await
        .map_err(classify)?
    else {
        return Ok(Published::Missing);
    };
    let bytes: Vec<u8> = row.try_get(0).map_err(classify)?;
    let ids: Vec<i64> = LeafRecord::parse_all(&bytes)
        .ok_or_else(|| StorageError::unavailable("torn leaf records"))?
        .iter()
        .map(|record| record.id)
        .collect();
    let statement = client.prepare_cached(EVENTS).await.map_err(classify)?;
    let rows = client.query(&statement, &[&ids]).await.map_err(classify)?;
    let mut leaves = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        let event = stored_event_from_row(row, 0)?;
        let token_name: Option<&str> = row.try_get(5).map_err(classify)?;
        let id = event.id;
        let digest = LeafEvent { event, token_name }.content().digest();
        leaves.insert(id, leaf_bytes(id, &digest));
    }
    let gone: Vec<i64> = (ids.iter())
        .filter(|id| !leaves.contains_key(id))
        .copied()
        .collect();
    if !gone.is_empty() {
        return Ok(Published::EventsGone(gone));
    }
    let mut bundle = Vec::with_capacity(ids.len() * 43);
    for id in &ids {
        let leaf = &leaves[id];
        bundle.extend_from_slice(&u16::try_from(leaf.len()).unwrap_or(u16::MAX).to_be_bytes());
        bundle.extend_from_slice(leaf);
    }
    Ok(Published::Bytes(bundle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_as_the_specification_writes_them() {
        let hashes = TilePath {
            level: Some(0),
            index: 1_234_067,
            width: 256,
        };
        assert_eq!(hashes.to_path(), "0/x001/x234/067");
        assert_eq!(TilePath::parse("0/x001/x234/067"), Ok(hashes));
        let partial = TilePath {
            level: None,
            index: 5,
            width: 8,
        };
        assert_eq!(partial.to_path(), "entries/005.p/8");
        assert_eq!(TilePath::parse("entries/005.p/8"), Ok(partial));
        assert_eq!(
            TilePath::parse("2/x001/000").map(|path| (path.level, path.index)),
            Ok((Some(2), 1000))
        );
    }

    #[test]
    fn paths_out_of_the_format_are_refused() {
        for path in [
            "0/5",
            "0/0005",
            "0/001/002",
            "0/x001",
            "8/000",
            "00/000",
            "0/000.p/0",
            "0/000.p/256",
            "0/000.p/08",
            "tiles/000",
            "0",
            "0/x999/x999/x999/x999/x999/x999/x999/999",
        ] {
            assert!(TilePath::parse(path).is_err(), "{path}");
        }
    }
}
