//! The one mapping from failures to HTTP status codes and JSON bodies.
//!
//! Every error body has the shape `{"error": code, "message": text, "details": [...]}`,
//! where `code` is stable for clients to match on. 5xx errors are logged with their
//! whole cause chain; the client sees only the message.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use audit_core::batch::{BatchError, Problem};
use audit_core::storage_error::{StorageError, cause_chain};
use serde::Serialize;

use crate::auth::AuthFailure;

/// Seconds a client is told to wait before retrying after a 503.
const RETRY_AFTER_SECONDS: &str = "1";

/// One thing wrong with the request, and where.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Detail {
    /// Position of the event in the posted array.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The event field, or the query parameter, at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    pub problem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON")]
    MalformedJson(Detail),
    #[error("{} problem(s) in the request", .0.len())]
    Validation(Vec<Detail>),
    #[error("the request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the batch holds more than the limit of {limit} events")]
    TooManyEvents { limit: usize },
    #[error("the request body could not be read: {0}")]
    BodyUnreadable(String),
    #[error("invalid request header")]
    InvalidHeader(Detail),
    #[error("this Idempotency-Key was already used with a different body; nothing was stored")]
    IdempotencyKeyReused,
    #[error("invalid query parameters")]
    InvalidQuery(Vec<Detail>),
    #[error("injected failure (failure.chance); nothing was stored, a retry is safe")]
    InjectedFailure,
    #[error("the database is unavailable; nothing was stored, retry later")]
    DatabaseUnavailable(#[source] StorageError),
    #[error(
        "the connection to the database was lost while the batch was committed: it was \
         stored whole or not at all; retry with the same Idempotency-Key to be sure"
    )]
    OutcomeUnknown(#[source] StorageError),
    #[error("an event is larger than the limit of api.max_event_bytes")]
    EventTooLarge(Detail),
    #[error("stored event {id} cannot be represented; the page cannot be read past it")]
    CorruptRow { id: i64, problem: String },
    #[error("the server is saturated ({what}); nothing was stored, retry later")]
    Overloaded { what: &'static str },
    #[error("the request body did not arrive within {seconds} s")]
    BodyTimeout { seconds: f64 },
    #[error("the database refused the data; nothing was stored")]
    DataRejected(#[source] StorageError),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    #[error("no route for this path")]
    NotFound,
    #[error("method not allowed for this path; allowed: {allow}")]
    MethodNotAllowed { allow: &'static str },
    #[error("{}", .0.message())]
    Unauthenticated(AuthFailure),
    #[error("the token may not do this")]
    Forbidden(Vec<Detail>),
    #[error("the tokens could not be read from the database yet; retry later")]
    TokensUnavailable,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TokenNotFound(String),
    /// A 404 whose code says what is missing (`event_not_found`, `not_sealed_yet`, ...).
    #[error("{message}")]
    Missing { code: &'static str, message: String },
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'static str,
    message: String,
    details: &'a [Detail],
}

impl ApiError {
    /// The stable code clients and the metrics see.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::Validation(_) => "validation_failed",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::TooManyEvents { .. } => "too_many_events",
            Self::BodyUnreadable(_) => "body_unreadable",
            Self::InvalidHeader(_) => "invalid_header",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::InvalidQuery(_) => "invalid_query",
            Self::InjectedFailure => "injected_failure",
            Self::DatabaseUnavailable(_) => "database_unavailable",
            Self::OutcomeUnknown(_) => "outcome_unknown",
            Self::EventTooLarge(_) => "event_too_large",
            Self::CorruptRow { .. } => "corrupt_row",
            Self::Overloaded { .. } => "overloaded",
            Self::BodyTimeout { .. } => "body_timeout",
            Self::DataRejected(_) => "data_rejected",
            Self::Internal(_) => "internal_error",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden(_) => "forbidden",
            Self::TokensUnavailable => "tokens_unavailable",
            Self::Conflict(_) => "conflict",
            Self::TokenNotFound(_) => "token_not_found",
            Self::Missing { code, .. } => code,
        }
    }

    fn details(&self) -> &[Detail] {
        match self {
            Self::MalformedJson(detail)
            | Self::InvalidHeader(detail)
            | Self::EventTooLarge(detail) => std::slice::from_ref(detail),
            Self::Validation(details) | Self::InvalidQuery(details) | Self::Forbidden(details) => {
                details
            }
            _ => &[],
        }
    }
}

impl From<BatchError> for ApiError {
    fn from(error: BatchError) -> Self {
        match error {
            BatchError::MalformedJson {
                line,
                column,
                message,
            } => Self::MalformedJson(Detail {
                line: Some(line),
                column: Some(column),
                problem: message,
                ..Detail::default()
            }),
            BatchError::NotAnArray => Self::Validation(vec![Detail {
                problem: error.to_string(),
                ..Detail::default()
            }]),
            BatchError::Invalid(problems) => {
                Self::Validation(problems.into_iter().map(Detail::from).collect())
            }
            BatchError::Forbidden(problems) => {
                Self::Forbidden(problems.into_iter().map(Detail::from).collect())
            }
            BatchError::TooManyEvents { limit } => Self::TooManyEvents { limit },
            BatchError::EventTooLarge { index, limit } => Self::EventTooLarge(Detail {
                index: Some(index),
                problem: format!(
                    "the event's timestamp, names and payload take more than {limit} bytes"
                ),
                ..Detail::default()
            }),
        }
    }
}

impl From<Problem> for Detail {
    fn from(problem: Problem) -> Self {
        Self {
            index: Some(problem.index),
            field: problem.field,
            problem: problem.problem,
            ..Self::default()
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Unavailable(_)
            | StorageError::ConstraintRefused(_)
            | StorageError::SchemaNotReady { .. } => Self::DatabaseUnavailable(error),
            StorageError::OutcomeUnknown(_) => Self::OutcomeUnknown(error),
            StorageError::Overloaded => Self::Overloaded {
                what: "write queue full",
            },
            StorageError::DataRejected(_) => Self::DataRejected(error),
            StorageError::CorruptRow { id, problem } => Self::CorruptRow { id, problem },
            StorageError::Statement(_) => Self::Internal(error.into()),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_)
            | Self::Validation(_)
            | Self::InvalidQuery(_)
            | Self::InvalidHeader(_)
            | Self::DataRejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::IdempotencyKeyReused => StatusCode::CONFLICT,
            Self::BodyTooLarge { .. } | Self::TooManyEvents { .. } | Self::EventTooLarge(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::BodyUnreadable(_) => StatusCode::BAD_REQUEST,
            Self::InjectedFailure | Self::Internal(_) | Self::CorruptRow { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::DatabaseUnavailable(_)
            | Self::OutcomeUnknown(_)
            | Self::Overloaded { .. }
            | Self::TokensUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TokenNotFound(_) | Self::Missing { .. } => StatusCode::NOT_FOUND,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() && !matches!(self, Self::InjectedFailure) {
            tracing::error!(code = self.code(), cause = %cause_chain(self), "request failed");
        }
        let body = ErrorBody {
            error: self.code(),
            message: self.to_string(),
            details: self.details(),
        };
        let mut response = HttpResponse::build(status);
        if let Self::MethodNotAllowed { allow } = self {
            response.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
        }
        if let Self::Unauthenticated(failure) = self {
            // RFC 6750: a presented token that failed is an `invalid_token`.
            let challenge = match failure {
                AuthFailure::Missing => r#"Bearer realm="audit-collector""#,
                _ => r#"Bearer realm="audit-collector", error="invalid_token""#,
            };
            response.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            ));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header((
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            ));
        }
        response.json(body)
    }
}

#[cfg(test)]
mod tests {
    use actix_web::body::to_bytes;

    use super::*;

    #[actix_web::test]
    async fn validation_errors_carry_their_details_as_json() {
        let error = ApiError::Validation(vec![Detail {
            index: Some(3),
            field: Some("event_ts".to_owned()),
            problem: "expected a string".to_owned(),
            ..Detail::default()
        }]);

        let response = error.error_response();

        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = to_bytes(response.into_body()).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"], "validation_failed");
        assert_eq!(
            json["details"],
            serde_json::json!([{"index": 3, "field": "event_ts", "problem": "expected a string"}])
        );
    }

    #[test]
    fn every_refused_batch_is_a_client_error() {
        let refusals = [
            BatchError::MalformedJson {
                line: 1,
                column: 2,
                message: "x".to_owned(),
            },
            BatchError::NotAnArray,
            BatchError::Invalid(Vec::new()),
            BatchError::TooManyEvents { limit: 1 },
            BatchError::EventTooLarge { index: 0, limit: 1 },
        ];

        for refusal in refusals {
            let status = ApiError::from(refusal.clone()).status_code();
            assert!(status.is_client_error(), "{refusal:?} answers {status}");
        }
    }

    #[actix_web::test]
    async fn unavailable_database_answers_503_with_retry_after() {
        let error = ApiError::DatabaseUnavailable(StorageError::SchemaNotReady {
            found: None,
            expected: 1,
        });

        let response = error.error_response();

        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "1");
    }
}
