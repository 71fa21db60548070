//! The verifier: recomputes every leaf from the events, the tree from the leaves, and
//! checks each signed checkpoint (the database's, an auditor's older one, the
//! checkpoint log's) against it. It trusts nothing stored but the signatures, and
//! uses the stored tiles and leaf records only to say precisely what differs.
//!
//! Memory: about 100 bytes per leaf (the leaf hashes, the records and an id index).

use std::collections::HashMap;
use std::fmt;

use futures_util::{StreamExt, pin_mut};
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::access::COLLECTOR_APPLICATION;
use crate::checkpoint::Checkpoint;
use crate::database::read_snapshot;
use crate::merkle::{Frontier, Hash, LeafEvent, empty_root};
use crate::partitions::PARTITION_DROPPED;
use crate::repository::stored_event_from_row;
use crate::storage_error::{StorageError, classify};
use crate::tree::order::{Rounds, Xid8, load_rounds};
use crate::tree::records::LeafRecord;
use crate::tree::tiles::split_hashes;

/// Every event, in id order, with what the leaf encodes and the txid the order needs.
const EVENTS: &str = "SELECT id, event_ts, application_name, event_kind, payload::text, \
     token_name, coalesce(txid, '0'::xid8) FROM events ORDER BY id";

/// A signed note to check, and where it came from (for the report).
#[derive(Clone, Debug)]
pub struct NoteToCheck {
    pub source: String,
    pub note: String,
}

/// One thing that does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// The event's row differs from what was sealed; `fields` names what changed
    /// (from the leaf records; empty when they cannot tell).
    Modified {
        id: i64,
        leaf: u64,
        fields: Vec<&'static str>,
    },
    /// A sealed event's row is gone.
    Deleted { id: i64, leaf: u64 },
    /// Retention dropped the partition of ids `first_id..end_id` and recorded (in a
    /// sealed `PartitionDropped` event) that it held `recorded` events, but more sealed
    /// events of that range are gone: some were deleted before the drop.
    DeletedBeforeDrop {
        first_id: i64,
        end_id: i64,
        recorded: Option<i64>,
        gone: u64,
    },
    /// A row that was never sealed where only sealed rows can be.
    Inserted { id: i64, why: &'static str },
    /// The event's row matches what was sealed at another leaf: rows or leaf records
    /// were swapped.
    Reordered {
        id: i64,
        recorded_leaf: u64,
        sealed_leaf: u64,
    },
    /// One event id at two leaves.
    SealedTwice { id: i64, leaves: (u64, u64) },
    /// A checkpoint whose signature does not verify with the given key.
    BadSignature { source: String, problem: String },
    /// A checkpoint whose root is not the root of the tree the events give at its size.
    RootMismatch { source: String, size: u64 },
    /// A checkpoint of more leaves than the stored tree has.
    BeyondTree {
        source: String,
        size: u64,
        tree_size: u64,
    },
    /// The stored tree itself is damaged (missing or torn tiles, records or head).
    Damaged(String),
}

impl fmt::Display for Finding {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Modified { id, leaf, fields } if fields.is_empty() => write!(
                formatter,
                "MODIFIED event {id} (leaf {leaf}): its row is not what was sealed"
            ),
            Self::Modified { id, leaf, fields } => write!(
                formatter,
                "MODIFIED event {id} (leaf {leaf}): {} changed since it was sealed",
                fields.join(", ")
            ),
            Self::Deleted { id, leaf } => write!(
                formatter,
                "DELETED event {id} (leaf {leaf}): sealed, and its row is gone"
            ),
            Self::DeletedBeforeDrop {
                first_id,
                end_id,
                recorded,
                gone,
            } => write!(
                formatter,
                "DELETED before a retention drop: {gone} sealed events with ids in \
                 [{first_id}, {end_id}) are gone, the drop recorded {}",
                recorded.map_or_else(|| "no count".to_owned(), |count| count.to_string())
            ),
            Self::Inserted { id, why } => write!(formatter, "INSERTED event {id}: {why}"),
            Self::Reordered {
                id,
                recorded_leaf,
                sealed_leaf,
            } => write!(
                formatter,
                "REORDERED event {id}: recorded at leaf {recorded_leaf}, but it is what was sealed at leaf {sealed_leaf}"
            ),
            Self::SealedTwice { id, leaves } => write!(
                formatter,
                "SEALED TWICE event {id}: recorded at leaves {} and {}",
                leaves.0, leaves.1
            ),
            Self::BadSignature { source, problem } => {
                write!(
                    formatter,
                    "BAD SIGNATURE on the checkpoint of {source}: {problem}"
                )
            }
            Self::RootMismatch { source, size } => write!(
                formatter,
                "ROOT MISMATCH: the checkpoint of {source} at tree size {size} does not match \
                 the tree the events give (events changed, or a fork)"
            ),
            Self::BeyondTree {
                source,
                size,
                tree_size,
            } => write!(
                formatter,
                "TRUNCATED: the checkpoint of {source} covers {size} leaves, the stored tree has {tree_size}"
            ),
            Self::Damaged(what) => write!(formatter, "DAMAGED stored tree: {what}"),
        }
    }
}

