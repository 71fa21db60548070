//! Who may write and read which application's events: bearer tokens and their scopes
//! (`scope`), their secrets (`secret`), their rows in `api_tokens` (`store`), and the
//! events the collector writes about itself when they change (`trail`).
//!
//! Nothing here knows HTTP: the server looks a request's token up in memory and asks
//! the scopes; the command line manages tokens through the same store.

mod mode;
mod scope;
mod secret;
mod store;
mod trail;

pub use crate::access::mode::{AUTH_MODE_KEY, record_auth_mode};
pub use crate::access::scope::{Applications, ScopeError};
pub use crate::access::secret::{SECRET_PREFIX, SecretHash, TokenSecret};
pub use crate::access::store::{
    CreateError, KnownToken, NewToken, RevokeOutcome, TokenListing, TokenName, TokenNameError,
    TokenRequest, TokenRequestError, create_token, list_tokens, load_tokens, record_expired_tokens,
    record_last_used, revoke_token, rfc3339,
};
pub use crate::access::trail::{
    Actor, COLLECTOR_APPLICATION, collector_event, rows_of, write_in_transaction,
};
