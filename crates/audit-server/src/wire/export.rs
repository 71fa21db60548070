//! `GET /api/event/export`: its query string, and the two formats it streams.

use audit_core::event::StoredEvent;
use audit_core::filter::EventFilter;

use crate::errors::ApiError;
use crate::wire::outgoing::render_event;
use crate::wire::page_query::parse_filtered_query;

const FORMAT: &str = "format";
const AFTER: &str = "after";

/// One event a line, as in a page; or RFC 4180 CSV with a header line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExportFormat {
    #[default]
    Ndjson,
    Csv,
}

/// A validated export request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportQuery {
    pub format: ExportFormat,
    /// Resumes after this id (the last one a broken export delivered).
    pub after: Option<i64>,
    pub filter: EventFilter,
}

/// Parses the filters, `format` and `after`; other parameters are ignored.
pub fn parse_export_query(query: &str) -> Result<ExportQuery, ApiError> {
    let mut format = ExportFormat::default();
    let mut after = None;
    let filter = parse_filtered_query(query, &[FORMAT, AFTER], |name, value| {
        match name {
            FORMAT => {
                format = match value.as_str() {
                    "ndjson" => ExportFormat::Ndjson,
                    "csv" => ExportFormat::Csv,
                    _ => return Err("must be ndjson or csv".to_owned()),
                };
            }
            AFTER => {
                let id = value.parse::<i64>().map_err(|_| {
                    "must be an event id: the last id an export delivered".to_owned()
                })?;
                after = Some(id);
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(ExportQuery {
        format,
        after,
        filter,
    })
}

impl ExportFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Ndjson => "application/x-ndjson",
            Self::Csv => "text/csv; charset=utf-8; header=present",
        }
    }

    /// What comes before the first event.
    pub fn header(self) -> &'static [u8] {
        match self {
            Self::Ndjson => b"",
            Self::Csv => b"id,event_ts,application_name,event_kind,payload\r\n",
        }
    }

    pub fn render(self, body: &mut Vec<u8>, event: &StoredEvent<'_>) {
        match self {
            Self::Ndjson => {
                render_event(body, event);
                body.push(b'\n');
            }
            Self::Csv => {
                body.extend_from_slice(itoa::Buffer::new().format(event.id).as_bytes());
                body.push(b',');
                body.extend_from_slice(&event.event_ts.formatted());
                for text in [event.application_name, event.event_kind, event.payload] {
                    body.push(b',');
                    write_csv_field(body, text);
                }
                body.extend_from_slice(b"\r\n");
            }
        }
    }
}

/// A field as RFC 4180 writes it: quoted, with quotes doubled, when it holds a comma,
/// a quote or a line break; as it is otherwise.
fn write_csv_field(body: &mut Vec<u8>, text: &str) {
    if !text.contains([',', '"', '\r', '\n']) {
        body.extend_from_slice(text.as_bytes());
        return;
    }
    body.push(b'"');
    for byte in text.bytes() {
        if byte == b'"' {
            body.push(b'"');
        }
        body.push(byte);
    }
    body.push(b'"');
}

#[cfg(test)]
mod tests {
    use audit_core::timestamp::EventTimestamp;

    use super::*;

    fn event<'a>(application: &'a str, payload: &'a str) -> StoredEvent<'a> {
        StoredEvent {
            id: 42,
            event_ts: EventTimestamp::parse("2024-01-02T03:04:05Z").unwrap(),
            application_name: application,
            event_kind: "Login",
            payload,
        }
    }

    #[test]
    fn csv_quotes_only_fields_that_need_it_and_doubles_their_quotes() {
        let mut body = Vec::new();
        ExportFormat::Csv.render(&mut body, &event("billing", r#"{"a":"x,\"y\""}"#));
        ExportFormat::Csv.render(&mut body, &event("two\nlines", "1"));
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "42,2024-01-02T03:04:05.000000Z,billing,Login,\"{\"\"a\"\":\"\"x,\\\"\"y\\\"\"\"\"}\"\r\n\
             42,2024-01-02T03:04:05.000000Z,\"two\nlines\",Login,1\r\n"
        );
    }

    #[test]
    fn ndjson_is_one_page_event_a_line() {
        let mut body = Vec::new();
        ExportFormat::Ndjson.render(&mut body, &event("billing", r#"{"a":1}"#));
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "{\"id\":42,\"event_ts\":\"2024-01-02T03:04:05.000000Z\",\"application_name\":\"billing\",\"event_kind\":\"Login\",\"payload\":{\"a\":1}}\n"
        );
    }

    #[test]
    fn the_query_takes_filters_format_and_after() {
        let query = parse_export_query("format=csv&after=9&event_kind=Login&page_size=3").unwrap();
        assert_eq!(query.format, ExportFormat::Csv);
        assert_eq!(query.after, Some(9));
        assert_eq!(query.filter.kinds, ["Login"]);
        for bad in ["format=xml", "after=x", "format=csv&format=csv", "since=no"] {
            assert!(
                matches!(parse_export_query(bad), Err(ApiError::InvalidQuery(_))),
                "{bad}"
            );
        }
    }
}
