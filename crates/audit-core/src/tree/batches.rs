//! Seal batches (migration V6): what the sealer needs of a group commit's events,
//! stored by the writer in one row of `seal_batches` in the group's own transaction.
//!
//! Reading every event's row back through the primary key was half of the sealer's
//! database time (measured under full ingest); a batch gives a round the same leaves
//! from a few rows. A batch is a shortcut, never the only way: the sealer reads from
//! `events` every id that no batch it read covers (`Sealer::round`), so a transaction
//! without a batch (a row written by hand, an older collector, a batch lost with the
//! unlogged table) is sealed as before.

use crate::merkle::{Hash, SEAL_BYTES, leaf_hash_of};
use crate::tree::records::LeafRecord;

/// One leaf of a batch: id, `event_ts` in microseconds since 1970, seal.
pub const BATCH_LEAF_BYTES: usize = 16 + SEAL_BYTES;

/// Stores a group's batch; its txid is the transaction's own (the column default).
pub const INSERT_SEAL_BATCH: &str = "INSERT INTO seal_batches (leaves) VALUES ($1)";

/// The batches of the transactions a round seals.
pub const SEAL_BATCHES_BETWEEN: &str = "SELECT txid, leaves FROM seal_batches \
     WHERE txid >= ($1::bigint)::text::xid8 AND txid < ($2::bigint)::text::xid8";

/// Forgets the batches a round sealed (and any older ones, sealed before).
pub const DELETE_SEAL_BATCHES_BELOW: &str =
    "DELETE FROM seal_batches WHERE txid < ($1::bigint)::text::xid8";

/// Appends one event's leaf to a batch being written.
pub fn push_batch_leaf(
    leaves: &mut Vec<u8>,
    id: i64,
    event_ts_micros: i64,
    seal: &[u8; SEAL_BYTES],
) {
    leaves.extend_from_slice(&id.to_be_bytes());
    leaves.extend_from_slice(&event_ts_micros.to_be_bytes());
    leaves.extend_from_slice(seal);
}

/// The leaf hashes and records of a stored batch, in its order; none when its length
/// is not whole leaves.
pub fn parse_batch(leaves: &[u8]) -> Option<Vec<(Hash, LeafRecord)>> {
    if !leaves.len().is_multiple_of(BATCH_LEAF_BYTES) {
        return None;
    }
    let leaves = leaves.chunks_exact(BATCH_LEAF_BYTES).map(|leaf| {
        let word = |at: usize| {
            let mut eight = [0; 8];
            eight.copy_from_slice(&leaf[at..at + 8]);
            i64::from_be_bytes(eight)
        };
        let mut seal = [0; SEAL_BYTES];
        seal.copy_from_slice(&leaf[16..]);
        sealed_leaf(word(0), word(8), &seal)
    });
    Some(leaves.collect())
}

/// An event's leaf hash and record from its id, `event_ts` and seal, with no text of
/// it at hand.
pub fn sealed_leaf(id: i64, event_ts_micros: i64, seal: &[u8; SEAL_BYTES]) -> (Hash, LeafRecord) {
    let mut digest = [0; 32];
    digest.copy_from_slice(&seal[..32]);
    let mut fingerprints = [[0; 4]; 4];
    for (at, fingerprint) in fingerprints.iter_mut().enumerate() {
        fingerprint.copy_from_slice(&seal[32 + 4 * at..36 + 4 * at]);
    }
    let record = LeafRecord {
        id,
        event_ts_micros,
        fingerprints,
    };
    (leaf_hash_of(id, &digest), record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::StoredEvent;
    use crate::merkle::LeafEvent;
    use crate::timestamp::EventTimestamp;

    #[test]
    fn a_batch_leaf_gives_the_hash_and_record_of_the_event_itself() {
        let event = LeafEvent {
            event: StoredEvent {
                id: 42,
                event_ts: EventTimestamp::parse("2024-02-29T12:00:00.000001Z").unwrap(),
                application_name: "billing",
                event_kind: "Refund",
                payload: r#"{"amount":3}"#,
            },
            token_name: Some("ci"),
        };
        let content = event.content();
        let mut leaves = Vec::new();
        push_batch_leaf(&mut leaves, 42, content.event_ts_micros(), &content.seal());
        push_batch_leaf(&mut leaves, 43, 7, &[0; SEAL_BYTES]);

        let parsed = parse_batch(&leaves).unwrap();

        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0], (event.hash(), LeafRecord::of(&event)));
        assert_eq!(parsed[1].1.id, 43);
        assert_eq!(parsed[1].1.event_ts_micros, 7);
        assert_eq!(parse_batch(&leaves[..BATCH_LEAF_BYTES + 1]), None);
    }
}
