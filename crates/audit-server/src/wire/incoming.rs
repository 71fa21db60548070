//! Turns a POST body into validated events in one pass over the JSON.
//!
//! serde's derive would stop at the first problem and could not say which field of
//! which event was wrong, so the array and each event are read by hand-written
//! visitors that keep going and collect every problem with its index and field.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use audit_core::config::ApiSettings;
use audit_core::event::{EventRef, NewEvent, ValidName, ValidPayload};
use audit_core::timestamp::EventTimestamp;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::errors::{ApiError, Detail};
use crate::wire::encoded_batch::EncodedBatch;

/// At most this many problems are reported, so a bad 16 MiB body cannot produce an
/// even larger error body.
pub const MAX_REPORTED_PROBLEMS: usize = 100;
/// Unknown field names are cut to this many characters in error details.
const MAX_REPORTED_NAME_CHARS: usize = 64;

/// Where the parser puts each valid event, while its texts still borrow the body.
pub trait EventSink {
    fn accept(&mut self, event: EventRef<'_>);
}

/// Owned events, for tests and tools that look at the fields.
impl EventSink for Vec<NewEvent> {
    fn accept(&mut self, event: EventRef<'_>) {
        self.push(event.to_new_event());
    }
}

/// The limits a batch is parsed under.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    /// Most events in one batch.
    pub max_events: usize,
    /// Largest event: its timestamp, names and payload text together.
    pub max_event_bytes: usize,
}

impl BatchLimits {
    pub fn from_settings(settings: &ApiSettings) -> Self {
        Self {
            max_events: settings.max_batch_events,
            max_event_bytes: settings.max_event_bytes,
        }
    }
}

/// Parses and validates a whole batch into COPY rows, without an allocation per
/// field; all of it is valid or nothing is returned. This is what `POST` uses.
pub fn parse_batch(body: &[u8], limits: BatchLimits) -> Result<EncodedBatch, ApiError> {
    parse_into(body, limits, EncodedBatch::for_body(body.len()))
}

/// Parses and validates a whole batch into owned events.
pub fn parse_events(body: &[u8], limits: BatchLimits) -> Result<Vec<NewEvent>, ApiError> {
    parse_into(body, limits, Vec::new())
}

/// Why parsing stopped before the end of the body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Stop {
    #[default]
    No,
    TooManyEvents,
    /// The event at this index is over the size limit.
    EventTooLarge(usize),
}

fn parse_into<S: EventSink>(body: &[u8], limits: BatchLimits, mut sink: S) -> Result<S, ApiError> {
    let stop = Cell::new(Stop::No);
    let mut problems = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let outcome = BatchSeed {
        limits,
        stop: &stop,
        problems: &mut problems,
        sink: &mut sink,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end());

    match (outcome, stop.get()) {
        (Ok(()), _) => {}
        (Err(_), Stop::TooManyEvents) => {
            return Err(ApiError::TooManyEvents {
                limit: limits.max_events,
            });
        }
        (Err(_), Stop::EventTooLarge(index)) => {
            return Err(ApiError::EventTooLarge(Detail {
                index: Some(index),
                problem: format!(
                    "the event's timestamp, names and payload take more than {} bytes",
                    limits.max_event_bytes
                ),
                ..Detail::default()
            }));
        }
        (Err(error), Stop::No) if error.is_data() => {
            return Err(ApiError::Validation(vec![Detail {
                problem: "the body must be a JSON array of event objects".to_owned(),
                ..Detail::default()
            }]));
        }
        (Err(error), Stop::No) => {
            return Err(ApiError::MalformedJson(Detail {
                line: Some(error.line()),
                column: Some(error.column()),
                problem: error.to_string(),
                ..Detail::default()
            }));
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::Validation(problems));
    }
    Ok(sink)
}

struct BatchSeed<'a, S> {
    limits: BatchLimits,
    stop: &'a Cell<Stop>,
    problems: &'a mut Vec<Detail>,
    sink: &'a mut S,
}

