//! The leaf of a stored event: bytes a third party can recompute from the row alone,
//! so that the tree says nothing this project's code must be trusted to interpret.
//!
//! Version 1, every integer big-endian. The leaf bytes are
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version, `0x01` |
//! | 8 | `id`, signed 64-bit |
//! | 32 | the content digest: SHA-256 of the content bytes below |
//!
//! and the content bytes are
//!
//! | bytes | field |
//! |---|---|
//! | 8 | `event_ts`, signed 64-bit microseconds since 1970-01-01T00:00:00Z |
//! | 4 + n | `application_name`: its UTF-8 length, then its bytes |
//! | 4 + n | `event_kind`, likewise |
//! | 4 + n | `payload`: the JSON text exactly as stored, likewise |
//! | 1, or 1 + 4 + n | `token_name`: `0x00` when null, else `0x01`, its length, its bytes |
//!
//! The digest is what the collector knows as it writes (everything but the id the
//! database assigns), so it computes it then and stores it beside the event
//! (`events.seal`); the sealer hashes the id and the stored digest without reading
//! the event's texts back. The verifier recomputes the digest from the row.

use sha2::{Digest, Sha256};

use crate::event::StoredEvent;
use crate::merkle::{Hash, LEAF_PREFIX};
use crate::timestamp::EventTimestamp;

/// The version byte every leaf of this encoding starts with.
pub const LEAF_VERSION: u8 = 0x01;

/// The bytes of `events.seal`: the content digest, then the CRC-32 (IEEE, big-endian)
/// of `application_name`, `event_kind`, `payload` and `token_name` (0 when null).
pub const SEAL_BYTES: usize = 48;

/// Everything a leaf says about an event but its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafContent<'a> {
    pub event_ts: EventTimestamp,
    pub application_name: &'a str,
    pub event_kind: &'a str,
    /// The payload's JSON text exactly as stored.
    pub payload: &'a str,
    pub token_name: Option<&'a str>,
}

/// A stored event as its leaf encodes it: the row and the token that wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafEvent<'a> {
    pub event: StoredEvent<'a>,
    pub token_name: Option<&'a str>,
}

impl LeafContent<'_> {
    /// `event_ts` in microseconds since 1970-01-01T00:00:00Z.
    pub fn event_ts_micros(&self) -> i64 {
        unix_micros(self.event_ts)
    }

    /// The content digest (see the module's tables).
    pub fn digest(&self) -> Hash {
        let mut hasher = Sha256::new();
        self.write_content(|bytes| hasher.update(bytes));
        hasher.finalize().into()
    }

    /// The content bytes themselves, which hash to [`Self::digest`]: for a client that
    /// checks the event it shows against its leaf.
    pub fn bytes(&self) -> Vec<u8> {
        let mut content = Vec::with_capacity(21 + self.payload.len());
        self.write_content(|bytes| content.extend_from_slice(bytes));
        content
    }

    /// Hands the content bytes to `put` in order, with no copy of the texts.
    fn write_content(&self, mut put: impl FnMut(&[u8])) {
        put(&self.event_ts_micros().to_be_bytes());
        for text in [self.application_name, self.event_kind, self.payload] {
            put_text(&mut put, text);
        }
        match self.token_name {
            None => put(&[0x00]),
            Some(name) => {
                put(&[0x01]);
                put_text(&mut put, name);
            }
        }
    }

    /// The CRC-32 of each text, to name a changed field (not security: the digest is).
    pub fn fingerprints(&self) -> [[u8; 4]; 4] {
        let mut fingerprints = [[0; 4]; 4];
        let texts = [self.application_name, self.event_kind, self.payload];
        for (fingerprint, text) in fingerprints.iter_mut().zip(texts) {
            *fingerprint = text_fingerprint(text);
        }
        if let Some(name) = self.token_name {
            fingerprints[3] = text_fingerprint(name);
        }
        fingerprints
    }

    /// What `events.seal` holds for this content.
    pub fn seal(&self) -> [u8; SEAL_BYTES] {
        let mut seal = [0; SEAL_BYTES];
        seal[..32].copy_from_slice(&self.digest());
        for (at, fingerprint) in self.fingerprints().iter().enumerate() {
            seal[32 + 4 * at..36 + 4 * at].copy_from_slice(fingerprint);
        }
        seal
    }
}

