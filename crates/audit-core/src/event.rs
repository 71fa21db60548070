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
    /// An event the collector writes about itself. Its names are constants and its
    /// payload a small value it built (a unit test checks both pass the rules), so it
    /// is built without the checks a client's event goes through.
    pub(crate) fn from_collector(
        application: &'static str,
        kind: &'static str,
        payload: &serde_json::Value,
    ) -> Self {
        let payload =
            serde_json::value::to_raw_value(payload).unwrap_or_else(|_| RawValue::NULL.to_owned());
        Self {
            event_ts: EventTimestamp::now(),
            application_name: ApplicationName(application.to_owned()),
            event_kind: EventKind(kind.to_owned()),
            payload: Payload(payload),
        }
    }

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

/// An event as read back from storage, with its sequence id; its texts borrow the
/// database row, so a page is rendered without a copy of each field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredEvent<'row> {
    pub id: i64,
    pub event_ts: EventTimestamp,
    pub application_name: &'row str,
    pub event_kind: &'row str,
    /// The payload's JSON text exactly as it was stored.
    pub payload: &'row str,
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
    #[error(
        "contains the escape \\u0000, which PostgreSQL's jsonb (and so every payload \
         query) refuses"
    )]
    ContainsNul,
    #[error("nests arrays and objects deeper than {MAX_PAYLOAD_DEPTH} levels")]
    TooDeep,
    #[error("is larger than {MAX_PAYLOAD_BYTES} bytes, the most PostgreSQL stores in a field")]
    TooLarge,
    #[error("contains a \\u escape of half a UTF-16 surrogate pair, which is not a character")]
    LoneSurrogate,
    #[error(
        "contains a number that is longer than {MAX_NUMBER_CHARS} characters or \
         outside what a double-precision float and PostgreSQL's jsonb can hold"
    )]
    NumberOutOfRange,
}

/// Deepest nesting of arrays and objects a payload may have. A GET page nests each
/// payload three levels deeper (page object, `data` array, event object), and readers
/// with serde_json's default recursion limit read at most 127 levels; so do Python's
/// `json` and `jq`, whose limits are higher.
pub const MAX_PAYLOAD_DEPTH: usize = 124;
/// Longest number, in characters, a payload may hold: any double, any 128-bit integer
/// and long decimals fit, while a 100,000-digit number (which readers refuse) does not.
pub const MAX_NUMBER_CHARS: usize = 100;
/// Largest payload text: PostgreSQL stores at most 1 GiB in one field. The API's own
/// limit (`api.max_event_bytes`) is far lower; this one holds for every constructor.
pub const MAX_PAYLOAD_BYTES: usize = (1 << 30) - 1;
/// Most digits after the decimal point PostgreSQL's `numeric` (and so `jsonb`) holds.
const MAX_NUMERIC_SCALE: i64 = 16_383;

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

