//! The tokens in memory: a request's token is checked by one hash lookup, with no
//! database round trip. A background task rereads the table (`upkeep`), which is how
//! a revocation on any server reaches this one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use arc_swap::ArcSwapOption;
use audit_core::access::{KnownToken, SecretHash};
use time::OffsetDateTime;

/// A token as requests are checked against it.
#[derive(Debug)]
pub struct CachedToken {
    pub token: KnownToken,
    /// Unix seconds of the last request that used it, 0 if none since start; shared
    /// with the entry that replaces this one at the next reread.
    last_used: Arc<AtomicI64>,
    /// The `last_used` value last written to the database.
    flushed: Arc<AtomicI64>,
}

/// Why a presented token was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    Unknown,
    Revoked,
    Expired,
}

#[derive(Debug, Default)]
pub struct TokenCache {
    /// None until the first read succeeded.
    tokens: ArcSwapOption<HashMap<SecretHash, Arc<CachedToken>>>,
}

impl TokenCache {
    /// Whether the tokens were read at least once.
    pub fn is_loaded(&self) -> bool {
        self.tokens.load().is_some()
    }

    /// The token with this secret, if it may be used now; `None` while the tokens
    /// were never read.
    pub fn check(&self, presented: &str) -> Option<Result<Arc<CachedToken>, Rejection>> {
        let tokens = self.tokens.load();
        let tokens = tokens.as_ref()?;
        let Some(cached) = tokens.get(&SecretHash::of(presented)) else {
            return Some(Err(Rejection::Unknown));
        };
        if cached.token.revoked {
            return Some(Err(Rejection::Revoked));
        }
        let now = OffsetDateTime::now_utc();
        if cached.token.expires_at.is_some_and(|expiry| expiry <= now) {
            return Some(Err(Rejection::Expired));
        }
        cached
            .last_used
            .store(now.unix_timestamp(), Ordering::Relaxed);
        Some(Ok(Arc::clone(cached)))
    }

    /// Replaces the tokens with a fresh read, keeping what is known of their use.
    pub fn replace(&self, tokens: Vec<KnownToken>) {
        let previous = self.tokens.load_full();
        let fresh = tokens
            .into_iter()
            .map(|token| {
                let earlier = previous
                    .as_ref()
                    .and_then(|previous| previous.get(&token.hash));
                let (last_used, flushed) = match earlier {
                    Some(earlier) if earlier.token.name == token.name => {
                        (earlier.last_used.clone(), earlier.flushed.clone())
                    }
                    _ => Default::default(),
                };
                let cached = CachedToken {
                    token,
                    last_used,
                    flushed,
                };
                (cached.token.hash, Arc::new(cached))
            })
            .collect();
        self.tokens.store(Some(Arc::new(fresh)));
    }

    /// Tokens used since their use was last written, with the time of their last use;
    /// each is then taken as written.
    pub fn take_unrecorded_uses(&self) -> Vec<(String, OffsetDateTime)> {
        let tokens = self.tokens.load();
        let Some(tokens) = tokens.as_ref() else {
            return Vec::new();
        };
        tokens
            .values()
            .filter_map(|cached| {
                let used = cached.last_used.load(Ordering::Relaxed);
                let flushed = cached.flushed.swap(used, Ordering::Relaxed);
                (used > flushed)
                    .then(|| OffsetDateTime::from_unix_timestamp(used).ok())
                    .flatten()
                    .map(|at| (cached.token.name.clone(), at))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use audit_core::access::{Applications, TokenSecret};
    use time::Duration;

    use super::*;

    fn known(name: &str, secret: &TokenSecret) -> KnownToken {
        KnownToken {
            name: name.to_owned(),
            hash: secret.hash(),
            write: Applications::All,
            read: Applications::Only(Vec::new()),
            admin: false,
            expires_at: None,
            revoked: false,
        }
    }

    #[test]
    fn a_token_is_found_by_its_secret_unless_revoked_or_expired() {
        let cache = TokenCache::default();
        let (good, revoked, expired) = (
            TokenSecret::generate(),
            TokenSecret::generate(),
            TokenSecret::generate(),
        );
        assert!(cache.check(good.expose()).is_none(), "nothing loaded yet");
        cache.replace(vec![
            known("good", &good),
            KnownToken {
                revoked: true,
                ..known("revoked", &revoked)
            },
            KnownToken {
                expires_at: Some(OffsetDateTime::now_utc() - Duration::seconds(1)),
                ..known("expired", &expired)
            },
        ]);

        assert_eq!(
            cache.check(good.expose()).unwrap().unwrap().token.name,
            "good"
        );
        assert_eq!(
            cache.check(revoked.expose()).unwrap().unwrap_err(),
            Rejection::Revoked
        );
        assert_eq!(
            cache.check(expired.expose()).unwrap().unwrap_err(),
            Rejection::Expired
        );
        assert_eq!(
            cache.check("aec_guess").unwrap().unwrap_err(),
            Rejection::Unknown
        );
    }

    #[test]
    fn uses_survive_a_reread_and_are_reported_once() {
        let cache = TokenCache::default();
        let secret = TokenSecret::generate();
        cache.replace(vec![known("t", &secret)]);
        assert!(cache.take_unrecorded_uses().is_empty());

        cache.check(secret.expose()).unwrap().unwrap();
        cache.replace(vec![known("t", &secret)]);

        let uses = cache.take_unrecorded_uses();
        assert_eq!(uses.len(), 1);
        assert_eq!(uses[0].0, "t");
        assert!(cache.take_unrecorded_uses().is_empty());
    }
}
