//! Running child commands, echoing them first so the log shows what ran.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

/// The workspace root: the parent of this crate's directory.
pub fn workspace_root() -> PathBuf {
    let manifest_directory = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_directory
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_directory)
}

/// `cargo`, the same one that runs this task.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

pub fn run_checked(command: &mut Command) -> anyhow::Result<()> {
    let rendered = render(command);
    eprintln!("$ {rendered}");
    let status = command
        .status()
        .with_context(|| format!("failed to start {rendered}"))?;
    if !status.success() {
        bail!("{rendered} failed with {status}");
    }
    Ok(())
}

fn render(command: &Command) -> String {
    let mut parts = vec![command.get_program().to_string_lossy().into_owned()];
    parts.extend(
        command
            .get_args()
            .map(|argument| argument.to_string_lossy().into_owned()),
    );
    parts.join(" ")
}
