//! The commit-safe order across server processes: two servers writing at once, with
//! transactions rolled back and one that commits long after later ids did, seal every
//! committed event exactly once in (txid, id) order; one server seals at a time, and
//! the other takes over when it dies.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use audit_tests::sealing::{SealingKey, run_verify, wait_for_checkpoint_at};
use audit_tests::server_process::ServerProcess;
use audit_tests::test_app::event;
use audit_tests::test_database::TestDatabase;
use serde_json::json;

struct TwoServers {
    database: TestDatabase,
    key: SealingKey,
    config: tempfile::NamedTempFile,
    servers: Vec<ServerProcess>,
    http: reqwest::Client,
}

async fn two_sealing_servers() -> TwoServers {
    let database = TestDatabase::create_migrated().await;
    let key = SealingKey::new("audit.test/log");
    let config = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(config.path(), key.config_text(&database.settings.dsn)).unwrap();
    let mut servers = Vec::new();
    for _ in 0..2 {
        servers.push(ServerProcess::start(config.path()).await);
    }
    TwoServers {
        database,
        key,
        config,
        servers,
        http: reqwest::Client::new(),
    }
}

impl TwoServers {
    async fn post(&self, server: usize, events: usize, tag: &str) {
        let body: Vec<_> = (0..events)
            .map(|n| event(&format!("app-{server}"), json!({"tag": tag, "n": n})))
            .collect();
        let response = self
            .http
            .post(format!("{}/api/event", self.servers[server].address))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }

    /// Waits until `server` serves a checkpoint of at least `size` leaves.
    async fn wait_for_checkpoint(&self, server: usize, size: u64) {
        let address = &self.servers[server].address;
        wait_for_checkpoint_at(&self.http, address, &self.key, size, None).await;
    }

