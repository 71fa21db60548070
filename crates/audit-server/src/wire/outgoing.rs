//! Renders a page of stored events as the GET response body.
//!
//! Payloads are stored as JSON text that PostgreSQL validated on the way in, so they
//! are copied into the body verbatim instead of being parsed and re-serialised.

use audit_core::event::StoredEvent;

/// `{"next_page": ..., "page_size": ..., "data": [...]}`.
pub fn render_page(events: &[StoredEvent], next_page: Option<i64>, page_size: u32) -> Vec<u8> {
    let payload_bytes: usize = events.iter().map(|event| event.payload.len() + 128).sum();
    let mut body = Vec::with_capacity(64 + payload_bytes);
    body.extend_from_slice(b"{\"next_page\":");
    match next_page {
        Some(token) => body.extend_from_slice(token.to_string().as_bytes()),
        None => body.extend_from_slice(b"null"),
    }
    body.extend_from_slice(b",\"page_size\":");
    body.extend_from_slice(page_size.to_string().as_bytes());
    body.extend_from_slice(b",\"data\":[");
    for (position, event) in events.iter().enumerate() {
        if position > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{\"event_ts\":\"");
        body.extend_from_slice(event.event_ts.to_string().as_bytes());
        body.extend_from_slice(b"\",\"application_name\":");
        write_json_string(&mut body, &event.application_name);
        body.extend_from_slice(b",\"event_kind\":");
        write_json_string(&mut body, &event.event_kind);
        body.extend_from_slice(b",\"payload\":");
        body.extend_from_slice(event.payload.as_bytes());
        body.push(b'}');
    }
    body.extend_from_slice(b"]}");
    body
}

fn write_json_string(body: &mut Vec<u8>, text: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(body, text);
}

#[cfg(test)]
mod tests {
    use audit_core::timestamp::EventTimestamp;

    use super::*;

    #[test]
    fn a_page_renders_as_valid_json_with_the_payload_verbatim() {
        let events = vec![StoredEvent {
            id: 7,
            event_ts: EventTimestamp::parse("2023-12-05T12:55:52.805022Z").unwrap(),
            application_name: "app \"quoted\"".to_owned(),
            event_kind: "UserLogin".to_owned(),
            payload: r#"{"big":12345678901234567890123,"f":0.1}"#.to_owned(),
        }];

        let body = render_page(&events, Some(6), 1);

        let text = String::from_utf8(body).unwrap();
        assert!(
            text.contains(r#""payload":{"big":12345678901234567890123,"f":0.1}"#),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["next_page"], 6);
        assert_eq!(json["page_size"], 1);
        assert_eq!(json["data"][0]["event_ts"], "2023-12-05T12:55:52.805022Z");
        assert_eq!(json["data"][0]["application_name"], "app \"quoted\"");
    }

    #[test]
    fn an_empty_last_page_has_a_null_next_page() {
        let body = render_page(&[], None, 10);

        assert_eq!(body, br#"{"next_page":null,"page_size":10,"data":[]}"#);
    }
}
