//! A throwaway PostgreSQL cluster of the test's own, made from the machine's server
//! binaries, for tests that stop and start the database (the shared one must stay up
//! for every other test).

use std::path::PathBuf;
use std::process::Command;

use audit_core::config::PostgresSettings;

use crate::server_process::free_port;

pub struct PrivateCluster {
    directory: tempfile::TempDir,
    binaries: PathBuf,
    pub port: u16,
}

/// The newest `/usr/lib/postgresql/<version>/bin`.
fn server_binaries() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries must be installed (Debian package postgresql)")
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| bin.join("pg_ctl").exists())
        .collect();
    versions.sort_by_key(|path| {
        path.parent()
            .and_then(|version| version.file_name())
            .and_then(|name| name.to_str())
            .and_then(|name| name.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop().expect("no PostgreSQL server binaries found")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PrivateCluster {
    /// Creates and starts a cluster on a free port, trusting local connections.
    pub fn start() -> Self {
        let cluster = Self::unstarted();
        run(&mut cluster.as_owner(
            "initdb",
            &[
                "-D",
                &cluster.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        ));
        cluster.start_server();
        cluster
    }

    /// A streaming replica of `primary`: a base backup taken over the replication
    /// protocol (`-R` writes the standby's connection settings into it), started on a
    /// port of its own.
    pub fn replica_of(primary: &PrivateCluster) -> Self {
        let cluster = Self::unstarted();
        let primary_port = primary.port.to_string();
        run(&mut cluster.as_owner(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary_port,
                "-U",
                "postgres",
                "-D",
                &cluster.data(),
                "-R",
                "-X",
                "stream",
                // An immediate checkpoint on the primary, not a spread one (minutes).
                "--checkpoint=fast",
                "--no-sync",
            ],
        ));
        cluster.start_server();
        cluster
    }

    /// A directory for a cluster's files and a free port, nothing in them yet.
    fn unstarted() -> Self {
        let directory = tempfile::tempdir().unwrap();
        if is_root() {
            // PostgreSQL refuses to run as root; its files belong to `postgres`.
            run(Command::new("chown")
                .arg("postgres:postgres")
                .arg(directory.path()));
        }
        Self {
            port: free_port(),
            binaries: server_binaries(),
            directory,
        }
    }

    fn data(&self) -> String {
        self.directory.path().join("data").display().to_string()
    }

    fn as_owner(&self, binary: &str, arguments: &[&str]) -> Command {
        let program = self.binaries.join(binary);
        if is_root() {
            let mut command = Command::new("runuser");
            command
                .args(["-u", "postgres", "--"])
                .arg(program)
                .args(arguments);
            command
        } else {
            let mut command = Command::new(program);
            command.args(arguments);
            command
        }
    }

    pub fn start_server(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.directory.path().display()
        );
        let log = self
            .directory
            .path()
            .join("server.log")
            .display()
            .to_string();
        run(&mut self.as_owner(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        ));
    }

    /// Stops the server with `fast` or `immediate` shutdown.
    pub fn stop_server(&self, mode: &str) {
        run(&mut self.as_owner("pg_ctl", &["-D", &self.data(), "-m", mode, "-w", "stop"]));
    }

    pub fn settings(&self, database: &str) -> PostgresSettings {
        PostgresSettings {
            dsn: format!("postgres://postgres@127.0.0.1:{}/{database}", self.port),
            pool_size: 8,
            ..PostgresSettings::default()
        }
    }
}

fn run(command: &mut Command) {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self
            .as_owner(
                "pg_ctl",
                &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
            )
            .output();
    }
}
