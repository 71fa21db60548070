//! Tamper evidence in the server: the signing key, and the sealer's loop. Every
//! server with `integrity` enabled runs the loop; the one holding the database's
//! sealer lock seals, the others try to take over every second, so a new sealer is
//! active within about a second of the old one's connection closing.

use std::time::{Duration, Instant};

use actix_web::web;
use anyhow::Context;
use audit_core::checkpoint::SigningKey;
use audit_core::config::PostgresSettings;
use audit_core::database;
use audit_core::storage_error::cause_chain;
use audit_core::tree::checkpoint_log;
use audit_core::tree::{SealError, Sealer, Signing};
use metrics::{counter, gauge};
use tokio::sync::watch;

use crate::metrics::{
    INTEGRITY_BATCHED_LEAVES_TOTAL, INTEGRITY_CHECKPOINTS_TOTAL, INTEGRITY_READ_ROWS_TOTAL,
    INTEGRITY_REFUSED_EVENTS_TOTAL, INTEGRITY_SEAL_ERRORS_TOTAL, INTEGRITY_SEALED_EVENTS_TOTAL,
    INTEGRITY_SEALER_ACTIVE, INTEGRITY_TREE_SIZE,
};
use crate::settings::IntegritySettings;
use crate::state::AppState;

/// How often a waiting server tries to become the sealer, and waits after a failure.
const TAKEOVER_INTERVAL: Duration = Duration::from_secs(1);

/// Whether this server seals, and with which key: none when integrity is off; with
/// `integrity.enabled = true` and no key, the tree grows (the live tail follows it)
/// but no checkpoint is signed. Says so in the log unless checkpoints are signed.
pub fn load_signing(settings: &IntegritySettings) -> anyhow::Result<Option<Option<Signing>>> {
    if !settings.is_enabled() {
        tracing::warn!(
            "the log is not sealed: no tamper evidence is recorded. Set \
             integrity.signing_key_file (README: \"Proving the log was not changed\")"
        );
        return Ok(None);
    }
    let Some(path) = &settings.signing_key_file else {
        tracing::warn!(
            "no checkpoint is signed: integrity.enabled is set without a signing key, so \
             events are sealed in their commit-safe order (the live tail follows it) but \
             nothing proves the tree unchanged. Set integrity.signing_key_file"
        );
        return Ok(Some(None));
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read integrity.signing_key_file {}", path.display()))?;
    let key = SigningKey::parse(&text)
        .with_context(|| format!("integrity.signing_key_file {}", path.display()))?;
    let origin = settings
        .origin
        .clone()
        .unwrap_or_else(|| key.name().to_owned());
    Ok(Some(Some(Signing { key, origin })))
}

/// Runs the sealer's loop on a thread of its own (hashing is CPU work that must not
/// hold up HTTP workers) until `stop`'s sender is dropped.
pub fn spawn_sealer(
    state: web::Data<AppState>,
    settings: IntegritySettings,
    signing: Option<Signing>,
    stop: watch::Receiver<()>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("sealer".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(runtime) => runtime.block_on(keep_sealing(&state, settings, signing, stop)),
                Err(error) => tracing::error!(%error, "the sealer could not start"),
            }
        })
        .map(drop)
}

/// Seals the database in force: each try reads the settings, so that after a reload
/// to another database the sealer seals that one.
async fn keep_sealing(
    state: &AppState,
    settings: IntegritySettings,
    signing: Option<Signing>,
    mut stop: watch::Receiver<()>,
) {
    let mut signing = signing;
    loop {
        let postgres = state.runtime().settings.postgres.clone();
        let moved = moved_away(state, &postgres);
        signing = match try_to_seal(&postgres, &settings, signing, &mut stop, moved).await {
            Outcome::Stopped => return,
            Outcome::NotActive(signing) => signing,
        };
        tokio::select! {
            _ = tokio::time::sleep(TAKEOVER_INTERVAL) => {}
            _ = stop.changed() => return,
        }
    }
}

enum Outcome {
    Stopped,
    NotActive(Option<Signing>),
}

