//! The query string of `GET /api/event`.

use std::collections::HashSet;

use audit_core::event::{ApplicationName, EventKind, Payload};
use audit_core::filter::{Direction, EventFilter};
use audit_core::timestamp::EventTimestamp;

use crate::errors::{ApiError, Detail};
use crate::settings::ApiSettings;

const PAGE_SIZE: &str = "page_size";
const PAGE_TOKEN: &str = "page_token";
const APPLICATION_NAME: &str = "application_name";
const EVENT_KIND: &str = "event_kind";
const SINCE: &str = "since";
const UNTIL: &str = "until";
const PAYLOAD_CONTAINS: &str = "payload_contains";
const ORDER: &str = "order";
/// Parameters that may be given more than once (any of the values).
const REPEATABLE: [&str; 2] = [APPLICATION_NAME, EVENT_KIND];
/// The filters, shared by pages, exports and streams.
const FILTERS: [&str; 5] = [APPLICATION_NAME, EVENT_KIND, SINCE, UNTIL, PAYLOAD_CONTAINS];

/// A validated page request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageQuery {
    pub page_size: u32,
    /// The page holds events with ids beyond this one in its direction (the last id
    /// of the previous page, as the original's tokens meant); `None` starts at the
    /// newest event (or the oldest, oldest first).
    pub page_token: Option<i64>,
    pub direction: Direction,
    pub filter: EventFilter,
}

