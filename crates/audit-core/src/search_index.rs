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

    /// What the index covers, after `ON`.
    pub fn definition(self) -> &'static str {
        match self {
            Self::Application => "events (application_name, id)",
            Self::Kind => "events (event_kind, id)",
            Self::Time => "events (event_ts, id)",
            // The column is `json` (the original's type, kept for its exact text), so
            // the index is on the cast that `payload_contains` queries with.
            Self::Payload => "events USING gin ((payload::jsonb) jsonb_path_ops)",
        }
    }

    /// Builds the index without blocking writers (`CONCURRENTLY`).
    pub fn create_statement(self) -> String {
        format!(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {}",
            self.name(),
            self.definition()
        )
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
/// returns those it built. A build that an earlier run left invalid (interrupted) is
/// dropped and made again. Indexes not wanted are left alone: dropping one is the
/// operator's decision (README, "Search indexes").
pub async fn create_missing(
    client: &tokio_postgres::Client,
    wanted: SearchIndexes,
) -> Result<Vec<SearchIndex>, StorageError> {
    let present = existing(client).await?;
    let mut built = Vec::new();
    for index in wanted.iter().filter(|index| !present.contains(*index)) {
        let drop_invalid = format!("DROP INDEX CONCURRENTLY IF EXISTS {}", index.name());
        client
            .batch_execute(&drop_invalid)
            .await
            .map_err(classify)?;
        client
            .batch_execute(&index.create_statement())
            .await
            .map_err(classify)?;
        built.push(index);
    }
    Ok(built)
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
