//! What every handler shares: the reloadable settings and pool, and the parts of the
//! process that live as long as the server.

use std::sync::Arc;

use arc_swap::ArcSwap;
use audit_core::config::{ConfigSource, PostgresSettings};
use audit_core::database::{self, DatabaseError};
use audit_core::replicas::Replicas;
use audit_core::repository::EventRepository;
use audit_core::thread_pools::ThreadPools;
use audit_core::writer::{EventWriter, WriterLimits};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::TokenCache;
use crate::body::BodyBudget;
use crate::metrics::ApplicationLabels;
use crate::request_log::ClientErrorLines;
use crate::settings::Settings;
use crate::telemetry::LogControl;
use crate::tls::ReloadableCertificate;

/// The settings in force and the storage built from them. A reload swaps in a new
/// one; requests in flight keep the one they started with, pool and writer included.
#[derive(Debug)]
pub struct Runtime {
    pub settings: Settings,
    pub repository: EventRepository,
    pub writer: EventWriter,
}

impl Runtime {
    /// Builds the pool and starts the writer; connects lazily, so this succeeds while
    /// the database is down.
    pub fn start(settings: Settings) -> Result<Self, DatabaseError> {
        let pools = ThreadPools::new(&settings.postgres)?;
        // The writer has connections of its own, one per writer task. A connection's
        // I/O runs on the runtime that opened it; the writer's runtime has a thread of
        // its own, and connections shared with the HTTP workers would bounce every COPY
        // between threads (measured: 12% more server CPU per 1-event POST).
        let writer_pool = database::build_pool(&PostgresSettings {
            pool_size: settings.ingest.writers.max(1),
            ..settings.postgres.clone()
        })?;
        let limits = WriterLimits {
            enqueue_timeout: settings.ingest.enqueue_timeout(),
            statement_timeout: settings.postgres.statement_timeout(),
        };
        let writer = EventWriter::start(
            writer_pool,
            &settings.ingest,
            limits,
            settings.integrity.seal_column(),
        );
        let replicas = Replicas::new(&settings.postgres)?;
        let repository = EventRepository::new(pools, settings.postgres.statement_timeout())
            .with_replicas(replicas);
        Ok(Self {
            repository,
            writer,
            settings,
        })
    }

    /// The same storage under new settings that do not touch it.
    pub fn with_settings(&self, settings: Settings) -> Self {
        Self {
            settings,
            repository: self.repository.clone(),
            writer: self.writer.clone(),
        }
    }
}

#[derive(Debug)]
pub struct AppState {
    current: ArcSwap<Runtime>,
    pub config_source: ConfigSource,
    pub log_control: LogControl,
    pub application_labels: ApplicationLabels,
    pub prometheus: PrometheusHandle,
    /// Fixed at start-up: changing it needs a restart.
    pub body_budget: BodyBudget,
    /// Serialises reloads so that two cannot interleave their read and swap.
    pub reload_lock: tokio::sync::Mutex<()>,
    /// The rate limit of client error log lines.
    pub client_error_lines: ClientErrorLines,
    /// The settings the process started with: what runs for keys that need a restart.
    pub started_settings: Settings,
    /// The access tokens, reread from the database several times a second.
    pub tokens: TokenCache,
    /// The TLS certificate of the main listener, which a reload rereads.
    pub certificate: Option<Arc<ReloadableCertificate>>,
    /// Exports running at once: each holds a pooled connection for its whole length,
    /// so they may take a quarter of the pool (at least one), never all of it.
    pub exports: Arc<tokio::sync::Semaphore>,
    /// Live tails open at once (`stream.max_clients`).
    pub streams: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    pub fn new(
        runtime: Runtime,
        config_source: ConfigSource,
        log_control: LogControl,
        prometheus: PrometheusHandle,
        certificate: Option<Arc<ReloadableCertificate>>,
    ) -> Self {
        Self {
            body_budget: BodyBudget::new(runtime.settings.http.max_inflight_body_bytes),
            exports: Arc::new(tokio::sync::Semaphore::new(
                (runtime.settings.postgres.pool_size / 4).max(1),
            )),
            streams: Arc::new(tokio::sync::Semaphore::new(
                usize::try_from(runtime.settings.stream.max_clients).unwrap_or(usize::MAX),
            )),
            started_settings: runtime.settings.clone(),
            current: ArcSwap::from_pointee(runtime),
            config_source,
            log_control,
            application_labels: ApplicationLabels::default(),
            prometheus,
            reload_lock: tokio::sync::Mutex::new(()),
            client_error_lines: ClientErrorLines::default(),
            tokens: TokenCache::default(),
            certificate,
        }
    }

    /// A snapshot that stays consistent for the whole request.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.current.load_full()
    }

    /// A snapshot for a glance at the settings, cheaper than `runtime` (no reference
    /// count taken); not to be held across an await.
    pub fn runtime_ref(&self) -> arc_swap::Guard<Arc<Runtime>> {
        self.current.load()
    }

    pub fn replace_runtime(&self, runtime: Runtime) {
        self.current.store(Arc::new(runtime));
    }
}
