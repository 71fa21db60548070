//! Tests of loading: the sources, their order, unknown keys and bad values, on the
//! settings this crate owns.

use std::io::Write;
use std::path::PathBuf;

use super::*;

fn source(toml: &str, environment: &[(&str, &str)]) -> (ConfigSource, tempfile::NamedTempFile) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(toml.as_bytes()).unwrap();
    let environment = environment
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    (
        ConfigSource::for_file(file.path().to_owned(), environment),
        file,
    )
}

#[test]
fn an_empty_file_gives_the_defaults() {
    let (source, _file) = source("", &[]);
    assert_eq!(
        source.load::<DatabaseSettings>().unwrap().0,
        DatabaseSettings::default()
    );
}

#[test]
fn the_file_overrides_defaults_and_the_environment_overrides_the_file() {
    let (source, _file) = source(
        "[postgres]\ndsn = \"postgres://a@h/db\"\npool_size = 3\n",
        &[
            ("APP_POSTGRES__DSN", "postgres://b@h/other"),
            ("APP_CONFIG", "ignored.toml"),
            ("PATH", "/bin"),
        ],
    );

    let (settings, unknown) = source.load::<DatabaseSettings>().unwrap();

    assert_eq!(settings.postgres.dsn, "postgres://b@h/other");
    assert_eq!(settings.postgres.pool_size, 3);
    assert!(unknown.is_empty(), "{unknown:?}");
}

#[test]
fn sections_a_binary_does_not_read_are_unknown_keys_to_it_not_errors() {
    let (source, _file) = source(
        "port = 9000\n[failure]\nchance = 0.5\n[postgres]\npool_size = 2\n",
        &[],
    );

    let (settings, mut unknown) = source.load::<DatabaseSettings>().unwrap();

    assert_eq!(settings.postgres.pool_size, 2);
    // The merged configuration is a map: the order of its keys is not the file's.
    unknown.sort();
    assert_eq!(unknown, vec!["failure".to_owned(), "port".to_owned()]);
}

#[test]
fn unknown_keys_are_reported() {
    let (source, _file) = source("[postgres]\npool_sise = 5\n", &[]);
    let (_, unknown) = source.load::<DatabaseSettings>().unwrap();
    assert_eq!(unknown, vec!["postgres.pool_sise".to_owned()]);
}

#[test]
fn bad_values_are_refused() {
    for toml in [
        "[postgres]\npool_size = \"many\"\n",
        "[postgres]\npool_size = 0\n",
        "[postgres]\nstatement_timeout_ms = 0\n",
        "[postgres]\ndsn = \"postgres://a@h:notaport/db\"\n",
        "this is not toml",
    ] {
        let (source, _file) = source(toml, &[]);
        assert!(
            source.load::<DatabaseSettings>().is_err(),
            "{toml:?} was accepted"
        );
    }
}

#[test]
fn a_bad_value_is_named_once_in_the_cause_chain() {
    let (source, _file) = source("[postgres]\npool_size = \"x\"\n", &[]);

    let error = source.load::<DatabaseSettings>().unwrap_err();

    let chain = crate::storage_error::cause_chain(&error);
    assert_eq!(chain.matches("postgres.pool_size").count(), 1, "{chain}");
}

#[test]
fn a_named_file_that_does_not_exist_is_an_error() {
    let source = ConfigSource::explicit_file(PathBuf::from("/nonexistent/audit.toml"));
    assert!(matches!(
        source.load::<DatabaseSettings>(),
        Err(ConfigError::MissingFile(_))
    ));
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
