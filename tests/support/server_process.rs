//! The installed-style `audit-server` binary as a child process, for what only a real
//! process shows: signals and exit codes.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct ServerProcess {
    pub child: Child,
    pub address: String,
    /// Where the server's standard output (its log) goes.
    log: tempfile::NamedTempFile,
}

/// `target/<profile>/<name>`, next to the directory of this test executable.
pub fn workspace_binary(name: &str) -> PathBuf {
    let executable = std::env::current_exe().unwrap();
    let profile_directory = executable.parent().unwrap().parent().unwrap();
    let binary = profile_directory.join(name);
    assert!(
        binary.exists(),
        "{} is missing: build it first (`cargo build --bins`; `cargo xtask ci` does)",
        binary.display()
    );
    binary
}

/// A port nothing listens on right now, for a child process to bind.
pub fn free_port() -> u16 {
    private_cluster::free_port().unwrap()
}

impl ServerProcess {
    /// Starts the binary with the given config file and waits until it answers.
    pub async fn start(config: &std::path::Path) -> Self {
        Self::start_with_environment(config, &[("APP_LOG__LEVEL", "warn")]).await
    }

    /// Starts the binary with extra `APP_*` variables.
    pub async fn start_with_environment(
        config: &std::path::Path,
        environment: &[(&str, &str)],
    ) -> Self {
        // An `APP_PORT` given (to come back on an address clients know) wins.
        let port = (environment.iter())
            .find(|(name, _)| *name == "APP_PORT")
            .map_or_else(free_port, |(_, port)| port.parse().unwrap());
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(workspace_binary("audit-server"))
            .arg("--config")
            .arg(config)
            .env_clear()
            .env("APP_HOST", "127.0.0.1")
            .env("APP_PORT", port.to_string())
            .envs(environment.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let server = Self {
            child,
            address: format!("http://127.0.0.1:{port}"),
            log,
        };
        server.wait_until_healthy().await;
        server
    }

    async fn wait_until_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = reqwest::Client::new();
        while Instant::now() < deadline {
            if let Ok(response) = client.get(format!("{}/health", self.address)).send().await
                && response.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the server did not become healthy within 20 s; it logged:\n{}",
            self.log_text()
        );
    }

    /// What the server has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, killing it after the timeout.
    pub async fn wait_for_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the server did not exit within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
