//! `audit-server`: wires configuration, telemetry and the application together.

use std::path::PathBuf;

use anyhow::Context;
use argh::FromArgs;
use audit_core::config::ConfigSource;
use audit_server::startup::Application;
use audit_server::telemetry;

/// jemalloc rather than glibc's malloc: its background threads give freed memory back
/// to the system after a decay time, so RSS returns after a burst of large pages (60 s
/// after one: 14 MiB against glibc's 42-49 MiB, from 9-10 MiB before), at the same
/// ingest rate within this machine's noise (BENCHMARKS.md, "Allocator").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Serve the audit event collector's HTTP API.
#[derive(FromArgs)]
struct Arguments {
    /// config file (TOML); default: $APP_CONFIG, else ./config.toml if present
    #[argh(option)]
    config: Option<PathBuf>,
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let arguments: Arguments = audit_core::cli::arguments_from_env();
    let source = ConfigSource::from_command_line(arguments.config);
    let (settings, unknown_keys) = source.load().context("failed to load the configuration")?;
    let log_control = telemetry::init(&settings.log)?;
    if !unknown_keys.is_empty() {
        tracing::warn!(?unknown_keys, "unknown configuration keys ignored");
    }
    tracing::info!(?settings, "starting");
    let application = Application::build(settings, source, log_control)?;
    tracing::info!(port = application.port(), "listening");
    application.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}
