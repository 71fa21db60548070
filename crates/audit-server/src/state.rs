//! What every handler shares: the reloadable settings and pool, and the parts of the
//! process that live as long as the server.

use std::sync::Arc;

use arc_swap::ArcSwap;
use audit_core::config::{ConfigSource, Settings};
use audit_core::repository::EventRepository;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::metrics::ApplicationLabels;
use crate::telemetry::LogControl;

/// The settings in force and the repository built from them. A reload swaps in a new
/// one; requests in flight keep the one they started with, pool included.
#[derive(Debug)]
pub struct Runtime {
    pub settings: Settings,
    pub repository: EventRepository,
}

#[derive(Debug)]
pub struct AppState {
    current: ArcSwap<Runtime>,
    pub config_source: ConfigSource,
    pub log_control: LogControl,
    pub application_labels: ApplicationLabels,
    pub prometheus: PrometheusHandle,
    /// Serialises reloads so that two cannot interleave their read and swap.
    pub reload_lock: tokio::sync::Mutex<()>,
}

impl AppState {
    pub fn new(
        runtime: Runtime,
        config_source: ConfigSource,
        log_control: LogControl,
        prometheus: PrometheusHandle,
    ) -> Self {
        Self {
            current: ArcSwap::from_pointee(runtime),
            config_source,
            log_control,
            application_labels: ApplicationLabels::default(),
            prometheus,
            reload_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// A snapshot that stays consistent for the whole request.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.current.load_full()
    }

    pub fn replace_runtime(&self, runtime: Runtime) {
        self.current.store(Arc::new(runtime));
    }
}