/// Checks valid JSON text for what PostgreSQL's `jsonb` or a reader with default
/// settings (serde_json, Python's `json`, `jq`) cannot take, so that every page that
/// holds the payload can be read and every payload can be queried as `jsonb`: a
/// `\u0000` escape, a lone surrogate escape, a number out of a double's range or
/// `numeric`'s scale, or nesting deeper than [`MAX_PAYLOAD_DEPTH`]. One pass, tracking
/// whether it is inside a string, since brackets and backslashes there are just
/// characters. The text itself is never changed.
fn check_json_text(json: &str) -> Result<(), PayloadError> {
    if json.len() > MAX_PAYLOAD_BYTES {
        return Err(PayloadError::TooLarge);
    }
    let bytes = json.as_bytes();
    let mut depth = 0usize;
    let mut in_string = false;
    // Whether the previous escape was a high surrogate waiting for its low half.
    let mut pending_high_surrogate = false;
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if in_string {
            let escaped_unit = (byte == b'\\' && bytes.get(index + 1) == Some(&b'u'))
                .then(|| utf16_unit(bytes.get(index + 2..index + 6)))
                .flatten();
            match escaped_unit {
                Some(0) => return Err(PayloadError::ContainsNul),
                Some(0xD800..=0xDBFF) if !pending_high_surrogate => {
                    pending_high_surrogate = true;
                    index += 6;
                    continue;
                }
                Some(0xDC00..=0xDFFF) if pending_high_surrogate => {
                    pending_high_surrogate = false;
                    index += 6;
                    continue;
                }
                Some(0xD800..=0xDFFF) => return Err(PayloadError::LoneSurrogate),
                _ if pending_high_surrogate => return Err(PayloadError::LoneSurrogate),
                Some(_) => {
                    index += 6;
                    continue;
                }
                None => {}
            }
            match byte {
                b'\\' => index += 1,
                b'"' => in_string = false,
                _ => {}
            }
            index += 1;
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_PAYLOAD_DEPTH {
                    return Err(PayloadError::TooDeep);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'-' | b'0'..=b'9' => {
                let end = bytes[index..]
                    .iter()
                    .position(|byte| {
                        !matches!(byte, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                    })
                    .map_or(bytes.len(), |length| index + length);
                check_number(&json[index..end])?;
                index = end;
                continue;
            }
            _ => {}
        }
        index += 1;
    }
    Ok(())
}

/// The UTF-16 code unit of the four hex digits of a `\u` escape.
fn utf16_unit(hex: Option<&[u8]>) -> Option<u16> {
    let hex = std::str::from_utf8(hex?).ok()?;
    u16::from_str_radix(hex, 16).ok()
}

/// A JSON number (already known to be well formed) that every reader and `jsonb` take.
fn check_number(number: &str) -> Result<(), PayloadError> {
    if number.len() > MAX_NUMBER_CHARS {
        return Err(PayloadError::NumberOutOfRange);
    }
    let finite = number.parse::<f64>().is_ok_and(f64::is_finite);
    // `numeric` keeps at most 16,383 digits after the point: 1e-20000 does not fit.
    let (mantissa, exponent) = match number.find(['e', 'E']) {
        Some(at) => (&number[..at], number[at + 1..].parse::<i64>().ok()),
        None => (number, Some(0)),
    };
    let fraction_digits = mantissa
        .split_once('.')
        .map_or(0, |(_, fraction)| fraction.len());
    let scale = exponent.map(|exponent| i64::try_from(fraction_digits).unwrap_or(0) - exponent);
    match scale {
        Some(scale) if finite && scale <= MAX_NUMERIC_SCALE => Ok(()),
        _ => Err(PayloadError::NumberOutOfRange),
    }
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
    fn lone_surrogate_escapes_are_rejected_and_pairs_are_not() {
        for text in [
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud800x""#,
            r#""\ud800\u0041""#,
            r#""\ud800\ud800""#,
        ] {
            assert_eq!(
                Payload::parse(text),
                Err(PayloadError::LoneSurrogate),
                "{text}"
            );
        }
        for text in [
            r#""\ud83d\ude00""#,
            r#""\u00e9\\ud800""#,
            r#"{"k\ud83d\ude00":1}"#,
        ] {
            assert_eq!(Payload::parse(text).unwrap().as_json_text(), text);
        }
    }

    #[test]
    fn numbers_beyond_a_double_or_numeric_scale_are_rejected() {
        let hundred_thousand_digits = "1".repeat(100_000);
        let too_long = format!("0.{}", "1".repeat(MAX_NUMBER_CHARS - 1));
        for text in [
            "1e999999",
            "-1e309",
            "1e-20000",
            hundred_thousand_digits.as_str(),
            too_long.as_str(),
        ] {
            assert_eq!(
                Payload::parse(&format!("[{text}]")),
                Err(PayloadError::NumberOutOfRange),
                "{}",
                &text[..text.len().min(20)]
            );
        }
        let longest = format!("0.{}", "1".repeat(MAX_NUMBER_CHARS - 2));
        for text in [
            "12345678901234567890123",
            "0.1",
            "-1.7976931348623157e308",
            "1e-400",
            "0",
            "-0.0e0",
            longest.as_str(),
        ] {
            let payload = format!(r#"{{"n":{text}}}"#);
            assert_eq!(Payload::parse(&payload).unwrap().as_json_text(), payload);
        }
    }

    #[test]
    fn payload_nesting_is_limited_outside_strings_only() {
        let deepest = format!(
            "{}{}",
            "[".repeat(MAX_PAYLOAD_DEPTH),
            "]".repeat(MAX_PAYLOAD_DEPTH)
        );
        let too_deep = format!("[{deepest}]");
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

        let raw: &RawValue = serde_json::from_str(r#"{"b":1e300,"a":0.1}"#).unwrap();
        let event = EventRef {
            event_ts: EventTimestamp::parse("2023-12-05T12:55:52.805022Z").unwrap(),
            application_name: ValidName::parse("app").unwrap(),
            event_kind: ValidName::parse("UserLogin").unwrap(),
            payload: ValidPayload::from_raw(raw).unwrap(),
        };
        let owned = event.to_new_event();
        assert_eq!(owned.payload.as_json_text(), r#"{"b":1e300,"a":0.1}"#);
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
