//! Tampering with a sealed log, as a database administrator could, each time caught
//! by `audit-server verify` (the binary, as an auditor runs it), which exits non-zero
//! and names the event.

use audit_core::checkpoint::{Checkpoint, SigningKey};
use audit_core::event::StoredEvent;
use audit_core::merkle::LeafEvent;
use audit_core::timestamp::EventTimestamp;
use audit_tests::sealing::{SealingKey, Verdict, run_verify};
use audit_tests::test_app::{TestApp, event, spawn_app_with};
use serde_json::json;

/// A sealed log of 30 events and one id that no event has (an aborted insert's).
struct Sealed {
    app: TestApp,
    key: SealingKey,
    ids: Vec<i64>,
    gap: i64,
}

async fn sealed_log() -> Sealed {
    let key = SealingKey::new("audit.test/log");
    let app = spawn_app_with(|settings| key.apply(settings)).await;
    let batch = |start: i32| -> Vec<serde_json::Value> {
        (start..start + 10)
            .map(|n| event("billing", json!({"n": n, "user": format!("user_{n}")})))
            .collect()
    };
    app.post_events(&json!(batch(0))).await;
    let client = app.database.client().await;
    client
        .batch_execute(
            "BEGIN; INSERT INTO events (event_ts, application_name, event_kind, payload) \
             VALUES (now(), 'x', 'y', '{}'); ROLLBACK",
        )
        .await
        .unwrap();
    app.post_events(&json!(batch(10))).await;
    app.post_events(&json!(batch(20))).await;
    let ids: Vec<i64> = app
        .database
        .column("SELECT id FROM events ORDER BY id")
        .await;
    assert_eq!(ids.len(), 30);
    let gap = (ids[0]..ids[29]).find(|id| !ids.contains(id)).unwrap();
    app.wait_for_checkpoint(&key, 30).await;
    Sealed { app, key, ids, gap }
}

impl Sealed {
    fn verify(&self) -> Verdict {
        run_verify(self.app.config_file.path(), &self.key.verifier, None)
    }

    async fn execute(&self, statement: &str) {
        let client = self.app.database.client().await;
        client.batch_execute(statement).await.unwrap();
    }

    /// Verifies, expecting failure and every fragment in the report.
    fn expect_caught(&self, fragments: &[String]) {
        let verdict = self.verify();
        assert!(!verdict.holds, "verify passed:\n{}", verdict.output);
        for fragment in fragments {
            assert!(
                verdict.output.contains(fragment.as_str()),
                "no {fragment:?} in:\n{}",
                verdict.output
            );
        }
    }
}

#[tokio::test]
async fn an_untouched_log_verifies() {
    let sealed = sealed_log().await;

    let verdict = sealed.verify();

    assert!(verdict.holds, "{}", verdict.output);
    assert!(
        verdict.output.contains("OK: 30 events"),
        "{}",
        verdict.output
    );
    // Wrong key: nothing verifies.
    let (_, other) = SigningKey::generate("audit.test/log");
    let wrong = run_verify(sealed.app.config_file.path(), &other, None);
    assert!(!wrong.holds);
    assert!(wrong.output.contains("BAD SIGNATURE"), "{}", wrong.output);
}

#[tokio::test]
async fn a_payload_byte_changed_is_named() {
    let sealed = sealed_log().await;
    let id = sealed.ids[7];

    sealed
        .execute(&format!(
            "UPDATE events SET payload = replace(payload::text, 'user_7', 'user_8')::json WHERE id = {id}"
        ))
        .await;

    sealed.expect_caught(&[
        format!("MODIFIED event {id} "),
        "payload changed".to_owned(),
    ]);
}

#[tokio::test]
async fn an_event_moved_by_one_microsecond_is_named() {
    let sealed = sealed_log().await;
    let id = sealed.ids[3];

    sealed
        .execute(&format!(
            "UPDATE events SET event_ts = event_ts + interval '1 microsecond' WHERE id = {id}"
        ))
        .await;

    sealed.expect_caught(&[
        format!("MODIFIED event {id} "),
        "event_ts changed".to_owned(),
    ]);
}

#[tokio::test]
async fn a_deleted_row_is_named() {
    let sealed = sealed_log().await;
    let id = sealed.ids[12];

    sealed
        .execute(&format!("DELETE FROM events WHERE id = {id}"))
        .await;

    sealed.expect_caught(&[format!("DELETED event {id} ")]);
}

