//! Proofs served from the stored tree: an event's inclusion in a checkpointed tree,
//! and the consistency of two checkpointed sizes. Only the slices of tiles a proof
//! needs are read (one per perfect subtree it names, fetched at once).

use deadpool_postgres::Client;

use crate::merkle::{self, Hash, LeafContent, SubtreeSource, Wanted};
use crate::repository::event_ts_at;
use crate::storage_error::{StorageError, classify};
use crate::tree::records::LeafRecord;
use crate::tree::tiles::{FetchedSubtrees, MissingTile, TILE_WIDTH, read_subtrees};

/// A signed checkpoint as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub note: String,
}

/// An inclusion proof, as `/api/event/{id}/proof` answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub leaf_hash: Hash,
    pub path: Vec<Hash>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProofReadError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the stored tree is missing a tile it should have: {0}")]
    Missing(#[from] MissingTile),
}

const LATEST_CHECKPOINT: &str =
    "SELECT size, note FROM tree_checkpoints ORDER BY size DESC LIMIT 1";
const CHECKPOINT_OF_SIZE: &str = "SELECT size, note FROM tree_checkpoints WHERE size = $1";
/// The event's application, and each leaf tile whose id range holds its id (ranges of
/// neighbouring tiles overlap where commits interleaved); no tile when not sealed.
const EVENT_AND_TILES: &str = "SELECT e.application_name, l.tile, l.records, \
     e.event_ts, e.event_kind, e.payload::text, e.token_name \
     FROM events AS e \
     LEFT JOIN tree_leaves AS l ON int8range(l.min_id, l.max_id, '[]') @> e.id \
     WHERE e.id = $1";

/// The latest checkpoint, or the one of exactly `size` leaves.
pub async fn checkpoint(
    client: &Client,
    size: Option<u64>,
) -> Result<Option<StoredCheckpoint>, StorageError> {
    let row = match size {
        None => {
            let statement = client
                .prepare_cached(LATEST_CHECKPOINT)
                .await
                .map_err(classify)?;
            client.query_opt(&statement, &[]).await
        }
        Some(size) => {
            let size = i64::try_from(size).unwrap_or(i64::MAX);
            let statement = client
                .prepare_cached(CHECKPOINT_OF_SIZE)
                .await
                .map_err(classify)?;
            client.query_opt(&statement, &[&size]).await
        }
    }
    .map_err(classify)?;
    row.map(|row| {
        let size: i64 = row.try_get(0).map_err(classify)?;
        Ok(StoredCheckpoint {
            size: u64::try_from(size).unwrap_or(0),
            note: row.try_get(1).map_err(classify)?,
        })
    })
    .transpose()
}

/// An event as its proof names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundLeaf {
    pub application: String,
    /// Its leaf index, once it is sealed.
    pub leaf_index: Option<u64>,
    /// The leaf's content bytes (`merkle::leaf`) recomputed from the row as stored
    /// now: a client hashes them itself, so a changed row fails its proof.
    pub content: Vec<u8>,
}

/// Event `id` with its leaf index (none when no event has it).
pub async fn find_leaf(client: &Client, id: i64) -> Result<Option<FoundLeaf>, StorageError> {
    let statement = client
        .prepare_cached(EVENT_AND_TILES)
        .await
        .map_err(classify)?;
    let rows = client.query(&statement, &[&id]).await.map_err(classify)?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let event_ts = event_ts_at(first, 3, id)?;
    let application: String = first.try_get(0).map_err(classify)?;
    let content = LeafContent {
        event_ts,
        application_name: &application,
        event_kind: first.try_get(4).map_err(classify)?,
        payload: first.try_get(5).map_err(classify)?,
        token_name: first.try_get(6).map_err(classify)?,
    }
    .bytes();
    let mut leaf_index = None;
    for row in &rows {
        let Some(tile) = row.try_get::<_, Option<i64>>(1).map_err(classify)? else {
            continue;
        };
        let bytes: Vec<u8> = row.try_get(2).map_err(classify)?;
        let records = LeafRecord::parse_all(&bytes).unwrap_or_default();
        if let Some(position) = records.iter().position(|record| record.id == id) {
            let tile = u64::try_from(tile).unwrap_or(0);
            leaf_index = Some(tile * TILE_WIDTH + position as u64);
            break;
        }
    }
    Ok(Some(FoundLeaf {
        application,
        leaf_index,
        content,
    }))
}

/// The inclusion proof of leaf `leaf_index` in the tree of `tree_size` leaves.
pub async fn inclusion(
    client: &Client,
    leaf_index: u64,
    tree_size: u64,
) -> Result<Option<InclusionProof>, ProofReadError> {
    if leaf_index >= tree_size {
        return Ok(None);
    }
    let mut wanted = Wanted::default();
    let Ok(_) = merkle::inclusion_path(&mut wanted, leaf_index, tree_size);
    // The leaf itself: the perfect subtree of height 0 at its index.
    wanted.0.push((0, leaf_index));
    let mut tiles = fetch(client, &wanted).await?;
    let leaf_hash = tiles.perfect(0, leaf_index)?;
    let path = merkle::inclusion_path(&mut tiles, leaf_index, tree_size)?.unwrap_or_default();
    Ok(Some(InclusionProof {
        leaf_index,
        tree_size,
        leaf_hash,
        path,
    }))
}

/// The consistency proof between the trees of `first` and `second` leaves.
pub async fn consistency(
    client: &Client,
    first: u64,
    second: u64,
) -> Result<Option<Vec<Hash>>, ProofReadError> {
    let mut wanted = Wanted::default();
    let Ok(_) = merkle::consistency_path(&mut wanted, first, second);
    let mut tiles = fetch(client, &wanted).await?;
    Ok(merkle::consistency_path(&mut tiles, first, second)?)
}

/// The subtrees `wanted` names, from their tiles.
async fn fetch(client: &Client, wanted: &Wanted) -> Result<FetchedSubtrees, StorageError> {
    read_subtrees(client, &wanted.0).await
}
