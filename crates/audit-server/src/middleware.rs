//! Per-request middleware: the request id, the request log, and the HTTP metrics.
//!
//! One middleware does all three so that the route pattern (which actix builds as a
//! new string on each call) is looked up once per request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, web};
use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use tracing::Instrument;

use crate::errors::ApiError;
use crate::metrics::{
    HTTP_EXCEPTIONS_TOTAL, HTTP_REQUEST_DURATION_SECONDS, HTTP_REQUESTS_IN_PROGRESS,
    HTTP_REQUESTS_TOTAL, HTTP_RESPONSES_TOTAL, SCHEME, UNMATCHED_PATH, method_label,
};
use crate::request_log::LogDecision;
use crate::state::AppState;

/// The header that carries the request id, in and out.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Longest client-supplied request id kept; longer or odd ones are replaced.
const MAX_REQUEST_ID_LENGTH: usize = 64;

/// Gives every request an id (the client's `X-Request-Id` if it is sane, else a new
/// one), echoes it in the response, logs one line per request with it, and records
/// the HTTP metrics.
pub async fn observe_request(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let request_id = request
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| is_sane_request_id(value))
        .map(str::to_owned)
        .unwrap_or_else(new_request_id);
    let method = method_label(request.method());
    // The route pattern, not the raw path, keeps the labels bounded.
    let route = request
        .match_pattern()
        .unwrap_or_else(|| UNMATCHED_PATH.to_owned());
    let scheme = request
        .app_data::<ListenerScheme>()
        .map_or(SCHEME, |listener| listener.0);
    let metrics = route_metrics(scheme, method, &route);
    let state = request.app_data::<web::Data<AppState>>().cloned();
    metrics.requests.increment(1);
    metrics.in_progress.increment(1.0);
    let _in_progress = InProgress(metrics.in_progress.clone());
    let span = tracing::info_span!("request", request_id = %request_id);
    let started = Instant::now();

    let mut result = next.call(request).instrument(span.clone()).await;

    let elapsed = started.elapsed();
    let (status, error_code) = match &result {
        Ok(response) => (
            response.status(),
            response
                .response()
                .error()
                .and_then(|error| error.as_error::<ApiError>())
                .map(ApiError::code),
        ),
        Err(error) => (error.as_response_error().status_code(), None),
    };
    let log_decision = state.map_or(LogDecision::Skip, |state| {
        let policy = state.runtime_ref().settings.log.requests;
        state.client_error_lines.decide(policy, status)
    });
    let by_status = metrics.by_status(method, &route, status);
    by_status.responses.increment(1);
    by_status.duration.record(elapsed.as_secs_f64());
    if status.is_server_error() {
        counter!(
            HTTP_EXCEPTIONS_TOTAL,
            "method" => method,
            "path_template" => route.clone(),
            "scheme" => scheme,
            "exception_type" => error_code.unwrap_or("other")
        )
        .increment(1);
    }
    if let LogDecision::Log { left_out } = log_decision {
        // Three decimals: the float's last digits are noise, not information.
        let duration_ms = (elapsed.as_secs_f64() * 1_000_000.0).round() / 1_000.0;
        span.in_scope(|| {
            if status.is_server_error() {
                tracing::error!(method, route = %route, status = status.as_u16(), duration_ms, "request");
            } else if left_out > 0 {
                tracing::info!(method, route = %route, status = status.as_u16(), duration_ms,
                    client_error_lines_left_out = left_out, "request");
            } else {
                tracing::info!(method, route = %route, status = status.as_u16(), duration_ms, "request");
            }
        });
    }
    if let (Ok(response), Ok(value)) = (&mut result, HeaderValue::from_str(&request_id)) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    result
}

/// Decrements the in-progress gauge however the request ends, cancellation included.
struct InProgress(Gauge);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// The HTTP metric handles of one method and route. Looking a handle up in the
/// recorder builds a key and hashes its labels; these are looked up once per worker
/// thread instead of once per request. Methods, routes and status codes are bounded
/// sets, so the cache is too.
struct RouteMetrics {
    scheme: &'static str,
    requests: Counter,
    in_progress: Gauge,
    by_status: RefCell<HashMap<StatusCode, StatusMetrics>>,
}

/// The handles labelled with a status code as well, as the original labels them.
#[derive(Clone)]
struct StatusMetrics {
    responses: Counter,
    duration: Histogram,
}

impl RouteMetrics {
    fn new(scheme: &'static str, method: &'static str, route: &str) -> Self {
        let labels = [
            ("method", method.to_owned()),
            ("path_template", route.to_owned()),
            ("scheme", scheme.to_owned()),
        ];
        Self {
            scheme,
            requests: counter!(HTTP_REQUESTS_TOTAL, &labels),
            in_progress: gauge!(HTTP_REQUESTS_IN_PROGRESS, &labels),
            by_status: RefCell::default(),
        }
    }

    fn by_status(&self, method: &'static str, route: &str, status: StatusCode) -> StatusMetrics {
        self.by_status
            .borrow_mut()
            .entry(status)
            .or_insert_with(|| {
                let labels = [
                    ("method", method.to_owned()),
                    ("path_template", route.to_owned()),
                    ("scheme", self.scheme.to_owned()),
                    ("status_code", status.as_str().to_owned()),
                ];
                StatusMetrics {
                    responses: counter!(HTTP_RESPONSES_TOTAL, &labels),
                    duration: histogram!(HTTP_REQUEST_DURATION_SECONDS, &labels),
                }
            })
            .clone()
    }
}

/// Handles of one route pattern, by scheme and method.
type RouteCache = HashMap<String, HashMap<(&'static str, &'static str), Rc<RouteMetrics>>>;

thread_local! {
    /// Route pattern -> (scheme, method) -> handles, per worker thread.
    static ROUTE_METRICS: RefCell<RouteCache> = RefCell::default();
}

fn route_metrics(scheme: &'static str, method: &'static str, route: &str) -> Rc<RouteMetrics> {
    ROUTE_METRICS.with(|cache| {
        let mut cache = cache.borrow_mut();
        let key = (scheme, method);
        if let Some(found) = cache.get(route).and_then(|by_key| by_key.get(&key)) {
            return Rc::clone(found);
        }
        let metrics = Rc::new(RouteMetrics::new(scheme, method, route));
        cache
            .entry(route.to_owned())
            .or_default()
            .insert(key, Rc::clone(&metrics));
        metrics
    })
}

/// The `scheme` label of a listener's requests (`http` when absent): set by the
/// server per listener, never taken from a request's headers, which a client could
/// fill with any value.
#[derive(Clone, Copy, Debug)]
pub struct ListenerScheme(pub &'static str);

fn is_sane_request_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_LENGTH
        && value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
}

fn new_request_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_clients_are_kept_only_when_sane() {
        assert!(is_sane_request_id("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(is_sane_request_id("req-1.retry_2"));
        assert!(!is_sane_request_id(""));
        assert!(!is_sane_request_id("has space"));
        assert!(!is_sane_request_id(&"a".repeat(65)));
        assert_eq!(new_request_id().len(), 32);
    }
}
