//! Typed configuration: built-in defaults, then a TOML file, then `APP_*` environment
//! variables (`__` separates nesting levels, so `APP_POSTGRES__DSN` sets `postgres.dsn`).
//!
//! Every key has a default, so a file may set any subset. The same loader serves
//! start-up and reload, so a config that starts the server also reloads into it. This
//! crate owns the loading and the sections the storage needs (`postgres`, `ingest`);
//! the settings only the server reads live with the server, and a binary loads only
//! the sections it uses (`DatabaseSettings` for the migration tool and the loader).

mod ingest;
mod postgres;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use config::{Config, Environment, File, FileFormat};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use crate::config::ingest::IngestSettings;
pub use crate::config::postgres::PostgresSettings;

/// The environment variable that names the config file when `--config` is not given.
pub const CONFIG_PATH_VARIABLE: &str = "APP_CONFIG";
/// The file read when neither `--config` nor `$APP_CONFIG` names one.
pub const DEFAULT_CONFIG_PATH: &str = "config.toml";
const ENVIRONMENT_PREFIX: &str = "APP_";

/// Settings that check their own values once loaded.
pub trait Validate {
    fn validate(&self) -> Result<(), ConfigError>;
}

/// What a binary that only talks to the database reads: `[postgres]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseSettings {
    pub postgres: PostgresSettings,
}

impl Validate for DatabaseSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        self.postgres.validate()
    }
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

/// An `InvalidValue` error, for validation code.
pub fn invalid<T>(key: &'static str, problem: &str) -> Result<T, ConfigError> {
    Err(ConfigError::InvalidValue {
        key,
        problem: problem.to_owned(),
    })
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

    /// A file that must exist, and the given variables instead of the process's: for
    /// tests, which must not see the developer's `APP_*` variables.
    pub fn for_file(path: PathBuf, environment: HashMap<String, String>) -> Self {
        Self {
            file: Some(path),
            file_required: true,
            environment: Some(environment),
        }
    }

    pub fn explicit_file(path: PathBuf) -> Self {
        Self {
            file: Some(path),
            file_required: true,
            environment: None,
        }
    }

    /// Loads, merges and validates the settings of type `T` (each binary reads its own:
    /// the server all of them, the migration tool only the database's). Keys `T` does
    /// not know are returned beside them, so the caller can warn about typos without
    /// refusing a config that still works.
    pub fn load<T: DeserializeOwned + Validate>(&self) -> Result<(T, Vec<String>), ConfigError> {
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
        let settings: T = serde_ignored::deserialize(merged, |path| {
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

#[cfg(test)]
mod tests;
