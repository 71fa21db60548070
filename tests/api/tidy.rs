//! Facts about the code base that keep its layering true, checked like tests.

use std::path::PathBuf;

fn manifest(crate_directory: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(crate_directory)
        .join("Cargo.toml");
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The dependency lines of a manifest (every section but `[package]` and `[lints]`).
fn dependencies(manifest: &str) -> Vec<&str> {
    let mut section = "";
    manifest
        .lines()
        .filter(|line| {
            if line.starts_with('[') {
                section = line;
            }
            section.contains("dependencies") && !line.starts_with('[')
        })
        .collect()
}

#[test]
fn the_core_knows_nothing_of_http() {
    let core = manifest("crates/audit-core");

    let http: Vec<&str> = dependencies(&core)
        .into_iter()
        .filter(|line| line.contains("actix") || line.contains("audit-server"))
        .collect();

    assert!(http.is_empty(), "audit-core depends on {http:?}");
}

#[test]
fn the_generator_and_the_migration_tool_do_not_depend_on_the_http_crate() {
    for crate_directory in ["crates/audit-generate", "crates/audit-migrate"] {
        let manifest = manifest(crate_directory);

        let http: Vec<&str> = dependencies(&manifest)
            .into_iter()
            .filter(|line| line.contains("actix") || line.contains("audit-server"))
            .collect();

        assert!(http.is_empty(), "{crate_directory} depends on {http:?}");
    }
}
