//! Filtered reads (`[search]`): how much of the table a page without an index may
//! look at, and the optional indexes `audit-migrate` builds.

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, invalid};
use crate::search_index::{SearchIndex, SearchIndexes};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SearchSettings {
    /// Ids one filtered page looks at when some condition has no index (and one page
    /// of a reader scoped to some applications without the application index); a page
    /// may then be short, with a `next_page` that continues below what it looked at.
    pub max_scan_rows: u32,
    /// The B-tree indexes `audit-migrate` builds: `application`, `kind`, `time`.
    #[serde(deserialize_with = "index_names")]
    pub indexes: Vec<SearchIndex>,
    /// Whether `audit-migrate` builds the GIN index `payload_contains` uses.
    pub payload_index: bool,
    /// Whether this server posts committed events to the search postings
    /// (`postings::poster`). Off, pages still use what is posted (by other servers, or
    /// before), and walk the ids above it.
    pub postings: bool,
}

impl Default for SearchSettings {
    fn default() -> Self {
        Self {
            max_scan_rows: 10_000,
            indexes: Vec::new(),
            payload_index: false,
            postings: true,
        }
    }
}

/// The index list, where an empty name (`APP_SEARCH__INDEXES=` sets one) is none.
fn index_names<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<SearchIndex>, D::Error> {
    let names = Vec::<String>::deserialize(deserializer)?;
    (names.iter().filter(|name| !name.trim().is_empty()))
        .map(|name| SearchIndex::deserialize(serde::de::value::StrDeserializer::new(name.trim())))
        .collect()
}

impl SearchSettings {
    /// Every index the settings ask for.
    pub fn wanted_indexes(&self) -> SearchIndexes {
        let payload = self.payload_index.then_some(SearchIndex::Payload);
        self.indexes.iter().copied().chain(payload).collect()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_scan_rows == 0 {
            return invalid("search.max_scan_rows", "must be at least 1");
        }
        if self.indexes.contains(&SearchIndex::Payload) {
            return invalid(
                "search.indexes",
                "lists the B-tree indexes (application, kind, time); the payload's is search.payload_index",
            );
        }
        Ok(())
    }
}
