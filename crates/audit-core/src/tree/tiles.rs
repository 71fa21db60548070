//! The tree's hashes in C2SP tlog-tiles layout, height 8: level 0 holds the leaf
//! hashes, level `l` the roots of the perfect subtrees of `256^l` leaves; tile `t` of a
//! level holds its hashes `256 t .. 256 t + 256`, concatenated. The last tile of each
//! level is partial (fewer than 256 hashes) until it fills.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tokio_postgres::GenericClient;

use crate::merkle::{Frontier, Hash, SubtreeSource, root};
use crate::storage_error::{StorageError, classify};

/// Hashes per full tile, and the levels of subtree height one tile level spans.
pub const TILE_WIDTH: u64 = 256;
pub const TILE_HEIGHT: u32 = 8;

/// Which tile: its level and its index within the level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileKey {
    pub level: u8,
    pub index: u64,
}

/// How many hashes level `level` holds in a tree of `size` leaves: one per complete
/// subtree of `256^level` leaves.
pub fn hashes_at_level(size: u64, level: u8) -> u64 {
    size.checked_shr(TILE_HEIGHT * u32::from(level))
        .unwrap_or(0)
}

/// The tile holding the hashes a perfect subtree is computed from, and their range
/// within it: the subtree of `2^height` leaves at `index` is the root of `2^(height %
/// 8)` consecutive hashes of level `height / 8`, all in one tile.
pub fn tile_of(height: u32, index: u64) -> (TileKey, std::ops::Range<usize>) {
    let level = height / TILE_HEIGHT;
    let inner = height % TILE_HEIGHT;
    let first = index << inner;
    let key = TileKey {
        level: u8::try_from(level).unwrap_or(u8::MAX),
        index: first / TILE_WIDTH,
    };
    let start = usize::try_from(first % TILE_WIDTH).unwrap_or(0);
    (key, start..start + (1 << inner))
}

/// A tile's bytes as hashes; none when its length is not a whole number of hashes.
pub fn split_hashes(bytes: &[u8]) -> Option<Vec<Hash>> {
    if !bytes.len().is_multiple_of(32) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(32)
            .map(|chunk| {
                let mut hash = [0; 32];
                hash.copy_from_slice(chunk);
                hash
            })
            .collect(),
    )
}

/// The tiles of the given levels and indexes (`read_tiles`' statement).
pub const READ_TILES: &str = "SELECT t.level, t.tile, t.hashes \
     FROM unnest($1::smallint[], $2::bigint[]) AS wanted (level, tile) \
     JOIN tree_tiles AS t USING (level, tile)";

/// The stored tiles among `keys` (a torn one, not whole hashes, is left out), through
/// `statement`, [`READ_TILES`] prepared.
pub async fn read_tiles(
    client: &impl GenericClient,
    statement: &tokio_postgres::Statement,
    keys: impl IntoIterator<Item = TileKey>,
) -> Result<HashMap<TileKey, Vec<Hash>>, StorageError> {
    let (levels, indexes): (Vec<i16>, Vec<i64>) = keys
        .into_iter()
        .map(|key| {
            let index = i64::try_from(key.index).unwrap_or(i64::MAX);
            (i16::from(key.level), index)
        })
        .unzip();
    let rows = client
        .query(statement, &[&levels, &indexes])
        .await
        .map_err(classify)?;
    let mut tiles = HashMap::new();
    for row in rows {
        let level: i16 = row.try_get(0).map_err(classify)?;
        let index: i64 = row.try_get(1).map_err(classify)?;
        let bytes: Vec<u8> = row.try_get(2).map_err(classify)?;
        if let Some(hashes) = split_hashes(&bytes) {
            let key = TileKey {
                level: u8::try_from(level).unwrap_or(u8::MAX),
                index: u64::try_from(index).unwrap_or(u64::MAX),
            };
            tiles.insert(key, hashes);
        }
    }
    Ok(tiles)
}

