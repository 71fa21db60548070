//! The audit event and its validated parts.
//!
//! A `NewEvent` can only be built from parts that passed validation, so the storage
//! layer and everything else behind the HTTP edge trust it without checking again.
//! `EventRef` is the same guarantee for texts borrowed from a request body: the server
//! validates them in place and encodes them without copying each into its own string.

use std::fmt;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;

use crate::timestamp::EventTimestamp;

/// Names must be shorter than this many UTF-8 bytes (the original's column limit).
pub const NAME_LIMIT_BYTES: usize = 126;

/// An event that passed validation and may be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub event_ts: EventTimestamp,
    pub application_name: ApplicationName,
    pub event_kind: EventKind,
    pub payload: Payload,
}

/// The event's canonical JSON form, the one `POST /api/event` takes: what the
/// generator sends, so that every event it makes is one the server accepts.
impl Serialize for NewEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(4))?;
        map.serialize_entry("event_ts", &self.event_ts.to_string())?;
        map.serialize_entry("application_name", self.application_name.as_str())?;
        map.serialize_entry("event_kind", self.event_kind.as_str())?;
        map.serialize_entry("payload", self.payload.as_raw_value())?;
        map.end()
    }
}

impl NewEvent {
    pub fn as_event_ref(&self) -> EventRef<'_> {
        EventRef {
            event_ts: self.event_ts,
            application_name: ValidName(self.application_name.as_str()),
            event_kind: ValidName(self.event_kind.as_str()),
            payload: ValidPayload(self.payload.as_raw_value()),
        }
    }
}

/// A validated event whose texts are borrowed; built only from validated parts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventRef<'a> {
    pub event_ts: EventTimestamp,
    pub application_name: ValidName<'a>,
    pub event_kind: ValidName<'a>,
    pub payload: ValidPayload<'a>,
}

impl EventRef<'_> {
    /// An owned copy, for callers that keep events beyond the borrowed text.
    pub fn to_new_event(&self) -> NewEvent {
        NewEvent {
            event_ts: self.event_ts,
            application_name: ApplicationName(self.application_name.0.to_owned()),
            event_kind: EventKind(self.event_kind.0.to_owned()),
            payload: Payload(self.payload.0.to_owned()),
        }
    }
}

/// An application name or event kind that passed the name rules, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidName<'a>(&'a str);

impl<'a> ValidName<'a> {
    pub fn parse(value: &'a str) -> Result<Self, NameError> {
        check_name(value)?;
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

/// A payload's JSON text that passed validation, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct ValidPayload<'a>(&'a RawValue);

// Compared by text, like `Payload`.
impl PartialEq for ValidPayload<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Eq for ValidPayload<'_> {}

impl<'a> ValidPayload<'a> {
    /// Accepts JSON text that serde_json already parsed as one value.
    pub fn from_raw(raw: &'a RawValue) -> Result<Self, PayloadError> {
        check_json_text(raw.get())?;
        Ok(Self(raw))
    }

    pub fn as_json_text(&self) -> &'a str {
        self.0.get()
    }
}

/// An event as read back from storage, with its sequence id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    pub id: i64,
    pub event_ts: EventTimestamp,
    pub application_name: String,
    pub event_kind: String,
    /// The payload's JSON text exactly as it was stored.
    pub payload: String,
}

/// Why a name was refused; the message is written for the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("must be shorter than {NAME_LIMIT_BYTES} bytes of UTF-8, is {0} bytes")]
    TooLong(usize),
    #[error("must not contain the NUL character")]
    ContainsNul,
}

/// Why a payload was refused; the message is written for the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("contains the escape \\u0000, which PostgreSQL cannot store")]
    ContainsNul,
    #[error("nests arrays and objects deeper than {MAX_PAYLOAD_DEPTH} levels")]
    TooDeep,
}

/// Deepest nesting of arrays and objects a payload may have. PostgreSQL parses `json`
/// recursively and fails on very deep values, so they are refused here, with a clear
/// message, before they reach it.
pub const MAX_PAYLOAD_DEPTH: usize = 128;

/// The name of the application that reported the event.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ApplicationName(String);

/// What happened, e.g. `UserLogin`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventKind(String);

/// The event's payload: any JSON value, kept as the exact text the client sent so that
/// it round-trips byte for byte (big integers, `0.1`, key order).
#[derive(Clone)]
pub struct Payload(Box<RawValue>);

impl ApplicationName {
    pub fn parse(value: String) -> Result<Self, NameError> {
        check_name(&value)?;
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl EventKind {
    pub fn parse(value: String) -> Result<Self, NameError> {
        check_name(&value)?;
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check_name(value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Empty);
    }
    if value.len() >= NAME_LIMIT_BYTES {
        return Err(NameError::TooLong(value.len()));
    }
    if value.contains('\0') {
        return Err(NameError::ContainsNul);
    }
    Ok(())
}

impl Payload {
    /// Accepts JSON text that serde_json already parsed as one value.
    pub fn from_raw(raw: Box<RawValue>) -> Result<Self, PayloadError> {
        check_json_text(raw.get())?;
        Ok(Self(raw))
    }

    /// Parses JSON text; used where the text did not come through serde_json already.
    pub fn parse(text: &str) -> Result<Self, PayloadError> {
        let raw = RawValue::from_string(text.trim().to_owned())
            .map_err(|error| PayloadError::InvalidJson(error.to_string()))?;
        Self::from_raw(raw)
    }

    /// Serialises a JSON value, e.g. one the generator built.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, PayloadError> {
        let raw = serde_json::value::to_raw_value(value)
            .map_err(|error| PayloadError::InvalidJson(error.to_string()))?;
        Self::from_raw(raw)
    }

    pub fn as_json_text(&self) -> &str {
        self.0.get()
    }

    pub fn as_raw_value(&self) -> &RawValue {
        &self.0
    }
}

// Payloads compare by their text: two spellings of one JSON value are different audit data.
impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Eq for Payload {}

impl fmt::Debug for Payload {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_tuple("Payload")
            .field(&self.0.get())
            .finish()
    }
}

