//! One event's fields as the visitor found them (text fields kept as `Text`, which
//! remembers what a non-string value was), and their validation into an `EventRef`
//! that still borrows the body.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::batch::EventSink;
use crate::event::{EventRef, ValidName, ValidPayload};
use crate::timestamp::EventTimestamp;

/// The event fields' names in the JSON.
pub(crate) const EVENT_TS: &str = "event_ts";
pub(crate) const APPLICATION_NAME: &str = "application_name";
pub(crate) const EVENT_KIND: &str = "event_kind";
pub(crate) const PAYLOAD: &str = "payload";

/// One event's problems: the field (if any) and what is wrong with it.
pub(crate) type Problems = Vec<(Option<String>, String)>;

/// The fields of one event as found, before validation.
#[derive(Default)]
pub(crate) struct EventFields<'de> {
    event_ts: Option<Text<'de>>,
    application_name: Option<Text<'de>>,
    event_kind: Option<Text<'de>>,
    payload: Option<&'de RawValue>,
    pub(crate) problems: Problems,
}

impl<'de> EventFields<'de> {
    /// The event's size as the limit counts it: the texts of its four fields.
    pub(crate) fn bytes(&self) -> usize {
        let text = |value: &Option<Text<'_>>| match value {
            Some(Text::Text(text)) => text.len(),
            _ => 0,
        };
        text(&self.event_ts)
            + text(&self.application_name)
            + text(&self.event_kind)
            + self.payload.map_or(0, |payload| payload.get().len())
    }

    pub(crate) fn store_text(&mut self, field: &'static str, value: Text<'de>) {
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

    pub(crate) fn store_payload(&mut self, value: &'de RawValue) {
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
    pub(crate) fn finish<S: EventSink>(mut self, sink: Option<&mut S>) -> Result<(), Problems> {
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

/// A field value that should be a string; anything else is remembered by its kind so
/// the problem can say what was found.
pub(crate) enum Text<'de> {
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
