//! Reads a request body into memory under three limits: its size, the time it may
//! take, and a byte budget shared by all requests, so that a flood of large or slow
//! bodies cannot exhaust memory.
//!
//! The limits are read per request from the reloadable settings, which is why this is
//! not actix's fixed `PayloadConfig`.

use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpRequest;
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::web::{BytesMut, Payload};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::errors::ApiError;

/// The budget is counted in KiB so that 4 TiB still fits the semaphore's permits.
const BUDGET_UNIT: usize = 1024;
/// The most a body reserves before its bytes arrive, whatever length it declares, and
/// the least it reserves at a time as it grows. A declared length is only a promise:
/// were it reserved whole, a few connections declaring 16 MiB and sending one byte
/// would hold the whole budget and starve every other POST.
const RESERVATION_STEP: usize = 64 * 1024;

/// Memory for request bodies, shared by every request.
#[derive(Debug)]
pub struct BodyBudget {
    semaphore: Arc<Semaphore>,
}

/// A share of the budget, returned when the request is done with its body.
#[derive(Debug)]
pub struct BodyReservation {
    _permit: Option<OwnedSemaphorePermit>,
}

/// How a body is to be read.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub timeout: Duration,
    /// How long to wait for budget before answering 503.
    pub budget_wait: Duration,
}

impl BodyBudget {
    pub fn new(bytes: usize) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(bytes.div_ceil(BUDGET_UNIT))),
        }
    }

    async fn reserve(
        &self,
        bytes: usize,
        wait: Duration,
    ) -> Result<OwnedSemaphorePermit, ApiError> {
        let units = u32::try_from(bytes.div_ceil(BUDGET_UNIT).max(1)).unwrap_or(u32::MAX);
        match tokio::time::timeout(wait, Arc::clone(&self.semaphore).acquire_many_owned(units))
            .await
        {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ApiError::Overloaded {
                what: "request body memory in use",
            }),
        }
    }
}

pub async fn read_limited(
    request: &HttpRequest,
    payload: Payload,
    limits: BodyLimits,
    budget: &BodyBudget,
) -> Result<(BytesMut, BodyReservation), ApiError> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limits.max_bytes) {
        return Err(ApiError::BodyTooLarge {
            limit: limits.max_bytes,
        });
    }
    let read = read_within_budget(payload, declared, limits, budget);
    match tokio::time::timeout(limits.timeout, read).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::BodyTimeout {
            seconds: limits.timeout.as_secs_f64(),
        }),
    }
}

async fn read_within_budget(
    mut payload: Payload,
    declared: Option<usize>,
    limits: BodyLimits,
    budget: &BodyBudget,
) -> Result<(BytesMut, BodyReservation), ApiError> {
    let mut reserved = declared
        .unwrap_or(RESERVATION_STEP)
        .min(RESERVATION_STEP)
        .min(limits.max_bytes);
    let mut permit = if reserved == 0 {
        None
    } else {
        Some(budget.reserve(reserved, limits.budget_wait).await?)
    };
    // The buffer is made at the declared size at once: its pages take memory only as
    // the bytes arrive (which the budget counts), and growing it step by step would
    // copy the body over and over, with two copies alive at each step.
    let mut body = BytesMut::with_capacity(declared.unwrap_or(reserved).min(limits.max_bytes));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|error| ApiError::BodyUnreadable(error.to_string()))?;
        let length = body.len() + chunk.len();
        if length > limits.max_bytes {
            return Err(ApiError::BodyTooLarge {
                limit: limits.max_bytes,
            });
        }
        if length > reserved {
            // Reserved as the bytes arrive, by half again of what is held (at least
            // a step), so a large body takes a few reservations, not thousands.
            let more = (length - reserved)
                .max(reserved / 2)
                .max(RESERVATION_STEP)
                .min(limits.max_bytes - reserved);
            let extra = budget.reserve(more, limits.budget_wait).await?;
            match &mut permit {
                Some(permit) => permit.merge(extra),
                None => permit = Some(extra),
            }
            reserved += more;
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, BodyReservation { _permit: permit }))
}
