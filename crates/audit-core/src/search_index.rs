//! The optional indexes of filtered reads: which exist, and how `audit-migrate`
//! creates those the configuration asks for.
//!
//! None is part of the migrations, because each one slows every insert (BENCHMARKS.md,
//! "Search indexes", measures each). A filtered page whose every condition has its
//! index reads through them with a full page at a cost that does not grow with the
//! table; any other filtered page walks a bounded window of ids (`filter::ScanWindow`).
//! The server rereads which indexes exist (`EventRepository::refresh_search_indexes`),
//! so an index an operator builds or drops takes effect without a restart.

use serde::{Deserialize, Serialize};

use crate::database::quote_identifier;
use crate::storage_error::{StorageError, classify};

/// One optional index of the events table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchIndex {
    /// `(application_name, id)`: pages of some applications, and scoped readers.
    Application,
    /// `(event_kind, id)`: pages of some kinds.
    Kind,
    /// `(event_ts, id)`: time windows.
    Time,
    /// GIN over the payload as `jsonb` (`jsonb_path_ops`): `payload_contains`.
    Payload,
}

impl SearchIndex {
    pub const ALL: [Self; 4] = [Self::Application, Self::Kind, Self::Time, Self::Payload];

    /// The index's name in the database.
    pub fn name(self) -> &'static str {
        match self {
            // The name scoped readers have used since the index was first documented.
            Self::Application => "events_application_name_id",
            Self::Kind => "events_event_kind_id",
            Self::Time => "events_event_ts_id",
            Self::Payload => "events_payload_jsonb",
        }
    }

    /// What the index covers, after `ON <table>`.
    pub fn columns(self) -> &'static str {
        match self {
            Self::Application => "(application_name, id)",
            Self::Kind => "(event_kind, id)",
            Self::Time => "(event_ts, id)",
            // The column is `json` (the original's type, kept for its exact text), so
            // the index is on the cast that `payload_contains` queries with.
            Self::Payload => "USING gin ((payload::jsonb) jsonb_path_ops)",
        }
    }

    /// The name of its part on one partition.
    fn name_on(self, partition: &str) -> String {
        let suffix = self.name().strip_prefix("events_").unwrap_or(self.name());
        format!("{partition}_{suffix}")
    }

    fn bit(self) -> u8 {
        match self {
            Self::Application => 1,
            Self::Kind => 2,
            Self::Time => 4,
            Self::Payload => 8,
        }
    }
}

/// A set of [`SearchIndex`]es, small enough to share as one atomic byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SearchIndexes(u8);

