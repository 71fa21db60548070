//! Typed configuration: built-in defaults, then a TOML file, then `APP_*` environment
//! variables (`__` separates nesting levels, so `APP_POSTGRES__DSN` sets `postgres.dsn`).
//!
//! Every key has a default, so a file may set any subset. The same loader serves
//! start-up and reload, so a config that starts the server also reloads into it. This
//! crate owns the loading and the sections the storage needs (`postgres`, `ingest`);
//! the settings only the server reads live with the server, and a binary loads only
//! the sections it uses (`DatabaseSettings` for the migration tool and the loader).

mod ingest;
mod partitions;
mod postgres;
mod search;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use crate::config::ingest::IngestSettings;
pub use crate::config::partitions::{PartitionSettings, RetentionSettings};
pub use crate::config::postgres::PostgresSettings;
pub use crate::config::search::SearchSettings;

/// The environment variable that names the config file when `--config` is not given.
pub const CONFIG_PATH_VARIABLE: &str = "APP_CONFIG";
/// The files looked for, in this order, when neither `--config` nor `$APP_CONFIG`
/// names one: ours, then the original service's.
pub const DEFAULT_CONFIG_PATHS: [&str; 3] = ["config.toml", "config.yml", "config.yaml"];
/// Variables the process does not set are read from this file in the working
/// directory, as the original service did; the process's own environment wins.
pub const DOTENV_PATH: &str = ".env";
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
    /// A `.env` file read at each load (a reload sees its changes): its variables
    /// count where the environment does not set them.
    pub dotenv: Option<PathBuf>,
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
    #[error("failed to read {}", path.display())]
    DotEnv {
        path: PathBuf,
        #[source]
        source: dotenvy::Error,
    },
}

/// An `InvalidValue` error, for validation code.
pub fn invalid<T>(key: &'static str, problem: &str) -> Result<T, ConfigError> {
    Err(ConfigError::InvalidValue {
        key,
        problem: problem.to_owned(),
    })
}

impl ConfigSource {
    /// `--config PATH` if given, else `$APP_CONFIG` (from the environment or `./.env`),
    /// else the first of `./config.toml`, `./config.yml`, `./config.yaml` that exists;
    /// the process's environment, then `./.env`, override the file.
    pub fn from_command_line(config_flag: Option<PathBuf>) -> Self {
        let dotenv = Some(PathBuf::from(DOTENV_PATH));
        let named = config_flag.or_else(|| {
            std::env::var_os(CONFIG_PATH_VARIABLE)
                .map(PathBuf::from)
                .or_else(|| {
                    // A broken .env is reported by `load`, which reads it again.
                    read_dotenv(Path::new(DOTENV_PATH))
                        .ok()?
                        .into_iter()
                        .find(|(name, _)| name == CONFIG_PATH_VARIABLE)
                        .map(|(_, value)| PathBuf::from(value))
                })
        });
        if let Some(path) = named {
            return Self {
                dotenv,
                ..Self::explicit_file(path)
            };
        }
        Self {
            file: DEFAULT_CONFIG_PATHS
                .iter()
                .map(PathBuf::from)
                .find(|path| path.exists()),
            file_required: false,
            environment: None,
            dotenv,
        }
    }

    /// A file that must exist, and the given variables instead of the process's: for
    /// tests, which must not see the developer's `APP_*` variables.
    pub fn for_file(path: PathBuf, environment: HashMap<String, String>) -> Self {
        Self {
            file: Some(path),
            file_required: true,
            environment: Some(environment),
            dotenv: None,
        }
    }

    pub fn explicit_file(path: PathBuf) -> Self {
        Self {
            file: Some(path),
            file_required: true,
            environment: None,
            dotenv: None,
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
                    .format(format_of(path))
                    .required(self.file_required),
            );
        }
        let environment = Environment::default()
            .separator("__")
            .try_parsing(true)
            // The lists a variable may set: `APP_SEARCH__INDEXES=application,time`,
            // `APP_POSTGRES__READ_DSNS=postgres://a/audit,postgres://b/audit`.
            .list_separator(",")
            .with_list_parse_key("search.indexes")
            .with_list_parse_key("postgres.read_dsns")
            .source(Some(self.application_variables()?));
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
    fn application_variables(&self) -> Result<HashMap<String, String>, ConfigError> {
        let mut variables: BTreeMap<String, String> = match &self.environment {
            Some(map) => map.clone().into_iter().collect(),
            None => std::env::vars().collect(),
        };
        if let Some(path) = &self.dotenv {
            for (name, value) in read_dotenv(path)? {
                variables.entry(name).or_insert(value);
            }
        }
        Ok(variables
            .into_iter()
            .filter(|(name, _)| name != CONFIG_PATH_VARIABLE)
            .filter_map(|(name, value)| {
                let key = name.strip_prefix(ENVIRONMENT_PREFIX)?;
                Some((key.to_lowercase(), value))
            })
            .collect())
    }
}

/// The format a config file is read in, from its extension: `.yaml`/`.yml` and
/// `.json` as such, anything else (`.toml`, or none) as TOML.
fn format_of(path: &Path) -> FileFormat {
    match path.extension().and_then(|extension| extension.to_str()) {
        Some("yaml" | "yml") => FileFormat::Yaml,
        Some("json") => FileFormat::Json,
        _ => FileFormat::Toml,
    }
}

/// The variables a `.env` file sets; none when it does not exist.
fn read_dotenv(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let failed = |source| ConfigError::DotEnv {
        path: path.to_owned(),
        source,
    };
    dotenvy::from_path_iter(path)
        .map_err(failed)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)
}

#[cfg(test)]
mod tests;