/// Parses the page and its filters; other parameters are ignored, as the original
/// did, so that cache-busting parameters keep working.
pub fn parse_page_query(query: &str, api: &ApiSettings) -> Result<PageQuery, ApiError> {
    let mut page_size = api.default_page_size;
    let mut page_token = None;
    let mut direction = Direction::Descending;
    let filter = parse_filtered_query(query, &[PAGE_SIZE, PAGE_TOKEN, ORDER], |name, value| {
        match name {
            PAGE_SIZE => match value.parse::<u32>() {
                Ok(size) if (1..=api.max_page_size).contains(&size) => page_size = size,
                _ => {
                    return Err(format!(
                        "must be an integer from 1 to {}",
                        api.max_page_size
                    ));
                }
            },
            // The original reads an empty token and 0 as no token: the first page.
            PAGE_TOKEN => match value.parse::<i64>() {
                _ if value.is_empty() => {}
                Ok(0) => {}
                Ok(token) if token > 0 => page_token = Some(token),
                _ => {
                    return Err(
                        "must be a non-negative integer: the next_page of the previous response"
                            .to_owned(),
                    );
                }
            },
            ORDER => {
                direction = match value.as_str() {
                    "desc" => Direction::Descending,
                    "asc" => Direction::Ascending,
                    _ => {
                        return Err("must be desc (newest first) or asc (oldest first)".to_owned());
                    }
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(PageQuery {
        page_size,
        page_token,
        direction,
        filter,
    })
}

/// Reads a query string's [`FILTERS`], and its `extra` parameters through `take`,
/// which says what is wrong with a value; others are ignored. Every problem is
/// reported as `422 invalid_query`, each naming its parameter; a window that holds
/// no instant is one too.
pub fn parse_filtered_query(
    query: &str,
    extra: &[&str],
    mut take: impl FnMut(&str, String) -> Result<(), String>,
) -> Result<EventFilter, ApiError> {
    let mut filter = EventFilter::default();
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let name = name.as_ref();
        let is_filter = FILTERS.contains(&name);
        if !is_filter && !extra.contains(&name) {
            continue;
        }
        if !seen.insert(name.to_owned()) && !REPEATABLE.contains(&name) {
            problems.push(problem(name, "is given more than once".to_owned()));
            continue;
        }
        let value = value.into_owned();
        let taken = if is_filter {
            take_filter(&mut filter, name, value)
        } else {
            take(name, value)
        };
        if let Err(message) = taken {
            problems.push(problem(name, message));
        }
    }
    if problems.is_empty()
        && let (Some(since), Some(until)) = (filter.since, filter.until)
        && since >= until
    {
        problems.push(problem(
            UNTIL,
            "must be later than since (the window is since <= event_ts < until)".to_owned(),
        ));
    }
    if problems.is_empty() {
        Ok(filter)
    } else {
        Err(ApiError::InvalidQuery(problems))
    }
}

/// Takes one of the [`FILTERS`] into `filter`; the error says what is wrong with it.
fn take_filter(filter: &mut EventFilter, name: &str, value: String) -> Result<(), String> {
    match name {
        APPLICATION_NAME => {
            let name = ApplicationName::parse(value).map_err(|error| error.to_string())?;
            filter.applications.push(name.as_str().to_owned());
        }
        EVENT_KIND => {
            let kind = EventKind::parse(value).map_err(|error| error.to_string())?;
            filter.kinds.push(kind.as_str().to_owned());
        }
        SINCE => filter.since = Some(timestamp(&value)?),
        UNTIL => filter.until = Some(timestamp(&value)?),
        PAYLOAD_CONTAINS => {
            let payload = Payload::parse(&value).map_err(|error| error.to_string())?;
            if !payload.as_json_text().starts_with('{') {
                return Err("must be a JSON object, such as {\"user\":\"alice\"}".to_owned());
            }
            filter.payload_contains = Some(payload.as_json_text().to_owned());
        }
        _ => {}
    }
    Ok(())
}

fn timestamp(value: &str) -> Result<EventTimestamp, String> {
    EventTimestamp::parse(value).map_err(|error| error.to_string())
}

fn problem(field: &str, problem: String) -> Detail {
    Detail {
        field: Some(field.to_owned()),
        problem,
        ..Detail::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<PageQuery, ApiError> {
        parse_page_query(query, &ApiSettings::default())
    }

    #[test]
    fn defaults_apply_when_nothing_is_given() {
        assert_eq!(
            parse("").unwrap(),
            PageQuery {
                page_size: 10,
                page_token: None,
                direction: Direction::Descending,
                filter: EventFilter::default(),
            }
        );
    }

    #[test]
    fn valid_values_are_taken_and_unknown_parameters_ignored() {
        assert_eq!(
            parse("page_size=1000&page_token=42&_=123").unwrap(),
            PageQuery {
                page_size: 1000,
                page_token: Some(42),
                direction: Direction::Descending,
                filter: EventFilter::default(),
            }
        );
    }

    #[test]
    fn an_empty_token_and_token_0_mean_the_first_page_as_in_the_original() {
        for query in ["page_token=", "page_token=0", "page_size=10&page_token=0"] {
            assert_eq!(parse(query).unwrap().page_token, None, "{query}");
        }
    }

    #[test]
    fn bad_values_are_invalid_queries() {
        for query in [
            "page_size=0",
            "page_size=1001",
            "page_size=-1",
            "page_size=ten",
            "page_size=",
            "page_token=-1",
            "page_token=1.5",
            "page_token=99999999999999999999",
            "page_size=1&page_size=2",
            "page_token=%FF",
            "application_name=",
            "event_kind=",
            "since=yesterday",
            "until=2023-13-01T00:00:00Z",
            "since=2024-01-02T00:00:00Z&until=2024-01-01T00:00:00Z",
            "since=2024-01-01T00:00:00Z&until=2024-01-01T00:00:00Z",
            "payload_contains=[1]",
            "payload_contains=%7B",
            "payload_contains=%7B%22a%22:%22%5Cu0000%22%7D",
            "order=newest",
            "order=asc&order=desc",
            "since=2024-01-01T00:00:00Z&since=2024-01-02T00:00:00Z",
        ] {
            assert!(
                matches!(parse(query), Err(ApiError::InvalidQuery(_))),
                "{query} was accepted"
            );
        }
    }

    #[test]
    fn filters_are_taken_with_repeated_names_as_any_of_their_values() {
        let page = parse(
            "application_name=a&application_name=b&event_kind=Login&since=2024-01-01T00:00:00Z\
             &until=2024-02-01T00:00:00%2B01:00&payload_contains=%7B%22user%22:%22al%22%7D\
             &order=asc&page_token=7",
        )
        .unwrap();
        assert_eq!(page.direction, Direction::Ascending);
        assert_eq!(page.page_token, Some(7));
        assert_eq!(page.filter.applications, ["a", "b"]);
        assert_eq!(page.filter.kinds, ["Login"]);
        assert_eq!(
            page.filter.since,
            Some(EventTimestamp::parse("2024-01-01T00:00:00Z").unwrap())
        );
        assert_eq!(
            page.filter.until,
            Some(EventTimestamp::parse("2024-01-31T23:00:00Z").unwrap())
        );
        assert_eq!(
            page.filter.payload_contains.as_deref(),
            Some(r#"{"user":"al"}"#)
        );
    }

    #[test]
    fn a_bad_filter_is_named_in_the_answer() {
        let Err(ApiError::InvalidQuery(problems)) = parse("order=up&since=x&event_kind=ok") else {
            panic!("accepted");
        };
        let fields: Vec<_> = problems
            .iter()
            .map(|problem| problem.field.clone())
            .collect();
        assert_eq!(fields, [Some("order".to_owned()), Some("since".to_owned())]);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_query_strings_never_panic(query in ".{0,200}") {
            let _ = parse(&query);
        }

        #[test]
        fn arbitrary_values_are_accepted_only_in_range(value in ".{0,30}") {
            let query = format!("page_size={}", form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>());
            match parse(&query) {
                Ok(page) => proptest::prop_assert!((1..=1000).contains(&page.page_size)),
                Err(error) => proptest::prop_assert!(matches!(error, ApiError::InvalidQuery(_))),
            }
        }
    }
}
