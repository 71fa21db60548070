//! Typed configuration: built-in defaults, then a TOML file, then `APP_*` environment
//! variables (`__` separates nesting levels, so `APP_POSTGRES__DSN` sets `postgres.dsn`).
//!
//! Every key has a default, so a file may set any subset. The same loader serves
//! start-up and reload, so a config that starts the server also reloads into it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use serde::{Deserialize, Serialize};

/// The environment variable that names the config file when `--config` is not given.
pub const CONFIG_PATH_VARIABLE: &str = "APP_CONFIG";
/// The file read when neither `--config` nor `$APP_CONFIG` names one.
pub const DEFAULT_CONFIG_PATH: &str = "config.toml";
const ENVIRONMENT_PREFIX: &str = "APP_";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Address the HTTP server binds to.
    pub host: String,
    /// Port the HTTP server binds to; 0 picks a free one.
    pub port: u16,
    pub http: HttpSettings,
    pub postgres: PostgresSettings,
    pub log: LogSettings,
    pub failure: FailureSettings,
    pub api: ApiSettings,
    pub ingest: IngestSettings,
    pub idempotency: IdempotencySettings,
    pub metrics: MetricsSettings,
}

/// Protection against slow, idle and numerous clients.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    /// Worker threads serving HTTP; 0 means one per CPU core.
    pub workers: usize,
    /// Time a client has to send a request's head; then 408 and the connection closes.
    pub request_head_timeout_ms: u64,
    /// Time a whole request body may take to arrive; then 408.
    pub body_timeout_ms: u64,
    /// Idle time after which a keep-alive connection is closed.
    pub keep_alive_seconds: u64,
    /// Connections each worker accepts at once; more wait in the listen backlog.
    pub max_connections_per_worker: usize,
    /// Request body bytes held in memory at once over all requests; a request that
    /// cannot get its share within `body_memory_wait_ms` gets 503.
    pub max_inflight_body_bytes: usize,
    /// How long a request waits for its share of the body memory before 503.
    pub body_memory_wait_ms: u64,
    /// Time a response may take to reach a client that reads slowly or not at all;
    /// then the connection is closed and the response's memory freed.
    pub response_timeout_ms: u64,
    /// Connections the kernel queues before the server accepts them (capped by the
    /// kernel's `net.core.somaxconn`).
    pub backlog: u32,
}

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
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogSettings {
    /// A tracing filter: `info`, or `warn,audit_server=debug`.
    pub level: String,
    pub format: LogFormat,
    /// Which requests get a log line of their own.
    pub requests: RequestLogging,
}

