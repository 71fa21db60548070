//! Connections: the pool the server uses, the one-off connection `audit-migrate` uses,
//! creating the database when it is missing, and the readiness check.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{Client, IsolationLevel, NoTls, Transaction};

use crate::config::{ConfigError, PostgresSettings};
use crate::migrations::{self, AppliedMigration};
use crate::storage_error::{StorageError, classify};

/// Failures of connection management, migration and readiness; request-time storage
/// failures are `repository::StorageError`.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Nothing answered: no server, a wrong host or port, a timeout.
    #[error("failed to connect to PostgreSQL at {dsn}")]
    Connect {
        dsn: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// A server answered and refused: an unknown role, a wrong password, a missing
    /// database, `pg_hba.conf`.
    #[error("PostgreSQL at {dsn} refused the connection")]
    Refused {
        dsn: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("failed to build the connection pool")]
    BuildPool(#[from] deadpool_postgres::BuildError),
    #[error("failed to create the database {name}")]
    CreateDatabase {
        name: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("failed to apply migrations")]
    Migrate(#[from] refinery::Error),
    #[error("the DSN names no database")]
    NoDatabaseName,
}

/// Builds the pool; it connects lazily, so this succeeds while PostgreSQL is down.
pub fn build_pool(settings: &PostgresSettings) -> Result<Pool, DatabaseError> {
    let mut config = settings.connection_config()?;
    config.connect_timeout(settings.connect_timeout());
    with_statement_timeout(&mut config, settings.statement_timeout_ms);
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(settings.pool_size)
        .wait_timeout(Some(settings.acquire_timeout()))
        .create_timeout(Some(settings.connect_timeout()))
        .recycle_timeout(Some(settings.connect_timeout()))
        .runtime(Runtime::Tokio1)
        .build()?;
    Ok(pool)
}

/// Bounds every statement on the pool's connections, lock waits included: PostgreSQL
/// cancels one that runs longer (SQLSTATE 57014), so no request waits on it without
/// end. Set at connection start, after any `options` the DSN gives, so it wins.
fn with_statement_timeout(config: &mut tokio_postgres::Config, milliseconds: u64) {
    let setting = format!("-c statement_timeout={milliseconds}");
    let options = match config.get_options() {
        Some(given) if !given.trim().is_empty() => format!("{given} {setting}"),
        _ => setting,
    };
    config.options(&options);
}

/// Opens one connection outside the pool; its driver task runs until the client drops.
pub async fn connect(settings: &PostgresSettings) -> Result<Client, DatabaseError> {
    let mut config = settings.connection_config()?;
    config.connect_timeout(settings.connect_timeout());
    connect_with(&config, settings).await
}

/// Opens one connection outside the pool whose statements are bounded as the pools'
/// are: for a background task doing work of the pools' kind on a connection of its own.
pub async fn connect_bounded(settings: &PostgresSettings) -> Result<Client, DatabaseError> {
    let mut config = settings.connection_config()?;
    config.connect_timeout(settings.connect_timeout());
    with_statement_timeout(&mut config, settings.statement_timeout_ms);
    connect_with(&config, settings).await
}

async fn connect_with(
    config: &tokio_postgres::Config,
    settings: &PostgresSettings,
) -> Result<Client, DatabaseError> {
    let (client, connection) = config.connect(NoTls).await.map_err(|source| {
        let dsn = settings.redacted_dsn();
        if source.as_db_error().is_some() {
            DatabaseError::Refused { dsn, source }
        } else {
            DatabaseError::Connect { dsn, source }
        }
    })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "database connection closed");
        }
    });
    Ok(client)
}

/// Creates the database the DSN names, through the `postgres` maintenance database,
/// unless it exists. Returns whether it created it.
pub async fn create_database_if_missing(
    settings: &PostgresSettings,
) -> Result<bool, DatabaseError> {
    let target = settings.connection_config()?;
    let name = target
        .get_dbname()
        .ok_or(DatabaseError::NoDatabaseName)?
        .to_owned();
    let mut maintenance = target.clone();
    maintenance.dbname("postgres");
    maintenance.connect_timeout(settings.connect_timeout());
    let client = connect_with(&maintenance, settings).await?;

    let create_error = |source| DatabaseError::CreateDatabase {
        name: name.clone(),
        source,
    };
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(create_error)?
        .is_some();
    if exists {
        return Ok(false);
    }
    let statement = format!("CREATE DATABASE {}", quote_identifier(&name));
    match client.batch_execute(&statement).await {
        Ok(()) => Ok(true),
        // Another process created it between our check and our CREATE.
        Err(error)
            if error.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) =>
        {
            Ok(false)
        }
        Err(error) => Err(create_error(error)),
    }
}

/// Creates the database if needed and applies every pending migration.
pub async fn migrate(settings: &PostgresSettings) -> Result<Vec<AppliedMigration>, DatabaseError> {
    create_database_if_missing(settings).await?;
    let mut client = connect(settings).await?;
    Ok(migrations::run(&mut client).await?)
}

/// A read-only REPEATABLE READ transaction: everything read in it comes from one
/// snapshot (an export, the verifier).
pub async fn read_snapshot(client: &mut Client) -> Result<Transaction<'_>, StorageError> {
    client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(classify)
}

/// Quotes an SQL identifier, doubling embedded quotes.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
