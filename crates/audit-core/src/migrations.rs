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
    Ok(report
        .applied_migrations()
        .iter()
        .map(|migration| AppliedMigration {
            version: i64::from(migration.version()),
            name: migration.name().to_owned(),
        })
        .collect())
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
