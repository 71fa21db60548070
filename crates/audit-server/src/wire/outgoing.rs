//! Renders a page of stored events as the GET response body, as the rows arrive.
//!
//! Payloads are stored as JSON text that PostgreSQL validated on the way in, so they
//! are copied into the body verbatim instead of being parsed and re-serialised. Each
//! row is rendered and dropped as it arrives, so a page is in memory once, in chunks
//! of at most about [`CHUNK_BYTES`] that are freed as they are written to the client.

use std::ops::ControlFlow;

use actix_web::web::Bytes;
use audit_core::event::StoredEvent;

/// Size at which the rendered events start a new chunk.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// A page being rendered: `{"next_page": ..., "page_size": ..., "data": [...]}`.
#[derive(Debug)]
pub struct PageWriter {
    page_size: u32,
    max_bytes: usize,
    chunks: Vec<Bytes>,
    current: Vec<u8>,
    /// Bytes of the rendered events so far.
    bytes: usize,
    events: u32,
    /// The id of the last event taken: where the next page starts, below it.
    last_id: Option<i64>,
    next_page: Option<i64>,
}

/// The rendered page: small pages as one buffer, large ones as chunks.
#[derive(Debug)]
pub enum PageBody {
    Whole(Vec<u8>),
    Chunks(Vec<Bytes>),
}

impl PageWriter {
    /// A page of at most `page_size` events whose JSON takes at most `max_bytes`, except
    /// that its first event is always taken, whatever its size.
    pub fn new(page_size: u32, max_bytes: usize) -> Self {
        Self {
            page_size,
            max_bytes,
            chunks: Vec::new(),
            current: Vec::with_capacity(1024),
            bytes: 0,
            events: 0,
            last_id: None,
            next_page: None,
        }
    }

    /// Takes the next event, or stops the read: the page is full (by count or by
    /// bytes), and this event is the first of the next page, whose token is the id of
    /// the last event taken (the next page holds the events below it, as the
    /// original's tokens meant).
    pub fn accept(&mut self, event: StoredEvent<'_>) -> ControlFlow<()> {
        if self.events == self.page_size {
            self.next_page = self.last_id;
            return ControlFlow::Break(());
        }
        let start = self.current.len();
        if self.events > 0 {
            self.current.push(b',');
        }
        render_event(&mut self.current, &event);
        let rendered = self.current.len() - start;
        if self.events > 0 && self.bytes + rendered > self.max_bytes {
            self.current.truncate(start);
            self.next_page = self.last_id;
            return ControlFlow::Break(());
        }
        self.bytes += rendered;
        self.events += 1;
        self.last_id = Some(event.id);
        if self.current.len() >= CHUNK_BYTES {
            let full = std::mem::replace(&mut self.current, Vec::with_capacity(CHUNK_BYTES));
            self.chunks.push(Bytes::from(full));
        }
        ControlFlow::Continue(())
    }

    /// A page the read ended before it was full (it looked at every id it may for one
    /// page): the next page continues from `id` in the page's direction, unless the
    /// page already ended.
    pub fn continue_at(&mut self, id: i64) {
        if self.next_page.is_none() {
            self.next_page = Some(id);
        }
    }

    /// The whole body. A page that fits one chunk is one buffer (no streaming cost);
    /// a larger one is its chunks, between a head and a tail of a few bytes.
    pub fn finish(mut self) -> PageBody {
        let mut head = Vec::with_capacity(64);
        head.extend_from_slice(b"{\"next_page\":");
        match self.next_page {
            Some(token) => head.extend_from_slice(itoa::Buffer::new().format(token).as_bytes()),
            None => head.extend_from_slice(b"null"),
        }
        head.extend_from_slice(b",\"page_size\":");
        head.extend_from_slice(itoa::Buffer::new().format(self.page_size).as_bytes());
        head.extend_from_slice(b",\"data\":[");
        const TAIL: &[u8] = b"]}";
        if self.chunks.is_empty() {
            head.reserve_exact(self.current.len() + TAIL.len());
            head.extend_from_slice(&self.current);
            head.extend_from_slice(TAIL);
            return PageBody::Whole(head);
        }
        self.current.extend_from_slice(TAIL);
        let mut chunks = Vec::with_capacity(self.chunks.len() + 2);
        chunks.push(Bytes::from(head));
        chunks.append(&mut self.chunks);
        chunks.push(Bytes::from(self.current));
        PageBody::Chunks(chunks)
    }
}

