//! Tests of the batch parser.

use proptest::prelude::*;

use super::*;
use crate::access::Applications;
use crate::copy::RowEncoder;

fn limits(max_events: usize) -> BatchLimits {
    BatchLimits {
        max_events,
        max_event_bytes: 1024 * 1024,
    }
}

#[test]
fn an_event_over_the_size_limit_refuses_the_batch_naming_its_index() {
    let event = |payload: &str| {
        format!(
            r#"{{"event_ts":"2023-12-05T12:55:52Z","application_name":"a","event_kind":"k","payload":{payload}}}"#
        )
    };
    // 20 (timestamp) + 1 + 1 + payload: 100 bytes with a 78-byte payload.
    let exactly = event(&format!("\"{}\"", "x".repeat(76)));
    let over = event(&format!("\"{}\"", "x".repeat(77)));
    let small_limits = BatchLimits {
        max_events: 10,
        max_event_bytes: 100,
    };

    assert!(parse_events(format!("[{exactly}]").as_bytes(), small_limits).is_ok());
    match parse_events(format!("[{exactly},{over}]").as_bytes(), small_limits) {
        Err(BatchError::EventTooLarge { index, limit }) => assert_eq!((index, limit), (1, 100)),
        other => panic!("expected event_too_large, got {other:?}"),
    }
}

fn problems_of(body: &str) -> Vec<Problem> {
    match parse_events(body.as_bytes(), limits(10)) {
        Err(BatchError::Invalid(problems)) => problems,
        other => panic!("expected problems, got {other:?}"),
    }
}

fn detail(index: usize, field: &str, problem: &str) -> Problem {
    Problem {
        index,
        field: Some(field.to_owned()),
        problem: problem.to_owned(),
    }
}

#[test]
fn a_valid_batch_parses_with_exact_payload_text() {
    let body = r#"[{"event_ts":"2023-12-05T12:55:52.805022Z","application_name":"a","event_kind":"k","payload":{"n":12345678901234567890123,"f":0.1}}]"#;

    let events = parse_events(body.as_bytes(), limits(10)).unwrap();

    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].payload.as_json_text(),
        r#"{"n":12345678901234567890123,"f":0.1}"#
    );
}

#[test]
fn rows_for_the_writer_encode_exactly_the_parsed_events() {
    // Escapes make serde_json hand over owned strings instead of body slices.
    let body = r#"[
        {"event_ts":"2023-12-05T12:55:52.805022+01:00","application_name":"caf\u00e9","event_kind":"k","payload":{"a":"\u00e9"}},
        {"payload":[1e300],"event_kind":"Login","application_name":"b","event_ts":"2023-12-05T12:55:52Z"},
        {"event_ts":"2023-12-05T12:55:52Z","application_name":"caf\u00e9","event_kind":"k","payload":null}
    ]"#;

    let events = parse_events(body.as_bytes(), limits(10)).unwrap();
    let (rows, per_application) = parse_batch(
        body.as_bytes(),
        limits(10),
        WriteGrant::OPEN,
        SealColumn::Filled,
    )
    .unwrap()
    .into_parts();

    assert_eq!(events[0].application_name.as_str(), "caf\u{e9}");
    assert_eq!(rows.count, 3);
    assert_eq!(
        rows.bytes,
        RowEncoder::for_events(&events).into_rows().bytes
    );
    assert_eq!(
        per_application,
        vec![("caf\u{e9}".to_owned(), 2), ("b".to_owned(), 1)]
    );
}

#[test]
fn a_refused_batch_yields_no_rows() {
    let body = r#"[{"event_ts":"2023-12-05T12:55:52Z","application_name":"a","event_kind":"k","payload":1},{}]"#;

    assert!(matches!(
        parse_batch(
            body.as_bytes(),
            limits(10),
            WriteGrant::OPEN,
            SealColumn::Filled
        ),
        Err(BatchError::Invalid(_))
    ));
}

