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

fn file_named(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join(name);
    std::fs::write(&path, text).unwrap();
    (directory, path)
}

#[test]
fn a_yaml_or_json_file_is_read_by_its_extension() {
    for (name, text) in [
        (
            "config.yml",
            "postgres:\n  dsn: postgres://y@h/db\n  pool_size: 4\n",
        ),
        (
            "config.yaml",
            "postgres:\n  dsn: postgres://y@h/db\n  pool_size: 4\n",
        ),
        (
            "config.json",
            r#"{"postgres": {"dsn": "postgres://y@h/db", "pool_size": 4}}"#,
        ),
    ] {
        let (_directory, path) = file_named(name, text);

        let (settings, unknown) = ConfigSource::for_file(path, HashMap::new())
            .load::<DatabaseSettings>()
            .unwrap();

        assert_eq!(settings.postgres.dsn, "postgres://y@h/db", "{name}");
        assert_eq!(settings.postgres.pool_size, 4, "{name}");
        assert!(unknown.is_empty(), "{name}: {unknown:?}");
    }
}

#[test]
fn a_dotenv_file_sets_what_the_environment_does_not() {
    let (_directory, dotenv) = file_named(
        ".env",
        "APP_POSTGRES__POOL_SIZE=6\nAPP_POSTGRES__DSN=postgres://dotenv@h/db\n",
    );
    let (source, _file) = source("", &[("APP_POSTGRES__DSN", "postgres://environment@h/db")]);
    let source = ConfigSource {
        dotenv: Some(dotenv),
        ..source
    };

    let (settings, _) = source.load::<DatabaseSettings>().unwrap();

    assert_eq!(settings.postgres.pool_size, 6);
    assert_eq!(settings.postgres.dsn, "postgres://environment@h/db");
}

#[test]
fn a_broken_dotenv_file_is_an_error() {
    let (_directory, dotenv) = file_named(".env", "APP_PORT='unterminated\n");
    let (source, _file) = source("", &[]);
    let source = ConfigSource {
        dotenv: Some(dotenv),
        ..source
    };

    assert!(matches!(
        source.load::<DatabaseSettings>(),
        Err(ConfigError::DotEnv { .. })
    ));
}
