//! Who is calling: the bearer token of a request, checked against the tokens in
//! memory, or nobody in particular while `auth.mode` is `off`. Handlers ask for the
//! caller first and hand its scopes to the core, which enforces them.

mod token_cache;
pub mod upkeep;

use std::sync::Arc;

use actix_web::HttpRequest;
use actix_web::http::header::AUTHORIZATION;
use audit_core::access::{Actor, Applications, KnownToken};
use audit_core::batch::WriteGrant;
use metrics::counter;

pub use crate::auth::token_cache::{CachedToken, Rejection, TokenCache};
use crate::errors::{ApiError, Detail};
use crate::metrics::AUTH_FAILURES_TOTAL;
use crate::settings::AuthMode;
use crate::state::{AppState, Runtime};

/// The bounded `reason` label values of `auth_failures_total`.
pub const FAILURE_REASONS: &[&str] = &[
    "missing",
    "malformed",
    "unknown",
    "revoked",
    "expired",
    "forbidden",
    "not_loopback",
];

/// Why a request was not authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Malformed,
    Rejected(Rejection),
}

impl AuthFailure {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Rejected(Rejection::Unknown) => "unknown",
            Self::Rejected(Rejection::Revoked) => "revoked",
            Self::Rejected(Rejection::Expired) => "expired",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::Missing => "this request needs an Authorization: Bearer token",
            Self::Malformed => "the Authorization header is not one `Bearer <token>`",
            Self::Rejected(Rejection::Unknown) => "the bearer token is not known",
            Self::Rejected(Rejection::Revoked) => "the bearer token was revoked",
            Self::Rejected(Rejection::Expired) => "the bearer token has expired",
        }
    }
}

/// Who a request comes from.
#[derive(Clone, Debug)]
pub enum Caller {
    /// `auth.mode = "off"`: anyone, for any application.
    Open,
    Token(Arc<CachedToken>),
}

impl Caller {
    /// What this caller may write, and the name its events record.
    pub fn write_grant(&self) -> WriteGrant<'_> {
        match self {
            Self::Open => WriteGrant::OPEN,
            Self::Token(cached) => WriteGrant {
                token_name: Some(&cached.token.name),
                applications: &cached.token.write,
            },
        }
    }

    /// The applications whose events this caller may read.
    pub fn read_scope(&self) -> &Applications {
        match self {
            Self::Open => &Applications::All,
            Self::Token(cached) => &cached.token.read,
        }
    }

    /// Refuses, before the body is read, a caller that may write nothing at all.
    pub fn require_some_write(&self) -> Result<(), ApiError> {
        self.require_some(|token| &token.write, "write events")
    }

    /// Refuses a caller that may read nothing at all.
    pub fn require_some_read(&self) -> Result<(), ApiError> {
        self.require_some(|token| &token.read, "read events")
    }

    fn require_some(
        &self,
        scope: impl FnOnce(&KnownToken) -> &Applications,
        action: &str,
    ) -> Result<(), ApiError> {
        match self {
            Self::Token(cached) if scope(&cached.token).is_empty() => {
                Err(forbidden(&cached.token.name, action))
            }
            _ => Ok(()),
        }
    }
}

/// The runtime snapshot of a read request, and its caller, who must be allowed to
/// read something.
pub fn api_reader(
    state: &AppState,
    request: &HttpRequest,
) -> Result<(Arc<Runtime>, Caller), ApiError> {
    let runtime = state.runtime();
    let caller = api_caller(&state.tokens, runtime.settings.auth.mode, request)?;
    caller.require_some_read()?;
    Ok((runtime, caller))
}

/// The caller of an `/api/*` request under `mode`.
pub fn api_caller(
    cache: &TokenCache,
    mode: AuthMode,
    request: &HttpRequest,
) -> Result<Caller, ApiError> {
    match mode {
        AuthMode::Off => Ok(Caller::Open),
        AuthMode::Tokens => token_caller(cache, request).map(Caller::Token),
    }
}

/// The actor of an operators' request (`/reload`, `/admin/*`): an admin token under
/// `tokens`, or a peer on this host under `off`.
pub fn admin_actor(
    cache: &TokenCache,
    mode: AuthMode,
    request: &HttpRequest,
) -> Result<Actor, ApiError> {
    match mode {
        AuthMode::Tokens => {
            let cached = token_caller(cache, request)?;
            if !cached.token.admin {
                return Err(forbidden(&cached.token.name, "administer the collector"));
            }
            Ok(Actor::Token(cached.token.name.clone()))
        }
        AuthMode::Off => {
            let loopback = request
                .peer_addr()
                .is_some_and(|peer| peer.ip().is_loopback());
            if !loopback {
                counter!(AUTH_FAILURES_TOTAL, "reason" => "not_loopback").increment(1);
                return Err(ApiError::Forbidden(vec![Detail {
                    problem: "while auth.mode is \"off\", only a caller on the same host may \
                              do this"
                        .to_owned(),
                    ..Detail::default()
                }]));
            }
            Ok(Actor::Loopback)
        }
    }
}