/// The fingerprint a leaf record keeps of one text: its CRC-32 (IEEE), big-endian.
pub fn text_fingerprint(text: &str) -> [u8; 4] {
    crc32fast::hash(text.as_bytes()).to_be_bytes()
}

impl<'a> LeafEvent<'a> {
    pub fn content(&self) -> LeafContent<'a> {
        LeafContent {
            event_ts: self.event.event_ts,
            application_name: self.event.application_name,
            event_kind: self.event.event_kind,
            payload: self.event.payload,
            token_name: self.token_name,
        }
    }

    /// The leaf bytes (see the module's tables).
    pub fn to_bytes(&self) -> Vec<u8> {
        leaf_bytes(self.event.id, &self.content().digest()).to_vec()
    }

    /// The RFC 6962 leaf hash of the leaf bytes.
    pub fn hash(&self) -> Hash {
        leaf_hash_of(self.event.id, &self.content().digest())
    }
}

/// A timestamp in microseconds since 1970-01-01T00:00:00Z, as leaves encode it.
pub fn unix_micros(event_ts: EventTimestamp) -> i64 {
    let micros = event_ts.as_offset_date_time().unix_timestamp_nanos() / 1_000;
    // Years 0000-9999 are within ±2^58 microseconds of 1970: always fits.
    i64::try_from(micros).unwrap_or(i64::MAX)
}

/// The leaf bytes of event `id` with this content digest.
pub fn leaf_bytes(id: i64, digest: &Hash) -> [u8; 41] {
    let mut bytes = [0; 41];
    bytes[0] = LEAF_VERSION;
    bytes[1..9].copy_from_slice(&id.to_be_bytes());
    bytes[9..].copy_from_slice(digest);
    bytes
}

/// The RFC 6962 leaf hash of event `id` with this content digest.
pub fn leaf_hash_of(id: i64, digest: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([LEAF_PREFIX]);
    hasher.update(leaf_bytes(id, digest));
    hasher.finalize().into()
}

fn put_text(put: &mut impl FnMut(&[u8]), text: &str) {
    // Names are under 126 bytes and payloads under 1 GiB (the validated types and
    // PostgreSQL's own field limit), so the length fits.
    put(&u32::try_from(text.len()).unwrap_or(u32::MAX).to_be_bytes());
    put(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut content = 1_000_002i64.to_be_bytes().to_vec();
        content.extend_from_slice(b"\0\0\0\x03app\0\0\0\x05Login\0\0\0\x07{\"a\":1}\x00");
        let digest: Hash = Sha256::digest(&content).into();
        let mut expected = vec![0x01, 0, 0, 0, 0, 0, 0, 1, 2];
        expected.extend_from_slice(&digest);

        assert_eq!(event().to_bytes(), expected);
        assert_eq!(event().hash(), crate::merkle::leaf_hash(&expected));
        assert_eq!(event().content().bytes(), content);

        let tokened = LeafEvent {
            token_name: Some("ci"),
            ..event()
        };
        let mut tokened_content = content.clone();
        tokened_content.pop();
        tokened_content.extend_from_slice(b"\x01\0\0\0\x02ci");
        let tokened_digest: Hash = Sha256::digest(&tokened_content).into();
        assert_eq!(tokened.content().digest(), tokened_digest);
        assert_eq!(tokened.content().bytes(), tokened_content);
        assert_eq!(&tokened.content().seal()[..32], &tokened_digest);
        assert_eq!(
            &tokened.content().seal()[44..],
            &crc32fast::hash(b"ci").to_be_bytes()
        );
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