impl<'de, S: EventSink> DeserializeSeed<'de> for BatchSeed<'_, S> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, S: EventSink> Visitor<'de> for BatchSeed<'_, S> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<Self::Value, A::Error> {
        let mut index = 0;
        loop {
            // Once the batch is known to be refused, events are only checked, not kept.
            let sink = if self.problems.is_empty() {
                Some(&mut *self.sink)
            } else {
                None
            };
            let seed = EventSeed {
                sink,
                max_event_bytes: self.limits.max_event_bytes,
            };
            let Some(outcome) = sequence.next_element_seed(seed)? else {
                break;
            };
            if index == self.limits.max_events {
                self.stop.set(Stop::TooManyEvents);
                return Err(de::Error::custom("too many events"));
            }
            if outcome == Err(EventProblems::TooLarge) {
                self.stop.set(Stop::EventTooLarge(index));
                return Err(de::Error::custom("event too large"));
            }
            if let Err(EventProblems::Invalid(problems)) = outcome {
                for (field, problem) in problems {
                    if self.problems.len() < MAX_REPORTED_PROBLEMS {
                        self.problems.push(Detail {
                            index: Some(index),
                            field,
                            problem,
                            ..Detail::default()
                        });
                    }
                }
            }
            index += 1;
        }
        Ok(())
    }
}

/// One event's problems: the field (if any) and what is wrong with it.
type Problems = Vec<(Option<String>, String)>;

/// What is wrong with one event.
#[derive(Debug, PartialEq, Eq)]
enum EventProblems {
    Invalid(Problems),
    /// Over the size limit: the whole batch is refused with 413 at once.
    TooLarge,
}

struct EventSeed<'a, S> {
    sink: Option<&'a mut S>,
    max_event_bytes: usize,
}

impl<'de, S: EventSink> DeserializeSeed<'de> for EventSeed<'_, S> {
    type Value = Result<(), EventProblems>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(EventVisitor {
            sink: self.sink,
            max_event_bytes: self.max_event_bytes,
        })
    }
}

struct EventVisitor<'a, S> {
    sink: Option<&'a mut S>,
    max_event_bytes: usize,
}

fn not_an_object<E>(kind: &str) -> Result<Result<(), EventProblems>, E> {
    Ok(Err(EventProblems::Invalid(vec![(
        None,
        format!("expected an event object, found {kind}"),
    )])))
}

impl<'de, S: EventSink> Visitor<'de> for EventVisitor<'_, S> {
    type Value = Result<(), EventProblems>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = EventFields::default();
        while let Some(name) = map.next_key::<FieldName>()? {
            match name {
                FieldName::EventTs => {
                    let value = map.next_value::<Text<'de>>()?;
                    fields.store_text(EVENT_TS, value);
                }
                FieldName::ApplicationName => {
                    let value = map.next_value::<Text<'de>>()?;
                    fields.store_text(APPLICATION_NAME, value);
                }
                FieldName::EventKind => {
                    let value = map.next_value::<Text<'de>>()?;
                    fields.store_text(EVENT_KIND, value);
                }
                FieldName::Payload => {
                    // Borrowed: the payload's raw text is a slice of the body.
                    let value = map.next_value::<&'de RawValue>()?;
                    fields.store_payload(value);
                }
                FieldName::Unknown(name) => {
                    map.next_value::<IgnoredAny>()?;
                    fields
                        .problems
                        .push((Some(name), "unknown field".to_owned()));
                }
            }
        }
        if fields.bytes() > self.max_event_bytes {
            return Ok(Err(EventProblems::TooLarge));
        }
        Ok(fields.finish(self.sink).map_err(EventProblems::Invalid))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<Self::Value, A::Error> {
        while sequence.next_element::<IgnoredAny>()?.is_some() {}
        not_an_object("an array")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        not_an_object("a boolean")
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        not_an_object("a number")
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        not_an_object("a number")
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        not_an_object("a number")
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        not_an_object("a string")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        not_an_object("null")
    }
}

const EVENT_TS: &str = "event_ts";
const APPLICATION_NAME: &str = "application_name";
const EVENT_KIND: &str = "event_kind";
const PAYLOAD: &str = "payload";

/// The fields of one event as found, before validation.
#[derive(Default)]
struct EventFields<'de> {
    event_ts: Option<Text<'de>>,
    application_name: Option<Text<'de>>,
    event_kind: Option<Text<'de>>,
    payload: Option<&'de RawValue>,
    problems: Problems,
}

