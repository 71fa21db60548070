//! Builds the application: used by `main` and by the tests alike, so that tests run
//! exactly what ships.

use std::net::{TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::web;
use anyhow::Context;
use audit_core::access::Actor;
use audit_core::config::ConfigSource;
use audit_core::idempotency;
use audit_core::storage_error::cause_chain;
use audit_core::tree::Signing;
use socket2::{Domain, Socket, Type};
use tokio::sync::watch;

use crate::http_server::Listeners;
use crate::settings::{AuthMode, Settings};
use crate::state::{AppState, Runtime};
use crate::telemetry::LogControl;
use crate::tls::{self, ReloadableCertificate};
use crate::{
    auth, http_server, integrity, metrics, partitions, postings, reload, replicas, routes,
};

/// How often the `database_ready` gauge is refreshed between `/ready` calls, so that
/// alerts see an outage even when nothing polls `/ready`.
const READINESS_PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// How often recorded histogram samples are folded into their buckets. Until then the
/// recorder keeps every sample, so without this its memory grows with the request
/// rate times the time since the last scrape, without bound if nothing scrapes.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(1);
/// How often the server checks whether the optional index of scoped reads exists.
const INDEX_PROBE_INTERVAL: Duration = Duration::from_secs(5);

pub struct Application {
    port: u16,
    /// Whether this server seals, and the checkpoint signing key if it signs.
    signing: Option<Option<Signing>>,
    operators_port: Option<u16>,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    /// Binds the listener and prepares the server; the pool connects lazily, so this
    /// succeeds while the database is down (`/ready` says so).
    pub fn build(
        settings: Settings,
        config_source: ConfigSource,
        log_control: LogControl,
    ) -> anyhow::Result<Self> {
        let prometheus =
            metrics::install_recorder().context("failed to install the metrics recorder")?;
        let listener = bind(
            (settings.host.as_str(), settings.port),
            settings.http.backlog,
        )
        .with_context(|| format!("failed to bind {}:{}", settings.host, settings.port))?;
        let port = listener.local_addr()?.port();
        let operators = match &settings.admin.listen {
            None => None,
            Some(address) => Some(
                bind(address.as_str(), settings.http.backlog)
                    .with_context(|| format!("failed to bind admin.listen {address}"))?,
            ),
        };
        let operators_port = match &operators {
            Some(listener) => Some(listener.local_addr()?.port()),
            None => None,
        };
        let certificate = match (&settings.tls.cert_file, &settings.tls.key_file) {
            (Some(cert_file), Some(key_file)) => Some(Arc::new(
                ReloadableCertificate::load(cert_file, key_file)
                    .context("failed to load the TLS certificate")?,
            )),
            _ => None,
        };
        let tls = match &certificate {
            Some(certificate) => Some(Arc::new(tls::server_config(certificate.clone())?)),
            None => None,
        };
        if settings.auth.mode == AuthMode::Off {
            tracing::warn!(
                "auth.mode is \"off\": anyone who reaches port {port} may write events as any \
                 application and read every event; /reload and /admin/* answer callers on \
                 this host only. Set auth.mode = \"tokens\" (README: \"Securing it\")"
            );
        }
        let signing = integrity::load_signing(&settings.integrity)?;
        let runtime = Runtime::start(settings).context("failed to set up the database")?;
        let state = web::Data::new(AppState::new(
            runtime,
            config_source,
            log_control,
            prometheus,
            certificate,
        ));
        let listeners = Listeners {
            main: listener,
            tls,
            operators,
        };
        let server = http_server::serve(listeners, state.clone()).context("failed to listen")?;
        Ok(Self {
            port,
            signing,
            operators_port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the operators' listener, when `admin.listen` is set.
    pub fn operators_port(&self) -> Option<u16> {
        self.operators_port
    }

    /// The state the handlers share, for tests that reach into the running service.
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until SIGTERM or SIGINT, then lets requests in flight finish. SIGHUP
    /// reloads the configuration, like `POST /reload`.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let reload_on_hangup = tokio::spawn(reload_on_sighup(self.state.clone()));
        let readiness = tokio::spawn(probe_readiness_periodically(self.state.clone()));
        let cleanup = tokio::spawn(delete_expired_keys_periodically(self.state.clone()));
        let upkeep = tokio::spawn(drain_histograms_periodically(self.state.clone()));
        let tokens = tokio::spawn(auth::upkeep::keep_tokens_current(self.state.clone()));
        let index = tokio::spawn(detect_search_indexes_periodically(self.state.clone()));
        let postings = tokio::spawn(postings::keep_postings_posted(self.state.clone()));
        let partitions = tokio::spawn(partitions::keep_partitions(self.state.clone()));
        let replicas = tokio::spawn(replicas::probe_replicas_periodically(self.state.clone()));
        // The sealer stops when this sender drops: when the server stops, or when a
        // test drops this future.
        let (_stop_sealer, stop) = watch::channel(());
        if let Some(signing) = self.signing {
            let integrity = self.state.runtime().settings.integrity.clone();
            integrity::spawn_sealer(self.state.clone(), integrity, signing, stop)?;
        }
        let result = self.server.await;
        reload_on_hangup.abort();
        readiness.abort();
        cleanup.abort();
        upkeep.abort();
        tokens.abort();
        index.abort();
        postings.abort();
        partitions.abort();
        replicas.abort();
        result
    }
}

/// Binds a listening socket (`(host, port)`, or `host:port` text as `admin.listen`
/// gives it) with the configured backlog; the standard library's `TcpListener::bind`
/// always asks for 128, and a burst of connections beyond the backlog is dropped by
/// the kernel before the server sees it.
fn bind(address: impl ToSocketAddrs, backlog: u32) -> anyhow::Result<TcpListener> {
    let address = address
        .to_socket_addrs()?
        .next()
        .context("the host name resolves to no address")?;
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

async fn delete_expired_keys_periodically(state: web::Data<AppState>) {
    loop {
        // The runtime is taken after the wait, not held across it: a reload's old pools
        // (up to `pool_size` connections a thread) close once nothing holds them.
        let pause = state.runtime().settings.idempotency.cleanup_interval();
        tokio::time::sleep(pause).await;
        let runtime = state.runtime();
        let settings = &runtime.settings.idempotency;
        let pool = &runtime.repository.pool();
        match idempotency::delete_expired(pool, settings.ttl()).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "expired idempotency keys deleted"),
            Err(error) => {
                tracing::warn!(error = %cause_chain(&error), "idempotency key clean-up failed")
            }
        }
    }
}

async fn drain_histograms_periodically(state: web::Data<AppState>) {
    let mut interval = tokio::time::interval(METRICS_UPKEEP_INTERVAL);
    loop {
        interval.tick().await;
        state.prometheus.run_upkeep();
    }
}

async fn probe_readiness_periodically(state: web::Data<AppState>) {
    let mut interval = tokio::time::interval(READINESS_PROBE_INTERVAL);
    loop {
        interval.tick().await;
        // The outcome is the gauge; the reason is what /ready answers.
        let _ = routes::probe_readiness(&state).await;
    }
}

/// Notices the optional search indexes being created or dropped.
async fn detect_search_indexes_periodically(state: web::Data<AppState>) {
    let mut interval = tokio::time::interval(INDEX_PROBE_INTERVAL);
    let mut known = None;
    loop {
        interval.tick().await;
        let repository = state.runtime().repository.clone();
        if let Ok(found) = repository.refresh_search_indexes().await
            && known != Some(found)
        {
            known = Some(found);
            let names: Vec<&str> = found.iter().map(|index| index.name()).collect();
            tracing::info!(
                indexes = ?names,
                "filtered reads whose every condition has one of these indexes read through \
                 them; others scan a bounded range of ids"
            );
        }
    }
}

async fn reload_on_sighup(state: web::Data<AppState>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("cannot listen for SIGHUP; reload with POST /reload");
        return;
    };
    while hangups.recv().await.is_some() {
        // The outcome is logged and counted by `reload`; nobody waits for it here.
        let _ = reload::reload(&state, &Actor::Signal).await;
    }
}