/// Which requests are logged: a hostile client must not be able to fill the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestLogging {
    /// Every request, at `info`.
    All,
    /// Server errors always; client errors at most a few lines a second, with a count
    /// of the lines left out.
    Errors,
    /// None, server errors included (they are still counted in the metrics).
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailureSettings {
    /// Probability in [0, 1] that a request to /api/event fails with an injected 500.
    pub chance: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiSettings {
    pub default_page_size: u32,
    pub max_page_size: u32,
    pub max_batch_events: usize,
    pub max_body_bytes: usize,
    /// A GET page ends early once the next event would take it past this many bytes
    /// (it always holds at least one event).
    pub max_page_bytes: usize,
    /// Largest event accepted: its timestamp, names and payload text together.
    pub max_event_bytes: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IngestSettings {
    /// Writer tasks, each committing one group of queued batches at a time.
    pub writers: usize,
    /// Batches that may wait for a writer; when full, POSTs wait up to
    /// `enqueue_timeout_ms`, then fail with 503.
    pub queue_capacity: usize,
    /// How long a POST waits for room in a full write queue before 503.
    pub enqueue_timeout_ms: u64,
    /// Most events one group commit takes (a single larger batch still goes whole).
    pub max_group_events: usize,
    /// Events that must be waiting before a writer starts a COPY beside a group still
    /// being written; with fewer, it waits for that commit and takes them all at once.
    pub parallel_group_events: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IdempotencySettings {
    /// How long an idempotency key is remembered.
    pub ttl_seconds: u64,
    /// How often expired keys are deleted.
    pub cleanup_interval_seconds: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsSettings {
    /// Distinct `application` label values of `events_inserted_total`; later ones are
    /// counted under `other` so that clients cannot grow the metric without bound.
    pub max_application_labels: usize,
}

/// Where settings come from: the file (if any) and a snapshot of the environment.
#[derive(Clone, Debug)]
pub struct ConfigSource {
    /// The file to read; `required` when it was named explicitly.
    pub file: Option<PathBuf>,
    pub file_required: bool,
    /// `APP_*` variables; taken from the process at load time when `None`.
    pub environment: Option<HashMap<String, String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the config file {0} does not exist")]
    MissingFile(PathBuf),
    /// The cause (a parse error, a value of the wrong type) is the source, not part of
    /// this message, so a cause chain says it once.
    #[error("failed to read the configuration")]
    Unreadable(#[from] config::ConfigError),
    #[error("invalid value for `{key}`: {problem}")]
    InvalidValue { key: &'static str, problem: String },
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".to_owned(),
            port: 8080,
            http: HttpSettings::default(),
            postgres: PostgresSettings::default(),
            log: LogSettings::default(),
            failure: FailureSettings::default(),
            api: ApiSettings::default(),
            ingest: IngestSettings::default(),
            idempotency: IdempotencySettings::default(),
            metrics: MetricsSettings::default(),
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            workers: 0,
            request_head_timeout_ms: 5_000,
            body_timeout_ms: 30_000,
            keep_alive_seconds: 5,
            max_connections_per_worker: 4_096,
            max_inflight_body_bytes: 64 * 1024 * 1024,
            body_memory_wait_ms: 2_000,
            response_timeout_ms: 30_000,
            backlog: 2048,
        }
    }
}

impl HttpSettings {
    pub fn request_head_timeout(&self) -> Duration {
        Duration::from_millis(self.request_head_timeout_ms)
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }

    pub fn response_timeout(&self) -> Duration {
        Duration::from_millis(self.response_timeout_ms)
    }

    pub fn body_memory_wait(&self) -> Duration {
        Duration::from_millis(self.body_memory_wait_ms)
    }
}

impl Default for PostgresSettings {
    fn default() -> Self {
        Self {
            dsn: "postgres://postgres@127.0.0.1:5432/audit".to_owned(),
            pool_size: 16,
            connect_timeout_ms: 2_000,
            acquire_timeout_ms: 2_000,
            statement_timeout_ms: 5_000,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
            requests: RequestLogging::Errors,
        }
    }
}

impl Default for FailureSettings {
    fn default() -> Self {
        Self { chance: 0.1 }
    }
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            default_page_size: 10,
            max_page_size: 1000,
            max_batch_events: 10_000,
            max_body_bytes: 16 * 1024 * 1024,
            max_page_bytes: 4 * 1024 * 1024,
            max_event_bytes: 1024 * 1024,
        }
    }
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            writers: 2,
            queue_capacity: 1024,
            enqueue_timeout_ms: 2_000,
            max_group_events: 20_000,
            parallel_group_events: 256,
        }
    }
}

impl IngestSettings {
    pub fn enqueue_timeout(&self) -> Duration {
        Duration::from_millis(self.enqueue_timeout_ms)
    }
}

impl Default for IdempotencySettings {
    fn default() -> Self {
        Self {
            ttl_seconds: 24 * 60 * 60,
            cleanup_interval_seconds: 60,
        }
    }
}

impl IdempotencySettings {
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_seconds)
    }

    pub fn cleanup_interval(&self) -> Duration {
        Duration::from_secs(self.cleanup_interval_seconds.max(1))
    }
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            max_application_labels: 100,
        }
    }
}

impl PostgresSettings {
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
            .finish()
    }
}