    /// Whether each server says it is the active sealer.
    async fn active(&self) -> Vec<bool> {
        let mut active = Vec::new();
        for server in &self.servers {
            let text = match self
                .http
                .get(format!("{}/metrics", server.address))
                .send()
                .await
            {
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            active.push(text.lines().any(|line| line == "integrity_sealer_active 1"));
        }
        active
    }

    async fn count_events(&self) -> u64 {
        self.database.count_events().await as u64
    }
}

#[tokio::test]
async fn two_servers_and_rolled_back_transactions_seal_every_event_once_in_commit_order() {
    let servers = two_sealing_servers().await;
    let client = servers.database.client().await;
    servers.post(0, 2, "first").await;
    servers.wait_for_checkpoint(0, 2).await;
    // A transaction that begins (has its txid) before the writers, and inserts and
    // commits after them: its events come first in the order and draw the highest ids.
    let late = servers.database.client().await;
    late.batch_execute("BEGIN; SELECT pg_current_xact_id()")
        .await
        .unwrap();
    let late_txid: i64 = late
        .query_one("SELECT pg_current_xact_id()::text::bigint", &[])
        .await
        .unwrap()
        .get(0);

    let writers = (0..2).map(|server| {
        let servers = &servers;
        async move {
            for round in 0..25 {
                servers
                    .post(server, 1 + round % 7, &format!("{server}-{round}"))
                    .await;
            }
        }
    });
    let rollbacks = async {
        for _ in 0..10 {
            client
                .batch_execute(
                    "BEGIN; INSERT INTO events (event_ts, application_name, event_kind, payload) \
                     VALUES (now(), 'rolled-back', 'k', '{}'); ROLLBACK",
                )
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    futures_util::future::join(futures_util::future::join_all(writers), rollbacks).await;

    // While the early transaction runs, nothing that began after it is sealed.
    let before: Vec<i64> = servers
        .database
        .column(&format!(
            "SELECT count(*) FROM events WHERE coalesce(txid, '0') < '{late_txid}'"
        ))
        .await;
    servers
        .wait_for_checkpoint(0, u64::try_from(before[0]).unwrap())
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let size: Vec<i64> = servers.database.column("SELECT size FROM tree_head").await;
    assert_eq!(size, before, "sealed past a transaction still running");

    late.batch_execute(
        "INSERT INTO events (event_ts, application_name, event_kind, payload) \
         VALUES (now(), 'late', 'k', '{}'), (now(), 'late', 'k', '{}'); COMMIT",
    )
    .await
    .unwrap();
    let total = servers.count_events().await;
    servers.wait_for_checkpoint(1, total).await;

    // Every committed event is one leaf; none rolled back is; the order is (txid, id).
    let sealed: Vec<i64> = servers
        .database
        .column(
            "SELECT ('x' || encode(substring(records FROM (p - 1) * 32 + 1 FOR 8), 'hex'))::bit(64)::bigint \
             FROM tree_leaves, generate_series(1, length(records) / 32) AS p ORDER BY tile, p",
        )
        .await;
    let committed: Vec<i64> = servers
        .database
        .column("SELECT id FROM events ORDER BY txid, id")
        .await;
    assert_eq!(
        sealed, committed,
        "the leaves are the events in (txid, id) order"
    );
    let late_ids: Vec<i64> = servers
        .database
        .column("SELECT id FROM events WHERE application_name = 'late' ORDER BY id")
        .await;
    let position: HashMap<i64, usize> = sealed
        .iter()
        .enumerate()
        .map(|(at, id)| (*id, at))
        .collect();
    let writers_highest: Vec<i64> = servers
        .database
        .column("SELECT max(id) FROM events WHERE application_name LIKE 'app-%'")
        .await;
    assert!(
        late_ids[0] > writers_highest[0],
        "the late events drew the last ids"
    );
    let late_leaf = position[&late_ids[0]];
    assert_eq!(
        late_leaf,
        usize::try_from(before[0]).unwrap(),
        "yet they are sealed before the writers'"
    );
    assert_eq!(sealed.len() as u64, total);

    let active = servers.active().await;
    assert_eq!(
        active.iter().filter(|active| **active).count(),
        1,
        "{active:?}"
    );
    let verdict = run_verify(servers.config.path(), &servers.key.verifier, None);
    assert!(verdict.holds, "{}", verdict.output);
}

#[tokio::test]
async fn another_server_takes_over_sealing_when_the_sealer_dies() {
    let mut servers = two_sealing_servers().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let active = loop {
        let active = servers.active().await;
        if let Some(at) = active.iter().position(|active| *active) {
            break at;
        }
        assert!(Instant::now() < deadline, "no sealer became active");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let survivor = 1 - active;
    servers.post(active, 3, "before").await;
    servers.wait_for_checkpoint(survivor, 3).await;

    servers.servers[active].signal("KILL");
    servers.servers[active]
        .wait_for_exit(Duration::from_secs(5))
        .await;
    let killed = Instant::now();
    // Taking over is taking the lock, which the dead server's connection held.
    while !servers.active().await[survivor] {
        assert!(killed.elapsed() < Duration::from_secs(30), "no takeover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = killed.elapsed();
    println!("the other server took over sealing {took:?} after the sealer was killed");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // And it seals: what is posted now gets into a checkpoint.
    servers.post(survivor, 2, "after").await;
    servers.wait_for_checkpoint(survivor, 5).await;
    let verdict = run_verify(servers.config.path(), &servers.key.verifier, None);
    assert!(verdict.holds, "{}", verdict.output);
}

/// The sealer's statement reads a range of the primary key, and nothing else, even
/// where the planner knows nothing of the rows: the newest rows, which it reads every
/// round, arrive faster than autoanalyze samples them. Without the sealer session's
/// settings the planner guesses a third of the partition lies above the floor and
/// scans all of it, five times a second under load.
#[tokio::test]
async fn the_sealer_reads_the_newest_rows_through_the_primary_key_without_statistics() {
    use audit_core::tree::sealer::{SEALER_SESSION, UNSEALED};

    let database = TestDatabase::create_migrated().await;
    let client = database.client().await;
    let partition: String = client
        .query_one(
            "SELECT inhrelid::regclass::text FROM pg_inherits \
             WHERE inhparent = 'events'::regclass ORDER BY inhrelid LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    client
        .batch_execute(&format!(
            "ALTER TABLE {partition} SET (autovacuum_enabled = false); \
             INSERT INTO events (event_ts, application_name, event_kind, payload) \
             SELECT now(), 'app', 'Kind', '{{}}' FROM generate_series(1, 200000); \
             PREPARE unsealed (bigint[], bigint[], bigint, bigint) AS {UNSEALED}"
        ))
        .await
        .unwrap();
    let plan = async || -> String {
        let rows = client
            .query(
                "EXPLAIN EXECUTE unsealed('{199000}', '{9223372036854775807}', \
                 0, 9223372036854775807)",
                &[],
            )
            .await
            .unwrap();
        let lines: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
        lines.join("\n")
    };
    let unguarded = plan().await;
    assert!(
        !unguarded.contains(&format!("Index Scan using {partition}_pkey")),
        "the premise: without statistics the planner does not pick the range:\n{unguarded}"
    );
    client.batch_execute(SEALER_SESSION).await.unwrap();
    let guarded = plan().await;
    assert!(
        guarded.contains(&format!("Index Scan using {partition}_pkey")),
        "{guarded}"
    );
    for scan in ["Seq Scan", "Bitmap", "Gather", "Sort"] {
        assert!(!guarded.contains(scan), "{scan} in:\n{guarded}");
    }
}
