//! `audit-server keygen --name NAME --out FILE`: a new Ed25519 key for signing
//! checkpoints. The private key goes to FILE (mode 0600, never over an existing file);
//! the verifier key, which auditors are given, is printed alone on the last line.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::Context;
use argh::FromArgs;
use audit_core::checkpoint::SigningKey;

/// Make a new checkpoint signing key; print its verifier key.
#[derive(FromArgs)]
#[argh(subcommand, name = "keygen")]
pub struct KeygenArguments {
    /// the key's name, by convention the log's origin (e.g. audit.example.com/log)
    #[argh(option)]
    name: String,
    /// where to write the private key (created with mode 0600; must not exist)
    #[argh(option)]
    out: PathBuf,
}

pub fn run(arguments: KeygenArguments) -> anyhow::Result<()> {
    if arguments.name.is_empty() || arguments.name.contains(['+', ' ', '\n']) {
        anyhow::bail!("the key name must be non-empty, without '+' or spaces");
    }
    let (key, verifier) = SigningKey::generate(&arguments.name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&arguments.out)
        .with_context(|| format!("cannot create {}", arguments.out.display()))?;
    writeln!(file, "{}", key.expose())?;
    file.sync_all()?;
    println!(
        "wrote the private key to {}; give auditors this verifier key:",
        arguments.out.display()
    );
    println!("{verifier}");
    Ok(())
}