impl ConfigSource {
    /// `--config PATH` if given, else `$APP_CONFIG`, else `./config.toml` if it exists.
    pub fn from_command_line(config_flag: Option<PathBuf>) -> Self {
        if let Some(path) = config_flag {
            return Self::explicit_file(path);
        }
        if let Some(path) = std::env::var_os(CONFIG_PATH_VARIABLE) {
            return Self::explicit_file(PathBuf::from(path));
        }
        Self {
            file: Some(PathBuf::from(DEFAULT_CONFIG_PATH)),
            file_required: false,
            environment: None,
        }
    }

    pub fn explicit_file(path: PathBuf) -> Self {
        Self {
            file: Some(path),
            file_required: true,
            environment: None,
        }
    }

    /// Loads, merges and validates the settings. Unknown keys are returned beside them
    /// so the caller can warn about typos without refusing a config that still works.
    pub fn load(&self) -> Result<(Settings, Vec<String>), ConfigError> {
        let mut builder = Config::builder();
        if let Some(path) = &self.file {
            if self.file_required && !path.exists() {
                return Err(ConfigError::MissingFile(path.clone()));
            }
            builder = builder.add_source(
                File::from(path.as_path())
                    .format(FileFormat::Toml)
                    .required(self.file_required),
            );
        }
        let environment = Environment::default()
            .separator("__")
            .try_parsing(true)
            .source(Some(self.application_variables()));
        let merged = builder.add_source(environment).build()?;

        let mut unknown_keys = Vec::new();
        let settings: Settings = serde_ignored::deserialize(merged, |path| {
            unknown_keys.push(path.to_string());
        })?;
        settings.validate()?;
        Ok((settings, unknown_keys))
    }

    /// The `APP_*` variables with their prefix removed, minus `APP_CONFIG`, which names
    /// the file rather than setting a key.
    fn application_variables(&self) -> HashMap<String, String> {
        let variables: BTreeMap<String, String> = match &self.environment {
            Some(map) => map.clone().into_iter().collect(),
            None => std::env::vars().collect(),
        };
        variables
            .into_iter()
            .filter(|(name, _)| name != CONFIG_PATH_VARIABLE)
            .filter_map(|(name, value)| {
                let key = name.strip_prefix(ENVIRONMENT_PREFIX)?;
                Some((key.to_lowercase(), value))
            })
            .collect()
    }
}

