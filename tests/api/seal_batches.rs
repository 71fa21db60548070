//! Seal batches: the writer stores a sealed group's leaves in one row, and the sealer
//! takes them from there instead of reading the events back; an event whose batch is
//! missing (written by hand, or its batch lost with the unlogged table) is read from
//! its row. Either way the tree holds exactly the leaves the rows hash to, in
//! (txid, id) order. Driven in-process, one round at a time, so that what each round
//! read can be asserted exactly.

use std::time::Duration;

use audit_core::config::IngestSettings;
use audit_core::copy::{RowEncoder, SealColumn};
use audit_core::database;
use audit_core::event::{ApplicationName, EventKind, NewEvent, Payload, StoredEvent};
use audit_core::merkle::LeafEvent;
use audit_core::timestamp::EventTimestamp;
use audit_core::tree::{RoundReport, Sealer};
use audit_core::writer::{EventWriter, WriterLimits};
use audit_tests::test_database::TestDatabase;

fn events(tag: &str, count: usize) -> Vec<NewEvent> {
    (0..count)
        .map(|n| NewEvent {
            event_ts: EventTimestamp::parse("2024-02-29T12:00:00.000001Z").unwrap(),
            application_name: ApplicationName::parse(format!("app-{tag}")).unwrap(),
            event_kind: EventKind::parse("Kind".to_owned()).unwrap(),
            payload: Payload::parse(&format!(r#"{{"n":{n},"tag":"{tag}"}}"#)).unwrap(),
        })
        .collect()
}

async fn write(writer: &EventWriter, tag: &str, count: usize, token: Option<&str>) {
    let mut encoder = RowEncoder::default().written_by(token);
    for event in events(tag, count) {
        encoder.push(event.as_event_ref());
    }
    assert_eq!(
        writer.write(encoder.into_rows()).await.unwrap(),
        count as u64
    );
}

/// Runs rounds until `events` more are sealed; their reports summed. A round may seal
/// less than has committed: a transaction of another test's database holds the
/// cluster's xmin back. Each txid range is read once, so the sums are exact.
async fn seal(sealer: &mut Sealer, events: u64) -> RoundReport {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut sum = RoundReport::default();
    while sum.sealed < events {
        assert!(std::time::Instant::now() < deadline, "sealed only {sum:?}");
        let report = sealer.round(false).await.unwrap();
        assert!(report.refused.is_empty(), "{report:?}");
        sum.sealed += report.sealed;
        sum.batched += report.batched;
        sum.read += report.read;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sum
}

/// The stored level-0 hashes against the leaves recomputed from the rows, in
/// (txid, id) order.
async fn assert_tree_is_the_rows(database: &TestDatabase) {
    let client = database.client().await;
    let rows = client
        .query(
            "SELECT id, to_char(event_ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
                    application_name, event_kind, payload::text, token_name \
             FROM events ORDER BY txid, id",
            &[],
        )
        .await
        .unwrap();
    let expected: Vec<u8> = rows
        .iter()
        .flat_map(|row| {
            let event_ts: String = row.get(1);
            LeafEvent {
                event: StoredEvent {
                    id: row.get(0),
                    event_ts: EventTimestamp::parse(&event_ts).unwrap(),
                    application_name: row.get(2),
                    event_kind: row.get(3),
                    payload: row.get(4),
                },
                token_name: row.get(5),
            }
            .hash()
        })
        .collect();
    let stored: Vec<u8> = client
        .query_one(
            "SELECT hashes FROM tree_tiles WHERE level = 0 AND tile = 0",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored.len(), expected.len(), "one leaf per committed event");
    assert!(stored == expected, "the leaves are the rows' own hashes");
}

#[tokio::test]
async fn the_sealer_takes_batched_leaves_without_rows_and_reads_only_the_rest() {
    let database = TestDatabase::create_migrated().await;
    let limits = WriterLimits {
        enqueue_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(30),
    };
    let pool = database::build_pool(&database.settings).unwrap();
    let writer = EventWriter::start(pool, &IngestSettings::default(), limits, SealColumn::Filled);
    let client = database::connect(&database.settings).await.unwrap();
    let mut sealer = match Sealer::take_over(client, None).await {
        Ok(Ok(sealer)) => sealer,
        _ => panic!("the only sealer takes the lock"),
    };

    futures_util::future::join3(
        write(&writer, "a", 3, None),
        write(&writer, "b", 5, Some("writer-b")),
        write(&writer, "c", 1, None),
    )
    .await;
    let without_seal: Vec<i64> = database
        .column("SELECT count(*) FROM events WHERE seal IS NOT NULL")
        .await;
    assert_eq!(without_seal, [0], "a batch holds the seals, not the rows");

    let first = seal(&mut sealer, 9).await;
    assert_eq!((first.sealed, first.batched, first.read), (9, 9, 0));
    let batches: Vec<i64> = database.column("SELECT count(*) FROM seal_batches").await;
    assert_eq!(batches, [0], "a round deletes the batches it sealed");

    // Rows without a batch: one written by hand, and a group whose batch is lost.
    let hand = database.client().await;
    hand.batch_execute(
        "INSERT INTO events (event_ts, application_name, event_kind, payload) \
         VALUES (now(), 'by-hand', 'Kind', '{\"x\": [1, 2]}')",
    )
    .await
    .unwrap();
    write(&writer, "lost", 4, Some("writer-lost")).await;
    hand.batch_execute("DELETE FROM seal_batches")
        .await
        .unwrap();
    write(&writer, "d", 2, None).await;

    let second = seal(&mut sealer, 7).await;
    assert_eq!(
        (second.sealed, second.batched, second.read),
        (7, 2, 5),
        "the batched group from its batch, the others from their rows"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let last = sealer.round(false).await.unwrap();
    assert_eq!(last.sealed, 0, "nothing sealed twice");
    assert_tree_is_the_rows(&database).await;
}
