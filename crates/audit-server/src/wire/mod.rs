//! The JSON shapes of the HTTP API, converted explicitly to and from domain types.

pub mod export;
pub mod outgoing;
pub mod page_query;
