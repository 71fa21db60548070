//! `audit-migrate`: creates the database if needed, takes over a database of the
//! original service in place (`adopt`), and applies the embedded migrations.
//! Idempotent: a second run applies nothing.

mod adopt;

use std::path::PathBuf;

use anyhow::Context;
use argh::FromArgs;
use audit_core::config::{
    ConfigError, ConfigSource, PartitionSettings, PostgresSettings, SearchSettings, Validate,
};
use audit_core::{database, migrations, partitions, search_index};
use serde::Deserialize;

/// Create the audit database if it is missing and apply pending migrations.
#[derive(FromArgs)]
struct Arguments {
    /// config file, TOML, YAML or JSON by its extension; default: $APP_CONFIG, else
    /// ./config.toml or ./config.yml if present
    #[argh(option)]
    config: Option<PathBuf>,
    /// print what would be done to a database of the original service, change nothing
    #[argh(switch)]
    dry_run: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let arguments: Arguments = audit_core::cli::arguments_from_env();
    let source = ConfigSource::from_command_line(arguments.config);
    // Only the database's settings: the server's sections of a shared file are none
    // of its business, so neither their values nor their keys can stop a migration.
    let (
        MigrateSettings {
            postgres,
            search,
            partitions: partition_settings,
        },
        _,
    ) = source
        .load::<MigrateSettings>()
        .context("failed to load the configuration")?;
    let target = postgres.redacted_dsn();
    if database::create_database_if_missing(&postgres)
        .await
        .with_context(|| format!("failed to prepare the database at {target}"))?
    {
        println!("created database {target}");
    }
    let mut client = database::connect(&postgres)
        .await
        .with_context(|| format!("failed to connect to {target}"))?;
    match adopt::inspect(&client).await? {
        adopt::Found::Original { events } if arguments.dry_run => {
            println!("{target}: {}", adopt::plan(events));
            return Ok(());
        }
        adopt::Found::Original { events } => {
            let started = std::time::Instant::now();
            adopt::take_over(&mut client).await?;
            println!(
                "{target}: took over the original's audit_event: {events} events, ids kept, in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        adopt::Found::NoOriginal if arguments.dry_run => {
            println!("{target}: no database of the original here; would apply pending migrations");
            return Ok(());
        }
        adopt::Found::NoOriginal => {}
    }
    let applied = migrations::run(&mut client)
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
    // Room for writers before any server runs (a raw COPY, a loader): the partitions
    // a server's maintenance would keep ahead.
    let created = partitions::make_room(&client, &partition_settings, 0)
        .await
        .with_context(|| format!("failed to create the partitions of {target}"))?;
    if !created.is_empty() {
        println!("{target}: created partitions {}", created.join(", "));
    }
    build_search_indexes(&client, &search, &target).await
}

/// What the migration reads: `[postgres]`, `[search]` for the indexes it builds and
/// `[partitions]` for the partitions it makes ready.
#[derive(Default, Deserialize)]
#[serde(default)]
struct MigrateSettings {
    postgres: PostgresSettings,
    search: SearchSettings,
    partitions: PartitionSettings,
}

impl Validate for MigrateSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        self.postgres.validate()?;
        self.partitions.validate()?;
        self.search.validate()
    }
}

/// Builds the search indexes the settings ask for that do not exist yet. They are not
/// migrations: each costs every insert, so whether to pay for it is the operator's
/// choice, and a build on a large table runs beside the writers (`CONCURRENTLY`).
async fn build_search_indexes(
    client: &tokio_postgres::Client,
    search: &SearchSettings,
    target: &str,
) -> anyhow::Result<()> {
    let wanted = search.wanted_indexes();
    let started = std::time::Instant::now();
    let built = search_index::create_missing(client, wanted)
        .await
        .with_context(|| format!("failed to build the search indexes of {target}"))?;
    for index in &built {
        println!("{target}: built the search index {}", index.name());
    }
    if !built.is_empty() {
        println!(
            "{target}: search indexes built in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
