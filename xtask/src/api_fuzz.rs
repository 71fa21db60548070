//! Schemathesis against a live server: generated requests from the OpenAPI document,
//! checked for server errors and for responses that break the document.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::command::{last_output_line, run_checked, workspace_root};

/// The version `.ci/run` installs; the CLI changed between major versions.
pub const SCHEMATHESIS_VERSION: &str = "4.32.5";
const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432";
/// The checks the API promises to pass: no 5xx, and every response as documented.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,response_headers_conformance";

fn schemathesis_binary() -> anyhow::Result<PathBuf> {
    let local = workspace_root().join("target/tools/schemathesis/bin/schemathesis");
    if local.exists() {
        return Ok(local);
    }
    bail!(
        "schemathesis is not installed; .ci/run installs it, or:\n  \
         python3 -m venv target/tools/schemathesis && \
         target/tools/schemathesis/bin/pip install schemathesis=={SCHEMATHESIS_VERSION}"
    )
}

/// The token schemathesis sends: every scope, so that every operation is reachable.
/// A long random-looking name, so that a generated `DELETE /admin/tokens/{name}`
/// does not revoke it halfway through.
const TOKEN_NAME: &str = "schemathesis-0f6b9c1e4a7d2385b6e0c9f14d7a2e58";

/// Runs schemathesis against the debug build of the server on a fresh database, with
/// `auth.mode = "tokens"` and a token holding every scope.
pub fn run() -> anyhow::Result<()> {
    let schemathesis = schemathesis_binary()?;
    let binaries = workspace_root().join("target/debug");
    let server_url = std::env::var("AUDIT_TEST_DATABASE_URL")
        .ok()
        .and_then(|url| url.rsplit_once('/').map(|(server, _)| server.to_owned()))
        .unwrap_or_else(|| DEFAULT_SERVER_URL.to_owned());
    let database = format!("audit_schemathesis_{}", std::process::id());
    let dsn = format!("{server_url}/{database}");
    run_checked(Command::new(binaries.join("audit-migrate")).env("APP_POSTGRES__DSN", &dsn))?;
    let secret = last_output_line(
        Command::new(binaries.join("audit-server"))
            .env("APP_POSTGRES__DSN", &dsn)
            .args(["token", "create", "--name", TOKEN_NAME])
            .args(["--write", "*", "--read", "*", "--admin"]),
    )?;

    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut server = Command::new(binaries.join("audit-server"))
        .env("APP_POSTGRES__DSN", &dsn)
        .env("APP_HOST", "127.0.0.1")
        .env("APP_PORT", port.to_string())
        .env("APP_FAILURE__CHANCE", "0")
        .env("APP_AUTH__MODE", "tokens")
        .env("APP_LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("failed to start audit-server")?;
    let base_url = format!("http://127.0.0.1:{port}");
    let outcome = wait_until_ready(&base_url).and_then(|()| {
        run_checked(
            Command::new(&schemathesis)
                .arg("run")
                .arg(workspace_root().join("crates/audit-server/openapi.json"))
                .args(["--url", &base_url, "--checks", CHECKS])
                .args(["--header", &format!("Authorization: Bearer {secret}")])
                .args(["--max-examples", "100", "--seed", "1"]),
        )
    });
    let _ = server.kill();
    let _ = server.wait();
    let drop = format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)");
    let _ = Command::new("psql")
        .args(["-q", &format!("{server_url}/postgres"), "-c", &drop])
        .status();
    outcome
}

fn wait_until_ready(base_url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let ready = Command::new("curl")
            .args(["-sf", "-o", "/dev/null", &format!("{base_url}/ready")])
            .status()
            .is_ok_and(|status| status.success());
        if ready {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("audit-server did not become ready")
}
