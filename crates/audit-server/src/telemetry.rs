//! Logging set-up, with a handle that lets a reload change the level in place.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, fmt, reload};

use crate::settings::{LogFormat, LogSettings};

/// Changes the active log filter; inert when logging was not set up (tests).
#[derive(Clone, Debug, Default)]
pub struct LogControl {
    handle: Option<reload::Handle<EnvFilter, Registry>>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid log.level {level:?}: {problem}")]
pub struct InvalidLogLevel {
    level: String,
    problem: String,
}

/// actix's HTTP/1 dispatcher logs every malformed request from a client at ERROR
/// ("request parse error"): a hostile client could write a line per request, and a
/// client's mistake is not a server error. Silenced unless the filter names actix_http.
const CLIENT_PROTOCOL_ERRORS_OFF: &str = "actix_http::h1::dispatcher=off";

/// Parses a level or filter such as `info` or `warn,audit_server=debug`.
pub fn parse_filter(level: &str) -> Result<EnvFilter, InvalidLogLevel> {
    let filter = if level.contains("actix_http") {
        level.to_owned()
    } else {
        format!("{level},{CLIENT_PROTOCOL_ERRORS_OFF}")
    };
    EnvFilter::builder()
        .parse(&filter)
        .map_err(|error| InvalidLogLevel {
            level: level.to_owned(),
            problem: error.to_string(),
        })
}

/// Installs the global subscriber: text or JSON lines on standard output.
pub fn init(settings: &LogSettings) -> anyhow::Result<LogControl> {
    let (filter, handle) = reload::Layer::new(parse_filter(&settings.level)?);
    let (text, json) = match settings.format {
        // Colour codes only on a terminal: in a file or a journal they are noise.
        LogFormat::Text => (
            Some(fmt::layer().with_ansi(std::io::stdout().is_terminal())),
            None,
        ),
        LogFormat::Json => (None, Some(fmt::layer().json().flatten_event(true))),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .try_init()?;
    Ok(LogControl {
        handle: Some(handle),
    })
}

impl LogControl {
    pub fn apply(&self, filter: EnvFilter) -> anyhow::Result<()> {
        if let Some(handle) = &self.handle {
            handle.reload(filter)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_directives_parse_and_garbage_does_not() {
        assert!(parse_filter("info").is_ok());
        assert!(parse_filter("warn,audit_server=debug").is_ok());
        assert!(parse_filter("audit_server=shouting").is_err());
    }
}