impl Settings {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: &str| {
            Err(ConfigError::InvalidValue {
                key,
                problem: problem.to_owned(),
            })
        };
        if !(0.0..=1.0).contains(&self.failure.chance) {
            return invalid("failure.chance", "must be between 0 and 1");
        }
        if self.api.max_page_size == 0 {
            return invalid("api.max_page_size", "must be at least 1");
        }
        if self.api.default_page_size == 0 || self.api.default_page_size > self.api.max_page_size {
            return invalid(
                "api.default_page_size",
                "must be between 1 and api.max_page_size",
            );
        }
        if self.api.max_batch_events == 0 {
            return invalid("api.max_batch_events", "must be at least 1");
        }
        if self.api.max_body_bytes < 2 {
            return invalid("api.max_body_bytes", "must be at least 2 (the body `[]`)");
        }
        if self.http.max_inflight_body_bytes < self.api.max_body_bytes {
            return invalid(
                "http.max_inflight_body_bytes",
                "must be at least api.max_body_bytes, or a largest body could never be read",
            );
        }
        if self.api.max_page_bytes == 0 {
            return invalid("api.max_page_bytes", "must be at least 1");
        }
        if self.api.max_event_bytes == 0 {
            return invalid("api.max_event_bytes", "must be at least 1");
        }
        if self.http.backlog == 0 {
            return invalid("http.backlog", "must be at least 1");
        }
        if self.postgres.statement_timeout_ms == 0 {
            // PostgreSQL reads 0 as "no timeout": every database wait must have a bound.
            return invalid("postgres.statement_timeout_ms", "must be at least 1 ms");
        }
        if self.http.body_timeout_ms == 0
            || self.http.request_head_timeout_ms == 0
            || self.http.response_timeout_ms == 0
        {
            return invalid("http", "timeouts must be at least 1 ms");
        }
        if self.ingest.writers == 0 {
            return invalid("ingest.writers", "must be at least 1");
        }
        if self.ingest.queue_capacity == 0 {
            return invalid("ingest.queue_capacity", "must be at least 1");
        }
        if self.ingest.max_group_events == 0 {
            return invalid("ingest.max_group_events", "must be at least 1");
        }
        if self.postgres.pool_size == 0 {
            return invalid("postgres.pool_size", "must be at least 1");
        }
        if self.log.level.trim().is_empty() {
            return invalid("log.level", "must not be empty");
        }
        self.postgres.connection_config()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn source(toml: &str, environment: &[(&str, &str)]) -> (ConfigSource, tempfile::NamedTempFile) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(toml.as_bytes()).unwrap();
        let source = ConfigSource {
            file: Some(file.path().to_owned()),
            file_required: true,
            environment: Some(
                environment
                    .iter()
                    .map(|(name, value)| (name.to_string(), value.to_string()))
                    .collect(),
            ),
        };
        (source, file)
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let (source, _file) = source("", &[]);
        assert_eq!(source.load().unwrap().0, Settings::default());
    }

    #[test]
    fn the_file_overrides_defaults_and_the_environment_overrides_the_file() {
        let (source, _file) = source(
            "port = 9000\n[failure]\nchance = 0.5\n[postgres]\ndsn = \"postgres://a@h/db\"\n",
            &[
                ("APP_PORT", "9100"),
                ("APP_POSTGRES__DSN", "postgres://b@h/other"),
                ("APP_LOG__LEVEL", "debug"),
                ("APP_CONFIG", "ignored.toml"),
                ("PATH", "/bin"),
            ],
        );
        let (settings, unknown) = source.load().unwrap();
        assert_eq!(settings.port, 9100);
        assert_eq!(settings.failure.chance, 0.5);
        assert_eq!(settings.postgres.dsn, "postgres://b@h/other");
        assert_eq!(settings.log.level, "debug");
        assert!(unknown.is_empty(), "{unknown:?}");
    }

    #[test]
    fn the_shipped_config_file_holds_the_defaults_and_no_unknown_key() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config.toml");
        let source = ConfigSource {
            file: Some(path),
            file_required: true,
            environment: Some(HashMap::new()),
        };

        let (settings, unknown) = source.load().unwrap();

        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(settings, Settings::default());
    }

    #[test]
    fn unknown_keys_are_reported() {
        let (source, _file) = source("[failure]\nchanse = 0.5\n", &[]);
        let (_, unknown) = source.load().unwrap();
        assert_eq!(unknown, vec!["failure.chanse".to_owned()]);
    }

    #[test]
    fn bad_values_are_refused() {
        for toml in [
            "[failure]\nchance = 1.5\n",
            "[failure]\nchance = \"often\"\n",
            "port = 70000\n",
            "[api]\ndefault_page_size = 2000\n",
            "[postgres]\ndsn = \"postgres://a@h:notaport/db\"\n",
            "this is not toml",
        ] {
            let (source, _file) = source(toml, &[]);
            assert!(source.load().is_err(), "{toml:?} was accepted");
        }
    }

    #[test]
    fn a_bad_value_is_named_once_in_the_cause_chain() {
        let (source, _file) = source("[failure]\nchance = \"x\"\n", &[]);

        let error = source.load().unwrap_err();

        let chain = crate::storage_error::cause_chain(&error);
        assert_eq!(chain.matches("failure.chance").count(), 1, "{chain}");
    }

    #[test]
    fn a_named_file_that_does_not_exist_is_an_error() {
        let source = ConfigSource::explicit_file(PathBuf::from("/nonexistent/audit.toml"));
        assert!(matches!(source.load(), Err(ConfigError::MissingFile(_))));
    }

    #[test]
    fn the_debug_form_hides_the_password() {
        let settings = PostgresSettings {
            dsn: "postgres://user:hunter2@db:5433/audit".to_owned(),
            ..PostgresSettings::default()
        };
        let debug = format!("{settings:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("postgres://user@db:5433/audit"), "{debug}");
    }
}
