//! The server's settings: the storage sections `audit-core` defines (`postgres`,
//! `ingest`) and the sections only the server reads (listener, HTTP limits, logs,
//! failure injection, API limits, idempotency, metrics). Loaded by
//! `audit_core::config::ConfigSource`, like every binary's settings.

use std::path::PathBuf;
use std::time::Duration;

use audit_core::batch::BatchLimits;
use audit_core::config::{
    ConfigError, IngestSettings, PartitionSettings, PostgresSettings, RetentionSettings,
    SearchSettings, Validate, invalid,
};
use audit_core::copy::SealColumn;
use serde::{Deserialize, Serialize};

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
    pub auth: AuthSettings,
    pub admin: AdminSettings,
    pub tls: TlsSettings,
    pub search: SearchSettings,
    pub stream: StreamSettings,
    pub integrity: IntegritySettings,
    pub partitions: PartitionSettings,
    pub retention: RetentionSettings,
}

/// Tamper evidence (README: "Proving the log was not changed"). Read at start; a
/// reload does not change it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IntegritySettings {
    /// Seal events into the Merkle tree and sign checkpoints. Unset: on exactly when
    /// `signing_key_file` is set; on without a key, events are sealed (the live tail
    /// follows them) but no checkpoint is signed.
    pub enabled: Option<bool>,
    /// The Ed25519 signing key `audit-server keygen` wrote.
    pub signing_key_file: Option<PathBuf>,
    /// The first line of every checkpoint, the log's name; default: the key's name.
    pub origin: Option<String>,
    /// How often a checkpoint is signed while the tree grows.
    pub checkpoint_interval_ms: u64,
    /// How often the sealer appends what has committed since its last round.
    pub seal_interval_ms: u64,
    /// A file every checkpoint is also appended to, outside the database.
    pub checkpoint_log: Option<PathBuf>,
    /// The verifier key (`name+id+key`) the viewer at `/ui` offers for checking
    /// proofs in the browser; a user may paste another.
    pub verifier_key: Option<String>,
}

impl Default for IntegritySettings {
    fn default() -> Self {
        Self {
            enabled: None,
            signing_key_file: None,
            origin: None,
            checkpoint_interval_ms: 1_000,
            seal_interval_ms: 100,
            checkpoint_log: None,
            verifier_key: None,
        }
    }
}

impl IntegritySettings {
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(self.signing_key_file.is_some())
    }

    /// Rows carry their seal where events are sealed; elsewhere the column stays NULL
    /// and costs the writer nothing (a sealer reads such rows' texts instead).
    pub fn seal_column(&self) -> SealColumn {
        if self.is_enabled() {
            SealColumn::Filled
        } else {
            SealColumn::Null
        }
    }

    pub fn checkpoint_interval(&self) -> Duration {
        Duration::from_millis(self.checkpoint_interval_ms)
    }

    pub fn seal_interval(&self) -> Duration {
        Duration::from_millis(self.seal_interval_ms)
    }
}

/// The live tail (`GET /api/event/stream`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamSettings {
    /// Streams open at once; one more is refused with 503.
    pub max_clients: u32,
    /// How often a stream looks for newly sealed events.
    pub poll_interval_ms: u64,
    /// A stream whose client has not taken an event for this long is ended: it
    /// resumes from the last position it got.
    pub max_send_wait_ms: u64,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            max_clients: 64,
            poll_interval_ms: 100,
            max_send_wait_ms: 10_000,
        }
    }
}

impl StreamSettings {
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    pub fn max_send_wait(&self) -> Duration {
        Duration::from_millis(self.max_send_wait_ms)
    }
}

/// Who may call the API (see the README's "Securing it").
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    pub mode: AuthMode,
    /// When set, `/metrics` answers only requests that carry it as a bearer token.
    pub metrics_token: Option<String>,
    /// How often each server rereads the tokens, which bounds how long a revoked token
    /// keeps working on a server other than the one that revoked it.
    pub refresh_interval_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// No token needed, as the original service: anyone who reaches the port may write
    /// and read every application's events.
    Off,
    /// Every `/api/*` request needs a bearer token whose scopes cover it.
    Tokens,
}

/// The operators' surface: `/metrics`, `/reload` and `/admin/*`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdminSettings {
    /// `host:port` of a second, plain-HTTP listener that serves the operators' surface
    /// alone; the main listener then no longer serves it. Unset: one listener for all.
    pub listen: Option<String>,
}

/// TLS on the main listener; both files or neither. A reload rereads them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsSettings {
    /// PEM certificate chain, the server's certificate first.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
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
            auth: AuthSettings::default(),
            admin: AdminSettings::default(),
            tls: TlsSettings::default(),
            search: SearchSettings::default(),
            stream: StreamSettings::default(),
            integrity: IntegritySettings::default(),
            partitions: PartitionSettings::default(),
            retention: RetentionSettings::default(),
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            mode: AuthMode::Off,
            metrics_token: None,
            refresh_interval_ms: 250,
        }
    }
}

