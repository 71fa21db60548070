//! The HTTP server around the app: actix-http's service on actix-server's workers,
//! put together here rather than by actix-web's `HttpServer`, which has no place for
//! an `Expect: 100-continue` check.
//!
//! actix-http answers `100 Continue` as soon as the expect service accepts a request,
//! before any handler runs; its default accepts every one. A client that declares a
//! body over the limit would then be told to send it, only to get 413 after sending.
//! Here the expectation is refused with that 413 instead, and the client sends nothing.

use std::net::TcpListener;
use std::time::Duration;

use actix_http::header::CONTENT_LENGTH;
use actix_http::{HttpMessage, HttpService, Request};
use actix_service::{IntoServiceFactory, ServiceFactoryExt, fn_service, map_config};
use actix_web::dev::{AppConfig, Server};
use actix_web::middleware::from_fn;
use actix_web::{App, web};

use crate::errors::ApiError;
use crate::middleware::observe_request;
use crate::state::AppState;
use crate::{routes, slow_readers};

/// How long requests in flight may take to finish after SIGTERM or SIGINT.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How long a closing connection may take to shut down once its response is sent.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Starts serving the app on the listener (already bound, with its backlog) with the
/// HTTP settings in force at start-up.
pub fn serve(listener: TcpListener, state: web::Data<AppState>) -> std::io::Result<Server> {
    let http = state.runtime().settings.http.clone();
    let address = listener.local_addr()?;
    let mut builder = Server::build()
        .max_concurrent_connections(http.max_connections_per_worker)
        .shutdown_timeout(SHUTDOWN_GRACE.as_secs());
    if http.workers > 0 {
        builder = builder.workers(http.workers);
    }
    let shutdown = builder.graceful_shutdown_signal();
    let server = builder.listen("audit-http", listener, move || {
        let app_state = state.clone();
        let expect_state = state.clone();
        let connection_state = state.clone();
        let shutdown = shutdown.clone();
        let app = App::new()
            .app_data(app_state)
            .wrap(from_fn(observe_request))
            .configure(routes::configure)
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
            .local_addr(address)
            .on_connect_ext(move |stream, _| {
                let timeout = connection_state
                    .runtime_ref()
                    .settings
                    .http
                    .response_timeout();
                slow_readers::limit_unread_responses(stream, timeout);
            })
            .expect(fn_service(move |request: Request| {
                let limit = expect_state.runtime_ref().settings.api.max_body_bytes;
                async move { refuse_oversized_expectation(request, limit) }
            }))
            .finish(map_config(app, |_| AppConfig::default()))
            .tcp()
    })?;
    Ok(server.run())
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