impl<'de> EventFields<'de> {
    /// The event's size as the limit counts it: the texts of its four fields.
    fn bytes(&self) -> usize {
        let text = |value: &Option<Text<'_>>| match value {
            Some(Text::Text(text)) => text.len(),
            _ => 0,
        };
        text(&self.event_ts)
            + text(&self.application_name)
            + text(&self.event_kind)
            + self.payload.map_or(0, |payload| payload.get().len())
    }

    fn store_text(&mut self, field: &'static str, value: Text<'de>) {
        let slot = match field {
            EVENT_TS => &mut self.event_ts,
            APPLICATION_NAME => &mut self.application_name,
            _ => &mut self.event_kind,
        };
        if slot.is_some() {
            self.problems
                .push((Some(field.to_owned()), "is given more than once".to_owned()));
            return;
        }
        *slot = Some(value);
    }

    fn store_payload(&mut self, value: &'de RawValue) {
        if self.payload.is_some() {
            self.problems.push((
                Some(PAYLOAD.to_owned()),
                "is given more than once".to_owned(),
            ));
            return;
        }
        self.payload = Some(value);
    }

    /// Validates every field, collecting all problems rather than the first, and hands
    /// a valid event to the sink (if there is one) while its texts are still borrowed.
    fn finish<S: EventSink>(mut self, sink: Option<&mut S>) -> Result<(), Problems> {
        let problems = &mut self.problems;
        let event_ts = required_text(problems, EVENT_TS, self.event_ts)
            .and_then(|text| record(problems, EVENT_TS, EventTimestamp::parse(&text)));
        let application_text = required_text(problems, APPLICATION_NAME, self.application_name);
        let application_name = application_text
            .as_deref()
            .and_then(|text| record(problems, APPLICATION_NAME, ValidName::parse(text)));
        let kind_text = required_text(problems, EVENT_KIND, self.event_kind);
        let event_kind = kind_text
            .as_deref()
            .and_then(|text| record(problems, EVENT_KIND, ValidName::parse(text)));
        let payload = match self.payload {
            None => {
                problems.push((Some(PAYLOAD.to_owned()), "is required".to_owned()));
                None
            }
            Some(raw) => record(problems, PAYLOAD, ValidPayload::from_raw(raw)),
        };
        match (event_ts, application_name, event_kind, payload) {
            (Some(event_ts), Some(application_name), Some(event_kind), Some(payload))
                if problems.is_empty() =>
            {
                if let Some(sink) = sink {
                    sink.accept(EventRef {
                        event_ts,
                        application_name,
                        event_kind,
                        payload,
                    });
                }
                Ok(())
            }
            _ => Err(self.problems),
        }
    }
}

fn required_text<'de>(
    problems: &mut Problems,
    field: &'static str,
    value: Option<Text<'de>>,
) -> Option<Cow<'de, str>> {
    match value {
        None => {
            problems.push((Some(field.to_owned()), "is required".to_owned()));
            None
        }
        Some(Text::NotText(kind)) => {
            problems.push((
                Some(field.to_owned()),
                format!("expected a string, found {kind}"),
            ));
            None
        }
        Some(Text::Text(text)) => Some(text),
    }
}

fn record<T, E: fmt::Display>(
    problems: &mut Problems,
    field: &'static str,
    result: Result<T, E>,
) -> Option<T> {
    result
        .map_err(|error| problems.push((Some(field.to_owned()), error.to_string())))
        .ok()
}

/// An event field name; known names are matched without allocating.
enum FieldName {
    EventTs,
    ApplicationName,
    EventKind,
    Payload,
    Unknown(String),
}

impl<'de> de::Deserialize<'de> for FieldName {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(FieldNameVisitor)
    }
}

struct FieldNameVisitor;

impl Visitor<'_> for FieldNameVisitor {
    type Value = FieldName;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a field name")
    }

    fn visit_str<E>(self, name: &str) -> Result<FieldName, E> {
        Ok(match name {
            EVENT_TS => FieldName::EventTs,
            APPLICATION_NAME => FieldName::ApplicationName,
            EVENT_KIND => FieldName::EventKind,
            PAYLOAD => FieldName::Payload,
            other => FieldName::Unknown(other.chars().take(MAX_REPORTED_NAME_CHARS).collect()),
        })
    }
}

/// A field value that should be a string; anything else is remembered by its kind so
/// the problem can say what was found.
enum Text<'de> {
    Text(Cow<'de, str>),
    NotText(&'static str),
}

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Text::Text(Cow::Borrowed(text)))
    }

    fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Text::Text(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
        Ok(Text::Text(Cow::Owned(text)))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Text::NotText("a boolean"))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Text::NotText("a number"))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Text::NotText("a number"))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Text::NotText("a number"))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Text::NotText("null"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut sequence: A) -> Result<Self::Value, A::Error> {
        while sequence.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Text::NotText("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Text::NotText("an object"))
    }
}

#[cfg(test)]
mod tests {
    use audit_core::copy::CopyEncoder;

    use super::*;

    fn limits(max_events: usize) -> BatchLimits {
        BatchLimits {
            max_events,
            max_event_bytes: 1024 * 1024,
        }
    }