/// The parts of tiles that perfect subtrees are computed from, each its own slice
/// (stored tiles are not compressed, so PostgreSQL reads only the chunks a slice
/// needs, not the whole 8 KiB tile).
const READ_SUBTREES: &str = "SELECT wanted.n, substring(t.hashes FROM wanted.start FOR wanted.length) \
     FROM unnest($1::int[], $2::smallint[], $3::bigint[], $4::int[], $5::int[]) \
         AS wanted (n, level, tile, start, length) \
     JOIN tree_tiles AS t USING (level, tile)";

/// The hashes of the perfect subtrees `wanted` names (`(height, index)` pairs), read
/// from their tiles' slices at once; a missing one is left out.
pub async fn read_subtrees(
    client: &deadpool_postgres::Client,
    wanted: &[(u32, u64)],
) -> Result<FetchedSubtrees, StorageError> {
    let mut numbers = Vec::new();
    let mut levels = Vec::new();
    let mut tiles = Vec::new();
    let mut starts = Vec::new();
    let mut lengths = Vec::new();
    for (number, (height, index)) in wanted.iter().enumerate() {
        let (key, range) = tile_of(*height, *index);
        numbers.push(i32::try_from(number).unwrap_or(i32::MAX));
        levels.push(i16::from(key.level));
        tiles.push(i64::try_from(key.index).unwrap_or(i64::MAX));
        // Fewer than 256 hashes of 32 bytes: always fits.
        starts.push(i32::try_from(range.start * 32 + 1).unwrap_or(i32::MAX));
        lengths.push(i32::try_from(range.len() * 32).unwrap_or(i32::MAX));
    }
    let statement = client
        .prepare_cached(READ_SUBTREES)
        .await
        .map_err(classify)?;
    let rows = client
        .query(&statement, &[&numbers, &levels, &tiles, &starts, &lengths])
        .await
        .map_err(classify)?;
    let mut found = HashMap::new();
    for row in rows {
        let number: i32 = row.try_get(0).map_err(classify)?;
        let bytes: Vec<u8> = row.try_get(1).map_err(classify)?;
        let Some(&(height, index)) = usize::try_from(number).ok().and_then(|at| wanted.get(at))
        else {
            continue;
        };
        let expected = tile_of(height, index).1.len();
        if let Some(hashes) = split_hashes(&bytes).filter(|hashes| hashes.len() == expected) {
            found.insert((height, index), root(&hashes));
        }
    }
    Ok(FetchedSubtrees(found))
}

/// Perfect subtree hashes read by [`read_subtrees`].
pub struct FetchedSubtrees(HashMap<(u32, u64), Hash>);

impl SubtreeSource for FetchedSubtrees {
    type Error = MissingTile;

    fn perfect(&mut self, height: u32, index: u64) -> Result<Hash, MissingTile> {
        self.0.get(&(height, index)).copied().ok_or_else(|| {
            let key = tile_of(height, index).0;
            MissingTile {
                level: key.level,
                index: key.index,
            }
        })
    }
}

/// A tile a proof needs is missing or shorter than the tree says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("tile {level}/{index} is missing or too short")]
pub struct MissingTile {
    pub level: u8,
    pub index: u64,
}

/// The partial tile of each level, kept by the sealer as leaves are appended, and the
/// tiles changed since they were last taken for storing.
#[derive(Clone, Debug, Default)]
pub struct TileAppender {
    size: u64,
    /// The last tile of each level, bottom first, while partial (a tile that fills
    /// moves to `completed`, and the level starts an empty one).
    last: Vec<Vec<Hash>>,
    completed: BTreeMap<TileKey, Vec<Hash>>,
    /// Levels whose partial tile changed since the last take.
    dirty: BTreeSet<u8>,
}

