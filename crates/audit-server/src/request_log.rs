//! Which requests get a log line (`log.requests`), so that a hostile client cannot
//! fill the disk: server errors always, client errors at most a few lines a second
//! with a count of those left out, successes only when asked for.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;

use crate::settings::RequestLogging;

/// Client error lines written per window at most; the rest are counted.
const CLIENT_ERROR_LINES_PER_WINDOW: u32 = 5;
const WINDOW: Duration = Duration::from_secs(1);

/// What to do with one finished request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogDecision {
    Skip,
    /// Log it; `left_out` client error lines were dropped since the last one logged.
    Log {
        left_out: u64,
    },
}

/// Shared by all workers: the rate of client error lines.
#[derive(Debug)]
pub struct ClientErrorLines {
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    written: u32,
    left_out: u64,
}

impl Default for ClientErrorLines {
    fn default() -> Self {
        Self {
            window: Mutex::new(Window {
                started: Instant::now(),
                written: 0,
                left_out: 0,
            }),
        }
    }
}

impl ClientErrorLines {
    pub fn decide(&self, policy: RequestLogging, status: StatusCode) -> LogDecision {
        match policy {
            RequestLogging::Off => LogDecision::Skip,
            RequestLogging::All => LogDecision::Log { left_out: 0 },
            RequestLogging::Errors if status.is_server_error() => LogDecision::Log { left_out: 0 },
            RequestLogging::Errors if status.is_client_error() => self.take_client_error_line(),
            RequestLogging::Errors => LogDecision::Skip,
        }
    }

    fn take_client_error_line(&self) -> LogDecision {
        // A few counters behind a lock taken only for 4xx answers: no poisoning risk
        // that matters, and no cost on the success path.
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        if window.started.elapsed() >= WINDOW {
            window.started = Instant::now();
            window.written = 0;
        }
        if window.written >= CLIENT_ERROR_LINES_PER_WINDOW {
            window.left_out += 1;
            return LogDecision::Skip;
        }
        window.written += 1;
        LogDecision::Log {
            left_out: std::mem::take(&mut window.left_out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_are_logged_a_few_a_second_and_the_rest_counted() {
        let lines = ClientErrorLines::default();
        let decisions: Vec<LogDecision> = (0..20)
            .map(|_| lines.decide(RequestLogging::Errors, StatusCode::UNPROCESSABLE_ENTITY))
            .collect();

        let logged = decisions
            .iter()
            .filter(|decision| **decision != LogDecision::Skip)
            .count();
        assert_eq!(logged, CLIENT_ERROR_LINES_PER_WINDOW as usize);
        assert_eq!(
            lines.decide(RequestLogging::Errors, StatusCode::INTERNAL_SERVER_ERROR),
            LogDecision::Log { left_out: 0 }
        );
        assert_eq!(
            lines.decide(RequestLogging::Errors, StatusCode::OK),
            LogDecision::Skip
        );
        assert_eq!(
            lines.decide(RequestLogging::Off, StatusCode::INTERNAL_SERVER_ERROR),
            LogDecision::Skip
        );
    }
}
