//! A POST body's events as the writer takes them: binary COPY rows, plus how many
//! events each application sent (for `events_inserted_total`, counted after commit).

use std::collections::HashMap;

use crate::batch::EventSink;
use crate::copy::{EncodedRows, RowEncoder};
use crate::event::EventRef;

/// Beyond this many distinct applications in one batch, names are found through a
/// hash map instead of a scan of the list.
const SCAN_LIMIT: usize = 8;

#[derive(Debug, Default)]
pub struct EncodedBatch {
    encoder: RowEncoder,
    applications: ApplicationCounts,
}

impl EncodedBatch {
    /// Room for the rows of a body of this length: a row is shorter than its JSON
    /// (no field names, quotes or text timestamp), so the buffer seldom grows.
    pub fn for_body(body_length: usize) -> Self {
        Self {
            encoder: RowEncoder::with_capacity(body_length),
            applications: ApplicationCounts::default(),
        }
    }

    pub fn into_parts(self) -> (EncodedRows, Vec<(String, u64)>) {
        (self.encoder.into_rows(), self.applications.counts)
    }
}

impl EventSink for EncodedBatch {
    fn accept(&mut self, event: EventRef<'_>) {
        self.encoder.push(event);
        self.applications.add(event.application_name.as_str());
    }
}

/// Events per application name, in order of first appearance, so that which names
/// get their own metric label under the limit does not depend on hash order.
#[derive(Debug, Default)]
struct ApplicationCounts {
    counts: Vec<(String, u64)>,
    /// Positions in `counts`, built once the list is too long to scan.
    positions: HashMap<String, usize>,
}

impl ApplicationCounts {
    fn add(&mut self, name: &str) {
        // Batches mostly come from one application: try the last name first.
        if let Some((last, count)) = self.counts.last_mut()
            && last == name
        {
            *count += 1;
            return;
        }
        let position = if self.counts.len() <= SCAN_LIMIT {
            self.counts.iter().position(|(known, _)| known == name)
        } else {
            if self.positions.is_empty() {
                self.positions = (self.counts.iter().enumerate())
                    .map(|(position, (known, _))| (known.clone(), position))
                    .collect();
            }
            self.positions.get(name).copied()
        };
        match position {
            Some(position) => self.counts[position].1 += 1,
            None => {
                if !self.positions.is_empty() {
                    self.positions.insert(name.to_owned(), self.counts.len());
                }
                self.counts.push((name.to_owned(), 1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts_of(names: &[&str]) -> Vec<(String, u64)> {
        let mut counts = ApplicationCounts::default();
        for name in names {
            counts.add(name);
        }
        counts.counts
    }

    #[test]
    fn applications_are_counted_in_order_of_first_appearance() {
        assert_eq!(
            counts_of(&["b", "a", "b", "b", "c", "a"]),
            vec![
                ("b".to_owned(), 3),
                ("a".to_owned(), 2),
                ("c".to_owned(), 1)
            ]
        );
    }

    #[test]
    fn many_applications_are_counted_the_same_through_the_hash_map() {
        let names: Vec<String> = (0..40).map(|n| format!("app{}", n % 20)).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();

        let counts = counts_of(&names);

        assert_eq!(counts.len(), 20);
        assert!(counts.iter().all(|(_, count)| *count == 2));
        assert_eq!(counts[0].0, "app0");
        assert_eq!(counts[19].0, "app19");
    }
}
