//! The HTTP server around the app: actix-http's service on actix-server's workers,
//! put together here rather than by actix-web's `HttpServer`, which has no place for
//! an `Expect: 100-continue` check.
//!
//! actix-http answers `100 Continue` as soon as the expect service accepts a request,
//! before any handler runs; its default accepts every one. A client that declares a
//! body over the limit would then be told to send it, only to get 413 after sending.
//! Here the expectation is refused with that 413 instead, and the client sends nothing.
//!
//! One server runs every listener: the main one (plain or TLS) and, when
//! `admin.listen` is set, the operators' one, each with the routes of its surface.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_http::header::CONTENT_LENGTH;
use actix_http::{HttpMessage, HttpService, Request};
use actix_service::{IntoServiceFactory, ServiceFactoryExt, fn_service, map_config};
use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::dev::{AppConfig, Server};
use actix_web::middleware::from_fn;
use actix_web::rt::net::TcpStream;
use actix_web::{App, web};

use crate::errors::ApiError;
use crate::metrics::{SCHEME, TLS_SCHEME};
use crate::middleware::{ListenerScheme, observe_request};
use crate::routes::{self, Surface};
use crate::slow_readers;
use crate::state::AppState;

/// How long requests in flight may take to finish after SIGTERM or SIGINT.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How long a closing connection may take to shut down once its response is sent.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The sockets the server serves, already bound with their backlog.
pub struct Listeners {
    pub main: TcpListener,
    /// TLS on the main listener.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The operators' listener (`admin.listen`); the main one then serves no
    /// operators' routes.
    pub operators: Option<TcpListener>,
}

/// One listener's HTTP service: the app with the routes of `$surface`, the expect
/// check, and the connection limits; `$socket` gives the TCP socket of a stream.
/// A macro because the service's type differs by stream type and cannot be named.
macro_rules! http_service {
    ($state:expr, $shutdown:expr, $surface:expr, $scheme:expr, $address:expr, $socket:expr) => {{
        let state: web::Data<AppState> = $state;
        let shutdown = $shutdown;
        let surface: Surface = $surface;
        let http = state.runtime().settings.http.clone();
        let expect_state = state.clone();
        let connection_state = state.clone();
        let app = App::new()
            .app_data(state)
            .app_data(ListenerScheme($scheme))
            .app_data(web::Data::new(routes::ShuttingDown(shutdown.clone())))
            .wrap(from_fn(observe_request))
            .configure(move |config| routes::configure(config, surface))
            .default_service(web::to(routes::not_found))
            .into_factory()
            .map_err(|error| error.error_response());
        HttpService::build()
            .graceful_shutdown_signal(move || {
                let shutdown = shutdown.clone();
                async move { shutdown.notified().await }
            })
            .keep_alive(Duration::from_secs(http.keep_alive_seconds))
            .client_request_timeout(http.request_head_timeout())
            .client_disconnect_timeout(DISCONNECT_TIMEOUT)
            .local_addr($address)
            .on_connect_ext(move |stream, _| {
                let timeout = connection_state
                    .runtime_ref()
                    .settings
                    .http
                    .response_timeout();
                slow_readers::limit_unread_responses($socket(stream), timeout);
            })
            .expect(fn_service(move |request: Request| {
                let limit = expect_state.runtime_ref().settings.api.max_body_bytes;
                async move { refuse_oversized_expectation(request, limit) }
            }))
            .finish(map_config(app, |_| AppConfig::default()))
    }};
}

/// Starts serving the app on the listeners with the HTTP settings in force at
/// start-up.
pub fn serve(listeners: Listeners, state: web::Data<AppState>) -> std::io::Result<Server> {
    let http = state.runtime().settings.http.clone();
    let mut builder = Server::build()
        .max_concurrent_connections(http.max_connections_per_worker)
        .shutdown_timeout(SHUTDOWN_GRACE.as_secs());
    if http.workers > 0 {
        builder = builder.workers(http.workers);
    }
    let shutdown = builder.graceful_shutdown_signal();
    let main_surface = if listeners.operators.is_some() {
        Surface::Public
    } else {
        Surface::All
    };
    let address = listeners.main.local_addr()?;
    builder = match listeners.tls {
        None => {
            let (state, shutdown) = (state.clone(), shutdown.clone());
            builder.listen("audit-http", listeners.main, move || {
                http_service!(
                    state.clone(),
                    shutdown.clone(),
                    main_surface,
                    SCHEME,
                    address,
                    plain_socket
                )
                .tcp()
            })?
        }
        Some(config) => {
            let (state, shutdown) = (state.clone(), shutdown.clone());
            builder.listen("audit-https", listeners.main, move || {
                http_service!(
                    state.clone(),
                    shutdown.clone(),
                    main_surface,
                    TLS_SCHEME,
                    address,
                    tls_socket
                )
                .rustls_0_23((*config).clone())
            })?
        }
    };
    if let Some(operators) = listeners.operators {
        let address = operators.local_addr()?;
        builder = builder.listen("audit-operators", operators, move || {
            http_service!(
                state.clone(),
                shutdown.clone(),
                Surface::Operators,
                SCHEME,
                address,
                plain_socket
            )
            .tcp()
        })?;
    }
    Ok(builder.run())
}

fn plain_socket(stream: &TcpStream) -> &TcpStream {
    stream
}

fn tls_socket(stream: &TlsStream<TcpStream>) -> &TcpStream {
    stream.get_ref().0
}

/// Accepts `Expect: 100-continue` unless the declared body is over the body limit,
/// which gets the same 413 the handler would give, before the client sends it.
fn refuse_oversized_expectation(
    request: Request,
    limit: usize,
) -> Result<Request, actix_web::Error> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::BodyTooLarge { limit }.into());
    }
    Ok(request)
}
