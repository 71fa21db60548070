//! A log with tamper evidence for tests: a checkpoint signing key of its own, fast
//! sealing, and the verifier run as an auditor runs it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use audit_core::checkpoint::{Checkpoint, SigningKey};
use audit_server::settings::Settings;

use crate::server_process::workspace_binary;
use crate::test_app::TestApp;

/// A signing key in a directory of its own, beside the checkpoint log.
pub struct SealingKey {
    pub directory: tempfile::TempDir,
    pub key_file: PathBuf,
    pub checkpoint_log: PathBuf,
    /// The note verifier key auditors are given.
    pub verifier: String,
}

impl SealingKey {
    pub fn new(name: &str) -> Self {
        let directory = tempfile::tempdir().unwrap();
        let key_file = directory.path().join("checkpoint.key");
        let (key, verifier) = SigningKey::generate(name);
        std::fs::write(&key_file, key.expose()).unwrap();
        let checkpoint_log = directory.path().join("checkpoints.log");
        Self {
            directory,
            key_file,
            checkpoint_log,
            verifier,
        }
    }

    /// Sealing on, with this key and log, sealing every 20 ms and signing every 100 ms.
    pub fn apply(&self, settings: &mut Settings) {
        settings.integrity.signing_key_file = Some(self.key_file.clone());
        settings.integrity.checkpoint_log = Some(self.checkpoint_log.clone());
        settings.integrity.seal_interval_ms = 20;
        settings.integrity.checkpoint_interval_ms = 100;
    }

    /// The same settings as config file text, for server processes.
    pub fn config_text(&self, dsn: &str) -> String {
        format!(
            "[postgres]\ndsn = \"{dsn}\"\n[failure]\nchance = 0.0\n[integrity]\n\
             signing_key_file = \"{}\"\ncheckpoint_log = \"{}\"\nseal_interval_ms = 20\n\
             checkpoint_interval_ms = 100\n",
            self.key_file.display(),
            self.checkpoint_log.display()
        )
    }

    pub fn open(&self, note: &str) -> Checkpoint {
        Checkpoint::open(note, &self.verifier).unwrap()
    }
}

impl TestApp {
    /// The latest checkpoint once it covers at least `size` leaves, with its note.
    pub async fn wait_for_checkpoint(&self, key: &SealingKey, size: u64) -> (Checkpoint, String) {
        wait_for_checkpoint_at(&self.http, &self.address, key, size, None).await
    }

    /// The same, asking with a bearer token.
    pub async fn wait_for_checkpoint_as(
        &self,
        key: &SealingKey,
        size: u64,
        token: &str,
    ) -> (Checkpoint, String) {
        wait_for_checkpoint_at(&self.http, &self.address, key, size, Some(token)).await
    }
}

/// Polls `address`'s `/api/checkpoint` until it covers `size` leaves (30 s at most).
pub async fn wait_for_checkpoint_at(
    http: &reqwest::Client,
    address: &str,
    key: &SealingKey,
    size: u64,
    token: Option<&str>,
) -> (Checkpoint, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut request = http.get(format!("{address}/api/checkpoint"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        if response.status() == 200 {
            let note = response.text().await.unwrap();
            let checkpoint = key.open(&note);
            if checkpoint.size >= size {
                return (checkpoint, note);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no checkpoint of {size} leaves within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What `audit-server verify` said, and whether it exited 0.
pub struct Verdict {
    pub holds: bool,
    pub output: String,
}

/// Runs `audit-server --config CONFIG verify --key VERIFIER [--since FILE]`.
pub fn run_verify(config: &Path, verifier: &str, since: Option<&Path>) -> Verdict {
    let mut command = Command::new(workspace_binary("audit-server"));
    command
        .arg("--config")
        .arg(config)
        .args(["verify", "--key", verifier])
        .env_clear();
    if let Some(since) = since {
        command.arg("--since").arg(since);
    }
    let output = command.output().unwrap();
    Verdict {
        holds: output.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}
