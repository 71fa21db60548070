//! The `api_tokens` table. Every change to it commits together with the collector's
//! event that records it (`trail`), so the log and the tokens cannot disagree.

use std::fmt;

use deadpool_postgres::Pool;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;

use crate::access::scope::Applications;
use crate::access::secret::{SecretHash, TokenSecret};
use crate::access::trail::{Actor, collector_event, write_in_transaction};
use crate::storage_error::{StorageError, classify, classify_at_commit, connection_from};

/// Longest token name, in bytes.
const MAX_NAME_BYTES: usize = 64;
/// Names that the collector's events use for actors other than a token.
const RESERVED_NAMES: &[&str] = &["cli", "loopback", "signal", "server"];

/// A token's name: 1 to 64 ASCII letters, digits, `.`, `_` or `-`, starting with a
/// letter or digit; unique for ever (a revoked token keeps its name).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenName(String);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenNameError {
    #[error(
        "must be 1 to {MAX_NAME_BYTES} ASCII letters, digits, '.', '_' or '-', starting \
         with a letter or digit"
    )]
    Malformed,
    #[error("is reserved for the collector's own records")]
    Reserved,
}

impl TokenName {
    pub fn parse(name: &str) -> Result<Self, TokenNameError> {
        let mut bytes = name.bytes();
        let starts_well = bytes
            .next()
            .is_some_and(|byte| byte.is_ascii_alphanumeric());
        let rest_allowed =
            bytes.all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
        if !starts_well || !rest_allowed || name.len() > MAX_NAME_BYTES {
            return Err(TokenNameError::Malformed);
        }
        if RESERVED_NAMES.contains(&name) {
            return Err(TokenNameError::Reserved);
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// A token to create.
#[derive(Clone, Debug)]
pub struct NewToken {
    pub name: TokenName,
    pub write: Applications,
    pub read: Applications,
    pub admin: bool,
    pub expires_at: Option<OffsetDateTime>,
}

/// A token as asked for, on the command line or over HTTP, before it is checked.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub name: String,
    /// Applications it may write; `*` for every one.
    #[serde(default)]
    pub write: Vec<String>,
    /// Applications it may read; `*` for every one.
    #[serde(default)]
    pub read: Vec<String>,
    #[serde(default)]
    pub admin: bool,
    /// How long it lives, e.g. `90d` or `12h`; none: until revoked.
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// What is wrong with a token request, and in which field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct TokenRequestError {
    pub field: &'static str,
    pub problem: String,
}

impl TokenRequest {
    /// The token to create, checked; `now` is when its lifetime starts.
    pub fn into_new_token(self, now: OffsetDateTime) -> Result<NewToken, TokenRequestError> {
        let refuse = |field: &'static str, problem: String| TokenRequestError { field, problem };
        let name =
            TokenName::parse(&self.name).map_err(|error| refuse("name", error.to_string()))?;
        let write = Applications::from_list(self.write)
            .map_err(|error| refuse("write", error.to_string()))?;
        let read = Applications::from_list(self.read)
            .map_err(|error| refuse("read", error.to_string()))?;
        if write.is_empty() && read.is_empty() && !self.admin {
            return Err(refuse(
                "name",
                "the token would grant nothing: give it write, read or admin".to_owned(),
            ));
        }
        let expires_at = match self.expires_in {
            None => None,
            Some(text) => {
                let lifetime = humantime::parse_duration(&text)
                    .ok()
                    .filter(|lifetime| !lifetime.is_zero())
                    .and_then(|lifetime| time::Duration::try_from(lifetime).ok())
                    .and_then(|lifetime| now.checked_add(lifetime))
                    .ok_or_else(|| {
                        refuse(
                            "expires_in",
                            format!("{text:?} is not a lifetime such as 90d, 12h or 30m"),
                        )
                    })?;
                Some(lifetime)
            }
        };
        Ok(NewToken {
            name,
            write,
            read,
            admin: self.admin,
            expires_at,
        })
    }
}

/// A token as the server keeps it in memory to check requests against.
#[derive(Clone, Debug)]
pub struct KnownToken {
    pub name: String,
    pub hash: SecretHash,
    pub write: Applications,
    pub read: Applications,
    pub admin: bool,
    pub expires_at: Option<OffsetDateTime>,
    pub revoked: bool,
}

/// A token as `token list` shows it: everything but its secret, which is not stored.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TokenListing {
    pub name: String,
    pub write: Vec<String>,
    pub read: Vec<String>,
    pub admin: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    pub revoked_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("a token named {0} exists already (names of revoked tokens stay taken)")]
    NameTaken(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeOutcome {
    Revoked,
    AlreadyRevoked,
    Unknown,
}

/// Creates the token and records `TokenCreated`; returns the secret, which exists
/// nowhere else from then on.
pub async fn create_token(
    pool: &Pool,
    token: &NewToken,
    actor: &Actor,
) -> Result<TokenSecret, CreateError> {
    let secret = TokenSecret::generate();
    let mut client = connection_from(pool).await?;
    let transaction = client.transaction().await.map_err(classify)?;
    let inserted = transaction
        .execute(
            "INSERT INTO api_tokens (name, secret_hash, write_applications, \
             read_applications, admin, created_by, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &token.name.as_str(),
                &secret.hash().0.as_slice(),
                &token.write.to_list(),
                &token.read.to_list(),
                &token.admin,
                &actor.by(),
                &token.expires_at,
            ],
        )
        .await;
    match inserted {
        Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            return Err(CreateError::NameTaken(token.name.to_string()));
        }
        other => other.map_err(classify)?,
    };
    let mut details = Map::new();
    details.insert("name".to_owned(), Value::from(token.name.as_str()));
    details.insert("write".to_owned(), Value::from(token.write.to_list()));
    details.insert("read".to_owned(), Value::from(token.read.to_list()));
    details.insert("admin".to_owned(), Value::from(token.admin));
    details.insert("expires_at".to_owned(), timestamp_value(token.expires_at));
    let event = collector_event("TokenCreated", actor, details);
    write_in_transaction(&transaction, &[event], actor).await?;
    transaction.commit().await.map_err(classify_at_commit)?;
    Ok(secret)
}

