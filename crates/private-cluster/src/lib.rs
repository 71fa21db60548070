//! A throwaway PostgreSQL cluster of its own, made from the machine's server binaries,
//! for tests that stop and start the database (the shared one must stay up for every
//! other test) and for benchmarks that need a streaming replica.
//!
//! Everything lives in a temporary directory that is removed, with the server stopped,
//! when the cluster is dropped.

use std::io;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

pub struct PrivateCluster {
    directory: tempfile::TempDir,
    binaries: PathBuf,
    pub port: u16,
}

impl PrivateCluster {
    /// Creates and starts a cluster on a free port, trusting local connections.
    pub fn start() -> io::Result<Self> {
        let cluster = Self::unstarted()?;
        let data = cluster.data();
        run(&mut cluster.as_owner(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        ))?;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// A streaming replica of `primary`: a base backup taken over the replication
    /// protocol (`-R` writes the standby's connection settings into it), started on a
    /// port of its own.
    pub fn replica_of(primary: &PrivateCluster) -> io::Result<Self> {
        let cluster = Self::unstarted()?;
        let primary_port = primary.port.to_string();
        let data = cluster.data();
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
                &data,
                "-R",
                "-X",
                "stream",
                // An immediate checkpoint on the primary, not a spread one (minutes).
                "--checkpoint=fast",
                "--no-sync",
            ],
        ))?;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// A directory for a cluster's files and a free port, nothing in them yet.
    fn unstarted() -> io::Result<Self> {
        let directory = tempfile::tempdir()?;
        if is_root() {
            // PostgreSQL refuses to run as root; its files belong to `postgres`.
            run(Command::new("chown")
                .arg("postgres:postgres")
                .arg(directory.path()))?;
        }
        Ok(Self {
            port: free_port()?,
            binaries: server_binaries()?,
            directory,
        })
    }

    fn data(&self) -> String {
        self.directory.path().join("data").display().to_string()
    }

    fn as_owner(&self, binary: &str, arguments: &[&str]) -> Command {
        let program = self.binaries.join(binary);
        let mut command = if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        command.args(arguments);
        command
    }

    pub fn start_server(&self) -> io::Result<()> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.directory.path().display()
        );
        let log = self.directory.path().join("server.log");
        let log = log.display().to_string();
        let data = self.data();
        run(&mut self.as_owner(
            "pg_ctl",
            &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
        ))
    }

    /// Stops the server with `fast` or `immediate` shutdown.
    pub fn stop_server(&self, mode: &str) -> io::Result<()> {
        let data = self.data();
        run(&mut self.as_owner("pg_ctl", &["-D", &data, "-m", mode, "-w", "stop"]))
    }

    /// A connection string for `database` on this cluster, as user `postgres`.
    pub fn dsn(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self.stop_server("immediate");
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The newest `/usr/lib/postgresql/<version>/bin`.
fn server_binaries() -> io::Result<PathBuf> {
    let version = |path: &PathBuf| {
        path.parent()
            .and_then(|version| version.file_name())
            .and_then(|name| name.to_str())
            .and_then(|name| name.parse::<u32>().ok())
            .unwrap_or(0)
    };
    std::fs::read_dir("/usr/lib/postgresql")?
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| bin.join("pg_ctl").exists())
        .max_by_key(version)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no PostgreSQL server binaries (Debian package postgresql)",
            )
        })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a set-up command; a failure carries what it printed.
fn run(command: &mut Command) -> io::Result<()> {
    let output = command.output()?;
    if output.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )))
}
