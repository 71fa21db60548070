//! PostgreSQL's binary COPY format for the events table (`encode`; `numbered`: a
//! sealed group's rows given the ids drawn for them), and streaming it in
//! (`copy_in`).
//!
//! Encoding rows ourselves (rather than through a generic row writer) lets the bulk
//! loader write exactly the bytes a raw `COPY ... FROM file` would read, so the two can
//! be compared on the same rows.

mod copy_in;
mod encode;
mod numbered;

pub use crate::copy::copy_in::{CopyTarget, copy_in};
pub use crate::copy::encode::{EncodedRows, RowEncoder, SealColumn, StreamEncoder, framed_rows};
pub use crate::copy::numbered::{COPY_NUMBERED_EVENTS, MalformedRows, NumberedRows, number_rows};

/// The COPY statement that reads what the encoders write.
pub const COPY_EVENTS: &str = "COPY events (event_ts, application_name, event_kind, payload, \
     token_name, seal) FROM STDIN (FORMAT binary)";
