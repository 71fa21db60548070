//! Request metrics, recorded for every request whatever its outcome.

use std::time::Instant;

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use metrics::{Gauge, counter, gauge, histogram};

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
