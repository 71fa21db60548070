//! Bounds what a client that reads its response slowly, or not at all, can hold.
//!
//! Two mechanisms, because actix stops polling a response body while the socket is
//! full: a body that is still polled (a slow reader) checks its own deadline and ends
//! the connection past it; a connection whose client stopped reading entirely (the
//! kernel sees a zero receive window) is aborted by the kernel's `TCP_USER_TIMEOUT`,
//! which also applies to zero-window probes. Either way the response's memory is freed.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, MessageBody};
use actix_web::rt::net::TcpStream;
use actix_web::web::Bytes;
use tokio::time::Instant;

/// Sets the kernel's bound on unacknowledged or unsendable data of a new connection.
/// Called for every accepted connection; a socket that refuses it keeps working
/// without the bound (logged once per connection at debug).
pub fn limit_unread_responses(stream: &TcpStream, timeout: Duration) {
    if let Err(error) = socket2::SockRef::from(stream).set_tcp_user_timeout(Some(timeout)) {
        tracing::debug!(%error, "cannot set TCP_USER_TIMEOUT");
    }
}

/// A response body of known chunks that must be sent within a deadline.
pub struct DeadlineBody {
    chunks: VecDeque<Bytes>,
    total: u64,
    deadline: Instant,
}

/// The client read too slowly: the connection is closed.
#[derive(Debug, thiserror::Error)]
#[error("the client did not read the response within http.response_timeout_ms")]
pub struct ResponseTimedOut;

impl DeadlineBody {
    pub fn new(chunks: Vec<Bytes>, timeout: Duration) -> Self {
        let total = chunks.iter().map(|chunk| chunk.len() as u64).sum();
        Self {
            chunks: chunks.into(),
            total,
            deadline: Instant::now() + timeout,
        }
    }
}

impl MessageBody for DeadlineBody {
    type Error = ResponseTimedOut;

    fn size(&self) -> BodySize {
        BodySize::Sized(self.total)
    }

    fn poll_next(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        if Instant::now() >= this.deadline {
            // Dropping what is left frees it now, whatever actix does with the error.
            this.chunks.clear();
            return Poll::Ready(Some(Err(ResponseTimedOut)));
        }
        Poll::Ready(this.chunks.pop_front().map(Ok))
    }
}
