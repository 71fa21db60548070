//! The background work of access control on each server: rereading the tokens (how a
//! revocation anywhere reaches this server), writing when tokens were last used,
//! recording expiries and changes of `auth.mode` in the log.

use std::time::{Duration, Instant};

use actix_web::web;
use audit_core::access::{self, Actor};
use audit_core::storage_error::{StorageError, cause_chain};

use crate::settings::AuthMode;
use crate::state::AppState;

/// How often token use is written to `last_used_at`: it is for people reading
/// `token list`, so minutes would do; seconds keep it honest.
const LAST_USED_INTERVAL: Duration = Duration::from_secs(5);
/// How often expired tokens are looked for, to record their expiry in the log (the
/// expiry itself is checked on each request).
const EXPIRY_INTERVAL: Duration = Duration::from_secs(1);
/// Bound of one reread, so that a frozen database cannot stop the loop.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs for the life of the server.
pub async fn keep_tokens_current(state: web::Data<AppState>) {
    let mut recorded_mode: Option<AuthMode> = None;
    let mut last_used_written = Instant::now();
    let mut expiry_checked = Instant::now() - EXPIRY_INTERVAL;
    let mut failing = false;
    loop {
        let runtime = state.runtime();
        let pool = &runtime.repository.pool();
        let mode = runtime.settings.auth.mode;
        let outcome = async {
            reread_tokens(&state).await?;
            if recorded_mode != Some(mode) {
                access::record_auth_mode(pool, mode.as_str(), &Actor::Server).await?;
                recorded_mode = Some(mode);
            }
            if expiry_checked.elapsed() >= EXPIRY_INTERVAL {
                expiry_checked = Instant::now();
                for name in access::record_expired_tokens(pool).await? {
                    tracing::info!(token = %name, "token expired");
                }
            }
            if last_used_written.elapsed() >= LAST_USED_INTERVAL {
                last_used_written = Instant::now();
                access::record_last_used(pool, &state.tokens.take_unrecorded_uses()).await?;
            }
            Ok::<(), StorageError>(())
        };
        match tokio::time::timeout(READ_TIMEOUT, outcome).await {
            Ok(Ok(())) => {
                if failing {
                    tracing::info!("tokens read again");
                }
                failing = false;
            }
            // Logged once per outage: the loop runs several times a second.
            Ok(Err(error)) if !failing => {
                failing = true;
                tracing::warn!(error = %cause_chain(&error), "cannot read the tokens; the last ones read stay in force");
            }
            Err(_) if !failing => {
                failing = true;
                tracing::warn!("reading the tokens timed out; the last ones read stay in force");
            }
            _ => {}
        }
        // Not held across the wait: a reload's old pools close once nothing holds them.
        let pause = runtime.settings.auth.refresh_interval();
        drop(runtime);
        tokio::time::sleep(pause).await;
    }
}

/// Rereads every token into the cache.
pub async fn reread_tokens(state: &AppState) -> Result<(), StorageError> {
    let runtime = state.runtime();
    let tokens = access::load_tokens(&runtime.repository.pool()).await?;
    state.tokens.replace(tokens);
    Ok(())
}