/// Checks valid JSON text for what PostgreSQL cannot take: a `\u0000` escape, or
/// nesting deeper than [`MAX_PAYLOAD_DEPTH`]. One pass, tracking whether it is inside a
/// string, since brackets and backslashes there are just characters.
fn check_json_text(json: &str) -> Result<(), PayloadError> {
    let bytes = json.as_bytes();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut index = 0;
    while index < bytes.len() {
        match (in_string, bytes[index]) {
            (true, b'\\') => {
                if bytes.get(index + 1) == Some(&b'u')
                    && bytes.get(index + 2..index + 6) == Some(b"0000")
                {
                    return Err(PayloadError::ContainsNul);
                }
                index += 1;
            }
            (true, b'"') => in_string = false,
            (false, b'"') => in_string = true,
            (false, b'[' | b'{') => {
                depth += 1;
                if depth > MAX_PAYLOAD_DEPTH {
                    return Err(PayloadError::TooDeep);
                }
            }
            (false, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        index += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_of_125_bytes_is_accepted_and_126_bytes_rejected() {
        assert!(ApplicationName::parse("a".repeat(125)).is_ok());
        assert_eq!(
            ApplicationName::parse("a".repeat(126)),
            Err(NameError::TooLong(126))
        );
    }

    #[test]
    fn names_are_measured_in_utf8_bytes_not_characters() {
        let sixty_three_cyrillic = "ж".repeat(63);
        assert_eq!(sixty_three_cyrillic.chars().count(), 63);
        assert_eq!(
            EventKind::parse(sixty_three_cyrillic),
            Err(NameError::TooLong(126))
        );
        assert!(EventKind::parse("ж".repeat(62)).is_ok());
    }

    #[test]
    fn empty_names_and_names_with_nul_are_rejected() {
        assert_eq!(EventKind::parse(String::new()), Err(NameError::Empty));
        assert_eq!(
            EventKind::parse("a\0b".to_owned()),
            Err(NameError::ContainsNul)
        );
    }

    #[test]
    fn payload_keeps_its_exact_text() {
        for text in [
            "12345678901234567890123",
            "0.1",
            r#"{"b":1,"a":[true,null]}"#,
        ] {
            assert_eq!(Payload::parse(text).unwrap().as_json_text(), text);
        }
    }

    #[test]
    fn payload_with_a_nul_escape_is_rejected_but_an_escaped_backslash_is_not() {
        assert_eq!(
            Payload::parse(r#"{"a":"x\u0000"}"#),
            Err(PayloadError::ContainsNul)
        );
        assert!(Payload::parse(r#"{"a":"x\\u0000"}"#).is_ok());
        assert_eq!(
            Payload::parse(r#"{"a":"x\\\u0000"}"#),
            Err(PayloadError::ContainsNul)
        );
    }

    #[test]
    fn payload_nesting_is_limited_outside_strings_only() {
        let deepest = format!("{}{}", "[".repeat(128), "]".repeat(128));
        let too_deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
        let brackets_in_a_string = format!("\"{}\"", "[".repeat(500));

        assert!(Payload::parse(&deepest).is_ok());
        assert_eq!(Payload::parse(&too_deep), Err(PayloadError::TooDeep));
        assert!(Payload::parse(&brackets_in_a_string).is_ok());
    }

    #[test]
    fn borrowed_events_follow_the_same_rules_and_convert_exactly() {
        assert_eq!(ValidName::parse(""), Err(NameError::Empty));
        assert_eq!(
            ValidName::parse(&"a".repeat(126)),
            Err(NameError::TooLong(126))
        );
        let raw: &RawValue = serde_json::from_str(r#"{"a":"\u0000"}"#).unwrap();
        assert_eq!(ValidPayload::from_raw(raw), Err(PayloadError::ContainsNul));

        let raw: &RawValue = serde_json::from_str(r#"{"b":1e400,"a":0.1}"#).unwrap();
        let event = EventRef {
            event_ts: EventTimestamp::parse("2023-12-05T12:55:52.805022Z").unwrap(),
            application_name: ValidName::parse("app").unwrap(),
            event_kind: ValidName::parse("UserLogin").unwrap(),
            payload: ValidPayload::from_raw(raw).unwrap(),
        };
        let owned = event.to_new_event();
        assert_eq!(owned.payload.as_json_text(), r#"{"b":1e400,"a":0.1}"#);
        assert_eq!(owned.as_event_ref(), event);
    }

    #[test]
    fn payload_that_is_not_json_is_rejected() {
        assert!(matches!(
            Payload::parse("{"),
            Err(PayloadError::InvalidJson(_))
        ));
    }
}