impl AuthSettings {
    pub fn refresh_interval(&self) -> Duration {
        Duration::from_millis(self.refresh_interval_ms.max(1))
    }
}

/// Written by hand: the metrics token must not reach the start-up log line.
impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AuthSettings")
            .field("mode", &self.mode)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "[redacted]"),
            )
            .field("refresh_interval_ms", &self.refresh_interval_ms)
            .finish()
    }
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Tokens => "tokens",
        }
    }
}

impl TlsSettings {
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
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
            max_batch_events: BatchLimits::DEFAULT.max_events,
            max_body_bytes: 16 * 1024 * 1024,
            max_page_bytes: 4 * 1024 * 1024,
            max_event_bytes: BatchLimits::DEFAULT.max_event_bytes,
        }
    }
}

impl ApiSettings {
    /// The limits a POST body is parsed under.
    pub fn batch_limits(&self) -> BatchLimits {
        BatchLimits {
            max_events: self.max_batch_events,
            max_event_bytes: self.max_event_bytes,
        }
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

impl Validate for Settings {
    fn validate(&self) -> Result<(), ConfigError> {
        self.partitions.validate()?;
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
        if self.http.body_timeout_ms == 0
            || self.http.request_head_timeout_ms == 0
            || self.http.response_timeout_ms == 0
        {
            return invalid("http", "timeouts must be at least 1 ms");
        }
        if self.log.level.trim().is_empty() {
            return invalid("log.level", "must not be empty");
        }
        self.search.validate()?;
        if self.stream.poll_interval_ms == 0 || self.stream.max_send_wait_ms == 0 {
            return invalid(
                "stream",
                "poll_interval_ms and max_send_wait_ms must be at least 1",
            );
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return invalid("tls", "cert_file and key_file must be set together");
        }
        if let Some(token) = &self.auth.metrics_token
            && token.len() < 16
        {
            return invalid("auth.metrics_token", "must be at least 16 characters");
        }
        if let Some(listen) = &self.admin.listen
            && listen
                .rsplit_once(':')
                .is_none_or(|(_, port)| port.parse::<u16>().is_err())
        {
            return invalid("admin.listen", "must be host:port, e.g. 127.0.0.1:9091");
        }
        if self.integrity.checkpoint_interval_ms == 0 || self.integrity.seal_interval_ms == 0 {
            return invalid("integrity", "intervals must be at least 1 ms");
        }
        self.postgres.validate()?;
        self.ingest.validate()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Write;
    use std::path::PathBuf;

    use audit_core::config::ConfigSource;

    use super::*;

    fn load(
        toml: &str,
        environment: &[(&str, &str)],
    ) -> Result<(Settings, Vec<String>), ConfigError> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(toml.as_bytes()).unwrap();
        let environment: HashMap<String, String> = environment
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        ConfigSource::for_file(file.path().to_owned(), environment).load()
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        assert_eq!(load("", &[]).unwrap().0, Settings::default());
    }

    #[test]
    fn the_file_overrides_defaults_and_the_environment_overrides_the_file() {
        let (settings, unknown) = load(
            "port = 9000\n[failure]\nchance = 0.5\n[postgres]\ndsn = \"postgres://a@h/db\"\n",
            &[
                ("APP_PORT", "9100"),
                ("APP_POSTGRES__DSN", "postgres://b@h/other"),
                ("APP_LOG__LEVEL", "debug"),
            ],
        )
        .unwrap();

        assert_eq!(settings.port, 9100);
        assert_eq!(settings.failure.chance, 0.5);
        assert_eq!(settings.postgres.dsn, "postgres://b@h/other");
        assert_eq!(settings.log.level, "debug");
        assert!(unknown.is_empty(), "{unknown:?}");
    }

    #[test]
    fn bad_values_are_refused() {
        for toml in [
            "[failure]\nchance = 1.5\n",
            "[failure]\nchance = \"often\"\n",
            "port = 70000\n",
            "[api]\ndefault_page_size = 2000\n",
            "[api]\nmax_body_bytes = 100000000\n",
            "[ingest]\nwriters = 0\n",
            "[postgres]\ndsn = \"postgres://a@h:notaport/db\"\n",
        ] {
            assert!(load(toml, &[]).is_err(), "{toml:?} was accepted");
        }
    }

    #[test]
    fn the_shipped_config_file_holds_the_defaults_and_no_unknown_key() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config.toml");

        let (settings, unknown) = ConfigSource::for_file(path, HashMap::new())
            .load::<Settings>()
            .unwrap();

        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(settings, Settings::default());
    }
}