#[test]
fn every_problem_is_reported_with_index_and_field() {
    let body = r#"[
        {"event_ts":"2023-12-05T12:55:52Z","application_name":"a","event_kind":"k","payload":1},
        {"event_ts":5,"application_name":"","event_kind":"k","payload":1,"extra":true},
        {"application_name":"a","event_kind":"k"}
    ]"#;

    let problems = problems_of(body);

    assert_eq!(
        problems,
        vec![
            detail(1, "extra", "unknown field"),
            detail(1, "event_ts", "expected a string, found a number"),
            detail(1, "application_name", "must not be empty"),
            detail(2, "event_ts", "is required"),
            detail(2, "payload", "is required"),
        ]
    );
}

#[test]
fn a_duplicated_field_is_a_problem() {
    let body = r#"[{"event_ts":"2023-12-05T12:55:52Z","event_ts":"2023-12-05T12:55:52Z","application_name":"a","event_kind":"k","payload":1}]"#;

    assert_eq!(
        problems_of(body),
        vec![detail(0, "event_ts", "is given more than once")]
    );
}

#[test]
fn elements_that_are_not_objects_are_problems() {
    let problems = problems_of(r#"[1, "x", null, [], true]"#);

    assert_eq!(problems.len(), 5);
    assert!(problems.iter().all(|detail| detail.field.is_none()));
    assert_eq!(
        problems[3].problem,
        "expected an event object, found an array"
    );
}

#[test]
fn a_body_that_is_not_an_array_is_refused_as_such() {
    assert_eq!(
        parse_events(br#"{"event_ts":"x"}"#, limits(10)),
        Err(BatchError::NotAnArray)
    );
}

#[test]
fn malformed_json_reports_line_and_column() {
    match parse_events(b"[\n{\"a\": }]", limits(10)) {
        Err(BatchError::MalformedJson { line, column, .. }) => {
            assert_eq!(line, 2);
            assert!(column > 0);
        }
        other => panic!("expected malformed json, got {other:?}"),
    }
}

#[test]
fn more_events_than_the_limit_is_too_many() {
    let body = format!("[{}]", ["1"; 11].join(","));

    assert!(matches!(
        parse_events(body.as_bytes(), limits(10)),
        Err(BatchError::TooManyEvents { limit: 10 })
    ));
}

#[test]
fn the_number_of_reported_problems_is_capped() {
    let body = format!("[{}]", ["{}"; 200].join(","));

    match parse_events(body.as_bytes(), limits(1000)) {
        Err(BatchError::Invalid(problems)) => assert_eq!(problems.len(), MAX_REPORTED_PROBLEMS),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

/// Whatever the body, the parser answers: it never panics, and a refusal is one of
/// the batch errors (every one of which the server answers with a 4xx).
mod hostile {
    use super::*;

    /// JSON-ish text: real JSON values, spliced with the pieces that break parsers.
    fn json_like() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("1e999999".to_owned()),
            Just("-0.0000000000000000000000001".to_owned()),
            Just("123456789012345678901234567890".to_owned()),
            Just(r#""\u0000""#.to_owned()),
            Just(r#""\ud800""#.to_owned()),
            Just(r#""2023-12-05T12:55:52Z""#.to_owned()),
            ".{0,40}".prop_map(|text| serde_json::to_string(&text).unwrap()),
            any::<i64>().prop_map(|number| number.to_string()),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8)
                    .prop_map(|items| format!("[{}]", items.join(","))),
                prop::collection::vec(
                    (
                        prop_oneof![
                            Just("event_ts".to_owned()),
                            Just("application_name".to_owned()),
                            Just("event_kind".to_owned()),
                            Just("payload".to_owned()),
                            "[a-z_]{0,12}",
                        ],
                        inner
                    ),
                    0..6
                )
                .prop_map(|entries| {
                    let fields: Vec<String> = entries
                        .into_iter()
                        .map(|(key, value)| {
                            format!("{}:{value}", serde_json::to_string(&key).unwrap())
                        })
                        .collect();
                    format!("{{{}}}", fields.join(","))
                }),
            ]
        })
    }

    fn assert_client_error(result: Result<Vec<NewEvent>, BatchError>) -> Result<(), TestCaseError> {
        // A refusal is a `BatchError` by type; what matters is that one came back
        // (no panic) and that it says what is wrong.
        if let Err(error) = result {
            prop_assert!(!error.to_string().is_empty());
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_fail_as_client_errors(body in prop::collection::vec(any::<u8>(), 0..512)) {
            assert_client_error(parse_events(&body, limits(100)))?;
        }

        #[test]
        fn arbitrary_json_like_bodies_never_panic_and_fail_as_client_errors(body in json_like()) {
            assert_client_error(parse_events(body.as_bytes(), limits(100)))?;
            assert_client_error(parse_events(format!("[{body}]").as_bytes(), limits(100)))?;
        }
    }

    #[test]
    fn nesting_far_deeper_than_the_recursion_limit_is_a_client_error() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let payload = format!(
            r#"[{{"event_ts":"2023-12-05T12:55:52Z","application_name":"a","event_kind":"k","payload":{deep}}}]"#
        );

        for body in [deep.as_str(), payload.as_str()] {
            // No Debug output on failure: the accepted value would be 200 kB.
            let rejected = parse_events(body.as_bytes(), limits(100)).is_err();
            assert!(rejected, "a body nested 100,000 deep was accepted");
        }
    }
}

#[test]
fn a_grant_refuses_the_whole_batch_naming_each_event_it_does_not_cover() {
    let event = |application: &str| {
        format!(
            r#"{{"event_ts":"2023-12-05T12:55:52Z","application_name":"{application}","event_kind":"k","payload":1}}"#
        )
    };
    let body = format!(
        "[{},{},{},{}]",
        event("a"),
        event("b"),
        event("a"),
        event("c")
    );
    let writable = Applications::from_list(vec!["a".to_owned()]).unwrap();
    let grant = WriteGrant {
        token_name: Some("writer-a"),
        applications: &writable,
    };

    let Err(BatchError::Forbidden(refused)) =
        parse_batch(body.as_bytes(), limits(10), grant, SealColumn::Filled)
    else {
        panic!("the batch was not refused");
    };

    let indexes: Vec<usize> = refused.iter().map(|problem| problem.index).collect();
    assert_eq!(indexes, [1, 3]);
    assert!(refused[0].problem.contains(r#""b""#), "{:?}", refused[0]);
    assert_eq!(refused[0].field.as_deref(), Some("application_name"));
}

#[test]
fn an_invalid_batch_is_reported_as_invalid_before_any_refusal() {
    let body = r#"[{"event_ts":"2023-12-05T12:55:52Z","application_name":"b","event_kind":"k","payload":1},{}]"#;
    let nothing = Applications::Only(Vec::new());
    let grant = WriteGrant {
        token_name: Some("reader"),
        applications: &nothing,
    };

    assert!(matches!(
        parse_batch(body.as_bytes(), limits(10), grant, SealColumn::Filled),
        Err(BatchError::Invalid(_))
    ));
}

#[test]
fn rows_of_a_granted_batch_record_the_token() {
    let body = r#"[{"event_ts":"2023-12-05T12:55:52Z","application_name":"a","event_kind":"k","payload":1}]"#;
    let grant = WriteGrant {
        token_name: Some("writer-a"),
        applications: &Applications::All,
    };

    let (rows, _) = parse_batch(body.as_bytes(), limits(10), grant, SealColumn::Filled)
        .unwrap()
        .into_parts();

    // The token is the fifth field; the sixth, the seal (48 bytes), follows it.
    let before_seal = rows.bytes.len() - 4 - 48;
    assert!(
        rows.bytes[..before_seal].ends_with(b"\0\0\0\x08writer-a"),
        "{:?}",
        rows.bytes
    );
    assert_eq!(
        &rows.bytes[before_seal..before_seal + 4],
        &48i32.to_be_bytes()
    );
}
