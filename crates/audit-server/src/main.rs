//! `audit-server`: wires configuration, telemetry and the application together, or
//! runs one of its management commands.

use std::path::PathBuf;

use anyhow::Context;
use argh::FromArgs;
use audit_core::config::ConfigSource;
use audit_server::keygen_command::{self, KeygenArguments};
use audit_server::settings::Settings;
use audit_server::startup::Application;
use audit_server::telemetry;
use audit_server::token_command::{self, TokenArguments};
use audit_server::verify_command::{self, VerifyArguments};

/// Serve the audit event collector's HTTP API, or manage it with a subcommand.
#[derive(FromArgs)]
struct Arguments {
    /// config file, TOML, YAML or JSON by its extension; default: $APP_CONFIG, else
    /// ./config.toml or ./config.yml if present
    #[argh(option)]
    config: Option<PathBuf>,
    #[argh(subcommand)]
    command: Option<Command>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Token(TokenArguments),
    Keygen(KeygenArguments),
    Verify(VerifyArguments),
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let arguments: Arguments = audit_core::cli::arguments_from_env();
    if let Some(Command::Keygen(keygen)) = arguments.command {
        // Needs no configuration: a key is made before any server runs with it.
        return keygen_command::run(keygen);
    }
    let source = ConfigSource::from_command_line(arguments.config);
    let (settings, unknown_keys) = source
        .load::<Settings>()
        .context("failed to load the configuration")?;
    match arguments.command {
        Some(Command::Token(token)) => return token_command::run(token, &settings).await,
        Some(Command::Verify(verify)) => {
            if verify_command::run(verify, &settings).await? {
                return Ok(());
            }
            std::process::exit(1);
        }
        _ => {}
    }
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
