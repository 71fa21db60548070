//! `audit-migrate`: creates the database if needed and applies the embedded
//! migrations. Idempotent: a second run applies nothing.

use std::path::PathBuf;

use anyhow::Context;
use argh::FromArgs;
use audit_core::config::{ConfigSource, DatabaseSettings};
use audit_core::database;

/// Create the audit database if it is missing and apply pending migrations.
#[derive(FromArgs)]
struct Arguments {
    /// config file, TOML, YAML or JSON by its extension; default: $APP_CONFIG, else
    /// ./config.toml or ./config.yml if present
    #[argh(option)]
    config: Option<PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let arguments: Arguments = audit_core::cli::arguments_from_env();
    let source = ConfigSource::from_command_line(arguments.config);
    // Only the database's settings: the server's sections of a shared file are none
    // of its business, so neither their values nor their keys can stop a migration.
    let (DatabaseSettings { postgres }, _) = source
        .load::<DatabaseSettings>()
        .context("failed to load the configuration")?;
    let target = postgres.redacted_dsn();
    if database::create_database_if_missing(&postgres)
        .await
        .with_context(|| format!("failed to prepare the database at {target}"))?
    {
        println!("created database {target}");
    }
    let applied = database::migrate(&postgres)
        .await
        .with_context(|| format!("failed to migrate {target}"))?;
    if applied.is_empty() {
        println!("{target}: schema up to date, nothing to apply");
    }
    for migration in applied {
        println!(
            "{target}: applied V{}__{}",
            migration.version, migration.name
        );
    }
    Ok(())
}
