//! `audit-server verify --key VERIFIER_KEY [--since CHECKPOINT_FILE]`: recomputes the
//! tree from every event and checks the signed checkpoints (the database's, the one
//! given, and `integrity.checkpoint_log`'s) against it. Prints each discrepancy on a
//! line of its own and exits 0 only when everything holds.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use argh::FromArgs;
use audit_core::database;
use audit_core::tree::checkpoint_log;
use audit_core::tree::verify::{self, NoteToCheck};

use crate::settings::Settings;

/// Check that no event was changed, removed or inserted since it was sealed.
#[derive(FromArgs)]
#[argh(subcommand, name = "verify")]
pub struct VerifyArguments {
    /// the note verifier key `audit-server keygen` printed (NAME+HASH+KEY), or a file
    /// holding it
    #[argh(option)]
    key: String,
    /// a checkpoint kept from earlier (a signed note): the log must extend it
    #[argh(option)]
    since: Option<PathBuf>,
}

/// Runs the verifier; `Ok(false)` when it found a discrepancy.
pub async fn run(arguments: VerifyArguments, settings: &Settings) -> anyhow::Result<bool> {
    let key = match std::fs::read_to_string(&arguments.key) {
        Ok(text) => text.trim().to_owned(),
        Err(_) => arguments.key.trim().to_owned(),
    };
    let mut extra = Vec::new();
    if let Some(path) = &arguments.since {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --since {}", path.display()))?;
        for note in checkpoint_log::split_notes(&text) {
            extra.push(NoteToCheck {
                source: format!("--since {}", path.display()),
                note,
            });
        }
    }
    if let Some(path) = &settings.integrity.checkpoint_log {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for (line, note) in checkpoint_log::split_notes(&text).into_iter().enumerate() {
                    extra.push(NoteToCheck {
                        source: format!("{} (note {})", path.display(), line + 1),
                        note,
                    });
                }
            }
            Err(error) => println!(
                "note: integrity.checkpoint_log {} cannot be read ({error}); not checked",
                path.display()
            ),
        }
    }
    let mut client = database::connect(&settings.postgres)
        .await
        .context("cannot connect to the database")?;
    let started = Instant::now();
    let report = verify::verify(&mut client, &key, &extra)
        .await
        .context("the verifier could not read the database")?;
    let elapsed = started.elapsed().as_secs_f64();
    for finding in &report.findings {
        println!("{finding}");
    }
    let mut holds = report.findings.is_empty();
    if report.leaves > 0 && report.latest.is_none() {
        println!("NO CHECKPOINT: the tree has leaves, but no checkpoint in the database verifies");
        holds = false;
    }
    let latest = report
        .latest
        .as_ref()
        .map_or("none".to_owned(), |checkpoint| {
            format!("size {} of {}", checkpoint.size, checkpoint.origin)
        });
    println!(
        "{}: {} events ({} not sealed yet), {} leaves ({} pruned by retention), {} checkpoints \
         verified, latest {latest}; {} discrepancies; {:.2} s ({:.0} events/s)",
        if holds { "OK" } else { "FAILED" },
        report.events,
        report.unsealed,
        report.leaves,
        report.pruned,
        report.checkpoints_verified,
        report.findings.len(),
        elapsed,
        report.events as f64 / elapsed.max(1e-9),
    );
    Ok(holds)
}
