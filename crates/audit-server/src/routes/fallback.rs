//! JSON answers for requests no route takes.

use actix_web::{HttpResponse, Route, web};

use crate::errors::ApiError;

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

/// A 405 that names the allowed methods in `Allow`, as RFC 9110 asks.
pub fn method_not_allowed(allow: &'static str) -> Route {
    web::to(move || async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow }) })
}
