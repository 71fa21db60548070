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

/// Runs the command, which must succeed, and returns the last line of its standard
/// output: where `audit-server token create` prints the secret (not echoed, for that
/// reason).
pub fn last_output_line(command: &mut Command) -> anyhow::Result<String> {
    let rendered = render(command);
    let output = command
        .output()
        .with_context(|| format!("failed to start {rendered}"))?;
    if !output.status.success() {
        bail!(
            "{rendered} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8(output.stdout)?;
    Ok(stdout.lines().last().unwrap_or_default().to_owned())
}

/// The command line as it would be typed into a POSIX shell.
pub fn render(command: &Command) -> String {
    let mut parts = vec![quoted(&command.get_program().to_string_lossy())];
    parts.extend(
        command
            .get_args()
            .map(|argument| quoted(&argument.to_string_lossy())),
    );
    parts.join(" ")
}

/// One shell word: as it is when nothing in it is special to the shell, else quoted.
fn quoted(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&byte));
    if plain {
        word.to_owned()
    } else if !word.contains('\'') {
        format!("'{word}'")
    } else if !word.contains(['"', '$', '`', '!']) && !word.contains("\\\\") {
        // Inside double quotes a backslash before anything but $ ` " \ stays as it is.
        format!("\"{word}\"")
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_commands_quote_what_the_shell_would_change() {
        let mut command = Command::new("psql");
        command.args([
            "-q",
            "postgres://u@127.0.0.1:5432/db",
            "-c",
            r"\copy t FROM 'f' WITH (FORMAT binary)",
            "http://h/api?a=1&b=2",
            "it's $HOME",
        ]);

        assert_eq!(
            render(&command),
            r#"psql -q postgres://u@127.0.0.1:5432/db -c "\copy t FROM 'f' WITH (FORMAT binary)" 'http://h/api?a=1&b=2' 'it'\''s $HOME'"#
        );
    }
}
