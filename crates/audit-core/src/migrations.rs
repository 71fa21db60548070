//! The schema migrations, embedded at compile time so that an installed binary works
//! from any directory. `audit-migrate`, `cargo xtask run` and the tests all call
//! [`run`], so they apply exactly the same steps.

use tokio_postgres::Client;

mod embedded {
    refinery::embed_migrations!("../../migrations");
}

/// One applied migration, for reporting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedMigration {
    pub version: i64,
    pub name: String,
}

/// Applies every pending migration; a no-op when all are applied.
pub async fn run(client: &mut Client) -> Result<Vec<AppliedMigration>, refinery::Error> {
    let report = embedded::migrations::runner().run_async(client).await?;
    Ok(applied(&report))
}

/// Applies the pending migrations up to `version` only: for tests that build a
/// database as an older release left it.
pub async fn run_up_to(
    client: &mut Client,
    version: i32,
) -> Result<Vec<AppliedMigration>, refinery::Error> {
    let report = embedded::migrations::runner()
        .set_target(refinery::Target::Version(version))
        .run_async(client)
        .await?;
    Ok(applied(&report))
}

fn applied(report: &refinery::Report) -> Vec<AppliedMigration> {
    report
        .applied_migrations()
        .iter()
        .map(|migration| AppliedMigration {
            version: i64::from(migration.version()),
            name: migration.name().to_owned(),
        })
        .collect()
}

/// The version of the newest embedded migration: the schema the code expects.
pub fn latest_version() -> i64 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|migration| i64::from(migration.version()))
        .max()
        .unwrap_or(0)
}

/// The name of the table in which refinery records applied migrations.
pub const HISTORY_TABLE: &str = "refinery_schema_history";

/// Records the embedded migration `version` as applied without running it, in the
/// caller's transaction, exactly as refinery records one (its table, its checksum),
/// so that later runs go on from there. For a schema brought to that version by other
/// means: the original service's database, taken over in place.
pub async fn record_as_applied(
    transaction: &tokio_postgres::Transaction<'_>,
    version: i64,
) -> Result<(), MigrationRecordError> {
    let runner = embedded::migrations::runner();
    let migration = runner
        .get_migrations()
        .iter()
        .find(|migration| i64::from(migration.version()) == version)
        .ok_or(MigrationRecordError::Unknown(version))?;
    // refinery's own table definition and row format (refinery-core, traits/mod.rs).
    let create = format!(
        "CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (version INT4 PRIMARY KEY, \
         name VARCHAR(255), applied_on VARCHAR(255), checksum VARCHAR(255))"
    );
    transaction.batch_execute(&create).await?;
    let applied_on = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|_| MigrationRecordError::Clock)?;
    let insert = format!(
        "INSERT INTO {HISTORY_TABLE} (version, name, applied_on, checksum) \
         VALUES ($1, $2, $3, $4)"
    );
    transaction
        .execute(
            &insert,
            &[
                &migration.version(),
                &migration.name(),
                &applied_on,
                &migration.checksum().to_string(),
            ],
        )
        .await?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum MigrationRecordError {
    #[error("no embedded migration has version {0}")]
    Unknown(i64),
    #[error("the clock gave a time that cannot be written as RFC 3339")]
    Clock,
    #[error("failed to record the migration")]
    Database(#[from] tokio_postgres::Error),
}
