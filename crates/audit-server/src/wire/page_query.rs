//! The query string of `GET /api/event`.

use std::collections::HashSet;

use crate::errors::{ApiError, Detail};
use crate::settings::ApiSettings;

const PAGE_SIZE: &str = "page_size";
const PAGE_TOKEN: &str = "page_token";

/// A validated page request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageQuery {
    pub page_size: u32,
    /// The page holds events with ids below this one (the last id of the previous
    /// page, as the original's tokens meant); `None` starts at the newest event.
    pub page_token: Option<i64>,
}

/// Parses `page_size` and `page_token`; other parameters are ignored, as the original
/// did, so that cache-busting parameters keep working.
pub fn parse_page_query(query: &str, api: &ApiSettings) -> Result<PageQuery, ApiError> {
    let mut problems = Vec::new();
    let mut seen = HashSet::new();
    let mut page_size = api.default_page_size;
    let mut page_token = None;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let name = name.as_ref();
        if name != PAGE_SIZE && name != PAGE_TOKEN {
            continue;
        }
        if !seen.insert(name.to_owned()) {
            problems.push(problem(name, "is given more than once".to_owned()));
            continue;
        }
        if name == PAGE_SIZE {
            match value.parse::<u32>() {
                Ok(size) if (1..=api.max_page_size).contains(&size) => page_size = size,
                _ => problems.push(problem(
                    PAGE_SIZE,
                    format!("must be an integer from 1 to {}", api.max_page_size),
                )),
            }
        } else {
            // The original reads an empty token and 0 as no token: the first page.
            match value.parse::<i64>() {
                _ if value.is_empty() => page_token = None,
                Ok(0) => page_token = None,
                Ok(token) if token > 0 => page_token = Some(token),
                _ => problems.push(problem(
                    PAGE_TOKEN,
                    "must be a non-negative integer: the next_page of the previous response"
                        .to_owned(),
                )),
            }
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::InvalidQuery(problems));
    }
    Ok(PageQuery {
        page_size,
        page_token,
    })
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
                page_token: None
            }
        );
    }

    #[test]
    fn valid_values_are_taken_and_unknown_parameters_ignored() {
        assert_eq!(
            parse("page_size=1000&page_token=42&_=123").unwrap(),
            PageQuery {
                page_size: 1000,
                page_token: Some(42)
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
        ] {
            assert!(
                matches!(parse(query), Err(ApiError::InvalidQuery(_))),
                "{query} was accepted"
            );
        }
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