/// Checks a request's bearer token against `expected` (the metrics token).
pub fn check_static_token(request: &HttpRequest, expected: &str) -> Result<(), ApiError> {
    let presented = bearer_token(request).map_err(unauthenticated)?;
    // Compared as hashes: the time taken says nothing about how much of it matched.
    let matches = audit_core::access::SecretHash::of(presented)
        == audit_core::access::SecretHash::of(expected);
    if !matches {
        return Err(unauthenticated(AuthFailure::Rejected(Rejection::Unknown)));
    }
    Ok(())
}

fn token_caller(cache: &TokenCache, request: &HttpRequest) -> Result<Arc<CachedToken>, ApiError> {
    let presented = bearer_token(request).map_err(unauthenticated)?;
    match cache.check(presented) {
        None => Err(ApiError::TokensUnavailable),
        Some(Err(rejection)) => Err(unauthenticated(AuthFailure::Rejected(rejection))),
        Some(Ok(cached)) => Ok(cached),
    }
}

/// The token of the one `Authorization: Bearer <token>` header.
fn bearer_token(request: &HttpRequest) -> Result<&str, AuthFailure> {
    let mut values = request.headers().get_all(AUTHORIZATION);
    let value = values.next().ok_or(AuthFailure::Missing)?;
    if values.next().is_some() {
        return Err(AuthFailure::Malformed);
    }
    let value = value.to_str().map_err(|_| AuthFailure::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthFailure::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthFailure::Malformed);
    }
    Ok(token)
}

fn unauthenticated(failure: AuthFailure) -> ApiError {
    counter!(AUTH_FAILURES_TOTAL, "reason" => failure.reason()).increment(1);
    ApiError::Unauthenticated(failure)
}

/// A 403 naming the action the token may not take.
pub fn forbidden(token: &str, action: &str) -> ApiError {
    counter!(AUTH_FAILURES_TOTAL, "reason" => "forbidden").increment(1);
    ApiError::Forbidden(vec![Detail {
        field: Some("Authorization".to_owned()),
        problem: format!("token {token:?} may not {action}"),
        ..Detail::default()
    }])
}

/// A 403 for a batch with events the token may not write, naming each.
pub fn forbidden_events(details: Vec<Detail>) -> ApiError {
    counter!(AUTH_FAILURES_TOTAL, "reason" => "forbidden").increment(1);
    ApiError::Forbidden(details)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn from_peer(peer: &str) -> HttpRequest {
        TestRequest::default()
            .peer_addr(peer.parse().unwrap())
            .to_http_request()
    }

    #[test]
    fn with_access_control_off_only_a_peer_on_this_host_may_administer() {
        let cache = TokenCache::default();

        for local in ["127.0.0.1:4000", "[::1]:4000"] {
            let actor = admin_actor(&cache, AuthMode::Off, &from_peer(local)).unwrap();
            assert_eq!(actor, Actor::Loopback);
        }
        for remote in ["192.0.2.7:4000", "[2001:db8::1]:4000"] {
            let refused = admin_actor(&cache, AuthMode::Off, &from_peer(remote));
            assert!(matches!(refused, Err(ApiError::Forbidden(_))), "{remote}");
        }
    }

    #[test]
    fn with_tokens_a_loopback_peer_needs_a_token_like_anyone() {
        let cache = TokenCache::default();
        cache.replace(Vec::new());

        let refused = admin_actor(&cache, AuthMode::Tokens, &from_peer("127.0.0.1:4000"));

        assert!(matches!(
            refused,
            Err(ApiError::Unauthenticated(AuthFailure::Missing))
        ));
    }

    #[test]
    fn only_one_bearer_header_is_a_token() {
        let request = |values: &[&str]| {
            let mut request = TestRequest::default();
            for value in values {
                request = request.append_header((AUTHORIZATION, *value));
            }
            request.to_http_request()
        };

        assert_eq!(bearer_token(&request(&["Bearer abc"])), Ok("abc"));
        assert_eq!(bearer_token(&request(&["bearer abc"])), Ok("abc"));
        assert_eq!(bearer_token(&request(&[])), Err(AuthFailure::Missing));
        for malformed in [
            &["Basic abc"][..],
            &["Bearer"],
            &["Bearer  "],
            &["Bearer a", "Bearer b"],
        ] {
            assert_eq!(
                bearer_token(&request(malformed)),
                Err(AuthFailure::Malformed),
                "{malformed:?}"
            );
        }
    }
}
