//! Turns a POST body into validated events in one pass over the JSON.
//!
//! serde's derive would stop at the first problem and could not say which field of
//! which event was wrong, so the array and each event are read by hand-written
//! visitors (`visitors`) that keep going and collect every problem with its index and
//! field; `fields` validates one event's fields. Valid events go to an [`EventSink`]
//! while their texts still borrow the body: [`EncodedBatch`] encodes them as COPY
//! rows, `Vec<NewEvent>` keeps them owned. Failures are [`BatchError`]s, which say
//! what is wrong and where; the HTTP layer decides what status they get.

mod encoded;
mod fields;
mod visitors;

use std::cell::Cell;

use serde::de::DeserializeSeed;

use crate::access::Applications;
pub use crate::batch::encoded::EncodedBatch;
use crate::batch::visitors::{BatchSeed, Stop};
use crate::copy::SealColumn;
use crate::event::{EventRef, NewEvent};

/// At most this many problems are reported, so a bad 16 MiB body cannot produce an
/// even larger error body.
pub const MAX_REPORTED_PROBLEMS: usize = 100;

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
    /// The server's defaults: 10,000 events, and 1 MiB an event (the original's
    /// whole-body limit).
    pub const DEFAULT: Self = Self {
        max_events: 10_000,
        max_event_bytes: 1024 * 1024,
    };
}

/// Who writes a batch, and which applications' events they may write.
#[derive(Clone, Copy, Debug)]
pub struct WriteGrant<'a> {
    /// Recorded as each event's `token_name`; none when access control is off.
    pub token_name: Option<&'a str>,
    pub applications: &'a Applications,
}

impl WriteGrant<'static> {
    /// Anyone, any application: access control off.
    pub const OPEN: Self = Self {
        token_name: None,
        applications: &Applications::All,
    };
}

/// One thing wrong with one event of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Position of the event in the array.
    pub index: usize,
    /// The field at fault, or none when the event as a whole is (not an object).
    pub field: Option<String>,
    /// What is wrong, written for the client.
    pub problem: String,
}

/// Why a batch was refused; nothing of it is stored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The body is not JSON; where the parser stopped.
    #[error("the body is not valid JSON: {message}")]
    MalformedJson {
        line: usize,
        column: usize,
        message: String,
    },
    /// Valid JSON, but not an array.
    #[error("the body must be a JSON array of event objects")]
    NotAnArray,
    /// Events with problems, every one of them (up to [`MAX_REPORTED_PROBLEMS`]).
    #[error("{} problem(s) in the batch", .0.len())]
    Invalid(Vec<Problem>),
    #[error("the batch holds more than the limit of {limit} events")]
    TooManyEvents { limit: usize },
    #[error("event {index} is larger than the limit of {limit} bytes")]
    EventTooLarge { index: usize, limit: usize },
    /// A valid batch with events of applications the writer may not write (the first
    /// [`MAX_REPORTED_PROBLEMS`] of them).
    #[error("the batch holds events of applications this token may not write")]
    Forbidden(Vec<Problem>),
}

/// Parses and validates a whole batch into COPY rows, without an allocation per
/// field; all of it is valid and within the grant, or nothing is returned. This is
/// what `POST` uses.
pub fn parse_batch<'grant>(
    body: &[u8],
    limits: BatchLimits,
    grant: WriteGrant<'grant>,
    seal: SealColumn,
) -> Result<EncodedBatch<'grant>, BatchError> {
    let batch = parse_into(
        body,
        limits,
        EncodedBatch::for_body(body.len(), grant, seal),
    )?;
    if !batch.refused().is_empty() {
        return Err(BatchError::Forbidden(batch.refused().to_vec()));
    }
    Ok(batch)
}

/// Parses and validates a whole batch into owned events.
pub fn parse_events(body: &[u8], limits: BatchLimits) -> Result<Vec<NewEvent>, BatchError> {
    parse_into(body, limits, Vec::new())
}

fn parse_into<S: EventSink>(
    body: &[u8],
    limits: BatchLimits,
    mut sink: S,
) -> Result<S, BatchError> {
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
            return Err(BatchError::TooManyEvents {
                limit: limits.max_events,
            });
        }
        (Err(_), Stop::EventTooLarge(index)) => {
            return Err(BatchError::EventTooLarge {
                index,
                limit: limits.max_event_bytes,
            });
        }
        (Err(error), Stop::No) if error.is_data() => return Err(BatchError::NotAnArray),
        (Err(error), Stop::No) => {
            return Err(BatchError::MalformedJson {
                line: error.line(),
                column: error.column(),
                message: error.to_string(),
            });
        }
    }
    if !problems.is_empty() {
        return Err(BatchError::Invalid(problems));
    }
    Ok(sink)
}

#[cfg(test)]
mod tests;
