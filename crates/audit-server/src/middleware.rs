//! Per-request middleware: the request id and request log, and the HTTP metrics.

use std::time::Instant;

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use metrics::{Gauge, counter, gauge, histogram};
use tracing::Instrument;

use crate::errors::ApiError;
use crate::metrics::{
    HTTP_EXCEPTIONS_TOTAL, HTTP_REQUEST_DURATION_SECONDS, HTTP_REQUESTS_IN_PROGRESS,
    HTTP_REQUESTS_TOTAL, HTTP_RESPONSES_TOTAL, UNMATCHED_PATH, method_label,
};

/// Decrements the in-progress gauge however the request ends, cancellation included.
struct InProgress(Gauge);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// The header that carries the request id, in and out.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Longest client-supplied request id kept; longer or odd ones are replaced.
const MAX_REQUEST_ID_LENGTH: usize = 64;

/// Gives every request an id (the client's `X-Request-Id` if it is sane, else a new
/// one), echoes it in the response, and logs one line per request with it.
pub async fn log_request(
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
    let route = request
        .match_pattern()
        .unwrap_or_else(|| UNMATCHED_PATH.to_owned());
    let span = tracing::info_span!("request", request_id = %request_id);
    let started = Instant::now();

    let mut result = next.call(request).instrument(span.clone()).await;

    let status = match &result {
        Ok(response) => response.status(),
        Err(error) => error.as_response_error().status_code(),
    };
    span.in_scope(|| {
        tracing::info!(
            method,
            route = %route,
            status = status.as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
    });
    if let (Ok(response), Ok(value)) = (&mut result, HeaderValue::from_str(&request_id)) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    result
}

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

pub async fn record_http_metrics(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let method = method_label(request.method());
    // The route pattern, not the raw path, keeps the label bounded.
    let path_template = request
        .match_pattern()
        .unwrap_or_else(|| UNMATCHED_PATH.to_owned());
    counter!(HTTP_REQUESTS_TOTAL, "method" => method, "path_template" => path_template.clone())
        .increment(1);
    let in_progress_gauge = gauge!(
        HTTP_REQUESTS_IN_PROGRESS,
        "method" => method,
        "path_template" => path_template.clone()
    );
    in_progress_gauge.increment(1.0);
    let _in_progress = InProgress(in_progress_gauge);
    let started = Instant::now();

    let result = next.call(request).await;

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
    histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        "method" => method,
        "path_template" => path_template.clone()
    )
    .record(started.elapsed().as_secs_f64());
    counter!(
        HTTP_RESPONSES_TOTAL,
        "method" => method,
        "path_template" => path_template.clone(),
        "status_code" => status.as_str().to_owned()
    )
    .increment(1);
    if status.is_server_error() {
        counter!(
            HTTP_EXCEPTIONS_TOTAL,
            "method" => method,
            "path_template" => path_template,
            "exception_type" => error_code.unwrap_or("other")
        )
        .increment(1);
    }
    result
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
