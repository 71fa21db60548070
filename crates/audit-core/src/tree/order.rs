//! The commit-safe order of events, and how far back an unsealed event can be.
//!
//! An event is sealed once its transaction's txid is below the xmin of the sealer's
//! snapshot: then that transaction and every one before it has ended, and any
//! transaction still to commit has a larger txid. Events are sealed in (txid, id)
//! order, each round taking the txids from the last round's xmin up to its own.
//!
//! To find those events without an index on txid, each round reads the id
//! sequence's value (`id_bound`), then takes a txid of its own, larger than every
//! txid handed out before it, and records the next one (`next_xid`). An event's id is
//! drawn only after its transaction has its txid (the column default of migration
//! V4), so a transaction whose txid is at or above a round's `next_xid` got it after
//! that round read the sequence and draws ids above that round's `id_bound`. Every
//! unsealed event therefore lies above the bound of the latest round whose `next_xid`
//! is at most the horizon, and an event below the bound its own txid implies was not
//! written through the column default: it was given its id by hand. (A snapshot's
//! xmax would not do for `next_xid`: a txid at or above it may already be running.)

use crate::storage_error::{StorageError, classify};

/// The last id the sequence handed out (0 before the first): an id bound.
pub const SEQUENCE_VALUE: &str =
    "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM events_id_seq";

/// A txid as PostgreSQL's `xid8` sends it (an unsigned 64-bit integer; far below
/// 2^63 for any database this side of a billion years), read without a text cast.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Xid8(pub i64);

impl<'a> postgres_types::FromSql<'a> for Xid8 {
    fn from_sql(
        _: &postgres_types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let bytes: [u8; 8] = raw.try_into()?;
        Ok(Self(i64::try_from(u64::from_be_bytes(bytes))?))
    }

    fn accepts(ty: &postgres_types::Type) -> bool {
        ty.name() == "xid8"
    }
}

/// The rounds as stored.
pub async fn load_rounds(
    client: &impl tokio_postgres::GenericClient,
) -> Result<Rounds, StorageError> {
    let rounds = client
        .query(
            "SELECT next_xid::text::bigint, id_bound FROM tree_rounds",
            &[],
        )
        .await
        .map_err(classify)?
        .iter()
        .map(|row| {
            Ok(Round {
                next_xid: row.try_get(0).map_err(classify)?,
                id_bound: row.try_get(1).map_err(classify)?,
            })
        })
        .collect::<Result<Vec<_>, StorageError>>()?;
    Ok(Rounds::new(rounds))
}

/// One sealing round, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Round {
    pub next_xid: i64,
    pub id_bound: i64,
}

/// The rounds still needed, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rounds(Vec<Round>);

impl Rounds {
    pub fn new(mut rounds: Vec<Round>) -> Self {
        rounds.sort_by_key(|round| round.next_xid);
        Self(rounds)
    }

    pub fn as_slice(&self) -> &[Round] {
        &self.0
    }

    /// The id every event of a transaction with this txid or a later one is above:
    /// the bound of the latest round whose snapshot came before the txid was handed
    /// out (0 when no round did).
    pub fn id_floor(&self, txid: i64) -> i64 {
        let before = self.0.partition_point(|round| round.next_xid <= txid);
        before
            .checked_sub(1)
            .map_or(0, |latest| self.0[latest].id_bound)
    }

    /// Whether an event's id could have been drawn by its transaction through the
    /// column default; an id at or below the floor was chosen by whoever inserted it.
    pub fn drawn_in_order(&self, txid: i64, id: i64) -> bool {
        id > self.id_floor(txid)
    }

    /// Adds a round (a repeat of the latest `next_xid` adds nothing: no txid was
    /// handed out between them, so the earlier, lower bound stays right).
    pub fn push(&mut self, round: Round) {
        if self
            .0
            .last()
            .is_none_or(|last| last.next_xid < round.next_xid)
        {
            self.0.push(round);
        }
    }

    /// Forgets rounds no event at or above `horizon` can need: all before the latest
    /// round whose `next_xid` is at most the horizon.
    pub fn prune(&mut self, horizon: i64) {
        let before = self.0.partition_point(|round| round.next_xid <= horizon);
        if before > 1 {
            self.0.drain(..before - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rounds() -> Rounds {
        Rounds::new(vec![
            Round {
                next_xid: 200,
                id_bound: 50,
            },
            Round {
                next_xid: 100,
                id_bound: 10,
            },
        ])
    }

    #[test]
    fn the_floor_is_the_bound_of_the_last_round_before_the_txid() {
        let rounds = rounds();
        assert_eq!(rounds.id_floor(99), 0);
        assert_eq!(rounds.id_floor(100), 10);
        assert_eq!(rounds.id_floor(199), 10);
        assert_eq!(rounds.id_floor(5000), 50);
        assert!(rounds.drawn_in_order(150, 11));
        assert!(!rounds.drawn_in_order(150, 10));
        assert!(rounds.drawn_in_order(50, 1));
    }

    #[test]
    fn pruning_keeps_what_the_horizon_still_needs() {
        let mut rounds = rounds();
        rounds.push(Round {
            next_xid: 200,
            id_bound: 60,
        });
        rounds.push(Round {
            next_xid: 300,
            id_bound: 90,
        });
        assert_eq!(rounds.as_slice().len(), 3);

        rounds.prune(250);

        assert_eq!(rounds.id_floor(250), 50);
        assert_eq!(rounds.id_floor(300), 90);
        assert_eq!(rounds.as_slice().len(), 2);
    }
}
