//! Token secrets: random, recognisable, and kept only as a hash.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Every secret starts with this, so that secret scanners can find leaked ones.
pub const SECRET_PREFIX: &str = "aec_";
/// Random bytes in a secret: 256 bits.
const SECRET_BYTES: usize = 32;

/// A token's secret, shown once when it is created. Its `Debug` form hides it, so it
/// cannot reach a log line by accident.
pub struct TokenSecret(String);

/// The SHA-256 of a secret: what is stored, and what a request's token is looked up
/// by. A secret has 256 random bits, so a fast hash is as safe as a slow one here.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash(pub [u8; 32]);

impl TokenSecret {
    /// A new secret from the operating system's random source (through a generator it
    /// seeds).
    pub fn generate() -> Self {
        let bytes: [u8; SECRET_BYTES] = rand::random();
        Self(format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> SecretHash {
        SecretHash::of(&self.0)
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("TokenSecret(..)")
    }
}

impl SecretHash {
    /// The hash of what a client presented; any text, a token or not.
    pub fn of(presented: &str) -> Self {
        Self(Sha256::digest(presented.as_bytes()).into())
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("SecretHash(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_prefixed_random_and_hidden_from_debug() {
        let first = TokenSecret::generate();
        let second = TokenSecret::generate();

        assert!(first.expose().starts_with(SECRET_PREFIX));
        // 32 bytes in unpadded base64: 43 characters.
        assert_eq!(first.expose().len(), SECRET_PREFIX.len() + 43);
        assert_ne!(first.expose(), second.expose());
        assert!(!format!("{first:?}").contains(&first.expose()[SECRET_PREFIX.len()..]));
    }

    #[test]
    fn the_hash_is_the_sha256_of_the_whole_secret() {
        let secret = TokenSecret::generate();

        assert_eq!(secret.hash(), SecretHash::of(secret.expose()));
        assert_ne!(secret.hash(), SecretHash::of(&secret.expose()[1..]));
    }
}