impl SearchIndexes {
    pub fn from_bits(bits: u8) -> Self {
        Self(bits)
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    pub fn contains(self, index: SearchIndex) -> bool {
        self.0 & index.bit() != 0
    }

    #[must_use]
    pub fn with(self, index: SearchIndex) -> Self {
        Self(self.0 | index.bit())
    }

    pub fn iter(self) -> impl Iterator<Item = SearchIndex> {
        SearchIndex::ALL
            .into_iter()
            .filter(move |index| self.contains(*index))
    }
}

impl FromIterator<SearchIndex> for SearchIndexes {
    fn from_iter<I: IntoIterator<Item = SearchIndex>>(indexes: I) -> Self {
        indexes.into_iter().fold(Self::default(), Self::with)
    }
}

/// The optional indexes that exist and are valid (a concurrent build still running,
/// or one that failed, is not).
pub async fn existing(client: &tokio_postgres::Client) -> Result<SearchIndexes, StorageError> {
    let names: Vec<&str> = SearchIndex::ALL.iter().map(|index| index.name()).collect();
    let rows = client
        .query(
            "SELECT name FROM unnest($1::text[]) AS name \
             JOIN pg_index ON indexrelid = to_regclass(name) WHERE indisvalid",
            &[&names],
        )
        .await
        .map_err(classify)?;
    let mut found = SearchIndexes::default();
    for row in rows {
        let name: &str = row.try_get(0).map_err(classify)?;
        if let Some(index) = SearchIndex::ALL.into_iter().find(|i| i.name() == name) {
            found = found.with(index);
        }
    }
    Ok(found)
}

/// Builds each of `wanted` that does not exist yet, without blocking writers, and
/// returns those it built. Indexes not wanted are left alone: dropping one is the
/// operator's decision (README, "Search indexes").
///
/// `events` is partitioned, and an index on it cannot be built `CONCURRENTLY`: the
/// index is declared on the partitioned table alone (invalid, and unused, until it
/// has a part on every partition), each partition's part is built concurrently and
/// attached, and then it is valid. Partitions made later get their part as they are
/// attached (empty, at once). A part an earlier run left invalid is built again.
pub async fn create_missing(
    client: &tokio_postgres::Client,
    wanted: SearchIndexes,
) -> Result<Vec<SearchIndex>, StorageError> {
    let present = existing(client).await?;
    let mut built = Vec::new();
    for index in wanted.iter().filter(|index| !present.contains(*index)) {
        let declare = format!(
            "CREATE INDEX IF NOT EXISTS {} ON ONLY events {}",
            index.name(),
            index.columns()
        );
        client.batch_execute(&declare).await.map_err(classify)?;
        for partition in partitions_without(client, index).await? {
            build_on_partition(client, index, &partition).await?;
        }
        built.push(index);
    }
    Ok(built)
}

/// The partitions of `events` that lack a valid part of `index`.
async fn partitions_without(
    client: &tokio_postgres::Client,
    index: SearchIndex,
) -> Result<Vec<String>, StorageError> {
    let rows = client
        .query(
            "SELECT partition.inhrelid::regclass::text FROM pg_inherits AS partition \
             WHERE partition.inhparent = 'events'::regclass AND NOT partition.inhdetachpending \
             AND NOT EXISTS (SELECT 1 FROM pg_inherits AS part \
                 JOIN pg_index ON pg_index.indexrelid = part.inhrelid \
                 WHERE part.inhparent = to_regclass($1) \
                 AND pg_index.indrelid = partition.inhrelid AND pg_index.indisvalid)",
            &[&index.name()],
        )
        .await
        .map_err(classify)?;
    rows.iter()
        .map(|row| row.try_get(0).map_err(classify))
        .collect()
}

async fn build_on_partition(
    client: &tokio_postgres::Client,
    index: SearchIndex,
    partition: &str,
) -> Result<(), StorageError> {
    let part = quote_identifier(&index.name_on(partition));
    let statements = [
        format!("DROP INDEX CONCURRENTLY IF EXISTS {part}"),
        format!(
            "CREATE INDEX CONCURRENTLY {part} ON {} {}",
            quote_identifier(partition),
            index.columns()
        ),
        format!("ALTER INDEX {} ATTACH PARTITION {part}", index.name()),
    ];
    for statement in statements {
        client.batch_execute(&statement).await.map_err(classify)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_holds_exactly_the_indexes_put_in_it() {
        let set: SearchIndexes = [SearchIndex::Kind, SearchIndex::Payload]
            .into_iter()
            .collect();
        assert!(set.contains(SearchIndex::Kind) && set.contains(SearchIndex::Payload));
        assert!(!set.contains(SearchIndex::Application) && !set.contains(SearchIndex::Time));
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [SearchIndex::Kind, SearchIndex::Payload]
        );
        assert_eq!(SearchIndexes::from_bits(set.bits()), set);
    }

    #[test]
    fn every_index_has_its_own_name_and_bit() {
        let names: std::collections::HashSet<_> =
            SearchIndex::ALL.iter().map(|index| index.name()).collect();
        let all: SearchIndexes = SearchIndex::ALL.into_iter().collect();
        assert_eq!(names.len(), 4);
        assert_eq!(all.iter().count(), 4);
    }
}
