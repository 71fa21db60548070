//! The serde visitors that read a batch: the array, each event object, its field
//! names and its text fields, collecting every problem instead of stopping at one.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::batch::fields::{
    APPLICATION_NAME, EVENT_KIND, EVENT_TS, EventFields, PAYLOAD, Problems, Text,
};
use crate::batch::{BatchLimits, EventSink, MAX_REPORTED_PROBLEMS, Problem};

/// Unknown field names are cut to this many characters in error details.
const MAX_REPORTED_NAME_CHARS: usize = 64;

/// Why parsing stopped before the end of the body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Stop {
    #[default]
    No,
    TooManyEvents,
    /// The event at this index is over the size limit.
    EventTooLarge(usize),
}

/// Reads the array of events.
pub(crate) struct BatchSeed<'a, S> {
    pub(crate) limits: BatchLimits,
    pub(crate) stop: &'a Cell<Stop>,
    pub(crate) problems: &'a mut Vec<Problem>,
    pub(crate) sink: &'a mut S,
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
                        self.problems.push(Problem {
                            index,
                            field,
                            problem,
                        });
                    }
                }
            }
            index += 1;
        }
        Ok(())
    }
}

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