impl TileAppender {
    /// Resumes from a tree of `size` leaves, given the tiles [`Self::tiles_to_resume`]
    /// names.
    pub fn resume(size: u64, tiles: &HashMap<TileKey, Vec<Hash>>) -> Result<Self, MissingTile> {
        let mut last = Vec::new();
        for level in (0u8..).take_while(|level| hashes_at_level(size, *level) > 0) {
            let count = hashes_at_level(size, level);
            let partial = usize::try_from(count % TILE_WIDTH).unwrap_or(0);
            let key = TileKey {
                level,
                index: count / TILE_WIDTH,
            };
            let missing = MissingTile {
                level,
                index: key.index,
            };
            last.push(match partial {
                // The level fills whole tiles: the next hash starts a new one.
                0 => Vec::new(),
                _ => tiles
                    .get(&key)
                    .and_then(|hashes| hashes.get(..partial))
                    .ok_or(missing)?
                    .to_vec(),
            });
        }
        Ok(Self {
            size,
            last,
            completed: BTreeMap::new(),
            dirty: BTreeSet::new(),
        })
    }

    /// The tiles to read to resume a tree of `size` leaves: the last tile of each
    /// level, where it is partial.
    pub fn tiles_to_resume(size: u64) -> Vec<TileKey> {
        (0u8..)
            .map(|level| (level, hashes_at_level(size, level)))
            .take_while(|(_, count)| *count > 0)
            .filter(|(_, count)| count % TILE_WIDTH != 0)
            .map(|(level, count)| TileKey {
                level,
                index: count / TILE_WIDTH,
            })
            .collect()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Tiles filled since the last take.
    pub fn completed(&self) -> usize {
        self.completed.len()
    }

    /// Appends one leaf hash: it goes into level 0's last tile, and each tile it fills
    /// adds its root to the level above.
    pub fn push(&mut self, leaf: Hash) {
        self.push_with_roots(leaf, &[]);
    }

    /// Appends one leaf hash to `frontier` and here together: the roots of the tiles
    /// the leaf fills are subtrees the frontier merges (at most one per tile level),
    /// so each is hashed once, not again from the tile's hashes.
    pub fn push_beside(&mut self, frontier: &mut Frontier, leaf: Hash) {
        let mut filled_roots = Vec::new();
        frontier.push_reporting(leaf, |height, root| {
            if height % TILE_HEIGHT == 0 {
                filled_roots.push(*root);
            }
        });
        self.push_with_roots(leaf, &filled_roots);
    }

    /// [`push`](Self::push), given the roots of the tiles this leaf fills, level 0's
    /// first; a root not given is computed from the tile.
    fn push_with_roots(&mut self, leaf: Hash, filled_roots: &[Hash]) {
        let mut carried = leaf;
        let mut level = 0usize;
        loop {
            if self.last.len() <= level {
                self.last.push(Vec::new());
            }
            let index = hashes_at_level(self.size, level_u8(level)) / TILE_WIDTH;
            let tile = &mut self.last[level];
            tile.push(carried);
            if tile.len() < usize::try_from(TILE_WIDTH).unwrap_or(usize::MAX) {
                self.dirty.insert(level_u8(level));
                break;
            }
            let full = std::mem::take(tile);
            carried = filled_roots
                .get(level)
                .copied()
                .unwrap_or_else(|| root(&full));
            let key = TileKey {
                level: level_u8(level),
                index,
            };
            self.completed.insert(key, full);
            self.dirty.remove(&level_u8(level));
            level += 1;
        }
        self.size += 1;
    }

    /// The tiles changed since the last call, each with all its hashes.
    pub fn take_changed(&mut self) -> BTreeMap<TileKey, Vec<Hash>> {
        let mut changed = std::mem::take(&mut self.completed);
        for level in std::mem::take(&mut self.dirty) {
            let key = TileKey {
                level,
                index: hashes_at_level(self.size, level) / TILE_WIDTH,
            };
            changed.insert(key, self.last[usize::from(level)].clone());
        }
        changed
    }
}

fn level_u8(level: usize) -> u8 {
    u8::try_from(level).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{inclusion_path, leaf_hash, range_root};

    /// Perfect subtree hashes from fetched tiles.
    struct FetchedTiles(pub HashMap<TileKey, Vec<Hash>>);

    impl SubtreeSource for FetchedTiles {
        type Error = MissingTile;

        fn perfect(&mut self, height: u32, index: u64) -> Result<Hash, MissingTile> {
            let (key, range) = tile_of(height, index);
            let missing = MissingTile {
                level: key.level,
                index: key.index,
            };
            let hashes = self.0.get(&key).ok_or(missing)?;
            hashes.get(range).map(root).ok_or(missing)
        }
    }

    fn leaves(count: u64) -> Vec<Hash> {
        (0..count).map(|n| leaf_hash(&n.to_be_bytes())).collect()
    }

    /// Every tile of a tree built by the appender, as stored.
    fn build(leaves: &[Hash]) -> HashMap<TileKey, Vec<Hash>> {
        let mut appender = TileAppender::default();
        let mut stored = HashMap::new();
        for (count, leaf) in leaves.iter().enumerate() {
            appender.push(*leaf);
            // Taking the changes at uneven points, as rounds do.
            if count % 97 == 0 {
                stored.extend(appender.take_changed());
            }
        }
        stored.extend(appender.take_changed());
        stored
    }

    #[test]
    fn proofs_from_tiles_are_the_proofs_from_every_leaf() {
        let all = leaves(256 * 256 + 300);
        let tiles = build(&all);
        assert_eq!(tiles[&TileKey { level: 2, index: 0 }].len(), 1);
        assert_eq!(tiles[&TileKey { level: 1, index: 1 }].len(), 1);
        assert_eq!(
            tiles[&TileKey {
                level: 0,
                index: 257
            }]
                .len(),
            44
        );

        let mut source = FetchedTiles(tiles);
        for size in [1, 255, 256, 257, 65_536, 65_537, all.len() as u64] {
            let tree = &all[..usize::try_from(size).unwrap()];
            assert_eq!(
                range_root(&mut source, 0, size).unwrap(),
                crate::merkle::root(tree)
            );
            for index in [0, size / 2, size - 1] {
                assert_eq!(
                    inclusion_path(&mut source, index, size).unwrap(),
                    crate::merkle::inclusion_proof(tree, usize::try_from(index).unwrap()),
                    "leaf {index} of {size}"
                );
            }
        }
    }

    #[test]
    fn tiles_given_the_frontier_s_roots_are_the_tiles_hashed_alone() {
        let all = leaves(256 * 256 * 2 + 300);
        let mut frontier = Frontier::default();
        let mut appender = TileAppender::default();
        let mut stored = HashMap::new();
        for leaf in &all {
            appender.push_beside(&mut frontier, *leaf);
        }
        stored.extend(appender.take_changed());
        assert_eq!(stored, build(&all));
    }

    #[test]
    fn a_resumed_appender_writes_the_same_tiles() {
        let all = leaves(256 * 256 + 17);
        let whole = build(&all);
        // Partial tiles on two levels, a full level-0 tile, a full level-1 tile.
        for split in [256 * 2 + 5, 256 * 3, 256 * 256, 256 * 256 + 1] {
            let first = build(&all[..split]);
            let fetched = (TileAppender::tiles_to_resume(split as u64).into_iter())
                .map(|key| (key, first[&key].clone()))
                .collect();
            let mut resumed = TileAppender::resume(split as u64, &fetched).unwrap();
            for leaf in &all[split..] {
                resumed.push(*leaf);
            }
            let mut combined = first;
            combined.extend(resumed.take_changed());

            assert_eq!(combined, whole, "resumed at {split}");
            assert_eq!(resumed.size(), all.len() as u64);
        }
    }
}
