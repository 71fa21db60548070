//! A POST body's events as the writer takes them: binary COPY rows, plus how many
//! events each application sent (for `events_inserted_total`, counted after commit),
//! and which events the writer may not store.

use std::collections::HashMap;

use crate::batch::{EventSink, MAX_REPORTED_PROBLEMS, Problem, WriteGrant};
use crate::copy::{EncodedRows, RowEncoder, SealColumn};
use crate::event::EventRef;

/// Beyond this many distinct applications in one batch, names are found through a
/// hash map instead of a scan of the list.
const SCAN_LIMIT: usize = 8;

#[derive(Debug)]
pub struct EncodedBatch<'grant> {
    encoder: RowEncoder,
    applications: ApplicationCounts,
    grant: WriteGrant<'grant>,
    /// Position of the next event: every event reaches the sink while a batch is
    /// valid, and a refusal is only reported for a valid batch.
    next_index: usize,
    refused: Vec<Problem>,
}

impl<'grant> EncodedBatch<'grant> {
    /// Room for the rows of a body of this length: a row is shorter than its JSON
    /// (no field names, quotes or text timestamp), so the buffer seldom grows.
    pub fn for_body(body_length: usize, grant: WriteGrant<'grant>, seal: SealColumn) -> Self {
        Self {
            encoder: RowEncoder::with_capacity(body_length)
                .written_by(grant.token_name)
                .sealed(seal),
            applications: ApplicationCounts::default(),
            grant,
            next_index: 0,
            refused: Vec::new(),
        }
    }

    pub fn into_parts(self) -> (EncodedRows, Vec<(String, u64)>) {
        let counts = (self.applications.counts.into_iter())
            .map(|count| (count.name, count.events))
            .collect();
        (self.encoder.into_rows(), counts)
    }

    /// The events the grant does not cover (the first [`MAX_REPORTED_PROBLEMS`]).
    pub fn refused(&self) -> &[Problem] {
        &self.refused
    }
}

impl EventSink for EncodedBatch<'_> {
    fn accept(&mut self, event: EventRef<'_>) {
        let index = self.next_index;
        self.next_index += 1;
        let name = event.application_name.as_str();
        let applications = self.grant.applications;
        let allowed = self
            .applications
            .add(name, |name| applications.allows(name));
        if !allowed {
            if self.refused.len() < MAX_REPORTED_PROBLEMS {
                self.refused.push(Problem {
                    index,
                    field: Some("application_name".to_owned()),
                    problem: format!("this token may not write events of application {name:?}"),
                });
            }
            return;
        }
        if self.refused.is_empty() {
            self.encoder.push(event);
        }
    }
}

/// Events per application name, in order of first appearance, so that which names
/// get their own metric label under the limit does not depend on hash order.
#[derive(Debug, Default)]
struct ApplicationCounts {
    counts: Vec<ApplicationCount>,
    /// Positions in `counts`, built once the list is too long to scan.
    positions: HashMap<String, usize>,
}

#[derive(Debug)]
struct ApplicationCount {
    name: String,
    events: u64,
    /// Whether the writer may store this application's events, asked once per name.
    allowed: bool,
}

impl ApplicationCounts {
    /// Counts one event of `name` and says whether it may be written, asking
    /// `allows` the first time the name is seen.
    fn add(&mut self, name: &str, allows: impl FnOnce(&str) -> bool) -> bool {
        // Batches mostly come from one application: try the last name first.
        if let Some(last) = self.counts.last_mut()
            && last.name == name
        {
            last.events += 1;
            return last.allowed;
        }
        let position = if self.counts.len() <= SCAN_LIMIT {
            self.counts.iter().position(|known| known.name == name)
        } else {
            if self.positions.is_empty() {
                self.positions = (self.counts.iter().enumerate())
                    .map(|(position, known)| (known.name.clone(), position))
                    .collect();
            }
            self.positions.get(name).copied()
        };
        match position {
            Some(position) => {
                let known = &mut self.counts[position];
                known.events += 1;
                known.allowed
            }
            None => {
                if !self.positions.is_empty() {
                    self.positions.insert(name.to_owned(), self.counts.len());
                }
                let allowed = allows(name);
                self.counts.push(ApplicationCount {
                    name: name.to_owned(),
                    events: 1,
                    allowed,
                });
                allowed
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
            counts.add(name, |_| true);
        }
        (counts.counts.into_iter())
            .map(|count| (count.name, count.events))
            .collect()
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