    #[test]
    fn an_event_over_the_size_limit_refuses_the_batch_naming_its_index() {
        let event = |payload: &str| {
            format!(
                r#"{{"event_ts":"2023-12-05T12:55:52Z","application_name":"a","event_kind":"k","payload":{payload}}}"#
            )
        };
        // 20 (timestamp) + 1 + 1 + payload: 100 bytes with a 78-byte payload.
        let exactly = event(&format!("\"{}\"", "x".repeat(76)));
        let over = event(&format!("\"{}\"", "x".repeat(77)));
        let small_limits = BatchLimits {
            max_events: 10,
            max_event_bytes: 100,
        };

        assert!(parse_events(format!("[{exactly}]").as_bytes(), small_limits).is_ok());
        match parse_events(format!("[{exactly},{over}]").as_bytes(), small_limits) {
            Err(ApiError::EventTooLarge(detail)) => assert_eq!(detail.index, Some(1)),
            other => panic!("expected event_too_large, got {other:?}"),
        }
    }

    fn problems_of(body: &str) -> Vec<Detail> {
        match parse_events(body.as_bytes(), limits(10)) {
            Err(ApiError::Validation(details)) => details,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    fn detail(index: usize, field: &str, problem: &str) -> Detail {
        Detail {
            index: Some(index),
            field: Some(field.to_owned()),
            problem: problem.to_owned(),
            ..Detail::default()
        }
    }

    #[test]
    fn a_valid_batch_parses_with_exact_payload_text() {
        let body = r#"[{"event_ts":"2023-12-05T12:55:52.805022Z","application_name":"a","event_kind":"k","payload":{"n":12345678901234567890123,"f":0.1}}]"#;

        let events = parse_events(body.as_bytes(), limits(10)).unwrap();

        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].payload.as_json_text(),
            r#"{"n":12345678901234567890123,"f":0.1}"#
        );
    }

    #[test]
    fn rows_for_the_writer_encode_exactly_the_parsed_events() {
        // Escapes make serde_json hand over owned strings instead of body slices.
        let body = r#"[
            {"event_ts":"2023-12-05T12:55:52.805022+01:00","application_name":"caf\u00e9","event_kind":"k","payload":{"a":"\u00e9"}},
            {"payload":[1e300],"event_kind":"Login","application_name":"b","event_ts":"2023-12-05T12:55:52Z"},
            {"event_ts":"2023-12-05T12:55:52Z","application_name":"caf\u00e9","event_kind":"k","payload":null}
        ]"#;

        let events = parse_events(body.as_bytes(), limits(10)).unwrap();
        let (rows, per_application) = parse_batch(body.as_bytes(), limits(10))
            .unwrap()
            .into_parts();