pub fn render_event(body: &mut Vec<u8>, event: &StoredEvent<'_>) {
    // The id is additive to the original's shape: it names the event for its proof.
    body.extend_from_slice(b"{\"id\":");
    body.extend_from_slice(itoa::Buffer::new().format(event.id).as_bytes());
    body.extend_from_slice(b",\"event_ts\":\"");
    body.extend_from_slice(&event.event_ts.formatted());
    body.extend_from_slice(b"\",\"application_name\":");
    write_json_string(body, event.application_name);
    body.extend_from_slice(b",\"event_kind\":");
    write_json_string(body, event.event_kind);
    body.extend_from_slice(b",\"payload\":");
    body.extend_from_slice(event.payload.as_bytes());
    body.push(b'}');
}

fn write_json_string(body: &mut Vec<u8>, text: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(body, text);
}

#[cfg(test)]
mod tests {
    use audit_core::timestamp::EventTimestamp;

    use super::*;

    fn event(id: i64, payload: &str) -> StoredEvent<'_> {
        StoredEvent {
            id,
            event_ts: EventTimestamp::parse("2023-12-05T12:55:52.805022Z").unwrap(),
            application_name: "app \"quoted\"",
            event_kind: "UserLogin",
            payload,
        }
    }

    fn body_of(page: PageWriter) -> Vec<u8> {
        match page.finish() {
            PageBody::Whole(body) => body,
            PageBody::Chunks(chunks) => chunks.concat(),
        }
    }

    #[test]
    fn a_page_renders_as_valid_json_with_the_payload_verbatim() {
        let mut page = PageWriter::new(1, 1024);
        assert!(
            page.accept(event(7, r#"{"big":12345678901234567890123,"f":0.1}"#))
                .is_continue()
        );
        assert!(page.accept(event(6, "1")).is_break());

        let text = String::from_utf8(body_of(page)).unwrap();
        assert!(
            text.contains(r#""payload":{"big":12345678901234567890123,"f":0.1}"#),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["next_page"], 7, "the id of the last event on the page");
        assert_eq!(json["page_size"], 1);
        assert_eq!(json["data"][0]["event_ts"], "2023-12-05T12:55:52.805022Z");
        assert_eq!(json["data"][0]["application_name"], "app \"quoted\"");
        assert_eq!(json["data"][0]["id"], 7);
    }

    #[test]
    fn an_empty_last_page_has_a_null_next_page() {
        let page = PageWriter::new(10, 1024);

        assert_eq!(
            body_of(page),
            br#"{"next_page":null,"page_size":10,"data":[]}"#
        );
    }

    #[test]
    fn a_page_ends_before_the_event_that_would_pass_its_byte_limit() {
        // Each event renders to about 500 bytes: two fit 1,200, three do not.
        let payload = format!("\"{}\"", "x".repeat(400));
        let mut page = PageWriter::new(10, 1200);

        assert!(page.accept(event(9, &payload)).is_continue());
        assert!(page.accept(event(8, &payload)).is_continue());
        assert!(page.accept(event(7, &payload)).is_break());

        let json: serde_json::Value = serde_json::from_slice(&body_of(page)).unwrap();
        assert_eq!(json["data"].as_array().unwrap().len(), 2);
        assert_eq!(json["next_page"], 8);
    }

    #[test]
    fn the_first_event_is_taken_whatever_its_size() {
        let payload = format!("\"{}\"", "x".repeat(200 * 1024));
        let mut page = PageWriter::new(10, 1000);

        assert!(page.accept(event(9, &payload)).is_continue());
        assert!(page.accept(event(8, "1")).is_break());

        let PageBody::Chunks(chunks) = page.finish() else {
            panic!("a page larger than a chunk is streamed in chunks");
        };
        let json: serde_json::Value = serde_json::from_slice(&chunks.concat()).unwrap();
        assert_eq!(json["data"].as_array().unwrap().len(), 1);
        assert_eq!(json["next_page"], 9);
    }
}
