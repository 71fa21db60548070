//! The events the collector writes about itself: tokens created, revoked and expired,
//! configuration reloaded, access control turned on or off. They go into the events
//! table like any other, under [`COLLECTOR_APPLICATION`], so the log records who
//! changed who may write to it.

use serde_json::{Map, Value};
use tokio_postgres::Transaction;

use crate::copy::{CopyTarget, EncodedRows, RowEncoder, copy_in, framed_rows};
use crate::event::NewEvent;
use crate::storage_error::StorageError;

/// The application name of the collector's own events.
pub const COLLECTOR_APPLICATION: &str = "audit-collector";

/// Who made a change, as the collector's events record it (`by` and `via` in their
/// payload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// An admin token, by name.
    Token(String),
    /// `audit-server token ...` on the command line.
    Cli,
    /// A request from the same host while access control is off.
    Loopback,
    /// SIGHUP.
    Signal,
    /// The server itself (an expiry it noticed, the mode it started in).
    Server,
}

impl Actor {
    /// The token's name, or how the change came: `cli`, `loopback`, `signal`, `server`.
    pub fn by(&self) -> &str {
        match self {
            Self::Token(name) => name,
            other => other.via(),
        }
    }

    pub fn via(&self) -> &'static str {
        match self {
            Self::Token(_) => "token",
            Self::Cli => "cli",
            Self::Loopback => "loopback",
            Self::Signal => "signal",
            Self::Server => "server",
        }
    }

    /// The token recorded as the writer of the event (`token_name`).
    pub fn token_name(&self) -> Option<&str> {
        match self {
            Self::Token(name) => Some(name),
            _ => None,
        }
    }
}

/// One of the collector's events: `details` plus who did it.
pub fn collector_event(kind: &'static str, actor: &Actor, details: Map<String, Value>) -> NewEvent {
    let mut payload = details;
    payload.insert("by".to_owned(), Value::from(actor.by()));
    payload.insert("via".to_owned(), Value::from(actor.via()));
    NewEvent::from_collector(COLLECTOR_APPLICATION, kind, &Value::Object(payload))
}

/// The collector's events as COPY rows written by `actor`: for a transaction of
/// their own (`write_in_transaction`) or the group-commit writer.
pub fn rows_of(events: &[NewEvent], actor: &Actor) -> EncodedRows {
    let mut encoder = RowEncoder::default().written_by(actor.token_name());
    for event in events {
        encoder.push(event.as_event_ref());
    }
    encoder.into_rows()
}

/// Writes the collector's events inside the caller's transaction, so that they commit
/// with the change they record, or not at all.
pub async fn write_in_transaction(
    transaction: &Transaction<'_>,
    events: &[NewEvent],
    actor: &Actor,
) -> Result<u64, StorageError> {
    let rows = rows_of(events, actor);
    let chunks = futures_util::stream::iter(framed_rows([rows.bytes]));
    copy_in(CopyTarget::InTransaction(transaction), chunks).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ApplicationName, EventKind, Payload};

    #[test]
    fn a_collector_event_passes_the_rules_a_client_event_does() {
        let mut details = Map::new();
        details.insert("name".to_owned(), Value::from("ci"));

        let event = collector_event("TokenCreated", &Actor::Token("root".to_owned()), details);

        ApplicationName::parse(event.application_name.as_str().to_owned()).unwrap();
        EventKind::parse(event.event_kind.as_str().to_owned()).unwrap();
        let text = event.payload.as_raw_value().get();
        Payload::parse(text).unwrap();
        let payload: Value = serde_json::from_str(text).unwrap();
        assert_eq!(payload["name"], "ci");
        assert_eq!(payload["by"], "root");
        assert_eq!(payload["via"], "token");
        assert_eq!(event.application_name.as_str(), COLLECTOR_APPLICATION);
    }
}