/// Revokes the token and records `TokenRevoked`; revoking it again changes nothing.
pub async fn revoke_token(
    pool: &Pool,
    name: &str,
    actor: &Actor,
) -> Result<RevokeOutcome, StorageError> {
    let mut client = connection_from(pool).await?;
    let transaction = client.transaction().await.map_err(classify)?;
    // The row lock makes a concurrent second revocation wait, then find it revoked.
    let row = transaction
        .query_opt(
            "SELECT revoked_at IS NOT NULL FROM api_tokens WHERE name = $1 FOR UPDATE",
            &[&name],
        )
        .await
        .map_err(classify)?;
    let Some(row) = row else {
        return Ok(RevokeOutcome::Unknown);
    };
    if row.try_get::<_, bool>(0).map_err(classify)? {
        return Ok(RevokeOutcome::AlreadyRevoked);
    }
    transaction
        .execute(
            "UPDATE api_tokens SET revoked_at = now(), revoked_by = $2 WHERE name = $1",
            &[&name, &actor.by()],
        )
        .await
        .map_err(classify)?;
    let mut details = Map::new();
    details.insert("name".to_owned(), Value::from(name));
    let event = collector_event("TokenRevoked", actor, details);
    write_in_transaction(&transaction, &[event], actor).await?;
    transaction.commit().await.map_err(classify_at_commit)?;
    Ok(RevokeOutcome::Revoked)
}