#[tokio::test]
async fn a_forged_row_inside_the_sealed_range_is_named() {
    let sealed = sealed_log().await;
    let gap = sealed.gap;

    sealed
        .execute(&format!(
            "INSERT INTO events (id, event_ts, application_name, event_kind, payload) \
             VALUES ({gap}, '2023-12-05T12:55:52Z', 'billing', 'UserLogin', '{{\"n\": 99}}')"
        ))
        .await;
    // However long the sealer runs, it does not seal the forged row.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    sealed.expect_caught(&[format!("INSERTED event {gap}:")]);
}

#[tokio::test]
async fn two_rows_with_their_contents_swapped_are_both_named() {
    let sealed = sealed_log().await;
    let (first, second) = (sealed.ids[4], sealed.ids[20]);

    sealed
        .execute(&format!(
            "UPDATE events AS e SET payload = o.payload FROM events AS o \
             WHERE (e.id, o.id) IN (({first}, {second}), ({second}, {first}))"
        ))
        .await;

    sealed.expect_caught(&[
        format!("MODIFIED event {first} "),
        format!("MODIFIED event {second} "),
    ]);
}

#[tokio::test]
async fn stored_hashes_rewritten_to_match_a_changed_event_are_caught_by_the_signatures() {
    let sealed = sealed_log().await;
    let id = sealed.ids[25];
    let forged_payload = r#"{"n": 25, "user": "someone_else"}"#;
    sealed
        .execute(&format!(
            "UPDATE events SET payload = '{forged_payload}' WHERE id = {id}"
        ))
        .await;
    // The administrator recomputes the leaf and writes it where the stored tree has it.
    let leaf_hash = LeafEvent {
        event: StoredEvent {
            id,
            event_ts: EventTimestamp::parse("2023-12-05T12:55:52.805022Z").unwrap(),
            application_name: "billing",
            event_kind: "UserLogin",
            payload: forged_payload,
        },
        token_name: None,
    }
    .hash();
    let client = sealed.app.database.client().await;
    let leaf: i64 = client
        .query_one(
            "SELECT t.tile * 256 + p.position - 1 FROM tree_leaves AS t, \
             generate_series(1, length(t.records) / 32) AS p (position) \
             WHERE substring(t.records FROM (p.position - 1) * 32 + 1 FOR 8) = \
                   int8send($1)",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    client
        .execute(
            "UPDATE tree_tiles SET hashes = overlay(hashes PLACING $1 FROM $2::int * 32 + 1) \
             WHERE level = 0 AND tile = $3",
            &[&leaf_hash.to_vec(), &((leaf % 256) as i32), &(leaf / 256)],
        )
        .await
        .unwrap();

    sealed.expect_caught(&[
        "ROOT MISMATCH".to_owned(),
        format!("MODIFIED event {id} "),
        "checkpoints.log".to_owned(),
    ]);
    // The rewritten leaf matches its row: only the record, and the signed roots, tell.
    let verdict = sealed.verify();
    assert_eq!(
        verdict.output.matches("MODIFIED").count(),
        1,
        "{}",
        verdict.output
    );
}

#[tokio::test]
async fn a_checkpoint_signed_with_another_key_is_refused() {
    let sealed = sealed_log().await;
    let client = sealed.app.database.client().await;
    let row = client
        .query_one(
            "SELECT size, note FROM tree_checkpoints ORDER BY size DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    let (size, note): (i64, String) = (row.get(0), row.get(1));
    let checkpoint = sealed.key.open(&note);
    let (other, _) = SigningKey::generate("audit.test/log");
    let forged = checkpoint.sign(&other).unwrap();
    client
        .execute(
            "UPDATE tree_checkpoints SET note = $1 WHERE size = $2",
            &[&forged, &size],
        )
        .await
        .unwrap();

    sealed.expect_caught(&[format!(
        "BAD SIGNATURE on the checkpoint of the database (size {size})"
    )]);
}

#[tokio::test]
async fn a_kept_checkpoint_the_log_does_not_extend_is_a_fork() {
    let sealed = sealed_log().await;
    let key_text = std::fs::read_to_string(&sealed.key.key_file).unwrap();
    let key = SigningKey::parse(&key_text).unwrap();
    // A checkpoint the same key signed over other leaves: a fork shown to an auditor.
    let forked = Checkpoint {
        origin: "audit.test/log".to_owned(),
        size: 10,
        root: audit_core::merkle::leaf_hash(b"another history"),
    }
    .sign(&key)
    .unwrap();
    let since = sealed.key.directory.path().join("kept.checkpoint");
    std::fs::write(&since, forked).unwrap();

    let verdict = run_verify(
        sealed.app.config_file.path(),
        &sealed.key.verifier,
        Some(&since),
    );

    assert!(!verdict.holds, "{}", verdict.output);
    assert!(
        verdict
            .output
            .contains("ROOT MISMATCH: the checkpoint of --since"),
        "{}",
        verdict.output
    );
}