/// What the verifier found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub events: u64,
    pub leaves: u64,
    /// Events committed after the last round: not sealed yet, and not wrong.
    pub unsealed: u64,
    /// Sealed events that retention dropped (their partitions, as the sealed
    /// `PartitionDropped` events record): gone, and not wrong.
    pub pruned: u64,
    /// Checkpoints whose signature and root held.
    pub checkpoints_verified: u64,
    /// The latest checkpoint the database holds, when its signature verified.
    pub latest: Option<Checkpoint>,
}

/// Verifies the database `client` reaches against `verifier_key`, with `extra` notes
/// (an older checkpoint, the checkpoint log) checked as well.
pub async fn verify(
    client: &mut Client,
    verifier_key: &str,
    extra: &[NoteToCheck],
) -> Result<Report, StorageError> {
    let transaction = read_snapshot(client).await?;
    let mut report = Report::default();
    let stored = read_stored_tree(&transaction, &mut report).await?;
    let mut leaves = stored.hashes;
    let records = stored.records;
    report.leaves = leaves.len() as u64;

    // The leaves by event id, to meet the events in id order.
    let mut by_id: Vec<(i64, u64)> = (records.iter().enumerate())
        .map(|(leaf, record)| (record.id, leaf as u64))
        .collect();
    by_id.sort_unstable();
    for pair in by_id.windows(2) {
        if pair[0].0 == pair[1].0 {
            report.findings.push(Finding::SealedTwice {
                id: pair[0].0,
                leaves: (pair[0].1, pair[1].1),
            });
        }
    }
    let mut seen = vec![false; leaves.len()];
    // (id, leaf, the row's hash, the stored hash, the changed fields)
    let mut mismatched: Vec<(i64, u64, Hash, Hash, Vec<&'static str>)> = Vec::new();
    let mut next = 0usize;
    // The drops the log itself records, from sealed events only: a row forged or
    // changed to look like one cannot excuse a deletion.
    let mut drops: Vec<RecordedDrop> = Vec::new();

    let statement = transaction.prepare(EVENTS).await.map_err(classify)?;
    let rows = transaction
        .query_raw(&statement, std::iter::empty::<&(dyn ToSql + Sync)>())
        .await
        .map_err(classify)?;
    pin_mut!(rows);
    while let Some(row) = rows.next().await {
        let row = row.map_err(classify)?;
        let event = stored_event_from_row(&row, 0)?;
        let token_name: Option<&str> = row.try_get(5).map_err(classify)?;
        let Xid8(txid) = row.try_get(6).map_err(classify)?;
        report.events += 1;
        while next < by_id.len() && by_id[next].0 < event.id {
            next += 1;
        }
        let leaf = LeafEvent { event, token_name };
        let at = (next < by_id.len() && by_id[next].0 == event.id).then(|| by_id[next].1);
        let Some(at) = at else {
            if stored.horizon.is_some_and(|horizon| txid < horizon) {
                report.findings.push(Finding::Inserted {
                    id: event.id,
                    why: "committed before the sealed horizon, yet not in the tree",
                });
            } else if !stored.rounds.drawn_in_order(txid, event.id) {
                report.findings.push(Finding::Inserted {
                    id: event.id,
                    why: "its id lies inside the sealed range but was not drawn by the \
                          database for its transaction (written by hand)",
                });
            } else {
                report.unsealed += 1;
            }
            continue;
        };
        let index = usize::try_from(at).unwrap_or(usize::MAX);
        seen[index] = true;
        let hash = leaf.hash();
        if hash == leaves[index]
            && let Some(drop) = RecordedDrop::of(&leaf)
        {
            drops.push(drop);
        }
        let fields = records[index].changed_fields(&LeafRecord::of(&leaf));
        if hash != leaves[index] {
            mismatched.push((event.id, at, hash, leaves[index], fields));
        } else if !fields.is_empty() {
            // The stored hash was rewritten to match the row: the records (and the
            // signed checkpoints, below) still tell.
            report.findings.push(Finding::Modified {
                id: event.id,
                leaf: at,
                fields,
            });
        }
        leaves[index] = hash;
    }

    transaction.commit().await.map_err(classify)?;

    // A changed row whose content was sealed at another leaf was moved, not edited.
    let stored_at: HashMap<Hash, u64> = (mismatched.iter())
        .map(|(_, leaf, _, stored_hash, _)| (*stored_hash, *leaf))
        .collect();
    for (id, leaf, hash, _, fields) in mismatched {
        match stored_at.get(&hash) {
            Some(sealed_leaf) if *sealed_leaf != leaf => report.findings.push(Finding::Reordered {
                id,
                recorded_leaf: leaf,
                sealed_leaf: *sealed_leaf,
            }),
            _ => report.findings.push(Finding::Modified { id, leaf, fields }),
        }
    }
    let mut gone_by_drop = vec![0u64; drops.len()];
    for (index, record) in records.iter().enumerate() {
        if seen[index] {
            continue;
        }
        match drops.iter().position(|drop| drop.covers(record.id)) {
            Some(drop) => gone_by_drop[drop] += 1,
            None => report.findings.push(Finding::Deleted {
                id: record.id,
                leaf: index as u64,
            }),
        }
    }
    for (drop, gone) in drops.iter().zip(gone_by_drop) {
        // Events unsealed when their partition was dropped were never leaves, so
        // fewer may be gone than were dropped; more means deletions.
        if drop
            .events
            .is_none_or(|recorded| gone > recorded.unsigned_abs())
        {
            report.findings.push(Finding::DeletedBeforeDrop {
                first_id: drop.first_id,
                end_id: drop.end_id,
                recorded: drop.events,
                gone,
            });
        } else {
            report.pruned += gone;
        }
    }
    check_checkpoints(
        &leaves,
        &stored.checkpoints,
        extra,
        verifier_key,
        &mut report,
    );
    Ok(report)
}

/// A partition drop as its sealed `PartitionDropped` event records it.
struct RecordedDrop {
    first_id: i64,
    end_id: i64,
    events: Option<i64>,
}

impl RecordedDrop {
    fn of(leaf: &LeafEvent<'_>) -> Option<Self> {
        let event = &leaf.event;
        if event.application_name != COLLECTOR_APPLICATION || event.event_kind != PARTITION_DROPPED
        {
            return None;
        }
        let details: serde_json::Value = serde_json::from_str(event.payload).ok()?;
        Some(Self {
            first_id: details.get("first_id")?.as_i64()?,
            end_id: details.get("end_id")?.as_i64()?,
            events: details.get("events").and_then(serde_json::Value::as_i64),
        })
    }

    fn covers(&self, id: i64) -> bool {
        (self.first_id..self.end_id).contains(&id)
    }
}

struct StoredTree {
    hashes: Vec<Hash>,
    records: Vec<LeafRecord>,
    horizon: Option<i64>,
    rounds: Rounds,
    checkpoints: Vec<NoteToCheck>,
}

async fn read_stored_tree(
    client: &impl tokio_postgres::GenericClient,
    report: &mut Report,
) -> Result<StoredTree, StorageError> {
    let head = client
        .query_opt("SELECT size, horizon::text::bigint FROM tree_head", &[])
        .await
        .map_err(classify)?;
    let (size, horizon): (i64, Option<i64>) = match head {
        Some(row) => (
            row.try_get(0).map_err(classify)?,
            row.try_get(1).map_err(classify)?,
        ),
        None => (0, None),
    };
    let mut hashes = Vec::new();
    for row in client
        .query(
            "SELECT tile, hashes FROM tree_tiles WHERE level = 0 ORDER BY tile",
            &[],
        )
        .await
        .map_err(classify)?
    {
        let tile: i64 = row.try_get(0).map_err(classify)?;
        let bytes: Vec<u8> = row.try_get(1).map_err(classify)?;
        if tile != (hashes.len() / 256) as i64 || hashes.len() % 256 != 0 {
            report.findings.push(Finding::Damaged(format!(
                "level-0 tile {tile} is out of place"
            )));
        }
        match split_hashes(&bytes) {
            Some(tile_hashes) => hashes.extend(tile_hashes),
            None => report
                .findings
                .push(Finding::Damaged(format!("level-0 tile {tile} is torn"))),
        }
    }
    let mut records = Vec::new();
    for row in client
        .query("SELECT tile, records FROM tree_leaves ORDER BY tile", &[])
        .await
        .map_err(classify)?
    {
        let tile: i64 = row.try_get(0).map_err(classify)?;
        let bytes: Vec<u8> = row.try_get(1).map_err(classify)?;
        match LeafRecord::parse_all(&bytes) {
            Some(tile_records) => records.extend(tile_records),
            None => report.findings.push(Finding::Damaged(format!(
                "the leaf records of tile {tile} are torn"
            ))),
        }
    }
    if hashes.len() as i64 != size || records.len() as i64 != size {
        report.findings.push(Finding::Damaged(format!(
            "the head says {size} leaves, the tiles hold {} hashes and {} records",
            hashes.len(),
            records.len()
        )));
        let common = hashes.len().min(records.len());
        hashes.truncate(common);
        records.truncate(common);
    }
    let rounds = load_rounds(client).await?;
    let checkpoints = client
        .query("SELECT size, note FROM tree_checkpoints ORDER BY size", &[])
        .await
        .map_err(classify)?
        .iter()
        .map(|row| {
            let size: i64 = row.try_get(0).map_err(classify)?;
            Ok(NoteToCheck {
                source: format!("the database (size {size})"),
                note: row.try_get(1).map_err(classify)?,
            })
        })
        .collect::<Result<Vec<_>, StorageError>>()?;
    Ok(StoredTree {
        hashes,
        records,
        horizon,
        rounds,
        checkpoints,
    })
}

/// Checks every note's signature and its root against the recomputed tree.
fn check_checkpoints(
    leaves: &[Hash],
    stored: &[NoteToCheck],
    extra: &[NoteToCheck],
    verifier_key: &str,
    report: &mut Report,
) {
    // Size -> the notes claiming a root at that size.
    let mut claims: HashMap<u64, Vec<(String, Hash)>> = HashMap::new();
    for (position, note) in stored.iter().chain(extra).enumerate() {
        let from_database = position < stored.len();
        match Checkpoint::open(&note.note, verifier_key) {
            Err(error) => report.findings.push(Finding::BadSignature {
                source: note.source.clone(),
                problem: error.to_string(),
            }),
            Ok(checkpoint) if checkpoint.size > leaves.len() as u64 => {
                report.findings.push(Finding::BeyondTree {
                    source: note.source.clone(),
                    size: checkpoint.size,
                    tree_size: leaves.len() as u64,
                })
            }
            Ok(checkpoint) => {
                if from_database
                    && report
                        .latest
                        .as_ref()
                        .is_none_or(|latest| latest.size <= checkpoint.size)
                {
                    report.latest = Some(checkpoint.clone());
                }
                claims
                    .entry(checkpoint.size)
                    .or_default()
                    .push((note.source.clone(), checkpoint.root));
            }
        }
    }
    let check = |size: u64, root: Hash, claimed: Vec<(String, Hash)>, report: &mut Report| {
        for (source, claimed) in claimed {
            if claimed == root {
                report.checkpoints_verified += 1;
            } else {
                report.findings.push(Finding::RootMismatch { source, size });
            }
        }
    };
    if let Some(claimed) = claims.remove(&0) {
        check(0, empty_root(), claimed, report);
    }
    let mut frontier = Frontier::default();
    for leaf in leaves {
        frontier.push(*leaf);
        if let Some(claimed) = claims.remove(&frontier.size()) {
            check(frontier.size(), frontier.root(), claimed, report);
        }
    }
}