/// Every token, oldest first.
pub async fn list_tokens(pool: &Pool) -> Result<Vec<TokenListing>, StorageError> {
    let client = connection_from(pool).await?;
    let rows = client
        .query(
            "SELECT name, write_applications, read_applications, admin, created_at, \
             created_by, expires_at, revoked_at, revoked_by, last_used_at \
             FROM api_tokens ORDER BY created_at, name",
            &[],
        )
        .await
        .map_err(classify)?;
    rows.iter()
        .map(|row| {
            Ok(TokenListing {
                name: row.try_get(0)?,
                write: row.try_get(1)?,
                read: row.try_get(2)?,
                admin: row.try_get(3)?,
                created_at: row.try_get(4)?,
                created_by: row.try_get(5)?,
                expires_at: row.try_get(6)?,
                revoked_at: row.try_get(7)?,
                revoked_by: row.try_get(8)?,
                last_used_at: row.try_get(9)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(classify)
}

/// Every token with what a request is checked against; revoked ones too, so that a
/// revoked token is refused as revoked rather than as unknown.
pub async fn load_tokens(pool: &Pool) -> Result<Vec<KnownToken>, StorageError> {
    let client = connection_from(pool).await?;
    let statement = client
        .prepare_cached(
            "SELECT name, secret_hash, write_applications, read_applications, admin, \
             expires_at, revoked_at IS NOT NULL FROM api_tokens",
        )
        .await
        .map_err(classify)?;
    let rows = client.query(&statement, &[]).await.map_err(classify)?;
    let mut tokens = Vec::with_capacity(rows.len());
    for row in &rows {
        let name: String = row.try_get(0).map_err(classify)?;
        let hash: &[u8] = row.try_get(1).map_err(classify)?;
        let scope = |index: usize| -> Result<Applications, StorageError> {
            let names: Vec<String> = row.try_get(index).map_err(classify)?;
            // A name that fails the rules (written by hand) can match no event:
            // such a scope covers nothing rather than failing every token.
            Ok(Applications::from_list(names).unwrap_or(Applications::Only(Vec::new())))
        };
        let Some(hash) = SecretHash::from_slice(hash) else {
            tracing::warn!(token = %name, "token ignored: its stored hash is not 32 bytes");
            continue;
        };
        tokens.push(KnownToken {
            hash,
            write: scope(2)?,
            read: scope(3)?,
            admin: row.try_get(4).map_err(classify)?,
            expires_at: row.try_get(5).map_err(classify)?,
            revoked: row.try_get(6).map_err(classify)?,
            name,
        });
    }
    Ok(tokens)
}

/// Records `TokenExpired` for each token whose expiry has passed and was not recorded
/// yet, once whichever server gets there first; returns their names.
pub async fn record_expired_tokens(pool: &Pool) -> Result<Vec<String>, StorageError> {
    let mut client = connection_from(pool).await?;
    let transaction = client.transaction().await.map_err(classify)?;
    // The row locks of the UPDATE make a second server wait, then find nothing left.
    let rows = transaction
        .query(
            "UPDATE api_tokens SET expiry_recorded = true \
             WHERE expires_at <= now() AND NOT expiry_recorded AND revoked_at IS NULL \
             RETURNING name, expires_at",
            &[],
        )
        .await
        .map_err(classify)?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut names = Vec::with_capacity(rows.len());
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        let name: String = row.try_get(0).map_err(classify)?;
        let expires_at: Option<OffsetDateTime> = row.try_get(1).map_err(classify)?;
        let mut details = Map::new();
        details.insert("name".to_owned(), Value::from(name.as_str()));
        details.insert("expires_at".to_owned(), timestamp_value(expires_at));
        events.push(collector_event("TokenExpired", &Actor::Server, details));
        names.push(name);
    }
    write_in_transaction(&transaction, &events, &Actor::Server).await?;
    transaction.commit().await.map_err(classify_at_commit)?;
    Ok(names)
}

/// Moves each token's `last_used_at` forward to the time given, never back.
pub async fn record_last_used(
    pool: &Pool,
    used: &[(String, OffsetDateTime)],
) -> Result<(), StorageError> {
    if used.is_empty() {
        return Ok(());
    }
    let (names, times): (Vec<&str>, Vec<OffsetDateTime>) =
        used.iter().map(|(name, at)| (name.as_str(), *at)).unzip();
    let client = connection_from(pool).await?;
    client
        .execute(
            "UPDATE api_tokens AS token \
             SET last_used_at = greatest(token.last_used_at, used.at) \
             FROM unnest($1::text[], $2::timestamptz[]) AS used (name, at) \
             WHERE token.name = used.name",
            &[&names, &times],
        )
        .await
        .map_err(classify)?;
    Ok(())
}

/// A token time as the collector's events, `/admin/tokens` and `token` show it.
pub fn rfc3339(at: Option<OffsetDateTime>) -> Option<String> {
    at.and_then(|at| {
        at.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
}

fn timestamp_value(at: Option<OffsetDateTime>) -> Value {
    rfc3339(at).map_or(Value::Null, Value::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_becomes_a_token_with_its_expiry_from_now() {
        let now = OffsetDateTime::now_utc();
        let request = TokenRequest {
            name: "ci".to_owned(),
            write: vec!["a".to_owned(), "b".to_owned()],
            expires_in: Some("90d".to_owned()),
            ..TokenRequest::default()
        };

        let token = request.into_new_token(now).unwrap();

        assert_eq!(token.write.to_list(), ["a", "b"]);
        assert!(token.read.is_empty() && !token.admin);
        assert_eq!(token.expires_at, Some(now + time::Duration::days(90)));
    }

    #[test]
    fn a_request_that_grants_nothing_or_never_ends_badly_is_refused() {
        let now = OffsetDateTime::now_utc();
        let nothing = TokenRequest {
            name: "idle".to_owned(),
            ..TokenRequest::default()
        };
        let bad_expiry = TokenRequest {
            name: "t".to_owned(),
            admin: true,
            expires_in: Some("soon".to_owned()),
            ..TokenRequest::default()
        };

        assert_eq!(nothing.into_new_token(now).unwrap_err().field, "name");
        assert_eq!(
            bad_expiry.into_new_token(now).unwrap_err().field,
            "expires_in"
        );
    }

    #[test]
    fn token_names_are_short_plain_ascii() {
        for good in ["ci", "team-a.writer_2", "A", &"x".repeat(64)] {
            assert!(TokenName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "-lead", "has space", "ünï", "a/b", &"x".repeat(65)] {
            assert_eq!(
                TokenName::parse(bad),
                Err(TokenNameError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(TokenName::parse("cli"), Err(TokenNameError::Reserved));
    }
}
