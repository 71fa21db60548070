//! Tamper evidence over HTTP: every event's inclusion proof and the consistency of
//! checkpoints, checked by an independent RFC 6962 implementation (`ct-merkle`) over
//! leaf bytes this test encodes itself from the README's table; and what the proof
//! endpoints answer when there is nothing to prove.

use std::collections::{BTreeSet, HashMap};

use audit_core::tree::checkpoint_log;
use audit_tests::sealing::SealingKey;
use audit_tests::test_app::{
    TestApp, json_body, spawn_app_on, spawn_app_with, spawn_app_with_tokens,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use ct_sha2::{Digest, Sha256};
use serde_json::Value;

const EVENT_TS: &str = "2023-12-05T12:55:52.805022Z";

/// The payload text of event `n`, spaced as a client might send it: stored verbatim.
fn payload(n: usize) -> String {
    format!(r#"{{ "n": {n},  "who":"user_{n}" }}"#)
}

fn batch(numbers: std::ops::Range<usize>, application: &str) -> String {
    let events: Vec<String> = numbers
        .map(|n| {
            format!(
                r#"{{"event_ts":"{EVENT_TS}","application_name":"{application}","event_kind":"UserLogin","payload":{}}}"#,
                payload(n)
            )
        })
        .collect();
    format!("[{}]", events.join(","))
}

/// The leaf bytes of an event, from the README's tables (version 1), written here
/// independently of the server's encoder: the version, the id, and the SHA-256 of the
/// content bytes.
/// The leaf's content bytes (README, "The leaf"), computed here from the
/// documented encoding.
fn content_bytes(application: &str, kind: &str, payload: &str, token: Option<&str>) -> Vec<u8> {
    let nanos =
        time::OffsetDateTime::parse(EVENT_TS, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp_nanos();
    let micros = i64::try_from(nanos / 1000).unwrap();
    let mut content = micros.to_be_bytes().to_vec();
    for text in [application, kind, payload] {
        content.extend(u32::try_from(text.len()).unwrap().to_be_bytes());
        content.extend(text.as_bytes());
    }
    match token {
        None => content.push(0),
        Some(name) => {
            content.push(1);
            content.extend(u32::try_from(name.len()).unwrap().to_be_bytes());
            content.extend(name.as_bytes());
        }
    }
    content
}

fn leaf_bytes(
    id: i64,
    application: &str,
    kind: &str,
    payload: &str,
    token: Option<&str>,
) -> Vec<u8> {
    let mut bytes = vec![1u8];
    bytes.extend(id.to_be_bytes());
    bytes.extend(Sha256::digest(content_bytes(
        application,
        kind,
        payload,
        token,
    )));
    bytes
}

fn decode(text: &Value) -> Vec<u8> {
    STANDARD.decode(text.as_str().unwrap()).unwrap()
}

fn root_hash(root: [u8; 32], size: u64) -> RootHash<Sha256> {
    RootHash::new(root.into(), size)
}

/// Every event the server holds, with its id, from the pages.
async fn all_events(app: &TestApp) -> Vec<Value> {
    let page = json_body(app.get_events("?page_size=1000").await).await;
    page["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn every_event_has_a_proof_an_independent_verifier_accepts() {
    let key = SealingKey::new("audit.test/log");
    let app = spawn_app_with(|settings| key.apply(settings)).await;
    // Over 256 events, so that proofs cross tiles; in batches, so that there are
    // several checkpoints to prove consistent.
    let mut checkpoints = Vec::new();
    for start in (0..300).step_by(60) {
        let response = app.post_raw(batch(start..start + 60, "app")).await;
        assert_eq!(response.status(), 201);
        checkpoints.push(app.wait_for_checkpoint(&key, start as u64 + 60).await);
    }
    let (latest, latest_note) = checkpoints.last().unwrap().clone();
    assert_eq!(latest.size, 300);
    assert_eq!(latest.origin, "audit.test/log");
    // The note is served byte for byte as stored, and the checkpoint log has it too.
    let served = app.get("/api/checkpoint").await;
    assert_eq!(
        served.headers()["content-type"].to_str().unwrap(),
        "text/plain; charset=utf-8"
    );
    assert_eq!(served.text().await.unwrap(), latest_note);
    let logged = std::fs::read_to_string(&key.checkpoint_log).unwrap();
    assert!(checkpoint_log::split_notes(&logged).contains(&latest_note));
    let stored: Vec<String> = app
        .database
        .column("SELECT note FROM tree_checkpoints ORDER BY size")
        .await;
    assert_eq!(checkpoint_log::split_notes(&logged), stored);

    let root = root_hash(latest.root, latest.size);
    let mut leaves = BTreeSet::new();
    for event in all_events(&app).await {
        let id = event["id"].as_i64().unwrap();
        let n = usize::try_from(event["payload"]["n"].as_u64().unwrap()).unwrap();
        let proof = json_body(app.get(&format!("/api/event/{id}/proof")).await).await;
        let bytes = leaf_bytes(id, "app", "UserLogin", &payload(n), None);
        // The event as stored, for a client to hash itself.
        assert_eq!(
            decode(&proof["leaf_content"]),
            content_bytes("app", "UserLogin", &payload(n), None)
        );
        let mut leaf_hash = Sha256::new();
        leaf_hash.update([0u8]);
        leaf_hash.update(&bytes);
        assert_eq!(decode(&proof["leaf_hash"]), leaf_hash.finalize().to_vec());
        assert_eq!(proof["tree_size"], 300);
        let index = proof["leaf_index"].as_u64().unwrap();
        let path: Vec<u8> = (proof["inclusion_path"].as_array().unwrap().iter())
            .flat_map(decode)
            .collect();
        root.verify_inclusion(&bytes, index, &InclusionProof::from_bytes(path))
            .unwrap_or_else(|error| panic!("event {id} at leaf {index}: {error:?}"));
        leaves.insert(index);
    }
    assert_eq!(leaves, (0..300).collect(), "one leaf per event");

    // Each earlier checkpoint is a prefix of the latest, and of each other.
    for pair in checkpoints
        .windows(2)
        .chain([&[checkpoints[0].clone(), checkpoints[4].clone()][..]])
    {
        let (old, new) = (&pair[0].0, &pair[1].0);
        let query = format!("/api/consistency?first={}&second={}", old.size, new.size);
        let answer = json_body(app.get(&query).await).await;
        assert_eq!(answer["first"], old.size);
        let proof: Vec<u8> = answer["proof"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(decode)
            .collect();
        root_hash(new.root, new.size)
            .verify_consistency(
                &root_hash(old.root, old.size),
                &ConsistencyProof::try_from_bytes(proof).unwrap(),
            )
            .unwrap_or_else(|error| panic!("{} to {}: {error:?}", old.size, new.size));
    }

    // A row changed after sealing: its proof still names the sealed leaf, and its
    // content, as stored now, no longer hashes to it.
    let first = all_events(&app).await[0].clone();
    let id = first["id"].as_i64().unwrap();
    let n = usize::try_from(first["payload"]["n"].as_u64().unwrap()).unwrap();
    app.database
        .client()
        .await
        .execute(
            &format!("UPDATE events SET event_kind = 'UserLogout' WHERE id = {id}"),
            &[],
        )
        .await
        .unwrap();
    let proof = json_body(app.get(&format!("/api/event/{id}/proof")).await).await;
    let content = decode(&proof["leaf_content"]);
    assert_eq!(
        content,
        content_bytes("app", "UserLogout", &payload(n), None)
    );
    let mut leaf = vec![1u8];
    leaf.extend(id.to_be_bytes());
    leaf.extend(Sha256::digest(&content));
    let mut leaf_hash = Sha256::new();
    leaf_hash.update([0u8]);
    leaf_hash.update(&leaf);
    assert_ne!(decode(&proof["leaf_hash"]), leaf_hash.finalize().to_vec());
}

async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body = json_body(response).await;
    (status, body["error"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_proof_names_what_is_missing_and_refuses_sizes_no_checkpoint_has() {
    let key = SealingKey::new("audit.test/log");
    let app = spawn_app_with(|settings| key.apply(settings)).await;
    app.post_raw(batch(0..1, "app")).await;
    let (first, _) = app.wait_for_checkpoint(&key, 1).await;
    app.post_raw(batch(1..2, "app")).await;
    app.wait_for_checkpoint(&key, 2).await;
    let ids: HashMap<u64, i64> = all_events(&app)
        .await
        .iter()
        .map(|event| {
            (
                event["payload"]["n"].as_u64().unwrap(),
                event["id"].as_i64().unwrap(),
            )
        })
        .collect();
    let (one, two) = (ids[&0], ids[&1]);

    let at_first = json_body(
        app.get(&format!("/api/event/{one}/proof?tree_size={}", first.size))
            .await,
    )
    .await;
    assert_eq!(at_first["tree_size"], 1);
    assert_eq!(at_first["inclusion_path"], serde_json::json!([]));
    let cases = [
        (
            format!("/api/event/{two}/proof?tree_size=1"),
            422,
            "invalid_query",
        ),
        (
            format!("/api/event/{two}/proof?tree_size=7"),
            422,
            "invalid_query",
        ),
        (
            format!("/api/event/{two}/proof?tree_size=x"),
            422,
            "invalid_query",
        ),
        ("/api/event/x/proof".to_owned(), 422, "invalid_query"),
        ("/api/event/999999/proof".to_owned(), 404, "event_not_found"),
        ("/api/consistency?first=1".to_owned(), 422, "invalid_query"),
        (
            "/api/consistency?first=2&second=1".to_owned(),
            422,
            "invalid_query",
        ),
        (
            "/api/consistency?first=1&second=9".to_owned(),
            422,
            "invalid_query",
        ),
    ];
    for (path, status, code) in cases {
        assert_eq!(
            error_code(app.get(&path).await).await,
            (status, code.to_owned()),
            "{path}"
        );
    }
}

#[tokio::test]
async fn an_event_is_not_sealed_until_a_round_seals_it_and_without_a_key_nothing_is() {
    let key = SealingKey::new("audit.test/log");
    // The first round runs at start, on an empty table; the next one is an hour away.
    let app = spawn_app_with(|settings| {
        key.apply(settings);
        settings.integrity.seal_interval_ms = 3_600_000;
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    app.post_raw(batch(0..1, "app")).await;
    let id = all_events(&app).await[0]["id"].as_i64().unwrap();

    let (status, code) = error_code(app.get(&format!("/api/event/{id}/proof")).await).await;
    assert_eq!((status, code.as_str()), (404, "not_sealed_yet"));
    assert_eq!(
        error_code(app.get("/api/checkpoint").await).await,
        (404, "no_checkpoint".to_owned())
    );

    let unsealed = spawn_app_with(|_| {}).await;
    unsealed.post_raw(batch(0..1, "app")).await;
    let id = all_events(&unsealed).await[0]["id"].as_i64().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, code) = error_code(unsealed.get(&format!("/api/event/{id}/proof")).await).await;
    assert_eq!((status, code.as_str()), (404, "not_sealed_yet"));
    let leaves: Vec<i64> = unsealed
        .database
        .column("SELECT count(*) FROM tree_leaves")
        .await;
    assert_eq!(leaves, [0]);
    // Where nothing seals, rows are written without their seal (it costs the writer a
    // hash of each payload); a sealer that comes later reads their texts instead.
    let unsealed_rows: Vec<i64> = unsealed
        .database
        .column("SELECT count(*) FROM events WHERE seal IS NULL")
        .await;
    assert_eq!(unsealed_rows, [1]);
    let TestApp { database, .. } = unsealed;
    let sealing = spawn_app_on(database, |settings| key.apply(settings)).await;
    let (checkpoint, _) = sealing.wait_for_checkpoint(&key, 1).await;
    let proof = json_body(sealing.get(&format!("/api/event/{id}/proof")).await).await;
    let bytes = leaf_bytes(id, "app", "UserLogin", &payload(0), None);
    assert_eq!(proof["inclusion_path"], serde_json::json!([]));
    let mut leaf_hash = Sha256::new();
    leaf_hash.update([0u8]);
    leaf_hash.update(&bytes);
    assert_eq!(checkpoint.root.to_vec(), leaf_hash.finalize().to_vec());
}

#[tokio::test]
async fn a_reader_gets_no_proof_of_an_event_it_may_not_read() {
    let key = SealingKey::new("audit.test/log");
    let app = spawn_app_with_tokens(|settings| key.apply(settings)).await;
    let writer = app.writer_of("writer", &["a", "b"]).await;
    let body: Value = serde_json::from_str(&batch(0..1, "a")).unwrap();
    app.post_events_as(&writer, &body).await;
    let body: Value = serde_json::from_str(&batch(1..2, "b")).unwrap();
    app.post_events_as(&writer, &body).await;
    let ids: Vec<i64> = app
        .database
        .column("SELECT id FROM events WHERE application_name IN ('a', 'b') ORDER BY id")
        .await;
    let everything = app.reader_of("everything", &["*"]).await;
    let sealed: Vec<i64> = app.database.column("SELECT count(*) FROM events").await;
    app.wait_for_checkpoint_as(&key, sealed[0] as u64, &everything)
        .await;
    let reader = app.reader_of("reader", &["a"]).await;

    let proof = |id: i64| {
        app.http
            .get(app.url(&format!("/api/event/{id}/proof")))
            .bearer_auth(&reader)
            .send()
    };
    assert_eq!(proof(ids[0]).await.unwrap().status(), 200);
    let refused = proof(ids[1]).await.unwrap();
    assert_eq!(
        error_code(refused).await,
        (404, "event_not_found".to_owned())
    );
    let anonymous = app.get(&format!("/api/event/{}/proof", ids[0])).await;
    assert_eq!(anonymous.status(), 401);
    // Entry bundles name every application's events: only for a reader of all.
    let bundle = |token: &str| {
        app.http
            .get(app.url("/api/tile/entries/000.p/1"))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(bundle(&reader).await.unwrap().status(), 403);
    assert_eq!(bundle(&everything).await.unwrap().status(), 200);
}

/// The C2SP tlog-tiles path of a tile, written here from the specification: the
/// index in groups of three digits, each but the last prefixed `x`.
fn tile_path(level: &str, index: u64, width: u64) -> String {
    let mut groups = vec![format!("{:03}", index % 1000)];
    let mut rest = index / 1000;
    while rest > 0 {
        groups.push(format!("x{:03}", rest % 1000));
        rest /= 1000;
    }
    groups.reverse();
    let partial = if width == 256 {
        String::new()
    } else {
        format!(".p/{width}")
    };
    format!("/api/tile/{level}/{}{partial}", groups.join("/"))
}

async fn fetch_bytes(app: &TestApp, path: &str) -> Vec<u8> {
    let response = app.get(path).await;
    assert_eq!(response.status(), 200, "{path}");
    response.bytes().await.unwrap().to_vec()
}

/// Reads the tree as a tiles client does, and checks every byte of it against the
/// events (leaf bytes encoded here) and an independent RFC 6962 implementation.
#[tokio::test]
async fn the_tree_is_served_as_c2sp_tiles_a_tiles_client_can_check() {
    let key = SealingKey::new("audit.test/log");
    let app = spawn_app_with(|settings| key.apply(settings)).await;
    app.post_raw(batch(0..300, "app")).await;
    let (checkpoint, _) = app.wait_for_checkpoint(&key, 300).await;

    // Entry bundles: tile 0 full, tile 1 partial (44 entries).
    let mut entries = Vec::new();
    for (index, width) in [(0, 256), (1, 44)] {
        let mut bundle = fetch_bytes(&app, &tile_path("entries", index, width))
            .await
            .into_iter();
        while let Some(high) = bundle.next() {
            let length = usize::from(u16::from_be_bytes([high, bundle.next().unwrap()]));
            entries.push(bundle.by_ref().take(length).collect::<Vec<u8>>());
        }
    }
    let expected: BTreeSet<Vec<u8>> = all_events(&app)
        .await
        .iter()
        .map(|event| {
            let n = usize::try_from(event["payload"]["n"].as_u64().unwrap()).unwrap();
            leaf_bytes(
                event["id"].as_i64().unwrap(),
                "app",
                "UserLogin",
                &payload(n),
                None,
            )
        })
        .collect();
    assert_eq!(entries.len(), 300);
    assert_eq!(entries.iter().cloned().collect::<BTreeSet<_>>(), expected);

    // Level 0: the entries' leaf hashes, in order.
    let leaf_hash = |entry: &[u8]| {
        let mut hash = Sha256::new();
        hash.update([0u8]);
        hash.update(entry);
        hash.finalize().to_vec()
    };
    let mut level_zero = fetch_bytes(&app, &tile_path("0", 0, 256)).await;
    level_zero.extend(fetch_bytes(&app, &tile_path("0", 1, 44)).await);
    let hashes: Vec<Vec<u8>> = entries.iter().map(|entry| leaf_hash(entry)).collect();
    assert_eq!(level_zero, hashes.concat());
    // A partial tile is a prefix of what the tree has.
    assert_eq!(
        fetch_bytes(&app, &tile_path("0", 1, 3)).await,
        hashes[256..259].concat()
    );

    // Level 1: the root of the first 256 leaves; and the checkpoint's root is the
    // root of all 300.
    let root_of = |entries: &[Vec<u8>]| {
        let mut tree = ct_merkle::mem_backed_tree::MemoryBackedTree::<Sha256, Vec<u8>>::new();
        for entry in entries {
            tree.push(entry.clone());
        }
        tree.root().as_bytes().to_vec()
    };
    assert_eq!(
        fetch_bytes(&app, &tile_path("1", 0, 1)).await,
        root_of(&entries[..256])
    );
    assert_eq!(checkpoint.root.to_vec(), root_of(&entries));

    // What the tree does not have yet, and paths out of the format.
    assert_eq!(
        error_code(app.get(&tile_path("0", 1, 256)).await).await,
        (404, "tile_not_found".to_owned())
    );
    assert_eq!(
        error_code(app.get(&tile_path("0", 1, 45)).await).await,
        (404, "tile_not_found".to_owned())
    );
    for bad in ["/api/tile/0/1", "/api/tile/0/000.p/0", "/api/tile/9/000"] {
        assert_eq!(
            error_code(app.get(bad).await).await,
            (422, "invalid_query".to_owned()),
            "{bad}"
        );
    }
}
