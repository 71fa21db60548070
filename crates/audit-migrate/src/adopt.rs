//! Taking over a database of the original service in place.
//!
//! The original keeps its events in `audit_event` (`event_id` identity, `event_ts`,
//! `application_name`, `event_kind varchar(126)`, `payload jsonb`) and its schema
//! version in `migration_version` (one row per applied version; 1 is the only one).
//! In one transaction the table becomes this service's `events`: renamed, `event_id`
//! renamed `id` (every id kept, so the original's page tokens stay valid, and the
//! identity sequence set past the largest), `event_kind` widened to `text`, and each
//! payload stored as the text of its `jsonb` value; `migration_version` is dropped and
//! this service's first migration, whose table this now is, recorded as applied. The
//! migrations after it then run as on any database.

use anyhow::{Context, bail};
use audit_core::migrations;
use tokio_postgres::Client;

/// The only schema version of the original this build knows.
const ORIGINAL_VERSION: i64 = 1;
/// This service's migration that creates `events`, which the adopted table replaces.
const EVENTS_MIGRATION: i64 = 1;

/// The statements that take the original's schema over, in order.
const TAKEOVER: &[&str] = &[
    "ALTER TABLE audit_event RENAME TO events",
    "ALTER TABLE events RENAME COLUMN event_id TO id",
    "ALTER TABLE events ALTER COLUMN event_kind TYPE text",
    "ALTER TABLE events ALTER COLUMN payload TYPE json USING payload::text::json",
    "ALTER INDEX IF EXISTS audit_event_pkey RENAME TO events_pkey",
    "SELECT setval(pg_get_serial_sequence('events', 'id'), \
     coalesce((SELECT max(id) FROM events), 1), (SELECT count(*) > 0 FROM events))",
    "DROP TABLE migration_version",
];

/// What the database holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// No table of the original: nothing to take over.
    NoOriginal,
    /// The original's schema at a version this build knows, with this many events.
    Original { events: i64 },
}

/// Looks at the database and says whether it holds the original's schema; refuses,
/// saying why, a database this build must not touch.
pub async fn inspect(client: &Client) -> anyhow::Result<Found> {
    let exists = |table: &'static str| async move {
        client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .await
            .map(|row| row.get::<_, bool>(0))
            .with_context(|| format!("failed to look for the table {table}"))
    };
    if !exists("audit_event").await? {
        return Ok(Found::NoOriginal);
    }
    if exists("events").await? {
        bail!(
            "the database holds both the original service's audit_event and this \
             service's events table; nothing was changed. Move the events of one into the \
             other, or drop the one you do not need, then run audit-migrate again"
        );
    }
    if !exists("migration_version").await? {
        bail!(
            "audit_event exists without the original's migration_version table; nothing was changed"
        );
    }
    let version: Option<i64> = client
        .query_one("SELECT max(version)::bigint FROM migration_version", &[])
        .await
        .context("failed to read the original's schema version")?
        .get(0);
    if version != Some(ORIGINAL_VERSION) {
        bail!(
            "the original's schema is at version {version:?}; this build takes over \
             version {ORIGINAL_VERSION} only. Nothing was changed"
        );
    }
    let events: i64 = client
        .query_one("SELECT count(*) FROM audit_event", &[])
        .await
        .context("failed to count the original's events")?
        .get(0);
    Ok(Found::Original { events })
}

/// The plan, as `--dry-run` prints it.
pub fn plan(events: i64) -> String {
    let mut text = format!(
        "would take over the original's audit_event ({events} events) in one transaction:\n"
    );
    for statement in TAKEOVER {
        text.push_str("  ");
        text.push_str(statement);
        text.push_str(";\n");
    }
    text.push_str(&format!(
        "  record migration V{EVENTS_MIGRATION} as applied; then apply the later migrations"
    ));
    text
}

/// Takes the original's schema over, all or nothing.
pub async fn take_over(client: &mut Client) -> anyhow::Result<()> {
    let transaction = client
        .transaction()
        .await
        .context("failed to begin the takeover")?;
    for statement in TAKEOVER {
        transaction
            .batch_execute(statement)
            .await
            .with_context(|| {
                format!("failed to take the original's schema over at: {statement}")
            })?;
    }
    migrations::record_as_applied(&transaction, EVENTS_MIGRATION)
        .await
        .context("failed to record the events migration")?;
    transaction
        .commit()
        .await
        .context("failed to commit the takeover")
}
