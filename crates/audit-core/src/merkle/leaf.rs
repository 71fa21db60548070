//! The leaf bytes of a stored event: a canonical encoding a third party can recompute
//! from the row alone, so that the tree says nothing this project's code must be
//! trusted to interpret.
//!
//! Version 1, every integer big-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version, `0x01` |
//! | 8 | `id`, signed 64-bit |
//! | 8 | `event_ts`, signed 64-bit microseconds since 1970-01-01T00:00:00Z |
//! | 4 + n | `application_name`: its UTF-8 length, then its bytes |
//! | 4 + n | `event_kind`, likewise |
//! | 4 + n | `payload`: the JSON text exactly as stored, likewise |
//! | 1, or 1 + 4 + n | `token_name`: `0x00` when null, else `0x01`, its length, its bytes |

use sha2::{Digest, Sha256};

use crate::event::StoredEvent;

/// The version byte every leaf of this encoding starts with.
pub const LEAF_VERSION: u8 = 0x01;

/// A stored event as its leaf encodes it: the row and the token that wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafEvent<'a> {
    pub event: StoredEvent<'a>,
    pub token_name: Option<&'a str>,
}

impl LeafEvent<'_> {
    /// The leaf bytes (see the module's table).
    pub fn to_bytes(&self) -> Vec<u8> {
        let event = &self.event;
        let texts = event.application_name.len() + event.event_kind.len() + event.payload.len();
        let token = self.token_name.map_or(0, |name| 4 + name.len());
        let mut bytes = Vec::with_capacity(1 + 8 + 8 + 12 + texts + 1 + token);
        self.write_to(|part| bytes.extend_from_slice(part));
        bytes
    }

    /// Hands the leaf bytes over in parts, in order: what `to_bytes` concatenates and
    /// `hash` hashes without building them.
    fn write_to(&self, mut write: impl FnMut(&[u8])) {
        let event = &self.event;
        write(&[LEAF_VERSION]);
        write(&event.id.to_be_bytes());
        write(&self.event_ts_micros().to_be_bytes());
        for text in [event.application_name, event.event_kind, event.payload] {
            put_text(&mut write, text);
        }
        match self.token_name {
            None => write(&[0x00]),
            Some(name) => {
                write(&[0x01]);
                put_text(&mut write, name);
            }
        }
    }

    /// `event_ts` in microseconds since 1970-01-01T00:00:00Z.
    pub fn event_ts_micros(&self) -> i64 {
        let micros = self.event.event_ts.as_offset_date_time().unix_timestamp_nanos() / 1_000;
        // Years 0000-9999 are within ±2^58 microseconds of 1970: always fits.
        i64::try_from(micros).unwrap_or(i64::MAX)
    }

    /// The RFC 6962 leaf hash of the leaf bytes.
    pub fn hash(&self) -> super::Hash {
        let mut hasher = Sha256::new();
        hasher.update([super::LEAF_PREFIX]);
        self.write_to(|part| hasher.update(part));
        hasher.finalize().into()
    }
}

fn put_text(write: &mut impl FnMut(&[u8]), text: &str) {
    // Names are under 126 bytes and payloads under 1 GiB (the validated types and
    // PostgreSQL's own field limit), so the length fits.
    write(&u32::try_from(text.len()).unwrap_or(u32::MAX).to_be_bytes());
    write(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timestamp::EventTimestamp;

    fn stored() -> StoredEvent<'static> {
        StoredEvent {
            id: 258,
            event_ts: EventTimestamp::parse("1970-01-01T00:00:01.000002Z").unwrap(),
            application_name: "app",
            event_kind: "Login",
            payload: r#"{"a":1}"#,
        }
    }

    fn event() -> LeafEvent<'static> {
        LeafEvent {
            event: stored(),
            token_name: None,
        }
    }

    fn changed(event: StoredEvent<'static>) -> LeafEvent<'static> {
        LeafEvent {
            event,
            token_name: None,
        }
    }

    #[test]
    fn the_leaf_bytes_are_the_documented_encoding() {
        let mut expected = vec![0x01];
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
        expected.extend_from_slice(&1_000_002i64.to_be_bytes());
        expected.extend_from_slice(b"\0\0\0\x03app\0\0\0\x05Login\0\0\0\x07{\"a\":1}\x00");

        assert_eq!(event().to_bytes(), expected);
        assert_eq!(event().hash(), crate::merkle::leaf_hash(&expected));

        let tokened = LeafEvent {
            token_name: Some("ci"),
            ..event()
        };
        let mut expected_tokened = expected.clone();
        expected_tokened.pop();
        expected_tokened.extend_from_slice(b"\x01\0\0\0\x02ci");
        assert_eq!(tokened.to_bytes(), expected_tokened);
    }

    #[test]
    fn any_change_to_any_field_changes_the_leaf_hash() {
        let original = event().hash();
        let moved = EventTimestamp::parse("1970-01-01T00:00:01.000003Z").unwrap();
        let changed = [
            changed(StoredEvent {
                id: 259,
                ..stored()
            }),
            changed(StoredEvent {
                event_ts: moved,
                ..stored()
            }),
            changed(StoredEvent {
                application_name: "apq",
                ..stored()
            }),
            changed(StoredEvent {
                event_kind: "Logout",
                ..stored()
            }),
            changed(StoredEvent {
                payload: r#"{"a":2}"#,
                ..stored()
            }),
            LeafEvent {
                token_name: Some(""),
                ..event()
            },
            // The same bytes moved from one field to the next: lengths tell them apart.
            changed(StoredEvent {
                application_name: "appL",
                event_kind: "ogin",
                ..stored()
            }),
        ];

        for event in changed {
            assert_ne!(event.hash(), original, "{event:?}");
        }
    }
}
