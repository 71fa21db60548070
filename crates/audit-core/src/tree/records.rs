//! What each leaf was sealed from, 32 bytes per leaf beside the hashes: the event's id
//! (to find its row, or to say it was deleted), its `event_ts` and short fingerprints
//! of its texts (to name the field that changed). They are not trusted: the leaf hash
//! and the signed checkpoints are what prove; these only make a report precise. The
//! fingerprints are CRC-32 (IEEE), which is fast enough to keep up with ingest and
//! plenty to tell which field changed; security is the leaf's SHA-256.

use crate::merkle::LeafEvent;

pub const RECORD_BYTES: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafRecord {
    pub id: i64,
    pub event_ts_micros: i64,
    /// The CRC-32 (IEEE, big-endian) of `application_name`, `event_kind`, `payload` and
    /// `token_name` (0 when null), in that order.
    pub fingerprints: [[u8; 4]; 4],
}

/// The fields a record fingerprints, in order, as reports name them.
pub const FINGERPRINTED: [&str; 4] = ["application_name", "event_kind", "payload", "token_name"];

impl LeafRecord {
    pub fn of(event: &LeafEvent<'_>) -> Self {
        let content = event.content();
        Self {
            id: event.event.id,
            event_ts_micros: content.event_ts_micros(),
            fingerprints: content.fingerprints(),
        }
    }

    pub fn to_bytes(self) -> [u8; RECORD_BYTES] {
        let mut bytes = [0; RECORD_BYTES];
        bytes[..8].copy_from_slice(&self.id.to_be_bytes());
        bytes[8..16].copy_from_slice(&self.event_ts_micros.to_be_bytes());
        for (at, fingerprint) in self.fingerprints.iter().enumerate() {
            bytes[16 + 4 * at..20 + 4 * at].copy_from_slice(fingerprint);
        }
        bytes
    }

    /// The records of a stored tile's bytes; none when the length is not whole records.
    pub fn parse_all(bytes: &[u8]) -> Option<Vec<Self>> {
        if !bytes.len().is_multiple_of(RECORD_BYTES) {
            return None;
        }
        Some(bytes.chunks_exact(RECORD_BYTES).map(Self::parse).collect())
    }

    fn parse(bytes: &[u8]) -> Self {
        let word = |at: usize| {
            let mut eight = [0; 8];
            eight.copy_from_slice(&bytes[at..at + 8]);
            i64::from_be_bytes(eight)
        };
        let mut fingerprints = [[0; 4]; 4];
        for (at, fingerprint) in fingerprints.iter_mut().enumerate() {
            fingerprint.copy_from_slice(&bytes[16 + 4 * at..20 + 4 * at]);
        }
        Self {
            id: word(0),
            event_ts_micros: word(8),
            fingerprints,
        }
    }

    /// The fields in which `now` differs from what this record was sealed from.
    pub fn changed_fields(&self, now: &Self) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if self.id != now.id {
            changed.push("id");
        }
        if self.event_ts_micros != now.event_ts_micros {
            changed.push("event_ts");
        }
        for (field, (then, now)) in FINGERPRINTED
            .iter()
            .zip(self.fingerprints.iter().zip(now.fingerprints))
        {
            if *then != now {
                changed.push(field);
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::StoredEvent;
    use crate::timestamp::EventTimestamp;

    fn event(payload: &'static str, token_name: Option<&'static str>) -> LeafEvent<'static> {
        LeafEvent {
            event: StoredEvent {
                id: 7,
                event_ts: EventTimestamp::parse("2024-01-01T00:00:00.000001Z").unwrap(),
                application_name: "app",
                event_kind: "Login",
                payload,
            },
            token_name,
        }
    }

    #[test]
    fn a_record_round_trips_and_names_what_changed() {
        let sealed = LeafRecord::of(&event("{}", None));
        let bytes = sealed.to_bytes();
        assert_eq!(LeafRecord::parse_all(&bytes).unwrap(), vec![sealed]);
        assert_eq!(&bytes[..8], &7i64.to_be_bytes());

        let now = LeafRecord::of(&event("{ }", Some("ci")));
        assert_eq!(sealed.changed_fields(&now), ["payload", "token_name"]);
        assert!(sealed.changed_fields(&sealed).is_empty());
        assert!(LeafRecord::parse_all(&bytes[1..]).is_none());
    }
}
