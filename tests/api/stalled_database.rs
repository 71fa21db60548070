//! Every database wait is bounded, writes that keep failing make the service not
//! ready, and a dead writer answers at once and comes back.

use std::time::Duration;

use audit_tests::test_app::{json_body, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_locked_table_answers_503_database_unavailable_past_the_statement_timeout() {
    let app = spawn_app_with(|settings| settings.postgres.statement_timeout_ms = 300).await;
    let lock = app.database.lock_events_table().await;

    let post = tokio::time::timeout(Duration::from_secs(10), app.post_raw(
        r#"[{"event_ts":"2023-12-05T12:55:52Z","application_name":"a","event_kind":"k","payload":1}]"#,
    ))
    .await
    .expect("the POST hung");
    let get = tokio::time::timeout(Duration::from_secs(10), app.get_events(""))
        .await
        .expect("the GET hung");

    for response in [post, get] {
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
        assert_eq!(json_body(response).await["error"], "database_unavailable");
    }
    lock.release().await;
    assert_eq!(app.database.count_events().await, 0, "nothing was stored");
    assert_eq!(app.post_one_event().await, 201);
}

#[tokio::test]
async fn ready_answers_503_while_writes_keep_failing_and_200_once_they_pass() {
    let app = spawn_app().await;
    let client = app.database.client().await;
    client
        .batch_execute("ALTER TABLE events ADD CONSTRAINT refuse_all CHECK (false) NOT VALID")
        .await
        .unwrap();

    let refused = app.post_one_event().await;

    assert_eq!(
        refused, 503,
        "a broken constraint is the database's, not the client's"
    );
    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), 503);
    assert_eq!(json_body(ready).await["error"], "writes_failing");
    client
        .batch_execute("ALTER TABLE events DROP CONSTRAINT refuse_all")
        .await
        .unwrap();
    assert_eq!(app.post_one_event().await, 201);
    assert_eq!(app.get("/ready").await.status(), 200);
}

#[tokio::test]
async fn a_dead_writer_answers_503_at_once_shows_in_ready_and_is_restarted() {
    let app = spawn_app().await;
    app.state.runtime().writer.crash_next_group_for_test();

    let response = tokio::time::timeout(Duration::from_secs(5), app.post_raw(
        r#"[{"event_ts":"2023-12-05T12:55:52Z","application_name":"a","event_kind":"k","payload":1}]"#,
    ))
    .await
    .expect("a POST to a dead writer hung");

    assert_eq!(response.status(), 503);
    assert_eq!(json_body(response).await["error"], "outcome_unknown");
    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), 503);
    assert_eq!(json_body(ready).await["error"], "writer_restarting");
    assert_eq!(app.post_one_event().await, 201, "the writer was restarted");
    app.wait_for_status("/ready", 200, Duration::from_secs(5))
        .await;
}