/// Returns once a reload has put in force settings that open another connection (a
/// new `postgres.dsn`).
async fn moved_away(state: &AppState, postgres: &PostgresSettings) {
    loop {
        tokio::time::sleep(TAKEOVER_INTERVAL).await;
        if !state
            .runtime()
            .settings
            .postgres
            .opens_same_connection(postgres)
        {
            return;
        }
    }
}

/// Connects and, if no other server holds the lock, seals until the connection is
/// lost, a round fails, `moved` returns or the server stops.
async fn try_to_seal(
    postgres: &PostgresSettings,
    settings: &IntegritySettings,
    signing: Option<Signing>,
    stop: &mut watch::Receiver<()>,
    moved: impl Future<Output = ()>,
) -> Outcome {
    let client = match database::connect(postgres).await {
        Ok(client) => client,
        Err(error) => {
            tracing::debug!(error = %cause_chain(&error), "the sealer cannot connect");
            return Outcome::NotActive(signing);
        }
    };
    let mut sealer = match Sealer::take_over(client, signing).await {
        Ok(Ok(sealer)) => sealer,
        Ok(Err((_client, signing))) => return Outcome::NotActive(signing),
        Err((error, signing)) => {
            counter!(INTEGRITY_SEAL_ERRORS_TOTAL).increment(1);
            tracing::error!(error = %cause_chain(&error), "the sealer cannot load the tree");
            return Outcome::NotActive(signing);
        }
    };
    tracing::info!(
        size = sealer.size(),
        "this server is now the database's sealer"
    );
    gauge!(INTEGRITY_SEALER_ACTIVE).set(1.0);
    let stopped = tokio::select! {
        error = seal_rounds(&mut sealer, settings) => {
            counter!(INTEGRITY_SEAL_ERRORS_TOTAL).increment(1);
            tracing::error!(error = %cause_chain(&error), "sealing stopped; trying again");
            false
        }
        _ = stop.changed() => true,
        _ = moved => {
            tracing::info!("the database settings changed: the sealer leaves this database");
            false
        }
    };
    gauge!(INTEGRITY_SEALER_ACTIVE).set(0.0);
    // Closing the connection releases the lock for another server.
    let signing = sealer.into_signing();
    if stopped {
        Outcome::Stopped
    } else {
        Outcome::NotActive(signing)
    }
}

/// Seals a round every `seal_interval`, signing a checkpoint every
/// `checkpoint_interval` while the tree grows; returns only on a failure.
async fn seal_rounds(sealer: &mut Sealer, settings: &IntegritySettings) -> SealError {
    let mut last_checkpoint: Option<Instant> = None;
    loop {
        // Checkpoints are spaced by the interval from round start to round start: timed
        // from a round's end, they would drift apart by each round's length, which
        // under load is a good part of the interval, and events would wait that too.
        let started = Instant::now();
        let due = last_checkpoint.is_none_or(|at| at.elapsed() >= settings.checkpoint_interval());
        let report = match sealer.round(due).await {
            Ok(report) => report,
            Err(error) => return error,
        };
        counter!(INTEGRITY_SEALED_EVENTS_TOTAL).increment(report.sealed);
        counter!(INTEGRITY_READ_ROWS_TOTAL).increment(report.read);
        counter!(INTEGRITY_BATCHED_LEAVES_TOTAL).increment(report.batched);
        gauge!(INTEGRITY_TREE_SIZE).set(report.size as f64);
        for id in &report.refused {
            counter!(INTEGRITY_REFUSED_EVENTS_TOTAL).increment(1);
            tracing::error!(
                id,
                "event {id} was not sealed: its id was not drawn by the database after its \
                 transaction began (it was written by hand, outside the collector)"
            );
        }
        if let Some(note) = &report.checkpoint {
            last_checkpoint = Some(started);
            counter!(INTEGRITY_CHECKPOINTS_TOTAL).increment(1);
            if let Some(path) = &settings.checkpoint_log
                && let Err(error) = checkpoint_log::append(path, note)
            {
                tracing::error!(%error, path = %path.display(), "cannot append to integrity.checkpoint_log");
            }
        }
        if let Err(error) = sealer.pause(settings.seal_interval()).await {
            return error.into();
        }
    }
}
