//! The database connection settings: what every binary that touches the database
//! reads (`[postgres]`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, invalid};

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PostgresSettings {
    /// libpq-style URL or key/value connection string; may hold a password.
    pub dsn: String,
    /// Most connections the server keeps open.
    pub pool_size: usize,
    /// How long opening a connection may take before the request fails with 503.
    pub connect_timeout_ms: u64,
    /// How long a request may wait for a free pooled connection before it fails with
    /// 503. (The write queue and the body memory have waits of their own.)
    pub acquire_timeout_ms: u64,
    /// PostgreSQL's `statement_timeout` on every connection: no read or write (lock
    /// waits included) takes longer; past it the request gets 503.
    pub statement_timeout_ms: u64,
    /// Streaming replicas that page reads, exports and live tails may read from
    /// (`replicas`); writes always go to `dsn`.
    pub read_dsns: Vec<String>,
    /// A replica further behind the primary than this is not read from.
    pub max_read_lag_ms: u64,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        Self {
            dsn: "postgres://postgres@127.0.0.1:5432/audit".to_owned(),
            pool_size: 16,
            connect_timeout_ms: 2_000,
            acquire_timeout_ms: 2_000,
            statement_timeout_ms: 5_000,
            read_dsns: Vec::new(),
            max_read_lag_ms: 1_000,
        }
    }
}

impl PostgresSettings {
    /// Checks the values a connection needs.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.pool_size == 0 {
            return invalid("postgres.pool_size", "must be at least 1");
        }
        if self.statement_timeout_ms == 0 {
            // PostgreSQL reads 0 as "no timeout": every database wait must have a bound.
            return invalid("postgres.statement_timeout_ms", "must be at least 1 ms");
        }
        self.connection_config()?;
        for replica in self.replicas() {
            replica
                .connection_config()
                .map_err(|_| ConfigError::InvalidValue {
                    key: "postgres.read_dsns",
                    problem: format!("{} is not a valid DSN", replica.redacted_dsn()),
                })?;
        }
        Ok(())
    }

    /// The settings of each read replica: these, with its DSN.
    pub fn replicas(&self) -> impl Iterator<Item = PostgresSettings> + '_ {
        self.read_dsns.iter().map(|dsn| PostgresSettings {
            dsn: dsn.clone(),
            read_dsns: Vec::new(),
            ..self.clone()
        })
    }

    /// Whether a connection opened with these settings is the one `other` would open:
    /// the same database, with the same timeouts. A background task that keeps a
    /// connection of its own opens another when a reload changes this.
    pub fn opens_same_connection(&self, other: &Self) -> bool {
        self.dsn == other.dsn
            && self.connect_timeout_ms == other.connect_timeout_ms
            && self.statement_timeout_ms == other.statement_timeout_ms
    }

    pub fn max_read_lag(&self) -> Duration {
        Duration::from_millis(self.max_read_lag_ms)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }

    pub fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.statement_timeout_ms)
    }

    /// The parsed connection settings; validated at load time.
    pub fn connection_config(&self) -> Result<tokio_postgres::Config, ConfigError> {
        tokio_postgres::Config::from_str(&self.dsn).map_err(|error| ConfigError::InvalidValue {
            key: "postgres.dsn",
            problem: error.to_string(),
        })
    }

    /// The DSN without its password, for logs and reload summaries.
    pub fn redacted_dsn(&self) -> String {
        match self.connection_config() {
            Ok(config) => {
                let hosts: Vec<String> = config
                    .get_hosts()
                    .iter()
                    .map(|host| match host {
                        tokio_postgres::config::Host::Tcp(name) => name.clone(),
                        tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                    })
                    .collect();
                let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
                format!(
                    "postgres://{}@{}:{}/{}",
                    config.get_user().unwrap_or(""),
                    hosts.join(","),
                    ports.join(","),
                    config.get_dbname().unwrap_or("")
                )
            }
            Err(_) => "<unparseable>".to_owned(),
        }
    }
}

impl fmt::Debug for PostgresSettings {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("PostgresSettings")
            .field("dsn", &self.redacted_dsn())
            .field("pool_size", &self.pool_size)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .field(
                "read_dsns",
                &self
                    .replicas()
                    .map(|replica| replica.redacted_dsn())
                    .collect::<Vec<_>>(),
            )
            .field("max_read_lag_ms", &self.max_read_lag_ms)
            .finish()
    }
}