        assert_eq!(events[0].application_name.as_str(), "caf\u{e9}");
        assert_eq!(rows.count, 3);
        assert_eq!(rows.bytes, CopyEncoder::for_events(&events).take());
        assert_eq!(
            per_application,
            vec![("caf\u{e9}".to_owned(), 2), ("b".to_owned(), 1)]
        );
    }

    #[test]
    fn a_refused_batch_yields_no_rows() {
        let body = r#"[{"event_ts":"2023-12-05T12:55:52Z","application_name":"a","event_kind":"k","payload":1},{}]"#;

        assert!(matches!(
            parse_batch(body.as_bytes(), limits(10)),
            Err(ApiError::Validation(_))
        ));
    }

    #[test]
    fn every_problem_is_reported_with_index_and_field() {
        let body = r#"[
            {"event_ts":"2023-12-05T12:55:52Z","application_name":"a","event_kind":"k","payload":1},
            {"event_ts":5,"application_name":"","event_kind":"k","payload":1,"extra":true},
            {"application_name":"a","event_kind":"k"}
        ]"#;

        let problems = problems_of(body);

        assert_eq!(
            problems,
            vec![
                detail(1, "extra", "unknown field"),
                detail(1, "event_ts", "expected a string, found a number"),
                detail(1, "application_name", "must not be empty"),
                detail(2, "event_ts", "is required"),
                detail(2, "payload", "is required"),
            ]
        );
    }

    #[test]
    fn a_duplicated_field_is_a_problem() {
        let body = r#"[{"event_ts":"2023-12-05T12:55:52Z","event_ts":"2023-12-05T12:55:52Z","application_name":"a","event_kind":"k","payload":1}]"#;

        assert_eq!(
            problems_of(body),
            vec![detail(0, "event_ts", "is given more than once")]
        );
    }

    #[test]
    fn elements_that_are_not_objects_are_problems() {
        let problems = problems_of(r#"[1, "x", null, [], true]"#);

        assert_eq!(problems.len(), 5);
        assert!(problems.iter().all(|detail| detail.field.is_none()));
        assert_eq!(
            problems[3].problem,
            "expected an event object, found an array"
        );
    }

    #[test]
    fn a_body_that_is_not_an_array_is_a_validation_error() {
        assert_eq!(problems_of(r#"{"event_ts":"x"}"#).len(), 1);
    }

    #[test]
    fn malformed_json_reports_line_and_column() {
        match parse_events(b"[\n{\"a\": }]", limits(10)) {
            Err(ApiError::MalformedJson(detail)) => {
                assert_eq!(detail.line, Some(2));
                assert!(detail.column.is_some());
            }
            other => panic!("expected malformed json, got {other:?}"),
        }
    }

    #[test]
    fn more_events_than_the_limit_is_too_many() {
        let body = format!("[{}]", ["1"; 11].join(","));

        assert!(matches!(
            parse_events(body.as_bytes(), limits(10)),
            Err(ApiError::TooManyEvents { limit: 10 })
        ));
    }

    #[test]
    fn the_number_of_reported_problems_is_capped() {
        let body = format!("[{}]", ["{}"; 200].join(","));

        match parse_events(body.as_bytes(), limits(1000)) {
            Err(ApiError::Validation(details)) => assert_eq!(details.len(), MAX_REPORTED_PROBLEMS),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    mod hostile {
        use actix_web::ResponseError;
        use proptest::prelude::*;

        use super::*;

        /// JSON-ish text: real JSON values, spliced with the pieces that break parsers.
        fn json_like() -> impl Strategy<Value = String> {
            let leaf = prop_oneof![
                Just("null".to_owned()),
                Just("1e999999".to_owned()),
                Just("-0.0000000000000000000000001".to_owned()),
                Just("123456789012345678901234567890".to_owned()),
                Just(r#""\u0000""#.to_owned()),
                Just(r#""\ud800""#.to_owned()),
                Just(r#""2023-12-05T12:55:52Z""#.to_owned()),
                ".{0,40}".prop_map(|text| serde_json::to_string(&text).unwrap()),
                any::<i64>().prop_map(|number| number.to_string()),
            ];
            leaf.prop_recursive(6, 64, 8, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..8)
                        .prop_map(|items| format!("[{}]", items.join(","))),
                    prop::collection::vec(
                        (
                            prop_oneof![
                                Just("event_ts".to_owned()),
                                Just("application_name".to_owned()),
                                Just("event_kind".to_owned()),
                                Just("payload".to_owned()),
                                "[a-z_]{0,12}",
                            ],
                            inner
                        ),
                        0..6
                    )
                    .prop_map(|entries| {
                        let fields: Vec<String> = entries
                            .into_iter()
                            .map(|(key, value)| {
                                format!("{}:{value}", serde_json::to_string(&key).unwrap())
                            })
                            .collect();
                        format!("{{{}}}", fields.join(","))
                    }),
                ]
            })
        }

        fn assert_client_error(
            result: Result<Vec<NewEvent>, ApiError>,
        ) -> Result<(), TestCaseError> {
            if let Err(error) = result {
                prop_assert!(error.status_code().is_client_error(), "{error:?}");
            }
            Ok(())
        }

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic_and_fail_as_client_errors(body in prop::collection::vec(any::<u8>(), 0..512)) {
                assert_client_error(parse_events(&body, limits(100)))?;
            }

            #[test]
            fn arbitrary_json_like_bodies_never_panic_and_fail_as_client_errors(body in json_like()) {
                assert_client_error(parse_events(body.as_bytes(), limits(100)))?;
                assert_client_error(parse_events(format!("[{body}]").as_bytes(), limits(100)))?;
            }
        }

        #[test]
        fn nesting_far_deeper_than_the_recursion_limit_is_a_client_error() {
            let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
            let payload = format!(
                r#"[{{"event_ts":"2023-12-05T12:55:52Z","application_name":"a","event_kind":"k","payload":{deep}}}]"#
            );

            for body in [deep.as_str(), payload.as_str()] {
                // No Debug output on failure: the accepted value would be 200 kB.
                let rejected = parse_events(body.as_bytes(), limits(100))
                    .err()
                    .is_some_and(|error| error.status_code().is_client_error());
                assert!(rejected, "a body nested 100,000 deep was accepted");
            }
        }
    }
}
